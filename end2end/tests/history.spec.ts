import { expect, test } from "@playwright/test";
import { hydrated, signUp } from "./helpers";

test("history updates every processing task live with one request per interval", async ({ page }) => {
  await signUp(page);
  // The first submitted finishes last (the simulator's `#ms=` directive).
  for (const prompt of ["the slower one #ms=10000", "the quicker one #ms=5000"]) {
    const res = await page.request.post("/api/generate_image", { form: { prompt } });
    expect(res.ok()).toBeTruthy();
  }

  const statusCalls: number[] = [];
  page.on("request", (r) => {
    if (r.url().endsWith("/api/check_image_statuses")) statusCalls.push(Date.now());
  });
  await page.goto("/history");
  await hydrated(page);
  await expect(page.getByRole("heading", { name: "History" })).toBeVisible();
  const cards = page.getByRole("listitem");
  await expect(cards).toHaveCount(2);
  await expect(page.getByText("Processing", { exact: true })).toHaveCount(2);

  const quick = page.getByRole("img", { name: "the quicker one #ms=5000" });
  const slow = page.getByRole("img", { name: "the slower one #ms=10000" });
  await expect(quick).toBeVisible();
  await expect(slow).toHaveCount(0);
  await expect(slow).toBeVisible();
  await expect(page.getByText("Processing", { exact: true })).toHaveCount(0);

  // One batched call per 1 s interval while anything was processing, none after.
  const first = statusCalls[0];
  const last = statusCalls[statusCalls.length - 1];
  const seconds = (last - first) / 1000;
  expect(statusCalls.length).toBeGreaterThanOrEqual(2);
  expect(statusCalls.length).toBeLessThanOrEqual(Math.ceil(seconds) + 2);
  const settled = statusCalls.length;
  await page.waitForTimeout(2500);
  expect(statusCalls.length).toBe(settled);
});

test("an empty history links to the generator", async ({ page }) => {
  await signUp(page);
  await page.goto("/history");
  await expect(page.getByRole("heading", { name: "History" })).toBeVisible();
  await page.getByRole("link", { name: "Generate your first image" }).click();
  await expect(page.getByLabel("Prompt")).toBeVisible();
});

test.describe("without JavaScript", () => {
  test.use({ javaScriptEnabled: false });

  test("history still lists the tasks", async ({ page }) => {
    await signUp(page);
    for (const prompt of ["listed without js", "failed without js #fail"]) {
      const res = await page.request.post("/api/generate_image", { form: { prompt } });
      expect(res.ok()).toBeTruthy();
    }
    await page.goto("/history");
    await expect(page.getByRole("heading", { name: "History" })).toBeVisible();
    await expect(page.getByText("listed without js", { exact: true })).toBeVisible();
    await expect(page.getByText("failed without js #fail", { exact: true })).toBeVisible();
  });
});
