import type { Context } from "hono";
import { createMiddleware } from "hono/factory";
import { type AppEnv, addWarning } from "../app/env.ts";
import { ApiError } from "../app/errors.ts";
import { isRead } from "../app/router.ts";
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
    addWarning(c.var.telemetry, `${binding} unavailable; request allowed`);
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

/**
 * Per-caller limit on data routes (GET and HEAD), keyed by the authenticated caller id. Runs
 * after `authenticate()` and before the handler, so a refused request never reaches Extend.
 */
export function rateLimit(binding: LimiterBinding) {
  return createMiddleware<AppEnv>(async (c, next) => {
    if (!isRead(c)) return next();
    const key = c.get("caller")?.id ?? `anon:${clientIp(c)}`;
    if (!(await withinLimit(c, binding, key))) throw rateLimited("requests from this caller");
    await next();
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
