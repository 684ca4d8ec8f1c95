import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";
import { FAKE_EXTEND_ORIGIN, TEST_UPSTREAM_KEY } from "./test/worker/support/constants.ts";

export default defineConfig({
  test: {
    // Every request writes its log line; show them only for a failing test.
    silent: "passed-only",
    // Most suites wait on real timeouts, windows and back-offs rather than the CPU; vitest's
    // default of one worker per spare core runs them one after another on a two-core machine.
    maxWorkers: 3,
    projects: [
      {
        plugins: [
          cloudflareTest({
            wrangler: { configPath: "./wrangler.toml" },
            miniflare: {
              bindings: {
                EXTEND_API_KEY: TEST_UPSTREAM_KEY,
                EXTEND_API_BASE_URL: FAKE_EXTEND_ORIGIN,
                ALLOW_ANONYMOUS: "true",
                // The suites test the live scan unless they turn the run index on themselves
                // (test/worker/support/run-index.ts): a backfill started by every /stats call
                // would keep calling a fake that belongs to a finished test.
                RUN_INDEX: "off",
              },
            },
          }),
        ],
        test: {
          name: "worker",
          include: ["test/worker/**/*.test.ts"],
          // Fault tests wait on real (short) timeouts and back-offs; a shared, loaded CI machine
          // can stretch them well past vitest's 5 s default without anything being wrong.
          testTimeout: 20_000,
          setupFiles: ["./test/worker/support/setup.ts"],
        },
      },
      {
        test: {
          name: "e2e",
          include: ["test/e2e/**/*.test.ts"],
          environment: "node",
          testTimeout: 120_000,
          hookTimeout: 120_000,
        },
      },
      {
        test: {
          // Real Chromium (the Debian package) against the proxy under `wrangler dev`; skipped,
          // with a line saying so, on a machine without Chromium.
          name: "browser",
          include: ["test/browser/**/*.test.ts"],
          environment: "node",
          globalSetup: ["./test/browser/support/global-setup.ts"],
          testTimeout: 60_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});
