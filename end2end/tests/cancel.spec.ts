import { expect, test } from "@playwright/test";
import { hydrated, signUp } from "./helpers";

test("a generation canceled from the generator is refunded on screen", async ({ page }) => {
  await signUp(page);
  await hydrated(page);
  await page.getByLabel("Prompt").fill("a regretted lighthouse #slow");
  await page.getByRole("button", { name: "Generate" }).click();
  await expect(page.getByText("90 credits")).toBeVisible();
  await expect(page.getByText("Processing", { exact: true })).toBeVisible();

  await page.getByRole("button", { name: "Cancel" }).click();
  await expect(page.getByText("Canceled", { exact: true })).toBeVisible();
  await expect(page.getByText("10 credits refunded.")).toBeVisible();
  await expect(page.getByText("100 credits")).toBeVisible();
  await expect(page.getByRole("button", { name: "Cancel" })).toHaveCount(0);
});

test("a generation canceled from history is refunded on screen", async ({ page }) => {
  await signUp(page);
  await hydrated(page);
  await page.getByLabel("Prompt").fill("a regretted harbour #slow");
  await page.getByRole("button", { name: "Generate" }).click();
  await expect(page.getByText("90 credits")).toBeVisible();

  await page.goto("/history");
  await hydrated(page);
  const card = page.getByRole("listitem").filter({ hasText: "a regretted harbour" });
  await card.getByRole("button", { name: "Cancel" }).click();
  await expect(card.getByText("Canceled", { exact: true })).toBeVisible();
  await expect(card.getByText("10 credits refunded.")).toBeVisible();
  await expect(page.getByText("100 credits")).toBeVisible();
  // It stays canceled after a reload.
  await page.reload();
  await expect(page.getByRole("listitem").filter({ hasText: "a regretted harbour" }).getByText("Canceled", { exact: true })).toBeVisible();
});
