import type { Context } from "hono";
import { createMiddleware } from "hono/factory";
import { type AppEnv, addWarning } from "../app/env.ts";
import { ApiError } from "../app/errors.ts";
import { isRead } from "../app/router.ts";
import { clientIp } from "./client-ip.ts";

/** The period of every limiter in wrangler.toml; Retry-After is the longest a caller may wait. */
export const RATE_LIMIT_PERIOD_SECONDS = 60;
/**
 * What a rejected credential costs in AUTH_RATE_LIMITER units; a request that carries credentials
 * costs one before they are checked. With the binding's 1200 a minute that is 120 rejected
 * credentials a minute from one address (fewer alongside accepted ones), while an address with
 * many honest callers behind it may still send 1200 requests with credentials.
 */
export const REJECTED_CREDENTIAL_COST = 10;

/** The Workers Rate Limiting bindings declared in wrangler.toml. */
export type LimiterBinding = "RATE_LIMITER" | "STATS_RATE_LIMITER" | "AUTH_RATE_LIMITER";

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
    const warning = `${binding} unavailable; request allowed`;
    // A rejected credential asks the limiter several times: one warning is enough.
    if (!c.var.telemetry.warnings?.includes(warning)) addWarning(c.var.telemetry, warning);
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
    if (!isRead(c)) return next();
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
    if (!isRead(c)) return next();
    const admission = admit(c, binding);
    admission.catch(() => undefined);
    c.set("admission", admission);
    await next();
    await admission;
  });
}

const credentialsKey = (c: Context<AppEnv>) => `credentials:${clientIp(c)}`;

/**
 * Spends one unit of the client address's credential budget, before its credentials are looked
 * at. Throws the 429 once the budget is spent: from then until the limiter's window passes, every
 * request with credentials from that address is refused, the right ones included, so a guesser
 * learns nothing from the answer.
 */
export async function spendCredentialAttempt(c: Context<AppEnv>): Promise<void> {
  if (!(await withinLimit(c, "AUTH_RATE_LIMITER", credentialsKey(c)))) {
    throw rateLimited("credential attempts from this address");
  }
}

/** Charges the rest of a rejected credential's cost (REJECTED_CREDENTIAL_COST) to its address. */
export async function chargeRejectedCredentials(c: Context<AppEnv>): Promise<void> {
  const key = credentialsKey(c);
  await Promise.all(
    Array.from({ length: REJECTED_CREDENTIAL_COST - 1 }, () => withinLimit(c, "AUTH_RATE_LIMITER", key)),
  );
}
