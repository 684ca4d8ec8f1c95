import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { generateRuns } from "../../../fake/extend.ts";
import { TEST_UPSTREAM_KEY } from "../support/constants.ts";
import { expectErrorEnvelope, expectNoUpstreamKey, read } from "../support/envelope.ts";
import { useFakeExtend } from "../support/fake-upstream.ts";
import { callAsFreshCaller } from "../support/isolated.ts";
import { useStatsFake } from "../support/stats.ts";

const T0 = Date.parse("2031-05-06T07:08:09.000Z");
const SECOND = 1000;

function at(offsetMs: number): void {
  vi.setSystemTime(T0 + offsetMs);
}

/**
 * The real PAGE_CACHE, counting what reaches it. One per test, passed on every call: the L1
 * keeps each binding's entries apart, so a test sees only what its own calls put there.
 */
function countingKv(): { kv: KVNamespace; reads: () => number; writes: () => number } {
  const real = env.PAGE_CACHE;
  let reads = 0;
  let writes = 0;
  const kv = new Proxy(real, {
    get(target, property) {
      const value = Reflect.get(target, property);
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        if (property === "getWithMetadata") reads += 1;
        if (property === "put") writes += 1;
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return { kv, reads: () => reads, writes: () => writes };
}

/** A workspace no other test uses, with the test's own counted namespace. */
function tenant(kv: KVNamespace, extra: Partial<Env> = {}): Partial<Env> {
  return { EXTEND_WORKSPACE_ID: `ws_${crypto.randomUUID().replaceAll("-", "")}`, PAGE_CACHE: kv, ...extra };
}

async function get(path: string, settings: Partial<Env>, headers: Record<string, string> = {}) {
  return read(await callAsFreshCaller(path, { env: settings, headers }));
}

/** A limiter that refuses every caller, after a round trip longer than a local KV read. */
const slowRefusal = {
  limit: () => new Promise((resolve) => setTimeout(() => resolve({ success: false }), 40)),
} as unknown as RateLimit;

beforeEach(() => {
  vi.useFakeTimers({ toFake: ["Date"] });
  at(0);
});

afterEach(() => {
  vi.useRealTimers();
});

describe("L1: hot pages served from the isolate's memory", () => {
  it("serves a page again without reading KV once KV has served it, with KV's body, ETag and age", async () => {
    const fake = useFakeExtend();
    const { kv, reads } = countingKv();
    const settings = tenant(kv);
    const miss = await get("/workflow_runs?maxPageSize=5", settings);
    at(5 * SECOND);
    const fromKv = await get("/workflow_runs?maxPageSize=5", settings);
    expect([miss.headers.get("x-cache"), fromKv.headers.get("x-cache")]).toEqual(["MISS", "HIT"]);
    expect(reads()).toBe(2);
    at(12 * SECOND);
    const fromMemory = await get("/workflow_runs?maxPageSize=5", settings);
    expect(reads()).toBe(2);
    expect(fromMemory.status).toBe(200);
    expect(fromMemory.headers.get("x-cache")).toBe("HIT");
    expect(fromMemory.headers.get("age")).toBe("12");
    expect(fromMemory.text).toBe(miss.text);
    expect(fromMemory.headers.get("etag")).toBe(miss.headers.get("etag"));
    expect(fromMemory.headers.get("cache-control")).toBe("private, no-cache");
    expect(fromMemory.headers.get("content-type")).toMatch(/^application\/json/);
    expect(fake.listCalls).toHaveLength(1);
  });

  it("fills only from KV reads: a miss alone leaves the next request to KV", async () => {
    useFakeExtend();
    const { kv, reads } = countingKv();
    const settings = tenant(kv);
    await get("/workflow_runs", settings);
    expect((await get("/workflow_runs", settings)).headers.get("x-cache")).toBe("HIT");
    expect(reads()).toBe(2);
  });

  it.each([
    { name: "last fresh millisecond", offset: 60 * SECOND - 1, cache: "HIT", age: "59", kvRead: false },
    { name: "first stale instant", offset: 60 * SECOND, cache: "STALE", age: "60", kvRead: true },
    { name: "past the stale window", offset: 360 * SECOND, cache: "MISS", age: null, kvRead: true },
  ])("never serves past freshness: $name -> $cache", async (c) => {
    const fake = useFakeExtend();
    const { kv, reads } = countingKv();
    const settings = tenant(kv);
    await get("/workflow_runs", settings);
    await get("/workflow_runs", settings);
    const before = reads();
    at(c.offset);
    const later = await get("/workflow_runs", settings);
    expect(later.headers.get("x-cache")).toBe(c.cache);
    expect(later.headers.get("age")).toBe(c.age);
    expect(reads() - before).toBe(c.kvRead ? 1 : 0);
    expect(fake.listCalls).toHaveLength(c.cache === "HIT" ? 1 : 2);
  });

  it("serves the refreshed page once the one it held is past freshness", async () => {
    const fake = useFakeExtend();
    const { kv } = countingKv();
    const settings = tenant(kv);
    const old = await get("/workflow_runs?maxPageSize=3", settings);
    await get("/workflow_runs?maxPageSize=3", settings);
    fake.runs = generateRuns({ size: 120, seed: 4242 });
    at(61 * SECOND);
    const stale = await get("/workflow_runs?maxPageSize=3", settings);
    expect(stale.headers.get("x-cache")).toBe("STALE");
    expect(stale.text).toBe(old.text);
    at(62 * SECOND);
    const fresh = await get("/workflow_runs?maxPageSize=3", settings);
    expect(fresh.headers.get("x-cache")).toBe("HIT");
    expect(fresh.headers.get("age")).toBe("1");
    expect(fresh.text).not.toBe(old.text);
    expect(fresh.headers.get("etag")).not.toBe(old.headers.get("etag"));
    expect(fake.listCalls).toHaveLength(2);
  });

  it("judges freshness by each reader's CACHE_TTL_SECONDS, as KV does", async () => {
    useFakeExtend();
    const { kv, reads } = countingKv();
    const settings = tenant(kv);
    await get("/workflow_runs", settings);
    await get("/workflow_runs", settings);
    at(100 * SECOND);
    const before = reads();
    const patient = await get("/workflow_runs", { ...settings, CACHE_TTL_SECONDS: "120" });
    expect(patient.headers.get("x-cache")).toBe("HIT");
    expect(patient.headers.get("age")).toBe("100");
    expect(reads()).toBe(before);
    const strict = await get("/workflow_runs", settings);
    expect(strict.headers.get("x-cache")).toBe("STALE");
    expect(reads()).toBe(before + 1);
  });

  it("never answers another workspace from memory", async () => {
    const fake = useFakeExtend();
    const { kv } = countingKv();
    const home = tenant(kv);
    await get("/workflow_runs", home);
    await get("/workflow_runs", home);
    const away = await get("/workflow_runs", {
      ...home,
      EXTEND_WORKSPACE_ID: `${home.EXTEND_WORKSPACE_ID}x`,
    });
    expect(away.headers.get("x-cache")).toBe("MISS");
    const workspaces = fake.listCalls.map((call) => call.headers["x-extend-workspace-id"]);
    expect(workspaces).toEqual([home.EXTEND_WORKSPACE_ID, `${home.EXTEND_WORKSPACE_ID}x`]);
  });

  it.each([
    { name: "another upstream key", change: { EXTEND_API_KEY: "sk_test_other_tenant_key_0002" } },
    { name: "another API version", change: { EXTEND_API_VERSION: "2025-01-01" } },
  ])("never answers $name from the first tenant's page in memory", async ({ change }) => {
    const fake = useFakeExtend();
    const { kv } = countingKv();
    const settings = tenant(kv);
    await get("/workflow_runs", settings);
    await get("/workflow_runs", settings);
    // The fake accepts only the first key and version: reaching it at all proves the miss.
    const other = await get("/workflow_runs", { ...settings, ...change });
    expect(other.status).not.toBe(200);
    expect(fake.listCalls).toHaveLength(2);
    expectNoUpstreamKey(other);
    expect(other.text).not.toContain(TEST_UPSTREAM_KEY);
  });

  it("redacts and tags a page from memory exactly as one from KV, and answers 304 from memory", async () => {
    useFakeExtend();
    const { kv, reads } = countingKv();
    const plain = tenant(kv);
    const redacting = { ...plain, REDACT_FIELDS: "dashboardUrl" };
    const unredacted = await get("/workflow_runs", plain);
    const fromKv = await get("/workflow_runs", redacting);
    const before = reads();
    const fromMemory = await get("/workflow_runs", redacting);
    expect(reads()).toBe(before);
    expect(fromMemory.text).toBe(fromKv.text);
    expect(fromMemory.text).not.toContain("dashboardUrl");
    expect(unredacted.text).toContain("dashboardUrl");
    expect(fromMemory.headers.get("etag")).toBe(fromKv.headers.get("etag"));
    expect(fromMemory.headers.get("etag")).not.toBe(unredacted.headers.get("etag"));
    const etag = fromMemory.headers.get("etag") ?? "";
    const notModified = await get("/workflow_runs", redacting, { "if-none-match": etag });
    expect(notModified.status).toBe(304);
    expect(notModified.text).toBe("");
    expect(notModified.headers.get("etag")).toBe(etag);
    const otherVariant = await get("/workflow_runs", redacting, {
      "if-none-match": unredacted.headers.get("etag") ?? "",
    });
    expect(otherVariant.status).toBe(200);
    expect(otherVariant.text).toBe(fromKv.text);
    expect(reads()).toBe(before);
  });

  it("keeps a page above its per-entry bound in KV only", async () => {
    const fake = useFakeExtend({ dataset: { size: 1000, seed: 3 } });
    const { kv, reads } = countingKv();
    const settings = tenant(kv);
    const first = await get("/workflow_runs?maxPageSize=1000", settings);
    // Two bytes a character: above L1_MAX_ENTRY_BYTES (1 MiB).
    expect(first.text.length).toBeGreaterThan(2 ** 19);
    for (let i = 0; i < 3; i++) {
      expect((await get("/workflow_runs?maxPageSize=1000", settings)).headers.get("x-cache")).toBe("HIT");
    }
    expect(reads()).toBe(4);
    expect(fake.listCalls).toHaveLength(1);
  });

  it("serves a complete /stats result from memory while it is fresh by STATS_TTL_SECONDS", async () => {
    const stats = useStatsFake();
    const { kv, reads } = countingKv();
    const settings = { ...stats.env, PAGE_CACHE: kv };
    const miss = await get("/stats", settings);
    const fromKv = await get("/stats", settings);
    const before = reads();
    at(30 * SECOND);
    const fromMemory = await get("/stats", settings);
    expect([miss, fromKv, fromMemory].map((r) => r.headers.get("x-cache"))).toEqual(["MISS", "HIT", "HIT"]);
    expect(reads()).toBe(before);
    expect(fromMemory.headers.get("age")).toBe("30");
    expect(JSON.parse(fromMemory.text)).toEqual(JSON.parse(miss.text));
    const calls = stats.calls.length;
    at(60 * SECOND);
    expect((await get("/stats", settings)).headers.get("x-cache")).toBe("STALE");
    expect(reads()).toBeGreaterThan(before);
    expect(stats.calls.length).toBeGreaterThan(calls);
  });
});

describe("rate limit beside the cache read", () => {
  it("refuses a caller past its limit on a page held in memory", async () => {
    const fake = useFakeExtend();
    const { kv } = countingKv();
    const settings = tenant(kv);
    await get("/workflow_runs", settings);
    await get("/workflow_runs", settings);
    const refused = await get("/workflow_runs", { ...settings, RATE_LIMITER: slowRefusal });
    expectErrorEnvelope(refused, { status: 429, code: "RATE_LIMIT_EXCEEDED" });
    expect(refused.headers.get("retry-after")).toBe("60");
    expect(refused.headers.get("x-cache")).toBeNull();
    expect(refused.headers.get("etag")).toBeNull();
    expect(fake.listCalls).toHaveLength(1);
  });

  it("refuses on a page KV holds, even when KV answers before the limiter", async () => {
    const fake = useFakeExtend();
    const { kv } = countingKv();
    const settings = tenant(kv);
    await get("/workflow_runs", settings);
    const refused = await get("/workflow_runs", { ...settings, RATE_LIMITER: slowRefusal });
    expectErrorEnvelope(refused, { status: 429, code: "RATE_LIMIT_EXCEEDED" });
    expect(fake.listCalls).toHaveLength(1);
  });

  it("lets a refused caller cause no upstream call and no KV write, on a miss or a stale page", async () => {
    const fake = useFakeExtend();
    const { kv, writes } = countingKv();
    const settings = tenant(kv);
    await get("/workflow_runs", settings);
    expect(writes()).toBe(1);
    const refusedMiss = await get("/workflow_runs?maxPageSize=3", { ...settings, RATE_LIMITER: slowRefusal });
    expectErrorEnvelope(refusedMiss, { status: 429, code: "RATE_LIMIT_EXCEEDED" });
    at(90 * SECOND);
    const refusedStale = await get("/workflow_runs", { ...settings, RATE_LIMITER: slowRefusal });
    expectErrorEnvelope(refusedStale, { status: 429, code: "RATE_LIMIT_EXCEEDED" });
    expect(fake.listCalls).toHaveLength(1);
    expect(writes()).toBe(1);
  });

  it("answers a refused caller's malformed query with the 429, as when the limit came first", async () => {
    const fake = useFakeExtend();
    const { kv } = countingKv();
    const settings = tenant(kv, { RATE_LIMITER: slowRefusal });
    for (const path of [
      "/workflow_runs?maxPageSize=0",
      "/workflow_runs?nope=1",
      "/workflow_runs?status=%ZZ",
    ]) {
      expectErrorEnvelope(await get(path, settings), { status: 429, code: "RATE_LIMIT_EXCEEDED" });
    }
    expect(fake.listCalls).toHaveLength(0);
  });
});
