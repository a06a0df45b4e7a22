// A fal model, picked in the generator, goes through fal's queue API (its
// simulator under /sim/fal/) to a stored image, like a Replicate one.
import { expect, test } from "@playwright/test";
import { hydrated, signUp } from "./helpers";

test("a fal model picked in the generator makes a stored image", async ({ page }) => {
  await signUp(page);
  await hydrated(page);
  await page.getByLabel("Model").selectOption({ label: "FLUX.1 [dev] on fal" });
  await page.getByLabel("Prompt").fill("a lighthouse through fal");
  await page.getByLabel("Aspect ratio").selectOption("9:16");
  await page.getByText("Advanced").click();
  await page.getByLabel("Seed").fill("77");
  await page.getByRole("button", { name: "Generate" }).click();
  await expect(page.getByText("90 credits")).toBeVisible();

  const image = page.getByRole("img", { name: "a lighthouse through fal" });
  await expect(image).toBeVisible({ timeout: 45_000 });
  // Served from our own storage, in the shape asked for.
  await expect(image).toHaveAttribute("src", /^\/images\//);
  const size = await image.evaluate((i) => [(i as HTMLImageElement).naturalWidth, (i as HTMLImageElement).naturalHeight]);
  expect(size[1]).toBeGreaterThan(size[0]);
  await expect(page.getByText("Seed 77")).toBeVisible();

  await page.getByRole("link", { name: "History" }).click();
  await expect(page.getByRole("img", { name: "a lighthouse through fal" })).toBeVisible();
});

test("a fal generation shows its place in fal's queue, and Cancel there refunds it", async ({ page }) => {
  await signUp(page);
  await hydrated(page);
  await page.getByLabel("Model").selectOption({ label: "FLUX.1 [dev] on fal" });
  // 90 s at fal, the first 9 s in its queue (a place a second): the
  // place shows, and Cancel takes it out of fal's queue.
  await page.getByLabel("Prompt").fill("a patient lighthouse #ms=90000");
  await page.getByRole("button", { name: "Generate" }).click();
  await expect(page.getByText("90 credits")).toBeVisible();
  await expect(page.getByText(/^In queue at the provider — \d+(st|nd|rd|th)$/)).toBeVisible();

  await page.getByRole("button", { name: "Cancel" }).click();
  await expect(page.getByText("Canceled", { exact: true })).toBeVisible();
  await expect(page.getByText("100 credits")).toBeVisible();
});
