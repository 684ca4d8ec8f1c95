import { describe, expect, it } from "vitest";
import { generateRuns } from "../../../fake/extend.ts";
import { ApiError } from "../../../src/app/errors.ts";
import type { PageSource } from "../../../src/cache/pages.ts";
import type { ListOptions } from "../../../src/extend/client.ts";
import { BudgetPaused, type Clock, MAX_PAUSE_WAIT_MS, RateBudget } from "../../../src/stats/budget.ts";
import { advanceScan, planScan } from "../../../src/stats/scan.ts";
import { TEST_UPSTREAM_KEY } from "../support/constants.ts";
import { json } from "../support/proxy.ts";
import { getStats, referenceStats, statsPath, summary } from "../support/stats.ts";
import { isolatedTenant } from "../support/tenant.ts";

/** A clock that only moves when someone sleeps: the budget's waits become exact and instant. */
function manualClock(): Clock & { time: number } {
  const clock = {
    time: 1_000_000,
    now: () => clock.time,
    sleep: async (ms: number) => {
      clock.time += ms;
    },
  };
  return clock;
}

/** Most calls that fell into any window of `windowMs`. */
function busiestWindow(times: number[], windowMs = 1000): number {
  const sorted = [...times].sort((a, b) => a - b);
  let best = 0;
  let from = 0;
  for (let to = 0; to < sorted.length; to++) {
    while ((sorted[to] ?? 0) - (sorted[from] ?? 0) >= windowMs) from += 1;
    best = Math.max(best, to - from + 1);
  }
  return best;
}

describe("rate budget (controllable clock)", () => {
  it.each([1, 3, 8, 10])("never lets more than %i calls into any second", async (rps) => {
    const clock = manualClock();
    const budget = new RateBudget(rps, clock);
    const starts: number[] = [];
    await Promise.all(
      Array.from({ length: rps * 5 + 3 }, async () => {
        await budget.acquire();
        starts.push(clock.now());
      }),
    );
    expect(busiestWindow(starts)).toBe(rps);
    // And no slower than it must be: call k starts exactly floor(k / rps) seconds in.
    expect(Math.max(...starts) - Math.min(...starts)).toBe(Math.floor((rps * 5 + 2) / rps) * 1000);
  });

  it("backs off on 429: pauses everyone, doubles the pause while 429s continue, halves the rate, then recovers", async () => {
    const clock = manualClock();
    const budget = new RateBudget(8, clock);
    budget.observe(429);
    expect(budget.currentLimit).toBe(4);
    let start = clock.now();
    await budget.acquire();
    expect(clock.now() - start).toBe(1000);
    budget.observe(429);
    expect(budget.currentLimit).toBe(2);
    start = clock.now();
    await budget.acquire();
    expect(clock.now() - start).toBe(2000);
    for (let i = 0; i < 10; i++) budget.observe(200);
    expect(budget.currentLimit).toBe(8);
    // A 5xx or timeout is not a rate signal: neither a pause nor a recovery.
    budget.observe(503);
    budget.observe("timeout");
    expect(budget.currentLimit).toBe(8);
  });
});

/** Drives the budget into a 429 pause of `2^(times-1)` seconds, as if Extend kept refusing. */
function escalate(budget: RateBudget, clock: Clock & { time: number }, times: number) {
  for (let n = 1; n <= times; n++) {
    budget.observe(429);
    if (n < times) clock.time += 1000 * 2 ** (n - 1) + 1;
  }
}

/**
 * A page source of endless one-run pages that, like the upstream client, asks the budget before
 * each call; it counts the calls let through, and `onGet` runs inside each.
 */
function endlessPages(onGet: (call: number) => void = () => undefined): PageSource & { calls: number } {
  const source = {
    calls: 0,
    async get(_query: unknown, options?: ListOptions) {
      await options?.beforeAttempt?.(1);
      source.calls += 1;
      onGet(source.calls);
      const run = { id: `run_${source.calls}`, status: "PROCESSED", createdAt: "2026-10-01T00:00:00.000Z" };
      return {
        cache: "MISS" as const,
        page: { body: "", data: [run], nextPageToken: `cursor_${source.calls}` },
      };
    },
  };
  return source;
}

describe("rate budget pauses (controllable clock)", () => {
  it("lengthens the pause once for a burst of 429s from calls already in flight", async () => {
    const clock = manualClock();
    const budget = new RateBudget(16, clock);
    for (let i = 0; i < 3; i++) budget.observe(429);
    // Every refusal halves the rate, but the pause stays one second, not 2^2.
    expect(budget.currentLimit).toBe(2);
    const start = clock.now();
    await budget.acquire();
    expect(clock.now() - start).toBe(1000);
  });

  it("refuses at once, rather than wait, when the pause is longer than the caller allows", async () => {
    const clock = manualClock();
    const budget = new RateBudget(8, clock);
    escalate(budget, clock, 4);
    const start = clock.now();
    const refused = await budget.acquire(undefined, 5000).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(BudgetPaused);
    expect((refused as BudgetPaused).retryAfterMs).toBe(8000);
    expect(clock.now()).toBe(start);
    // A refusal does not jam the queue: a caller willing to wait still gets through.
    await budget.acquire();
    expect(clock.now() - start).toBe(8000);
  });

  it("ends a /stats scan with a 503 and Retry-After, starting no page, while a long pause runs", async () => {
    const clock = manualClock();
    const budget = new RateBudget(8, clock);
    escalate(budget, clock, 4);
    expect(MAX_PAUSE_WAIT_MS, "the premise: an 8 s pause is longer than a request waits").toBeLessThan(8000);
    const pages = endlessPages();
    const outcome = await advanceScan({}, planScan({}), { pages, budget, maxPages: 50, clock }).catch(
      (error: unknown) => error,
    );
    expect(outcome).toBeInstanceOf(ApiError);
    expect(outcome).toMatchObject({ code: "UPSTREAM_RATE_LIMITED", status: 503, retryAfter: 8 });
    expect(pages.calls).toBe(0);
  });

  it("returns the pages read so far, resumable, when a long pause starts mid-scan", async () => {
    const clock = manualClock();
    const budget = new RateBudget(8, clock);
    // The first page comes back fine, then Extend's refusals push the pause past the wait limit.
    const pages = endlessPages((call) => {
      if (call === 1) escalate(budget, clock, 4);
    });
    const state = planScan({ status: "PROCESSED" });
    const progress = await advanceScan({ status: "PROCESSED" }, state, {
      pages,
      budget,
      maxPages: 50,
      clock,
      concurrency: 1,
    });
    expect(pages.calls).toBe(1);
    expect(progress).toMatchObject({ complete: false, pagesThisRequest: 1 });
    expect(progress.state.pagesFetched).toBe(1);
    // The walk moved past the page it read, so a resume token continues from there.
    expect(progress.state.partitions[0]?.desc).toMatchObject({ phase: "active", cursor: "cursor_1" });
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
    ["a long Retry-After", { type: "rate-limit", retryAfter: "120" } as const, 503, "UPSTREAM_RATE_LIMITED"],
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

  it("waits out short 429 pauses, then answers at once with a 503 and Retry-After while a long one runs", async () => {
    const tenant = isolatedTenant({ runs, pageLimit: 50 });
    // Every call refused, with a Retry-After too long to retry: each /stats meets 429s and fails.
    tenant.fake.inject({ type: "rate-limit", retryAfter: "30" }, 1000);
    const callsPerRequest: number[] = [];
    const answers: Response[] = [];
    for (let i = 0; i < 5; i++) {
      const before = tenant.fake.listCalls.length;
      answers.push(await tenant.call(statsPath({})));
      callsPerRequest.push(tenant.fake.listCalls.length - before);
    }
    // The first request's six refusals paused the budget once (1 s, not 2^5 s), and the pauses of
    // 1, 2 and 4 s that followed were each waited out: requests 2-4 reached Extend again.
    expect(callsPerRequest.slice(0, 4).every((calls) => calls > 0)).toBe(true);
    // The fourth refusal paused for 8 s, more than a request waits: the fifth never called Extend.
    expect(callsPerRequest[4]).toBe(0);
    const last = answers[4];
    expect(last?.status).toBe(503);
    expect((await json<{ code: string }>(last as Response)).code).toBe("UPSTREAM_RATE_LIMITED");
    const retryAfter = Number(last?.headers.get("retry-after"));
    expect(retryAfter).toBeGreaterThan(5);
    expect(retryAfter).toBeLessThanOrEqual(8);
    for (const answer of answers.slice(0, 4)) {
      expect(answer.status).toBe(503);
      await answer.body?.cancel();
    }
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
