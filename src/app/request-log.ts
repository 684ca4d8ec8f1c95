import type { Context } from "hono";
import { createMiddleware } from "hono/factory";
import { shortHash } from "../lib/digest.ts";
import { MIN_SECRET_LENGTH } from "./config.ts";
import type { AppEnv } from "./env.ts";

/** Query parameters that carry cursors or signed state: logged as a short hash, never raw. */
const CURSOR_PARAMS = new Set(["nextPageToken", "resumeToken"]);
/** A parameter whose name looks like a credential is never logged, whatever route it reached. */
const SECRET_LOOKING_PARAM = /token|key|secret|passw|auth|sig|jwt|cookie|session/i;
const MAX_LOGGED_VALUE_CHARS = 200;
const MAX_LOGGED_PARAMS = 20;
/**
 * Secrets shorter than this are not scrubbed: replacing a few common characters would wreck every
 * line. The configuration refuses shorter secrets (config.ts MIN_SECRET_LENGTH), so every secret
 * of a working proxy is scrubbed.
 */
export const MIN_SCRUBBED_SECRET_LENGTH = MIN_SECRET_LENGTH;
export const REDACTED = "[redacted]";

/**
 * The settings whose values are secrets, with whether each is a comma-separated list. A new
 * secret setting is added here, and every log line of the isolate is scrubbed of it.
 */
export const SECRET_SETTINGS = [
  { name: "EXTEND_API_KEY", list: false },
  { name: "STATS_SIGNING_KEY", list: false },
  { name: "CLIENT_TOKENS", list: true },
  { name: "EXTEND_WEBHOOK_SECRET", list: true },
] as const satisfies readonly { name: keyof Env; list: boolean }[];

const knownSecrets = new Set<string>();
const secretsSeenFor = new WeakSet<object>();
let secretPattern: RegExp | undefined;

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** The values of the SECRET_SETTINGS in `env`, lists split, blanks dropped. Works on an env that does not parse. */
export function secretValues(env: Partial<Env>): string[] {
  const values: string[] = [];
  for (const setting of SECRET_SETTINGS) {
    const raw = env[setting.name];
    if (typeof raw !== "string") continue;
    for (const part of setting.list ? raw.split(",") : [raw]) {
      const value = part.trim();
      if (value !== "") values.push(value);
    }
  }
  return values;
}

/**
 * Remembers secrets so every later log line of this isolate is scrubbed of them, also in the
 * forms a line may carry them: percent-encoded (a token with `+`, `/` or `=` pasted into a URL;
 * matched in any case, as `%2b` is `%2B`), pasted raw into a query (where `+` reads as a space)
 * and JSON-escaped.
 */
export function rememberSecrets(secrets: readonly string[]): void {
  let added = false;
  for (const secret of secrets) {
    if (secret.length < MIN_SCRUBBED_SECRET_LENGTH) continue;
    const forms = [
      secret,
      encodeURIComponent(secret),
      secret.replaceAll("+", " "),
      JSON.stringify(secret).slice(1, -1),
    ];
    for (const form of forms) {
      if (!knownSecrets.has(form)) {
        knownSecrets.add(form);
        added = true;
      }
    }
  }
  if (added) {
    const longestFirst = [...knownSecrets].sort((a, b) => b.length - a.length).map(escapeRegExp);
    // Case-insensitive for the escapes' hex digits; a case variant of a secret is hidden as well.
    secretPattern = new RegExp(longestFirst.join("|"), "gi");
  }
}

/** Remembers the secret settings of an env (see SECRET_SETTINGS), once per env object. */
export function rememberSecretsOf(env: Partial<Env>): void {
  if (secretsSeenFor.has(env)) return;
  secretsSeenFor.add(env);
  rememberSecrets(secretValues(env));
}

/** Replaces every remembered secret in `text` with `[redacted]`. */
export function scrub(text: string): string {
  return secretPattern ? text.replace(secretPattern, REDACTED) : text;
}

function scrubArg(arg: unknown): unknown {
  if (!secretPattern) return arg;
  if (typeof arg === "string") return scrub(arg);
  let text: string;
  try {
    text = arg instanceof Error ? `${arg.name}: ${arg.message}\n${arg.stack ?? ""}` : JSON.stringify(arg);
  } catch {
    return arg;
  }
  // Objects keep their structure for Workers Logs unless they hold a secret.
  if (typeof text !== "string") return arg;
  const clean = scrub(text);
  return clean === text ? arg : clean;
}

const CONSOLE_METHODS = ["log", "info", "warn", "error", "debug"] as const;
let consoleScrubbed = false;

/**
 * Wraps the isolate's console so that no line any module writes carries a remembered secret.
 * Defence in depth: the proxy's own lines are built to hold none.
 */
export function scrubConsole(): void {
  if (consoleScrubbed) return;
  consoleScrubbed = true;
  for (const method of CONSOLE_METHODS) {
    const original = console[method].bind(console);
    console[method] = (...args: unknown[]) => original(...args.map(scrubArg));
  }
}

/**
 * A text that is cut is scrubbed first: a secret cut short would no longer match the scrubber,
 * and its prefix would stay. One that is not is left to the scrub of the whole line.
 */
function truncate(text: string, max = MAX_LOGGED_VALUE_CHARS): string {
  if (text.length <= max) return text;
  const clean = scrub(text);
  return clean.length > max ? `${clean.slice(0, max)}…` : clean;
}

/**
 * The path with every escape decoded (hono's path keeps `%2F`, `%2B` and the like): a secret in
 * it, escaped in whichever way, then reaches the scrubber as itself.
 */
function decodedPath(path: string): string {
  // Run by run, so one malformed escape leaves the others decoded.
  return path.replace(/(?:%[0-9A-Fa-f]{2})+/g, (escapes) => {
    try {
      return decodeURIComponent(escapes);
    } catch {
      return escapes;
    }
  });
}

/** The query as it may be logged: cursors hashed, credential-looking parameters dropped. */
async function loggableQuery(url: URL): Promise<Record<string, string> | undefined> {
  const entries = [...url.searchParams].slice(0, MAX_LOGGED_PARAMS);
  if (entries.length === 0) return undefined;
  const out: Record<string, string> = {};
  for (const [rawName, value] of entries) {
    const name = truncate(rawName, 64);
    const logged = CURSOR_PARAMS.has(rawName)
      ? `sha256:${await shortHash(value)}`
      : SECRET_LOOKING_PARAM.test(rawName)
        ? REDACTED
        : truncate(value);
    out[name] = name in out ? `${out[name]},${logged}` : logged;
  }
  return out;
}

/** Writes one structured line, scrubbed of every remembered secret. */
export function logLine(record: Record<string, unknown>): void {
  console.log(scrub(JSON.stringify(record)));
}

/**
 * Runs `write` once the response has been handed to the runtime, in `waitUntil`, so no caller
 * waits for its own log line (under `wrangler dev` a console line is a round trip through the
 * inspector, milliseconds a request). Without an execution context it runs at once.
 */
async function afterResponse(c: Context<AppEnv>, write: () => Promise<void>): Promise<void> {
  let ctx: Context<AppEnv>["executionCtx"] | undefined;
  try {
    ctx = c.executionCtx;
  } catch {
    ctx = undefined;
  }
  if (!ctx) return write();
  const later = new Promise((resolve) => setTimeout(resolve, 0)).then(write);
  ctx.waitUntil(later.catch(() => undefined));
}

/**
 * Exactly one JSON line per request, written when the response is ready: request id, method,
 * route, query (cursors hashed), status, cache state, upstream attempts and last status,
 * duration and caller id. Never a header, a credential or a raw cursor.
 */
export function requestLog() {
  scrubConsole();
  return createMiddleware<AppEnv>(async (c, next) => {
    const started = Date.now();
    rememberSecretsOf(c.env);
    try {
      await next();
    } finally {
      const telemetry = c.get("telemetry");
      const status = c.res.status;
      const url = c.req.url;
      // Everything is read now, as the response leaves; only the query's hashing waits.
      const record: Record<string, unknown> = {
        level: status >= 500 ? "error" : status >= 400 ? "warn" : "info",
        msg: "request",
        requestId: c.get("requestId"),
        method: c.req.method,
        route: truncate(decodedPath(telemetry?.route ?? c.req.path)),
        query: undefined,
        status,
        cache: telemetry?.cache,
        upstreamAttempts: telemetry?.upstreamAttempts ?? 0,
        upstreamStatus: telemetry?.upstreamStatus,
        durationMs: Date.now() - started,
        caller: telemetry?.callerId,
        warnings: telemetry?.warnings?.length ? [...telemetry.warnings] : undefined,
        cause: telemetry?.cause,
      };
      await afterResponse(c, async () => {
        const deferred = telemetry?.afterResponse?.splice(0) ?? [];
        if (deferred.length > 0) {
          await Promise.allSettled(deferred.map((work) => work()));
          if (telemetry?.warnings?.length) record.warnings = [...telemetry.warnings];
        }
        record.query = await loggableQuery(new URL(url));
        logLine(record);
      });
    }
  });
}
