import { describe, expect, it } from "vitest";
import readme from "../../../README.md?raw";
import { loadConfig } from "../../../src/app/config.ts";
import { MAX_ATTEMPTS } from "../../../src/extend/client.ts";
import {
  MAX_CONCURRENT_PAGES,
  MAX_SCAN_BYTES_PER_ISOLATE,
  MAX_SCAN_PAGES_PER_ISOLATE,
} from "../../../src/stats/scan.ts";

/** Cloudflare's documented limits the README states (Workers limits page, November 2026). */
const FREE_SUBREQUESTS = 50;
const FREE_SERVICE_SUBREQUESTS = 1_000;
const PAID_SUBREQUESTS = 10_000;
const CONNECTIONS_PER_REQUEST = 6;
/** Per page: one gateway call, one KV read, at most one KV write. */
const SERVICE_CALLS_PER_PAGE = 3;

describe("the README's platform arithmetic", () => {
  const defaults = loadConfig({ EXTEND_API_KEY: "sk_test_defaults_only" } as Env);

  it("states the subrequests a /stats request makes with the defaults, and they fit the stated limits", () => {
    const pages = defaults.statsMaxPages;
    const serviceCalls = pages * SERVICE_CALLS_PER_PAGE;
    const extendFetches = pages * MAX_ATTEMPTS;
    expect(readme).toContain(
      `${pages} pages × ${SERVICE_CALLS_PER_PAGE} = ${serviceCalls} calls to Cloudflare services`,
    );
    expect(readme).toContain(`${pages} pages × ${MAX_ATTEMPTS} attempts = ${extendFetches} at worst`);
    expect(serviceCalls).toBeLessThanOrEqual(FREE_SERVICE_SUBREQUESTS);
    expect(extendFetches).toBeLessThanOrEqual(PAID_SUBREQUESTS);
    // The direct path does not fit Free: the README says so instead of claiming it does.
    expect(extendFetches).toBeGreaterThan(FREE_SUBREQUESTS);
    expect(readme).toContain("over Free's 50");
    expect(readme).toContain("**Live `/stats` scans need Workers Paid:**");
  });

  it("keeps a request's open connections within the platform's cap", () => {
    expect(MAX_CONCURRENT_PAGES).toBeLessThanOrEqual(CONNECTIONS_PER_REQUEST);
    expect(MAX_SCAN_PAGES_PER_ISOLATE).toBeLessThanOrEqual(MAX_CONCURRENT_PAGES);
    expect(readme).toContain(`at most ${MAX_CONCURRENT_PAGES} upstream requests open`);
    expect(readme).toContain(`at most ${MAX_SCAN_PAGES_PER_ISOLATE} scan pages are held per isolate`);
    expect(readme).toContain(`(at most ${MAX_SCAN_BYTES_PER_ISOLATE / 2 ** 20} MiB of them)`);
  });
});
