import { describe, expect, it } from "vitest";
import type { Fault } from "../../../fake/extend.ts";
import { API_CONTENT_SECURITY_POLICY } from "../../../src/security/headers.ts";
import { UPSTREAM_ONLY_HEADERS } from "../support/constants.ts";
import { TEST_CLIENT_TOKEN } from "../support/jwt-issuer.ts";
import { isolatedTenant } from "../support/tenant.ts";

const ENV: Partial<Env> = { CLIENT_TOKENS: TEST_CLIENT_TOKEN, ALLOW_ANONYMOUS: "false" };
const AUTH = { authorization: `Bearer ${TEST_CLIENT_TOKEN}` };

function expectSecurityHeaders(response: Response) {
  const h = response.headers;
  expect(h.get("x-content-type-options")).toBe("nosniff");
  expect(h.get("x-frame-options")).toBe("DENY");
  expect(h.get("content-security-policy")).toContain("frame-ancestors 'none'");
  expect(h.get("strict-transport-security")).toBe("max-age=31536000; includeSubDomains");
  expect(h.get("referrer-policy")).toBe("no-referrer");
  expect(h.get("cache-control")).toBeTruthy();
  for (const name of UPSTREAM_ONLY_HEADERS) expect(h.get(name), name).toBeNull();
}

describe("security headers", () => {
  it.each<[string, string, { method?: string; headers?: Record<string, string>; fault?: Fault }, number]>([
    ["a page of runs", "/workflow_runs?maxPageSize=2", { headers: AUTH }, 200],
    ["a HEAD", "/workflow_runs?maxPageSize=2", { method: "HEAD", headers: AUTH }, 200],
    ["the health check", "/healthz", {}, 200],
    ["the OpenAPI document", "/openapi.json", {}, 200],
    ["a 400", "/workflow_runs?bogus=1", { headers: AUTH }, 400],
    ["a 401", "/workflow_runs", {}, 401],
    ["a 404", "/nope", {}, 404],
    ["a 405", "/workflow_runs", { method: "POST", headers: AUTH }, 405],
    [
      "a preflight",
      "/workflow_runs",
      { method: "OPTIONS", headers: { origin: "https://x.example", "access-control-request-method": "GET" } },
      204,
    ],
    ["an upstream 500", "/workflow_runs", { headers: AUTH, fault: { type: "status", status: 500 } }, 502],
    ["an upstream redirect", "/workflow_runs", { headers: AUTH, fault: { type: "redirect" } }, 502],
    ["an upstream 401", "/workflow_runs", { headers: AUTH, fault: { type: "status", status: 401 } }, 502],
  ])("are on %s", async (_name, path, options, status) => {
    const tenant = isolatedTenant();
    if (options.fault) tenant.fake.inject(options.fault, 5);
    const response = await tenant.call(path, { env: ENV, method: options.method, headers: options.headers });
    expect(response.status).toBe(status);
    expectSecurityHeaders(response);
  });

  it("give JSON responses the API policy and no-store on errors", async () => {
    const tenant = isolatedTenant();
    const response = await tenant.call("/nope", { env: ENV });
    expect(response.headers.get("content-security-policy")).toBe(API_CONTENT_SECURITY_POLICY);
    expect(response.headers.get("cache-control")).toBe("no-store");
  });

  it("keep a route's own Content-Security-Policy (the docs page's script)", async () => {
    const tenant = isolatedTenant();
    const response = await tenant.call("/docs", { env: ENV });
    expect(response.status).toBe(200);
    const csp = response.headers.get("content-security-policy") ?? "";
    expect(csp).not.toBe(API_CONTENT_SECURITY_POLICY);
    expect(csp).toContain("script-src");
    expect(response.headers.get("x-frame-options")).toBe("DENY");
  });
});
