// Waits until the server answers (also when BASE_URL points at a server
// started elsewhere, e.g. by `cargo leptos end-to-end`, which does not wait).
export default async function globalSetup() {
  const base = process.env.BASE_URL ?? `http://127.0.0.1:${process.env.E2E_PORT ?? "3100"}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      const res = await fetch(`${base}/healthz`);
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${base} did not answer /healthz within 60 s`);
    await new Promise((r) => setTimeout(r, 250));
  }
}
