// A generation the provider's budget has no room for waits in the queue,
// charged: its card says where it stands and has Cancel, then moves on to
// the image without a reload — on the generator and in history. Against
// the second server of playwright.config.ts, whose budget allows one
// create in 15 s.
import { expect, test } from "@playwright/test";
import { hydrated, signUp } from "./helpers";

test.use({ baseURL: process.env.E2E_QUEUE_URL ?? `http://127.0.0.1:${process.env.E2E_QUEUE_PORT ?? "3101"}` });
test.skip(!!process.env.BASE_URL && !process.env.E2E_QUEUE_URL, "needs the small-budget server (E2E_QUEUE_URL)");

test("a queued generation shows its place, then its image", async ({ page }) => {
  test.setTimeout(90_000);
  await signUp(page);
  await hydrated(page);
  const generate = async (prompt: string) => {
    await page.getByLabel("Prompt").fill(prompt);
    await page.getByRole("button", { name: "Generate" }).click();
  };
  await generate("the first heron in line");
  await expect(page.getByText("90 credits")).toBeVisible();
  await generate("the second heron in line");
  await expect(page.getByText("80 credits")).toBeVisible();
  await expect(page.getByText("In queue — 1st")).toBeVisible();
  await expect(page.getByRole("button", { name: "Cancel" })).toBeVisible();

  await page.goto("/history");
  await hydrated(page);
  const card = page.getByRole("listitem").filter({ hasText: "the second heron in line" });
  await expect(card.getByText("In queue — 1st")).toBeVisible();
  // Its turn comes within 15 s; then 2 s at the provider.
  await expect(card.getByRole("img", { name: "the second heron in line" })).toBeVisible({ timeout: 40_000 });
  await expect(card.getByText("In queue", { exact: false })).toHaveCount(0);
  await expect(page.getByText("80 credits")).toBeVisible();
});
