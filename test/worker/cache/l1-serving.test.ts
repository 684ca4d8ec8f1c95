import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { generateRuns } from "../../../fake/extend.ts";
import { TEST_UPSTREAM_KEY } from "../support/constants.ts";
import { expectErrorEnvelope, expectNoUpstreamKey, read } from "../support/envelope.ts";
import { isolatedTenant, type Tenant, type TenantOptions } from "../support/tenant.ts";

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

/** A tenant of the test's own, reading and writing through the test's counted namespace. */
function tenantOn(kv: KVNamespace, options: TenantOptions = {}): Tenant {
  return isolatedTenant({ ...options, env: { PAGE_CACHE: kv, ...options.env } });
}

/** One call as the tenant (its settings, then `env`), read once. */
async function get(
  tenant: Tenant,
  path: string,
  env: Partial<Env> = {},
  headers: Record<string, string> = {},
) {
  return read(await tenant.call(path, { env, headers }));
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
    const { kv, reads } = countingKv();
    const tenant = tenantOn(kv);
    const fake = tenant.fake;
    const miss = await get(tenant, "/workflow_runs?maxPageSize=5");
    at(5 * SECOND);
    const fromKv = await get(tenant, "/workflow_runs?maxPageSize=5");
    expect([miss.headers.get("x-cache"), fromKv.headers.get("x-cache")]).toEqual(["MISS", "HIT"]);
    expect(reads()).toBe(2);
    at(12 * SECOND);
    const fromMemory = await get(tenant, "/workflow_runs?maxPageSize=5");
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
    const { kv, reads } = countingKv();
    const tenant = tenantOn(kv);
    await get(tenant, "/workflow_runs");
    expect((await get(tenant, "/workflow_runs")).headers.get("x-cache")).toBe("HIT");
    expect(reads()).toBe(2);
  });

  it.each([
    { name: "last fresh millisecond", offset: 60 * SECOND - 1, cache: "HIT", age: "59", kvRead: false },
    { name: "first stale instant", offset: 60 * SECOND, cache: "STALE", age: "60", kvRead: true },
    { name: "past the stale window", offset: 360 * SECOND, cache: "MISS", age: null, kvRead: true },
  ])("never serves past freshness: $name -> $cache", async (c) => {
    const { kv, reads } = countingKv();
    const tenant = tenantOn(kv);
    const fake = tenant.fake;
    await get(tenant, "/workflow_runs");
    await get(tenant, "/workflow_runs");
    const before = reads();
    at(c.offset);
    const later = await get(tenant, "/workflow_runs");
    expect(later.headers.get("x-cache")).toBe(c.cache);
    expect(later.headers.get("age")).toBe(c.age);
    expect(reads() - before).toBe(c.kvRead ? 1 : 0);
    expect(fake.listCalls).toHaveLength(c.cache === "HIT" ? 1 : 2);
  });

  it("serves the refreshed page once the one it held is past freshness", async () => {
    const { kv } = countingKv();
    const tenant = tenantOn(kv);
    const fake = tenant.fake;
    const old = await get(tenant, "/workflow_runs?maxPageSize=3");
    await get(tenant, "/workflow_runs?maxPageSize=3");
    tenant.fake.runs = generateRuns({ size: 120, seed: 4242 });
    at(61 * SECOND);
    const stale = await get(tenant, "/workflow_runs?maxPageSize=3");
    expect(stale.headers.get("x-cache")).toBe("STALE");
    expect(stale.text).toBe(old.text);
    at(62 * SECOND);
    const fresh = await get(tenant, "/workflow_runs?maxPageSize=3");
    expect(fresh.headers.get("x-cache")).toBe("HIT");
    expect(fresh.headers.get("age")).toBe("1");
    expect(fresh.text).not.toBe(old.text);
    expect(fresh.headers.get("etag")).not.toBe(old.headers.get("etag"));
    expect(fake.listCalls).toHaveLength(2);
  });

  it("judges freshness by each reader's CACHE_TTL_SECONDS, as KV does", async () => {
    const { kv, reads } = countingKv();
    const tenant = tenantOn(kv);
    await get(tenant, "/workflow_runs");
    await get(tenant, "/workflow_runs");
    at(100 * SECOND);
    const before = reads();
    const patient = await get(tenant, "/workflow_runs", { CACHE_TTL_SECONDS: "120" });
    expect(patient.headers.get("x-cache")).toBe("HIT");
    expect(patient.headers.get("age")).toBe("100");
    expect(reads()).toBe(before);
    const strict = await get(tenant, "/workflow_runs");
    expect(strict.headers.get("x-cache")).toBe("STALE");
    expect(reads()).toBe(before + 1);
  });

  it("never answers another workspace from memory", async () => {
    const { kv } = countingKv();
    const home = tenantOn(kv);
    const away = tenantOn(kv);
    await get(home, "/workflow_runs");
    await get(home, "/workflow_runs");
    const answer = await get(away, "/workflow_runs");
    expect(answer.headers.get("x-cache")).toBe("MISS");
    expect(home.fake.listCalls).toHaveLength(1);
    expect(away.fake.listCalls).toHaveLength(1);
    expect(away.fake.listCalls[0]?.headers["x-extend-workspace-id"]).toBe(away.env.EXTEND_WORKSPACE_ID);
  });

  it.each([
    { name: "another upstream key", change: { EXTEND_API_KEY: "sk_test_other_tenant_key_0002" } },
    { name: "another API version", change: { EXTEND_API_VERSION: "2025-01-01" } },
  ])("never answers $name from the first tenant's page in memory", async ({ change }) => {
    const { kv } = countingKv();
    const tenant = tenantOn(kv);
    const fake = tenant.fake;
    await get(tenant, "/workflow_runs");
    await get(tenant, "/workflow_runs");
    // The fake accepts only the first key and version: reaching it at all proves the miss.
    const other = await get(tenant, "/workflow_runs", { ...change });
    expect(other.status).not.toBe(200);
    expect(fake.listCalls).toHaveLength(2);
    expectNoUpstreamKey(other);
    expect(other.text).not.toContain(TEST_UPSTREAM_KEY);
  });

  it("redacts and tags a page from memory exactly as one from KV, and answers 304 from memory", async () => {
    const { kv, reads } = countingKv();
    const tenant = tenantOn(kv);
    const redacting = { REDACT_FIELDS: "dashboardUrl" };
    const unredacted = await get(tenant, "/workflow_runs");
    const fromKv = await get(tenant, "/workflow_runs", redacting);
    const before = reads();
    const fromMemory = await get(tenant, "/workflow_runs", redacting);
    expect(reads()).toBe(before);
    expect(fromMemory.text).toBe(fromKv.text);
    expect(fromMemory.text).not.toContain("dashboardUrl");
    expect(unredacted.text).toContain("dashboardUrl");
    expect(fromMemory.headers.get("etag")).toBe(fromKv.headers.get("etag"));
    expect(fromMemory.headers.get("etag")).not.toBe(unredacted.headers.get("etag"));
    const etag = fromMemory.headers.get("etag") ?? "";
    const notModified = await get(tenant, "/workflow_runs", redacting, { "if-none-match": etag });
    expect(notModified.status).toBe(304);
    expect(notModified.text).toBe("");
    expect(notModified.headers.get("etag")).toBe(etag);
    const otherVariant = await get(tenant, "/workflow_runs", redacting, {
      "if-none-match": unredacted.headers.get("etag") ?? "",
    });
    expect(otherVariant.status).toBe(200);
    expect(otherVariant.text).toBe(fromKv.text);
    expect(reads()).toBe(before);
  });

  it("keeps a page above its per-entry bound in KV only", async () => {
    const { kv, reads } = countingKv();
    const tenant = tenantOn(kv, { dataset: { size: 1000, seed: 3 } });
    const fake = tenant.fake;
    const first = await get(tenant, "/workflow_runs?maxPageSize=1000");
    // Two bytes a character: above L1_MAX_ENTRY_BYTES (1 MiB).
    expect(first.text.length).toBeGreaterThan(2 ** 19);
    for (let i = 0; i < 3; i++) {
      expect((await get(tenant, "/workflow_runs?maxPageSize=1000")).headers.get("x-cache")).toBe("HIT");
    }
    expect(reads()).toBe(4);
    expect(fake.listCalls).toHaveLength(1);
  });

  it("serves a complete /stats result from memory while it is fresh by STATS_TTL_SECONDS", async () => {
    const { kv, reads } = countingKv();
    // This test calls /stats more often than a caller may; the limiter has its own tests.
    const tenant = tenantOn(kv, { env: { STATS_RATE_LIMITER: { limit: async () => ({ success: true }) } } });
    const miss = await get(tenant, "/stats");
    const fromKv = await get(tenant, "/stats");
    const before = reads();
    at(30 * SECOND);
    const fromMemory = await get(tenant, "/stats");
    expect([miss, fromKv, fromMemory].map((r) => r.headers.get("x-cache"))).toEqual(["MISS", "HIT", "HIT"]);
    expect(reads()).toBe(before);
    expect(fromMemory.headers.get("age")).toBe("30");
    expect(JSON.parse(fromMemory.text)).toEqual(JSON.parse(miss.text));
    const calls = tenant.calls.length;
    at(60 * SECOND);
    expect((await get(tenant, "/stats")).headers.get("x-cache")).toBe("STALE");
    expect(reads()).toBeGreaterThan(before);
    expect(tenant.calls.length).toBeGreaterThan(calls);
  });
});

describe("rate limit beside the cache read", () => {
  it("refuses a caller past its limit on a page held in memory", async () => {
    const { kv } = countingKv();
    const tenant = tenantOn(kv);
    const fake = tenant.fake;
    await get(tenant, "/workflow_runs");
    await get(tenant, "/workflow_runs");
    const refused = await get(tenant, "/workflow_runs", { RATE_LIMITER: slowRefusal });
    expectErrorEnvelope(refused, { status: 429, code: "RATE_LIMIT_EXCEEDED" });
    expect(refused.headers.get("retry-after")).toBe("60");
    expect(refused.headers.get("x-cache")).toBeNull();
    expect(refused.headers.get("etag")).toBeNull();
    expect(fake.listCalls).toHaveLength(1);
  });

  it("refuses on a page KV holds, even when KV answers before the limiter", async () => {
    const { kv } = countingKv();
    const tenant = tenantOn(kv);
    const fake = tenant.fake;
    await get(tenant, "/workflow_runs");
    const refused = await get(tenant, "/workflow_runs", { RATE_LIMITER: slowRefusal });
    expectErrorEnvelope(refused, { status: 429, code: "RATE_LIMIT_EXCEEDED" });
    expect(fake.listCalls).toHaveLength(1);
  });

  it("lets a refused caller cause no upstream call and no KV write, on a miss or a stale page", async () => {
    const { kv, writes } = countingKv();
    const tenant = tenantOn(kv);
    const fake = tenant.fake;
    await get(tenant, "/workflow_runs");
    expect(writes()).toBe(1);
    const refusedMiss = await get(tenant, "/workflow_runs?maxPageSize=3", { RATE_LIMITER: slowRefusal });
    expectErrorEnvelope(refusedMiss, { status: 429, code: "RATE_LIMIT_EXCEEDED" });
    at(90 * SECOND);
    const refusedStale = await get(tenant, "/workflow_runs", { RATE_LIMITER: slowRefusal });
    expectErrorEnvelope(refusedStale, { status: 429, code: "RATE_LIMIT_EXCEEDED" });
    expect(fake.listCalls).toHaveLength(1);
    expect(writes()).toBe(1);
  });

  it("answers a refused caller's malformed query with the 429, as when the limit came first", async () => {
    const { kv } = countingKv();
    const tenant = tenantOn(kv, { env: { RATE_LIMITER: slowRefusal } });
    const fake = tenant.fake;
    for (const path of [
      "/workflow_runs?maxPageSize=0",
      "/workflow_runs?nope=1",
      "/workflow_runs?status=%ZZ",
    ]) {
      expectErrorEnvelope(await get(tenant, path), { status: 429, code: "RATE_LIMIT_EXCEEDED" });
    }
    expect(fake.listCalls).toHaveLength(0);
  });
});
