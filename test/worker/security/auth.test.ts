import { HttpResponse, http } from "msw";
import { describe, expect, it } from "vitest";
import { JWKS_MAX_BYTES } from "../../../src/security/jwks.ts";
import { JWT_CLOCK_SKEW_SECONDS } from "../../../src/security/jwt.ts";
import { TEST_UPSTREAM_KEY } from "../support/constants.ts";
import { foreignKey, TEST_CLIENT_TOKEN, TestIssuer } from "../support/jwt-issuer.ts";
import { json } from "../support/proxy.ts";
import { network } from "../support/setup.ts";
import { isolatedTenant, type Tenant } from "../support/tenant.ts";

const DATA_PATH = "/workflow_runs?maxPageSize=2";
const TOKENS_ONLY: Partial<Env> = {
  CLIENT_TOKENS: `other_token_abcdefghijklmnopqrstuvwx, ${TEST_CLIENT_TOKEN}`,
  ALLOW_ANONYMOUS: "false",
};

async function expectUnauthorized(response: Response, messagePart?: RegExp) {
  const body = await json<{ code: string; message: string; requestId: string }>(response);
  expect(response.status, JSON.stringify(body)).toBe(401);
  expect(body.code).toBe("UNAUTHORIZED");
  expect(body.requestId).toBe(response.headers.get("x-request-id"));
  expect(response.headers.get("content-type")).toMatch(/^application\/json/);
  expect(response.headers.get("www-authenticate")).toMatch(/^Bearer realm="extend-runs-proxy"/);
  if (messagePart) expect(body.message).toMatch(messagePart);
  return body;
}

describe("default deny", () => {
  it("refuses every data request with a 401 that says how to configure access", async () => {
    const tenant = isolatedTenant();
    const response = await tenant.call(DATA_PATH, {
      env: { ALLOW_ANONYMOUS: "false" },
      headers: { authorization: "Bearer anything-at-all" },
    });
    const body = await expectUnauthorized(response);
    expect(body.message).toContain("CLIENT_TOKENS");
    expect(body.message).toContain("JWT_JWKS_URL");
    expect(body.message).toContain("ALLOW_ANONYMOUS=true");
    expect(tenant.fake.listCalls).toHaveLength(0);
  });

  it.each([
    ["/healthz", 200],
    ["/openapi.json", 200],
    ["/no-such-route", 404],
  ])("leaves %s open (status %i)", async (path, status) => {
    const tenant = isolatedTenant();
    const response = await tenant.call(path, { env: { ALLOW_ANONYMOUS: "false" } });
    expect(response.status).toBe(status);
  });

  it("answers other methods on a data route with 405, not 401", async () => {
    const tenant = isolatedTenant();
    const response = await tenant.call("/workflow_runs", {
      method: "POST",
      env: { ALLOW_ANONYMOUS: "false" },
    });
    expect(response.status).toBe(405);
  });
});

describe("path variants", () => {
  it.each([
    "/workflow_runs",
    "/workflow_runs/",
    "/workflow%5Fruns",
    "/workflow_runs%2F",
    "//workflow_runs",
    "/./workflow_runs",
    "/stats/../workflow_runs",
    "/stats",
    "/stats/",
    "/WORKFLOW_RUNS",
  ])("never serve data without credentials: %s", async (path) => {
    const tenant = isolatedTenant();
    const response = await tenant.call(path, { env: TOKENS_ONLY });
    expect([401, 404]).toContain(response.status);
    expect(tenant.fake.listCalls).toHaveLength(0);
  });
});

describe("static client tokens", () => {
  it("serves a caller with a configured token, and never forwards it", async () => {
    const tenant = isolatedTenant();
    const response = await tenant.call(DATA_PATH, {
      env: TOKENS_ONLY,
      headers: { authorization: `Bearer ${TEST_CLIENT_TOKEN}`, cookie: "session=abc" },
    });
    expect(response.status).toBe(200);
    expect(tenant.fake.listCalls).toHaveLength(1);
    const sent = tenant.fake.listCalls[0]?.headers ?? {};
    expect(sent.authorization).toBe(`Bearer ${TEST_UPSTREAM_KEY}`);
    expect(sent.cookie).toBeUndefined();
    expect(JSON.stringify(sent)).not.toContain(TEST_CLIENT_TOKEN);
  });

  it("accepts the scheme in any case", async () => {
    const tenant = isolatedTenant();
    const response = await tenant.call(DATA_PATH, {
      env: TOKENS_ONLY,
      headers: { authorization: `bearer ${TEST_CLIENT_TOKEN}` },
    });
    expect(response.status).toBe(200);
  });

  it.each([
    ["no credentials", undefined, /Credentials are required/, false],
    ["a wrong token", "Bearer wrong_token_1234567890", /bearer token is not valid/, true],
    ["a prefix of the token", `Bearer ${TEST_CLIENT_TOKEN.slice(0, -1)}`, /not valid/, true],
    ["the token plus a character", `Bearer ${TEST_CLIENT_TOKEN}x`, /not valid/, true],
    ["an empty bearer", "Bearer ", /Bearer scheme/, true],
    ["another scheme", `Basic ${btoa(`user:${TEST_CLIENT_TOKEN}`)}`, /Bearer scheme/, true],
    ["the token without a scheme", TEST_CLIENT_TOKEN, /Bearer scheme/, true],
  ])("refuses %s with 401 and no upstream call", async (_name, authorization, message, hasError) => {
    const tenant = isolatedTenant();
    const headers: Record<string, string> = {};
    if (authorization !== undefined) headers.authorization = authorization;
    const response = await tenant.call(DATA_PATH, { env: TOKENS_ONLY, headers });
    await expectUnauthorized(response, message);
    const challenge = response.headers.get("www-authenticate") ?? "";
    expect(challenge.includes("error=")).toBe(hasError);
    expect(tenant.fake.listCalls).toHaveLength(0);
  });

  it("does not accept a JWT when only tokens are configured", async () => {
    const tenant = isolatedTenant();
    const issuer = await TestIssuer.start();
    const response = await tenant.call(DATA_PATH, {
      env: TOKENS_ONLY,
      headers: { authorization: `Bearer ${await issuer.sign()}` },
    });
    await expectUnauthorized(response);
    expect(issuer.fetches).toBe(0);
    expect(tenant.fake.listCalls).toHaveLength(0);
  });
});

describe("anonymous callers", () => {
  it("serves callers without credentials when ALLOW_ANONYMOUS=true and nothing else is configured", async () => {
    const tenant = isolatedTenant();
    const response = await tenant.call(DATA_PATH, { env: { ALLOW_ANONYMOUS: "true" } });
    expect(response.status).toBe(200);
  });

  it("ignores credentials when anonymous access is the only mode (an SDK always sends one)", async () => {
    const tenant = isolatedTenant();
    const response = await tenant.call(DATA_PATH, {
      env: { ALLOW_ANONYMOUS: "true" },
      headers: { authorization: "Bearer whatever-the-sdk-holds" },
    });
    expect(response.status).toBe(200);
  });

  it("with tokens configured too, serves no credentials but refuses wrong ones", async () => {
    const tenant = isolatedTenant();
    const env = { ...TOKENS_ONLY, ALLOW_ANONYMOUS: "true" };
    expect((await tenant.call(DATA_PATH, { env })).status).toBe(200);
    const wrong = await tenant.call(DATA_PATH, {
      env,
      headers: { authorization: "Bearer wrong_token_1234567890" },
    });
    await expectUnauthorized(wrong);
  });
});

describe("JWT", () => {
  async function callWithJwt(tenant: Tenant, issuer: TestIssuer, token: string, extra: Partial<Env> = {}) {
    return tenant.call(DATA_PATH, {
      env: { ...issuer.env, ...extra },
      headers: { authorization: `Bearer ${token}` },
    });
  }

  it.each(["RS256", "ES256"] as const)("accepts a valid %s token and forwards nothing of it", async (alg) => {
    const tenant = isolatedTenant();
    const issuer = await TestIssuer.start();
    const token = await issuer.sign({}, { alg });
    const response = await callWithJwt(tenant, issuer, token);
    expect(response.status).toBe(200);
    const sent = JSON.stringify(tenant.fake.listCalls[0]?.headers ?? {});
    expect(sent).not.toContain(token.split(".")[1]);
    expect(tenant.fake.listCalls[0]?.headers.authorization).toBe(`Bearer ${TEST_UPSTREAM_KEY}`);
  });

  it("accepts any of several configured audiences, and an aud array", async () => {
    const tenant = isolatedTenant();
    const issuer = await TestIssuer.start();
    const token = await issuer.sign({ aud: ["someone-else", "second-audience"] });
    const response = await callWithJwt(tenant, issuer, token, {
      JWT_AUDIENCE: `${issuer.audience},second-audience`,
    });
    expect(response.status).toBe(200);
  });

  it("accepts an OAuth access token (typ at+jwt)", async () => {
    const tenant = isolatedTenant();
    const issuer = await TestIssuer.start();
    const response = await callWithJwt(tenant, issuer, await issuer.sign({}, { header: { typ: "at+jwt" } }));
    expect(response.status).toBe(200);
  });

  const now = () => Math.floor(Date.now() / 1000);
  const SKEW = JWT_CLOCK_SKEW_SECONDS;
  const rejected: [string, (issuer: TestIssuer) => Promise<string>, RegExp][] = [
    ["expired", (i) => i.sign({ exp: now() - 600 }), /expired/],
    ["expired just past the leeway", (i) => i.sign({ exp: now() - SKEW - 5 }), /expired/],
    ["not yet valid (nbf)", (i) => i.sign({ nbf: now() + 600 }), /not valid yet/],
    ["not yet valid just past the leeway", (i) => i.sign({ nbf: now() + SKEW + 5 }), /not valid yet/],
    ["issued in the future (iat)", (i) => i.sign({ iat: now() + 600 }), /issued in the future/],
    ["issued just past the leeway", (i) => i.sign({ iat: now() + SKEW + 5 }), /issued in the future/],
    ["with a non-numeric exp", (i) => i.sign({ exp: "tomorrow" }), /expired/],
    ["without exp", (i) => i.sign({ exp: undefined }), /no exp/],
    ["without sub", (i) => i.sign({ sub: undefined }), /no sub/],
    ["from another issuer", (i) => i.sign({ iss: "https://evil.test/" }), /issuer/],
    ["without an issuer", (i) => i.sign({ iss: undefined }), /issuer/],
    ["for another audience", (i) => i.sign({ aud: "someone-else" }), /audience/],
    ["without an audience", (i) => i.sign({ aud: undefined }), /audience/],
    ["signed by a foreign key", async (i) => i.sign({}, { signingKey: await foreignKey() }), /signature/],
    ["with a tampered payload", async (i) => tamper(await i.sign()), /signature/],
    ["with alg none", async (i) => i.unsigned(), /algorithm is not accepted/],
    ["HS256 keyed with the public key", (i) => i.signHs256WithPublicKey(), /algorithm is not accepted/],
    ["claiming ES256 for the RSA key", (i) => i.sign({}, { header: { alg: "ES256" } }), /does not match/],
    ["with an unknown typ", (i) => i.sign({}, { header: { typ: "dpop+jwt" } }), /header/],
    ["without a kid", (i) => i.sign({}, { header: { kid: undefined } }), /no kid/],
    ["that is not a JWT at all", async () => "not.a.jwt!", /not valid/],
    ...["null", "[]", '"RS256"', "1"].map((json): [string, (i: TestIssuer) => Promise<string>, RegExp] => [
      `whose header is the JSON ${json}`,
      async (i) => withHeader(await i.sign(), json),
      /not a well-formed JWT/,
    ]),
  ];

  it.each<[string, Record<string, unknown>]>([
    ["from an issuer whose clock is 20 s fast", { iat: now() + 20, nbf: now() + 20, exp: now() + 320 }],
    ["from an issuer whose clock is 50 s fast", { iat: now() + 50, nbf: now() + 50 }],
    ["that expired 30 s ago by the proxy's clock", { iat: now() - 300, nbf: now() - 300, exp: now() - 30 }],
  ])(`accepts a token %s (${JWT_CLOCK_SKEW_SECONDS} s of clock-skew leeway)`, async (_name, claims) => {
    const tenant = isolatedTenant();
    const issuer = await TestIssuer.start();
    const response = await callWithJwt(tenant, issuer, await issuer.sign(claims));
    expect(response.status, await response.clone().text()).toBe(200);
  });

  it("gives a forged token one answer whatever its claims: no hint of the accepted issuer or audience", async () => {
    const tenant = isolatedTenant();
    const issuer = await TestIssuer.start();
    const forger = await foreignKey();
    const claimSets: Record<string, unknown>[] = [
      {},
      { aud: "someone-else" },
      { aud: undefined },
      { iss: "https://evil.test/" },
      { iss: undefined },
      { exp: now() - 3600 },
      { exp: undefined },
      { nbf: now() + 3600 },
      { sub: undefined },
    ];
    const answers = new Set<string>();
    for (const claims of claimSets) {
      const forged = await issuer.sign(claims, { signingKey: forger });
      const tampered = tamper(await issuer.sign(claims));
      for (const token of [forged, tampered]) {
        const response = await callWithJwt(tenant, issuer, token);
        const body = await expectUnauthorized(response);
        answers.add(`${body.message} | ${response.headers.get("www-authenticate")}`);
      }
    }
    expect([...answers]).toEqual([
      `The credentials were rejected: the token's signature does not verify. | Bearer realm="extend-runs-proxy", error="invalid_token", error_description="the token's signature does not verify"`,
    ]);
    expect(tenant.fake.listCalls).toHaveLength(0);
  });

  it.each(rejected)("refuses a token %s with 401 and no upstream call", async (_name, make, message) => {
    const tenant = isolatedTenant();
    const issuer = await TestIssuer.start();
    const response = await callWithJwt(tenant, issuer, await make(issuer));
    await expectUnauthorized(response, message);
    expect(response.headers.get("www-authenticate")).toContain('error="invalid_token"');
    expect(tenant.fake.listCalls).toHaveLength(0);
  });

  it("verifies a Cf-Access-Jwt-Assertion header (Cloudflare Access)", async () => {
    const tenant = isolatedTenant();
    const issuer = await TestIssuer.start();
    const response = await tenant.call(DATA_PATH, {
      env: issuer.env,
      headers: { "cf-access-jwt-assertion": await issuer.sign({ sub: "", common_name: "svc.access" }) },
    });
    expect(response.status).toBe(200);
    expect(Object.keys(tenant.fake.listCalls[0]?.headers ?? {})).not.toContain("cf-access-jwt-assertion");
  });

  it("refuses an invalid Cf-Access-Jwt-Assertion", async () => {
    const tenant = isolatedTenant();
    const issuer = await TestIssuer.start();
    const response = await tenant.call(DATA_PATH, {
      env: issuer.env,
      headers: {
        "cf-access-jwt-assertion": await issuer.sign({ aud: "other-app" }),
      },
    });
    await expectUnauthorized(response, /audience/);
  });

  it("tries a bearer that is not a static token as a JWT when both are configured", async () => {
    const tenant = isolatedTenant();
    const issuer = await TestIssuer.start();
    const env = { ...issuer.env, CLIENT_TOKENS: TEST_CLIENT_TOKEN };
    const byToken = await tenant.call(DATA_PATH, {
      env,
      headers: { authorization: `Bearer ${TEST_CLIENT_TOKEN}` },
    });
    expect(byToken.status).toBe(200);
    expect(issuer.fetches).toBe(0);
    const byJwt = await tenant.call(DATA_PATH, {
      env,
      headers: { authorization: `Bearer ${await issuer.sign()}` },
    });
    expect(byJwt.status).toBe(200);
    expect(issuer.fetches).toBe(1);
  });

  it("caches the key set across requests", async () => {
    const tenant = isolatedTenant();
    const issuer = await TestIssuer.start();
    for (let i = 0; i < 5; i++) {
      const response = await callWithJwt(tenant, issuer, await issuer.sign({ sub: `user-${i}` }));
      expect(response.status).toBe(200);
    }
    expect(issuer.fetches).toBe(1);
  });

  it("refetches the key set once for an unknown kid, then refuses without fetching again", async () => {
    const tenant = isolatedTenant();
    const issuer = await TestIssuer.start();
    expect((await callWithJwt(tenant, issuer, await issuer.sign())).status).toBe(200);
    expect(issuer.fetches).toBe(1);

    const unknown = await issuer.sign({}, { header: { kid: "rotated-away" } });
    await expectUnauthorized(await callWithJwt(tenant, issuer, unknown), /signing key is not known/);
    expect(issuer.fetches).toBe(2);
    await expectUnauthorized(await callWithJwt(tenant, issuer, unknown), /signing key is not known/);
    expect(issuer.fetches).toBe(2);
    expect(tenant.fake.listCalls).toHaveLength(1);
  });

  it("picks up a rotated key through the unknown-kid refetch", async () => {
    const tenant = isolatedTenant();
    const issuer = await TestIssuer.start();
    expect((await callWithJwt(tenant, issuer, await issuer.sign())).status).toBe(200);
    await issuer.addKey("rsa-2", "RS256");
    expect((await callWithJwt(tenant, issuer, await issuer.sign({}, { kid: "rsa-2" }))).status).toBe(200);
    expect(issuer.fetches).toBe(2);
  });

  it.each([
    ["HTTP 500", 500],
    ["HTTP 404", 404],
    ["a network error", 0],
  ])("answers a clear 503 when the key set fails with %s, and backs off", async (_name, status) => {
    const tenant = isolatedTenant();
    const issuer = await TestIssuer.start();
    issuer.failStatus = status;
    const token = await issuer.sign();
    for (let i = 0; i < 3; i++) {
      const response = await callWithJwt(tenant, issuer, token);
      expect(response.status).toBe(503);
      const body = (await response.json()) as { code: string; message: string; retryable: boolean };
      expect(body).toMatchObject({ code: "AUTH_UNAVAILABLE", retryable: true });
      expect(body.message).toMatch(/signing keys could not be fetched/);
      expect(response.headers.get("retry-after")).toBe("10");
      expect(JSON.stringify(body)).not.toContain(issuer.jwksUrl);
    }
    expect(issuer.fetches).toBe(1);
    expect(tenant.fake.listCalls).toHaveLength(0);
  });

  it("stops reading an oversized key set once it passes the limit, and answers the 503", async () => {
    const tenant = isolatedTenant();
    const issuer = await TestIssuer.start();
    const chunk = new TextEncoder().encode(`{"keys":[${" ".repeat(64 * 1024 - 9)}`);
    const filler = new Uint8Array(64 * 1024).fill(0x20);
    let served = 0;
    network.use(
      http.get(issuer.jwksUrl, () => {
        issuer.fetches += 1;
        const body = new ReadableStream<Uint8Array>({
          pull(controller) {
            // 16 MiB in all, far past any key set, unless the reader stops first.
            if (served >= 16 * 1024 * 1024) return controller.close();
            controller.enqueue(served === 0 ? chunk : filler);
            served += 64 * 1024;
          },
        });
        return new HttpResponse(body, { headers: { "content-type": "application/json" } });
      }),
    );
    const response = await callWithJwt(tenant, issuer, await issuer.sign());
    expect(response.status).toBe(503);
    expect(await response.json()).toMatchObject({ code: "AUTH_UNAVAILABLE" });
    expect(issuer.fetches).toBe(1);
    expect(served).toBeLessThanOrEqual(JWKS_MAX_BYTES + 4 * 64 * 1024);
  });
});

/** The token with its header replaced by `json`, payload and signature kept. */
function withHeader(token: string, json: string): string {
  const header = btoa(json).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  return `${header}.${token.split(".").slice(1).join(".")}`;
}

/** Flips one character of the payload, keeping it valid base64url. */
function tamper(token: string): string {
  const [header, payload, signature] = token.split(".");
  const claims = JSON.parse(atob((payload ?? "").replace(/-/g, "+").replace(/_/g, "/"))) as Record<
    string,
    unknown
  >;
  claims.sub = "admin";
  const encoded = btoa(JSON.stringify(claims)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  return `${header}.${encoded}.${signature}`;
}
