// The tenant's upstream budget: which call may start next, for every isolate and location at
// once (it lives in the tenant's Durable Object). Pure apart from the clock, so tests drive it.
import type { Clock } from "../lib/clock.ts";

/** Window over which the budget holds: any 1,000 ms contains at most `limit` starts (and arrivals). */
export const RATE_WINDOW_MS = 1_000;
/**
 * How much later than its predecessor a call may reach Extend and still be counted in its own
 * second there: Extend counts arrivals, and a slot taken again the instant it frees would put two
 * windows' calls into one of Extend's seconds whenever the earlier call's transit was the slower.
 */
export const ARRIVAL_GUARD_MS = 100;
/** How long a start holds its slot at least: the window, plus the guard for transit jitter. */
const SLOT_HOLD_MS = RATE_WINDOW_MS + ARRIVAL_GUARD_MS;
/**
 * The longest a tracked call may take to leave its isolate (its start to the isolate's next timer
 * turn after sending it) and still be trusted to reach Extend within the guard. An isolate that
 * ran later than this was busy, and then nothing it sees bounds when the request really left
 * before the answer's headers do: measured locally, such calls arrived up to 460 ms after that
 * timer turn, against at most 90 ms after a prompt one.
 */
export const PROMPT_DEPARTURE_MS = 20;
/** First pause after an upstream 429 without Retry-After; doubled for each further 429 in a row. */
export const BACKOFF_AFTER_429_MS = 1_000;
export const MAX_BACKOFF_AFTER_429_MS = 16_000;
/** Longest pause a Retry-After may impose; a longer one from Extend is cut to this. */
export const MAX_HONOURED_RETRY_AFTER_MS = 300_000;
/** How far ahead the scheduler plays its queue to tell a request its wait; beyond, it is this. */
export const ESTIMATE_HORIZON_MS = 60_000;

/** Interactive work (list misses) always goes before bulk work (scans, sync, refreshes). */
export type Priority = "interactive" | "bulk";

/** Highest first: every sweep over the queues visits interactive requests before bulk ones. */
const PRIORITIES = ["interactive", "bulk"] as const satisfies readonly Priority[];

export interface SlotRequest {
  priority: Priority;
  /** Who the call is for (a caller id, or the index sync): starts are shared round-robin among them. */
  caller: string;
  /** Longest this request may wait for its start; beyond that it is refused at once. */
  maxWaitMs: number;
  /**
   * The caller reports when the call left and when its answer came (`Slot`), and the slot stays
   * held until those bound the call's arrival at Extend. Untracked starts hold for the fixed
   * window and guard.
   */
  tracked?: boolean;
}

/**
 * A granted start. A tracked start frees its slot one window after the latest moment the call can
 * have reached Extend: its departure plus the guard when it left promptly, else its answer. The
 * caller must end every tracked slot (a call never sent ends when it is given up).
 */
export interface Slot {
  /** The isolate ran again at `at` after sending the call (its first timer turn after fetch()). */
  left(at: number): void;
  /** The call's response headers, its failure, or the decision not to send it, came at `at`. */
  ended(at: number): void;
}

const UNTRACKED: Slot = { left: () => undefined, ended: () => undefined };

/** The call could not start within its wait: `retryAfterMs` is when a slot (or the pause's end) is due. */
export class SlotRefused extends Error {
  readonly retryAfterMs: number;
  readonly reason: "paused" | "busy";
  constructor(reason: "paused" | "busy", retryAfterMs: number) {
    super(reason === "paused" ? "the tenant is paused after a 429" : "no slot within the wait");
    this.name = "SlotRefused";
    this.reason = reason;
    this.retryAfterMs = Math.max(1, Math.ceil(retryAfterMs));
  }
}

/** A queued request; its priority and wait can grow while it waits (a shared load gained a joiner). */
export interface Ticket {
  readonly started: Promise<Slot>;
  /** Raises priority and extends the wait to at least `maxWaitMs` from now. */
  promote(priority: Priority, maxWaitMs: number): void;
}

interface Waiting {
  caller: string;
  priority: Priority;
  deadline: number;
  tracked: boolean;
  resolve: (slot: Slot) => void;
  reject: (error: SlotRefused) => void;
  done: boolean;
}

interface Start {
  at: number;
  caller: string;
  /** When the slot frees; undefined while a tracked call's arrival is not bounded yet. */
  freeAt: number | undefined;
  leftAt?: number;
}

export interface SchedulerStats {
  limit: number;
  maxPerSecond: number;
  queued: { interactive: number; bulk: number };
  startsInWindow: number;
  pausedForMs: number;
}

/**
 * A sliding-window log with two priority classes and round-robin among callers within each. At
 * most `limit` calls start in any window, and a tracked start holds its slot until its call's
 * arrival at Extend is bounded, so that no more arrive in any window there either. One caller
 * may take at most `limit − 1` starts of a window while the limit is above one, so no single
 * caller can take the whole budget. A 429 halves the limit and pauses every caller once
 * (Retry-After honoured, doubling while 429s keep coming); each window with a success earns one
 * call per second back. A request that cannot start within its wait is refused at once with the
 * real time to its slot, instead of waiting that out.
 */
export class Scheduler {
  private maxPerSecond: number;
  private limit: number;
  private readonly clock: Clock;
  private starts: Start[] = [];
  private pausedUntil = 0;
  private wakeAt = Number.POSITIVE_INFINITY;
  private streak = 0;
  private raisedAt = 0;
  private readonly queues: Record<Priority, Map<string, Waiting[]>> = {
    interactive: new Map(),
    bulk: new Map(),
  };

  constructor(maxPerSecond: number, clock: Clock) {
    this.maxPerSecond = maxPerSecond;
    this.limit = maxPerSecond;
    this.clock = clock;
  }

  /** Follows a changed UPSTREAM_MAX_RPS without forgetting the window or a pause. */
  configure(maxPerSecond: number): void {
    if (maxPerSecond === this.maxPerSecond) return;
    // A rate lowered after a 429 climbs back one call per window; a full one follows the setting.
    const lowered = this.limit < this.maxPerSecond;
    this.maxPerSecond = maxPerSecond;
    this.limit = lowered ? Math.min(this.limit, maxPerSecond) : maxPerSecond;
    if (this.limit < 1) this.limit = 1;
    this.pump();
  }

  stats(): SchedulerStats {
    const now = this.clock.now();
    this.prune(now);
    return {
      limit: this.limit,
      maxPerSecond: this.maxPerSecond,
      queued: { interactive: this.count("interactive"), bulk: this.count("bulk") },
      startsInWindow: this.starts.length,
      pausedForMs: Math.max(0, this.pausedUntil - now),
    };
  }

  /** Milliseconds until `caller`'s request of `priority` queued now could start (at least 1 s). */
  estimateMs(priority: Priority, caller: string): number {
    const now = this.clock.now();
    return Math.max(this.estimate(priority, caller, now), this.pausedUntil - now, RATE_WINDOW_MS);
  }

  /**
   * Milliseconds until `caller`'s request of `priority`, queued now, would start if nothing else
   * arrived and every start held its slot for the window and guard (as an untracked one does).
   */
  waitMs(priority: Priority, caller: string): number {
    return this.estimate(priority, caller, this.clock.now());
  }

  /** The refusal `caller`'s request would get now (it cannot start within its wait), or undefined. */
  check(priority: Priority, caller: string, maxWaitMs: number): SlotRefused | undefined {
    return this.refusalFor(priority, caller, maxWaitMs, this.clock.now());
  }

  /** Queues a request for a start; `started` resolves when it may call, or rejects with SlotRefused. */
  enqueue(request: SlotRequest): Ticket {
    const now = this.clock.now();
    let waiting: Waiting | undefined;
    const started = new Promise<Slot>((resolve, reject) => {
      const refusal = this.refusalFor(request.priority, request.caller, request.maxWaitMs, now);
      if (refusal) {
        reject(refusal);
        return;
      }
      waiting = {
        caller: request.caller,
        priority: request.priority,
        deadline: now + request.maxWaitMs,
        tracked: request.tracked === true,
        resolve,
        reject,
        done: false,
      };
      this.push(waiting);
    });
    // The caller may only look at `started` later; an early refusal must not count as unhandled.
    started.catch(() => undefined);
    this.pump();
    if (waiting) this.watch(waiting);
    return {
      started,
      promote: (priority, maxWaitMs) => {
        const w = waiting;
        if (!w || w.done) return;
        w.deadline = Math.max(w.deadline, this.clock.now() + maxWaitMs);
        if (priority === "interactive" && w.priority === "bulk") {
          this.remove(w);
          w.priority = "interactive";
          this.push(w);
        }
        this.pump();
      },
    };
  }

  /**
   * Waits for an untracked start; rejects with SlotRefused when it cannot come within `maxWaitMs`.
   * A tracked start comes from `enqueue`, whose ticket hands over the Slot to report to.
   */
  acquire(request: Omit<SlotRequest, "tracked">): Promise<void> {
    return this.enqueue(request).started.then(() => undefined);
  }

  /** Feeds back what Extend answered: a 429 pauses and slows the tenant, a success recovers. */
  observe(status: number | "timeout" | "network-error", retryAfterMs?: number): void {
    const now = this.clock.now();
    if (status === 429) {
      this.limit = Math.max(1, Math.floor(this.limit / 2));
      this.raisedAt = now;
      // The other calls of one burst report the same overload: the pause escalates once.
      if (this.pausedUntil > now) return;
      this.streak += 1;
      const backoff = Math.min(MAX_BACKOFF_AFTER_429_MS, BACKOFF_AFTER_429_MS * 2 ** (this.streak - 1));
      this.pausedUntil = now + Math.max(backoff, Math.min(retryAfterMs ?? 0, MAX_HONOURED_RETRY_AFTER_MS));
      this.refuseThoseOutwaited(now);
      this.pump();
      return;
    }
    if (typeof status === "number" && status < 500) {
      this.streak = 0;
      // Additive increase once per window, not per success: a window of successes at the lowered
      // rate is the evidence that one more call fits.
      if (this.limit < this.maxPerSecond && now - this.raisedAt >= RATE_WINDOW_MS) {
        this.limit += 1;
        this.raisedAt = now;
        this.pump();
      }
    }
  }

  private count(priority: Priority): number {
    let n = 0;
    for (const list of this.queues[priority].values()) n += list.length;
    return n;
  }

  private push(w: Waiting): void {
    const queue = this.queues[w.priority];
    const list = queue.get(w.caller);
    if (list) list.push(w);
    else queue.set(w.caller, [w]);
  }

  private remove(w: Waiting): void {
    const queue = this.queues[w.priority];
    const list = queue.get(w.caller);
    if (!list) return;
    const index = list.indexOf(w);
    if (index !== -1) list.splice(index, 1);
    if (list.length === 0) queue.delete(w.caller);
  }

  private prune(now: number): void {
    if (this.starts.some((s) => s.freeAt !== undefined && s.freeAt <= now)) {
      this.starts = this.starts.filter((s) => s.freeAt === undefined || s.freeAt > now);
    }
  }

  /** The earliest a held slot can free: its time once known, else as if its call ended now. */
  private freesBy(start: Start, now: number): number {
    return start.freeAt ?? Math.max(start.at + SLOT_HOLD_MS, now + RATE_WINDOW_MS);
  }

  /** A tracked start's report came in: the slot frees once the call's arrival is bounded. */
  private report(start: Start, kind: "left" | "ended", at: number): void {
    if (start.freeAt !== undefined) return;
    if (kind === "left") {
      if (start.leftAt !== undefined) return;
      start.leftAt = at;
      if (at - start.at > PROMPT_DEPARTURE_MS) return;
      start.freeAt = Math.max(start.at, at) + SLOT_HOLD_MS;
    } else {
      // Extend saw the call before it answered, however late the call left.
      start.freeAt = Math.max(start.at + SLOT_HOLD_MS, at + RATE_WINDOW_MS);
    }
    this.pump();
  }

  private grant(w: Waiting, now: number): void {
    w.done = true;
    const start: Start = { at: now, caller: w.caller, freeAt: w.tracked ? undefined : now + SLOT_HOLD_MS };
    this.starts.push(start);
    w.resolve(
      w.tracked
        ? {
            left: (at) => this.report(start, "left", at),
            ended: (at) => this.report(start, "ended", at),
          }
        : UNTRACKED,
    );
  }

  /** How many of the window's starts `caller` holds. */
  private heldBy(caller: string): number {
    return this.starts.reduce((n, s) => (s.caller === caller ? n + 1 : n), 0);
  }

  /** How many of a window's starts one caller may hold: all of them only while the limit is one. */
  private perCallerCap(): number {
    return this.limit > 1 ? this.limit - 1 : Number.POSITIVE_INFINITY;
  }

  /**
   * Milliseconds until a new request of `caller` at `priority` could start: the queue played
   * forward as `pump` would serve it (the pause, interactive first, callers in turn, none over
   * its share, a waiter gone at its deadline), each start holding its slot for the window and
   * guard. Beyond ESTIMATE_HORIZON_MS it answers that horizon: the request is refused anyway.
   */
  private estimate(priority: Priority, caller: string, now: number): number {
    this.prune(now);
    const cap = this.perCallerCap();
    // The common case, a quiet tenant: nothing queued, a slot free, the caller within its share.
    if (
      this.pausedUntil <= now &&
      this.starts.length < this.limit &&
      this.queues.interactive.size + this.queues.bulk.size === 0 &&
      this.heldBy(caller) < cap
    ) {
      return 0;
    }
    const held = new Map<string, number>();
    const slots: { frees: number; caller: string }[] = [];
    for (const s of this.starts) {
      slots.push({ frees: this.freesBy(s, now), caller: s.caller });
      held.set(s.caller, (held.get(s.caller) ?? 0) + 1);
    }
    const mine: Queued = { caller, deadline: Number.POSITIVE_INFINITY };
    const queues = {} as Queues<Queued>;
    for (const p of PRIORITIES) {
      queues[p] = new Map([...this.queues[p]].map(([c, list]) => [c, [...list]]));
    }
    const own = queues[priority].get(caller);
    if (own) own.push(mine);
    else queues[priority].set(caller, [mine]);
    let at = Math.max(now, this.pausedUntil);
    for (;;) {
      for (let i = slots.length - 1; i >= 0; i--) {
        const slot = slots[i] as (typeof slots)[number];
        if (slot.frees > at) continue;
        slots.splice(i, 1);
        held.set(slot.caller, (held.get(slot.caller) ?? 1) - 1);
      }
      while (slots.length < this.limit) {
        // A waiter whose deadline passed before `at` was refused then: it takes no slot.
        const w = takeNext(queues, (c) => held.get(c) ?? 0, cap, at);
        if (!w) break;
        if (w === mine) return at - now;
        slots.push({ frees: at + SLOT_HOLD_MS, caller: w.caller });
        held.set(w.caller, (held.get(w.caller) ?? 0) + 1);
      }
      // Not served at `at`: every slot is held (or its caller's share is), so one frees later.
      let next = Number.POSITIVE_INFINITY;
      for (const slot of slots) next = Math.min(next, slot.frees);
      if (!(next - now <= ESTIMATE_HORIZON_MS)) return ESTIMATE_HORIZON_MS;
      at = next;
    }
  }

  private refusalFor(
    priority: Priority,
    caller: string,
    maxWaitMs: number,
    now: number,
  ): SlotRefused | undefined {
    const paused = this.pausedUntil - now;
    if (paused > maxWaitMs) return new SlotRefused("paused", paused);
    const wait = this.estimate(priority, caller, now);
    if (wait > maxWaitMs) return new SlotRefused(paused > 0 ? "paused" : "busy", wait);
    return undefined;
  }

  /** A pause that began while requests waited: those that cannot outlast it are told at once. */
  private refuseThoseOutwaited(now: number): void {
    for (const w of this.queued()) {
      if (w.deadline < this.pausedUntil) this.refuse(w, new SlotRefused("paused", this.pausedUntil - now));
    }
  }

  /** Every waiting request, interactive first: a copy, so a sweep may finish what it visits. */
  private queued(): Waiting[] {
    const all: Waiting[] = [];
    for (const priority of PRIORITIES) for (const list of this.queues[priority].values()) all.push(...list);
    return all;
  }

  private refuse(w: Waiting, refusal: SlotRefused): void {
    if (w.done) return;
    w.done = true;
    this.remove(w);
    w.reject(refusal);
  }

  /** The next request to start: interactive first, callers in turn, none over its share. */
  private next(): Waiting | undefined {
    return takeNext(this.queues, (caller) => this.heldBy(caller), this.perCallerCap());
  }

  private pump(): void {
    const now = this.clock.now();
    if (this.pausedUntil <= now) {
      this.prune(now);
      while (this.starts.length < this.limit) {
        const w = this.next();
        if (!w) break;
        this.grant(w, now);
      }
    }
    // Whoever could not start by its deadline is told now, with the time its slot is due.
    for (const w of this.queued()) {
      if (w.deadline <= now)
        this.refuse(w, new SlotRefused("busy", this.estimate(w.priority, w.caller, now) || 1));
    }
    if (this.pausedUntil > now) {
      this.wake(this.pausedUntil);
      return;
    }
    if (this.count("interactive") + this.count("bulk") === 0) return;
    this.wake(Math.max(this.nextEventAt(now, Number.POSITIVE_INFINITY), now + 1));
  }

  /** When the queue may next move: the pause's end, else the first known slot to free or `bound`. */
  private nextEventAt(now: number, bound: number): number {
    if (this.pausedUntil > now) return Math.min(bound, this.pausedUntil);
    // A slot whose call is not yet bounded frees on its report, which pumps; none to wait for here.
    let at = this.starts.length === 0 ? now + 1 : bound;
    for (const s of this.starts) if (s.freeAt !== undefined) at = Math.min(at, s.freeAt);
    for (const w of this.queued()) at = Math.min(at, w.deadline);
    return at;
  }

  /** One timer for the whole queue; a due time already past means its timer was lost. */
  private wake(at: number): void {
    if (at >= this.wakeAt && this.wakeAt > this.clock.now()) return;
    this.wakeAt = at;
    this.clock.sleep(Math.max(0, at - this.clock.now())).then(() => {
      if (this.wakeAt === at) this.wakeAt = Number.POSITIVE_INFINITY;
      this.pump();
    });
  }

  /**
   * A waiting request also keeps a timer of its own until it starts or is refused. A timer
   * belongs to the request that set it, and workerd drops it when that request ends; an isolate's
   * direct budget serves every request there, so the queue's one timer may have gone with a
   * request that no longer waits.
   */
  private watch(w: Waiting): void {
    if (w.done) return;
    const now = this.clock.now();
    this.clock.sleep(Math.max(1, this.nextEventAt(now, w.deadline) - now)).then(() => {
      this.pump();
      this.watch(w);
    });
  }
}

/** What choosing the next start needs of a queued request. */
interface Queued {
  caller: string;
  deadline: number;
}

type Queues<T extends Queued> = Record<Priority, Map<string, T[]>>;

/**
 * Takes the next request to start out of `queues`: interactive first, callers in turn (the one
 * served goes to the back of its class), none holding `cap` starts already. The scheduler's
 * `pump` and its estimate share it, so the estimate plays the queue as it will really be served.
 * The estimate's copy also drops the requests whose deadline is before `expiredBefore`.
 */
function takeNext<T extends Queued>(
  queues: Queues<T>,
  held: (caller: string) => number,
  cap: number,
  expiredBefore = Number.NEGATIVE_INFINITY,
): T | undefined {
  for (const priority of PRIORITIES) {
    const queue = queues[priority];
    for (const [caller, list] of queue) {
      while (list.length > 0 && (list[0] as T).deadline < expiredBefore) list.shift();
      if (list.length === 0) {
        queue.delete(caller);
        continue;
      }
      if (held(caller) >= cap) continue;
      const first = list[0];
      if (!first) continue;
      queue.delete(caller);
      if (list.length > 1) queue.set(caller, list);
      list.shift();
      return first;
    }
  }
  return undefined;
}
