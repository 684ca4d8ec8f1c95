/**
 * What one isolate has asked a Rate Limiting binding, key by key: how many units it sent in the
 * last two periods, and when the binding last refused the key.
 *
 * The binding counts every call from every isolate at a location; this isolate knows only its
 * own. If it sent fewer than `limit` units of a key in the last two periods, no window the binding
 * keeps (a fixed window of one period, or a sliding estimate over the current and the previous
 * one) can hold `limit` units from here, so the binding would admit one more unless other
 * isolates spent the rest. A key is therefore trusted only after the binding admitted it here
 * within the last period and refused it in none of it: a key new to this isolate, or one spent
 * elsewhere, is asked (and waited for) until its verdicts say otherwise.
 *
 * Counts are kept in buckets of a sixth of a period, so a count covers at most one bucket more
 * than two periods: it can only over-estimate, which makes the isolate ask, never admit wrongly.
 */

/** Buckets per period; a count may include up to one bucket's width more than two periods. */
const BUCKETS_PER_PERIOD = 6;
/** Keys remembered per binding; the least recently used is forgotten first. */
export const MAX_LEDGER_KEYS = 10_000;

interface KeyEntry {
  /** [bucket index, units sent in it], oldest first. */
  buckets: [number, number][];
  /** When the binding last admitted this key (epoch ms), or -Infinity. */
  admittedAt: number;
  /** When the binding last refused this key (epoch ms), or -Infinity. */
  refusedAt: number;
}

export class LimiterLedger {
  readonly #keys = new Map<string, KeyEntry>();
  readonly #periodMs: number;
  readonly #bucketMs: number;
  readonly #maxKeys: number;

  constructor(periodMs: number, maxKeys = MAX_LEDGER_KEYS) {
    this.#periodMs = periodMs;
    this.#bucketMs = periodMs / BUCKETS_PER_PERIOD;
    this.#maxKeys = maxKeys;
  }

  /**
   * Whether one more unit of `key` may be admitted before the binding answers, for a binding whose
   * limit is `limit` units a period: the binding admitted the key here within the last period,
   * refused it in none of it, and this isolate sent fewer than `limit` units of it in the last two
   * periods. A `limit` of 0 means unknown: never.
   */
  trusted(key: string, limit: number, now: number): boolean {
    if (limit <= 0) return false;
    const entry = this.#keys.get(key);
    if (entry === undefined) return false;
    if (now - entry.admittedAt >= this.#periodMs || now - entry.refusedAt < this.#periodMs) return false;
    return this.#sent(entry, now) + 1 <= limit;
  }

  /** Units of `key` this isolate sent in the last two periods (an over-estimate by one bucket at most). */
  sent(key: string, now: number): number {
    const entry = this.#keys.get(key);
    return entry === undefined ? 0 : this.#sent(entry, now);
  }

  /** One unit of `key` is being sent to the binding. */
  record(key: string, now: number): void {
    const entry = this.#touch(key);
    const index = Math.floor(now / this.#bucketMs);
    this.#prune(entry, now);
    const last = entry.buckets.at(-1);
    if (last !== undefined && last[0] === index) last[1] += 1;
    else entry.buckets.push([index, 1]);
  }

  /** The binding's verdict on one unit of `key`; a refusal makes the key wait for a period. */
  verdict(key: string, admitted: boolean, now: number): void {
    const entry = this.#touch(key);
    if (admitted) entry.admittedAt = Math.max(entry.admittedAt, now);
    else entry.refusedAt = Math.max(entry.refusedAt, now);
  }

  #sent(entry: KeyEntry, now: number): number {
    this.#prune(entry, now);
    let total = 0;
    for (const [, units] of entry.buckets) total += units;
    return total;
  }

  /** Drops buckets that lie wholly before the last two periods. */
  #prune(entry: KeyEntry, now: number): void {
    const oldest = Math.floor((now - 2 * this.#periodMs) / this.#bucketMs);
    let drop = 0;
    while (drop < entry.buckets.length && (entry.buckets[drop] as [number, number])[0] < oldest) drop += 1;
    if (drop > 0) entry.buckets.splice(0, drop);
  }

  #touch(key: string): KeyEntry {
    let entry = this.#keys.get(key);
    if (entry !== undefined) {
      this.#keys.delete(key);
    } else {
      entry = { buckets: [], admittedAt: Number.NEGATIVE_INFINITY, refusedAt: Number.NEGATIVE_INFINITY };
    }
    this.#keys.set(key, entry);
    if (this.#keys.size > this.#maxKeys) {
      const oldest = this.#keys.keys().next();
      if (!oldest.done) this.#keys.delete(oldest.value);
    }
    return entry;
  }
}
