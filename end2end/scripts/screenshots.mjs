// Regenerates the README screenshots: node scripts/screenshots.mjs
// against a server at BASE_URL (default http://127.0.0.1:3000).
import { chromium } from "@playwright/test";

const base = process.env.BASE_URL ?? "http://127.0.0.1:3000";
const out = process.env.OUT ?? "../docs";
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
for (const scheme of ["light", "dark"]) {
  const context = await browser.newContext({ viewport: { width: 1200, height: 860 }, colorScheme: scheme, baseURL: base });
  const page = await context.newPage();
  await page.goto("/signup");
  await page.getByLabel("Email").fill(`shots-${scheme}-${Date.now()}@example.com`);
  await page.getByLabel("Password").fill("correct horse battery");
  await page.getByRole("button", { name: "Sign up" }).click();
  await page.getByLabel("Prompt").waitFor();
  const prompts = ["a lighthouse on a cliff at dusk", "misty pine forest at dawn", "a quiet harbour under the moon #fail", "desert dunes, long shadows", "alpine lake, morning light"];
  for (const prompt of prompts.slice(1)) {
    await page.request.post("/api/generate_image", { form: { prompt } });
  }
  await page.waitForFunction(() => window.__darkroom_hydrated === true);
  await page.getByLabel("Prompt").fill(prompts[0]);
  await page.getByRole("button", { name: "Generate" }).click();
  await page.getByText("Processing", { exact: true }).waitFor();
  await page.waitForTimeout(1200);
  await page.screenshot({ path: `${out}/generator-processing-${scheme}.png` });
  await page.getByRole("img", { name: prompts[0] }).waitFor({ timeout: 60_000 });
  await page.waitForTimeout(500);
  await page.screenshot({ path: `${out}/generator-${scheme}.png` });
  await page.goto("/history");
  await page.waitForTimeout(4000);
  await page.screenshot({ path: `${out}/history-${scheme}.png` });
  await context.close();
}
await browser.close();
