// fal's official JavaScript client (@fal-ai/client, installed in end2end/)
// against fal's simulator: `subscribe` (submit, poll the status with logs,
// read the result), `queue.submit` / `status` / `cancel`, and a failed
// request. Its request middleware sends what it addresses to
// https://queue.fal.run to the simulator instead. Run by
// tests/api/clients.rs with FAL_KEY and FAL_SIM; exits non-zero on any
// difference.
const { createFalClient, ApiError } = require("@fal-ai/client");
const { FAL_KEY, FAL_SIM } = process.env;

const toSimulator = async (request) => ({ ...request, url: request.url.replace("https://queue.fal.run", FAL_SIM) });
const fal = createFalClient({ credentials: FAL_KEY, requestMiddleware: toSimulator });
const MODEL = "fal-ai/flux/dev";

function expect(ok, what) {
  if (!ok) throw new Error(what);
}

(async () => {
  const seen = new Set();
  const done = await fal.subscribe(MODEL, {
    input: { prompt: "a fox by the official client", image_size: "landscape_16_9", num_images: 2, seed: 7 },
    logs: true,
    mode: "polling",
    pollInterval: 100,
    onQueueUpdate: (update) => seen.add(update.status),
  });
  expect(typeof done.requestId === "string" && done.requestId.length > 0, `request id ${done.requestId}`);
  expect(done.data.images.length === 2, `two images: ${JSON.stringify(done.data)}`);
  expect(done.data.seed === 7, `the seed: ${done.data.seed}`);
  expect(done.data.images[0].width > done.data.images[0].height, "landscape");
  const image = await fetch(done.data.images[0].url);
  expect(image.ok && (await image.arrayBuffer()).byteLength > 100, "the image downloads");
  expect(seen.has("COMPLETED"), `statuses seen: ${[...seen]}`);

  const { request_id: slow } = await fal.queue.submit(MODEL, { input: { prompt: "a slow fox #slow" } });
  const status = await fal.queue.status(MODEL, { requestId: slow, logs: true });
  expect(status.status === "IN_QUEUE" && typeof status.queue_position === "number", JSON.stringify(status));
  await fal.queue.cancel(MODEL, { requestId: slow });
  const after = await fal.queue.status(MODEL, { requestId: slow });
  expect(after.status === "COMPLETED", `canceled: ${JSON.stringify(after)}`);

  let failed = null;
  try {
    await fal.subscribe(MODEL, { input: { prompt: "a doomed fox #fail" }, mode: "polling", pollInterval: 100 });
  } catch (e) {
    failed = e;
  }
  expect(failed instanceof ApiError, `a failed request rejects: ${failed}`);

  let unauthorized = null;
  try {
    const stranger = createFalClient({ credentials: "wrong", requestMiddleware: toSimulator });
    await stranger.queue.submit(MODEL, { input: { prompt: "x" } });
  } catch (e) {
    unauthorized = e;
  }
  expect(unauthorized instanceof ApiError && unauthorized.status === 401, `a wrong key is refused: ${unauthorized}`);
  console.log("fal client: ok");
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
