import type { Context } from "hono";
import { createMiddleware } from "hono/factory";
import { type AppEnv, addAfterResponse, addWarning } from "../app/env.ts";
import { ApiError } from "../app/errors.ts";
import { isRead } from "../app/router.ts";
import { clientIp } from "./client-ip.ts";
import { LimiterLedger } from "./limiter-ledger.ts";
import type { RATE_LIMITER_DEFAULTS } from "./limits.ts";

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
export type LimiterBinding = keyof typeof RATE_LIMITER_DEFAULTS;

/** One ledger per binding, shared by every request this isolate serves (see limiter-ledger.ts). */
const ledgers: Record<LimiterBinding, LimiterLedger> = {
  RATE_LIMITER: new LimiterLedger(RATE_LIMIT_PERIOD_SECONDS * 1000),
  STATS_RATE_LIMITER: new LimiterLedger(RATE_LIMIT_PERIOD_SECONDS * 1000),
  AUTH_RATE_LIMITER: new LimiterLedger(RATE_LIMIT_PERIOD_SECONDS * 1000),
};

/**
 * Sends one unit of `key` (already in the ledger) to the binding and returns its verdict. A binding
 * that throws (or is not bound) lets the request through and records a warning on the request's
 * log line: an outage of the limiter must not become an outage of the proxy.
 */
async function ask(c: Context<AppEnv>, binding: LimiterBinding, key: string): Promise<boolean> {
  try {
    const outcome = await c.env[binding].limit({ key });
    ledgers[binding].verdict(key, outcome.success, Date.now());
    return outcome.success;
  } catch {
    const warning = `${binding} unavailable; request allowed`;
    // A rejected credential asks the limiter several times: one warning is enough.
    if (!c.var.telemetry.warnings?.includes(warning)) addWarning(c.var.telemetry, warning);
    return true;
  }
}

interface Spent {
  /** Whether the request may go on: the verdict itself, or `true` at once for a trusted key. */
  answer: Promise<boolean>;
  /** The binding's verdict on this unit; for an early answer, asking for it sends the unit now. */
  verdict: () => Promise<boolean>;
}

/**
 * Spends one unit of `key`. Every unit is sent to the binding, which counts for every isolate at
 * the location. For a key this isolate trusts (limiter-ledger.ts: admitted here lately, not
 * refused since, this isolate's own units below the limit as the *_LIMIT settings give it) the
 * answer is yes at once, and the unit is sent once the response has left (under `wrangler dev`
 * the binding's round trip shares the isolate's thread with the response); any other key waits
 * for its verdict. In one isolate an early yes is exactly what the binding answers; across
 * isolates, a key other isolates have spent is admitted here until its first refusal comes back
 * (for a sequential caller, one request a period), within the binding's own approximation.
 */
function spend(c: Context<AppEnv>, binding: LimiterBinding, key: string, mayTrust: boolean): Spent {
  const ledger = ledgers[binding];
  const now = Date.now();
  const limit = c.var.config.limiterLimits[binding];
  const early = mayTrust && c.env[binding] !== undefined && ledger.trusted(key, limit, now);
  ledger.record(key, now);
  if (!early) {
    const verdict = ask(c, binding, key);
    return { answer: verdict, verdict: () => verdict };
  }
  let sent: Promise<boolean> | undefined;
  const send = () => {
    sent ??= ask(c, binding, key);
    return sent;
  };
  addAfterResponse(c.var.telemetry, send);
  return { answer: Promise.resolve(true), verdict: send };
}

function rateLimited(what: string): ApiError {
  return new ApiError(
    "RATE_LIMIT_EXCEEDED",
    `Too many ${what}; retry after ${RATE_LIMIT_PERIOD_SECONDS} seconds.`,
    { retryAfter: RATE_LIMIT_PERIOD_SECONDS },
  );
}

/**
 * Asks `binding` whether the caller `callerId` may make one more request: resolves when allowed,
 * rejects with the 429 when not. One call spends one unit of the caller's budget.
 */
export function admitCaller(c: Context<AppEnv>, binding: LimiterBinding, callerId: string): Promise<void> {
  return spend(c, binding, callerId, true).answer.then((allowed) => {
    if (!allowed) throw rateLimited("requests from this caller");
  });
}

/**
 * Per-caller limit on data routes (GET and HEAD), keyed by the authenticated caller id. Runs
 * after `authenticate()` and before the handler, so a refused request never reaches Extend.
 * The data routes ask it inside `authenticate({ limiter })` instead, beside the lockout check.
 */
export function rateLimit(binding: LimiterBinding) {
  return createMiddleware<AppEnv>(async (c, next) => {
    if (!isRead(c)) return next();
    await admitCaller(c, binding, c.get("caller")?.id ?? `anon:${clientIp(c)}`);
    await next();
  });
}

const credentialsKey = (c: Context<AppEnv>) => `credentials:${clientIp(c)}`;

/** Addresses an isolate remembers as suspect; the oldest is forgotten first. */
const MAX_SUSPECT_ADDRESSES = 10_000;
const suspectUntil = new Map<string, number>();

function markSuspect(key: string): void {
  suspectUntil.delete(key);
  suspectUntil.set(key, Date.now() + RATE_LIMIT_PERIOD_SECONDS * 1000);
  if (suspectUntil.size > MAX_SUSPECT_ADDRESSES) {
    const oldest = suspectUntil.keys().next();
    if (!oldest.done) suspectUntil.delete(oldest.value);
  }
}

/**
 * Whether this isolate saw the address locked out, or one of its credentials rejected, within the
 * last limiter period. Such an address waits for its lockout verdict before its caller's budget is
 * asked (see authenticate()), so a locked-out caller is not charged for the refused request. It
 * only orders the round trips: no answer depends on it.
 */
export function isSuspect(c: Context<AppEnv>): boolean {
  const key = credentialsKey(c);
  const until = suspectUntil.get(key);
  if (until === undefined) return false;
  if (until > Date.now()) return true;
  suspectUntil.delete(key);
  return false;
}

/** Each request's lockout verdict, for its rejection to answer with (see confirmCredentialAttempt). */
const lockoutVerdicts = new WeakMap<Context<AppEnv>, () => Promise<boolean>>();

/**
 * Spends one unit of the client address's credential budget, before its credentials are looked
 * at. Throws the 429 once the budget is spent: from then until the limiter's window passes, every
 * request with credentials from that address is refused, the right ones included, so a guesser
 * learns nothing from the answer. Only an address this isolate trusts (admitted here lately, none
 * of its credentials rejected since) goes on before the verdict; a suspect one always waits.
 */
export async function spendCredentialAttempt(c: Context<AppEnv>): Promise<void> {
  const key = credentialsKey(c);
  const { answer, verdict } = spend(c, "AUTH_RATE_LIMITER", key, !isSuspect(c));
  const judged = async () => {
    const allowed = await verdict();
    if (!allowed) markSuspect(key);
    return allowed;
  };
  lockoutVerdicts.set(c, judged);
  // An early answer's verdict still marks the address when it refuses, once it comes.
  addAfterResponse(c.var.telemetry, judged);
  if (!(await answer)) {
    markSuspect(key);
    throw rateLimited("credential attempts from this address");
  }
}

/**
 * Waits for the request's own lockout verdict and throws the 429 when it was refused. Every answer
 * other than acceptance waits for it, so credentials that are not accepted get the locked-out
 * answer even when their attempt went on early.
 */
export async function confirmCredentialAttempt(c: Context<AppEnv>): Promise<void> {
  const verdict = lockoutVerdicts.get(c);
  if (verdict && !(await verdict())) throw rateLimited("credential attempts from this address");
}

/** Charges the rest of a rejected credential's cost (REJECTED_CREDENTIAL_COST) to its address. */
export async function chargeRejectedCredentials(c: Context<AppEnv>): Promise<void> {
  const key = credentialsKey(c);
  markSuspect(key);
  await confirmCredentialAttempt(c);
  await Promise.all(
    Array.from(
      { length: REJECTED_CREDENTIAL_COST - 1 },
      () => spend(c, "AUTH_RATE_LIMITER", key, false).answer,
    ),
  );
}
