import { ApiError } from "../app/errors.ts";
import { type Clock, systemClock } from "../lib/clock.ts";

/** Window over which `UPSTREAM_MAX_RPS` is enforced: any 1,000 ms holds at most that many calls. */
export const RATE_WINDOW_MS = 1_000;
/** First pause after an upstream 429; doubled for each further 429 in a row. */
export const BACKOFF_AFTER_429_MS = 1_000;
export const MAX_BACKOFF_AFTER_429_MS = 16_000;
/**
 * Longest a /stats request sits out a 429 pause before it starts a page. A longer pause ends
 * the request at once (a 503 with Retry-After, or the pages read so far with a resume token)
 * instead of holding the caller's connection open doing nothing.
 */
export const MAX_PAUSE_WAIT_MS = 5_000;
/** Upstream connections one /stats request keeps open at once (the Workers per-request cap). */
export const MAX_CONCURRENT_PAGES = 6;
/** Budgets kept per isolate; more distinct upstream accounts than this in one isolate is a misuse. */
const MAX_BUDGETS = 32;

/**
 * The budget is paused (Extend answered 429) for longer than the caller is willing to wait.
 * An ApiError, so whoever ends up holding it answers 503 with a Retry-After.
 */
export class BudgetPaused extends ApiError {
  readonly retryAfterMs: number;
  constructor(retryAfterMs: number) {
    super(
      "UPSTREAM_RATE_LIMITED",
      "Extend's rate limit for this organisation is exhausted; the proxy is backing off, retry later.",
      { retryAfter: Math.max(1, Math.ceil(retryAfterMs / 1000)) },
    );
    this.retryAfterMs = retryAfterMs;
  }
}

/**
 * Upstream calls per second, shared by every walk of every /stats scan in this isolate that
 * talks to the same Extend account. A sliding-window log (not a token bucket, whose refills let
 * a burst plus a second's worth through in one window) so no 1-second window ever holds more
 * than `maxPerSecond` calls. A 429 halves the rate and pauses all callers, doubling the pause
 * while 429s keep coming; each success earns one call per second back. 429s that arrive while
 * a pause is already running (the other calls of the same burst) halve the rate but do not
 * lengthen the pause.
 */
export class RateBudget {
  readonly maxPerSecond: number;
  private readonly clock: Clock;
  private starts: number[] = [];
  private limit: number;
  private pausedUntil = 0;
  private streak = 0;
  private queue: Promise<void> = Promise.resolve();

  constructor(maxPerSecond: number, clock: Clock = systemClock) {
    this.maxPerSecond = maxPerSecond;
    this.limit = maxPerSecond;
    this.clock = clock;
  }

  /** Current calls per second (lower than the maximum while recovering from a 429). */
  get currentLimit(): number {
    return this.limit;
  }

  /**
   * Waits, first come first served, until one more call fits the budget, and records it.
   * Rejects with `BudgetPaused` rather than sit out a 429 pause longer than `maxPauseWaitMs`.
   */
  acquire(signal?: AbortSignal, maxPauseWaitMs = Number.POSITIVE_INFINITY): Promise<void> {
    const turn = this.queue.then(() => this.waitForSlot(signal, maxPauseWaitMs));
    this.queue = turn.then(
      () => undefined,
      () => undefined,
    );
    return turn;
  }

  /** Feeds an upstream answer back: 429 backs off, anything else that Extend answered recovers. */
  observe(status: number | "timeout" | "network-error"): void {
    const now = this.clock.now();
    if (status === 429) {
      // Each refusal says the rate was too high: halve it. But the calls of one burst that were
      // already in flight when the pause began report the same overload: it escalates once.
      this.limit = Math.max(1, Math.floor(this.limit / 2));
      if (this.pausedUntil > now) return;
      this.streak += 1;
      const pause = Math.min(MAX_BACKOFF_AFTER_429_MS, BACKOFF_AFTER_429_MS * 2 ** (this.streak - 1));
      this.pausedUntil = now + pause;
      return;
    }
    if (typeof status === "number" && status < 500) {
      this.streak = 0;
      this.limit = Math.min(this.maxPerSecond, this.limit + 1);
    }
  }

  private prune(now: number): void {
    const from = this.starts.findIndex((t) => t > now - RATE_WINDOW_MS);
    this.starts = from === -1 ? [] : this.starts.slice(from);
  }

  private async waitForSlot(signal: AbortSignal | undefined, maxPauseWaitMs: number): Promise<void> {
    for (;;) {
      signal?.throwIfAborted();
      const now = this.clock.now();
      if (this.pausedUntil > now) {
        if (this.pausedUntil - now > maxPauseWaitMs) throw new BudgetPaused(this.pausedUntil - now);
        await this.clock.sleep(this.pausedUntil - now);
        continue;
      }
      this.prune(now);
      if (this.starts.length < this.limit) {
        this.starts.push(now);
        return;
      }
      const blocking = this.starts[this.starts.length - this.limit] ?? now;
      await this.clock.sleep(Math.max(1, blocking + RATE_WINDOW_MS - now));
    }
  }
}

const budgets = new Map<string, RateBudget>();

/**
 * The isolate's budget for one upstream account (origin, workspace, key fingerprint) and rate,
 * so concurrent scans share it instead of each spending the whole rate.
 */
export function sharedBudget(account: string, maxPerSecond: number, clock: Clock = systemClock): RateBudget {
  const key = `${account}|${maxPerSecond}`;
  const existing = budgets.get(key);
  if (existing) return existing;
  if (budgets.size >= MAX_BUDGETS) {
    const oldest = budgets.keys().next().value;
    if (oldest !== undefined) budgets.delete(oldest);
  }
  const budget = new RateBudget(maxPerSecond, clock);
  budgets.set(key, budget);
  return budget;
}
