import { afterEach, describe, expect, it, vi } from "vitest";
import { generateRuns } from "../../../fake/extend.ts";
import { json } from "../support/proxy.ts";
import {
  getStats,
  referenceStats,
  scanToEnd,
  statsPath,
  summary,
  type WorkflowRunStats,
} from "../support/stats.ts";
import { isolatedTenant } from "../support/tenant.ts";

afterEach(() => {
  vi.useRealTimers();
});

describe("GET /stats: whole results cached in KV", () => {
  it("serves a second identical request from the cache with no upstream call", async () => {
    const tenant = isolatedTenant({ dataset: { size: 1200, seed: 2 } });
    const first = await getStats(tenant, { workflowId: "workflow_BMdfq_yWM3sT-ZzvCnA3f" });
    expect(first.response.headers.get("x-cache")).toBe("MISS");
    const calls = tenant.fake.listCalls.length;
    const second = await getStats(tenant, { workflowId: "workflow_BMdfq_yWM3sT-ZzvCnA3f" });
    expect(second.response.headers.get("x-cache")).toBe("HIT");
    expect(second.response.headers.get("cache-control")).toBe("private, no-cache");
    expect(second.body).toEqual(first.body);
    expect(tenant.fake.listCalls.length).toBe(calls);
  });

  it("keeps different filters apart", async () => {
    const tenant = isolatedTenant({ dataset: { size: 500, seed: 2 } });
    await getStats(tenant, { status: "FAILED" });
    const other = await getStats(tenant, { status: "PENDING" });
    expect(other.response.headers.get("x-cache")).toBe("MISS");
    expect(summary(other.body)).toEqual(referenceStats(tenant.fake.runs, { status: "PENDING" }));
  });

  it("never stores a partial result, and stores the result a resumed scan completes", async () => {
    const tenant = isolatedTenant({ runs: generateRuns({ size: 1500, seed: 4 }), pageLimit: 50 });
    const limited = { STATS_MAX_PAGES: "6" };
    const answers = await scanToEnd(tenant, {}, limited);
    expect(answers.length).toBeGreaterThan(1);
    expect(answers[0]?.complete).toBe(false);
    const final = answers[answers.length - 1] as WorkflowRunStats;
    const calls = tenant.fake.listCalls.length;
    const again = await getStats(tenant, {}, limited);
    expect(again.response.headers.get("x-cache")).toBe("HIT");
    expect(again.body).toEqual(final);
    expect(summary(again.body)).toEqual(referenceStats(tenant.fake.runs));
    expect(tenant.fake.listCalls.length).toBe(calls);
  });

  it("runs one scan for concurrent identical requests", async () => {
    // The same data in a tenant of its own: what one scan costs.
    const single = isolatedTenant({ dataset: { size: 2500, seed: 6 }, pageLimit: 100 });
    await getStats(single, {});
    const oneScan = single.fake.listCalls.length;
    const tenant = isolatedTenant({ dataset: { size: 2500, seed: 6 }, pageLimit: 100 });
    const responses = await Promise.all(Array.from({ length: 5 }, () => tenant.call(statsPath({}))));
    const bodies = await Promise.all(responses.map((r) => json<WorkflowRunStats>(r)));
    for (const body of bodies) expect(summary(body)).toEqual(referenceStats(tenant.fake.runs));
    // Where a partition's two walks meet depends on which pages come back first, so one scan's
    // call count moves by a page or two between runs; a second scan would double it.
    expect(tenant.fake.listCalls.length).toBeLessThan(2 * oneScan);
  });

  it("with maxLagSeconds, counts no cached answer or page older than it", async () => {
    const tenant = isolatedTenant({ dataset: { size: 300, seed: 1 } });
    await getStats(tenant, {});
    // A cached list page too, as a caller of /workflow_runs would leave it.
    await tenant.call("/workflow_runs?maxPageSize=1000&sortBy=createdAt&sortDir=desc");
    const run = tenant.fake.runs.find((r) => r.status === "PENDING");
    expect(run).toBeDefined();
    tenant.fake.updateRun(run?.id ?? "", { status: "FAILED" });
    const cached = await getStats(tenant, {});
    expect(cached.response.headers.get("x-cache")).toBe("HIT");
    expect(summary(cached.body)).not.toEqual(referenceStats(tenant.fake.runs));
    const calls = tenant.fake.listCalls.length;
    const fresh = await getStats(tenant, { maxLagSeconds: "0" });
    expect(fresh.response.status).toBe(200);
    expect(fresh.response.headers.get("x-cache")).toBe("MISS");
    expect(summary(fresh.body)).toEqual(referenceStats(tenant.fake.runs));
    expect(tenant.fake.listCalls.length).toBeGreaterThan(calls);
    // A lag the cached answer is within serves it, as without the parameter.
    const within = await getStats(tenant, { maxLagSeconds: "600" });
    expect(within.response.headers.get("x-cache")).toBe("HIT");
  });

  it("serves a stale result at once and refreshes it in the background", async () => {
    const tenant = isolatedTenant({ dataset: { size: 300, seed: 1 } });
    const first = await getStats(tenant, {});
    const calls = tenant.fake.listCalls.length;
    vi.useFakeTimers({ toFake: ["Date"] });
    vi.setSystemTime(Date.now() + 61_000);
    const stale = await getStats(tenant, {});
    expect(stale.response.headers.get("x-cache")).toBe("STALE");
    expect(Number(stale.response.headers.get("age"))).toBeGreaterThanOrEqual(60);
    expect(stale.body.computedAt).toBe(first.body.computedAt);
    expect(tenant.fake.listCalls.length).toBeGreaterThan(calls);
    const fresh = await getStats(tenant, {});
    expect(fresh.response.headers.get("x-cache")).toBe("HIT");
    expect(fresh.body.computedAt).not.toBe(first.body.computedAt);
  });

  it("scans again once the result is past its stale window", async () => {
    const tenant = isolatedTenant({ dataset: { size: 300, seed: 1 } });
    await getStats(tenant, {}, { CACHE_STALE_SECONDS: "0" });
    vi.useFakeTimers({ toFake: ["Date"] });
    vi.setSystemTime(Date.now() + 61_000);
    tenant.fake.runs = generateRuns({ size: 310, seed: 1 });
    const later = await getStats(tenant, {}, { CACHE_STALE_SECONDS: "0" });
    expect(later.response.headers.get("x-cache")).toBe("MISS");
    expect(later.body.total).toBe(310);
  });
});
