import { createExecutionContext, SELF, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { type FakeExtend, type Fault, generateRuns } from "../../../fake/extend.ts";
import { MAX_ATTEMPTS } from "../../../src/extend/client.ts";
import worker from "../../../src/index.ts";
import { FAKE_EXTEND_ORIGIN, TEST_UPSTREAM_KEY } from "../support/constants.ts";
import { expectErrorEnvelope, expectNoUpstreamKey, type ReadResponse, read } from "../support/envelope.ts";
import type { CallOptions } from "../support/proxy.ts";
import { freshClientIp, isolatedTenant, type Tenant } from "../support/tenant.ts";

const T0 = Date.parse("2031-03-04T05:06:07.000Z");
const SECOND = 1000;
/** Short upstream budgets, so faults that time out cost little real time. */
const FAST_UPSTREAM: Partial<Env> = { UPSTREAM_TIMEOUT_MS: "150", UPSTREAM_DEADLINE_MS: "400" };
/** A KV read that never answers; the cache gives up on it after its read timeout. */
const NEVER = new Promise<never>(() => undefined);

function at(offsetMs: number): void {
  vi.setSystemTime(T0 + offsetMs);
}

/** One call as the tenant, read once. */
async function get(tenant: Tenant, path: string, options: CallOptions = {}) {
  return read(await tenant.call(path, options));
}

function cacheOf(response: ReadResponse): string | null {
  return response.headers.get("x-cache");
}

/** Replaces every run of the fake with a different dataset, so a refreshed page differs. */
function changeUpstreamData(fake: FakeExtend, seed: number): void {
  fake.runs = generateRuns({ size: 120, seed });
}

/** A PAGE_CACHE binding whose reads and writes can be made to fail; everything else is the real KV. */
function wrappedKv(overrides: {
  getWithMetadata?: (key: string) => Promise<unknown>;
  put?: (key: string, value: string, options: unknown) => Promise<void>;
}): { kv: KVNamespace; puts: string[] } {
  const real = env.PAGE_CACHE;
  const puts: string[] = [];
  const kv = new Proxy(real, {
    get(target, property) {
      if (property === "getWithMetadata" && overrides.getWithMetadata) return overrides.getWithMetadata;
      if (property === "put") {
        return (key: string, value: string, options: KVNamespacePutOptions) => {
          puts.push(key);
          return overrides.put ? overrides.put(key, value, options) : target.put(key, value, options);
        };
      }
      const value = Reflect.get(target, property);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { kv, puts };
}

beforeEach(() => {
  vi.useFakeTimers({ toFake: ["Date"] });
  at(0);
});

afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

describe("page cache: hit, miss and stale", () => {
  it("serves a second identical request from KV without calling Extend", async () => {
    const tenant = isolatedTenant();
    const miss = await get(tenant, "/workflow_runs?maxPageSize=5");
    expect(miss.status).toBe(200);
    expect(cacheOf(miss)).toBe("MISS");
    expect(miss.headers.get("age")).toBeNull();
    at(12 * SECOND);
    const hit = await get(tenant, "/workflow_runs?maxPageSize=5");
    expect(hit.status).toBe(200);
    expect(cacheOf(hit)).toBe("HIT");
    expect(hit.headers.get("age")).toBe("12");
    expect(hit.text).toBe(miss.text);
    expect(hit.headers.get("etag")).toBe(miss.headers.get("etag"));
    expect(hit.headers.get("content-type")).toMatch(/^application\/json/);
    expect(tenant.fake.listCalls).toHaveLength(1);
  });

  const defaults = [
    { name: "just stored", offset: 0, cache: "HIT", age: "0", calls: 1 },
    { name: "last fresh millisecond (59.999 s)", offset: 60 * SECOND - 1, cache: "HIT", age: "59", calls: 1 },
    { name: "first stale instant (60 s)", offset: 60 * SECOND, cache: "STALE", age: "60", calls: 2 },
    {
      name: "late in the stale window (359.999 s)",
      offset: 360 * SECOND - 1,
      cache: "STALE",
      age: "359",
      calls: 2,
    },
    { name: "past the stale window (360 s)", offset: 360 * SECOND, cache: "MISS", age: null, calls: 2 },
    { name: "a clock that went backwards", offset: -5 * SECOND, cache: "HIT", age: "0", calls: 1 },
  ];
  it.each(defaults)("default windows (60 s fresh, 300 s stale): $name -> $cache", async (c) => {
    const tenant = isolatedTenant();
    expect(cacheOf(await get(tenant, "/workflow_runs"))).toBe("MISS");
    at(c.offset);
    const later = await get(tenant, "/workflow_runs");
    expect(later.status).toBe(200);
    expect(cacheOf(later)).toBe(c.cache);
    expect(later.headers.get("age")).toBe(c.age);
    // A STALE answer refreshes in waitUntil, which callProxy waits for: one more call, not two.
    expect(tenant.fake.listCalls).toHaveLength(c.calls);
  });

  const configured = [
    { name: "TTL 120: still fresh at 119 s", vars: { CACHE_TTL_SECONDS: "120" }, offset: 119, cache: "HIT" },
    { name: "TTL 120: stale at 120 s", vars: { CACHE_TTL_SECONDS: "120" }, offset: 120, cache: "STALE" },
    { name: "stale window 0: a miss at 60 s", vars: { CACHE_STALE_SECONDS: "0" }, offset: 60, cache: "MISS" },
    {
      name: "stale window 10: stale at 69 s",
      vars: { CACHE_STALE_SECONDS: "10" },
      offset: 69,
      cache: "STALE",
    },
    {
      name: "stale window 10: a miss at 70 s",
      vars: { CACHE_STALE_SECONDS: "10" },
      offset: 70,
      cache: "MISS",
    },
  ];
  it.each(configured)("configured windows: $name", async (c) => {
    const tenant = isolatedTenant({ env: c.vars });
    expect(cacheOf(await get(tenant, "/workflow_runs"))).toBe("MISS");
    at(c.offset * SECOND);
    expect(cacheOf(await get(tenant, "/workflow_runs"))).toBe(c.cache);
  });

  it("serves the stale page at once, refreshes it once in the background, then hits the new page", async () => {
    const tenant = isolatedTenant();
    const first = await get(tenant, "/workflow_runs?maxPageSize=3");
    changeUpstreamData(tenant.fake, 99);
    at(90 * SECOND);
    const stale = await get(tenant, "/workflow_runs?maxPageSize=3");
    expect(cacheOf(stale)).toBe("STALE");
    expect(stale.headers.get("age")).toBe("90");
    expect(stale.text).toBe(first.text);
    expect(tenant.fake.listCalls).toHaveLength(2);
    at(91 * SECOND);
    const fresh = await get(tenant, "/workflow_runs?maxPageSize=3");
    expect(cacheOf(fresh)).toBe("HIT");
    expect(fresh.headers.get("age")).toBe("1");
    expect(fresh.text).not.toBe(first.text);
    expect(JSON.parse(fresh.text)).toEqual(
      JSON.parse((await replayList(tenant.fake, "maxPageSize=3", tenant.env)).text),
    );
    expect(fresh.headers.get("etag")).not.toBe(first.headers.get("etag"));
    expect(tenant.fake.listCalls).toHaveLength(2);
  });

  it("keeps entries within KV's 512-byte key limit for the longest valid query", async () => {
    const tenant = isolatedTenant();
    const path =
      `/workflow_runs?workflowId=${"w".repeat(255)}&batchId=${"b".repeat(255)}` +
      `&fileNameContains=${"f".repeat(1024)}&status=FAILED&sortBy=createdAt&sortDir=asc&maxPageSize=1000`;
    expect(cacheOf(await get(tenant, path))).toBe("MISS");
    expect(cacheOf(await get(tenant, path))).toBe("HIT");
    expect(tenant.fake.listCalls).toHaveLength(1);
  });
});

/** What the fake answers now for a query, asked directly (its answers are deterministic). */
async function replayList(fake: FakeExtend, query: string, settings: Partial<Env>): Promise<ReadResponse> {
  const headers = new Headers({
    authorization: `Bearer ${TEST_UPSTREAM_KEY}`,
    "x-extend-api-version": "2026-02-09",
    "x-extend-workspace-id": settings.EXTEND_WORKSPACE_ID ?? "",
  });
  const response = await fake.handle({
    url: `${FAKE_EXTEND_ORIGIN}/workflow_runs?${query}`,
    method: "GET",
    headers,
    signal: new AbortController().signal,
  });
  // Not a call of the proxy: keep the fake's record to the proxy's own calls.
  fake.requests.pop();
  return read(response);
}

describe("page cache: entries are never shared across queries or tenants", () => {
  it("keys pages by cursor: each page of a walk is its own entry, and each hits on a second walk", async () => {
    const tenant = isolatedTenant();
    const walk = async () => {
      const seen: ReadResponse[] = [];
      let token: string | undefined;
      do {
        const query = `maxPageSize=40${token ? `&nextPageToken=${encodeURIComponent(token)}` : ""}`;
        const page = await get(tenant, `/workflow_runs?${query}`);
        expect(page.status).toBe(200);
        seen.push(page);
        token = (JSON.parse(page.text) as { nextPageToken?: string }).nextPageToken;
      } while (token);
      return seen;
    };
    const first = await walk();
    expect(first.length).toBeGreaterThanOrEqual(3);
    expect(first.map(cacheOf)).toEqual(first.map(() => "MISS"));
    expect(new Set(first.map((p) => p.text)).size).toBe(first.length);
    const second = await walk();
    expect(second.map(cacheOf)).toEqual(second.map(() => "HIT"));
    expect(second.map((p) => p.text)).toEqual(first.map((p) => p.text));
    expect(tenant.fake.listCalls).toHaveLength(first.length);
  });

  it.each([
    { name: "another status filter", other: "/workflow_runs?status=FAILED" },
    { name: "another page size", other: "/workflow_runs?maxPageSize=11" },
    { name: "another sort direction", other: "/workflow_runs?sortDir=asc" },
    { name: "another file-name filter", other: "/workflow_runs?fileNameContains=a" },
  ])("a different query misses: $name", async ({ other }) => {
    const tenant = isolatedTenant();
    expect(cacheOf(await get(tenant, "/workflow_runs"))).toBe("MISS");
    expect(cacheOf(await get(tenant, other))).toBe("MISS");
    expect(tenant.fake.listCalls).toHaveLength(2);
  });

  it.each([
    { name: "explicit defaults", other: "/workflow_runs?sortBy=updatedAt&sortDir=desc&maxPageSize=10" },
    { name: "parameters in another order", other: "/workflow_runs?maxPageSize=10&sortDir=desc" },
  ])("the same validated query hits: $name", async ({ other }) => {
    const tenant = isolatedTenant();
    expect(cacheOf(await get(tenant, "/workflow_runs"))).toBe("MISS");
    expect(cacheOf(await get(tenant, other))).toBe("HIT");
    expect(tenant.fake.listCalls).toHaveLength(1);
  });

  it("gives another workspace its own entries", async () => {
    const first = isolatedTenant();
    const second = isolatedTenant();
    expect(cacheOf(await get(first, "/workflow_runs"))).toBe("MISS");
    expect(cacheOf(await get(second, "/workflow_runs"))).toBe("MISS");
    const workspaces = [first, second].flatMap((t) =>
      t.fake.listCalls.map((call) => call.headers["x-extend-workspace-id"]),
    );
    expect(workspaces).toEqual([first.env.EXTEND_WORKSPACE_ID, second.env.EXTEND_WORKSPACE_ID]);
    expect(workspaces[0]).not.toBe(workspaces[1]);
  });

  it.each([
    { name: "another upstream key", change: { EXTEND_API_KEY: "sk_test_other_tenant_key_0001" } },
    { name: "another API version", change: { EXTEND_API_VERSION: "2025-01-01" } },
  ])("never answers for $name from the first tenant's entry", async ({ change }) => {
    const tenant = isolatedTenant();
    expect(cacheOf(await get(tenant, "/workflow_runs"))).toBe("MISS");
    // The fake accepts only the first key and version: reaching it at all proves the miss.
    const other = await get(tenant, "/workflow_runs", { env: change });
    expect(other.status).not.toBe(200);
    expect(cacheOf(other)).toBeNull();
    expect(tenant.fake.listCalls).toHaveLength(2);
    expectNoUpstreamKey(other);
  });

  it("gives another upstream origin its own entries", async () => {
    const otherOrigin = "https://other-region.fake-extend.test";
    const home = isolatedTenant();
    // The same workspace and key, served from another region's origin.
    const away = isolatedTenant({ origin: otherOrigin, workspaceId: home.env.EXTEND_WORKSPACE_ID });
    expect(cacheOf(await get(home, "/workflow_runs"))).toBe("MISS");
    expect(cacheOf(await get(away, "/workflow_runs"))).toBe("MISS");
    expect(home.fake.listCalls).toHaveLength(1);
    expect(away.fake.listCalls).toHaveLength(1);
  });

  it("stores no key that holds the upstream key, a raw cursor or a filter value", async () => {
    const tenant = isolatedTenant();
    const workspace = tenant.env.EXTEND_WORKSPACE_ID ?? "";
    const first = JSON.parse((await get(tenant, "/workflow_runs?maxPageSize=7")).text) as {
      nextPageToken: string;
    };
    const filter = `needle${crypto.randomUUID()}`;
    await get(
      tenant,
      `/workflow_runs?maxPageSize=7&nextPageToken=${encodeURIComponent(first.nextPageToken)}`,
    );
    await get(tenant, `/workflow_runs?fileNameContains=${filter}`);
    expect(tenant.fake.listCalls).toHaveLength(3);
    const keys = (await env.PAGE_CACHE.list()).keys.map((k) => k.name);
    expect(keys.length).toBeGreaterThanOrEqual(3);
    for (const key of keys) {
      expect(key).toMatch(/^v1:/);
      expect(new TextEncoder().encode(key).byteLength).toBeLessThanOrEqual(512);
      expect(key).not.toContain(TEST_UPSTREAM_KEY);
      expect(key).not.toContain(first.nextPageToken);
      expect(key).not.toContain(encodeURIComponent(first.nextPageToken));
      expect(key).not.toContain(filter);
      expect(key).not.toContain(workspace);
    }
  });
});

const UPSTREAM_FAULTS: { name: string; fault: Fault; code: string }[] = [
  { name: "HTTP 500", fault: { type: "status", status: 500 }, code: "UPSTREAM_ERROR" },
  { name: "HTTP 503", fault: { type: "status", status: 503 }, code: "UPSTREAM_ERROR" },
  { name: "HTTP 400", fault: { type: "status", status: 400 }, code: "INVALID_REQUEST" },
  { name: "HTTP 401", fault: { type: "status", status: 401 }, code: "UPSTREAM_AUTH_FAILED" },
  { name: "HTTP 404", fault: { type: "status", status: 404 }, code: "NOT_FOUND" },
  {
    name: "HTTP 429 with a long Retry-After",
    fault: { type: "rate-limit", retryAfter: "60" },
    code: "UPSTREAM_RATE_LIMITED",
  },
  { name: "a redirect", fault: { type: "redirect" }, code: "UPSTREAM_ERROR" },
  { name: "a connection reset", fault: { type: "reset" }, code: "UPSTREAM_ERROR" },
  { name: "a timeout", fault: { type: "hang" }, code: "UPSTREAM_TIMEOUT" },
  { name: "a truncated 200", fault: { type: "truncated" }, code: "UPSTREAM_INVALID_RESPONSE" },
  { name: "a non-JSON 200", fault: { type: "non-json" }, code: "UPSTREAM_INVALID_RESPONSE" },
  { name: "a 200 without the list shape", fault: { type: "bad-shape" }, code: "UPSTREAM_INVALID_RESPONSE" },
];

describe("page cache: only good 200s are stored", () => {
  it.each(UPSTREAM_FAULTS)("stores nothing after $name", async ({ fault, code }) => {
    const tenant = isolatedTenant({ env: FAST_UPSTREAM });
    tenant.fake.inject(fault, 10);
    const failed = await get(tenant, "/workflow_runs");
    expectErrorEnvelope(failed, { status: failed.status, code });
    expect(failed.headers.get("etag")).toBeNull();
    tenant.fake.clearFaults();
    const calls = tenant.fake.listCalls.length;
    const next = await get(tenant, "/workflow_runs");
    if (fault.type === "rate-limit") {
      // Extend's long Retry-After pauses the whole tenant: the next call is refused before it leaves.
      expectErrorEnvelope(next, { status: 503, code: "UPSTREAM_RATE_LIMITED" });
      expect(Number(next.headers.get("retry-after"))).toBeGreaterThan(50);
      expect(tenant.fake.listCalls).toHaveLength(calls);
      return;
    }
    expect(next.status).toBe(200);
    expect(cacheOf(next)).toBe("MISS");
    expect(tenant.fake.listCalls).toHaveLength(calls + 1);
  });
});

describe("page cache: stale-if-error", () => {
  const SERVED_STALE = UPSTREAM_FAULTS.filter((f) =>
    ["HTTP 500", "HTTP 503", "a connection reset", "a timeout", "a truncated 200"].includes(f.name),
  );

  it.each(SERVED_STALE)(
    "serves the stale page when Extend fails with $name, and keeps it",
    async ({ fault }) => {
      const tenant = isolatedTenant({ env: FAST_UPSTREAM });
      const good = await get(tenant, "/workflow_runs");
      tenant.fake.inject(fault, 100);
      at(100 * SECOND);
      const stale = await get(tenant, "/workflow_runs");
      expect(stale.status).toBe(200);
      expect(cacheOf(stale)).toBe("STALE");
      expect(stale.headers.get("age")).toBe("100");
      expect(stale.text).toBe(good.text);
      // The failed refresh ran (in waitUntil) and did not replace the entry.
      expect(tenant.fake.listCalls.length).toBeGreaterThan(1);
      at(200 * SECOND);
      const still = await get(tenant, "/workflow_runs");
      expect(cacheOf(still)).toBe("STALE");
      expect(still.headers.get("age")).toBe("200");
      expect(still.text).toBe(good.text);
      expect(still.headers.get("etag")).toBe(good.headers.get("etag"));
    },
  );

  it("answers with the error once the stale window is over", async () => {
    const tenant = isolatedTenant({ env: FAST_UPSTREAM });
    await get(tenant, "/workflow_runs");
    tenant.fake.inject({ type: "status", status: 502 }, 100);
    at(360 * SECOND);
    expectErrorEnvelope(await get(tenant, "/workflow_runs"), {
      status: 502,
      code: "UPSTREAM_ERROR",
    });
  });
});

describe("page cache: coalescing", () => {
  it("shares one upstream call among concurrent identical misses", async () => {
    const tenant = isolatedTenant({ latency: { baseMs: 40, perRunMs: 0 } });
    const responses = await Promise.all(
      Array.from({ length: 8 }, () => get(tenant, "/workflow_runs?maxPageSize=4")),
    );
    expect(tenant.fake.listCalls).toHaveLength(1);
    expect(responses.map((r) => r.status)).toEqual(responses.map(() => 200));
    expect(new Set(responses.map((r) => r.text)).size).toBe(1);
    expect(new Set(responses.map((r) => r.headers.get("etag"))).size).toBe(1);
  });

  it("gives every waiter the same error, from one upstream load", async () => {
    const tenant = isolatedTenant({ env: FAST_UPSTREAM });
    tenant.fake.inject({ type: "hang" }, 100);
    const responses = await Promise.all(Array.from({ length: 6 }, () => get(tenant, "/workflow_runs")));
    // One load makes at most MAX_ATTEMPTS calls (it retries timeouts); six loads would make more.
    expect(tenant.fake.listCalls.length).toBeGreaterThanOrEqual(1);
    expect(tenant.fake.listCalls.length).toBeLessThanOrEqual(MAX_ATTEMPTS);
    for (const response of responses)
      expectErrorEnvelope(response, { status: 504, code: "UPSTREAM_TIMEOUT" });
  });

  it("does not coalesce different queries", async () => {
    const tenant = isolatedTenant({ latency: { baseMs: 20, perRunMs: 0 } });
    await Promise.all([1, 2, 3].map((n) => get(tenant, `/workflow_runs?maxPageSize=${n}`)));
    expect(tenant.fake.listCalls).toHaveLength(3);
  });

  it("shares one call across separate request contexts, even when the first caller disconnects", async () => {
    // SELF runs each request in its own workerd request context, with the test's static settings:
    // no workspace of its own, so a query of its own keeps other tests' entries out.
    // The upstream call outlasts the followers' arrival by far, even on a loaded machine.
    const tenant = isolatedTenant({ workspaceId: null, latency: { baseMs: 1_000, perRunMs: 0 } });
    const url = `https://proxy.test/workflow_runs?fileNameContains=${crypto.randomUUID()}`;
    const leaving = new AbortController();
    const leader = SELF.fetch(url, {
      signal: leaving.signal,
      headers: { "cf-connecting-ip": freshClientIp() },
    }).then(
      (r) => r.text(),
      () => "disconnected",
    );
    while (tenant.fake.listCalls.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    const followers = Array.from({ length: 4 }, () =>
      SELF.fetch(url, { headers: { "cf-connecting-ip": freshClientIp() } }).then(read),
    );
    await new Promise((resolve) => setTimeout(resolve, 20));
    leaving.abort();
    await leader;
    const answers = await Promise.all(followers);
    expect(answers.map((r) => r.status)).toEqual([200, 200, 200, 200]);
    expect(answers.map(cacheOf)).toEqual(["MISS", "MISS", "MISS", "MISS"]);
    expect(tenant.fake.listCalls).toHaveLength(1);
  });
});

describe("page cache: KV trouble is never the caller's trouble", () => {
  it.each([
    { name: "a read that throws", read: () => Promise.reject(new Error("KV GET failed: 500")) },
    { name: "a read that never answers", read: () => NEVER },
    { name: "a read that returns a non-object", read: () => Promise.resolve("garbage") },
    {
      name: "a value without metadata",
      read: () =>
        Promise.resolve({ value: '{"object":"list","data":[]}', metadata: null, cacheStatus: null }),
    },
    {
      name: "a value that is not a list",
      read: () =>
        Promise.resolve({
          value: "<html>",
          metadata: { v: 1, at: T0, tag: "0".repeat(32), n: 6 },
          cacheStatus: null,
        }),
    },
    {
      name: "a value cut short",
      read: () =>
        Promise.resolve({
          value: '{"object":"list","data":[]}',
          metadata: { v: 1, at: T0, tag: "0".repeat(32), n: 4000 },
          cacheStatus: null,
        }),
    },
  ])("serves from Extend (BYPASS) on $name", async (c) => {
    const tenant = isolatedTenant();
    await get(tenant, "/workflow_runs");
    const { kv } = wrappedKv({ getWithMetadata: c.read });
    const bypass = await get(tenant, "/workflow_runs", { env: { PAGE_CACHE: kv } });
    expect(bypass.status).toBe(200);
    expect(cacheOf(bypass)).toBe("BYPASS");
    expect(JSON.parse(bypass.text)).toMatchObject({ object: "list" });
    expect(bypass.headers.get("etag")).toMatch(/^W\/"[0-9a-f]+"$/);
    expect(bypass.headers.get("age")).toBeNull();
    expect(tenant.fake.listCalls).toHaveLength(2);
  });

  it("repairs a corrupt entry with the page it fetched", async () => {
    const tenant = isolatedTenant();
    const { kv, puts } = wrappedKv({
      getWithMetadata: () =>
        Promise.resolve({ value: "{}", metadata: { nonsense: true }, cacheStatus: null }),
    });
    expect(cacheOf(await get(tenant, "/workflow_runs", { env: { PAGE_CACHE: kv } }))).toBe("BYPASS");
    expect(puts).toHaveLength(1);
    expect(cacheOf(await get(tenant, "/workflow_runs"))).toBe("HIT");
    expect(tenant.fake.listCalls).toHaveLength(1);
  });

  it("writes nothing when the read failed: KV in trouble gets no extra load", async () => {
    const { kv, puts } = wrappedKv({ getWithMetadata: () => Promise.reject(new Error("KV down")) });
    const tenant = isolatedTenant({ env: { PAGE_CACHE: kv } });
    expect(cacheOf(await get(tenant, "/workflow_runs"))).toBe("BYPASS");
    expect(puts).toHaveLength(0);
  });

  it.each([
    {
      name: "a write that rejects",
      put: () => Promise.reject(new Error("KV PUT failed: 429 Too Many Requests")),
    },
    {
      name: "a write that throws",
      put: () => {
        throw new Error("KV PUT failed: 429 Too Many Requests");
      },
    },
  ])("answers normally after $name, logs it, and stores nothing", async (c) => {
    const tenant = isolatedTenant();
    const lines: string[] = [];
    vi.spyOn(console, "log").mockImplementation((line: unknown) => {
      lines.push(String(line));
    });
    const { kv, puts } = wrappedKv({ put: c.put });
    const miss = await get(tenant, "/workflow_runs", { env: { PAGE_CACHE: kv } });
    expect(miss.status).toBe(200);
    expect(cacheOf(miss)).toBe("MISS");
    expect(puts).toHaveLength(1);
    const logged = lines.filter((l) => l.includes("cache write failed"));
    expect(logged).toHaveLength(1);
    const record = JSON.parse(logged[0] ?? "{}") as Record<string, unknown>;
    expect(record).toMatchObject({ level: "warn", msg: "cache write failed", error: "Error" });
    expect(record.key).toMatch(/^v1:page:/);
    expect(record.requestId).toBe(miss.headers.get("x-request-id"));
    expect(logged[0]).not.toContain(TEST_UPSTREAM_KEY);
    expect(cacheOf(await get(tenant, "/workflow_runs"))).toBe("MISS");
    expect(tenant.fake.listCalls).toHaveLength(2);
  });

  it("writes a missed page only after its response has been handed over, in waitUntil", async () => {
    const tenant = isolatedTenant();
    let handedOver = false;
    const early: string[] = [];
    const { kv, puts } = wrappedKv({
      put: (key, value, options) => {
        if (!handedOver) early.push(key);
        return env.PAGE_CACHE.put(key, value, options as KVNamespacePutOptions);
      },
    });
    const ctx = createExecutionContext();
    const request = new Request("https://proxy.test/workflow_runs", {
      headers: { "cf-connecting-ip": freshClientIp() },
    });
    const response = await worker.fetch(request, { ...env, ...tenant.env, PAGE_CACHE: kv }, ctx);
    handedOver = true;
    expect(response.headers.get("x-cache")).toBe("MISS");
    await response.arrayBuffer();
    await waitOnExecutionContext(ctx);
    expect(early).toEqual([]);
    expect(puts).toHaveLength(1);
    expect(cacheOf(await get(tenant, "/workflow_runs"))).toBe("HIT");
    expect(tenant.fake.listCalls).toHaveLength(1);
  });

  it("keeps serving from Extend when the binding is missing", async () => {
    const tenant = isolatedTenant({ env: { PAGE_CACHE: undefined } });
    const response = await get(tenant, "/workflow_runs");
    expect(response.status).toBe(200);
    expect(cacheOf(response)).toBe("BYPASS");
    expect(tenant.fake.listCalls).toHaveLength(1);
  });
});

describe("page cache: browser caching", () => {
  it("sends a weak ETag with private, no-cache on every page", async () => {
    const tenant = isolatedTenant();
    const miss = await get(tenant, "/workflow_runs");
    const hit = await get(tenant, "/workflow_runs");
    for (const response of [miss, hit]) {
      expect(response.headers.get("cache-control")).toBe("private, no-cache");
      expect(response.headers.get("etag")).toMatch(/^W\/"[0-9a-f]{32}"$/);
    }
  });

  it.each([
    { name: "the ETag itself", header: (etag: string) => etag, status: 304 },
    { name: "its strong form (weak comparison)", header: (etag: string) => etag.slice(2), status: 304 },
    { name: "a list holding it", header: (etag: string) => `W/"0000", ${etag} , "1111"`, status: 304 },
    { name: "*", header: () => "*", status: 304 },
    { name: "another ETag", header: () => 'W/"0123456789abcdef0123456789abcdef"', status: 200 },
    { name: "an empty header", header: () => "", status: 200 },
  ])("answers If-None-Match with $name: $status", async ({ header, status }) => {
    const tenant = isolatedTenant();
    const first = await get(tenant, "/workflow_runs");
    const etag = first.headers.get("etag") ?? "";
    const second = await get(tenant, "/workflow_runs", { headers: { "if-none-match": header(etag) } });
    expect(second.status).toBe(status);
    expect(cacheOf(second)).toBe("HIT");
    expect(second.headers.get("etag")).toBe(etag);
    expect(second.headers.get("cache-control")).toBe("private, no-cache");
    expect(second.headers.get("age")).toBe("0");
    expect(second.text).toBe(status === 304 ? "" : first.text);
    expect(tenant.fake.listCalls).toHaveLength(1);
  });

  it("gives a refreshed page a new ETag, so the old one gets the new body", async () => {
    const tenant = isolatedTenant();
    const old = await get(tenant, "/workflow_runs");
    changeUpstreamData(tenant.fake, 123);
    at(61 * SECOND);
    const stale = await get(tenant, "/workflow_runs", {
      headers: { "if-none-match": old.headers.get("etag") ?? "" },
    });
    expect(stale.status).toBe(304);
    expect(cacheOf(stale)).toBe("STALE");
    const fresh = await get(tenant, "/workflow_runs", {
      headers: { "if-none-match": old.headers.get("etag") ?? "" },
    });
    expect(fresh.status).toBe(200);
    expect(cacheOf(fresh)).toBe("HIT");
    expect(fresh.headers.get("etag")).not.toBe(old.headers.get("etag"));
  });

  it("gives the same entry served with and without redaction different ETags", async () => {
    const tenant = isolatedTenant();
    const plain = await get(tenant, "/workflow_runs");
    const redacted = await get(tenant, "/workflow_runs", { env: { REDACT_FIELDS: "dashboardUrl" } });
    expect(cacheOf(redacted)).toBe("HIT");
    expect(redacted.text).not.toBe(plain.text);
    expect(redacted.headers.get("etag")).not.toBe(plain.headers.get("etag"));
    const notModified = await get(tenant, "/workflow_runs", {
      env: { REDACT_FIELDS: "dashboardUrl" },
      headers: { "if-none-match": plain.headers.get("etag") ?? "" },
    });
    expect(notModified.status).toBe(200);
    expect(notModified.text).toBe(redacted.text);
    expect(tenant.fake.listCalls).toHaveLength(1);
  });

  it("answers a conditional request only after authenticating the caller", async () => {
    const tenant = isolatedTenant();
    const token = `tok_${crypto.randomUUID()}`;
    const locked = { ALLOW_ANONYMOUS: "false", CLIENT_TOKENS: token };
    const page = await get(tenant, "/workflow_runs", {
      env: locked,
      headers: { authorization: `Bearer ${token}` },
    });
    expect(page.status).toBe(200);
    const etag = page.headers.get("etag") ?? "";
    const anonymous = await get(tenant, "/workflow_runs", {
      env: locked,
      headers: { "if-none-match": etag },
    });
    expectErrorEnvelope(anonymous, { status: 401, code: "UNAUTHORIZED" });
    const allowed = await get(tenant, "/workflow_runs", {
      env: locked,
      headers: { "if-none-match": etag, authorization: `Bearer ${token}` },
    });
    expect(allowed.status).toBe(304);
  });
});
