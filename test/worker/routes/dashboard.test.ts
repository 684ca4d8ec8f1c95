import { describe, expect, it } from "vitest";
import { type FakeRun, generateRuns } from "../../../fake/extend.ts";
import { MIN_BAR_PERCENT } from "../../../src/dashboard/charts.tsx";
import { type DashboardStats, TOP_WORKFLOWS, WORKFLOW_CHOICES } from "../../../src/dashboard/data.ts";
import { DARK, LIGHT, type Scheme, STYLESHEET } from "../../../src/dashboard/theme.ts";
import { DashboardPage, freshnessText, renderDocument } from "../../../src/dashboard/view.tsx";
import { DEFAULT_DENY_MESSAGE } from "../../../src/security/auth.ts";
import { REJECTED_CREDENTIAL_COST } from "../../../src/security/rate-limit.ts";
import { captureConsole } from "../support/console.ts";
import { TEST_UPSTREAM_KEY } from "../support/constants.ts";
import { TEST_CLIENT_TOKEN, TestIssuer } from "../support/jwt-issuer.ts";
import { NEVER_REFUSES, recordingLimiter } from "../support/limiters.ts";
import { type CallOptions, callProxy, json } from "../support/proxy.ts";
import { settle, useIndexFake } from "../support/run-index.ts";
import { getStats, referenceStats, STATUSES, statsPath, type WorkflowRunStats } from "../support/stats.ts";
import { isolatedTenant, type TenantOptions } from "../support/tenant.ts";

const ORIGIN = "https://proxy.test";
const OTHER_TOKEN = "ct_other_dashboard_token_55d1c3a9e07b4f28";
const TOKENS: Partial<Env> = {
  CLIENT_TOKENS: `${OTHER_TOKEN},${TEST_CLIENT_TOKEN}`,
  ALLOW_ANONYMOUS: "false",
};
const BEARER = { authorization: `Bearer ${TEST_CLIENT_TOKEN}` };
const COOKIE_NAME = "__Host-dashboard_session";

/**
 * A tenant of its own (workspace, fake Extend) whose /stats limiter never refuses: these tests
 * load the page far more often than a caller may, and the limiter's own tests are below.
 */
function useStatsFake(options: TenantOptions = {}) {
  const tenant = isolatedTenant({
    ...options,
    env: { STATS_RATE_LIMITER: NEVER_REFUSES, ...options.env } as Partial<Env>,
  });
  return { fake: tenant.fake, env: tenant.env };
}

let ipCounter = 0;
/** A client ip of its own per call, so the failed-credential limit of one test touches no other. */
function freshIp(): string {
  ipCounter += 1;
  return `203.0.${Math.floor(ipCounter / 250)}.${ipCounter % 250}`;
}

function loginForm(token: string, returnTo = ""): string {
  return new URLSearchParams({ token, returnTo }).toString();
}

function login(
  token: string,
  options: { env: Partial<Env>; headers?: Record<string, string>; returnTo?: string },
) {
  return callProxy("/dashboard/login", {
    method: "POST",
    env: options.env,
    headers: {
      "content-type": "application/x-www-form-urlencoded",
      origin: ORIGIN,
      "sec-fetch-site": "same-origin",
      "cf-connecting-ip": freshIp(),
      ...options.headers,
    },
    body: loginForm(token, options.returnTo),
  });
}

/** The `name=value` part of the session cookie a response sets. */
function sessionCookie(response: Response): string {
  const cookie = response.headers.getSetCookie().find((c) => c.startsWith(`${COOKIE_NAME}=`));
  if (!cookie) throw new Error("no session cookie was set");
  return cookie.split(";")[0] ?? "";
}

/** Counts of the page's table: what a person reads, parsed back into numbers. */
function tableCounts(html: string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const m of html.matchAll(
    /<tr data-status="([A-Z_]+|total)">[\s\S]*?<td class="num">([\d,]+)<\/td>/g,
  )) {
    counts[m[1] ?? ""] = Number((m[2] ?? "").replaceAll(",", ""));
  }
  return counts;
}

/** The runs-per-status chart's bars: printed count, `<title>` and drawn width (percent of the chart). */
function statusBars(html: string) {
  const chart = /<svg[^>]*id="chart-status"[\s\S]*?<\/svg>/.exec(html)?.[0] ?? "";
  return [...chart.matchAll(/<g class="bar" data-key="([A-Z_]+)">([\s\S]*?)<\/g>/g)].map((m) => {
    const body = m[2] ?? "";
    const bar = new RegExp(`<rect class="s-${m[1]}"[^>]*width="([\\d.]+)%"`).exec(body);
    return {
      status: m[1] ?? "",
      title: /<title>([^<]*)<\/title>/.exec(body)?.[1] ?? "",
      printed: Number((/<text class="count"[^>]*>([^<]*)<\/text>/.exec(body)?.[1] ?? "").replaceAll(",", "")),
      width: bar ? Number(bar[1]) : 0,
    };
  });
}

function withStatus(run: FakeRun, status: FakeRun["status"]): FakeRun {
  return { ...run, status };
}

async function statsFor(query: Record<string, string>, stateEnv: Partial<Env>): Promise<WorkflowRunStats> {
  const response = await callProxy(statsPath(query), { env: stateEnv });
  expect(response.status).toBe(200);
  return json<WorkflowRunStats>(response);
}

function dashboardPath(query: Record<string, string> = {}): string {
  const search = new URLSearchParams(query).toString();
  return search ? `/dashboard?${search}` : "/dashboard";
}

function expectPageHeaders(response: Response): string {
  expect(response.headers.get("content-type")).toMatch(/^text\/html; charset=utf-8/i);
  expect(response.headers.get("cache-control")).toBe("no-store");
  expect(response.headers.get("x-frame-options")).toBe("DENY");
  expect(response.headers.get("x-content-type-options")).toBe("nosniff");
  // Browsers send `Origin: null` on a form post from a no-referrer page; the sign-in needs the origin.
  expect(response.headers.get("referrer-policy")).toBe("same-origin");
  const csp = response.headers.get("content-security-policy") ?? "";
  const nonce = /'nonce-([^']+)'/.exec(csp)?.[1] ?? "";
  expect(nonce).toMatch(/^[A-Za-z0-9+/]{22}==$/);
  expect(csp.split("; ")).toEqual([
    "default-src 'none'",
    `style-src 'nonce-${nonce}'`,
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
  ]);
  return nonce;
}

function expectNoScript(html: string, nonce: string) {
  expect(html.startsWith('<!DOCTYPE html><html lang="en">')).toBe(true);
  expect(html).not.toMatch(/<script\b/i);
  expect(html).not.toMatch(/\son[a-z]+=/i);
  // Inline style attributes would need 'unsafe-inline'; the only style is the nonce'd sheet.
  expect(html).not.toMatch(/\sstyle=/i);
  expect([...html.matchAll(/<style\b([^>]*)>/g)].map((m) => m[1])).toEqual([` nonce="${nonce}"`]);
  expect(html).not.toMatch(/(src|href)="https?:/i);
}

describe("GET /dashboard: the numbers", () => {
  it.each<[string, Record<string, string>]>([
    ["no filter", {}],
    ["a status", { status: "FAILED" }],
    ["a workflow", { workflowId: "workflow_BMdfq_yWM3sT-ZzvCnA3f" }],
    ["a time window", { since: "2026-01-01T00:00:00Z", until: "2026-10-01T00:00:00+02:00" }],
    ["a file name", { fileNameContains: "invoice" }],
  ])("shows exactly what /stats answers for %s, in the table and on every bar", async (_name, query) => {
    const { fake, env: stateEnv } = useStatsFake({ dataset: { size: 400, seed: 21 } });
    const response = await callProxy(dashboardPath(query), { env: { ...stateEnv, ALLOW_ANONYMOUS: "true" } });
    const html = await response.text();
    expect(response.status).toBe(200);
    const stats = await statsFor(query, stateEnv);
    const counts = tableCounts(html);
    expect(counts).toEqual({ ...stats.byStatus, total: stats.total });
    // The independent fold over the fake agrees too: the page is right, not just consistent.
    const reference = referenceStats(fake.runs, query);
    expect(counts).toEqual({ ...reference.byStatus, total: reference.total });
    const bars = statusBars(html);
    expect(bars.map((b) => b.status)).toEqual([...STATUSES]);
    for (const bar of bars) {
      expect(bar.printed, bar.status).toBe(stats.byStatus?.[bar.status as (typeof STATUSES)[number]]);
      expect(bar.title).toBe(`${bar.status}: ${bar.printed.toString()} runs`);
    }
    expect(html).toContain(`id="total">${stats.total.toString()}</span>`);
    expect(html).toContain(`${stats.usage?.credits.toString()}`);
  });

  it("keeps a status of 1 run visible next to one of thousands, and prints both counts", async () => {
    const runs = generateRuns({ size: 3001, seed: 2 }).map((run, i) =>
      withStatus(run, i === 0 ? "FAILED" : "PROCESSED"),
    );
    const { env: stateEnv } = useStatsFake({ runs });
    const html = await (
      await callProxy("/dashboard", { env: { ...stateEnv, ALLOW_ANONYMOUS: "true" } })
    ).text();
    const bars = Object.fromEntries(statusBars(html).map((b) => [b.status, b]));
    expect(bars.PROCESSED?.printed).toBe(3000);
    expect(bars.FAILED?.printed).toBe(1);
    expect(bars.FAILED?.width).toBe(MIN_BAR_PERCENT);
    expect(bars.PROCESSED?.width).toBe(100);
    expect(bars.PENDING?.printed).toBe(0);
    expect(bars.PENDING?.width).toBe(0);
  });

  it("draws accessible SVG charts: role img, the whole series in aria-label, a title per bar", async () => {
    const { env: stateEnv } = useStatsFake();
    const html = await (
      await callProxy("/dashboard", { env: { ...stateEnv, ALLOW_ANONYMOUS: "true" } })
    ).text();
    const stats = await statsFor({}, stateEnv);
    const charts = [...html.matchAll(/<svg([^>]*)>([\s\S]*?)<\/svg>/g)];
    expect(charts.map((m) => /id="([^"]+)"/.exec(m[1] ?? "")?.[1])).toEqual([
      "chart-status",
      "chart-credits",
    ]);
    for (const [, attributes = "", body = ""] of charts) {
      expect(attributes).toContain('role="img"');
      expect(attributes).toMatch(/aria-label="[^"]+"/);
      const bars = body.match(/<g class="bar"/g) ?? [];
      expect((body.match(/<title>/g) ?? []).length).toBe(bars.length);
    }
    const label = /id="chart-status"[^>]*aria-label="([^"]+)"/.exec(html)?.[1] ?? "";
    expect(label).toBe(
      `Runs per status: ${STATUSES.map((s) => `${s} ${stats.byStatus?.[s].toString()}`).join(", ")}`,
    );
  });

  it("drops empty form fields from its address, so it reads as the /stats query it counts", async () => {
    const { env: stateEnv } = useStatsFake();
    const settings = { ...stateEnv, ALLOW_ANONYMOUS: "true" };
    const limiter = recordingLimiter(true);
    const submitted = await callProxy(
      "/dashboard?workflowId=&batchId=&status=FAILED&fileNameContains=&since=&until",
      { env: { ...settings, STATS_RATE_LIMITER: limiter.binding } as Partial<Env> },
    );
    expect(submitted.status).toBe(303);
    expect(submitted.headers.get("location")).toBe("/dashboard?status=FAILED");
    // The redirect costs the caller nothing.
    expect(limiter.keys).toEqual([]);
    const bare = await callProxy("/dashboard?workflowId=&batchId=", { env: settings });
    expect(bare.status).toBe(303);
    expect(bare.headers.get("location")).toBe("/dashboard");
    // What the address now says is a query /stats answers, and the page counts what it counts.
    const page = await callProxy("/dashboard?status=FAILED", { env: settings });
    expect(page.status).toBe(200);
    const stats = await statsFor({ status: "FAILED" }, stateEnv);
    expect(tableCounts(await page.text()).total).toBe(stats.total);
    // A malformed escape is kept as sent, for the 400 that names its parameter.
    const malformed = await callProxy("/dashboard?batchId=%E0%A4%A&status=", { env: settings });
    expect(malformed.headers.get("location")).toBe("/dashboard?batchId=%E0%A4%A");
  });

  it("says the numbers come from a live scan, when and how they were served", async () => {
    const { env: stateEnv } = useStatsFake();
    const settings = { ...stateEnv, ALLOW_ANONYMOUS: "true" };
    const first = await (await callProxy("/dashboard", { env: settings })).text();
    expect(first).toMatch(
      /id="freshness">Live scan of Extend, counted \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(/,
    );
    const second = await (await callProxy("/dashboard", { env: settings })).text();
    expect(second).toContain("served from the proxy&#39;s cache");
  });

  it("offers to continue a scan that stopped at its page budget, with the same filters", async () => {
    const { env: stateEnv } = useStatsFake({ dataset: { size: 2500, seed: 4 } });
    const settings = { ...stateEnv, ALLOW_ANONYMOUS: "true", STATS_MAX_PAGES: "1" };
    const html = await (await callProxy("/dashboard?status=PROCESSED", { env: settings })).text();
    expect(html).toContain("Partial: the scan stopped after");
    const href =
      /<a href="(\/dashboard\?[^"]*resumeToken=[^"]+)">Continue counting<\/a>/.exec(html)?.[1] ?? "";
    const next = new URL(href.replaceAll("&amp;", "&"), ORIGIN);
    expect(next.searchParams.get("status")).toBe("PROCESSED");
    const resumed = await callProxy(`${next.pathname}${next.search}`, { env: settings });
    expect(resumed.status).toBe(200);
  });
});

describe("GET /dashboard: a broken configuration", () => {
  it.each(["/dashboard", "/dashboard/login"])(
    "%s is an HTML page naming the setting, not JSON",
    async (path) => {
      const response = await callProxy(path, {
        method: path === "/dashboard" ? "GET" : "POST",
        env: { ALLOW_ANONYMOUS: "true", CACHE_TTL_SECONDS: "sixty" },
      });
      expect(response.status).toBe(500);
      const nonce = expectPageHeaders(response);
      const html = await response.text();
      expectNoScript(html, nonce);
      expect(html).toContain("CACHE_TTL_SECONDS");
      expect(html).not.toContain("sixty");
    },
  );
});

describe("GET /dashboard: validation", () => {
  it.each<[string, Record<string, string>, string]>([
    ["a date without a time", { since: "2026-11-01" }, "since"],
    ["an instant without a zone", { until: "2026-11-01T00:00:00" }, "until"],
    ["until before since", { since: "2026-11-02T00:00:00Z", until: "2026-11-01T00:00:00Z" }, "until"],
    ["an unknown status", { status: "DONE" }, "status"],
    ["a workflow id with a space", { workflowId: "wf 1" }, "workflowId"],
  ])(
    "shows %s next to its field with the message /stats gives, and calls nobody",
    async (_name, query, field) => {
      const { fake, env: stateEnv } = useStatsFake();
      const response = await callProxy(dashboardPath(query), {
        env: { ...stateEnv, ALLOW_ANONYMOUS: "true" },
      });
      const html = await response.text();
      expect(response.status).toBe(400);
      const nonce = expectPageHeaders(response);
      expectNoScript(html, nonce);
      const api = await json<{ message: string; details: { field: string; message: string }[] }>(
        await callProxy(statsPath(query), { env: stateEnv }),
      );
      const detail = api.details.find((d) => d.field === field);
      if (!detail) throw new Error(`/stats names no ${field}`);
      const escaped = `${detail.field} ${detail.message}`.replaceAll("'", "&#39;");
      expect(html).toContain(`<p class="field-error" id="e-${field}">${escaped}</p>`);
      expect(html).toMatch(
        new RegExp(`id="f-${field}" name="${field}" aria-invalid="true" aria-describedby="e-${field}"`),
      );
      expect(html).toContain(api.message.replaceAll("'", "&#39;"));
      // The submitted value stays in the form, so the person can correct it.
      const value = query[field];
      if (value && field !== "status") expect(html).toContain(`value="${value}"`);
      // A select keeps a refused value as its chosen option, not "Any status".
      if (value && field === "status") expect(html).toContain(`<option value="${value}" selected="">`);
      expect(fake.listCalls).toHaveLength(0);
      expect(html).not.toContain('id="chart-status"');
    },
  );

  it("names a parameter the form does not have, as /stats does", async () => {
    const { fake, env: stateEnv } = useStatsFake();
    const response = await callProxy("/dashboard?maxPageSize=5", {
      env: { ...stateEnv, ALLOW_ANONYMOUS: "true" },
    });
    expect(response.status).toBe(400);
    expect(await response.text()).toContain("<li>maxPageSize is not a known query parameter</li>");
    expect(fake.listCalls).toHaveLength(0);
  });

  it.each(["__proto__", "constructor"])("names %s as an unknown parameter, as /stats does", async (name) => {
    const { fake, env: stateEnv } = useStatsFake();
    const query = `?${name}=x&status=FAILED`;
    const api = await json<{ details: { field: string; message: string }[] }>(
      await callProxy(`/stats${query}`, { env: { ...stateEnv, ALLOW_ANONYMOUS: "true" } }),
    );
    expect(api.details).toEqual([{ field: name, message: "is not a known query parameter" }]);
    const response = await callProxy(`/dashboard${query}`, {
      env: { ...stateEnv, ALLOW_ANONYMOUS: "true" },
    });
    expect(response.status).toBe(400);
    expect(await response.text()).toContain(`<li>${name} is not a known query parameter</li>`);
    expect(fake.listCalls).toHaveLength(0);
  });

  it("answers malformed percent-encoding with an HTML 400 naming the parameter", async () => {
    const { fake, env: stateEnv } = useStatsFake();
    const response = await callProxy("/dashboard?batchId=%ZZ", {
      env: { ...stateEnv, ALLOW_ANONYMOUS: "true" },
    });
    const html = await response.text();
    expect(response.status).toBe(400);
    expectNoScript(html, expectPageHeaders(response));
    expect(html).toContain("batchId is not valid percent-encoded UTF-8");
    expect(fake.listCalls).toHaveLength(0);
  });
});

describe("GET /dashboard: redaction, as /stats applies it", () => {
  it.each([
    ["status", "byStatus", "hidden-status", "chart-status"],
    ["usage", "usage", "hidden-credits", "chart-credits"],
    ["usage.credits", "usage", "hidden-credits", "chart-credits"],
  ] as const)("hides what REDACT_FIELDS=%s hides from /stats", async (field, key, hidden, chart) => {
    const { env: stateEnv } = useStatsFake();
    const settings = { ...stateEnv, REDACT_FIELDS: field };
    const response = await callProxy("/dashboard", { env: { ...settings, ALLOW_ANONYMOUS: "true" } });
    const html = await response.text();
    expect(response.status).toBe(200);
    const api = await statsFor({}, settings);
    expect(api[key]).toBeUndefined();
    expect(html).toContain(`id="${hidden}"`);
    expect(html).not.toContain(`id="${chart}"`);
    expect(html).toContain(`id="total">${api.total.toString()}</span>`);
    if (key === "byStatus") expect(html).not.toContain('id="table-status"');
    else expect(html).not.toContain('id="table-credits"');
  });

  it("refuses a filter on a redacted field with the message /stats gives, and calls nobody", async () => {
    const { fake, env: stateEnv } = useStatsFake();
    const settings = { ...stateEnv, REDACT_FIELDS: "files.name" };
    const query = { fileNameContains: "invoice" };
    const response = await callProxy(dashboardPath(query), { env: { ...settings, ALLOW_ANONYMOUS: "true" } });
    const html = await response.text();
    expect(response.status).toBe(400);
    const api = await callProxy(statsPath(query), { env: settings });
    expect(api.status).toBe(400);
    const body = await json<{ message: string; details: { field: string; message: string }[] }>(api);
    const detail = body.details.find((d) => d.field === "fileNameContains");
    expect(detail).toBeDefined();
    expect(html).toContain(
      `<p class="field-error" id="e-fileNameContains">fileNameContains ${detail?.message}</p>`,
    );
    expect(html).toContain(body.message);
    expect(fake.listCalls).toHaveLength(0);
  });
});

describe("GET /dashboard: access, the rules of /stats", () => {
  it("refuses everyone when no authentication is configured, saying how to configure it", async () => {
    const { fake, env: stateEnv } = useStatsFake();
    const response = await callProxy("/dashboard", { env: { ...stateEnv, ALLOW_ANONYMOUS: "false" } });
    const html = await response.text();
    expect(response.status).toBe(401);
    expectNoScript(html, expectPageHeaders(response));
    expect(html).toContain(DEFAULT_DENY_MESSAGE.replaceAll("'", "&#39;"));
    expect(html).not.toContain('action="/dashboard/login"');
    expect(fake.listCalls).toHaveLength(0);
  });

  it("serves anonymous callers with ALLOW_ANONYMOUS", async () => {
    const { env: stateEnv } = useStatsFake();
    const response = await callProxy("/dashboard", { env: { ...stateEnv, ALLOW_ANONYMOUS: "true" } });
    expect(response.status).toBe(200);
    expect(await response.text()).toContain("Anonymous access");
  });

  it("asks for a token, with a form that posts it, when static tokens are configured", async () => {
    const { fake, env: stateEnv } = useStatsFake();
    const response = await callProxy("/dashboard?status=FAILED", { env: { ...stateEnv, ...TOKENS } });
    const html = await response.text();
    expect(response.status).toBe(401);
    expect(response.headers.get("www-authenticate")).toMatch(/^Bearer realm="extend-runs-proxy"/);
    expectNoScript(html, expectPageHeaders(response));
    expect(html).toContain('<form method="post" action="/dashboard/login">');
    expect(html).toContain('name="token" type="password"');
    expect(html).toContain('name="returnTo" value="?status=FAILED"');
    expect(fake.listCalls).toHaveLength(0);
  });

  it("gives a browser's navigation without credentials the sign-in page as a 200, no data", async () => {
    const { fake, env: stateEnv } = useStatsFake();
    const navigation = { "sec-fetch-dest": "document", "sec-fetch-mode": "navigate" };
    const response = await callProxy("/dashboard?status=FAILED", {
      env: { ...stateEnv, ...TOKENS },
      headers: navigation,
    });
    const html = await response.text();
    expect(response.status).toBe(200);
    expect(response.headers.get("vary")).toMatch(/Sec-Fetch-Dest/i);
    expectNoScript(html, expectPageHeaders(response));
    expect(html).toContain('<form method="post" action="/dashboard/login">');
    expect(html).not.toContain('id="status-heading"');
    expect(fake.listCalls).toHaveLength(0);
    // A credential presented and refused is still the 401, in a browser too.
    const refused = await callProxy("/dashboard", {
      env: { ...stateEnv, ...TOKENS },
      headers: { ...navigation, authorization: "Bearer not-a-token", "cf-connecting-ip": freshIp() },
    });
    expect(refused.status).toBe(401);
    const unconfigured = await callProxy("/dashboard", {
      env: { ...stateEnv, ALLOW_ANONYMOUS: "false" },
      headers: navigation,
    });
    expect(unconfigured.status).toBe(401);
  });

  it("accepts a client token as a bearer header, like /stats", async () => {
    const { env: stateEnv } = useStatsFake();
    const response = await callProxy("/dashboard", { env: { ...stateEnv, ...TOKENS }, headers: BEARER });
    expect(response.status).toBe(200);
    const html = await response.text();
    expect(html).toMatch(/Signed in with client token token:[0-9a-f]{16}/);
    // A bearer caller has no session to end.
    expect(html).not.toContain('action="/dashboard/logout"');
  });

  it("refuses a wrong bearer token with the API's reason", async () => {
    const { fake, env: stateEnv } = useStatsFake();
    const response = await callProxy("/dashboard", {
      env: { ...stateEnv, ...TOKENS },
      headers: { authorization: "Bearer not-a-token", "cf-connecting-ip": freshIp() },
    });
    expect(response.status).toBe(401);
    expect(await response.text()).toContain("The credentials were rejected: the bearer token is not valid.");
    expect(fake.listCalls).toHaveLength(0);
  });

  it("works behind Cloudflare Access: the Cf-Access-Jwt-Assertion header is enough", async () => {
    const { env: stateEnv } = useStatsFake();
    const issuer = await TestIssuer.start();
    const settings = { ...stateEnv, ...issuer.env };
    const response = await callProxy("/dashboard", {
      env: settings,
      headers: { "cf-access-jwt-assertion": await issuer.sign({ sub: "ada@example.com" }) },
    });
    expect(response.status).toBe(200);
    expect(await response.text()).toContain("Signed in as jwt:ada@example.com");
    const without = await callProxy("/dashboard", { env: settings });
    expect(without.status).toBe(401);
    const html = await without.text();
    expect(html).toContain("open it through Cloudflare Access");
    expect(html).not.toContain('action="/dashboard/login"');
  });

  it("spends the /stats rate limit and answers its 429 as a page with Retry-After", async () => {
    const { fake, env: stateEnv } = useStatsFake();
    const { binding: limiter, keys } = recordingLimiter(false);
    const response = await callProxy("/dashboard", {
      env: {
        ...stateEnv,
        ALLOW_ANONYMOUS: "true",
        STATS_RATE_LIMITER: limiter,
      } as Partial<Env>,
      headers: { "cf-connecting-ip": "198.18.0.7" },
    });
    const html = await response.text();
    expect(response.status).toBe(429);
    expect(response.headers.get("retry-after")).toBe("60");
    expectNoScript(html, expectPageHeaders(response));
    expect(html).toContain("Too many requests from this caller; retry after 60 seconds.");
    expect(keys).toEqual(["anon:198.18.0.7"]);
    expect(fake.listCalls).toHaveLength(0);
  });

  it("uses a fresh nonce for every page", async () => {
    const { env: stateEnv } = useStatsFake();
    const settings = { ...stateEnv, ALLOW_ANONYMOUS: "true" };
    const first = await callProxy("/dashboard", { env: settings });
    const second = await callProxy("/dashboard", { env: settings });
    const nonce = expectPageHeaders(first);
    expectNoScript(await first.text(), nonce);
    expect(expectPageHeaders(second)).not.toBe(nonce);
    await second.arrayBuffer();
  });
});

describe("signing in with a static token", () => {
  it("exchanges the token for a short-lived, HttpOnly, Secure, SameSite=Strict cookie that holds no token", async () => {
    const { env: stateEnv } = useStatsFake();
    const settings = { ...stateEnv, ...TOKENS };
    const { result: response, lines } = await captureConsole(() =>
      login(TEST_CLIENT_TOKEN, { env: settings, returnTo: "?status=FAILED&since=" }),
    );
    expect(response.status).toBe(303);
    expect(response.headers.get("location")).toBe("/dashboard?status=FAILED");
    expect(response.headers.get("cache-control")).toBe("no-store");
    const [cookie = ""] = response.headers.getSetCookie();
    const attributes = cookie.split("; ").slice(1).sort();
    expect(attributes).toEqual(["HttpOnly", "Max-Age=3600", "Path=/", "SameSite=Strict", "Secure"]);
    expect(cookie.startsWith(`${COOKIE_NAME}=`)).toBe(true);
    const seen = `${[...response.headers].join("\n")}\n${await response.text()}\n${lines.join("\n")}`;
    for (const form of [TEST_CLIENT_TOKEN, encodeURIComponent(TEST_CLIENT_TOKEN), btoa(TEST_CLIENT_TOKEN)]) {
      expect(seen).not.toContain(form);
    }
    expect(seen).not.toContain(TEST_UPSTREAM_KEY);

    const page = await callProxy("/dashboard", {
      env: settings,
      headers: { cookie: sessionCookie(response) },
    });
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toMatch(/Signed in with client token token:[0-9a-f]{16}/);
    expect(html).toContain('<form method="post" action="/dashboard/logout">');
  });

  it("names the caller by the token's hash, so the cookie and the bearer token share one rate limit", async () => {
    const { env: stateEnv } = useStatsFake();
    const { binding: limiter, keys } = recordingLimiter(true);
    const settings = {
      ...stateEnv,
      ...TOKENS,
      STATS_RATE_LIMITER: limiter,
    } as Partial<Env>;
    const cookie = sessionCookie(await login(TEST_CLIENT_TOKEN, { env: settings }));
    await (await callProxy("/dashboard", { env: settings, headers: { cookie } })).arrayBuffer();
    await (await callProxy("/dashboard", { env: settings, headers: BEARER })).arrayBuffer();
    expect(keys).toHaveLength(2);
    expect(keys[0]).toMatch(/^token:[0-9a-f]{16}$/);
    expect(keys[1]).toBe(keys[0]);
  });

  it("never leads back anywhere but the dashboard", async () => {
    const { env: stateEnv } = useStatsFake();
    for (const returnTo of [
      "https://evil.example/x",
      "//evil.example",
      "/\\evil.example",
      "?a=1#https://x",
    ]) {
      const response = await login(TEST_CLIENT_TOKEN, { env: { ...stateEnv, ...TOKENS }, returnTo });
      expect(response.headers.get("location")?.startsWith("/dashboard"), returnTo).toBe(true);
      expect(response.headers.get("location"), returnTo).not.toMatch(/^\/dashboard[^?]/);
    }
  });

  it("carries only the form's filters across a sign-in, never a token pasted into the address", async () => {
    const { env: stateEnv } = useStatsFake();
    const settings = { ...stateEnv, ...TOKENS };
    const page = await callProxy(`/dashboard?token=${TEST_CLIENT_TOKEN}&status=FAILED`, { env: settings });
    expect(page.status).toBe(401);
    const html = await page.text();
    expect(html).not.toContain(TEST_CLIENT_TOKEN);
    expect(html).toContain('name="returnTo" value="?status=FAILED"');
    const response = await login(TEST_CLIENT_TOKEN, {
      env: settings,
      returnTo: `?access_token=${OTHER_TOKEN}&status=FAILED`,
    });
    expect(response.status).toBe(303);
    expect(response.headers.get("location")).toBe("/dashboard?status=FAILED");
  });

  it("signs in from a query too long to return to, landing on the bare dashboard", async () => {
    const { env: stateEnv } = useStatsFake();
    const settings = { ...stateEnv, ...TOKENS };
    // A valid filter (1,000 characters) whose percent-encoded query is 9,000 characters.
    const query = `?${new URLSearchParams({ fileNameContains: "報".repeat(1_000) })}`;
    const page = await callProxy(`/dashboard${query}`, { env: settings });
    expect(page.status).toBe(401);
    const returnTo = /<input type="hidden" name="returnTo" value="([^"]*)"/.exec(await page.text())?.[1];
    expect(returnTo).toBeDefined();
    const response = await login(TEST_CLIENT_TOKEN, { env: settings, returnTo: returnTo ?? "" });
    expect(response.status).toBe(303);
    expect(response.headers.get("location")).toBe("/dashboard");
    expect(response.headers.getSetCookie()).toHaveLength(1);
  });

  it("refuses a wrong token without a cookie, and charges it as a rejected credential", async () => {
    const { env: stateEnv } = useStatsFake();
    const { binding: limiter, keys } = recordingLimiter(true);
    const settings = {
      ...stateEnv,
      ...TOKENS,
      AUTH_RATE_LIMITER: limiter,
    } as Partial<Env>;
    const response = await login("not-the-token", {
      env: settings,
      headers: { "cf-connecting-ip": "198.18.0.9" },
    });
    expect(response.status).toBe(401);
    expect(response.headers.getSetCookie()).toEqual([]);
    const html = await response.text();
    expectNoScript(html, expectPageHeaders(response));
    expect(html).toContain("This is not one of the proxy&#39;s client tokens.");
    expect(keys).toEqual(Array(REJECTED_CREDENTIAL_COST).fill("credentials:198.18.0.9"));
  });

  it("takes the token from a multipart form, and answers a malformed one with a 400 page, not a 500", async () => {
    const { env: stateEnv } = useStatsFake();
    const env = { ...stateEnv, ...TOKENS };
    const post = (contentType: string, body: string) =>
      captureConsole(() =>
        callProxy("/dashboard/login", {
          method: "POST",
          env,
          headers: { "content-type": contentType, origin: ORIGIN, "cf-connecting-ip": freshIp() },
          body,
        }),
      );
    const part = `--b\r\nContent-Disposition: form-data; name="token"\r\n\r\n${TEST_CLIENT_TOKEN}\r\n`;
    const signedIn = await post("multipart/form-data; boundary=b", `${part}--b--\r\n`);
    expect(signedIn.result.status).toBe(303);
    sessionCookie(signedIn.result);

    for (const [contentType, body] of [
      ["multipart/form-data", part],
      ["multipart/form-data; boundary=b", part],
      ["multipart/form-data; boundary=other", `${part}--b--\r\n`],
    ] as const) {
      const { result: response, lines } = await post(contentType, body);
      expect(response.status, contentType).toBe(400);
      expect(response.headers.getSetCookie()).toEqual([]);
      const html = await response.text();
      expectNoScript(html, expectPageHeaders(response));
      expect(html).toContain("The sign-in form could not be read");
      expect(lines.join("\n")).not.toContain("unhandled error");
    }
  });

  it("answers a sign-in form cut off by its sender with a 400 page, not a 500", async () => {
    const { env: stateEnv } = useStatsFake();
    const env = { ...stateEnv, ...TOKENS };
    for (const path of ["/dashboard/login", "/dashboard/logout"]) {
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(new TextEncoder().encode("token=abc"));
          controller.error(new Error("Network connection lost."));
        },
      });
      const { result: response, lines } = await captureConsole(() =>
        callProxy(path, {
          method: "POST",
          env,
          headers: {
            "content-type": "application/x-www-form-urlencoded",
            origin: ORIGIN,
            "cf-connecting-ip": freshIp(),
          },
          body,
        }),
      );
      expect(response.status, path).toBe(400);
      expect(response.headers.getSetCookie()).toEqual([]);
      expectNoScript(await response.text(), expectPageHeaders(response));
      expect(lines.join("\n")).not.toContain("unhandled error");
    }
  });

  it("refuses every sign-in, the right token included, once the address's credential budget is spent", async () => {
    const { env: stateEnv } = useStatsFake();
    const settings = {
      ...stateEnv,
      ...TOKENS,
      AUTH_RATE_LIMITER: { limit: async () => ({ success: false }) },
    } as Partial<Env>;
    const response = await login(TEST_CLIENT_TOKEN, { env: settings });
    expect(response.status).toBe(429);
    expect(response.headers.get("retry-after")).toBe("60");
    expect(response.headers.getSetCookie()).toEqual([]);
    expect(await response.text()).toContain("Too many credential attempts from this address");
  });

  it.each<[string, Record<string, string>]>([
    ["no Origin", {}],
    ["another site's Origin", { origin: "https://evil.example" }],
    ["a cross-site fetch", { origin: ORIGIN, "sec-fetch-site": "cross-site" }],
    ["the null Origin of a sandboxed page", { origin: "null" }],
  ])("refuses a sign-in with %s (CSRF), right token or not", async (_name, headers) => {
    const { env: stateEnv } = useStatsFake();
    const response = await callProxy("/dashboard/login", {
      method: "POST",
      env: { ...stateEnv, ...TOKENS },
      headers: { "content-type": "application/x-www-form-urlencoded", ...headers },
      body: loginForm(TEST_CLIENT_TOKEN),
    });
    expect(response.status).toBe(403);
    expect(response.headers.getSetCookie()).toEqual([]);
    expectNoScript(await response.text(), expectPageHeaders(response));
  });

  it.each<[string, number, CallOptions]>([
    [
      "no token",
      400,
      { body: "returnTo=", headers: { "content-type": "application/x-www-form-urlencoded" } },
    ],
    [
      "a JSON body",
      400,
      { body: `{"token":"${TEST_CLIENT_TOKEN}"}`, headers: { "content-type": "application/json" } },
    ],
    [
      "a body over 8 KiB",
      413,
      { body: `token=${"x".repeat(9000)}`, headers: { "content-type": "application/x-www-form-urlencoded" } },
    ],
  ])("answers a sign-in with %s with %i and no cookie", async (_name, status, options) => {
    const { env: stateEnv } = useStatsFake();
    const response = await callProxy("/dashboard/login", {
      method: "POST",
      env: { ...stateEnv, ...TOKENS },
      body: options.body ?? "",
      headers: { origin: ORIGIN, "cf-connecting-ip": freshIp(), ...options.headers },
    });
    expect(response.status).toBe(status);
    expect(response.headers.getSetCookie()).toEqual([]);
    await response.arrayBuffer();
  });

  it("has nothing to sign in with when CLIENT_TOKENS is unset", async () => {
    const { env: stateEnv } = useStatsFake();
    const response = await login(TEST_CLIENT_TOKEN, { env: { ...stateEnv, ALLOW_ANONYMOUS: "false" } });
    expect(response.status).toBe(404);
    expect(response.headers.getSetCookie()).toEqual([]);
    await response.arrayBuffer();
  });

  it("signs out: the cookie is cleared, from this origin only", async () => {
    const { env: stateEnv } = useStatsFake();
    const settings = { ...stateEnv, ...TOKENS };
    const cross = await callProxy("/dashboard/logout", {
      method: "POST",
      env: settings,
      headers: { origin: "https://evil.example", "content-type": "application/x-www-form-urlencoded" },
      body: "",
    });
    expect(cross.status).toBe(403);
    expect(cross.headers.getSetCookie()).toEqual([]);
    const response = await callProxy("/dashboard/logout", {
      method: "POST",
      env: settings,
      headers: { origin: ORIGIN, "content-type": "application/x-www-form-urlencoded" },
      body: "",
    });
    expect(response.status).toBe(303);
    expect(response.headers.get("location")).toBe("/dashboard");
    const [cleared = ""] = response.headers.getSetCookie();
    expect(cleared).toMatch(new RegExp(`^${COOKIE_NAME}=; `));
    expect(cleared).toContain("Max-Age=0");
    expect(cleared).toContain("Secure");
  });

  it("is the dashboard's alone: /stats and /workflow_runs ignore the cookie", async () => {
    const { fake, env: stateEnv } = useStatsFake();
    const settings = { ...stateEnv, ...TOKENS };
    const cookie = sessionCookie(await login(TEST_CLIENT_TOKEN, { env: settings }));
    for (const path of ["/stats", "/workflow_runs?maxPageSize=1"]) {
      const response = await callProxy(path, {
        env: settings,
        headers: { cookie, "cf-connecting-ip": freshIp() },
      });
      expect(response.status, path).toBe(401);
      await response.arrayBuffer();
    }
    expect(fake.listCalls).toHaveLength(0);
  });

  it("lets credentials in headers win over a cookie", async () => {
    const { env: stateEnv } = useStatsFake();
    const settings = { ...stateEnv, ...TOKENS };
    const cookie = sessionCookie(await login(TEST_CLIENT_TOKEN, { env: settings }));
    const response = await callProxy("/dashboard", {
      env: settings,
      headers: { cookie, authorization: "Bearer wrong-token", "cf-connecting-ip": freshIp() },
    });
    expect(response.status).toBe(401);
    await response.arrayBuffer();
  });
});

// The cookie's format, built here independently of src/: `1:<the token's caller fingerprint>:<issued>:<expires>`,
// signed with HMAC-SHA256 under HKDF-SHA256(STATS_SIGNING_KEY or EXTEND_API_KEY, "extend-runs-proxy",
// "dashboard session v1"), as hono's signed cookies carry it: `value.base64(signature)`.
async function forgeCookie(value: string, secret: string, info = "dashboard session v1"): Promise<string> {
  const signature = await derivedMac(secret, info, value);
  return `${COOKIE_NAME}=${encodeURIComponent(`${value}.${btoa(String.fromCharCode(...signature))}`)}`;
}

/** The caller id's fingerprint of a token: HMAC-SHA256 under HKDF(secret, "caller fingerprint v1"), 16 hex. */
async function tokenPrint(token: string, secret = TEST_UPSTREAM_KEY): Promise<string> {
  const mac = await derivedMac(secret, "caller fingerprint v1", token);
  return [...mac.subarray(0, 8)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** HMAC-SHA256 of `value` under the key HKDF-SHA256(secret, salt "extend-runs-proxy", info). */
async function derivedMac(secret: string, info: string, value: string): Promise<Uint8Array> {
  const encoder = new TextEncoder();
  const base = await crypto.subtle.importKey("raw", encoder.encode(secret), "HKDF", false, ["deriveBits"]);
  const bits = await crypto.subtle.deriveBits(
    { name: "HKDF", hash: "SHA-256", salt: encoder.encode("extend-runs-proxy"), info: encoder.encode(info) },
    base,
    256,
  );
  const key = await crypto.subtle.importKey("raw", bits, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return new Uint8Array(await crypto.subtle.sign("HMAC", key, encoder.encode(value)));
}

describe("the session cookie refuses what it must", () => {
  const now = () => Math.floor(Date.now() / 1000);

  it("accepts a cookie built to the documented format (the oracle below is right)", async () => {
    const { env: stateEnv } = useStatsFake();
    const value = `1:${await tokenPrint(TEST_CLIENT_TOKEN)}:${now()}:${now() + 600}`;
    const response = await callProxy("/dashboard", {
      env: { ...stateEnv, ...TOKENS },
      headers: { cookie: await forgeCookie(value, TEST_UPSTREAM_KEY) },
    });
    expect(response.status).toBe(200);
    await response.arrayBuffer();
  });

  it.each<[string, () => Promise<string>, RegExp]>([
    [
      "an expired session",
      async () =>
        forgeCookie(
          `1:${await tokenPrint(TEST_CLIENT_TOKEN)}:${now() - 4000}:${now() - 400}`,
          TEST_UPSTREAM_KEY,
        ),
      /session has ended/,
    ],
    [
      "a token since removed from CLIENT_TOKENS",
      async () =>
        forgeCookie(
          `1:${await tokenPrint("ct_removed_token_000")}:${now()}:${now() + 600}`,
          TEST_UPSTREAM_KEY,
        ),
      /session has ended/,
    ],
    [
      "a lifetime longer than an hour",
      async () =>
        forgeCookie(`1:${await tokenPrint(TEST_CLIENT_TOKEN)}:${now()}:${now() + 7200}`, TEST_UPSTREAM_KEY),
      /session has ended/,
    ],
    [
      "an issue time in the future",
      async () =>
        forgeCookie(
          `1:${await tokenPrint(TEST_CLIENT_TOKEN)}:${now() + 600}:${now() + 1200}`,
          TEST_UPSTREAM_KEY,
        ),
      /session has ended/,
    ],
    [
      "a signature under another key",
      async () =>
        forgeCookie(`1:${await tokenPrint(TEST_CLIENT_TOKEN)}:${now()}:${now() + 600}`, "some-other-key-123"),
      /session has ended/,
    ],
    [
      "a signature for another purpose (the resume-token key)",
      async () =>
        forgeCookie(
          `1:${await tokenPrint(TEST_CLIENT_TOKEN)}:${now()}:${now() + 600}`,
          TEST_UPSTREAM_KEY,
          "stats resume token v1",
        ),
      /session has ended/,
    ],
    [
      "an altered expiry",
      async () => {
        const good = await forgeCookie(
          `1:${await tokenPrint(TEST_CLIENT_TOKEN)}:${now()}:${now() + 600}`,
          TEST_UPSTREAM_KEY,
        );
        return good.replace(`%3A${now() + 600}.`, `%3A${now() + 900}.`);
      },
      /session has ended/,
    ],
    ["a garbage signature", async () => `${COOKIE_NAME}=1%3Aabc.${"A".repeat(43)}%3D`, /session has ended/],
  ])("refuses %s and clears it", async (_name, cookie, message) => {
    const { fake, env: stateEnv } = useStatsFake();
    const response = await callProxy("/dashboard", {
      env: { ...stateEnv, ...TOKENS },
      headers: { cookie: await cookie(), "cf-connecting-ip": freshIp() },
    });
    expect(response.status).toBe(401);
    expect(await response.text()).toMatch(message);
    const [cleared = ""] = response.headers.getSetCookie();
    expect(cleared).toMatch(new RegExp(`^${COOKIE_NAME}=; .*Max-Age=0`));
    expect(fake.listCalls).toHaveLength(0);
  });

  it("spends a credential attempt on every cookie, and a rejected credential's cost on a forged one", async () => {
    const { env: stateEnv } = useStatsFake();
    const { binding: limiter, keys } = recordingLimiter(true);
    const settings = {
      ...stateEnv,
      ...TOKENS,
      AUTH_RATE_LIMITER: limiter,
    } as Partial<Env>;
    const print = await tokenPrint(TEST_CLIENT_TOKEN);
    const forged = await forgeCookie(`1:${print}:${now()}:${now() + 600}`, "not-our-key-456");
    const expired = await forgeCookie(`1:${print}:${now() - 4000}:${now() - 400}`, TEST_UPSTREAM_KEY);
    for (const [cookie, ip] of [
      [forged, "198.18.1.1"],
      [expired, "198.18.1.2"],
    ] as const) {
      const response = await callProxy("/dashboard", {
        env: settings,
        headers: { cookie, "cf-connecting-ip": ip },
      });
      expect(response.status).toBe(401);
      await response.arrayBuffer();
    }
    expect(keys).toEqual([
      ...Array(REJECTED_CREDENTIAL_COST).fill("credentials:198.18.1.1"),
      "credentials:198.18.1.2",
    ]);
  });

  it("follows STATS_SIGNING_KEY when it is set", async () => {
    const { env: stateEnv } = useStatsFake();
    const settings = {
      ...stateEnv,
      ...TOKENS,
      STATS_SIGNING_KEY: "signing-key-for-the-dashboard-tests-0d9f",
    };
    const value = `1:${await tokenPrint(TEST_CLIENT_TOKEN, "signing-key-for-the-dashboard-tests-0d9f")}:${now()}:${now() + 600}`;
    const underSigningKey = await callProxy("/dashboard", {
      env: settings,
      headers: { cookie: await forgeCookie(value, "signing-key-for-the-dashboard-tests-0d9f") },
    });
    expect(underSigningKey.status).toBe(200);
    await underSigningKey.arrayBuffer();
    const underUpstreamKey = await callProxy("/dashboard", {
      env: settings,
      headers: { cookie: await forgeCookie(value, TEST_UPSTREAM_KEY), "cf-connecting-ip": freshIp() },
    });
    expect(underUpstreamKey.status).toBe(401);
    await underUpstreamKey.arrayBuffer();
  });
});

describe("methods", () => {
  it.each<[string, string, number, string]>([
    ["GET", "/dashboard/login", 405, "POST, OPTIONS"],
    ["PUT", "/dashboard/login", 405, "POST, OPTIONS"],
    ["OPTIONS", "/dashboard/login", 204, "POST, OPTIONS"],
    ["POST", "/dashboard", 405, "GET, HEAD, OPTIONS"],
    ["DELETE", "/dashboard", 405, "GET, HEAD, OPTIONS"],
    ["OPTIONS", "/dashboard", 204, "GET, HEAD, OPTIONS"],
    ["GET", "/dashboard/logout", 405, "POST, OPTIONS"],
    ["POST", "/workflow_runs", 405, "GET, HEAD, OPTIONS"],
    ["POST", "/stats", 405, "GET, HEAD, OPTIONS"],
  ])("%s %s is %i with Allow: %s", async (method, path, status, allow) => {
    const response = await callProxy(path, { method, env: TOKENS });
    expect(response.status).toBe(status);
    expect(response.headers.get("allow")).toBe(allow);
    if (status === 405) expect((await json<{ code: string }>(response)).code).toBe("METHOD_NOT_ALLOWED");
  });

  it("answers HEAD like GET, without a body", async () => {
    const { env: stateEnv } = useStatsFake();
    const response = await callProxy("/dashboard", {
      method: "HEAD",
      env: { ...stateEnv, ALLOW_ANONYMOUS: "true" },
    });
    expect(response.status).toBe(200);
    expectPageHeaders(response);
    expect(await response.text()).toBe("");
  });
});

describe("the page's parts", () => {
  it("says plainly where numbers come from: a live scan, the index, or a scan while the index is built", () => {
    const now = Date.parse("2026-12-01T10:00:30Z");
    const asOf = "2026-12-01T10:00:00.000Z";
    expect(freshnessText({ source: "scan", asOf, cache: "MISS" }, now)).toBe(
      "Live scan of Extend, counted 2026-12-01 10:00:00 UTC (30 s ago).",
    );
    expect(freshnessText({ source: "index", asOf, lagSeconds: 42, cache: "MISS" }, now)).toBe(
      "From the run index, as of 2026-12-01 10:00:00 UTC (30 s ago), 42 s behind Extend.",
    );
    expect(
      freshnessText(
        { source: "scan", asOf, cache: "HIT", ageSeconds: 30, indexBuilding: { runsIndexed: 12000 } },
        now,
      ),
    ).toBe(
      "Live scan of Extend, counted 2026-12-01 10:00:00 UTC (30 s ago), served from the proxy's cache. " +
        "The run index is still being built (12000 runs indexed so far), so these numbers come from a live scan.",
    );
  });
});

describe("the page with run-index data", () => {
  const byStatus = (processed: number, failed: number) => ({
    PENDING: 0,
    PROCESSING: 2,
    NEEDS_REVIEW: 0,
    REJECTED: 0,
    PROCESSED: processed,
    FAILED: failed,
    CANCELLED: 0,
    CANCELLING: 0,
  });
  const stats: WorkflowRunStats = {
    object: "workflow_run_stats",
    filters: {},
    total: 1300,
    byStatus: byStatus(1200, 98),
    usage: { credits: 10.5, totalCredits: 12, runsWithoutUsage: 3 },
    complete: true,
    pagesFetched: 0,
    resumeToken: null,
    computedAt: "2026-12-01T10:00:00.000Z",
    source: "index",
    asOf: "2026-12-01T09:59:30.000Z",
    lagSeconds: 30,
  };
  const render = (data: Omit<DashboardStats, "stats" | "freshness">, values = {}) =>
    renderDocument(
      DashboardPage({
        nonce: "bm9uY2Vub25jZW5vbmNlMQ==",
        viewer: { callerId: "anon:1", method: "anonymous", session: false },
        form: { values, errors: [] },
        data: {
          stats,
          freshness: { source: "index", asOf: stats.computedAt, lagSeconds: 5, cache: "MISS" },
          ...data,
        },
        now: Date.parse(stats.computedAt),
      }),
    );

  it("draws the top workflows with their status mix, and lists them in a table", async () => {
    const html = await render({
      topWorkflows: [
        { id: "wf_a", name: "Invoices", total: 1002, byStatus: byStatus(950, 50) },
        { id: "wf_b", total: 300, byStatus: byStatus(250, 48) },
      ],
    });
    const chart = /<svg[^>]*id="chart-workflows"[\s\S]*?<\/svg>/.exec(html)?.[0] ?? "";
    expect(chart).toContain('role="img"');
    expect(chart).toContain(
      'aria-label="Top workflows by runs: Invoices 1002 (PROCESSING 2, PROCESSED 950, FAILED 50); wf_b 300 (PROCESSING 2, PROCESSED 250, FAILED 48)"',
    );
    expect(chart).toContain("<title>Invoices: FAILED 50 runs</title>");
    expect(chart).toContain("<title>wf_b: PROCESSING 2 runs</title>");
    expect(html).toContain('<tr data-workflow="wf_a"><th scope="row">Invoices</th><td class="num">1002</td>');
  });

  it("offers the workflows in a select when the index lists them, else a text field", async () => {
    const withChoices = await render(
      { workflowChoices: [{ id: "wf_a", name: "Invoices" }, { id: "wf_b" }] },
      { workflowId: "wf_b" },
    );
    expect(withChoices).toContain('<select id="f-workflowId" name="workflowId">');
    expect(withChoices).toContain('<option value="wf_a">Invoices (wf_a)</option>');
    expect(withChoices).toContain('<option value="wf_b" selected="">wf_b</option>');
    const without = await render({});
    expect(without).toContain('<input type="text" id="f-workflowId" name="workflowId"');
    expect(without).not.toContain('id="chart-workflows"');
  });
});

// The per-workflow view from the run index, through the public surface: the page against
// /stats?workflowId=… (answered by the index) and against an independent fold over the fake.

/** Runs over `counts.length` workflows, workflow k holding counts[k] runs (ids sort by k). */
function runsOverWorkflows(counts: readonly number[], seed: number): FakeRun[] {
  const total = counts.reduce((sum, n) => sum + n, 0);
  const ids = counts.flatMap((n, k) => Array.from({ length: n }, () => k));
  return generateRuns({ size: total, seed }).map((run, i) => {
    const k = ids[i] ?? 0;
    return { ...run, workflow: { ...run.workflow, id: `workflow_t${String(k).padStart(3, "0")}` } };
  });
}

/** The top workflows an independent fold finds for `query`: most runs first, ties by id. */
function referenceTop(runs: readonly FakeRun[], query: Record<string, string>, limit: number) {
  const ids = query.workflowId ? [query.workflowId] : [...new Set(runs.map((run) => run.workflow.id))];
  return ids
    .map((id) => ({ id, ...referenceStats(runs, { ...query, workflowId: id }) }))
    .filter((w) => w.total > 0)
    .sort((a, b) => b.total - a.total || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    .slice(0, limit);
}

interface PageWorkflow {
  id: string;
  printed: number;
  title: string;
  /** Each status segment's count, read from its `<title>`. */
  mix: Record<string, number>;
}

/** The top-workflows chart's bars as a person (or a screen reader) reads them. */
function workflowBars(html: string): PageWorkflow[] {
  const chart = /<svg[^>]*id="chart-workflows"[\s\S]*?<\/svg>/.exec(html)?.[0] ?? "";
  return [...chart.matchAll(/<g class="bar" data-key="([^"]+)">([\s\S]*?)<\/g>/g)].map((m) => {
    const id = m[1] ?? "";
    const body = m[2] ?? "";
    const mix: Record<string, number> = {};
    for (const segment of body.matchAll(/<rect class="s-([A-Z_]+)"[^>]*><title>([^<]*)<\/title><\/rect>/g)) {
      const count = new RegExp(`^${id}: ${segment[1]} ([\\d,]+) runs$`).exec(segment[2] ?? "")?.[1] ?? "";
      mix[segment[1] ?? ""] = Number(count.replaceAll(",", ""));
    }
    return {
      id,
      printed: Number((/<text class="count"[^>]*>([^<]*)<\/text>/.exec(body)?.[1] ?? "").replaceAll(",", "")),
      title: /^<title>([^<]*)<\/title>/.exec(body)?.[1] ?? "",
      mix,
    };
  });
}

/** The options of the workflow select, or undefined when the field is a text input. */
function workflowOptions(html: string): { value: string; selected: boolean }[] | undefined {
  const select = /<select id="f-workflowId"[^>]*>([\s\S]*?)<\/select>/.exec(html)?.[1];
  if (select === undefined) return undefined;
  return [...select.matchAll(/<option value="([^"]*)"( selected="")?>/g)].map((m) => ({
    value: m[1] ?? "",
    selected: m[2] !== undefined,
  }));
}

const nonZero = (byStatus: Record<string, number> | undefined) =>
  Object.fromEntries(Object.entries(byStatus ?? {}).filter(([, n]) => n > 0));

/** Sizes of 14 workflows: more than the chart shows, no two alike. */
const FOURTEEN = Array.from({ length: 14 }, (_, k) => 3 + 2 * ((k * 5) % 14));

describe("GET /dashboard: the per-workflow view from the run index", () => {
  const pageSettings: Partial<Env> = { ALLOW_ANONYMOUS: "true", STATS_RATE_LIMITER: NEVER_REFUSES };

  async function builtIndex(runs: FakeRun[], settings: Partial<Env> = {}) {
    const index = await useIndexFake({ runs }, { ...pageSettings, ...settings });
    await getStats(index, {});
    await settle(index.stub);
    return index;
  }

  it.each<[string, (runs: FakeRun[]) => Record<string, string>]>([
    ["no filter", () => ({})],
    ["a status", () => ({ status: "PROCESSED" })],
    // The fake's runs are a minute apart, ending 2026-11-01T00:00:00Z.
    ["a time window", () => ({ since: "2026-10-31T20:30:00Z", until: "2026-10-31T23:00:00+01:00" })],
    ["a status and a time window", () => ({ status: "PROCESSED", since: "2026-10-31T21:00:00Z" })],
    ["a file name", () => ({ fileNameContains: "invoice" })],
    [
      "a batch",
      (runs) => {
        const batches = runs.flatMap((run) => (run.batchId ? [run.batchId] : []));
        const most = batches.sort().reduce(
          (best, id) => {
            const n = batches.filter((b) => b === id).length;
            return n > best.n ? { id, n } : best;
          },
          { id: "", n: 0 },
        );
        return { batchId: most.id };
      },
    ],
    ["a workflow", () => ({ workflowId: "workflow_t004" })],
  ])("draws the top workflows for %s with exactly /stats?workflowId=…'s counts", async (_name, filters) => {
    const runs = runsOverWorkflows(FOURTEEN, 41);
    const index = await builtIndex(runs);
    const query = filters(runs);
    const response = await index.call(dashboardPath(query));
    const html = await response.text();
    expect(response.status).toBe(200);
    expect(html).toContain("From the run index");
    const shown = workflowBars(html);
    const expected = referenceTop(runs, query, TOP_WORKFLOWS);
    expect(expected.length).toBeGreaterThan(0);
    expect(shown.map((w) => w.id)).toEqual(expected.map((w) => w.id));
    for (const [row, workflow] of shown.entries()) {
      const { body } = await getStats(index, { ...query, workflowId: workflow.id });
      expect(body.source).toBe("index");
      expect(workflow.printed, workflow.id).toBe(body.total);
      expect(workflow.title).toBe(`${workflow.id}: ${body.total.toString()} runs`);
      expect(workflow.mix, workflow.id).toEqual(nonZero(body.byStatus));
      expect(body.total).toBe(expected[row]?.total);
      expect(html).toContain(
        `<tr data-workflow="${workflow.id}"><th scope="row">${workflow.id}</th><td class="num">${body.total.toString()}</td>`,
      );
    }
    const label = /id="chart-workflows"[^>]*aria-label="([^"]+)"/.exec(html)?.[1] ?? "";
    expect(label.startsWith(`Top workflows by runs: ${expected[0]?.id} ${expected[0]?.total}`)).toBe(true);
    expect(html).not.toContain('id="workflows-missing"');
  });

  it("says so when no workflow has runs under the filters, rather than drawing an empty chart", async () => {
    const index = await builtIndex(runsOverWorkflows([5, 6, 7, 8], 42));
    const html = await (await index.call(dashboardPath({ since: "2030-01-01T00:00:00Z" }))).text();
    expect(html).toContain('id="workflows-none"');
    expect(html).not.toContain('id="chart-workflows"');
  });

  it("fills the workflow select from the index, most runs first, and keeps the selected one", async () => {
    const runs = runsOverWorkflows(FOURTEEN, 43);
    const index = await builtIndex(runs);
    const all = referenceTop(runs, {}, Number.POSITIVE_INFINITY).map((w) => w.id);
    const bare = workflowOptions(await (await index.call("/dashboard")).text());
    expect(bare).toEqual([
      { value: "", selected: false },
      ...all.map((value) => ({ value, selected: false })),
    ]);

    const smallest = all.at(-1) ?? "";
    const html = await (await index.call(dashboardPath({ workflowId: smallest }))).text();
    const options = workflowOptions(html);
    expect(options?.filter((o) => o.selected)).toEqual([{ value: smallest, selected: true }]);
    expect(options?.map((o) => o.value)).toEqual(["", ...all]);
    expect(workflowBars(html).map((w) => w.id)).toEqual([smallest]);

    // An id the index has never seen stays selected, so the form shows what was asked for.
    const unknown = "workflow_not_in_the_index";
    const other = await (await index.call(dashboardPath({ workflowId: unknown }))).text();
    expect(workflowOptions(other)?.filter((o) => o.selected)).toEqual([{ value: unknown, selected: true }]);
    expect(other).toContain('id="workflows-none"');
  });

  it("bounds the select to the busiest workflows and still lists the selected one beyond it", async () => {
    // 210 workflows: ten with several runs, the rest with one each.
    const counts = Array.from({ length: 210 }, (_, k) => (k < 10 ? 12 - k : 1));
    const runs = runsOverWorkflows(counts, 44);
    const index = await builtIndex(runs);
    const byRuns = referenceTop(runs, {}, Number.POSITIVE_INFINITY).map((w) => w.id);
    const options = workflowOptions(await (await index.call("/dashboard")).text());
    expect(options?.map((o) => o.value)).toEqual(["", ...byRuns.slice(0, WORKFLOW_CHOICES)]);

    const beyond = byRuns.at(-1) ?? "";
    expect(byRuns.indexOf(beyond)).toBeGreaterThanOrEqual(WORKFLOW_CHOICES);
    const selected = workflowOptions(await (await index.call(dashboardPath({ workflowId: beyond }))).text());
    expect(selected).toHaveLength(WORKFLOW_CHOICES + 2);
    expect(selected?.at(-1)).toEqual({ value: beyond, selected: true });
  });

  it("shows a bad workflowId next to its field with the API's message", async () => {
    const index = await builtIndex(runsOverWorkflows([5, 6, 7, 8], 45));
    const query = { workflowId: "workflow with spaces" };
    const response = await index.call(dashboardPath(query));
    const html = await response.text();
    expect(response.status).toBe(400);
    const api = await index.call(statsPath(query));
    expect(api.status).toBe(400);
    const body = await json<{ details: { field: string; message: string }[] }>(api);
    const detail = body.details.find((d) => d.field === "workflowId");
    expect(detail).toBeDefined();
    expect(html).toContain(`<p class="field-error" id="e-workflowId">workflowId ${detail?.message}</p>`);
    // The field keeps what was typed, so it can be corrected.
    expect(html).toContain('id="f-workflowId" name="workflowId" aria-invalid="true"');
    expect(html).toContain('value="workflow with spaces"');
  });

  it("hides the status mix when REDACT_FIELDS hides byStatus from /stats, and keeps the totals", async () => {
    const runs = runsOverWorkflows(FOURTEEN, 46);
    const index = await builtIndex(runs, { REDACT_FIELDS: "status" });
    const html = await (await index.call("/dashboard")).text();
    const chart = /<svg[^>]*id="chart-workflows"[\s\S]*?<\/svg>/.exec(html)?.[0] ?? "";
    const shown = workflowBars(html);
    expect(shown.map((w) => w.id)).toEqual(referenceTop(runs, {}, TOP_WORKFLOWS).map((w) => w.id));
    for (const workflow of shown) {
      const { body } = await getStats(index, { workflowId: workflow.id });
      expect(body.byStatus).toBeUndefined();
      expect(workflow.printed).toBe(body.total);
      expect(workflow.mix).toEqual({});
    }
    expect(chart).not.toMatch(/class="s-[A-Z_]+"/);
    for (const status of STATUSES) expect(chart).not.toContain(status);
    const table = /<table id="table-workflows">[\s\S]*?<\/table>/.exec(html)?.[0] ?? "";
    expect(table).not.toContain("Status mix");
    for (const status of STATUSES) expect(table).not.toContain(status);
  });

  it.each(["workflow.id", "workflow"])(
    "lists no workflow when REDACT_FIELDS=%s hides their ids",
    async (field) => {
      const index = await builtIndex(runsOverWorkflows([5, 6, 7, 8], 47), { REDACT_FIELDS: field });
      const html = await (await index.call("/dashboard")).text();
      expect(html).not.toContain('id="chart-workflows"');
      expect(html).not.toContain("workflow_t00");
      expect(workflowOptions(html)).toBeUndefined();
      expect(html).toMatch(/<p class="hint">Hidden: this proxy redacts workflow.id \(REDACT_FIELDS\)/);
    },
  );

  it("keeps a text field and says the index is off with RUN_INDEX=off", async () => {
    const { env: stateEnv } = useStatsFake();
    const html = await (
      await callProxy("/dashboard", { env: { ...stateEnv, ALLOW_ANONYMOUS: "true" } })
    ).text();
    expect(html).toContain('<input type="text" id="f-workflowId" name="workflowId"');
    expect(html).not.toContain('id="chart-workflows"');
    expect(html).toContain(
      '<section class="card" id="workflows-missing" aria-labelledby="workflows-heading"><h2 id="workflows-heading">Top workflows by runs</h2><p class="hint">The per-workflow view comes from the run index, which is off on this proxy (RUN_INDEX=off).</p>',
    );
  });

  it("keeps a text field and says how far the index is while it is built", async () => {
    const index = await useIndexFake({ runs: runsOverWorkflows(FOURTEEN, 48) }, pageSettings);
    const html = await (await index.call("/dashboard")).text();
    expect(html).toContain("The run index is still being built");
    expect(html).toContain('<input type="text" id="f-workflowId" name="workflowId"');
    expect(html).not.toContain('id="chart-workflows"');
    expect(html).toMatch(
      /<p class="hint">The per-workflow view comes from the run index, which is still being built \(0 runs indexed so far\): it appears here once the index is ready\.<\/p>/,
    );
  });
});

/** WCAG 2.2 relative luminance and contrast ratio, written out here as the oracle. */
function contrast(a: string, b: string): number {
  const luminance = (hex: string) => {
    const [r, g, bl] = [1, 3, 5].map((i) => {
      const c = Number.parseInt(hex.slice(i, i + 2), 16) / 255;
      return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    }) as [number, number, number];
    return 0.2126 * r + 0.7152 * g + 0.0722 * bl;
  };
  const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x) as [number, number];
  return (hi + 0.05) / (lo + 0.05);
}

describe.each([
  ["light", LIGHT],
  ["dark", DARK],
])("the %s colours meet WCAG AA", (_name, scheme) => {
  it.each<[string, keyof Scheme, keyof Scheme]>([
    ["text on cards", "text", "surface"],
    ["text on the page", "text", "background"],
    ["secondary text on cards", "muted", "surface"],
    ["secondary text on the page", "muted", "background"],
    ["links on cards", "accent", "surface"],
    ["the primary button's label", "onAccent", "accent"],
    ["error messages", "error", "surface"],
    ["input text on the input's background", "text", "background"],
    ["placeholders on the input's background", "placeholder", "background"],
  ])("4.5:1 for %s", (_what, foreground, background) => {
    expect(contrast(scheme[foreground] as string, scheme[background] as string)).toBeGreaterThanOrEqual(4.5);
  });

  it.each([...STATUSES])("3:1 for the %s bar against its card and its track", (status) => {
    expect(contrast(scheme.status[status], scheme.surface)).toBeGreaterThanOrEqual(3);
    expect(contrast(scheme.status[status], scheme.track)).toBeGreaterThanOrEqual(3);
  });

  it("3:1 for the credits bars, the input borders' error outline and the focusable border", () => {
    expect(contrast(scheme.credits, scheme.surface)).toBeGreaterThanOrEqual(3);
    expect(contrast(scheme.credits, scheme.track)).toBeGreaterThanOrEqual(3);
    expect(contrast(scheme.error, scheme.background)).toBeGreaterThanOrEqual(3);
  });

  it("3:1 for the form fields' borders against their card", () => {
    expect(contrast(scheme.control, scheme.surface)).toBeGreaterThanOrEqual(3);
    expect(STYLESHEET).toContain(scheme.control);
  });

  it("is the palette the stylesheet uses", () => {
    for (const colour of [scheme.text, scheme.surface, scheme.accent, ...Object.values(scheme.status)]) {
      expect(STYLESHEET).toContain(colour);
    }
  });
});
