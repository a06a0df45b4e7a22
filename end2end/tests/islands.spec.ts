// The page is server-rendered HTML with islands: only the header's balance
// and the generator hydrate on `/`. The generator must still be fully
// interactive, and the balance (another island) must follow what the
// generator does, without a reload.
import { expect, test, type Page } from "@playwright/test";
import { hydrated, signUp } from "./helpers";

/** The islands on the page, by component name (without Leptos' hash). */
async function islands(page: Page): Promise<string[]> {
  return page
    .locator("leptos-island")
    .evaluateAll((els) => els.map((e) => (e as HTMLElement).dataset.component!.replace(/_\d+$/, "")));
}

test("the generator is an island that runs, and the header's balance follows a charge and a refund", async ({ page }) => {
  await signUp(page);
  await hydrated(page);
  expect(await islands(page)).toEqual(["Balance", "Generator"]);
  const balance = page.getByTestId("balance");
  await expect(balance).toHaveText("100 credits");

  const generate = page.getByRole("button", { name: "Generate" });
  await expect(generate).toBeEnabled();
  await page.getByLabel("Prompt").fill("an island at noon");
  await generate.click();
  await expect(balance).toHaveText("90 credits");
  await expect(page.getByRole("img", { name: "an island at noon" })).toBeVisible();
  await expect(balance).toHaveText("90 credits");

  await page.getByLabel("Prompt").fill("an island in a storm #fail");
  await generate.click();
  await expect(balance).toHaveText("80 credits");
  await expect(page.getByText("10 credits refunded.")).toBeVisible();
  await expect(balance).toHaveText("90 credits");
});

test("each page ships only its interactive parts as islands", async ({ page }) => {
  await page.goto("/login");
  expect(await islands(page)).toEqual(["AuthForm"]);
  await signUp(page);
  await page.goto("/history");
  await hydrated(page);
  expect(await islands(page)).toEqual(["Balance", "HistoryGrid"]);
  await page.goto("/account");
  await hydrated(page);
  expect(await islands(page)).toEqual(["Balance", "PasswordForm"]);
});

test("a page fetches the code of the islands it shows, and the generator's page no other", async ({ page }) => {
  let fetched: string[] = [];
  page.on("response", (r) => {
    const path = new URL(r.url()).pathname;
    if (path.endsWith(".wasm")) fetched.push(path.replace(/^\/pkg\//, ""));
  });
  await signUp(page);
  fetched = [];
  await page.goto("/");
  await hydrated(page);
  expect(fetched).toEqual(["darkroom.wasm"]);
  fetched = [];
  await page.goto("/history");
  await hydrated(page);
  expect(fetched).toContain("darkroom.wasm");
  expect(fetched.filter((f) => f.startsWith("split_"))).toEqual([expect.stringMatching(/^split_history_grid_loader_\d+\.wasm$/)]);
  // The lazy island runs: its live cards are there and it counted itself.
  await expect(page.getByRole("heading", { name: "History" })).toBeVisible();
});

test("the task card's code arrives with the first prompt, and a resumed task shows at once, with or without JavaScript", async ({ page, browser }) => {
  let fetched: string[] = [];
  page.on("response", (r) => {
    const path = new URL(r.url()).pathname;
    if (path.endsWith(".wasm")) fetched.push(path.replace(/^\/pkg\//, ""));
  });
  await signUp(page);
  await hydrated(page);
  fetched = [];
  // Typing a prompt fetches the card's code, once.
  await page.getByLabel("Prompt").fill("a card on demand #ms=6000");
  const cardCode = [expect.stringMatching(/^split_live_task_card_\d+\.wasm$/)];
  await expect.poll(() => fetched.filter((f) => f.startsWith("split_"))).toEqual(cardCode);
  await page.getByRole("button", { name: "Generate" }).click();
  await expect(page.getByText("Processing", { exact: true })).toBeVisible();
  expect(fetched.filter((f) => f.startsWith("split_"))).toEqual(cardCode);

  // Reloaded mid-way: the server's card is in the page before any script
  // runs, then the live one takes its place (one card, and it finishes).
  const response = await page.reload();
  expect(await response!.text()).toContain("a card on demand");
  await hydrated(page);
  await expect(page.getByRole("img", { name: "a card on demand" })).toBeVisible();
  await expect(page.locator("article.task-card")).toHaveCount(1);
  await expect(page.getByText("a card on demand")).toHaveCount(1);

  // Without JavaScript the resumed task is there too.
  await page.getByLabel("Prompt").fill("a card without scripts #ms=6000");
  await page.getByRole("button", { name: "Generate" }).click();
  await expect(page.getByText("Processing", { exact: true })).toBeVisible();
  const context = await browser.newContext({ storageState: await page.context().storageState(), javaScriptEnabled: false });
  const plain = await context.newPage();
  await plain.goto("/");
  await expect(plain.locator("article.task-card")).toHaveCount(1);
  await expect(plain.getByText("a card without scripts")).toBeVisible();
  await expect(plain.getByText("Processing", { exact: true })).toBeVisible();
  await context.close();
});
