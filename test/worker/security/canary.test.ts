import { describe, expect, it } from "vitest";
import type { Fault } from "../../../fake/extend.ts";
import { captureConsole } from "../support/console.ts";
import { TEST_UPSTREAM_KEY } from "../support/constants.ts";
import { TEST_CLIENT_TOKEN, TestIssuer } from "../support/jwt-issuer.ts";
import type { CallOptions } from "../support/proxy.ts";
import { isolatedTenant, type Tenant } from "../support/tenant.ts";

// Every route and every fault of the fake Extend, with a recognisable upstream key and client
// token: neither may show up in any response (status line, header or body) or console line.

const ENV: Partial<Env> = {
  CLIENT_TOKENS: TEST_CLIENT_TOKEN,
  ALLOW_ANONYMOUS: "false",
  ALLOWED_ORIGINS: "https://app.example.com",
  // Hangs and retries end quickly.
  UPSTREAM_TIMEOUT_MS: "200",
  UPSTREAM_DEADLINE_MS: "700",
};
const AUTH = { authorization: `Bearer ${TEST_CLIENT_TOKEN}`, origin: "https://app.example.com" };
const ALWAYS_ALLOW: RateLimit = { limit: async () => ({ success: true }) };

async function render(response: Response): Promise<string> {
  const headers = [...response.headers].map(([name, value]) => `${name}: ${value}`).join("\n");
  return `${response.status} ${response.statusText}\n${headers}\n\n${await response.text()}`;
}

async function exchange(
  tenant: Tenant,
  path: string,
  options: CallOptions = {},
): Promise<{ response: string; console: string }> {
  const { result, lines } = await captureConsole(async () => render(await tenant.call(path, options)));
  return { response: result, console: lines.join("\n") };
}

function expectNoSecret(seen: { response: string; console: string }, secrets: string[]) {
  for (const secret of secrets) {
    expect(seen.response, "response").not.toContain(secret);
    expect(seen.console, "console").not.toContain(secret);
  }
}

const FAULTS: [string, Fault][] = [
  [
    "a 500 echoing the key",
    {
      type: "status",
      status: 500,
      body: `{"message":"bad key ${TEST_UPSTREAM_KEY}"}`,
      headers: { "x-echo": TEST_UPSTREAM_KEY },
    },
  ],
  [
    "a 401 echoing the key",
    { type: "status", status: 401, body: `{"message":"invalid key ${TEST_UPSTREAM_KEY}"}` },
  ],
  ["a 403", { type: "status", status: 403 }],
  ["a 402", { type: "status", status: 402 }],
  ["a 400 echoing the key", { type: "status", status: 400, body: `{"message":"${TEST_UPSTREAM_KEY}"}` }],
  ["a 404", { type: "status", status: 404 }],
  ["a 422", { type: "status", status: 422 }],
  ["a 503", { type: "status", status: 503 }],
  ["a 418", { type: "status", status: 418 }],
  ["a long rate limit", { type: "rate-limit", retryAfter: "30" }],
  ["a rate limit without Retry-After", { type: "rate-limit", retryAfter: null }],
  ["a hang", { type: "hang" }],
  ["a connection reset", { type: "reset" }],
  ["a truncated body", { type: "truncated" }],
  ["a non-JSON body", { type: "non-json" }],
  ["a body of the wrong shape", { type: "bad-shape" }],
  [
    "a redirect carrying the key",
    { type: "redirect", location: `https://evil.example/steal?key=${TEST_UPSTREAM_KEY}` },
  ],
  ["a delay", { type: "delay", ms: 20 }],
];

describe("canary: the upstream key and the client token never leak", () => {
  it.each(FAULTS)("under %s, on /workflow_runs and /stats", async (_name, fault) => {
    for (const path of ["/workflow_runs?maxPageSize=3", "/stats"]) {
      // A tenant of its own: no cached page, and no rate-budget pause left by an earlier 429,
      // may answer instead of the faulty upstream; nor may the per-caller /stats limit, which
      // every case here would otherwise spend for the one client token (it has its own tests).
      const tenant = isolatedTenant({ env: { ...ENV, STATS_RATE_LIMITER: ALWAYS_ALLOW } });
      tenant.fake.inject(fault, 20);
      const seen = await exchange(tenant, path, { headers: AUTH });
      expectNoSecret(seen, [TEST_UPSTREAM_KEY, TEST_CLIENT_TOKEN]);
    }
  });

  it.each<[string, string, CallOptions]>([
    ["a page", "/workflow_runs?maxPageSize=3", { headers: AUTH }],
    ["a HEAD", "/workflow_runs?maxPageSize=3", { method: "HEAD", headers: AUTH }],
    ["stats", "/stats", { headers: AUTH }],
    ["the health check", "/healthz", { headers: AUTH }],
    ["the OpenAPI document", "/openapi.json", { headers: AUTH }],
    ["the docs page", "/docs", { headers: AUTH }],
    ["an unknown route", "/nope", { headers: AUTH }],
    ["a wrong method", "/workflow_runs", { method: "DELETE", headers: AUTH }],
    [
      "a preflight",
      "/workflow_runs",
      { method: "OPTIONS", headers: { ...AUTH, "access-control-request-method": "GET" } },
    ],
    ["an invalid query", "/workflow_runs?maxPageSize=5000&status=NOPE", { headers: AUTH }],
    ["a repeated parameter", "/workflow_runs?maxPageSize=1&maxPageSize=2", { headers: AUTH }],
    ["a wrong token", "/workflow_runs", { headers: { authorization: `Bearer ${TEST_CLIENT_TOKEN}x` } }],
    [
      "a Basic header with the token",
      "/workflow_runs",
      { headers: { authorization: `Basic ${TEST_CLIENT_TOKEN}` } },
    ],
    ["default deny", "/workflow_runs", { env: { CLIENT_TOKENS: "" }, headers: AUTH }],
    ["a broken configuration", "/workflow_runs", { env: { UPSTREAM_TIMEOUT_MS: "nope" }, headers: AUTH }],
  ])("on %s", async (_name, path, options) => {
    const tenant = isolatedTenant({ env: ENV });
    const seen = await exchange(tenant, path, options);
    expectNoSecret(seen, [TEST_UPSTREAM_KEY, TEST_CLIENT_TOKEN]);
    for (const request of tenant.fake.requests) {
      expect(JSON.stringify(request.headers)).not.toContain(TEST_CLIENT_TOKEN);
    }
  });

  it("keeps a secret that a caller puts in the URL out of the logs", async () => {
    const tenant = isolatedTenant({ env: ENV });
    for (const path of [
      `/workflow_runs?nextPageToken=${TEST_UPSTREAM_KEY}`,
      `/workflow_runs?fileNameContains=${TEST_CLIENT_TOKEN}`,
      `/${TEST_UPSTREAM_KEY}`,
    ]) {
      const { console } = await exchange(tenant, path, { headers: AUTH });
      expect(console).not.toContain(TEST_UPSTREAM_KEY);
      expect(console).not.toContain(TEST_CLIENT_TOKEN);
    }
  });

  it("keeps JWTs out of responses, logs and upstream requests", async () => {
    const tenant = isolatedTenant({ env: ENV });
    const issuer = await TestIssuer.start();
    const good = await issuer.sign();
    const expired = await issuer.sign({ exp: Math.floor(Date.now() / 1000) - 60 });
    const headerSets: Record<string, string>[] = [
      { authorization: `Bearer ${good}` },
      { "cf-access-jwt-assertion": good },
      { authorization: `Bearer ${expired}` },
    ];
    for (const headers of headerSets) {
      const seen = await exchange(tenant, "/workflow_runs?maxPageSize=1", { env: issuer.env, headers });
      const [, payload = "", signature = ""] = good.split(".");
      expectNoSecret(seen, [payload, signature, expired.split(".")[2] ?? "", TEST_UPSTREAM_KEY]);
    }
    for (const request of tenant.fake.requests)
      expect(JSON.stringify(request.headers)).not.toContain(good.split(".")[1]);
  });
});
