import { describe, expect, it } from "vitest";
import { generateRuns } from "../../../fake/extend.ts";
import { busiestWindow } from "../../../fake/windows.ts";
import { ApiError } from "../../../src/app/errors.ts";
import type { PageSource } from "../../../src/cache/pages.ts";
import type { ListOptions } from "../../../src/extend/client.ts";
import { BudgetPaused } from "../../../src/gateway/isolate-budget.ts";
import { advanceScan, MAX_PAUSE_WAIT_MS, planScan } from "../../../src/stats/scan.ts";
import { TEST_UPSTREAM_KEY } from "../support/constants.ts";
import { json } from "../support/proxy.ts";
import { getStats, referenceStats, statsPath, summary } from "../support/stats.ts";
import { isolatedTenant } from "../support/tenant.ts";

/**
 * A page source of endless one-run pages that refuses, as the tenant's budget does, every call
 * for which `refuse(call)` holds; it counts the calls it served.
 */
function endlessPages(refuse: (call: number) => boolean): PageSource & { calls: number } {
  let asked = 0;
  const source = {
    calls: 0,
    async get(_query: unknown, _options?: ListOptions) {
      asked += 1;
      if (refuse(asked)) throw new BudgetPaused(8000);
      source.calls += 1;
      const run = { id: `run_${source.calls}`, status: "PROCESSED", createdAt: "2026-10-01T00:00:00.000Z" };
      const nextPageToken = `cursor_${source.calls}`;
      const body = Uint8Array.from(
        new TextEncoder().encode(JSON.stringify({ object: "list", data: [run], nextPageToken })),
      );
      return { cache: "MISS" as const, page: { body, data: [run], nextPageToken }, release: () => undefined };
    },
  };
  return source;
}

describe("a scan the tenant's budget refuses", () => {
  it("ends with a 503 and Retry-After, having read no page, when the first pages are refused", async () => {
    const pages = endlessPages(() => true);
    const outcome = await advanceScan({}, planScan({}), { pages, maxPages: 50 }).catch(
      (error: unknown) => error,
    );
    expect(outcome).toBeInstanceOf(ApiError);
    expect(outcome).toMatchObject({ code: "UPSTREAM_RATE_LIMITED", status: 503, retryAfter: 8 });
    expect(pages.calls).toBe(0);
  });

  it("returns the pages read so far, resumable, when refusals start mid-scan", async () => {
    const pages = endlessPages((call) => call > 1);
    const state = planScan({ status: "PROCESSED" });
    const progress = await advanceScan({ status: "PROCESSED" }, state, {
      pages,
      maxPages: 50,
      concurrency: 1,
    });
    expect(pages.calls).toBe(1);
    expect(progress).toMatchObject({ complete: false, pagesThisRequest: 1 });
    expect(progress.state.pagesFetched).toBe(1);
    // The walk moved past the page it read, so a resume token continues from there.
    expect(progress.state.partitions[0]?.desc).toMatchObject({ phase: "active", cursor: "cursor_1" });
  });

  it("asks for bulk priority, a wait within its own time budget, and names its caller", async () => {
    const seen: ListOptions[] = [];
    const pages: PageSource = {
      async get(_query, options) {
        if (options) seen.push(options);
        const body = Uint8Array.from(new TextEncoder().encode(JSON.stringify({ object: "list", data: [] })));
        return {
          cache: "MISS",
          page: { body, data: [], nextPageToken: undefined },
          release: () => undefined,
        };
      },
    };
    await advanceScan({ status: "FAILED" }, planScan({ status: "FAILED" }), {
      pages,
      maxPages: 5,
      caller: "token:abc",
    });
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ priority: "bulk", caller: "token:abc" });
    expect(seen[0]?.maxWaitMs).toBeGreaterThan(0);
    expect(seen[0]?.maxWaitMs).toBeLessThanOrEqual(MAX_PAUSE_WAIT_MS);
  });
});

/**
 * The budget spaces calls a second apart when they leave the proxy; on a loaded machine they can
 * reach the fake a few hundred ms late. Arrivals are therefore checked over a 750 ms window:
 * calls let out in different seconds only fit into it when one was held up more than 250 ms,
 * while an ungated scan lands all of its calls within a few ms.
 */
const ARRIVAL_WINDOW_MS = 750;
const arrivals = (fake: { listCalls: { at: number }[] }) => fake.listCalls.map((c) => c.at);

describe("GET /stats within the upstream rate budget", () => {
  it("spreads a scan's upstream calls so no second holds more than UPSTREAM_MAX_RPS", async () => {
    const tenant = isolatedTenant({ dataset: { size: 400, seed: 8 }, pageLimit: 40 });
    const { body } = await getStats(tenant, {}, { UPSTREAM_MAX_RPS: "4", STATS_MAX_PAGES: "12" });
    expect(tenant.fake.listCalls.length).toBe(12);
    expect(body.pagesFetched).toBe(12);
    expect(busiestWindow(arrivals(tenant.fake), ARRIVAL_WINDOW_MS)).toBeLessThanOrEqual(4);
  }, 20_000);

  it("holds the upstream client's retries to UPSTREAM_MAX_RPS too", async () => {
    const tenant = isolatedTenant({ dataset: { size: 400, seed: 8 }, pageLimit: 40 });
    // Every other call fails once and is retried at once (the client's back-off is short).
    tenant.fake.inject({ type: "status", status: 503 }, 6);
    const { body } = await getStats(tenant, {}, { UPSTREAM_MAX_RPS: "4", STATS_MAX_PAGES: "8" });
    expect(body.pagesFetched).toBe(8);
    expect(tenant.fake.listCalls.length).toBe(14);
    expect(busiestWindow(arrivals(tenant.fake), ARRIVAL_WINDOW_MS)).toBeLessThanOrEqual(4);
  }, 20_000);

  it("backs off when Extend answers 429 instead of hammering, and still counts everything", async () => {
    const runs = generateRuns({ size: 600, seed: 12 });
    const tenant = isolatedTenant({ runs, pageLimit: 60, rateLimitPerSecond: 3 });
    const { body } = await getStats(tenant, {}, { UPSTREAM_MAX_RPS: "8", STATS_MAX_PAGES: "200" });
    expect(summary(body)).toEqual(referenceStats(tenant.fake.runs));
    const refused = tenant.fake.listCalls.length - body.pagesFetched;
    expect(refused).toBeGreaterThan(0);
    // Without back-off every page beyond the third in each second would be refused.
    expect(refused).toBeLessThan(body.pagesFetched / 2);
  }, 30_000);

  it("keeps at most six upstream calls in flight", async () => {
    let open = 0;
    let most = 0;
    const tenant = isolatedTenant({
      dataset: { size: 800, seed: 5 },
      pageLimit: 30,
      latency: { baseMs: 5, perRunMs: 0 },
      sleep: async (ms) => {
        open += 1;
        most = Math.max(most, open);
        await new Promise((resolve) => setTimeout(resolve, ms));
        open -= 1;
      },
    });
    const { body } = await getStats(tenant, {}, { STATS_MAX_PAGES: "200" });
    expect(summary(body)).toEqual(referenceStats(tenant.fake.runs));
    expect(most).toBeGreaterThan(1);
    expect(most).toBeLessThanOrEqual(6);
  });
});

describe("GET /stats when Extend fails mid-scan", () => {
  const runs = generateRuns({ size: 1500, seed: 31 });
  const onPage = (n: number) => {
    let seen = 0;
    return () => {
      seen += 1;
      return seen >= n;
    };
  };

  it.each([
    ["a 500 on one attempt", { type: "status", status: 500 } as const, 1],
    ["a connection reset", { type: "reset" } as const, 1],
    ["a body cut off mid-way", { type: "truncated" } as const, 1],
    ["a short 429", { type: "rate-limit", retryAfter: "0" } as const, 1],
  ])("recovers from %s through the client's retries", async (_, fault, times) => {
    const tenant = isolatedTenant({ runs, pageLimit: 50 });
    tenant.fake.inject(fault, times, onPage(5));
    const { body } = await getStats(tenant, {}, { STATS_MAX_PAGES: "200" });
    expect(summary(body)).toEqual(referenceStats(tenant.fake.runs));
    expect(body.complete).toBe(true);
  });

  it.each([
    ["persistent 500s", { type: "status", status: 500 } as const, 502, "UPSTREAM_ERROR"],
    ["a body that is not a list", { type: "bad-shape" } as const, 502, "UPSTREAM_INVALID_RESPONSE"],
    ["a redirect", { type: "redirect" } as const, 502, "UPSTREAM_ERROR"],
    ["a rejected key", { type: "status", status: 401 } as const, 502, "UPSTREAM_AUTH_FAILED"],
  ])(
    "answers %s with a clear error, caches nothing, and succeeds once Extend recovers",
    async (_, fault, status, code) => {
      const tenant = isolatedTenant({ runs, pageLimit: 50 });
      const limited = { STATS_MAX_PAGES: "200" };
      tenant.fake.inject(fault, 1000, onPage(6));
      const failed = await tenant.call(statsPath({}), { env: limited });
      const text = await failed.text();
      expect(failed.status).toBe(status);
      const error = JSON.parse(text) as { code: string; retryable: boolean };
      expect(error.code).toBe(code);
      expect(text).not.toContain(TEST_UPSTREAM_KEY);
      expect(text).not.toContain("boom");
      expect(failed.headers.get("cache-control")).toBe("no-store");

      tenant.fake.clearFaults();
      const retried = await tenant.call(statsPath({}), { env: limited });
      expect(retried.headers.get("x-cache")).toBe("MISS");
      const body = await json<Parameters<typeof summary>[0]>(retried);
      expect(summary(body)).toEqual(referenceStats(tenant.fake.runs));
    },
  );

  it("honours Extend's Retry-After once for the tenant: later requests get a 503 at once, with the real remaining pause", async () => {
    const tenant = isolatedTenant({ runs, pageLimit: 50 });
    // Every call refused with a Retry-After too long to retry: the first /stats meets 429s and fails.
    tenant.fake.inject({ type: "rate-limit", retryAfter: "30" }, 1000);
    const first = await tenant.call(statsPath({}));
    expect(first.status).toBe(503);
    const callsOfFirst = tenant.fake.listCalls.length;
    expect(callsOfFirst).toBeGreaterThan(0);
    await first.body?.cancel();
    for (let i = 0; i < 3; i++) {
      const answer = await tenant.call(statsPath({ status: "FAILED" }));
      expect(answer.status).toBe(503);
      expect((await json<{ code: string }>(answer)).code).toBe("UPSTREAM_RATE_LIMITED");
      const retryAfter = Number(answer.headers.get("retry-after"));
      expect(retryAfter).toBeGreaterThan(20);
      expect(retryAfter).toBeLessThanOrEqual(30);
    }
    // The pause held every later request back: none of them reached Extend.
    expect(tenant.fake.listCalls.length).toBe(callsOfFirst);
  }, 40_000);

  it("times out a hanging page with a 504 within the configured deadline", async () => {
    const tenant = isolatedTenant({ runs, pageLimit: 50 });
    tenant.fake.inject({ type: "hang" }, 1000, onPage(3));
    const response = await tenant.call(statsPath({}), {
      env: { UPSTREAM_TIMEOUT_MS: "150", UPSTREAM_DEADLINE_MS: "400" },
    });
    expect(response.status).toBe(504);
    expect((await json<{ code: string }>(response)).code).toBe("UPSTREAM_TIMEOUT");
  });

  it("keeps an earlier resume token valid after a failed continuation", async () => {
    const tenant = isolatedTenant({ runs, pageLimit: 50 });
    const limited = { STATS_MAX_PAGES: "5" };
    const { body: first } = await getStats(tenant, {}, limited);
    const token = first.resumeToken ?? "";
    tenant.fake.inject({ type: "status", status: 503 }, 1000);
    const failed = await tenant.call(statsPath({ resumeToken: token }), { env: limited });
    expect(failed.status).toBe(502);
    tenant.fake.clearFaults();
    let body = (await getStats(tenant, { resumeToken: token }, limited)).body;
    while (!body.complete)
      body = (await getStats(tenant, { resumeToken: body.resumeToken ?? "" }, limited)).body;
    expect(summary(body)).toEqual(referenceStats(tenant.fake.runs));
  });
});
