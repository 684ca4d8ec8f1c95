// The frontend path in real Chromium: a page on an origin listed in ALLOWED_ORIGINS reads
// /workflow_runs and /stats with a bearer token (the browser sends the CORS preflight itself),
// with plain fetch and with the `hc` client from src/client bundled by esbuild; the same page
// on an origin that is not listed gets nothing, and its requests never reach the data routes.
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  connect,
  type LogLine,
  proxyLog,
  statsFromApi,
  tokenTaker,
  type Watched,
  watchedPage,
} from "./support/browser.ts";
import { browserSuite } from "./support/context.ts";

const suite = browserSuite();

/** What the fixture's functions return (test/browser/fixtures/frontend.ts). */
type Outcome<T> = { ok: true; value: T } | { ok: false; error: string };

interface FetchResult {
  status: number;
  body: { data?: { id: string }[]; total?: number; byStatus?: Record<string, number> };
  requestId: string | null;
  cache: string | null;
}
interface ClientResult {
  runIds: string[];
  byStatus: Record<string, number>;
  total: number;
}

declare global {
  interface Window {
    frontend: {
      withFetch(proxy: string, token: string, path: string): Promise<Outcome<FetchResult>>;
      withClient(
        proxy: string,
        token: string,
        query: { maxPageSize: string; until: string },
      ): Promise<Outcome<ClientResult>>;
    };
  }
}

let distinct = 0;
/** Query values no other request uses, so each request's log lines (and preflight) are its own. */
function unique(): { maxPageSize: string; until: string } {
  distinct += 1;
  return {
    maxPageSize: String(10 + distinct),
    until: `2099-01-01T00:00:${String(distinct).padStart(2, "0")}Z`,
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The caller id the proxy logs for a client token: its HMAC-SHA256 fingerprint (16 hex) under a
 * key derived with HKDF from the upstream key, as src/security/fingerprint.ts documents it.
 */
async function callerOf(token: string): Promise<string> {
  const encoder = new TextEncoder();
  const secret = suite?.upstreamKey ?? "";
  const base = await crypto.subtle.importKey("raw", encoder.encode(secret), "HKDF", false, ["deriveBits"]);
  const bits = await crypto.subtle.deriveBits(
    {
      name: "HKDF",
      hash: "SHA-256",
      salt: encoder.encode("extend-runs-proxy"),
      info: encoder.encode("caller fingerprint v1"),
    },
    base,
    256,
  );
  const key = await crypto.subtle.importKey("raw", bits, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const mac = Buffer.from(await crypto.subtle.sign("HMAC", key, encoder.encode(token)));
  return `token:${mac.subarray(0, 8).toString("hex")}`;
}

/**
 * The proxy's log lines for one route and query value from the page (preflights, which carry no
 * credentials, and the reads of `token`), waiting briefly for wrangler to print them.
 */
async function linesFor(
  route: string,
  matches: (query: Record<string, string>) => boolean,
  token: string,
  expected: number,
): Promise<LogLine[]> {
  const caller = await callerOf(token);
  let lines: LogLine[] = [];
  for (let i = 0; i < 40; i++) {
    if (suite === null) return [];
    lines = proxyLog(suite).filter(
      (line) =>
        line.route === route &&
        matches(line.query ?? {}) &&
        (line.method === "OPTIONS" || line.caller === caller),
    );
    if (lines.length >= expected) break;
    await sleep(100);
  }
  return lines;
}

describe.skipIf(suite === null)("a frontend on another origin, in Chromium", () => {
  if (suite === null) return;
  const takeToken = tokenTaker(suite.tokens.frontend);
  const oracle = tokenTaker(suite.tokens.oracle.slice(4));
  let browser: Browser;

  beforeAll(async () => {
    browser = await connect(suite);
  });
  afterAll(async () => {
    for (const watched of opened) {
      expect(watched.foreign, "requests to origins other than the page's and the proxy's").toEqual([]);
      await watched.context.close();
    }
    await browser?.close();
  });

  const opened: Watched[] = [];
  const pageOn = async (origin: string): Promise<Page> => {
    const watched = await watchedPage(browser, [origin, suite.proxyUrl], { intercept: false });
    opened.push(watched);
    await watched.page.goto(`${origin}/app.html`);
    await watched.page.waitForFunction(() => typeof window.frontend === "object");
    return watched.page;
  };

  const runsFromApi = async (query: string): Promise<string[]> => {
    const response = await fetch(`${suite.proxyUrl}/workflow_runs?${query}`, {
      headers: { authorization: `Bearer ${oracle()}` },
    });
    return ((await response.json()) as { data: { id: string }[] }).data.map((run) => run.id);
  };

  it("reads /workflow_runs and /stats with a bearer token from an allowed origin, after a preflight", async () => {
    const page = await pageOn(suite.allowedOrigin);
    const token = takeToken();
    const { maxPageSize, until } = unique();
    const runs = await page.evaluate(([proxy, t, path]) => window.frontend.withFetch(proxy, t, path), [
      suite.proxyUrl,
      token,
      `/workflow_runs?maxPageSize=${maxPageSize}`,
    ] as const);
    if (!runs.ok) throw new Error(runs.error);
    expect(runs.value.status).toBe(200);
    expect(runs.value.body.data?.map((run) => run.id)).toEqual(
      await runsFromApi(`maxPageSize=${maxPageSize}`),
    );
    // Exposed response headers are readable from the page.
    expect(runs.value.requestId).toMatch(/^req_/);
    expect(runs.value.cache).toMatch(/^(HIT|MISS|STALE|BYPASS)$/);

    const stats = await page.evaluate(([proxy, t, path]) => window.frontend.withFetch(proxy, t, path), [
      suite.proxyUrl,
      token,
      `/stats?until=${until}`,
    ] as const);
    if (!stats.ok) throw new Error(stats.error);
    expect(stats.value.status).toBe(200);
    const reference = await statsFromApi(suite, oracle(), { until });
    expect(stats.value.body.byStatus).toEqual(reference.byStatus);
    expect(stats.value.body.total).toBe(suite.dataset.size);

    // Chromium preflighted each read (Authorization is not a CORS-safelisted header), then sent it.
    for (const [route, matches] of [
      ["/workflow_runs", (q: Record<string, string>) => q.maxPageSize === maxPageSize],
      ["/stats", (q: Record<string, string>) => q.until === until],
    ] as const) {
      const lines = await linesFor(route, matches, token, 2);
      expect(
        lines.map((l) => [l.method, l.status]),
        route,
      ).toEqual([
        ["OPTIONS", 204],
        ["GET", 200],
      ]);
    }
  });

  it("does the same through the typed hc client bundled into the page", async () => {
    const page = await pageOn(suite.allowedOrigin);
    const query = unique();
    const token = takeToken();
    const result = await page.evaluate(([proxy, t, q]) => window.frontend.withClient(proxy, t, q), [
      suite.proxyUrl,
      token,
      query,
    ] as const);
    if (!result.ok) throw new Error(result.error);
    expect(result.value.runIds).toEqual(await runsFromApi(`maxPageSize=${query.maxPageSize}`));
    const reference = await statsFromApi(suite, oracle(), { until: query.until });
    expect(result.value.byStatus).toEqual(reference.byStatus);
    expect(result.value.total).toBe(reference.total);
    for (const [route, matches] of [
      ["/workflow_runs", (q: Record<string, string>) => q.maxPageSize === query.maxPageSize],
      ["/stats", (q: Record<string, string>) => q.until === query.until],
    ] as const) {
      const lines = await linesFor(route, matches, token, 2);
      expect(
        lines.map((l) => l.method),
        route,
      ).toEqual(["OPTIONS", "GET"]);
    }
  });

  it("gives a page from an origin not in ALLOWED_ORIGINS nothing, by fetch or by client", async () => {
    const page = await pageOn(suite.otherOrigin);
    const token = takeToken();
    const { maxPageSize, until } = unique();
    const viaFetch = await page.evaluate(([proxy, t, path]) => window.frontend.withFetch(proxy, t, path), [
      suite.proxyUrl,
      token,
      `/workflow_runs?maxPageSize=${maxPageSize}`,
    ] as const);
    expect(viaFetch).toEqual({ ok: false, error: "TypeError: Failed to fetch" });
    const viaClient = await page.evaluate(([proxy, t, q]) => window.frontend.withClient(proxy, t, q), [
      suite.proxyUrl,
      token,
      { maxPageSize, until },
    ] as const);
    expect(viaClient).toEqual({ ok: false, error: "TypeError: Failed to fetch" });

    // The preflight was answered without any Access-Control-* grant, so the reads were never sent.
    await linesFor("/workflow_runs", (q) => q.maxPageSize === maxPageSize, token, 2);
    // Both calls had failed in the page by now; allow wrangler a moment to print anything late.
    await sleep(1_000);
    const lines = await linesFor("/workflow_runs", (q) => q.maxPageSize === maxPageSize, token, 2);
    expect(lines.map((l) => l.method)).toEqual(["OPTIONS", "OPTIONS"]);
    const preflight = await fetch(`${suite.proxyUrl}/workflow_runs?maxPageSize=${maxPageSize}`, {
      method: "OPTIONS",
      headers: {
        origin: suite.otherOrigin,
        "access-control-request-method": "GET",
        "access-control-request-headers": "authorization",
      },
    });
    expect([...preflight.headers.keys()].filter((name) => name.startsWith("access-control-"))).toEqual([]);
  });

  it("ships a client bundle with nothing of the Worker in it", async () => {
    const bundle = await (await fetch(`${suite.allowedOrigin}/frontend.js`)).text();
    expect(bundle.length).toBeLessThan(30_000);
    for (const marker of ["EXTEND_API_KEY", "CLIENT_TOKENS", "OpenAPIHono", "zod", suite.upstreamKey]) {
      expect(bundle).not.toContain(marker);
    }
  });
});
