// Bench section 5, first load: the generator page (`/`) opened by a
// signed-in person in headless Chromium (Debian's, through Playwright from
// end2end/node_modules), each run in a fresh browser context (cold cache).
// Prints JSON: per run, the ms from navigation start to an interactive,
// enabled Generate button (the page hydrated and the button not disabled);
// per resource of the first run, the bytes over the wire and gzip -9 of its
// body.
//
//   node benches/first_load.mjs http://127.0.0.1:PORT 'darkroom_session=…' 10
import { createRequire } from "node:module";
import { gzipSync } from "node:zlib";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "../end2end/package.json"));
const { chromium } = require("@playwright/test");

const [base, cookie, runsArg] = process.argv.slice(2);
const runs = Number(runsArg ?? 10);
const [cookieName, ...rest] = cookie.split("=");
const cookieValue = rest.join("=");

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
});
const times = [];
let resources = [];
for (let i = 0; i < runs; i++) {
  const context = await browser.newContext();
  await context.addCookies([{ name: cookieName, value: cookieValue, url: base }]);
  const page = await context.newPage();
  await page.goto(`${base}/`);
  const handle = await page.waitForFunction(
    () => {
      const w = window;
      if (w.__darkroom_panic) throw new Error(`panicked: ${w.__darkroom_panic}`);
      const button = [...document.querySelectorAll("button")].find((b) => b.textContent.trim() === "Generate");
      return w.__darkroom_hydrated === true && button && !button.disabled ? performance.now() : false;
    },
    undefined,
    { polling: "raf", timeout: 30_000 },
  );
  times.push(await handle.jsonValue());
  if (i === 0) {
    await page.waitForLoadState("load");
    resources = await page.evaluate(() =>
      [...performance.getEntriesByType("navigation"), ...performance.getEntriesByType("resource")].map((e) => ({
        url: e.name,
        transfer: e.transferSize,
        decoded: e.decodedBodySize,
      })),
    );
    for (const r of resources) {
      const res = await context.request.get(r.url);
      r.gzip = gzipSync(await res.body(), { level: 9 }).length;
    }
  }
  await context.close();
}
await browser.close();
console.log(JSON.stringify({ times, resources }));
