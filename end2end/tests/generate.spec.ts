import { expect, test, type Page } from "@playwright/test";
import { hydrated, signUp } from "./helpers";

async function generate(page: Page, prompt: string) {
  await page.getByLabel("Prompt").fill(prompt);
  await page.getByRole("button", { name: "Generate" }).click();
}

// A page that comes back resumes the latest *processing* task. Another
// page's poll or the server's own checks may finish a short task before the
// page is back, so the tests that reload or reopen run theirs for 6 s
// (`#ms=6000`), time enough to come back while it is still processing.

test("a prompt becomes an image, with progress on the way, and costs 10 credits", async ({ page }) => {
  await signUp(page);
  await hydrated(page);
  await generate(page, "a lighthouse on a cliff at dusk");

  await expect(page.getByText("90 credits")).toBeVisible();
  await expect(page.getByText("Processing", { exact: true })).toBeVisible();
  await expect(page.getByRole("progressbar", { name: "Progress" })).toBeVisible();

  const image = page.getByRole("img", { name: "a lighthouse on a cliff at dusk" });
  await expect(image).toBeVisible();
  await expect.poll(() => image.evaluate((img: HTMLImageElement) => img.naturalWidth)).toBeGreaterThan(0);
  await expect(page.getByRole("link", { name: "Download" })).toBeVisible();
  await expect(page.getByRole("progressbar")).toHaveCount(0);
  await expect(page.getByText("90 credits")).toBeVisible();
});

test("a reload while processing resumes polling without a second charge", async ({ page }) => {
  await signUp(page);
  await hydrated(page);
  await generate(page, "a reloaded harbour #ms=6000");
  await expect(page.getByText("Processing", { exact: true })).toBeVisible();

  await page.reload();
  await hydrated(page);
  await expect(page.getByText("a reloaded harbour")).toBeVisible();
  await expect(page.getByRole("img", { name: "a reloaded harbour" })).toBeVisible();
  await expect(page.getByText("90 credits")).toBeVisible();
});

test("a new browser with the same session resumes the task", async ({ page, browser }) => {
  await signUp(page);
  await hydrated(page);
  await generate(page, "a reopened window #ms=6000");
  await expect(page.getByText("Processing", { exact: true })).toBeVisible();
  const state = await page.context().storageState();
  await page.context().close();

  const context = await browser.newContext({ storageState: state });
  const again = await context.newPage();
  await again.goto("/");
  await expect(again.getByRole("img", { name: "a reopened window" })).toBeVisible();
  await expect(again.getByText("90 credits")).toBeVisible();
  await context.close();
});

test("a failed generation says why and gives the credits back", async ({ page }) => {
  await signUp(page);
  await hydrated(page);
  await generate(page, "a storm #fail");
  await expect(page.getByText("90 credits")).toBeVisible();
  await expect(page.getByText("10 credits refunded.")).toBeVisible();
  await expect(page.getByText(/The model failed/)).toBeVisible();
  await expect(page.getByText("100 credits")).toBeVisible();
});

test("two pages polling one task: one charge, one image", async ({ page, context }) => {
  await signUp(page);
  await hydrated(page);
  await generate(page, "two tabs, one picture #ms=6000");
  await expect(page.getByText("Processing", { exact: true })).toBeVisible();

  const second = await context.newPage();
  await second.goto("/");
  for (const p of [page, second]) {
    await expect(p.getByRole("img", { name: "two tabs, one picture" })).toBeVisible();
  }
  await second.reload();
  await expect(second.getByText("90 credits")).toBeVisible();
  const history = await page.request.post("/api/list_history", { form: {} });
  const items = (await history.json()).items;
  expect(items).toHaveLength(1);
  expect(items[0].status).toBe("completed");
});

test("Generate is disabled when the balance does not cover the cost", async ({ page }) => {
  await signUp(page);
  await hydrated(page);
  // Ten quick generations, one after the other (at most 4 may run at once).
  for (let i = 0; i < 10; i++) {
    const res = await page.request.post("/api/generate_image", { form: { prompt: `filler ${i} #ms=50` } });
    expect(res.ok()).toBeTruthy();
    const { task_id } = await res.json();
    await expect
      .poll(async () => {
        const check = await page.request.post("/api/check_image_status", { form: { task_id } });
        return (await check.json()).status;
      })
      .toBe("completed");
  }
  await page.reload();
  await hydrated(page);
  await expect(page.getByText("0 credits", { exact: true })).toBeVisible();
  await expect(page.getByRole("button", { name: "Generate" })).toBeDisabled();
  await expect(page.getByText("Not enough credits")).toBeVisible();
});

test("a task that finishes while the tab is hidden says so in the tab's title", async ({ page }) => {
  await signUp(page);
  await hydrated(page);
  await generate(page, "a lighthouse seen later");
  await expect(page.getByText("Processing", { exact: true })).toBeVisible();
  const setVisibility = (state: "hidden" | "visible") =>
    page.evaluate((s) => {
      Object.defineProperty(document, "visibilityState", { configurable: true, get: () => s });
      document.dispatchEvent(new Event("visibilitychange", { bubbles: true }));
    }, state);
  await setVisibility("hidden");
  await expect(page).toHaveTitle("✓ Image ready — Darkroom");
  await setVisibility("visible");
  await expect(page).toHaveTitle("Darkroom");
  await expect(page.getByRole("img", { name: "a lighthouse seen later" })).toBeVisible();
});
