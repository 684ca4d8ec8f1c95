import type { Config } from "../app/config.ts";
import { ApiError } from "../app/errors.ts";
import type { Priority } from "../gateway/scheduler.ts";
import { readAll, StreamTooLong } from "../lib/bytes.ts";
import { type Clock, systemClock } from "../lib/clock.ts";
import { CLOSE_BRACE, isJsonWhitespace, OPEN_BRACE } from "../lib/json-chars.ts";
import { decodeUtf8, isUtf8 } from "../lib/utf8.ts";
import type { PrunedPage } from "../stats/fold-bytes.ts";
import { type CanonicalListQuery, toSearchParams } from "./schemas.ts";

/** Attempts per upstream page, the first included (gRPC's `maxAttempts` sense). */
export const MAX_ATTEMPTS = 3;
/** Full-jitter exponential back-off: sleep = random(0, min(cap, base * 2^retry)). */
export const BACKOFF_BASE_MS = 100;
export const BACKOFF_CAP_MS = 2_000;
/** A 429 is retried only when its Retry-After is at most this long (and fits the deadline). */
export const MAX_RETRY_AFTER_WAIT_MS = 2_000;
/** Retry-After sent to callers when Extend gave none. */
export const DEFAULT_RETRY_AFTER_SECONDS = 1;
/** Longest `Retry-After` passed on to callers; a larger or later value from Extend is clamped. */
export const MAX_RETRY_AFTER_SECONDS = 3_600;
/** Refuse bodies larger than this: 1000 runs are a few MB; more means something is wrong. */
export const MAX_UPSTREAM_BODY_BYTES = 16 * 1024 * 1024;

/** The settings the Extend client reads: where Extend is, who the proxy is there, how long to wait. */
export type UpstreamConfig = Pick<
  Config,
  | "extendApiKey"
  | "extendApiBaseUrl"
  | "extendApiVersion"
  | "extendWorkspaceId"
  | "upstreamTimeoutMs"
  | "upstreamDeadlineMs"
>;

/** One validated upstream page: the body as Extend sent it, and the parsed list. */
export interface UpstreamPage {
  /**
   * Extend's JSON as it sent it: UTF-8 bytes, unchanged but for a leading byte order mark, which
   * is dropped (as decoding would), and whitespace around the value. Kept as bytes, never a
   * string, wherever the page is only passed on (stored, hashed, folded, sent): shared by everyone
   * who holds the page, never written.
   */
  readonly body: Uint8Array<ArrayBuffer>;
  readonly data: readonly Record<string, unknown>[];
  readonly nextPageToken: string | undefined;
  /** What the /stats fold reads of the page, when whoever checked the page kept it (the tenant object). */
  readonly pruned?: PrunedPage;
  /**
   * Set when another request's load produced this page and that request stores it, so this
   * one must not write it again (KV takes one write per second per key).
   */
  readonly shared?: boolean;
}

/** What a caller learns about each upstream attempt (for logs and tests). */
export interface AttemptReport {
  attempt: number;
  status: number | "timeout" | "network-error";
  durationMs: number;
  /** Extend's Retry-After on this answer, in ms, when it sent one. */
  retryAfterMs?: number;
}

export interface ListOptions {
  /** Absolute time (ms since epoch) after which no attempt starts and running ones abort. */
  deadline?: number;
  /** Aborting it stops the running attempt and any retry; `list` then rejects with its reason. */
  signal?: AbortSignal;
  onAttempt?: (report: AttemptReport) => void;
  /**
   * Awaited right before every attempt (retries after their back-off; the first before the
   * deadline starts): a shared rate budget holds the call back, or refuses it, and then the
   * rejection ends `list` with that error. Resolving `"skip"` for a retry ends `list` with the
   * last attempt's own error instead (the budget has no room for a retry in time).
   */
  beforeAttempt?: (attempt: number) => Promise<undefined | "skip">;
  /** Scheduling for a rate-budgeted upstream (the tenant gateway); the plain client ignores it. */
  priority?: Priority;
  /** Who the call is for: the budget is shared fairly among callers. */
  caller?: string;
  /** Longest the call may wait for its turn before it is refused with a Retry-After. */
  maxWaitMs?: number;
}

/** The narrow interface handlers use to read Extend's list of runs. */
export interface WorkflowRunsUpstream {
  list(query: CanonicalListQuery, options?: ListOptions): Promise<UpstreamPage>;
}

/** GET /workflow_runs/{id}: the run as Extend sent it, or `gone` when Extend answers 404 or 410. */
export type RunLookup = { found: Record<string, unknown> } | { gone: true };

/** One page of GET /workflows: the workflows' ids; `unsupported` when Extend answers 404 or 410. */
export type WorkflowPage = { ids: string[]; nextPageToken: string | undefined } | { unsupported: true };

/**
 * The Extend client: the list, one run by id (what the run index confirms deletions with), and
 * the workflows (what it splits its backfill by).
 */
export interface ExtendUpstream extends WorkflowRunsUpstream {
  getRun(id: string, options?: ListOptions): Promise<RunLookup>;
  listWorkflows(nextPageToken: string | undefined, options?: ListOptions): Promise<WorkflowPage>;
}

export interface UpstreamDeps {
  fetch?: typeof fetch;
  clock?: Clock;
  /** Jitter source for back-off, in [0, 1). */
  random?: () => number;
  /** Reads a 200 list body in place of `parseListBody` (undefined: not a list of runs). */
  parseList?: (body: Uint8Array<ArrayBuffer>) => UpstreamPage | undefined;
}

type Outcome<T> =
  | { kind: "ok"; value: T }
  | { kind: "retry"; error: ApiError; waitMs?: number }
  | { kind: "fail"; error: ApiError };

/** How one endpoint's answer is read: its 200 body, and optionally a 404 (or 410) that is an answer too. */
interface Expectation<T> {
  /** The 200 body, or undefined when it is not what was asked for (or not UTF-8). */
  parse(body: Uint8Array<ArrayBuffer>): T | undefined;
  /** Said when a 200 body does not parse. */
  invalid: string;
  notFound?: T;
}

type AttemptStatus = AttemptReport["status"];

/** Builds the upstream URL from configuration and validated values only. */
export function upstreamUrl(config: UpstreamConfig, query: CanonicalListQuery): URL {
  const base = new URL(config.extendApiBaseUrl);
  if (!base.pathname.endsWith("/")) base.pathname += "/";
  const url = new URL("workflow_runs", base);
  url.search = toSearchParams(query).toString();
  return url;
}

/** GET /workflow_runs/{id}, the id path-encoded. */
export function runUrl(config: UpstreamConfig, id: string): URL {
  const base = new URL(config.extendApiBaseUrl);
  if (!base.pathname.endsWith("/")) base.pathname += "/";
  return new URL(`workflow_runs/${encodeURIComponent(id)}`, base);
}

/** GET /workflows, the largest pages Extend gives. */
export function workflowsUrl(config: UpstreamConfig, nextPageToken: string | undefined): URL {
  const base = new URL(config.extendApiBaseUrl);
  if (!base.pathname.endsWith("/")) base.pathname += "/";
  const url = new URL("workflows", base);
  if (nextPageToken) url.searchParams.set("nextPageToken", nextPageToken);
  url.searchParams.set("maxPageSize", "1000");
  return url;
}

/** The only headers that ever go upstream. */
export function upstreamHeaders(config: UpstreamConfig): Headers {
  const headers = new Headers({
    accept: "application/json",
    authorization: `Bearer ${config.extendApiKey}`,
    "x-extend-api-version": config.extendApiVersion,
    "user-agent": "extend-runs-proxy",
  });
  if (config.extendWorkspaceId) headers.set("x-extend-workspace-id", config.extendWorkspaceId);
  return headers;
}

// RFC 9110 §5.6.7: IMF-fixdate, plus the obsolete RFC 850 and asctime forms recipients must accept.
const HTTP_DATE = [
  /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$/,
  /^(Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), \d{2}-(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)-\d{2} \d{2}:\d{2}:\d{2} GMT$/,
  /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ \d]\d \d{2}:\d{2}:\d{2} \d{4}$/,
];

/**
 * Parses `Retry-After` (delay-seconds or HTTP-date, RFC 9110 §10.2.3) into milliseconds.
 * Anything else is ignored: `Date.parse` alone would read "1.5" or "-1" as dates in the past.
 */
export function parseRetryAfter(value: string | null, now: number): number | undefined {
  if (value === null) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Math.min(Number(text), MAX_RETRY_AFTER_SECONDS) * 1000;
  if (!HTTP_DATE.some((format) => format.test(text))) return undefined;
  const date = Date.parse(text);
  if (Number.isNaN(date)) return undefined;
  return Math.min(Math.max(0, date - now), MAX_RETRY_AFTER_SECONDS * 1000);
}

function isListShape(
  value: unknown,
): value is { object: "list"; data: Record<string, unknown>[]; nextPageToken?: unknown } {
  if (typeof value !== "object" || value === null) return false;
  const list = value as { object?: unknown; data?: unknown; nextPageToken?: unknown };
  return (
    // `object` is Extend's discriminator; a compatible server that leaves it out still sends a list.
    (list.object === "list" || list.object === undefined) &&
    Array.isArray(list.data) &&
    list.data.every((run) => typeof run === "object" && run !== null && !Array.isArray(run)) &&
    (list.nextPageToken === undefined ||
      list.nextPageToken === null ||
      typeof list.nextPageToken === "string")
  );
}

/** A list page's text and its runs, parsed; undefined when it is not Extend's list shape. */
export function parseListText(
  text: string,
): { data: Record<string, unknown>[]; nextPageToken: string | undefined } | undefined {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!isListShape(json)) return undefined;
  const token =
    typeof json.nextPageToken === "string" && json.nextPageToken !== "" ? json.nextPageToken : undefined;
  return { data: json.data, nextPageToken: token };
}

/** Parses a 200 body; anything that is not UTF-8 and Extend's list shape is an invalid response. */
export function parseListBody(body: Uint8Array<ArrayBuffer>): UpstreamPage | undefined {
  const text = decodeUtf8(body);
  const list = text === undefined ? undefined : parseListText(text);
  return list && { body, ...list };
}

/**
 * A page rebuilt from bytes that were validated as a list when they were first read (a cached
 * page, or one the gateway object fetched): the runs are decoded and parsed only if a consumer
 * reads them (the list route sends the bytes as they are), so serving it costs no JSON parse.
 * `undefined` when the bytes cannot be a list at all; a deeper fault surfaces when the runs are read.
 */
export function pageFromBytes(
  body: Uint8Array<ArrayBuffer>,
  options: { shared?: boolean; pruned?: PrunedPage } = {},
): UpstreamPage | undefined {
  if (body[0] !== OPEN_BRACE || body[body.length - 1] !== CLOSE_BRACE) return undefined;
  let parsed: UpstreamPage | undefined;
  const full = (): UpstreamPage => {
    parsed ??= parseListBody(body);
    if (!parsed) throw new ApiError("UPSTREAM_INVALID_RESPONSE", "A stored page could not be read.");
    return parsed;
  };
  return {
    body,
    get data() {
      return full().data;
    },
    get nextPageToken() {
      return full().nextPageToken;
    },
    ...(options.shared ? { shared: true } : {}),
    ...(options.pruned ? { pruned: options.pruned } : {}),
  };
}

/** A page's text, for what must rewrite it (redaction): the one place a page becomes a string. */
export function pageText(page: UpstreamPage): string {
  const text = decodeUtf8(page.body);
  if (text === undefined) throw new ApiError("UPSTREAM_INVALID_RESPONSE", "A stored page could not be read.");
  return text;
}

/** The text parsers of the other endpoints, over bytes that may not be UTF-8. */
function fromText<T>(parse: (text: string) => T | undefined): (body: Uint8Array) => T | undefined {
  return (body) => {
    const text = decodeUtf8(body);
    return text === undefined ? undefined : parse(text);
  };
}

/** The run asked for, or undefined: another run's state (a misrouted answer) would be written as this one's. */
function parseRunBody(body: string, id: string): RunLookup | undefined {
  try {
    const json: unknown = JSON.parse(body);
    if (typeof json === "object" && json !== null && !Array.isArray(json)) {
      if ((json as { id?: unknown }).id === id) return { found: json as Record<string, unknown> };
    }
  } catch {
    return undefined;
  }
  return undefined;
}

function parseWorkflowsBody(body: string): WorkflowPage | undefined {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    return undefined;
  }
  const list = json as { data?: unknown; nextPageToken?: unknown } | null;
  if (!list || !Array.isArray(list.data)) return undefined;
  const ids: string[] = [];
  for (const item of list.data) {
    const id = (item as { id?: unknown } | null)?.id;
    if (typeof id !== "string" || id === "") return undefined;
    ids.push(id);
  }
  const token =
    typeof list.nextPageToken === "string" && list.nextPageToken !== "" ? list.nextPageToken : undefined;
  return { ids, nextPageToken: token };
}

const WORKFLOWS: Expectation<WorkflowPage> = {
  parse: fromText(parseWorkflowsBody),
  invalid: "Extend answered 200 with a body that is not a list of workflows.",
  notFound: { unsupported: true },
};

const LIST: Expectation<UpstreamPage> = {
  parse: parseListBody,
  invalid: "Extend answered 200 with a body that is not a list of runs.",
};

function getRunExpectation(id: string): Expectation<RunLookup> {
  return {
    parse: fromText((body) => parseRunBody(body, id)),
    invalid: "Extend answered 200 with a body that is not the workflow run asked for.",
    notFound: { gone: true },
  };
}

function timeoutError(): ApiError {
  return new ApiError("UPSTREAM_TIMEOUT", "Extend did not answer in time.");
}

export function classify(status: number, retryAfterMs: number | undefined): Outcome<never> {
  if (status === 401 || status === 403) {
    return {
      kind: "fail",
      error: new ApiError(
        "UPSTREAM_AUTH_FAILED",
        "The proxy is misconfigured: Extend rejected its credentials.",
      ),
    };
  }
  if (status === 402) {
    return {
      kind: "fail",
      error: new ApiError("UPSTREAM_USAGE_BLOCKED", "Extend refused the request for billing reasons."),
    };
  }
  // 410 Gone is how an API may say a cursor expired: refused like any stale cursor, so a walk
  // that holds one starts again rather than asking for it forever.
  if (status === 400 || status === 410 || status === 422) {
    return {
      kind: "fail",
      error: new ApiError(
        "INVALID_REQUEST",
        "Extend rejected the query; an expired nextPageToken, or one used with other filters, is the usual cause.",
      ),
    };
  }
  if (status === 404) {
    return {
      kind: "fail",
      error: new ApiError("NOT_FOUND", "Extend reported the requested resource as not found."),
    };
  }
  if (status === 429) {
    const seconds = Math.max(DEFAULT_RETRY_AFTER_SECONDS, Math.ceil((retryAfterMs ?? 0) / 1000));
    const error = new ApiError(
      "UPSTREAM_RATE_LIMITED",
      "Extend's rate limit for this organisation is exhausted; retry later.",
      {
        retryAfter: seconds,
      },
    );
    if (retryAfterMs !== undefined && retryAfterMs > MAX_RETRY_AFTER_WAIT_MS) return { kind: "fail", error };
    return { kind: "retry", error, waitMs: retryAfterMs };
  }
  if (status >= 300 && status < 400) {
    return {
      kind: "fail",
      error: new ApiError(
        "UPSTREAM_ERROR",
        "Extend answered with a redirect, which the proxy does not follow.",
      ),
    };
  }
  if (status >= 500) {
    // A 5xx that says when to come back (a 503 while Extend sheds load) is waited out like a 429,
    // or passed on: an earlier retry would only be refused again.
    if (retryAfterMs === undefined) {
      return { kind: "retry", error: new ApiError("UPSTREAM_ERROR", `Extend failed with HTTP ${status}.`) };
    }
    const error = new ApiError("UPSTREAM_ERROR", `Extend failed with HTTP ${status}.`, {
      retryAfter: Math.max(DEFAULT_RETRY_AFTER_SECONDS, Math.ceil(retryAfterMs / 1000)),
    });
    if (retryAfterMs > MAX_RETRY_AFTER_WAIT_MS) return { kind: "fail", error };
    return { kind: "retry", error, waitMs: retryAfterMs };
  }
  return {
    kind: "fail",
    error: new ApiError("UPSTREAM_ERROR", `Extend answered with unexpected HTTP ${status}.`),
  };
}

function tooLarge(): ApiError {
  return new ApiError("UPSTREAM_INVALID_RESPONSE", "Extend's response was too large.");
}

const BOM = [0xef, 0xbb, 0xbf] as const;

/** The size of the last 200 body read: pages of a walk are alike, so the next one is read into one buffer. */
let lastBodyBytes = 0;

/**
 * Reads the body's bytes under the attempt's signal straight into one buffer (sized from
 * Content-Length, or from the last body read), refusing an oversized body as soon as it shows and
 * cancelling a stalled one on the signal: a page is then one buffer, with no chunks to join or
 * free. A leading byte order mark is dropped, as a UTF-8 decoder drops it.
 */
async function readBody(response: Response, signal: AbortSignal): Promise<Uint8Array<ArrayBuffer>> {
  const declared = Number(response.headers.get("content-length") ?? "0");
  if (declared > MAX_UPSTREAM_BODY_BYTES) {
    await response.body?.cancel().catch(() => undefined);
    throw tooLarge();
  }
  if (!response.body) return new Uint8Array(0);
  let body: Uint8Array<ArrayBuffer>;
  try {
    body = await readAll(response.body, {
      sizeHint: Number.isSafeInteger(declared) && declared > 0 ? declared : lastBodyBytes,
      maxBytes: MAX_UPSTREAM_BODY_BYTES,
      signal,
    });
  } catch (error) {
    if (error instanceof StreamTooLong) throw tooLarge();
    throw error;
  }
  lastBodyBytes = body.byteLength;
  return withoutPadding(BOM.every((b, i) => body[i] === b) ? body.subarray(BOM.length) : body);
}

/**
 * The body without the whitespace JSON allows around its value (a trailing newline is common):
 * a stored page, and what the fold and the cache read back, must start with `{` and end with `}`.
 */
function withoutPadding(body: Uint8Array<ArrayBuffer>): Uint8Array<ArrayBuffer> {
  let start = 0;
  let end = body.length;
  while (start < end && isJsonWhitespace(body[start] as number)) start++;
  while (end > start && isJsonWhitespace(body[end - 1] as number)) end--;
  return start === 0 && end === body.length ? body : body.subarray(start, end);
}

/**
 * Extend's `GET /workflow_runs` and `GET /workflow_runs/{id}`, with per-attempt timeouts,
 * full-jitter retries on network errors, timeouts, 5xx and short 429s, and one overall deadline.
 * Redirects are never followed.
 */
export function createExtendUpstream(config: UpstreamConfig, deps: UpstreamDeps = {}): ExtendUpstream {
  const doFetch = deps.fetch ?? ((input, init) => fetch(input, init));
  const clock = deps.clock ?? systemClock;
  const random = deps.random ?? Math.random;
  const now = () => clock.now();
  const list = deps.parseList ? { ...LIST, parse: deps.parseList } : LIST;

  async function attempt<T>(
    url: URL,
    expect: Expectation<T>,
    perAttemptMs: number,
    outer: AbortSignal | undefined,
  ): Promise<Outcome<T> & { status: AttemptStatus; retryAfterMs?: number }> {
    const timeout = AbortSignal.timeout(perAttemptMs);
    const signal = outer ? AbortSignal.any([timeout, outer]) : timeout;
    let status: AttemptStatus = "network-error";
    let retryAfterMs: number | undefined;
    const outcome = await attemptOnce(url, expect, signal, timeout, outer, (s, after) => {
      status = s;
      retryAfterMs = after;
    });
    if (outcome.kind !== "ok" && outcome.error.code === "UPSTREAM_TIMEOUT") status = "timeout";
    return { ...outcome, status, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) };
  }

  async function attemptOnce<T>(
    url: URL,
    expect: Expectation<T>,
    signal: AbortSignal,
    timeout: AbortSignal,
    outer: AbortSignal | undefined,
    onStatus: (status: number, retryAfterMs?: number) => void,
  ): Promise<Outcome<T>> {
    try {
      const response = await doFetch(url.toString(), {
        method: "GET",
        headers: upstreamHeaders(config),
        redirect: "manual",
        signal,
      });
      // 410 Gone says the same of a resource as 404, for good: a deleted run may be answered either way.
      if ((response.status === 404 || response.status === 410) && expect.notFound !== undefined) {
        onStatus(response.status);
        await response.body?.cancel().catch(() => undefined);
        return { kind: "ok", value: expect.notFound };
      }
      if (response.status !== 200) {
        const retryAfterMs = parseRetryAfter(response.headers.get("retry-after"), now());
        onStatus(response.status, retryAfterMs);
        await response.body?.cancel().catch(() => undefined);
        return classify(response.status, retryAfterMs);
      }
      onStatus(response.status);
      let body: Uint8Array<ArrayBuffer>;
      try {
        body = await readBody(response, signal);
      } catch (error) {
        if (error instanceof ApiError) return { kind: "fail", error };
        if (outer?.aborted) throw outer.reason;
        if (timeout.aborted) return { kind: "retry", error: timeoutError() };
        return {
          kind: "retry",
          error: new ApiError("UPSTREAM_INVALID_RESPONSE", "Extend's response was cut off before it ended.", {
            cause: error,
          }),
        };
      }
      const value = expect.parse(body);
      if (value === undefined) {
        // Only now, on a refused body, is it worth a second pass to say which fault it was.
        const message = isUtf8(body) ? expect.invalid : "Extend answered with a body that is not UTF-8.";
        return { kind: "fail", error: new ApiError("UPSTREAM_INVALID_RESPONSE", message) };
      }
      return { kind: "ok", value };
    } catch (error) {
      if (outer?.aborted) throw outer.reason ?? error;
      if (timeout.aborted) return { kind: "retry", error: timeoutError() };
      return {
        kind: "retry",
        error: new ApiError("UPSTREAM_ERROR", "Could not connect to Extend.", { cause: error }),
      };
    }
  }

  async function call<T>(url: URL, expect: Expectation<T>, options: ListOptions): Promise<T> {
    await options.beforeAttempt?.(1);
    const deadline = options.deadline ?? now() + config.upstreamDeadlineMs;
    // Built only when it is thrown: an Error captures its stack, and most calls never fail.
    let last: ApiError | undefined;
    for (let n = 1; n <= MAX_ATTEMPTS; n++) {
      if (n > 1 && (await options.beforeAttempt?.(n)) === "skip") break;
      // The caller gave up (its own budget, or the client left): no further attempt is wanted.
      options.signal?.throwIfAborted();
      const remaining = deadline - now();
      if (remaining <= 0) break;
      const started = now();
      const outcome = await attempt(
        url,
        expect,
        Math.min(config.upstreamTimeoutMs, remaining),
        options.signal,
      );
      options.onAttempt?.({
        attempt: n,
        status: outcome.status,
        durationMs: now() - started,
        ...(outcome.retryAfterMs !== undefined ? { retryAfterMs: outcome.retryAfterMs } : {}),
      });
      if (outcome.kind === "ok") return outcome.value;
      last = outcome.error;
      if (outcome.kind === "fail" || n === MAX_ATTEMPTS) break;
      const backoff = random() * Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** (n - 1));
      const wait = outcome.waitMs !== undefined ? outcome.waitMs + backoff / 4 : backoff;
      if (now() + wait >= deadline) break;
      await clock.sleep(wait, options.signal);
    }
    throw last ?? timeoutError();
  }

  return {
    async list(query, options = {}) {
      const page = await call(upstreamUrl(config, query), list, options);
      // The fold, when it ran, has the cursor already: reading it from the page would parse the runs.
      const next = page.pruned ? page.pruned.nextPageToken : page.nextPageToken;
      if (query.nextPageToken !== undefined && next === query.nextPageToken) {
        // Followed as given, it would page every client forever; a page that did not advance is
        // no page at all, so it is never stored either.
        throw new ApiError("UPSTREAM_INVALID_RESPONSE", "Extend's nextPageToken did not advance.");
      }
      return page;
    },
    getRun: (id, options = {}) => call(runUrl(config, id), getRunExpectation(id), options),
    listWorkflows: (token, options = {}) => call(workflowsUrl(config, token), WORKFLOWS, options),
  };
}
