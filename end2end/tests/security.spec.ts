import { expect, test, type Page } from "@playwright/test";
import { hydrated, signUp } from "./helpers";

/** Fails the test on any Content-Security-Policy violation the page reports. */
function watchPolicy(page: Page): string[] {
  const violations: string[] = [];
  page.on("console", (message) => {
    if (/Content Security Policy|Refused to/i.test(message.text())) violations.push(message.text());
  });
  return violations;
}

test("pages hydrate and run under their Content-Security-Policy", async ({ page }) => {
  const violations = watchPolicy(page);
  const response = await page.goto("/login");
  const policy = response?.headers()["content-security-policy"] ?? "";
  expect(policy).toContain("frame-ancestors 'none'");
  expect(policy).toContain("'nonce-");
  expect(response?.headers()["x-frame-options"]).toBe("DENY");

  await signUp(page);
  await hydrated(page);
  await page.getByLabel("Prompt").fill("a policed lighthouse");
  await page.getByRole("button", { name: "Generate" }).click();
  await expect(page.getByRole("img", { name: "a policed lighthouse" })).toBeVisible();
  await page.goto("/history");
  await hydrated(page);
  await expect(page.getByRole("heading", { name: "History" })).toBeVisible();
  expect(violations).toEqual([]);
});

test("at the cap of generations running at once, Generate says why and rests", async ({ page }) => {
  await signUp(page);
  await hydrated(page);
  const generate = page.getByRole("button", { name: "Generate" });
  // Four slow generations: the default cap.
  for (const [n, left] of [[1, 90], [2, 80], [3, 70], [4, 60]]) {
    await page.getByLabel("Prompt").fill(`a slow fox ${n} #slow`);
    await generate.click();
    await expect(page.getByText(`${left} credits`)).toBeVisible();
    await expect(generate).toBeEnabled();
  }
  await page.getByLabel("Prompt").fill("one fox too many");
  await generate.click();
  await expect(page.getByRole("alert")).toHaveText("You have 4 generations running; wait for one to finish.");
  await expect(generate).toBeDisabled();
  await expect(page.getByText(/Generate is available again in \d+ s\./)).toBeVisible();
  await expect(page.getByText("60 credits")).toBeVisible();
});
