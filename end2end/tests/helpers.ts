// Shared steps: a fresh account per test, found the way a person would.
import { expect, type Page } from "@playwright/test";

export function freshEmail(): string {
  return `e2e-${Date.now()}-${Math.random().toString(36).slice(2, 8)}@example.com`;
}

export const PASSWORD = "correct horse battery";

/** Signs up through the form and waits for the generator page. */
export async function signUp(page: Page, email = freshEmail()): Promise<string> {
  await page.goto("/signup");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign up" }).click();
  await expect(page.getByText("100 credits")).toBeVisible();
  await expect(page).toHaveURL(/\/$/);
  return email;
}

/** Waits until the page has hydrated (the WASM bundle took over). */
export async function hydrated(page: Page) {
  await page.waitForFunction(() => (window as any).__darkroom_hydrated === true);
}
