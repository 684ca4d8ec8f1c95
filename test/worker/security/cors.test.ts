import { ExtendClient } from "extend-ai";
import { describe, expect, it } from "vitest";
import { TEST_CLIENT_TOKEN } from "../support/jwt-issuer.ts";
import { isolatedTenant, type Tenant } from "../support/tenant.ts";

const APP = "https://app.example.com";
const ADMIN = "https://admin.example.com:8443";
/** Auth is on, so a passing preflight proves preflights need no credentials. */
const ENV: Partial<Env> = {
  ALLOWED_ORIGINS: `${APP}, ${ADMIN}`,
  CLIENT_TOKENS: TEST_CLIENT_TOKEN,
  ALLOW_ANONYMOUS: "false",
};
const AUTH = { authorization: `Bearer ${TEST_CLIENT_TOKEN}` };

function accessControlHeaders(response: Response): string[] {
  return [...response.headers.keys()].filter((name) => name.startsWith("access-control-"));
}

function varyList(response: Response): string[] {
  return (response.headers.get("vary") ?? "").split(",").map((v) => v.trim().toLowerCase());
}

describe("CORS on actual requests", () => {
  it.each([
    ["the first allowed origin", APP],
    ["an allowed origin with a port", ADMIN],
  ])("grants %s exactly its own origin", async (_name, origin) => {
    const tenant = isolatedTenant();
    const response = await tenant.call("/workflow_runs?maxPageSize=1", {
      env: ENV,
      headers: { ...AUTH, origin },
    });
    expect(response.status).toBe(200);
    expect(response.headers.get("access-control-allow-origin")).toBe(origin);
    expect(response.headers.get("access-control-allow-credentials")).toBeNull();
    expect(response.headers.get("access-control-expose-headers")).toBe(
      "x-request-id,x-cache,age,etag,retry-after",
    );
    expect(varyList(response)).toContain("origin");
  });

  it.each([
    ["another origin", "https://evil.example"],
    ["the null origin", "null"],
    ["a look-alike suffix", "https://app.example.com.evil.example"],
    ["a look-alike prefix", "https://evilapp.example.com"],
    ["another scheme", "http://app.example.com"],
    ["another port", "https://app.example.com:444"],
    ["a trailing slash", "https://app.example.com/"],
    ["different case", "https://APP.example.com"],
    ["a wildcard", "*"],
    ["a list of origins", `${APP} https://evil.example`],
  ])("gives %s no CORS grant at all", async (_name, origin) => {
    const tenant = isolatedTenant();
    const response = await tenant.call("/workflow_runs?maxPageSize=1", {
      env: ENV,
      headers: { ...AUTH, origin },
    });
    expect(response.status).toBe(200);
    expect(accessControlHeaders(response)).toEqual([]);
    expect(varyList(response)).toContain("origin");
  });

  it.each(["/workflow_runs?maxPageSize=1", "/healthz", "/nowhere"])(
    "answers %s without an Origin header with Vary: Origin and no CORS header",
    async (path) => {
      const tenant = isolatedTenant();
      const response = await tenant.call(path, { env: ENV, headers: AUTH });
      expect(accessControlHeaders(response)).toEqual([]);
      expect(varyList(response)).toContain("origin");
    },
  );

  it("grants nothing when ALLOWED_ORIGINS is unset", async () => {
    const tenant = isolatedTenant();
    const response = await tenant.call("/workflow_runs?maxPageSize=1", {
      env: { ...ENV, ALLOWED_ORIGINS: "" },
      headers: { ...AUTH, origin: APP },
    });
    expect(accessControlHeaders(response)).toEqual([]);
  });

  it.each([
    ["a 401", "/workflow_runs", {}, 401],
    ["a 404", "/nope", AUTH, 404],
    ["a 400", "/workflow_runs?maxPageSize=0", AUTH, 400],
    ["a 405", "/workflow_runs", { ...AUTH, "x-method": "DELETE" }, 405],
    ["the health check", "/healthz", {}, 200],
  ])("lets an allowed origin read %s", async (_name, path, headers, status) => {
    const tenant = isolatedTenant();
    const { "x-method": method, ...rest } = headers as Record<string, string>;
    const response = await tenant.call(path, { env: ENV, method, headers: { ...rest, origin: APP } });
    expect(response.status).toBe(status);
    expect(response.headers.get("access-control-allow-origin")).toBe(APP);
  });
});

describe("CORS preflights", () => {
  function preflight(tenant: Tenant, origin: string, method: string, requestHeaders?: string) {
    const headers: Record<string, string> = { origin, "access-control-request-method": method };
    if (requestHeaders !== undefined) headers["access-control-request-headers"] = requestHeaders;
    return tenant.call("/workflow_runs", { env: ENV, method: "OPTIONS", headers });
  }

  it("answers an allowed origin without credentials, with a fixed policy and max-age", async () => {
    const tenant = isolatedTenant();
    const response = await preflight(
      tenant,
      APP,
      "GET",
      "authorization, x-fern-sdk-name, x-extend-api-version",
    );
    expect(response.status).toBe(204);
    expect(response.headers.get("access-control-allow-origin")).toBe(APP);
    expect(response.headers.get("access-control-allow-methods")).toBe("GET,HEAD,OPTIONS");
    const allowed = (response.headers.get("access-control-allow-headers") ?? "").split(",");
    expect(allowed).toEqual(
      expect.arrayContaining(["authorization", "x-fern-sdk-name", "x-extend-api-version"]),
    );
    expect(response.headers.get("access-control-max-age")).toBe("600");
    expect(response.headers.get("access-control-allow-credentials")).toBeNull();
    expect(varyList(response)).toContain("origin");
    expect(tenant.fake.requests).toHaveLength(0);
  });

  it("allows every request header the extend-ai SDK sets, as a browser would preflight them", async () => {
    let sent: string[] = [];
    const sdk = new ExtendClient({
      token: TEST_CLIENT_TOKEN,
      baseUrl: "https://proxy.test",
      maxRetries: 0,
      fetch: async (_input, init) => {
        sent = [...new Headers(init?.headers).keys()];
        return Response.json({ object: "list", data: [] });
      },
    });
    await sdk.workflowRuns.list({ maxPageSize: 1, "x-extend-workspace-id": "ws_1" });
    // A browser preflights every header a script set except the CORS-safelisted `accept`; Firefox
    // sends the SDK's own `user-agent` too (the Fetch standard does not forbid it).
    const preflighted = sent.filter((name) => name !== "accept").sort();
    expect(preflighted).toEqual(expect.arrayContaining(["authorization", "user-agent", "x-fern-sdk-name"]));
    const response = await preflight(isolatedTenant(), APP, "GET", preflighted.join(","));
    expect(response.headers.get("access-control-allow-origin")).toBe(APP);
    const allowed = (response.headers.get("access-control-allow-headers") ?? "").split(",");
    expect(allowed).toEqual(expect.arrayContaining(preflighted));
  });

  it.each([
    ["DELETE", "DELETE", undefined],
    ["PUT with a body type", "PUT", "content-type"],
    ["a made-up method", "PURGE", undefined],
    ["GET with unknown headers", "GET", "x-evil, x-api-key, cookie"],
    ["GET with a huge header list", "GET", Array.from({ length: 50 }, (_, i) => `x-h${i}`).join(",")],
  ])("never widens the policy for %s", async (_name, method, requestHeaders) => {
    const tenant = isolatedTenant();
    const response = await preflight(tenant, APP, method, requestHeaders);
    expect(response.headers.get("access-control-allow-methods")).toBe("GET,HEAD,OPTIONS");
    const allowHeaders = response.headers.get("access-control-allow-headers") ?? "";
    for (const requested of (requestHeaders ?? "").split(",").map((h) => h.trim())) {
      if (requested && requested !== "content-type") expect(allowHeaders.split(",")).not.toContain(requested);
    }
    expect(tenant.fake.requests).toHaveLength(0);
  });

  it.each([
    ["another origin", "https://evil.example"],
    ["the null origin", "null"],
  ])("gives %s a preflight without any grant", async (_name, origin) => {
    const tenant = isolatedTenant();
    const response = await preflight(tenant, origin, "GET", "authorization");
    expect(response.status).toBe(204);
    expect(accessControlHeaders(response)).toEqual([]);
    expect(tenant.fake.requests).toHaveLength(0);
  });
});
