// The ledger that lets an isolate admit a trusted key before the Rate Limiting binding answers:
// checked against models of the binding's windows, with and without other isolates spending.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { LimiterLedger } from "../../../src/security/limiter-ledger.ts";

const PERIOD_MS = 60_000;
const KEY = "token:abc";

/** A binding's window over one key: admits while its count is under `limit`, counting admissions. */
interface WindowModel {
  admit(now: number): boolean;
}

/** Fixed windows of one period, starting at `phase` (the local emulator aligns them to the clock). */
function fixedWindows(limit: number, phase: number): WindowModel {
  let window = Number.NaN;
  let count = 0;
  return {
    admit(now) {
      const current = Math.floor((now - phase) / PERIOD_MS);
      if (current !== window) {
        window = current;
        count = 0;
      }
      if (count >= limit) return false;
      count += 1;
      return true;
    },
  };
}

/** A sliding estimate: the previous window weighted by how much of it the last period still covers. */
function slidingEstimate(limit: number, phase: number): WindowModel {
  const counts = new Map<number, number>();
  return {
    admit(now) {
      const current = Math.floor((now - phase) / PERIOD_MS);
      const elapsed = (now - phase - current * PERIOD_MS) / PERIOD_MS;
      const estimate = (counts.get(current - 1) ?? 0) * (1 - elapsed) + (counts.get(current) ?? 0);
      if (estimate + 1 > limit) return false;
      counts.set(current, (counts.get(current) ?? 0) + 1);
      return true;
    },
  };
}

const gaps = fc.array(fc.integer({ min: 0, max: PERIOD_MS / 4 }), { minLength: 1, maxLength: 400 });
/** Units early in one window and a pause into the next (run() starts on a window's boundary). */
const SLIDING_CASE = { limit: 2, phase: 0, steps: [0, 0.9 * PERIOD_MS, 0.3 * PERIOD_MS] };

/** Sends one unit at each gap, admitting early when the ledger trusts the key, as rate-limit.ts does. */
function run(
  ledger: LimiterLedger,
  model: WindowModel,
  limit: number,
  steps: readonly number[],
  others?: (now: number) => void,
) {
  let now = 1_800_000_000_000;
  const outcomes: { now: number; early: boolean; admitted: boolean }[] = [];
  for (const gap of steps) {
    now += gap;
    others?.(now);
    const early = ledger.trusted(KEY, limit, now);
    ledger.record(KEY, now);
    const admitted = model.admit(now);
    ledger.verdict(KEY, admitted, now);
    outcomes.push({ now, early, admitted });
  }
  return outcomes;
}

describe("LimiterLedger", () => {
  it("alone at a location, admits early only what the binding admits: fixed windows", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 30 }), fc.nat(PERIOD_MS - 1), gaps, (limit, phase, steps) => {
        const outcomes = run(new LimiterLedger(PERIOD_MS), fixedWindows(limit, phase), limit, steps);
        for (const outcome of outcomes) if (outcome.early) expect(outcome.admitted).toBe(true);
      }),
    );
  });

  it("alone at a location, admits early only what the binding admits: a sliding estimate", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 30 }), fc.nat(PERIOD_MS - 1), gaps, (limit, phase, steps) => {
        const outcomes = run(new LimiterLedger(PERIOD_MS), slidingEstimate(limit, phase), limit, steps);
        for (const outcome of outcomes) if (outcome.early) expect(outcome.admitted).toBe(true);
      }),
      { numRuns: 1000 },
    );
  });

  it("counts what a sliding estimate still holds from the window before", () => {
    const { limit, phase, steps } = SLIDING_CASE;
    const outcomes = run(new LimiterLedger(PERIOD_MS), slidingEstimate(limit, phase), limit, steps);
    expect(outcomes.at(-1)).toMatchObject({ early: false, admitted: false });
  });

  it("with other isolates spending the key, admits at most one refused unit early a period", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 30 }),
        fc.nat(PERIOD_MS - 1),
        gaps,
        fc.integer({ min: 0, max: 5 }),
        (limit, phase, steps, othersPerStep) => {
          const model = fixedWindows(limit, phase);
          const outcomes = run(new LimiterLedger(PERIOD_MS), model, limit, steps, (now) => {
            for (let i = 0; i < othersPerStep; i++) model.admit(now);
          });
          const wrong = outcomes.filter((o) => o.early && !o.admitted);
          for (let i = 1; i < wrong.length; i++) {
            expect((wrong[i]?.now ?? 0) - (wrong[i - 1]?.now ?? 0)).toBeGreaterThanOrEqual(PERIOD_MS);
          }
        },
      ),
    );
  });

  it("never trusts a key it has not seen admitted, or with an unknown limit", () => {
    const ledger = new LimiterLedger(PERIOD_MS);
    expect(ledger.trusted(KEY, 10, 0)).toBe(false);
    ledger.record(KEY, 0);
    expect(ledger.trusted(KEY, 10, 1)).toBe(false);
    ledger.verdict(KEY, true, 2);
    expect(ledger.trusted(KEY, 10, 3)).toBe(true);
    expect(ledger.trusted(KEY, 0, 3)).toBe(false);
    // An admission a period old no longer counts as trust.
    expect(ledger.trusted(KEY, 10, 2 + PERIOD_MS)).toBe(false);
  });

  it("waits a whole period after a refusal, even when later verdicts admit", () => {
    const ledger = new LimiterLedger(PERIOD_MS);
    ledger.record(KEY, 0);
    ledger.verdict(KEY, true, 0);
    ledger.verdict(KEY, false, 10);
    ledger.verdict(KEY, true, 20);
    expect(ledger.trusted(KEY, 10, 30)).toBe(false);
    expect(ledger.trusted(KEY, 10, 10 + PERIOD_MS - 1)).toBe(false);
    ledger.verdict(KEY, true, 10 + PERIOD_MS);
    expect(ledger.trusted(KEY, 10, 10 + PERIOD_MS)).toBe(true);
  });

  it("forgets the least recently used key past its bound, and then asks for it again", () => {
    const ledger = new LimiterLedger(PERIOD_MS, 2);
    for (const key of ["a", "b"]) {
      ledger.record(key, 0);
      ledger.verdict(key, true, 0);
    }
    ledger.record("a", 1);
    ledger.record("c", 2);
    ledger.verdict("c", true, 2);
    expect(ledger.trusted("a", 10, 3)).toBe(true);
    expect(ledger.trusted("b", 10, 3)).toBe(false);
    expect(ledger.sent("b", 3)).toBe(0);
  });
});
