import { afterEach, describe, expect, it, vi } from "vitest";
import { generateRuns } from "../../../fake/extend.ts";
import { callProxy, json } from "../support/proxy.ts";
import {
  getStats,
  referenceStats,
  scanToEnd,
  statsPath,
  summary,
  useStatsFake,
  type WorkflowRunStats,
} from "../support/stats.ts";

afterEach(() => {
  vi.useRealTimers();
});

describe("GET /stats: whole results cached in KV", () => {
  it("serves a second identical request from the cache with no upstream call", async () => {
    const { fake, env } = useStatsFake({ dataset: { size: 1200, seed: 2 } });
    const first = await getStats({ workflowId: "workflow_BMdfq_yWM3sT-ZzvCnA3f" }, env);
    expect(first.response.headers.get("x-cache")).toBe("MISS");
    const calls = fake.listCalls.length;
    const second = await getStats({ workflowId: "workflow_BMdfq_yWM3sT-ZzvCnA3f" }, env);
    expect(second.response.headers.get("x-cache")).toBe("HIT");
    expect(second.response.headers.get("cache-control")).toBe("private, no-cache");
    expect(second.body).toEqual(first.body);
    expect(fake.listCalls.length).toBe(calls);
  });

  it("keeps different filters apart", async () => {
    const { fake, env } = useStatsFake({ dataset: { size: 500, seed: 2 } });
    await getStats({ status: "FAILED" }, env);
    const other = await getStats({ status: "PENDING" }, env);
    expect(other.response.headers.get("x-cache")).toBe("MISS");
    expect(summary(other.body)).toEqual(referenceStats(fake.runs, { status: "PENDING" }));
  });

  it("never stores a partial result, and stores the result a resumed scan completes", async () => {
    const { fake, env } = useStatsFake({ runs: generateRuns({ size: 1500, seed: 4 }), pageLimit: 50 });
    const limited = { ...env, STATS_MAX_PAGES: "6" };
    const answers = await scanToEnd({}, limited);
    expect(answers.length).toBeGreaterThan(1);
    expect(answers[0]?.complete).toBe(false);
    const final = answers[answers.length - 1] as WorkflowRunStats;
    const calls = fake.listCalls.length;
    const again = await getStats({}, limited);
    expect(again.response.headers.get("x-cache")).toBe("HIT");
    expect(again.body).toEqual(final);
    expect(summary(again.body)).toEqual(referenceStats(fake.runs));
    expect(fake.listCalls.length).toBe(calls);
  });

  it("runs one scan for concurrent identical requests", async () => {
    // The newest fake answers every upstream call, so the one-scan baseline is measured first.
    const single = useStatsFake({ dataset: { size: 2500, seed: 6 }, pageLimit: 100 });
    await getStats({}, single.env);
    const oneScan = single.fake.listCalls.length;
    const { fake, env } = useStatsFake({ dataset: { size: 2500, seed: 6 }, pageLimit: 100 });
    const responses = await Promise.all(Array.from({ length: 5 }, () => callProxy(statsPath({}), { env })));
    const bodies = await Promise.all(responses.map((r) => json<WorkflowRunStats>(r)));
    for (const body of bodies) expect(summary(body)).toEqual(referenceStats(fake.runs));
    expect(fake.listCalls.length).toBeLessThanOrEqual(oneScan);
  });

  it("serves a stale result at once and refreshes it in the background", async () => {
    const { fake, env } = useStatsFake({ dataset: { size: 300, seed: 1 } });
    const first = await getStats({}, env);
    const calls = fake.listCalls.length;
    vi.useFakeTimers({ toFake: ["Date"] });
    vi.setSystemTime(Date.now() + 61_000);
    const stale = await getStats({}, env);
    expect(stale.response.headers.get("x-cache")).toBe("STALE");
    expect(Number(stale.response.headers.get("age"))).toBeGreaterThanOrEqual(60);
    expect(stale.body.computedAt).toBe(first.body.computedAt);
    expect(fake.listCalls.length).toBeGreaterThan(calls);
    const fresh = await getStats({}, env);
    expect(fresh.response.headers.get("x-cache")).toBe("HIT");
    expect(fresh.body.computedAt).not.toBe(first.body.computedAt);
  });

  it("scans again once the result is past its stale window", async () => {
    const { fake, env } = useStatsFake({ dataset: { size: 300, seed: 1 } });
    await getStats({}, { ...env, CACHE_STALE_SECONDS: "0" });
    vi.useFakeTimers({ toFake: ["Date"] });
    vi.setSystemTime(Date.now() + 61_000);
    fake.runs = generateRuns({ size: 310, seed: 1 });
    const later = await getStats({}, { ...env, CACHE_STALE_SECONDS: "0" });
    expect(later.response.headers.get("x-cache")).toBe("MISS");
    expect(later.body.total).toBe(310);
  });
});
