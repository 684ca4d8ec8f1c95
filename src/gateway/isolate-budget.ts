import { ApiError } from "../app/errors.ts";
import { type Clock, systemClock } from "../lib/clock.ts";
import { Scheduler } from "./scheduler.ts";

/** Budgets kept per isolate; more distinct upstream accounts than this in one isolate is a misuse. */
const MAX_SCHEDULERS = 32;

/**
 * The tenant's budget refused the call before it left (paused after Extend's 429s, or booked
 * beyond the caller's wait). An ApiError, so whoever ends up holding it answers 503 with a
 * Retry-After; a /stats scan keeps the pages it has instead.
 */
export class BudgetPaused extends ApiError {
  readonly retryAfterMs: number;
  constructor(
    retryAfterMs: number,
    message = "Extend's rate limit for this organisation is exhausted; the proxy is backing off, retry later.",
  ) {
    super("UPSTREAM_RATE_LIMITED", message, { retryAfter: Math.max(1, Math.ceil(retryAfterMs / 1000)) });
    this.retryAfterMs = retryAfterMs;
  }
}

const schedulers = new Map<string, Scheduler>();

/**
 * This isolate's budget for one tenant: what calls go through when the tenant's gateway object
 * cannot be reached, so a coordinator outage still never floods Extend (each isolate then keeps
 * `UPSTREAM_MAX_RPS` on its own).
 */
export function isolateScheduler(
  tenant: string,
  maxPerSecond: number,
  clock: Clock = systemClock,
): Scheduler {
  const existing = schedulers.get(tenant);
  if (existing) {
    existing.configure(maxPerSecond);
    return existing;
  }
  if (schedulers.size >= MAX_SCHEDULERS) {
    const oldest = schedulers.keys().next().value;
    if (oldest !== undefined) schedulers.delete(oldest);
  }
  const scheduler = new Scheduler(maxPerSecond, clock);
  schedulers.set(tenant, scheduler);
  return scheduler;
}
