import type { Context } from "hono";
import { createMiddleware } from "hono/factory";
import type { AppEnv } from "../app/env.ts";
import { ApiError } from "../app/errors.ts";
import { clientIp } from "./client-ip.ts";

/** The period of both limiters in wrangler.toml; Retry-After is the longest a caller may wait. */
export const RATE_LIMIT_PERIOD_SECONDS = 60;

/** The Workers Rate Limiting bindings declared in wrangler.toml. */
export type LimiterBinding = "RATE_LIMITER" | "STATS_RATE_LIMITER";

/**
 * Asks the binding whether `key` may make one more request. A binding that throws (or is not
 * bound) lets the request through and records a warning on the request's log line: an outage
 * of the limiter must not become an outage of the proxy.
 */
async function withinLimit(c: Context<AppEnv>, binding: LimiterBinding, key: string): Promise<boolean> {
  try {
    const outcome = await c.env[binding].limit({ key });
    return outcome.success;
  } catch {
    const telemetry = c.var.telemetry;
    telemetry.warnings = [...(telemetry.warnings ?? []), `${binding} unavailable; request allowed`];
    return true;
  }
}

function rateLimited(what: string): ApiError {
  return new ApiError(
    "RATE_LIMIT_EXCEEDED",
    `Too many ${what}; retry after ${RATE_LIMIT_PERIOD_SECONDS} seconds.`,
    { retryAfter: RATE_LIMIT_PERIOD_SECONDS },
  );
}

/** Asks the limiter about this caller now: resolves when allowed, rejects with the 429 when not. */
function admit(c: Context<AppEnv>, binding: LimiterBinding): Promise<void> {
  const key = c.get("caller")?.id ?? `anon:${clientIp(c)}`;
  return withinLimit(c, binding, key).then((allowed) => {
    if (!allowed) throw rateLimited("requests from this caller");
  });
}

/**
 * Per-caller limit on data routes (GET and HEAD), keyed by the authenticated caller id. Runs
 * after `authenticate()` and before the handler, so a refused request never reaches Extend.
 */
export function rateLimit(binding: LimiterBinding) {
  return createMiddleware<AppEnv>(async (c, next) => {
    if (c.req.method !== "GET" && c.req.method !== "HEAD") return next();
    await admit(c, binding);
    await next();
  });
}

/**
 * The same per-caller limit, asked while the handler starts (the limiter is a round trip; a
 * cache read can run beside it). The handler gets the verdict as `c.var.admission` and must
 * await it before it serves, loads or writes anything: the page source hands it to the cache,
 * which awaits it before any of these. Whatever the handler answered, a refused caller gets the
 * 429, and an error (a 400, say) is answered only once the caller is known to be within its limit.
 */
export function rateLimitAlongside(binding: LimiterBinding) {
  return createMiddleware<AppEnv>(async (c, next) => {
    if (c.req.method !== "GET" && c.req.method !== "HEAD") return next();
    const admission = admit(c, binding);
    admission.catch(() => undefined);
    c.set("admission", admission);
    await next();
    await admission;
  });
}

/**
 * Counts a rejected credential against the client ip (under its own key in RATE_LIMITER), so
 * guessing tokens costs the same budget as using one.
 */
export async function countFailedAuthentication(c: Context<AppEnv>): Promise<void> {
  if (!(await withinLimit(c, "RATE_LIMITER", `authfail:${clientIp(c)}`))) {
    throw rateLimited("rejected credentials from this address");
  }
}
