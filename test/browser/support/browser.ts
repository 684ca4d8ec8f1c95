// Helpers the browser tests share: one Chromium connection per file, a watch on everything a
// page does that it should not (console errors, CSP violations, requests to other origins), and
// the proxy's request log.
import { readFileSync } from "node:fs";
import {
  type Browser,
  type BrowserContext,
  type BrowserContextOptions,
  chromium,
  type Page,
} from "playwright-core";
import type { BrowserSuite } from "./context.ts";

export async function connect(suite: BrowserSuite): Promise<Browser> {
  return chromium.connect(suite.wsEndpoint);
}

export interface Watched {
  context: BrowserContext;
  page: Page;
  /**
   * Console errors and uncaught page errors, as text. Chromium's "Failed to load resource" note
   * for a page the test navigated to (the 401 sign-in page, a 400 form) is left out: that is the
   * document's own status, which the tests assert; the same note for anything else is kept.
   */
  errors: string[];
  /** CSP violations the page reported (`securitypolicyviolation`, or Chromium's console line). */
  violations: string[];
  /** Every URL the page requested, in order. */
  requests: string[];
  /** Requests to any origin but the allowed ones (aborted, as offline, unless `intercept` is off). */
  foreign: string[];
}

export interface WatchOptions extends BrowserContextOptions {
  /**
   * Abort requests to other origins (default on). Turn it off where CORS is under test:
   * Playwright answers CORS preflights itself while it intercepts requests, so the server never
   * sees them.
   */
  intercept?: boolean;
}

declare global {
  interface Window {
    __violations?: string[];
  }
}

/**
 * A fresh context and page that may talk only to `origins` (anything else is recorded and
 * aborted) and that records console errors and CSP violations.
 */
export async function watchedPage(
  browser: Browser,
  origins: string[],
  options: WatchOptions = {},
): Promise<Watched> {
  const { intercept = true, ...contextOptions } = options;
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, ...contextOptions });
  const watched: Watched = {
    context,
    page: await context.newPage(),
    errors: [],
    violations: [],
    requests: [],
    foreign: [],
  };
  const foreign = (url: URL) => !origins.includes(url.origin);
  if (intercept) {
    await context.route(foreign, async (route) => {
      watched.foreign.push(route.request().url());
      await route.abort("internetdisconnected");
    });
  }
  context.on("request", (request) => {
    watched.requests.push(request.url());
    if (!intercept && foreign(new URL(request.url()))) watched.foreign.push(request.url());
  });
  if (options.javaScriptEnabled !== false) {
    // Runs through the DevTools protocol, so the page's own CSP does not block it.
    await context.addInitScript(() => {
      window.__violations = [];
      document.addEventListener("securitypolicyviolation", (event) => {
        window.__violations?.push(`${event.violatedDirective} ${event.blockedURI}`);
      });
    });
  }
  const documents = new Map<string, number>();
  watched.page.on("response", (response) => {
    const request = response.request();
    if (request.isNavigationRequest() && request.resourceType() === "document") {
      documents.set(response.url(), response.status());
    }
  });
  watched.page.on("console", (message) => {
    if (message.type() !== "error") return;
    const text = message.text();
    if (/Content Security Policy/i.test(text)) watched.violations.push(text);
    const status = /^Failed to load resource: the server responded with a status of (\d{3})\b/.exec(
      text,
    )?.[1];
    if (status !== undefined && documents.get(message.location().url) === Number(status)) return;
    watched.errors.push(text);
  });
  watched.page.on("pageerror", (error) => watched.errors.push(`${error.name}: ${error.message}`));
  return watched;
}

/** CSP violations the page's own listener saw (JavaScript on), plus those on the console. */
export async function violations(watched: Watched): Promise<string[]> {
  const fromPage = await watched.page.evaluate(() => window.__violations ?? []).catch(() => [] as string[]);
  return [...fromPage, ...watched.violations];
}

export interface LogLine {
  method: string;
  route: string;
  status: number;
  query?: Record<string, string>;
  caller?: string;
}

/** The proxy's request log so far. */
export function proxyLog(suite: BrowserSuite): LogLine[] {
  return readFileSync(suite.logFile, "utf8")
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line) as LogLine & { msg?: string })
    .filter((line) => line.msg === "request");
}

/** What the browser tests read of a /stats answer. */
export interface ApiStats {
  total: number;
  byStatus: Record<string, number>;
  usage: Record<string, number>;
  source: "scan" | "index";
}

/** `GET /stats` straight from Node with a bearer token: the reference the pages must match. */
export async function statsFromApi(
  suite: BrowserSuite,
  token: string,
  query: Record<string, string> = {},
): Promise<ApiStats> {
  const response = await fetch(`${suite.proxyUrl}/stats?${new URLSearchParams(query)}`, {
    headers: { authorization: `Bearer ${token}` },
  });
  if (response.status !== 200)
    throw new Error(`/stats answered ${response.status}: ${await response.text()}`);
  return (await response.json()) as ApiStats;
}

/** Calls per token within the /stats limit (STATS_RATE_LIMITER: 10 a minute in wrangler.toml). */
const CALLS_PER_TOKEN = 9;

/**
 * A /stats oracle that spends each token taken from `take` on at most CALLS_PER_TOKEN calls, so
 * a test that compares many filters stays under the per-caller limit.
 */
export function statsOracle(suite: BrowserSuite, take: () => string) {
  let token = take();
  let used = 0;
  return (query: Record<string, string> = {}) => {
    if (used === CALLS_PER_TOKEN) {
      token = take();
      used = 0;
    }
    used += 1;
    return statsFromApi(suite, token, query);
  };
}

/**
 * Waits until /stats answers from the run index (the first call starts its backfill; the
 * object's alarm builds it), so the page's per-workflow view is there.
 */
export async function untilIndexed(suite: BrowserSuite, take: () => string, timeoutMs = 90_000) {
  const stats = statsOracle(suite, take);
  const deadline = Date.now() + timeoutMs;
  for (let wait = 250; ; wait = Math.min(wait * 2, 8_000)) {
    if ((await stats()).source === "index") return;
    if (Date.now() > deadline) throw new Error("the run index was not built in time");
    await new Promise((resolve) => setTimeout(resolve, wait));
  }
}

/** A token from `list` that no other test has taken. */
export function tokenTaker(list: readonly string[]): () => string {
  let next = 0;
  return () => {
    const token = list[next++];
    if (token === undefined) throw new Error("add more tokens for this browser test file");
    return token;
  };
}
