// Images in, in the browser: an image to start from, picked with the file
// picker or pasted, shown before and after the generation; an upscale of
// the result from history; a variation of it; and the upload without
// JavaScript.
import { expect, test, type Page } from "@playwright/test";
import { deflateSync } from "node:zlib";
import { hydrated, signUp } from "./helpers";

const SDXL = "Stable Diffusion XL";

/** A PNG of one colour (CRCs computed: browsers and the server check them). */
function png(width: number, height: number, rgb: [number, number, number]): Buffer {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (bytes: Buffer) => {
    let c = 0xffffffff;
    for (const b of bytes) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (kind: string, data: Buffer) => {
    const body = Buffer.concat([Buffer.from(kind, "ascii"), data]);
    const out = Buffer.alloc(8 + data.length + 4);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(crc(body), 8 + data.length);
    return out;
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 2, 0, 0, 0], 8);
  const row = Buffer.concat([Buffer.from([0]), Buffer.from(Array(width).fill(rgb).flat())]);
  const raw = Buffer.concat(Array(height).fill(row));
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", header),
    chunk("IDAT", deflateSync(raw)),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

/** Pastes a PNG into the prompt, as a person pasting a copied image does. */
async function paste(page: Page, bytes: number[]) {
  await page.getByLabel("Prompt", { exact: true }).evaluate((el, bytes) => {
    const data = new DataTransfer();
    data.items.add(new File([new Uint8Array(bytes)], "pasted.png", { type: "image/png" }));
    el.dispatchEvent(new ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true }));
  }, bytes);
}

/** The image's natural width and height once it has loaded. */
async function naturalSize(page: Page, name: string | RegExp): Promise<number[]> {
  return page
    .getByRole("img", { name })
    .first()
    .evaluate((i) => [(i as HTMLImageElement).naturalWidth, (i as HTMLImageElement).naturalHeight]);
}

test("an image picked with the file picker starts a generation, and history upscales the result", async ({ page }) => {
  await signUp(page);
  await hydrated(page);
  // FLUX takes no image: the field is only there for SDXL.
  await expect(page.getByLabel("Start from an image")).toHaveCount(0);
  await page.getByLabel("Model").selectOption({ label: SDXL });
  await page.getByLabel("Start from an image").setInputFiles({
    name: "red.png",
    mimeType: "image/png",
    buffer: png(120, 80, [220, 30, 30]),
  });
  await expect(page.getByRole("img", { name: "The image to start from" })).toBeVisible();
  await expect.poll(() => naturalSize(page, "The image to start from")).toEqual([120, 80]);
  await page.getByLabel("Prompt", { exact: true }).fill("a red barn at noon");
  await page.getByRole("button", { name: "Generate" }).click();

  // The card shows the input beside the result.
  await expect(page.getByRole("img", { name: /the image it started from/ })).toBeVisible();
  await expect(page.getByRole("img", { name: "a red barn at noon" })).toBeVisible();
  await expect(page.getByText("90 credits")).toBeVisible();

  await page.getByRole("link", { name: "History" }).click();
  await expect(page.getByRole("heading", { name: "History" })).toBeVisible();
  await hydrated(page);
  const [width, height] = await naturalSize(page, "a red barn at noon");
  await page.getByRole("button", { name: "Upscale" }).first().click();
  // The upscale shows first, charged, and finishes twice as large.
  await expect(page.getByText("Upscaled 2×")).toBeVisible();
  await expect(page.getByText("80 credits")).toBeVisible();
  const upscaled = page.locator("article.task-card").first();
  await expect(upscaled).toHaveAttribute("data-status", "completed", { timeout: 30_000 });
  const large = await upscaled
    .getByRole("img", { name: "a red barn at noon" })
    .evaluate((i) => [(i as HTMLImageElement).naturalWidth, (i as HTMLImageElement).naturalHeight]);
  expect(large).toEqual([width * 2, height * 2]);
});

test("Vary on a finished image makes a new one from it, with its prompt", async ({ page }) => {
  await signUp(page);
  await hydrated(page);
  await page.getByLabel("Prompt", { exact: true }).fill("a green hill at dawn");
  await page.getByRole("button", { name: "Generate" }).click();
  await expect(page.getByRole("img", { name: "a green hill at dawn" })).toBeVisible({ timeout: 30_000 });
  await page.getByRole("button", { name: "Vary" }).click();
  // The variation shows in its place, beside the image it started from.
  await expect(page.getByText("Variation of")).toBeVisible();
  const card = page.locator("article.task-card").first();
  await expect(card.getByRole("img", { name: /the image it started from/ })).toBeVisible();
  await expect(card).toHaveAttribute("data-status", "completed", { timeout: 30_000 });
  await expect(card.getByRole("img", { name: "a green hill at dawn" })).toBeVisible();
});

test("an image pasted into the form is the one to start from, and Remove image lets it go", async ({ page }) => {
  await signUp(page);
  await hydrated(page);
  await page.getByLabel("Model").selectOption({ label: SDXL });
  const bytes = [...png(64, 64, [30, 30, 220])];
  await paste(page, bytes);
  await expect(page.getByRole("img", { name: "The image to start from" })).toBeVisible();
  await page.getByRole("button", { name: "Remove image" }).click();
  await expect(page.getByRole("img", { name: "The image to start from" })).toHaveCount(0);

  await paste(page, bytes);
  await expect(page.getByRole("img", { name: "The image to start from" })).toBeVisible();
  await page.getByLabel("Prompt", { exact: true }).fill("a blue lake");
  await page.getByRole("button", { name: "Generate" }).click();
  await expect(page.getByRole("img", { name: /the image it started from/ })).toBeVisible();
  await expect(page.getByRole("img", { name: "a blue lake" })).toBeVisible();
});

test("a file that is not an image is refused in words, and nothing is charged", async ({ page }) => {
  await signUp(page);
  await hydrated(page);
  await page.getByLabel("Model").selectOption({ label: SDXL });
  await page.getByLabel("Start from an image").setInputFiles({
    name: "fake.png",
    mimeType: "image/png",
    buffer: Buffer.from("<svg xmlns='http://www.w3.org/2000/svg'></svg>"),
  });
  await expect(page.getByRole("alert")).toContainText("PNG, JPEG and WebP");
  await expect(page.getByRole("img", { name: "The image to start from" })).toHaveCount(0);
  await expect(page.getByText("100 credits")).toBeVisible();
});

test.describe("without JavaScript", () => {
  test.use({ javaScriptEnabled: false });

  test("the upload form posts the file, and the generator starts from it", async ({ page }) => {
    await signUp(page);
    // Without JavaScript the model picker cannot redraw the form: SDXL's
    // fields come with the page that has it chosen.
    await page.goto("/?model=stability-ai/sdxl");
    await page.getByLabel("Start from an image").setInputFiles({
      name: "green.png",
      mimeType: "image/png",
      buffer: png(50, 50, [30, 200, 30]),
    });
    await page.getByRole("button", { name: "Upload" }).click();
    await expect(page).toHaveURL(/\/\?image=/);
    // The page it leads back to has a model chosen that takes the image.
    await expect(page.getByLabel("Model")).toHaveValue("stability-ai/sdxl");
    await expect(page.getByRole("img", { name: "The image to start from" })).toBeVisible();
    await page.getByLabel("Prompt", { exact: true }).fill("a green meadow");
    await page.getByRole("button", { name: "Generate" }).click();
    await expect(page.getByText("90 credits")).toBeVisible();
  });
});
