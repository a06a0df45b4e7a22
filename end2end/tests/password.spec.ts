// "Forgot password?": a link by mail sets a new password and ends every
// session. The server has no SMTP configured here, so its mail is the
// `.eml` files in its outbox folder (the embedded default), read as a
// person would open the message.
import { expect, test } from "@playwright/test";
import { PASSWORD, hydrated, mailedLink, signUp } from "./helpers";

const resetLink = (email: string) => mailedLink(`${process.env.E2E_DATA_DIR}/outbox`, email, "/reset");

test("Forgot password? sends a link that sets a new password and signs out everywhere", async ({ page, browser }) => {
  test.skip(!process.env.E2E_DATA_DIR, "needs the server's outbox folder");
  const email = await signUp(page);

  const other = await browser.newContext();
  const visitor = await other.newPage();
  await visitor.goto("/login");
  await visitor.getByRole("link", { name: "Forgot password?" }).click();
  await expect(visitor).toHaveURL(/\/forgot$/);
  await hydrated(visitor);
  await visitor.getByLabel("Email").fill(email);
  await visitor.getByRole("button", { name: "Send reset link" }).click();
  await expect(visitor.getByRole("status")).toContainText("If an account uses that address");

  let link: string | undefined;
  await expect.poll(() => (link = resetLink(email)), { message: "the mail is written" }).toBeTruthy();
  await visitor.goto(link!);
  await hydrated(visitor);
  // Too short: the browser holds the form back (minlength), nothing sent.
  await visitor.getByLabel("New password").fill("short");
  await visitor.getByRole("button", { name: "Set password" }).click();
  expect(await visitor.getByLabel("New password").evaluate((i) => (i as HTMLInputElement).validity.tooShort)).toBe(true);
  await expect(visitor).toHaveURL(/\/reset\?token=/);
  await visitor.getByLabel("New password").fill("a brand new secret");
  await visitor.getByRole("button", { name: "Set password" }).click();
  await expect(visitor).toHaveURL(/\/login\?reset=1$/);
  await expect(visitor.getByRole("status")).toHaveText("Your new password is set: sign in with it.");

  // The old password no longer works; the new one does.
  await hydrated(visitor);
  await visitor.getByLabel("Email").fill(email);
  await visitor.getByLabel("Password").fill(PASSWORD);
  await visitor.getByRole("button", { name: "Sign in" }).click();
  await expect(visitor.getByRole("alert")).toHaveText("wrong email or password");
  await visitor.getByLabel("Password").fill("a brand new secret");
  await visitor.getByRole("button", { name: "Sign in" }).click();
  await expect(visitor.getByText("100 credits")).toBeVisible();

  // The sign-up's session ended with the reset.
  await page.reload();
  await expect(page).toHaveURL(/\/login/);

  // The link worked once.
  await visitor.goto(link!);
  await hydrated(visitor);
  await visitor.getByLabel("New password").fill("yet another secret");
  await visitor.getByRole("button", { name: "Set password" }).click();
  await expect(visitor.getByRole("alert")).toContainText("expired or was already used");
  await other.close();
});
