// Every load of every page hydrates, also while the machine is busy: the
// islands' code runs each time (no reload to rescue a stalled page), and
// the time to hydrate is recorded in the report.
import { spawn, type ChildProcess } from "node:child_process";
import { expect, test, type Page } from "@playwright/test";
import { hydrated, signUp } from "./helpers";

const LOADS = 30;

/** Two processes that keep a core each busy until stopped. */
function burnCpu(): ChildProcess[] {
  return [0, 1].map(() => spawn(process.execPath, ["-e", "for (;;) {}"], { stdio: "ignore" }));
}

/** What a live page does at once: on `/`, the generator follows its
 * fields (the cost line) and Generate is enabled; on every page the
 * balance island shows the balance. */
async function live(page: Page, path: string) {
  await expect(page.getByTestId("balance")).toHaveText(/\d+ credits/);
  if (path === "/") {
    await expect(page.getByRole("button", { name: "Generate" })).toBeEnabled();
    const count = page.getByLabel("Number of images");
    await count.selectOption("2");
    await expect(page.getByText("20 credits for 2 images")).toBeVisible();
    await count.selectOption("1");
    await expect(page.getByText("10 credits for 1 image")).toBeVisible();
  }
}

function summary(ms: number[]): string {
  const sorted = [...ms].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  return `median ${at(0.5)} ms, p90 ${at(0.9)} ms, max ${sorted[sorted.length - 1]} ms over ${ms.length} loads`;
}

test("each page hydrates on every one of 30 loads with the machine under CPU load", async ({ page }) => {
  test.setTimeout(300_000);
  await signUp(page);
  // History with a finished and a failed card.
  for (const prompt of ["a busy harbour", "a busy storm #fail"]) {
    await page.getByLabel("Prompt").fill(prompt);
    await page.getByRole("button", { name: "Generate" }).click();
    await expect(page.getByRole("button", { name: "Generate" })).toBeEnabled();
  }
  const burners = burnCpu();
  try {
    for (const path of ["/", "/history", "/account"]) {
      const times: number[] = [];
      for (let i = 0; i < LOADS; i++) {
        await page.goto(path);
        await hydrated(page, 30_000);
        // Since the navigation started, in the page's own clock.
        times.push(Math.round(await page.evaluate(() => performance.now())));
        await live(page, path);
      }
      test.info().annotations.push({ type: `time to hydrate ${path}`, description: summary(times) });
      console.log(`time to hydrate ${path}: ${summary(times)}`);
    }
  } finally {
    for (const b of burners) b.kill();
  }
});
