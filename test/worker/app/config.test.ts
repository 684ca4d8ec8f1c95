import { describe, expect, it } from "vitest";
import { TEST_UPSTREAM_KEY } from "../support/constants.ts";
import { expectErrorEnvelope, read } from "../support/envelope.ts";
import { isolatedTenant } from "../support/tenant.ts";

/** A marker inside each bad value, so "the value is never echoed" is a precise check. */
const MARK = "zq9Xv";

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
