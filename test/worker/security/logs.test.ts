import { describe, expect, it } from "vitest";
import { captureConsole, requestLines } from "../support/console.ts";
import { TEST_UPSTREAM_KEY } from "../support/constants.ts";
import { TEST_CLIENT_TOKEN, TestIssuer } from "../support/jwt-issuer.ts";
import { type CallOptions, json } from "../support/proxy.ts";
import { isolatedTenant, type Tenant } from "../support/tenant.ts";

const ENV: Partial<Env> = { CLIENT_TOKENS: TEST_CLIENT_TOKEN, ALLOW_ANONYMOUS: "false" };
const AUTH = { authorization: `Bearer ${TEST_CLIENT_TOKEN}` };

async function logged(tenant: Tenant, path: string, options: CallOptions = {}) {
  const { result: response, lines } = await captureConsole(() => tenant.call(path, { env: ENV, ...options }));
  return { response, lines, records: requestLines(lines) };
}

describe("request log", () => {
  it.each<[string, string, CallOptions, number]>([
    ["a page", "/workflow_runs?maxPageSize=2", { headers: AUTH }, 200],
    ["a validation error", "/workflow_runs?maxPageSize=0", { headers: AUTH }, 400],
    ["a refused caller", "/workflow_runs", { headers: { authorization: "Bearer nope-nope-nope" } }, 401],
    ["an unknown route", "/nope", {}, 404],
    ["a wrong method", "/workflow_runs", { method: "PUT", headers: AUTH }, 405],
    [
      "a preflight",
      "/workflow_runs",
      { method: "OPTIONS", headers: { origin: "https://a.example", "access-control-request-method": "GET" } },
      204,
    ],
    ["the health check", "/healthz", {}, 200],
  ])("writes exactly one line for %s", async (_name, path, options, status) => {
    const tenant = isolatedTenant();
    const { response, records } = await logged(tenant, path, options);
    expect(response.status).toBe(status);
    expect(records).toHaveLength(1);
    const [record] = records;
    expect(record).toMatchObject({
      msg: "request",
      requestId: response.headers.get("x-request-id"),
      method: options.method ?? "GET",
      route: new URL(path, "https://x").pathname,
      status,
    });
    expect(record?.durationMs).toEqual(expect.any(Number));
  });

  it("reports cache state, upstream attempts and status, and the caller id", async () => {
    const tenant = isolatedTenant();
    tenant.fake.inject({ type: "status", status: 503 }, 1);
    const { records } = await logged(tenant, "/workflow_runs?maxPageSize=1", { headers: AUTH });
    expect(records[0]).toMatchObject({
      status: 200,
      cache: "MISS",
      upstreamAttempts: 2,
      upstreamStatus: 200,
      caller: expect.stringMatching(/^token:[0-9a-f]{12}$/),
    });
  });

  it("names JWT callers by subject and anonymous callers by ip", async () => {
    const tenant = isolatedTenant();
    const issuer = await TestIssuer.start();
    const jwt = await logged(tenant, "/workflow_runs?maxPageSize=1", {
      env: issuer.env,
      headers: { authorization: `Bearer ${await issuer.sign({ sub: "alice@example.com" })}` },
    });
    expect(jwt.records[0]?.caller).toBe("jwt:alice@example.com");
    const anonymous = await logged(tenant, "/workflow_runs?maxPageSize=1", {
      env: { ALLOW_ANONYMOUS: "true" },
      headers: { "cf-connecting-ip": "203.0.113.9" },
    });
    expect(anonymous.records[0]?.caller).toBe("anon:203.0.113.9");
  });

  it("logs a cursor only as a hash", async () => {
    const tenant = isolatedTenant();
    const first = await json<{ nextPageToken: string }>(
      await tenant.call("/workflow_runs?maxPageSize=2", { env: ENV, headers: AUTH }),
    );
    const cursor = first.nextPageToken;
    expect(cursor).toBeTruthy();
    const { records, lines } = await logged(
      tenant,
      `/workflow_runs?maxPageSize=2&nextPageToken=${encodeURIComponent(cursor)}`,
      {
        headers: AUTH,
      },
    );
    const query = records[0]?.query as Record<string, string>;
    expect(query.maxPageSize).toBe("2");
    expect(query.nextPageToken).toMatch(/^sha256:[0-9a-f]{12}$/);
    expect(lines.join("\n")).not.toContain(cursor);
    expect(lines.join("\n")).not.toContain(encodeURIComponent(cursor));
  });

  it("never logs credentials: headers, credential-looking parameters, or secrets echoed elsewhere", async () => {
    const tenant = isolatedTenant();
    const { lines } = await logged(
      tenant,
      `/workflow_runs?apiKey=${TEST_UPSTREAM_KEY}&token=hunter2hunter2`,
      {
        headers: { ...AUTH, cookie: "session=cookie-secret-value", "x-request-id": TEST_CLIENT_TOKEN },
      },
    );
    const text = lines.join("\n");
    expect(text).not.toContain(TEST_CLIENT_TOKEN);
    expect(text).not.toContain(TEST_UPSTREAM_KEY);
    expect(text).not.toContain("hunter2hunter2");
    expect(text).not.toContain("cookie-secret-value");
    expect(text).toContain("[redacted]");
  });
});
