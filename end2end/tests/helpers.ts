// Shared steps: a fresh account per test, found the way a person would.
import { expect, type Page } from "@playwright/test";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";

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

/**
 * Waits until the page has hydrated: every island on it ran its code
 * (`window.__darkroom_hydrated`, see `island_hydrated` in src/lib.rs).
 * Fails at once if the bundle panicked, and otherwise with what the page
 * loaded, so a failure says why.
 */
export async function hydrated(page: Page, timeout = 15_000) {
  expect(await waitForHydration(page, timeout), "the page hydrates").toBe("hydrated");
}

async function waitForHydration(page: Page, timeout: number): Promise<string> {
  return page
    .waitForFunction(
      () => {
        const w = window as any;
        if (w.__darkroom_hydrated === true) return "hydrated";
        return w.__darkroom_panic ? `panicked: ${w.__darkroom_panic}` : false;
      },
      undefined,
      { timeout },
    )
    .then((handle) => handle.jsonValue() as Promise<string>)
    .catch(async (e) => {
      const seen = await page
        .evaluate(() => ({
          url: location.href,
          readyState: document.readyState,
          bundle: performance
            .getEntriesByType("resource")
            .filter((r) => r.name.includes("/pkg/"))
            .map((r) => `${r.name} ${(r as PerformanceResourceTiming).responseStatus} ${Math.round(r.duration)} ms`),
        }))
        .catch(() => "(the page could not be read)");
      return `not hydrated after ${timeout / 1000} s (${e}); the page: ${JSON.stringify(seen)}`;
    });
}

/**
 * The link to `path` (`/reset`, `/verify`) in a message to `email` in
 * `folder` (a server's outbox, `<dataDir>/outbox`, or an SMTP server's
 * Maildir, `new/`), once there; quoted-printable decoded.
 */
export function mailedLink(folder: string, email: string, path: string): string | undefined {
  let files: string[];
  try {
    files = readdirSync(folder);
  } catch {
    return undefined;
  }
  for (const file of files) {
    const message = readFileSync(join(folder, file), "utf8");
    if (!message.split(/\r?\n/).includes(`To: ${email}`)) continue;
    const text = message.replace(/=\r?\n/g, "").replace(/=([0-9A-F]{2})/g, (_, h) => String.fromCharCode(parseInt(h, 16)));
    const link = text.match(new RegExp(`https?://\\S+${path}\\?token=[\\w-]+`))?.[0];
    if (link) return link;
  }
  return undefined;
}
