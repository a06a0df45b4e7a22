import { expect, test } from "@playwright/test";
import { PASSWORD, freshEmail, hydrated, mailedLink, signUp } from "./helpers";

async function generate(page: import("@playwright/test").Page, prompt: string) {
  await page.getByLabel("Prompt").fill(prompt);
  await page.getByRole("button", { name: "Generate" }).click();
  await expect(page.getByRole("img", { name: prompt })).toBeVisible();
}

test("a shared image opens for anyone with the link, until sharing stops", async ({ page, browser }) => {
  await page.context().grantPermissions(["clipboard-read", "clipboard-write"]);
  await signUp(page);
  await hydrated(page);
  await generate(page, "a shared lighthouse");

  await page.getByRole("button", { name: "Share", exact: true }).click();
  const link = page.getByRole("textbox", { name: "Public link" });
  await expect(link).toHaveValue(/^http:\/\/127\.0\.0\.1:\d+\/s\/[A-Za-z0-9_-]{22}$/);
  const url = await link.inputValue();
  await page.getByRole("button", { name: "Copy link" }).click();
  await expect(page.getByRole("button", { name: "Copied" })).toBeVisible();
  expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(url);

  // A stranger: a fresh browser context, signed out.
  const stranger = await browser.newContext();
  const outside = await stranger.newPage();
  const opened = await outside.goto(url);
  expect(opened?.status()).toBe(200);
  const image = outside.getByRole("img", { name: "a shared lighthouse" });
  await expect(image).toBeVisible();
  expect(await image.evaluate((img: HTMLImageElement) => img.naturalWidth)).toBeGreaterThan(0);
  await expect(outside.locator('meta[property="og:image"]')).toHaveAttribute("content", `${url}/image`);

  await page.getByRole("button", { name: "Stop sharing" }).click();
  await expect(page.getByRole("button", { name: "Share", exact: true })).toBeVisible();
  const after = await outside.goto(url);
  expect(after?.status()).toBe(404);
  await stranger.close();
});

test("an image is deleted from history after a confirmation", async ({ page }) => {
  await signUp(page);
  await hydrated(page);
  await generate(page, "a deletable kite");

  await page.goto("/history");
  await hydrated(page);
  const card = page.getByRole("listitem").filter({ hasText: "a deletable kite" });
  await card.getByRole("button", { name: "Delete", exact: true }).click();
  await expect(card.getByText("Delete this image for good?")).toBeVisible();
  // Keep: nothing happens.
  await card.getByRole("button", { name: "Keep" }).click();
  await expect(card.getByRole("img", { name: "a deletable kite" })).toBeVisible();

  await card.getByRole("button", { name: "Delete", exact: true }).click();
  await card.getByRole("button", { name: "Yes, delete" }).click();
  await expect(page.getByRole("listitem").filter({ hasText: "a deletable kite" })).toHaveCount(0);
  await page.reload();
  await expect(page.getByRole("heading", { name: "History" })).toBeVisible();
  await expect(page.getByText("a deletable kite")).toHaveCount(0);

  // The ledger keeps the charge, without the prompt.
  await page.getByRole("link", { name: "Account", exact: true }).click();
  await expect(page.getByRole("heading", { name: "Account", level: 1 })).toBeVisible();
  await expect(page.getByRole("cell", { name: "Image (deleted)" })).toBeVisible();
  await expect(page.getByRole("cell", { name: "−10" })).toBeVisible();
  await expect(page.getByRole("cell", { name: "Sign-up credits" })).toBeVisible();
});

test("a changed password signs in and the old one no longer does", async ({ page }) => {
  const email = await signUp(page);
  await hydrated(page);
  await page.getByRole("link", { name: "Account", exact: true }).click();
  await expect(page.getByRole("heading", { name: "Account", level: 1 })).toBeVisible();
  await hydrated(page);

  await page.getByLabel("Current password").fill("not my password");
  await page.getByLabel("New password").fill("a brand new secret");
  await page.getByRole("button", { name: "Change password" }).click();
  await expect(page.getByRole("alert")).toHaveText("the current password is wrong");

  await page.getByLabel("Current password").fill(PASSWORD);
  await page.getByLabel("New password").fill("a brand new secret");
  await page.getByRole("button", { name: "Change password" }).click();
  await expect(page.getByText("Password changed.")).toBeVisible();
  // Still signed in here.
  await page.reload();
  await expect(page.getByRole("heading", { name: "Account", level: 1 })).toBeVisible();

  await page.getByRole("button", { name: "Sign out", exact: true }).click();
  await expect(page).toHaveURL(/\/login/);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("alert")).toHaveText("wrong email or password");
  await page.getByLabel("Password").fill("a brand new secret");
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByText("100 credits")).toBeVisible();
  await expect(page).toHaveURL(/\/$/);
});

test("Sign out everywhere ends the sessions of every browser", async ({ page, browser }) => {
  const email = await signUp(page);
  const other = await browser.newContext();
  const laptop = await other.newPage();
  await laptop.goto("/login");
  await laptop.getByLabel("Email").fill(email);
  await laptop.getByLabel("Password").fill(PASSWORD);
  await laptop.getByRole("button", { name: "Sign in" }).click();
  await expect(laptop.getByText("100 credits")).toBeVisible();

  await page.getByRole("link", { name: "Account", exact: true }).click();
  await page.getByRole("button", { name: "Sign out everywhere" }).click();
  await expect(page).toHaveURL(/\/login$/);
  await laptop.reload();
  await expect(laptop).toHaveURL(/\/login/);
  await expect(laptop.getByText("100 credits")).toHaveCount(0);
  await other.close();
});

test("Delete account asks for the password, then nothing of the account signs in", async ({ page }) => {
  const email = await signUp(page);
  await page.getByRole("link", { name: "Account" }).click();
  // The section's heading does not say "account": the page's own heading
  // is the one named "Account".
  await expect(page.getByRole("heading", { name: "Leave Darkroom" })).toBeVisible();
  await page.getByLabel("Your password").fill("not the password");
  await page.getByRole("button", { name: "Delete account" }).click();
  await expect(page.getByRole("alert")).toHaveText("The password is wrong; the account was not deleted.");

  await page.getByLabel("Your password").fill(PASSWORD);
  await page.getByRole("button", { name: "Delete account" }).click();
  await expect(page).toHaveURL(/\/login\?deleted=1$/);
  await expect(page.getByRole("status")).toHaveText("Your account is deleted.");
  await hydrated(page);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("alert")).toHaveText("wrong email or password");
});

test("Change email sends a link to the new address; the email changes when it is opened", async ({ page }) => {
  test.skip(!process.env.E2E_DATA_DIR, "needs the server's outbox folder");
  await signUp(page);
  await page.getByRole("link", { name: "Account" }).click();
  const moved = freshEmail();
  await page.getByLabel("New email").fill(moved);
  await page.getByLabel("Password to confirm").fill(PASSWORD);
  await page.getByRole("button", { name: "Change email" }).click();
  await expect(page.getByRole("status")).toHaveText("We sent a link to the new address: open it to finish the change.");

  let link: string | undefined;
  const outbox = `${process.env.E2E_DATA_DIR}/outbox`;
  await expect.poll(() => (link = mailedLink(outbox, moved, "/verify")), { message: "the mail is written" }).toBeTruthy();
  await page.goto(link!);
  await hydrated(page);
  await page.getByRole("button", { name: "Verify email" }).click();
  await expect(page).toHaveURL(/\/$/);
  await page.getByRole("link", { name: "Account" }).click();
  await expect(page.locator(".summary dd").first()).toHaveText(moved);
});
