import { describe, expect, it } from "vitest";
import readme from "../../../README.md?raw";
import { rememberSecrets, SECRET_SETTINGS, scrub, secretValues } from "../../../src/app/request-log.ts";
import { sha256Hex } from "../../../src/lib/digest.ts";
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
      caller: expect.stringMatching(/^token:[0-9a-f]{16}$/),
    });
  });

  it("names token callers by a keyed hash: not the token's bare SHA-256, and another key gives another id", async () => {
    const tenant = isolatedTenant();
    const path = "/workflow_runs?maxPageSize=1";
    const callerUnder = async (env: Partial<Env>) => {
      const { records } = await logged(tenant, path, { env: { ...ENV, ...env }, headers: AUTH });
      return String(records[0]?.caller);
    };
    const byUpstreamKey = await callerUnder({});
    const bySigningKey = await callerUnder({ STATS_SIGNING_KEY: "s".repeat(40) });
    const byOtherSigningKey = await callerUnder({ STATS_SIGNING_KEY: "t".repeat(40) });
    expect(new Set([byUpstreamKey, bySigningKey, byOtherSigningKey]).size).toBe(3);
    expect(await callerUnder({ STATS_SIGNING_KEY: "s".repeat(40) })).toBe(bySigningKey);
    const bare = await sha256Hex(TEST_CLIENT_TOKEN);
    for (const id of [byUpstreamKey, bySigningKey]) {
      expect(id).toMatch(/^token:[0-9a-f]{16}$/);
      expect(bare).not.toContain(id.slice("token:".length, "token:".length + 8));
    }
  });

  it("names a JWT caller whose subject is unfit for a log line by a keyed hash", async () => {
    const tenant = isolatedTenant();
    const issuer = await TestIssuer.start();
    const subject = `${"x".repeat(200)} with spaces`;
    const { records } = await logged(tenant, "/workflow_runs?maxPageSize=1", {
      env: issuer.env,
      headers: { authorization: `Bearer ${await issuer.sign({ sub: subject })}` },
    });
    const caller = String(records[0]?.caller);
    expect(caller).toMatch(/^jwt:hmac:[0-9a-f]{16}$/);
    expect(await sha256Hex(subject)).not.toContain(caller.slice("jwt:hmac:".length, "jwt:hmac:".length + 8));
  });

  it("names JWT callers by subject and anonymous callers by ip (IPv6 by its /64)", async () => {
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
    const ipv6 = await logged(tenant, "/workflow_runs?maxPageSize=1", {
      env: { ALLOW_ANONYMOUS: "true" },
      headers: { "cf-connecting-ip": "2001:db8:7:8:9:a:b:c" },
    });
    expect(ipv6.records[0]?.caller).toBe("anon:2001:db8:7:8::/64");
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

describe("log scrubber", () => {
  it("scrubs every configured secret, also percent-encoded and JSON-escaped", async () => {
    const tenant = isolatedTenant();
    // What `openssl rand -base64 32` gives: `+`, `/` and `=` change under percent-encoding.
    const token = "q+Zr/9aXv2Lk0mW3bQ8yT1sNc4dE6fHj7gUi5oPxYw0=";
    const signingKey = 'signing"key\\with/quotes+and-backslashes-0123456789';
    const env = { ...ENV, CLIENT_TOKENS: `${TEST_CLIENT_TOKEN},${token}`, STATS_SIGNING_KEY: signingKey };
    const { lines } = await captureConsole(async () => {
      for (const path of [`/${encodeURIComponent(token)}`, `/${token}`, "/healthz"]) {
        await tenant.call(path, { env, headers: { authorization: `Bearer ${token}` } });
      }
    });
    const text = lines.join("\n");
    expect(text).toContain("[redacted]");
    for (const form of [token, encodeURIComponent(token)]) expect(text).not.toContain(form);
    // The request remembered them: any line, whoever writes it, is scrubbed of every form.
    const echoed = scrub(JSON.stringify({ echoed: [token, signingKey, encodeURIComponent(signingKey)] }));
    for (const form of [
      token,
      signingKey,
      JSON.stringify(signingKey).slice(1, -1),
      encodeURIComponent(signingKey),
    ]) {
      expect(echoed).not.toContain(form);
    }
  });

  it("scrubs a secret pasted raw into a query (`+` read as a space) or percent-encoded in any way", async () => {
    const tenant = isolatedTenant();
    const token = "q+Zr/9aXv2Lk0mW3bQ8yT1sNc4dE6fHj7gUi5oPxYw0=";
    const env = { ...ENV, CLIENT_TOKENS: `${TEST_CLIENT_TOKEN},${token}` };
    const lowerEncoded = encodeURIComponent(token).replace(/%[0-9A-F]{2}/g, (hex) => hex.toLowerCase());
    const { lines } = await captureConsole(async () => {
      for (const path of [
        `/workflow_runs?batchId=${token}`,
        `/workflow_runs?fileNameContains=${token}`,
        `/${lowerEncoded}`,
        `/workflow_runs?fileNameContains=${lowerEncoded}`,
        // Only `+` escaped, `/` and `=` left as they are: neither the raw nor the escaped form.
        `/${token.replaceAll("+", "%2B")}`,
        // A malformed escape elsewhere in the path does not keep the rest from being decoded.
        `/%E0%A4/${token.replaceAll("+", "%2B")}`,
      ]) {
        await tenant.call(path, { env, headers: AUTH });
      }
    });
    expect(requestLines(lines)).toHaveLength(6);
    const text = lines.join("\n");
    const partlyEncoded = token.replaceAll("+", "%2B");
    for (const form of [
      token,
      token.replaceAll("+", " "),
      lowerEncoded,
      encodeURIComponent(token),
      partlyEncoded,
    ]) {
      expect(text).not.toContain(form);
    }
  });

  it("scrubs a long secret before a logged path, name or value is shortened", async () => {
    const tenant = isolatedTenant();
    const token = `tok_${"k".repeat(120)}${crypto.randomUUID().replaceAll("-", "")}${"z".repeat(120)}`;
    const env = { ...ENV, CLIENT_TOKENS: `${TEST_CLIENT_TOKEN},${token}` };
    const { lines } = await captureConsole(async () => {
      for (const path of [`/${token}`, `/workflow_runs?batchId=${token}`, `/workflow_runs?${token}=1`]) {
        await tenant.call(path, { env, headers: AUTH });
      }
    });
    const records = requestLines(lines);
    expect(records).toHaveLength(3);
    const text = lines.join("\n");
    // Any 32 characters of it would be a usable part of the secret.
    for (let start = 0; start + 32 <= token.length; start += 16) {
      expect(text).not.toContain(token.slice(start, start + 32));
    }
  });

  it("takes a list of secrets, so any new secret setting is scrubbed too", () => {
    const secret = `wss_${crypto.randomUUID()}`;
    expect(scrub(`signed with ${secret}.`)).toContain(secret);
    rememberSecrets([secret, "short"]);
    expect(scrub(`signed with ${secret}.`)).toBe("signed with [redacted].");
    // Shorter than any secret the configuration accepts: scrubbing it would wreck every line.
    expect(scrub("a short word")).toBe("a short word");
  });

  it("reads each secret setting, lists split", () => {
    expect(
      secretValues({
        EXTEND_API_KEY: " key-0001 ",
        CLIENT_TOKENS: "a-token, b-token ,",
        STATS_SIGNING_KEY: "",
      }),
    ).toEqual(["key-0001", "a-token", "b-token"]);
  });

  it("covers every setting the README lists as a secret", () => {
    const secrets = [...readme.matchAll(/^\| `([A-Z][A-Z0-9_]+)` +\| secret +\|/gm)].map((m) => m[1]);
    expect(secrets.length).toBeGreaterThanOrEqual(3);
    expect(SECRET_SETTINGS.map((s) => s.name).sort()).toEqual(secrets.sort());
  });
});
