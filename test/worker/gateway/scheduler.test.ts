import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { busiestWindow } from "../../../fake/windows.ts";
import {
  ARRIVAL_GUARD_MS,
  MAX_HONOURED_RETRY_AFTER_MS,
  PROMPT_DEPARTURE_MS,
  type Priority,
  RATE_WINDOW_MS,
  Scheduler,
  type SlotRefused,
} from "../../../src/gateway/scheduler.ts";
import type { Clock } from "../../../src/lib/clock.ts";

/** A start frees its slot one window and the arrival guard after it. */
const HOLD = RATE_WINDOW_MS + ARRIVAL_GUARD_MS;

/**
 * A clock whose time only moves when the test says so; sleepers wake when it passes their time.
 * The scheduler's waits become exact, and nothing depends on the machine's speed.
 */
function manualClock(): Clock & { advance(ms: number): Promise<void>; drop(): void; time: number } {
  let sleepers: { at: number; wake: () => void }[] = [];
  const clock = {
    time: 1_000_000,
    now: () => clock.time,
    /** The request that set the pending timers ended: workerd never fires them. */
    drop() {
      sleepers = [];
    },
    sleep: (ms: number) =>
      new Promise<void>((resolve) => {
        sleepers.push({ at: clock.time + ms, wake: resolve });
      }),
    async advance(ms: number) {
      const until = clock.time + ms;
      for (;;) {
        await flush();
        const due = sleepers.filter((s) => s.at <= until).sort((a, b) => a.at - b.at)[0];
        if (!due) break;
        clock.time = Math.max(clock.time, due.at);
        sleepers = sleepers.filter((s) => s !== due);
        due.wake();
      }
      clock.time = until;
      await flush();
    },
  };
  return clock;
}

async function flush(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}

/** Starts `n` requests and records when each started, or that it was refused. */
function track(
  scheduler: Scheduler,
  clock: Clock,
  requests: { caller: string; priority?: Priority; maxWaitMs?: number }[],
) {
  const starts: { caller: string; at: number; index: number }[] = [];
  const refused: { index: number; error: SlotRefused }[] = [];
  requests.forEach((r, index) => {
    scheduler
      .acquire({ caller: r.caller, priority: r.priority ?? "interactive", maxWaitMs: r.maxWaitMs ?? 60_000 })
      .then(
        () => starts.push({ caller: r.caller, at: clock.now(), index }),
        (error: SlotRefused) => refused.push({ index, error }),
      );
  });
  return { starts, refused };
}

/** When a tracked call's isolate ran again after sending it, and when its answer came, after its start. */
interface Course {
  leftAfter: number;
  endedAfter: number;
}

/**
 * Tracked starts whose calls report their departure and their answer as `courses` says; records
 * each start's time. The slot hold follows the reports, so the starts depend on them.
 */
function trackReported(scheduler: Scheduler, clock: Clock, courses: Course[], callers = 3) {
  const starts: { at: number; index: number }[] = [];
  courses.forEach((course, index) => {
    scheduler
      .enqueue({ caller: `c${index % callers}`, priority: "bulk", maxWaitMs: 600_000, tracked: true })
      .started.then((slot) => {
        starts.push({ at: clock.now(), index });
        clock.sleep(course.leftAfter).then(() => slot.left(clock.now()));
        clock.sleep(course.endedAfter).then(() => slot.ended(clock.now()));
      });
  });
  return starts;
}

describe("the tenant scheduler (controllable clock)", () => {
  it("never lets more than the limit start in any second, whatever the mix of callers and priorities", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 10 }),
        fc.array(
          fc.record({
            caller: fc.constantFrom("a", "b", "c", "d"),
            priority: fc.constantFrom("interactive", "bulk"),
          }),
          { minLength: 1, maxLength: 40 },
        ),
        async (rps, requests) => {
          const clock = manualClock();
          const scheduler = new Scheduler(rps, clock);
          const { starts, refused } = track(
            scheduler,
            clock,
            requests as { caller: string; priority: Priority }[],
          );
          await clock.advance(60_000);
          expect(refused).toEqual([]);
          expect(starts).toHaveLength(requests.length);
          expect(busiestWindow(starts.map((s) => s.at))).toBeLessThanOrEqual(rps);
        },
      ),
      { numRuns: 60 },
    );
  });

  it("keeps the limit in any second as Extend counts arrivals, each call late by up to the guard", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 10 }),
        fc.array(fc.integer({ min: 0, max: ARRIVAL_GUARD_MS }), { minLength: 1, maxLength: 40 }),
        async (rps, transit) => {
          const clock = manualClock();
          const scheduler = new Scheduler(rps, clock);
          const { starts } = track(
            scheduler,
            clock,
            transit.map((_, i) => ({ caller: `c${i % 3}` })),
          );
          await clock.advance(120_000);
          expect(starts).toHaveLength(transit.length);
          const arrivals = starts.map((s) => s.at + (transit[s.index] ?? 0));
          expect(busiestWindow(arrivals)).toBeLessThanOrEqual(rps);
        },
      ),
      { numRuns: 60 },
    );
  });

  it("keeps the limit at Extend's arrivals when calls leave their isolate late, by up to seconds", async () => {
    // A call that left promptly reaches Extend within the guard of leaving (the one thing taken
    // on trust); one that left late may reach it any time before its answer.
    const course = fc
      .record({
        leftAfter: fc.oneof(
          fc.integer({ min: 0, max: PROMPT_DEPARTURE_MS }),
          fc.integer({ min: 0, max: 3_000 }),
        ),
        transit: fc.integer({ min: 0, max: 3_000 }),
        answer: fc.integer({ min: 0, max: 1_500 }),
      })
      .map(({ leftAfter, transit, answer }) => {
        const arrivalAfter =
          leftAfter <= PROMPT_DEPARTURE_MS ? leftAfter + Math.min(transit, ARRIVAL_GUARD_MS) : transit;
        return { leftAfter, arrivalAfter, endedAfter: arrivalAfter + answer };
      });
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 10 }),
        fc.array(course, { minLength: 1, maxLength: 40 }),
        async (rps, courses) => {
          const clock = manualClock();
          const scheduler = new Scheduler(rps, clock);
          const starts = trackReported(scheduler, clock, courses);
          await clock.advance(600_000);
          expect(starts).toHaveLength(courses.length);
          const arrivals = starts.map((s) => s.at + (courses[s.index]?.arrivalAfter ?? 0));
          expect(busiestWindow(arrivals)).toBeLessThanOrEqual(rps);
        },
      ),
      { numRuns: 100 },
    );
  });

  it("keeps the full rate for calls that leave promptly, however slow their answers", async () => {
    const clock = manualClock();
    const scheduler = new Scheduler(4, clock);
    const starts = trackReported(
      scheduler,
      clock,
      Array.from({ length: 12 }, () => ({ leftAfter: 2, endedAfter: 600 })),
      12,
    );
    await clock.advance(10_000);
    const offsets = starts.map((s) => s.at - 1_000_000);
    const round = HOLD + 2;
    expect(offsets).toEqual([
      0,
      0,
      0,
      0,
      round,
      round,
      round,
      round,
      2 * round,
      2 * round,
      2 * round,
      2 * round,
    ]);
  });

  it("holds the slot of a call that left late until a window after its answer", async () => {
    const clock = manualClock();
    const scheduler = new Scheduler(1, clock);
    const late = PROMPT_DEPARTURE_MS + 1;
    const starts = trackReported(scheduler, clock, [
      { leftAfter: late, endedAfter: 700 },
      { leftAfter: 0, endedAfter: 0 },
    ]);
    await clock.advance(1_699);
    expect(starts).toHaveLength(1);
    // Meanwhile a newcomer is told the time to the earliest the slot can free, not a fixed hold.
    const waiting = scheduler.check("interactive", "newcomer", 0);
    expect(waiting?.retryAfterMs).toBe(1);
    await clock.advance(1);
    expect(starts.map((s) => s.at - 1_000_000)).toEqual([0, 700 + RATE_WINDOW_MS]);
  });

  it("frees a tracked slot whose call was never sent like an untracked one", async () => {
    const clock = manualClock();
    const scheduler = new Scheduler(1, clock);
    const starts: number[] = [];
    for (let i = 0; i < 2; i++) {
      scheduler
        .enqueue({ caller: `c${i}`, priority: "interactive", maxWaitMs: 10_000, tracked: true })
        .started.then((slot) => {
          starts.push(clock.now() - 1_000_000);
          slot.ended(clock.now());
        });
    }
    await clock.advance(5_000);
    expect(starts).toEqual([0, HOLD]);
  });

  it("starts distinct callers at the full rate, a slot again as soon as it frees", async () => {
    const clock = manualClock();
    const scheduler = new Scheduler(4, clock);
    const { starts } = track(
      scheduler,
      clock,
      Array.from({ length: 12 }, (_, i) => ({ caller: `c${i}` })),
    );
    await clock.advance(10_000);
    const offsets = starts.map((s) => s.at - 1_000_000);
    expect(offsets).toEqual([0, 0, 0, 0, HOLD, HOLD, HOLD, HOLD, 2 * HOLD, 2 * HOLD, 2 * HOLD, 2 * HOLD]);
  });

  it("never gives one caller the whole budget: another caller finds a slot at once", async () => {
    const clock = manualClock();
    const scheduler = new Scheduler(4, clock);
    const greedy = track(
      scheduler,
      clock,
      Array.from({ length: 24 }, () => ({ caller: "greedy" })),
    );
    await flush();
    expect(greedy.starts).toHaveLength(3);
    const other = track(scheduler, clock, [{ caller: "other" }]);
    await flush();
    expect(other.starts).toEqual([{ caller: "other", at: clock.now(), index: 0 }]);
  });

  it("serves interactive work before bulk work that queued earlier", async () => {
    const clock = manualClock();
    const scheduler = new Scheduler(2, clock);
    const bulk = track(
      scheduler,
      clock,
      Array.from({ length: 10 }, (_, i) => ({ caller: `scan${i % 2}`, priority: "bulk" as const })),
    );
    await flush();
    expect(bulk.starts).toHaveLength(2);
    const list = track(scheduler, clock, [{ caller: "reader" }]);
    await clock.advance(HOLD);
    // The next slot after the window went to the list request, not to the bulk queue.
    expect(list.starts[0]?.at).toBe(1_000_000 + HOLD);
    expect(bulk.starts.filter((s) => s.at === 1_000_000 + HOLD)).toHaveLength(1);
  });

  it("refuses at once, with the real time to the slot, a request that could not start within its wait", async () => {
    const clock = manualClock();
    const scheduler = new Scheduler(2, clock);
    track(
      scheduler,
      clock,
      Array.from({ length: 6 }, (_, i) => ({ caller: `c${i}` })),
    );
    await flush();
    const late = track(scheduler, clock, [{ caller: "late", maxWaitMs: 1500 }]);
    await flush();
    // Two start now, two a slot's hold later, two after another: a seventh could start after
    // three holds, past its 1.5 s wait.
    expect(late.refused).toHaveLength(1);
    expect(late.refused[0]?.error.retryAfterMs).toBe(3 * HOLD);
    expect(clock.now()).toBe(1_000_000);
  });

  it("refuses a request only when its own turn is past its wait: callers take turns, none over its share", async () => {
    const clock = manualClock();
    const scheduler = new Scheduler(2, clock);
    // One reader's six list misses may take one start a window (its share at 2 a second), and the
    // sync's four bulk calls take turns with any other bulk caller for the rest.
    track(
      scheduler,
      clock,
      Array.from({ length: 6 }, () => ({ caller: "reader" })),
    );
    track(
      scheduler,
      clock,
      Array.from({ length: 4 }, () => ({ caller: "sync", priority: "bulk" as const })),
    );
    await flush();
    const scan = track(scheduler, clock, [{ caller: "scan", priority: "bulk", maxWaitMs: 5_000 }]);
    await clock.advance(10_000);
    // Now: the reader and the sync; after a hold: the reader and the sync again (it queued first);
    // after two: the reader and the scan.
    expect(scan.refused).toEqual([]);
    expect(scan.starts[0]?.at).toBe(1_000_000 + 2 * HOLD);
  });

  it("foretells exactly when a request queued now would start, for any queue of untracked work", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 6 }),
        fc.array(
          fc.record({
            caller: fc.constantFrom("a", "b", "c", "d"),
            priority: fc.constantFrom("interactive", "bulk"),
            maxWaitMs: fc.integer({ min: 0, max: 8_000 }),
          }),
          { maxLength: 30 },
        ),
        fc.record({
          caller: fc.constantFrom("a", "b", "e"),
          priority: fc.constantFrom("interactive", "bulk"),
        }),
        async (rps, queued, asked) => {
          const clock = manualClock();
          const scheduler = new Scheduler(rps, clock);
          track(scheduler, clock, queued as { caller: string; priority: Priority; maxWaitMs: number }[]);
          await flush();
          const foretold = scheduler.waitMs(asked.priority as Priority, asked.caller);
          const mine = track(scheduler, clock, [{ ...(asked as { caller: string; priority: Priority }) }]);
          await clock.advance(120_000);
          expect(mine.starts[0]?.at).toBe(1_000_000 + foretold);
        },
      ),
      { numRuns: 200 },
    );
  });

  it("pauses every caller once for a burst of 429s, halving the rate, then recovers", async () => {
    const clock = manualClock();
    const scheduler = new Scheduler(16, clock);
    for (let i = 0; i < 3; i++) scheduler.observe(429);
    expect(scheduler.stats()).toMatchObject({ limit: 2, pausedForMs: 1000 });
    const { starts } = track(scheduler, clock, [{ caller: "a" }, { caller: "b" }]);
    await clock.advance(999);
    expect(starts).toHaveLength(0);
    await clock.advance(1);
    expect(starts).toHaveLength(2);
    // One call per second back for each window with a success, not one per success.
    for (let i = 0; i < 20; i++) scheduler.observe(200);
    expect(scheduler.stats().limit).toBe(3);
    for (let second = 0; second < 13; second++) {
      await clock.advance(1000);
      scheduler.observe(200);
      scheduler.observe(200);
    }
    expect(scheduler.stats().limit).toBe(16);
    // A 5xx or a timeout is no rate signal.
    scheduler.observe(503);
    scheduler.observe("timeout");
    expect(scheduler.stats()).toMatchObject({ limit: 16, pausedForMs: 0 });
  });

  it("takes a raised setting at once, unless a 429 lowered the rate, which then climbs back", async () => {
    const clock = manualClock();
    const scheduler = new Scheduler(8, clock);
    scheduler.configure(20);
    expect(scheduler.stats()).toMatchObject({ limit: 20, maxPerSecond: 20 });
    const { starts } = track(
      scheduler,
      clock,
      Array.from({ length: 19 }, () => ({ caller: "a" })),
    );
    await clock.advance(0);
    // One caller may take all but one of the 20: nineteen start now, none waits for a window.
    expect(starts).toHaveLength(19);
    expect(new Set(starts.map((s) => s.at))).toEqual(new Set([1_000_000]));

    const lowered = new Scheduler(8, clock);
    lowered.observe(429);
    expect(lowered.stats().limit).toBe(4);
    lowered.configure(20);
    expect(lowered.stats()).toMatchObject({ limit: 4, maxPerSecond: 20 });
    lowered.configure(2);
    expect(lowered.stats()).toMatchObject({ limit: 2, maxPerSecond: 2 });
  });

  it("doubles the pause while 429s keep coming, and honours a longer Retry-After", async () => {
    const clock = manualClock();
    const scheduler = new Scheduler(8, clock);
    scheduler.observe(429);
    await clock.advance(1001);
    scheduler.observe(429);
    expect(scheduler.stats().pausedForMs).toBe(2000);
    await clock.advance(2001);
    scheduler.observe(429, 30_000);
    expect(scheduler.stats().pausedForMs).toBe(30_000);
    await clock.advance(30_001);
    scheduler.observe(429, 10 * MAX_HONOURED_RETRY_AFTER_MS);
    expect(scheduler.stats().pausedForMs).toBe(MAX_HONOURED_RETRY_AFTER_MS);
  });

  it("tells waiting requests at once when a pause outlasts their wait, with the remaining pause", async () => {
    const clock = manualClock();
    const scheduler = new Scheduler(1, clock);
    const first = track(scheduler, clock, [{ caller: "a" }]);
    await flush();
    expect(first.starts).toHaveLength(1);
    const waiting = track(scheduler, clock, [{ caller: "b", maxWaitMs: 5_000 }]);
    await flush();
    scheduler.observe(429, 20_000);
    await flush();
    expect(waiting.refused[0]?.error).toMatchObject({ reason: "paused", retryAfterMs: 20_000 });
    await clock.advance(4_000);
    const later = track(scheduler, clock, [{ caller: "c", maxWaitMs: 5_000 }]);
    await flush();
    expect(later.refused[0]?.error).toMatchObject({ reason: "paused", retryAfterMs: 16_000 });
  });

  it("wakes a waiting request by its own timer, not one set while serving a request that has ended", async () => {
    // An isolate's direct budget serves every request there; a timer belongs to the request that
    // set it, and workerd drops it when that request ends.
    const clock = manualClock();
    const scheduler = new Scheduler(2, clock);
    scheduler.observe(429, 3_000);
    clock.drop();
    await clock.advance(3_500);
    const { starts, refused } = track(scheduler, clock, [{ caller: "a" }, { caller: "a" }]);
    await clock.advance(2 * HOLD);
    expect(refused).toEqual([]);
    const begun = clock.time - 2 * HOLD;
    expect(starts.map((s) => s.at - begun)).toEqual([0, HOLD]);
  });

  it("promotes a queued bulk request that an interactive one joined", async () => {
    const clock = manualClock();
    const scheduler = new Scheduler(1, clock);
    track(scheduler, clock, [{ caller: "x" }]);
    const bulk = track(
      scheduler,
      clock,
      Array.from({ length: 3 }, (_, i) => ({ caller: `b${i}`, priority: "bulk" as const })),
    );
    const ticket = scheduler.enqueue({ caller: "shared", priority: "bulk", maxWaitMs: 60_000 });
    let startedAt: number | undefined;
    ticket.started.then(() => {
      startedAt = clock.now();
    });
    ticket.promote("interactive", 60_000);
    await clock.advance(HOLD);
    expect(startedAt).toBe(1_000_000 + HOLD);
    expect(bulk.starts).toHaveLength(0);
  });
});
