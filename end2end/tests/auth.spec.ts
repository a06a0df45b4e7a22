import { expect, test } from "@playwright/test";
import { PASSWORD, freshEmail, hydrated, signUp } from "./helpers";

test("sign up, stay signed in across a reload, sign out and back in", async ({ page }) => {
  await page.goto("/signup");
  await hydrated(page);
  const email = freshEmail();
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign up" }).click();

  await expect(page.getByText("100 credits")).toBeVisible();
  await expect(page).toHaveURL(/\/$/);
  await expect(page.getByLabel("Prompt")).toBeVisible();

  await page.reload();
  await expect(page.getByText("100 credits")).toBeVisible();

  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page).toHaveURL(/\/login$/);
  await expect(page.getByText("100 credits")).toHaveCount(0);

  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill("not the password");
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("alert")).toHaveText("wrong email or password");

  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByText("100 credits")).toBeVisible();
  await expect(page).toHaveURL(/\/$/);
});

test("signed-out visitors are sent to the login page, which remembers where they were going", async ({ page }) => {
  for (const [path, landing] of [["/", /\/login$/], ["/history", /\/login\?next=\/history$/]] as const) {
    await page.goto(path);
    await expect(page).toHaveURL(landing);
    await expect(page.getByRole("heading", { name: "Sign in" })).toBeVisible();
  }
});

test("sign-up errors are shown inline", async ({ page }) => {
  await page.goto("/signup");
  await hydrated(page);
  await page.getByLabel("Email").fill(freshEmail());
  await page.getByLabel("Password").fill("short");
  // The browser's own minlength check would stop the form: bypass it to see ours.
  await page.locator("form").evaluate((f: HTMLFormElement) => (f.noValidate = true));
  await page.getByRole("button", { name: "Sign up" }).click();
  await expect(page.getByRole("alert")).toHaveText("password must be at least 8 characters");
});

test.describe("without JavaScript", () => {
  test.use({ javaScriptEnabled: false });

  test("the server-rendered forms still sign up, out and in", async ({ page }) => {
    const email = freshEmail();
    await page.goto("/signup");
    await page.getByLabel("Email").fill(email);
    await page.getByLabel("Password").fill(PASSWORD);
    await page.getByRole("button", { name: "Sign up" }).click();
    await expect(page.getByText("100 credits")).toBeVisible();

    await page.getByRole("button", { name: "Sign out" }).click();
    await page.goto("/login");
    await expect(page.getByText("100 credits")).toHaveCount(0);

    await page.getByLabel("Email").fill(email);
    await page.getByLabel("Password").fill("not the password");
    await page.getByRole("button", { name: "Sign in" }).click();
    await expect(page.getByText("Wrong email or password.")).toBeVisible();

    await page.getByLabel("Email").fill(email);
    await page.getByLabel("Password").fill(PASSWORD);
    await page.getByRole("button", { name: "Sign in" }).click();
    await expect(page.getByText("100 credits")).toBeVisible();
    await expect(page.getByLabel("Prompt")).toBeVisible();
  });
});

export { signUp };

test.describe("a signed-out visitor without JavaScript", () => {
  test.use({ javaScriptEnabled: false });

  test("asking for history gets the sign-in form, then history", async ({ page, browser }) => {
    // An account made in another browser.
    const email = freshEmail();
    const other = await browser.newContext();
    const signup = await other.newPage();
    await signup.goto("/signup");
    await signup.getByLabel("Email").fill(email);
    await signup.getByLabel("Password").fill(PASSWORD);
    await signup.getByRole("button", { name: "Sign up" }).click();
    await expect(signup.getByText("100 credits")).toBeVisible();
    await other.close();

    const response = await page.goto("/history");
    expect(response?.status()).toBe(200);
    await expect(page).toHaveURL(/\/login\?next=\/history$/);
    await page.getByLabel("Email").fill(email);
    await page.getByLabel("Password").fill(PASSWORD);
    await page.getByRole("button", { name: "Sign in" }).click();
    await expect(page).toHaveURL(/\/history$/);
    await expect(page.getByRole("heading", { name: "History" })).toBeVisible();
  });
});

test("signing in from a page that needed it returns to that page", async ({ page, browser }) => {
  const email = freshEmail();
  const other = await browser.newContext();
  await signUp(await other.newPage(), email);
  await other.close();

  await page.goto("/history");
  await expect(page).toHaveURL(/\/login\?next=\/history$/);
  await hydrated(page);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page).toHaveURL(/\/history$/);
  await expect(page.getByRole("heading", { name: "History" })).toBeVisible();
});
