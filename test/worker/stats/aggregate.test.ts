import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { STATUSES } from "../../../fake/extend.ts";
import {
  addDecimal,
  addRun,
  addTally,
  type Decimal,
  decimalFromNumber,
  decimalToNumber,
  emptyTally,
  emptyTotals,
  formatDecimal,
  MAX_CREDIT_SCALE,
  parseDecimal,
  runUsage,
  totalRuns,
  UsageSum,
  ZERO,
} from "../../../src/stats/aggregate.ts";

// The reference below is plain BigInt arithmetic on integers scaled by 10^SCALE, written apart
// from src/stats/aggregate.ts.
const SCALE = MAX_CREDIT_SCALE;
const TEN = 10n;

/** A decimal's value as an integer count of 10^-SCALE. */
function scaled(value: Decimal): bigint {
  expect(value.scale).toBeGreaterThanOrEqual(0);
  expect(value.scale).toBeLessThanOrEqual(SCALE);
  return value.units * TEN ** BigInt(SCALE - value.scale);
}

/** Plain decimal text for `units / 10^scale`, trailing zeros dropped: the reference formatter. */
function referenceText(units: bigint, scale: number): string {
  const negative = units < 0n;
  const magnitude = negative ? -units : units;
  const divisor = TEN ** BigInt(scale);
  const whole = (magnitude / divisor).toString();
  const fraction = (magnitude % divisor).toString().padStart(scale, "0").replace(/0+$/, "");
  const text = fraction ? `${whole}.${fraction}` : whole;
  return negative && magnitude !== 0n ? `-${text}` : text;
}

/** Units and a scale within the exact range: any value with at most 12 decimals. */
const exactArb = fc.record({
  units: fc.bigInt({ min: -(10n ** 30n), max: 10n ** 30n }),
  scale: fc.integer({ min: 0, max: SCALE }),
});

describe("parseDecimal", () => {
  it.each<[string, string, bigint, number]>([
    ["an integer", "42", 42n, 0],
    ["a fraction", "12.5", 125n, 1],
    ["a negative integer", "-3", -3n, 0],
    ["a negative fraction", "-0.03", -3n, 2],
    ["trailing zeros (normalised away)", "1.500", 15n, 1],
    ["zero written long", "0.000", 0n, 0],
    ["minus zero", "-0", 0n, 0],
    ["leading zeros", "00012", 12n, 0],
    ["surrounding spaces", "  7.25 ", 725n, 2],
    ["a negative exponent", "1e-7", 1n, 7],
    ["an upper-case exponent", "1E3", 1000n, 0],
    ["an exponent with a sign", "1.5e+2", 150n, 0],
    ["a fraction and an exponent", "2.5e-3", 25n, 4],
    ["the largest exponent", "1e400", 10n ** 400n, 0],
    ["twelve decimals, kept exactly", "0.000000000001", 1n, 12],
    ["thirty significant digits", "123456789012345678.901234567891", 123456789012345678901234567891n, 12],
  ])("reads %s (%s)", (_name, text, units, scale) => {
    expect(parseDecimal(text)).toEqual({ units, scale });
  });

  it.each<[string, string, bigint, number]>([
    ["half at the 13th decimal, up", "0.0000000000005", 1n, 12],
    ["half at the 13th decimal, negative, away from zero", "-0.0000000000005", -1n, 12],
    ["below half at the 13th decimal, down", "0.0000000000004999", 0n, 0],
    ["a carry through every digit", "0.9999999999999", 1n, 0],
    ["a tiny exponent", "1e-400", 0n, 0],
    ["a long tail", "0.1234567890125", 123456789013n, 12],
  ])("rounds beyond 12 decimals half away from zero: %s (%s)", (_name, text, units, scale) => {
    expect(parseDecimal(text)).toEqual({ units, scale });
  });

  it.each([
    ["empty", ""],
    ["blank", "   "],
    ["a leading dot", ".5"],
    ["a trailing dot", "5."],
    ["a plus sign", "+5"],
    ["a comma", "1,5"],
    ["hexadecimal", "0x10"],
    ["an exponent without digits", "1e"],
    ["an exponent alone", "e5"],
    ["NaN", "NaN"],
    ["Infinity", "Infinity"],
    ["two numbers", "1 2"],
    ["two signs", "--1"],
    ["non-ASCII digits", "١٢"],
    ["an exponent past 400", "1e401"],
    ["an exponent below -400", "1e-401"],
  ])("refuses %s", (_name, text) => {
    expect(parseDecimal(text)).toBeUndefined();
  });

  it("reads back exactly what formatDecimal wrote, for any value with at most 12 decimals", () => {
    fc.assert(
      fc.property(exactArb, ({ units, scale }) => {
        const text = referenceText(units, scale);
        const parsed = parseDecimal(text);
        if (!parsed) throw new Error(`refused ${text}`);
        expect(scaled(parsed)).toBe(units * TEN ** BigInt(SCALE - scale));
        expect(formatDecimal(parsed)).toBe(text);
      }),
    );
  });
});

describe("formatDecimal", () => {
  it.each<[string, Decimal, string]>([
    ["zero", ZERO, "0"],
    ["a fraction below one", { units: 5n, scale: 3 }, "0.005"],
    ["a negative fraction", { units: -3n, scale: 2 }, "-0.03"],
    ["a credit total", { units: 265735n, scale: 1 }, "26573.5"],
    ["a large integer, without an exponent", { units: 10n ** 30n, scale: 0 }, `1${"0".repeat(30)}`],
    ["twelve decimals", { units: 1n, scale: 12 }, "0.000000000001"],
  ])("writes %s", (_name, value, text) => {
    expect(formatDecimal(value)).toBe(text);
  });
});

describe("addDecimal", () => {
  it.each<[string, string, string, string]>([
    ["0.1 + 0.2", "0.1", "0.2", "0.3"],
    ["1.005 + 0.3", "1.005", "0.3", "1.305"],
    ["a sum that loses its fraction", "0.25", "0.75", "1"],
    ["a negative sum", "-1.5", "0.25", "-1.25"],
    ["to zero", "2.5", "-2.5", "0"],
    ["the smallest step", "0.000000000001", "0.000000000001", "0.000000000002"],
  ])("%s is exact", (_name, a, b, sum) => {
    const [x, y] = [parseDecimal(a), parseDecimal(b)];
    if (!x || !y) throw new Error("test input is not a decimal");
    expect(formatDecimal(addDecimal(x, y))).toBe(sum);
  });

  it("keeps thousands of cents exact where a float sum drifts", () => {
    let exact = ZERO;
    let float = 0;
    for (let i = 0; i < 3000; i++) {
      const credits = i % 2 === 0 ? 0.1 : 0.2;
      exact = addDecimal(exact, decimalFromNumber(credits));
      float += credits;
    }
    expect(float).not.toBe(450);
    expect(formatDecimal(exact)).toBe("450");
    expect(decimalToNumber(exact)).toBe(450);
  });

  it("equals a BigInt reference sum for any list of values, in any order", () => {
    fc.assert(
      fc.property(fc.array(exactArb, { maxLength: 60 }), (values) => {
        const decimals = values.map(({ units, scale }) => parseDecimal(referenceText(units, scale)) ?? ZERO);
        const reference = values.reduce(
          (sum, { units, scale }) => sum + units * TEN ** BigInt(SCALE - scale),
          0n,
        );
        const forwards = decimals.reduce(addDecimal, ZERO);
        const backwards = [...decimals].reverse().reduce(addDecimal, ZERO);
        expect(scaled(forwards)).toBe(reference);
        expect(forwards).toEqual(backwards);
        expect(formatDecimal(forwards)).toBe(referenceText(reference, SCALE));
      }),
    );
  });
});

describe("decimalFromNumber and decimalToNumber", () => {
  it.each<[number, string]>([
    [0.1, "0.1"],
    [1.005, "1.005"],
    [1e-7, "0.0000001"],
    [1e21, `1${"0".repeat(21)}`],
    [-2.5, "-2.5"],
    [0, "0"],
    [-0, "0"],
  ])("reads the JSON number %s as the decimal %s", (n, text) => {
    expect(formatDecimal(decimalFromNumber(n))).toBe(text);
  });

  it.each([Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY])("refuses %s", (n) => {
    expect(() => decimalFromNumber(n)).toThrow(RangeError);
  });

  it("reads any credit-like JSON number exactly (up to 15 significant digits and 12 decimals)", () => {
    fc.assert(
      fc.property(
        fc.bigInt({ min: -(10n ** 15n) + 1n, max: 10n ** 15n - 1n }),
        fc.integer({ min: 0, max: SCALE }),
        (units, scale) => {
          const text = referenceText(units, scale);
          const value = decimalFromNumber(Number(text));
          expect(scaled(value)).toBe(units * TEN ** BigInt(SCALE - scale));
          expect(decimalToNumber(value)).toBe(Number(text));
        },
      ),
    );
  });
});

describe("runUsage", () => {
  it.each<[string, Record<string, unknown>, { credits: string; totalCredits: string } | null]>([
    [
      "credits and totalCredits",
      { usage: { credits: 1.5, totalCredits: 2.25 } },
      { credits: "1.5", totalCredits: "2.25" },
    ],
    [
      "credits alone (totalCredits falls back)",
      { usage: { credits: 0.1 } },
      { credits: "0.1", totalCredits: "0.1" },
    ],
    [
      "a totalCredits that is not a number",
      { usage: { credits: 3, totalCredits: "4" } },
      { credits: "3", totalCredits: "3" },
    ],
    ["zero credits", { usage: { credits: 0, totalCredits: 0 } }, { credits: "0", totalCredits: "0" }],
    ["null usage", { usage: null }, null],
    ["no usage", {}, null],
    ["usage that is not an object", { usage: 5 }, null],
    ["no credits", { usage: { totalCredits: 2 } }, null],
    ["credits as text", { usage: { credits: "1.5" } }, null],
    ["credits that are not finite", { usage: { credits: Number.POSITIVE_INFINITY } }, null],
  ])("reads %s", (_name, run, expected) => {
    const usage = runUsage(run);
    expect(
      usage && { credits: formatDecimal(usage.credits), totalCredits: formatDecimal(usage.totalCredits) },
    ).toEqual(expected);
  });
});

const runArb = fc.record({
  status: fc.constantFrom(...STATUSES),
  usage: fc.option(
    fc.record(
      {
        milliCredits: fc.integer({ min: 0, max: 10_000_000 }),
        milliTotal: fc.integer({ min: 0, max: 10_000_000 }),
      },
      { requiredKeys: ["milliCredits"] },
    ),
    { nil: null },
  ),
});

describe("tallies and totals", () => {
  it("count runs, runs without usage and exact sums per status, as a reference fold does", () => {
    fc.assert(
      fc.property(fc.array(runArb, { maxLength: 200 }), (runs) => {
        const tallies = new Map(STATUSES.map((status) => [status, emptyTally()]));
        const reference = {
          credits: 0n,
          totalCredits: 0n,
          withoutUsage: 0,
          byStatus: new Map<string, number>(),
        };
        for (const { status, usage } of runs) {
          const body =
            usage === null
              ? { status, usage: null }
              : {
                  status,
                  usage: {
                    credits: usage.milliCredits / 1000,
                    ...(usage.milliTotal === undefined ? {} : { totalCredits: usage.milliTotal / 1000 }),
                  },
                };
          const tally = tallies.get(status);
          if (!tally) throw new Error(`no tally for ${status}`);
          addRun(tally, body);
          reference.byStatus.set(status, (reference.byStatus.get(status) ?? 0) + 1);
          if (usage === null) {
            reference.withoutUsage += 1;
            continue;
          }
          reference.credits += BigInt(usage.milliCredits);
          reference.totalCredits += BigInt(usage.milliTotal ?? usage.milliCredits);
        }
        const totals = emptyTotals();
        for (const [status, tally] of tallies) addTally(totals, status, tally);
        expect(totalRuns(totals)).toBe(runs.length);
        for (const status of STATUSES)
          expect(totals.byStatus[status]).toBe(reference.byStatus.get(status) ?? 0);
        expect(totals.runsWithoutUsage).toBe(reference.withoutUsage);
        expect(formatDecimal(totals.credits)).toBe(referenceText(reference.credits, 3));
        expect(formatDecimal(totals.totalCredits)).toBe(referenceText(reference.totalCredits, 3));
      }),
    );
  });

  it("start empty: every status at zero, sums at zero", () => {
    const totals = emptyTotals();
    expect(Object.keys(totals.byStatus)).toEqual([...STATUSES]);
    expect(totalRuns(totals)).toBe(0);
    expect(totals).toMatchObject({ credits: ZERO, totalCredits: ZERO, runsWithoutUsage: 0 });
    expect(emptyTally()).toEqual({ runs: 0, credits: ZERO, totalCredits: ZERO, runsWithoutUsage: 0 });
  });
});

describe("UsageSum", () => {
  const credit = fc.oneof(
    fc.constantFrom(
      Number.NaN,
      0,
      -0,
      0.1,
      0.2,
      1.5,
      2 ** 52,
      2 ** 53,
      -(2 ** 52),
      1e21,
      9_007_199_254_740.5,
    ),
    fc.double({ noNaN: true, noDefaultInfinity: true, min: -1e6, max: 1e6 }),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.integer({ min: -1_000_000, max: 1_000_000 }).map((n) => n / 1000),
    fc.constant(Number.POSITIVE_INFINITY),
  );
  const runs = fc.array(fc.tuple(credit, credit), { maxLength: 60 });

  /** The same runs one addRun at a time (the Decimal arithmetic the sum must equal). */
  function oneByOne(items: [number, number][], tally = emptyTally()) {
    for (const [credits, totalCredits] of items) addRun(tally, { usage: { credits, totalCredits } });
    return tally;
  }

  it("counts and sums exactly as adding one run at a time, split and merged anywhere", () => {
    fc.assert(
      fc.property(runs, runs, fc.nat(), (first, second, cut) => {
        const base = oneByOne(first);
        const sum = new UsageSum();
        const other = new UsageSum();
        const at = cut % (second.length + 1);
        for (const [c, t] of second.slice(0, at)) sum.add(c, t);
        for (const [c, t] of second.slice(at)) other.add(c, t);
        sum.merge(other);
        expect(sum.tally(base)).toEqual(oneByOne(second, oneByOne(first)));
        expect(sum.tally()).toEqual(oneByOne(second));
        sum.reset();
        expect(sum.tally()).toEqual(emptyTally());
      }),
      { numRuns: 1_000 },
    );
  });

  it("stays exact past 2^53 whole credits", () => {
    const sum = new UsageSum();
    for (let i = 0; i < 4_000; i++) sum.add(2 ** 50 + 0.5, Number.NaN);
    const expected = 2n ** 50n * 4_000n + 2_000n;
    expect(formatDecimal(sum.tally().credits)).toBe(expected.toString());
    expect(sum.tally().runs).toBe(4_000);
  });
});
