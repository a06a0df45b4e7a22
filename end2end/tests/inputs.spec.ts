// Per-model inputs in the browser: shape and number of images, the seed
// under "Advanced", inputs offered only by the models that take them, and
// "Use this prompt" / "Reuse seed" filling the generator in.
import { expect, test, type Page } from "@playwright/test";
import { hydrated, signUp } from "./helpers";

async function naturalSize(page: Page, name: string): Promise<number[][]> {
  return page
    .getByRole("img", { name })
    .evaluateAll((imgs) => imgs.map((i) => [(i as HTMLImageElement).naturalWidth, (i as HTMLImageElement).naturalHeight]));
}

test("two wide images cost 20 credits, and Use this prompt in history fills the generator", async ({ page }) => {
  await signUp(page);
  await hydrated(page);
  await page.getByLabel("Prompt").fill("two wide harbours");
  await page.getByLabel("Aspect ratio").selectOption("16:9");
  await page.getByLabel("Number of images").selectOption("2");
  await expect(page.getByText("20 credits for 2 images")).toBeVisible();
  await page.getByRole("button", { name: "Generate" }).click();
  await expect(page.getByText("80 credits")).toBeVisible();

  await expect(page.getByRole("img", { name: "two wide harbours" })).toHaveCount(2);
  await expect.poll(() => naturalSize(page, "two wide harbours")).toEqual([[768, 432], [768, 432]]);
  await expect(page.getByRole("link", { name: "Download image 2 of 2" })).toBeVisible();
  await expect(page.getByText("80 credits")).toBeVisible();

  await page.getByRole("link", { name: "History" }).click();
  await expect(page.getByRole("heading", { name: "History" })).toBeVisible();
  // History cards offer each image for download too.
  await expect(page.getByRole("link", { name: "Download image 2 of 2" })).toBeVisible();
  await page.getByRole("link", { name: "Use this prompt" }).first().click();
  await expect(page).toHaveURL(/\/\?prompt=two%20wide%20harbours/);
  await expect(page.getByLabel("Prompt")).toHaveValue("two wide harbours");
  await expect(page.getByLabel("Aspect ratio")).toHaveValue("16:9");
  await expect(page.getByLabel("Number of images")).toHaveValue("2");
  await expect(page.getByText("20 credits for 2 images")).toBeVisible();
});

test("a seed set under Advanced is shown on the card, and Reuse seed brings it back", async ({ page }) => {
  await signUp(page);
  await hydrated(page);
  // FLUX.1 [schnell] takes a seed but no negative prompt; SDXL takes both.
  await page.getByText("Advanced").click();
  await expect(page.getByLabel("Seed")).toBeVisible();
  await expect(page.getByLabel("Negative prompt")).toHaveCount(0);
  await page.getByLabel("Model").selectOption({ label: "Stable Diffusion XL" });
  await expect(page.getByLabel("Negative prompt")).toBeVisible();
  await page.getByLabel("Model").selectOption({ label: "FLUX.1 [schnell]" });
  await expect(page.getByLabel("Negative prompt")).toHaveCount(0);

  await page.getByLabel("Prompt").fill("a seeded orchard");
  await page.getByLabel("Seed").fill("1234");
  await page.getByRole("button", { name: "Generate" }).click();
  await expect(page.getByRole("img", { name: "a seeded orchard" })).toBeVisible();
  await expect(page.getByText("Seed 1234")).toBeVisible();

  await page.getByLabel("Prompt").fill("something else");
  await page.getByLabel("Seed").fill("");
  await page.getByRole("link", { name: "Reuse seed" }).click();
  await expect(page).toHaveURL(/seed=1234/);
  await expect(page.getByLabel("Prompt")).toHaveValue("a seeded orchard");
  await expect(page.getByLabel("Seed")).toHaveValue("1234");

  // Again from the same address: the link changes nothing in it, and still
  // brings the seed back.
  await page.getByLabel("Seed").fill("99");
  await page.getByRole("link", { name: "Reuse seed" }).click();
  await expect(page.getByLabel("Seed")).toHaveValue("1234");
});

test("Generate says why it is disabled when the balance does not cover the images", async ({ page }) => {
  await signUp(page);
  await hydrated(page);
  for (const prompt of ["four lanterns", "four more lanterns"]) {
    await page.getByLabel("Prompt").fill(prompt);
    await page.getByLabel("Number of images").selectOption("4");
    await page.getByRole("button", { name: "Generate" }).click();
    await expect(page.getByRole("img", { name: prompt })).toHaveCount(4);
  }
  await expect(page.getByText("20 credits", { exact: true })).toBeVisible();
  await page.getByLabel("Number of images").selectOption("4");
  await expect(page.getByRole("button", { name: "Generate" })).toBeDisabled();
  await expect(page.getByText("Not enough credits: 4 images cost 40, you have 20.")).toBeVisible();
  await page.getByLabel("Number of images").selectOption("2");
  await expect(page.getByRole("button", { name: "Generate" })).toBeEnabled();
});
