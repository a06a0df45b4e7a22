// Verified email: a sign-up is told to check its inbox, the link mailed
// through a real SMTP server (aiosmtpd; the test reads its Maildir)
// confirms the address, signs in with the free credits, and generating
// works.
import { expect, test } from "@playwright/test";
import { PASSWORD, freshEmail, hydrated, mailedLink } from "./helpers";

test.use({ baseURL: `http://127.0.0.1:${process.env.E2E_VERIFY_PORT ?? "3102"}` });
test.skip(!!process.env.BASE_URL || !process.env.E2E_DATA_DIR, "needs the verifying server and its outbox");

const verifyLink = (email: string) => mailedLink(`${process.env.E2E_DATA_DIR}-maildir/new`, email, "/verify");

test("sign up, open the link from the mail, and generate with the free credits", async ({ page }) => {
  const email = freshEmail();
  await page.goto("/signup");
  await hydrated(page);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign up" }).click();
  await expect(page.getByRole("status")).toContainText("Check your inbox");
  await expect(page).toHaveURL(/\/signup$/);

  // Signed in before the link: the generator says why it cannot generate.
  await page.goto("/login");
  await hydrated(page);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("heading", { name: "Confirm your email address" })).toBeVisible();
  await expect(page.getByTestId("balance")).toHaveText("0 credits");
  await expect(page.locator("#generate-hint")).toHaveText("Confirm your email address first: open the link we mailed you.");
  await expect(page.getByRole("link", { name: "Buy credits" })).toHaveCount(0);

  let link: string | undefined;
  await expect.poll(() => (link = verifyLink(email)), { message: "the mail is written" }).toBeTruthy();
  await page.goto(link!);
  await hydrated(page);
  await page.getByRole("button", { name: "Verify email" }).click();
  await expect(page).toHaveURL(/\/$/);
  await expect(page.getByTestId("balance")).toHaveText("100 credits");
  await expect(page.getByRole("heading", { name: "Confirm your email address" })).toHaveCount(0);
  await hydrated(page);
  await page.getByLabel("Prompt", { exact: true }).fill("a heron at first light");
  await page.getByRole("button", { name: "Generate" }).click();
  await expect(page.getByRole("img", { name: "a heron at first light" })).toBeVisible({ timeout: 30_000 });
});
