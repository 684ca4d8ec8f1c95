import { describe, expect, it } from "vitest";
import { PUBLIC_PATHS } from "../../../src/routes/access.ts";
import { recordingLimiter } from "../support/limiters.ts";
import { json } from "../support/proxy.ts";
import { isolatedTenant } from "../support/tenant.ts";

/** A KV binding that records every use and fails it, as KV does in an outage. */
function throwingKv() {
  const calls: string[] = [];
  const fail = (method: string) => (): never => {
    calls.push(method);
    throw new Error(`KV ${method} failed (injected)`);
  };
  const binding: KVNamespace = {
    get: fail("get"),
    getWithMetadata: fail("getWithMetadata"),
    put: fail("put"),
    list: fail("list"),
    delete: fail("delete"),
  };
  return { binding, calls };
}

const BROKEN_CONFIGS: [string, Partial<Env>, string][] = [
  ["no Extend key", { EXTEND_API_KEY: undefined }, "EXTEND_API_KEY"],
  ["an upstream URL that is not a URL", { EXTEND_API_BASE_URL: "extend" }, "EXTEND_API_BASE_URL"],
  ["a cache TTL below KV's minimum", { CACHE_TTL_SECONDS: "5" }, "CACHE_TTL_SECONDS"],
  ["a /stats page budget of zero", { STATS_MAX_PAGES: "0" }, "STATS_MAX_PAGES"],
  ["half a JWT configuration", { JWT_ISSUER: "https://issuer.example" }, "JWT_JWKS_URL"],
  ["a wildcard CORS origin", { ALLOWED_ORIGINS: "*" }, "ALLOWED_ORIGINS"],
];

describe("GET /healthz", () => {
  it("answers ok as JSON, uncacheable, without calling Extend", async () => {
    const tenant = isolatedTenant();
    const res = await tenant.call("/healthz");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    expect(res.headers.get("cache-control")).toBe("no-store");
    expect(await json(res)).toEqual({ ok: true });
    expect(tenant.fake.requests).toEqual([]);
  });

  it("answers HEAD with headers only", async () => {
    const tenant = isolatedTenant();
    const res = await tenant.call("/healthz", { method: "HEAD" });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("");
  });
});

describe.each(PUBLIC_PATHS)("%s stays up when everything else is down", (path) => {
  it.each(BROKEN_CONFIGS)("with %s", async (_name, broken, setting) => {
    const tenant = isolatedTenant();

    const res = await tenant.call(path, { env: broken });
    expect(res.status, await res.clone().text()).toBe(200);

    // The same settings do break the data route, so the 200 above is not an accident.
    const data = await tenant.call("/workflow_runs", { env: broken });
    const body = await json<{ code: string; message: string }>(data);
    expect(data.status).toBe(500);
    expect(body.code).toBe("CONFIG_INVALID");
    expect(body.message).toContain(setting);
    expect(tenant.fake.requests).toEqual([]);
  });

  it("without touching KV, even a KV that throws", async () => {
    const tenant = isolatedTenant();
    const kv = throwingKv();

    const res = await tenant.call(path, { env: { PAGE_CACHE: kv.binding } });

    expect(res.status).toBe(200);
    expect(kv.calls).toEqual([]);
    expect(tenant.fake.requests).toEqual([]);
  });

  it("without a rate limit, even when every budget is spent", async () => {
    const tenant = isolatedTenant();
    const pages = recordingLimiter(false);
    const stats = recordingLimiter(false);
    const env = { RATE_LIMITER: pages.binding, STATS_RATE_LIMITER: stats.binding };

    for (let i = 0; i < 3; i++) expect((await tenant.call(path, { env })).status).toBe(200);
    expect(pages.keys).toEqual([]);
    expect(stats.keys).toEqual([]);

    // The spent limiter does refuse data requests, so it was really in place.
    expect((await tenant.call("/workflow_runs", { env })).status).toBe(429);
    expect(tenant.fake.requests).toEqual([]);
  });

  it("without credentials, while data routes refuse anonymous callers", async () => {
    const tenant = isolatedTenant();
    const env = { ALLOW_ANONYMOUS: "false", CLIENT_TOKENS: "tok_someone_else_3c1d9e07b2a4f6580c" };

    const res = await tenant.call(path, { env });
    expect(res.status).toBe(200);
    expect(res.headers.has("www-authenticate")).toBe(false);

    expect((await tenant.call("/workflow_runs", { env })).status).toBe(401);
    expect(tenant.fake.requests).toEqual([]);
  });
});
