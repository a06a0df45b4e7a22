// Playwright in Debian's Chromium (Playwright cannot download browsers here).
// The servers are the release build, started fresh with their own data
// dirs and a fast simulator (about 2 s per image): the one every test uses,
// a second one with a small provider budget for the queue, and a third
// where sign-ups verify their email, with an SMTP server beside it.
import { defineConfig } from "@playwright/test";

const port = process.env.E2E_PORT ?? "3100";
const baseURL = process.env.BASE_URL ?? `http://127.0.0.1:${port}`;
// Set here for the workers too (they inherit it): password.spec.ts reads
// the server's outbox folder.
const dataDir = (process.env.E2E_DATA_DIR ??= `/tmp/darkroom-e2e-${process.pid}`);
/** The second server, whose provider budget is small (queue.spec.ts). */
const queuePort = process.env.E2E_QUEUE_PORT ?? "3101";
/** The third, where sign-ups verify their address (verify.spec.ts). */
const verifyPort = process.env.E2E_VERIFY_PORT ?? "3102";
/** The SMTP server the third one sends through. */
const smtpPort = process.env.E2E_SMTP_PORT ?? "3125";

export default defineConfig({
  testDir: "./tests",
  timeout: 60_000,
  expect: { timeout: 15_000 },
  fullyParallel: true,
  workers: 2,
  retries: 0,
  reporter: [["list"]],
  globalSetup: "./global-setup.ts",
  use: {
    baseURL,
    trace: "retain-on-failure",
    screenshot: "only-on-failure",
    launchOptions: {
      executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    },
  },
  webServer: process.env.BASE_URL
    ? undefined
    : [
        server(port, dataDir, {}),
        // queue.spec.ts: a budget of one create in 15 s (80 % of 5 a minute),
        // so a second generation waits in the queue.
        server(queuePort, `${dataDir}-queue`, { DARKROOM_PROVIDER_LIMITS: "create=5/min" }),
        // verify.spec.ts: sign-ups confirm their address; the mail goes
        // through a real SMTP server (aiosmtpd, from PyPI), whose Maildir
        // the test reads.
        {
          command: `rm -rf ${dataDir}-maildir && python3 -m aiosmtpd -n -l 127.0.0.1:${smtpPort} -c aiosmtpd.handlers.Mailbox ${dataDir}-maildir`,
          port: Number(smtpPort),
          timeout: 30_000,
          reuseExistingServer: false,
        },
        server(verifyPort, `${dataDir}-verify`, {
          DARKROOM_REQUIRE_VERIFIED_EMAIL: "true",
          DARKROOM_SMTP_URL: `smtp://127.0.0.1:${smtpPort}`,
        }),
      ],
});

/** The release build, fresh, with its own data dir and a fast simulator. */
function server(port: string, dataDir: string, env: Record<string, string>) {
  return {
    command: `rm -rf ${dataDir} && ./target/release/darkroom`,
    cwd: "..",
    url: `http://127.0.0.1:${port}/healthz`,
    timeout: 120_000,
    reuseExistingServer: false,
    stdout: "pipe" as const,
    stderr: "pipe" as const,
    env: {
      LEPTOS_SITE_ADDR: `127.0.0.1:${port}`,
      LEPTOS_SITE_ROOT: "target/site",
      DARKROOM_DATA_DIR: dataDir,
      DARKROOM_SIM_DURATION_MS: "2000",
      DARKROOM_POLL_INTERVAL_MS: "1000",
      DARKROOM_PROVIDER_CHECK_MS: "500",
      DARKROOM_AUTH_ATTEMPTS_PER_MINUTE: "10000",
      DARKROOM_SIGNUPS_PER_HOUR: "1000000",
      DARKROOM_SIGNUPS_PER_ADDRESS_PER_HOUR: "1000000",
      RUST_LOG: "warn",
      ...env,
    },
  };
}
