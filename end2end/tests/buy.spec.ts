// Buying credits as a person does: out of credits, the generator offers
// "Buy credits"; the account page sends them to the (simulated) Stripe
// checkout page; they pay with a test card and come back to their balance
// and the purchase in the ledger. A declined card says so and grants
// nothing.
import { expect, test, type Page } from "@playwright/test";
import { hydrated, signUp } from "./helpers";

async function generate(page: Page, prompt: string, images: string) {
  await page.getByLabel("Number of images").selectOption(images);
  await page.getByLabel("Prompt").fill(prompt);
  await page.getByRole("button", { name: "Generate" }).click();
}

test("a person out of credits buys 100 on the checkout page and sees them", async ({ page }) => {
  test.setTimeout(120_000);
  await signUp(page);
  await hydrated(page);
  const balance = page.getByTestId("balance");
  await generate(page, "four herons", "4");
  await expect(balance).toHaveText("60 credits");
  await generate(page, "four more herons", "4");
  await expect(balance).toHaveText("20 credits");
  await generate(page, "one heron", "1");
  await expect(balance).toHaveText("10 credits");
  await generate(page, "the last heron", "1");
  await expect(balance).toHaveText("0 credits");
  await expect(page.getByText("Not enough credits: an image costs 10, you have 0.")).toBeVisible();

  await page.getByRole("link", { name: "Buy credits" }).click();
  await expect(page.getByRole("heading", { name: "Account" })).toBeVisible();
  await page.getByLabel("Package").selectOption("100");
  await page.getByRole("button", { name: "Buy credits" }).click();
  await expect(page.getByRole("heading", { name: "Test checkout" })).toBeVisible();
  await expect(page.getByText("5.00 USD")).toBeVisible();
  await page.getByLabel("Card number").fill("4242 4242 4242 4242");
  await page.getByRole("button", { name: "Pay" }).click();

  await expect(page).toHaveURL(/\/account\?purchase=/);
  await expect(page.getByText("Payment received: 100 credits added.")).toBeVisible();
  await expect(balance).toHaveText("100 credits");
  await expect(page.getByRole("cell", { name: "Bought credits (5.00 USD)" })).toBeVisible();
  await expect(page.getByRole("cell", { name: "Paid" })).toBeVisible();
});

test("a declined card says so and grants nothing", async ({ page }) => {
  await signUp(page);
  await page.goto("/account");
  await hydrated(page);
  await page.getByRole("button", { name: "Buy credits" }).click();
  await page.getByLabel("Card number").fill("4000 0000 0000 0002");
  await page.getByRole("button", { name: "Pay" }).click();
  await expect(page.getByRole("alert")).toHaveText("Your card was declined.");
  await page.getByRole("link", { name: "Back to Darkroom" }).click();
  await expect(page).toHaveURL(/\/account\?purchase=/);
  await expect(page.getByTestId("purchase-outcome")).toContainText("not paid yet");
  await expect(page.getByTestId("balance")).toHaveText("100 credits");
  await expect(page.getByRole("cell", { name: "Pending" })).toBeVisible();
});
