import { env as testEnv } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { isLoopbackHost, loadConfig, MIN_OPERATOR_SECRET_LENGTH } from "../../../src/app/config.ts";
import { ApiError } from "../../../src/app/errors.ts";
import { TEST_UPSTREAM_KEY } from "../support/constants.ts";
import { expectErrorEnvelope, read } from "../support/envelope.ts";
import { isolatedTenant } from "../support/tenant.ts";

/** A marker inside each bad value, so "the value is never echoed" is a precise check. */
const MARK = "zq9Xv";
/** A secret one character too short, marked. */
const SHORT_SECRET = `${MARK}${"s".repeat(MIN_OPERATOR_SECRET_LENGTH - 1 - MARK.length)}`;
const LONG_TOKEN = `tok_${"a".repeat(MIN_OPERATOR_SECRET_LENGTH)}`;
const JWT_REST = { JWT_ISSUER: "https://idp.example.com/", JWT_AUDIENCE: "proxy" };

const BROKEN: { name: string; setting: string; env: Partial<Env>; secret?: string }[] = [
  { name: "EXTEND_API_KEY missing", setting: "EXTEND_API_KEY", env: { EXTEND_API_KEY: undefined } },
  { name: "EXTEND_API_KEY empty", setting: "EXTEND_API_KEY", env: { EXTEND_API_KEY: "" } },
  { name: "EXTEND_API_KEY blank", setting: "EXTEND_API_KEY", env: { EXTEND_API_KEY: "   " } },
  {
    name: "EXTEND_API_KEY with a space inside",
    setting: "EXTEND_API_KEY",
    env: { EXTEND_API_KEY: `${TEST_UPSTREAM_KEY} ${MARK}` },
    secret: TEST_UPSTREAM_KEY,
  },
  {
    name: "EXTEND_API_KEY with a line break inside",
    setting: "EXTEND_API_KEY",
    env: { EXTEND_API_KEY: `${TEST_UPSTREAM_KEY}\n${MARK}` },
    secret: TEST_UPSTREAM_KEY,
  },
  {
    name: "EXTEND_API_KEY with non-ASCII",
    setting: "EXTEND_API_KEY",
    env: { EXTEND_API_KEY: `${TEST_UPSTREAM_KEY}é${MARK}` },
    secret: TEST_UPSTREAM_KEY,
  },
  {
    name: "EXTEND_API_KEY of 7 characters",
    setting: "EXTEND_API_KEY",
    env: { EXTEND_API_KEY: `sk_${MARK[0]}xyz` },
  },
  { name: "CLIENT_TOKENS of 31 characters", setting: "CLIENT_TOKENS", env: { CLIENT_TOKENS: SHORT_SECRET } },
  { name: "CLIENT_TOKENS of three characters", setting: "CLIENT_TOKENS", env: { CLIENT_TOKENS: "abc" } },
  {
    name: "CLIENT_TOKENS with one short token among long ones",
    setting: "CLIENT_TOKENS",
    env: { CLIENT_TOKENS: `${LONG_TOKEN},${SHORT_SECRET},${LONG_TOKEN}x` },
  },
  {
    name: "CLIENT_TOKENS with a space inside a token",
    setting: "CLIENT_TOKENS",
    env: { CLIENT_TOKENS: `${LONG_TOKEN} ${MARK}` },
  },
  {
    name: "STATS_SIGNING_KEY of 31 characters",
    setting: "STATS_SIGNING_KEY",
    env: { STATS_SIGNING_KEY: SHORT_SECRET },
  },
  {
    name: "EXTEND_WEBHOOK_SECRET of 7 characters",
    setting: "EXTEND_WEBHOOK_SECRET",
    env: { EXTEND_WEBHOOK_SECRET: `wss_${MARK[0]}yz` },
  },
  {
    name: "EXTEND_WEBHOOK_SECRET with one short secret beside a long one",
    setting: "EXTEND_WEBHOOK_SECRET",
    env: { EXTEND_WEBHOOK_SECRET: `wss_${"w".repeat(40)},wss_${MARK[0]}y` },
  },
  {
    name: "EXTEND_API_BASE_URL over plain http",
    setting: "EXTEND_API_BASE_URL",
    env: { EXTEND_API_BASE_URL: `http://api.${MARK}.example` },
  },
  {
    name: "EXTEND_API_BASE_URL over plain http to a private address",
    setting: "EXTEND_API_BASE_URL",
    env: { EXTEND_API_BASE_URL: "http://10.0.0.8:8788" },
  },
  {
    name: "EXTEND_API_BASE_URL over plain http to a name that starts like loopback",
    setting: "EXTEND_API_BASE_URL",
    env: { EXTEND_API_BASE_URL: "http://127.0.0.1.example.com" },
  },
  {
    name: "JWT_JWKS_URL over plain http",
    setting: "JWT_JWKS_URL",
    env: { JWT_JWKS_URL: `http://idp.example.com/${MARK}/jwks.json`, ...JWT_REST },
  },
  {
    name: "ALLOWED_ORIGINS with a plain http origin",
    setting: "ALLOWED_ORIGINS",
    env: { ALLOWED_ORIGINS: `https://app.example.com,http://${MARK}.example.com` },
  },
  ...[
    "files..name",
    ".files",
    "files.",
    "files[0].name",
    "files.*",
    "files name",
    "a.b.c.d.e.f.g.h.i",
    "wörk",
  ].map((value) => ({
    name: `REDACT_FIELDS=${JSON.stringify(value)}`,
    setting: "REDACT_FIELDS",
    env: { REDACT_FIELDS: `dashboardUrl,${value}` },
  })),
  {
    name: "EXTEND_API_BASE_URL not a URL",
    setting: "EXTEND_API_BASE_URL",
    env: { EXTEND_API_BASE_URL: `not a url ${MARK}` },
  },
  {
    name: "EXTEND_API_BASE_URL relative",
    setting: "EXTEND_API_BASE_URL",
    env: { EXTEND_API_BASE_URL: `/${MARK}/v1` },
  },
  {
    name: "EXTEND_API_BASE_URL ftp",
    setting: "EXTEND_API_BASE_URL",
    env: { EXTEND_API_BASE_URL: `ftp://${MARK}.example` },
  },
  {
    name: "EXTEND_API_BASE_URL with credentials",
    setting: "EXTEND_API_BASE_URL",
    env: { EXTEND_API_BASE_URL: `https://user:${MARK}@api.example.com` },
  },
  {
    name: "EXTEND_API_BASE_URL javascript:",
    setting: "EXTEND_API_BASE_URL",
    env: { EXTEND_API_BASE_URL: `javascript:alert('${MARK}')` },
  },
  {
    name: "EXTEND_API_VERSION a word",
    setting: "EXTEND_API_VERSION",
    env: { EXTEND_API_VERSION: `latest${MARK}` },
  },
  {
    name: "EXTEND_API_VERSION with slashes",
    setting: "EXTEND_API_VERSION",
    env: { EXTEND_API_VERSION: "2026/02/09" },
  },
  {
    name: "EXTEND_WORKSPACE_ID with a space",
    setting: "EXTEND_WORKSPACE_ID",
    env: { EXTEND_WORKSPACE_ID: `ws ${MARK}` },
  },
  ...[`soon${MARK}`, "12.5", "-5", "0", "99", "120001", "1e3", "100ms", "0x100", "٣٠٠"].map((value) => ({
    name: `UPSTREAM_TIMEOUT_MS=${JSON.stringify(value)}`,
    setting: "UPSTREAM_TIMEOUT_MS",
    env: { UPSTREAM_TIMEOUT_MS: value },
  })),
  ...[`forever${MARK}`, "300001", "-1"].map((value) => ({
    name: `UPSTREAM_DEADLINE_MS=${JSON.stringify(value)}`,
    setting: "UPSTREAM_DEADLINE_MS",
    env: { UPSTREAM_DEADLINE_MS: value },
  })),
];

describe("broken configuration", () => {
  it.each(BROKEN)("$name: a 500 naming the setting, never its value", async ({ setting, env, secret }) => {
    const tenant = isolatedTenant();
    const res = await read(await tenant.call("/workflow_runs?maxPageSize=2", { env }));
    const body = expectErrorEnvelope(res, { status: 500, code: "CONFIG_INVALID", retryable: false });
    expect(body.message).toContain(setting);
    expect(body.details?.map((d) => d.field)).toEqual([setting]);
    const value = env[setting as keyof Env];
    if (typeof value === "string" && value.includes(MARK)) expect(res.text).not.toContain(MARK);
    if (typeof value === "string" && value.length >= 4)
      expect(res.text).not.toContain(JSON.stringify(value).slice(1, -1));
    if (secret) expect(res.text).not.toContain(secret);
    expect(res.headers.get("cache-control")).toMatch(/no-store/);
    expect(tenant.fake.requests).toHaveLength(0);
  });

  it.each([
    ["GATEWAY_LOCATION_HINT", `eu${MARK}`, "must be one of wnam, enam, sam, weur"],
    ["RUN_INDEX", `yes${MARK}`, 'must be "on" or "off"'],
    ["ALLOW_ANONYMOUS", `yes${MARK}`, 'must be "true" or "false"'],
  ] as const)("%s: the message says which values are accepted", async (setting, value, expected) => {
    const res = await read(
      await isolatedTenant().call("/workflow_runs?maxPageSize=2", { env: { [setting]: value } }),
    );
    const body = expectErrorEnvelope(res, { status: 500, code: "CONFIG_INVALID", retryable: false });
    expect(body.message).toContain(`setting ${setting} ${expected}`);
    expect(body.details).toEqual([{ field: setting, message: expect.stringContaining(expected) }]);
    expect(res.text).not.toContain(MARK);
  });

  it.each(BROKEN)("$name: /healthz still answers", async ({ env }) => {
    const res = await isolatedTenant().call("/healthz", { env });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true });
  });
});

describe("valid configuration edges", () => {
  it.each([
    ["the shortest per-attempt timeout", { UPSTREAM_TIMEOUT_MS: "100" }],
    ["the longest per-attempt timeout", { UPSTREAM_TIMEOUT_MS: "120000" }],
    ["padded numbers", { UPSTREAM_TIMEOUT_MS: " 5000 ", UPSTREAM_DEADLINE_MS: " 9000" }],
    [
      "empty optional settings (defaults apply)",
      { UPSTREAM_TIMEOUT_MS: "", UPSTREAM_DEADLINE_MS: "", EXTEND_API_VERSION: "" },
    ],
    [
      "a deadline shorter than the timeout (raised to it)",
      { UPSTREAM_TIMEOUT_MS: "5000", UPSTREAM_DEADLINE_MS: "100" },
    ],
    ["a key padded with whitespace (trimmed)", { EXTEND_API_KEY: `  ${TEST_UPSTREAM_KEY}\n` }],
  ] satisfies [string, Partial<Env>][])("accepts %s", async (_name, env) => {
    const tenant = isolatedTenant();
    const res = await tenant.call("/workflow_runs?maxPageSize=2", { env });
    expect(res.status, await res.clone().text()).toBe(200);
    const [call] = tenant.fake.listCalls;
    expect(call?.headers.authorization).toBe(`Bearer ${TEST_UPSTREAM_KEY}`);
    expect(call?.headers["x-extend-api-version"]).toBe("2026-02-09");
  });
});

describe("loadConfig", () => {
  const parse = (env: Partial<Env>) => loadConfig({ ...testEnv, ...env } as Env);
  const failure = (env: Partial<Env>) => {
    try {
      parse(env);
    } catch (error) {
      if (error instanceof ApiError) return error;
      throw error;
    }
    throw new Error("the configuration parsed");
  };

  it.each([
    "http://127.0.0.1:8788",
    "http://127.5.6.7",
    "http://localhost:8788",
    "http://LOCALHOST:8788/",
    "http://[::1]:8788",
    "https://api.eu1.extend.ai",
  ])("accepts EXTEND_API_BASE_URL=%s (https, or http on loopback)", (url) => {
    expect(parse({ EXTEND_API_BASE_URL: url }).extendApiBaseUrl.href).toBe(new URL(url).href);
  });

  it.each(["http://127.0.0.1:9999/jwks.json", "http://localhost/jwks", "https://idp.example.com/jwks"])(
    "accepts JWT_JWKS_URL=%s",
    (url) => {
      expect(parse({ JWT_JWKS_URL: url, ...JWT_REST }).jwt?.jwksUrl.href).toBe(new URL(url).href);
    },
  );

  it("accepts http origins on loopback only", () => {
    const origins = "http://localhost:5173,http://127.0.0.1:3000,http://[::1]:8080,https://app.example.com";
    expect(parse({ ALLOWED_ORIGINS: origins }).allowedOrigins).toEqual(origins.split(","));
  });

  it.each([
    ["localhost", true],
    ["127.0.0.1", true],
    ["127.255.0.9", true],
    ["[::1]", true],
    ["128.0.0.1", false],
    ["localhost.example.com", false],
    ["[::ffff:7f00:1]", false],
    ["0.0.0.0", false],
  ])("isLoopbackHost(%s) is %s", (host, loopback) => {
    expect(isLoopbackHost(host)).toBe(loopback);
  });

  it(`accepts secrets of exactly ${MIN_OPERATOR_SECRET_LENGTH} characters`, () => {
    const secret = "x".repeat(MIN_OPERATOR_SECRET_LENGTH);
    const config = parse({ CLIENT_TOKENS: `${secret}, ${secret}y`, STATS_SIGNING_KEY: secret });
    expect(config.clientTokens).toEqual([secret, `${secret}y`]);
    expect(config.statsSigningKey).toBe(secret);
  });

  it("says how to make a long enough secret, naming the setting and never the value", () => {
    const error = failure({ CLIENT_TOKENS: SHORT_SECRET });
    expect(error.message).toContain("CLIENT_TOKENS");
    expect(error.message).toContain(`at least ${MIN_OPERATOR_SECRET_LENGTH} characters`);
    expect(error.message).toContain("openssl rand -base64 32");
    expect(JSON.stringify(error.toBody("req"))).not.toContain(MARK);
  });

  it("normalises REDACT_FIELDS: duplicates and paths inside another listed path dropped, sorted", () => {
    const config = parse({
      REDACT_FIELDS: "workflow.createdBy, files.name,files, workflow.createdBy,usage.credits",
    });
    expect(config.redactFields).toEqual(["files", "usage.credits", "workflow.createdBy"]);
  });
});
