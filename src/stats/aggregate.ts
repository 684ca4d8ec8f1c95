import { WORKFLOW_RUN_STATUSES, type WorkflowRunStatus } from "../extend/schemas.ts";

/**
 * Fractional digits kept exactly. Extend reports credits with a few decimals; anything finer is
 * rounded half away from zero here so a pathological value cannot blow up the resume token.
 */
export const MAX_CREDIT_SCALE = 12;

/** An exact decimal: `units / 10^scale`. Sums of JSON numbers such as 0.1 + 0.2 stay 0.3. */
export interface Decimal {
  readonly units: bigint;
  readonly scale: number;
}

export const ZERO: Decimal = { units: 0n, scale: 0 };

const DECIMAL_TEXT = /^(-)?(\d+)(?:\.(\d+))?(?:e([+-]?\d+))?$/i;

function pow10(n: number): bigint {
  return 10n ** BigInt(n);
}

function rescale(value: Decimal, scale: number): Decimal {
  if (scale === value.scale) return value;
  if (scale > value.scale) return { units: value.units * pow10(scale - value.scale), scale };
  const divisor = pow10(value.scale - scale);
  const half = divisor / 2n;
  const magnitude = value.units < 0n ? -value.units : value.units;
  const rounded = (magnitude + half) / divisor;
  return { units: value.units < 0n ? -rounded : rounded, scale };
}

/** Parses decimal text (`12.5`, `-3`, `1e-7`) exactly; undefined when it is not a decimal. */
export function parseDecimal(text: string): Decimal | undefined {
  const match = DECIMAL_TEXT.exec(text.trim());
  if (!match) return undefined;
  const [, sign, whole = "0", fraction = "", exponentText] = match;
  const exponent = exponentText === undefined ? 0 : Number(exponentText);
  if (!Number.isSafeInteger(exponent) || Math.abs(exponent) > 400) return undefined;
  let units = BigInt(whole + fraction);
  let scale = fraction.length - exponent;
  if (scale < 0) {
    units *= pow10(-scale);
    scale = 0;
  }
  if (sign) units = -units;
  const value = { units, scale };
  return scale > MAX_CREDIT_SCALE ? normalize(rescale(value, MAX_CREDIT_SCALE)) : normalize(value);
}

/**
 * A JSON number read exactly as written: `String(n)` is the shortest text that reads back as
 * `n`, which is the text Extend sent for any credit value that survives JSON parsing unchanged.
 */
export function decimalFromNumber(n: number): Decimal {
  return remembered(decimals, n, readDecimal);
}

function readDecimal(n: number): Decimal {
  const value = Number.isFinite(n) ? parseDecimal(String(n)) : undefined;
  if (!value) throw new RangeError("not a finite number");
  return value;
}

const MAX_KNOWN_DECIMALS = 4_096;

/**
 * What `make` gives for credit value `n`, made once and kept (at most MAX_KNOWN_DECIMALS values;
 * past that the map starts over). Credits repeat across runs, and reading one anew makes a
 * string, a regex match and BigInts: garbage on the heap for every run of a scan. What is kept
 * is never changed once made. (`make` is a plain function, so a hit allocates nothing.)
 */
function remembered<V>(known: Map<number, V>, n: number, make: (n: number) => V): V {
  const found = known.get(n);
  if (found !== undefined) return found;
  const value = make(n);
  if (known.size >= MAX_KNOWN_DECIMALS) known.clear();
  known.set(n, value);
  return value;
}

/** Decimals of credit values already read. */
const decimals = new Map<number, Decimal>();

function normalize(value: Decimal): Decimal {
  let { units, scale } = value;
  while (scale > 0 && units % 10n === 0n) {
    units /= 10n;
    scale -= 1;
  }
  return { units, scale };
}

export function addDecimal(a: Decimal, b: Decimal): Decimal {
  const scale = Math.max(a.scale, b.scale);
  return normalize({ units: rescale(a, scale).units + rescale(b, scale).units, scale });
}

/** Plain decimal text without exponent, e.g. `26573.5` or `-0.03`. */
export function formatDecimal(value: Decimal): string {
  const negative = value.units < 0n;
  const digits = (negative ? -value.units : value.units).toString().padStart(value.scale + 1, "0");
  const whole = digits.slice(0, digits.length - value.scale);
  const fraction = digits.slice(digits.length - value.scale);
  return `${negative ? "-" : ""}${whole}${fraction ? `.${fraction}` : ""}`;
}

/**
 * The JSON number closest to the exact sum. Its shortest text is the exact decimal whenever the
 * sum has at most 15 significant digits, which covers any realistic credit total.
 */
export function decimalToNumber(value: Decimal): number {
  return Number(formatDecimal(value));
}

/** Counts and sums over a set of runs of one status. */
export interface Tally {
  runs: number;
  credits: Decimal;
  totalCredits: Decimal;
  runsWithoutUsage: number;
}

export function emptyTally(): Tally {
  return { runs: 0, credits: ZERO, totalCredits: ZERO, runsWithoutUsage: 0 };
}

/**
 * The usage of a run from its `usage.credits` and `usage.totalCredits` as numbers, NaN where the
 * value is not a number or there is no usage object: null when Extend reported no usable credits.
 */
export function usageOf(
  credits: number,
  totalCredits: number,
): { credits: Decimal; totalCredits: Decimal } | null {
  if (!Number.isFinite(credits)) return null;
  const exact = decimalFromNumber(credits);
  return {
    credits: exact,
    totalCredits: Number.isFinite(totalCredits) ? decimalFromNumber(totalCredits) : exact,
  };
}

/** A run's `usage.credits` and `usage.totalCredits` as `usageOf` takes them (NaN: not a number). */
function usageNumbers(run: Record<string, unknown>): [credits: number, totalCredits: number] {
  const usage = run.usage;
  if (typeof usage !== "object" || usage === null) return [Number.NaN, Number.NaN];
  const { credits, totalCredits } = usage as { credits?: unknown; totalCredits?: unknown };
  return [
    typeof credits === "number" ? credits : Number.NaN,
    typeof totalCredits === "number" ? totalCredits : Number.NaN,
  ];
}

/** The usage of one run: null when Extend reported none (or nothing usable). */
export function runUsage(run: Record<string, unknown>): { credits: Decimal; totalCredits: Decimal } | null {
  return usageOf(...usageNumbers(run));
}

/** Counts one run whose usage numbers are `credits` and `totalCredits` (as `usageOf` reads them). */
export function addUsage(tally: Tally, credits: number, totalCredits: number): void {
  tally.runs += 1;
  const usage = usageOf(credits, totalCredits);
  if (usage === null) {
    tally.runsWithoutUsage += 1;
    return;
  }
  tally.credits = addDecimal(tally.credits, usage.credits);
  tally.totalCredits = addDecimal(tally.totalCredits, usage.totalCredits);
}

/** Parts of 10^-MAX_CREDIT_SCALE in one credit. */
const PARTS = 10 ** MAX_CREDIT_SCALE;
const PARTS_BIG = 10n ** BigInt(MAX_CREDIT_SCALE);
/** Below this, whole credits and their sums stay exact integers in a double. */
const SAFE_WHOLE = 2 ** 52;

/** A credit value split for summing in doubles: `whole + part / 10^12`, both exact integers. */
interface SplitCredit {
  decimal: Decimal;
  whole: number;
  part: number;
  /** False when the value is too large for doubles: it is summed as a Decimal. */
  safe: boolean;
}

/** Credit values already split, as `decimals` holds their Decimals. */
const splits = new Map<number, SplitCredit>();

function splitCredit(n: number): SplitCredit {
  return remembered(splits, n, makeSplit);
}

function makeSplit(n: number): SplitCredit {
  const decimal = decimalFromNumber(n);
  const units = rescale(decimal, MAX_CREDIT_SCALE).units;
  const whole = Number(units / PARTS_BIG);
  return { decimal, whole, part: Number(units % PARTS_BIG), safe: Math.abs(whole) < SAFE_WHOLE };
}

/**
 * An exact sum of credit values, added without a BigInt or an object per value: whole credits
 * and parts of 10^-12 are summed as integers in doubles (exact below 2^53), and moved into a
 * Decimal only when the whole part grows large, or when the sum is read.
 */
class CreditSum {
  private whole = 0;
  private part = 0;
  private spilled: Decimal = ZERO;

  add(value: SplitCredit): void {
    if (!value.safe) {
      this.spilled = addDecimal(this.spilled, value.decimal);
      return;
    }
    this.addParts(value.whole, value.part);
  }

  merge(other: CreditSum): void {
    if (other.spilled !== ZERO) this.spilled = addDecimal(this.spilled, other.spilled);
    this.addParts(other.whole, other.part);
  }

  private addParts(whole: number, part: number): void {
    this.whole += whole;
    this.part += part;
    // Both parts were below 10^12 in size, so one carry brings their sum back below it.
    if (this.part >= PARTS) {
      this.part -= PARTS;
      this.whole += 1;
    } else if (this.part <= -PARTS) {
      this.part += PARTS;
      this.whole -= 1;
    }
    if (Math.abs(this.whole) >= SAFE_WHOLE) this.spill();
  }

  private spill(): void {
    this.spilled = this.value();
    this.whole = 0;
    this.part = 0;
  }

  value(): Decimal {
    if (this.whole === 0 && this.part === 0) return this.spilled;
    const units = BigInt(this.whole) * PARTS_BIG + BigInt(this.part);
    return addDecimal(this.spilled, normalize({ units, scale: MAX_CREDIT_SCALE }));
  }

  reset(): void {
    this.whole = 0;
    this.part = 0;
    this.spilled = ZERO;
  }
}

/**
 * A Tally built one run at a time without garbage per run (what a scan's fold adds up between
 * pages), read out as a Tally once per page. Counts exactly as `addUsage` does.
 */
export class UsageSum {
  runs = 0;
  runsWithoutUsage = 0;
  private readonly credits = new CreditSum();
  private readonly totalCredits = new CreditSum();

  /** One run whose usage numbers are `credits` and `totalCredits` (as `usageOf` reads them). */
  add(credits: number, totalCredits: number): void {
    this.runs += 1;
    if (!Number.isFinite(credits)) {
      this.runsWithoutUsage += 1;
      return;
    }
    const exact = splitCredit(credits);
    this.credits.add(exact);
    this.totalCredits.add(Number.isFinite(totalCredits) ? splitCredit(totalCredits) : exact);
  }

  merge(other: UsageSum): void {
    this.runs += other.runs;
    this.runsWithoutUsage += other.runsWithoutUsage;
    this.credits.merge(other.credits);
    this.totalCredits.merge(other.totalCredits);
  }

  /** The sum as a Tally, plus `base` when given. */
  tally(base: Tally = emptyTally()): Tally {
    return {
      runs: base.runs + this.runs,
      credits: addDecimal(base.credits, this.credits.value()),
      totalCredits: addDecimal(base.totalCredits, this.totalCredits.value()),
      runsWithoutUsage: base.runsWithoutUsage + this.runsWithoutUsage,
    };
  }

  reset(): void {
    this.runs = 0;
    this.runsWithoutUsage = 0;
    this.credits.reset();
    this.totalCredits.reset();
  }
}

export function addRun(tally: Tally, run: Record<string, unknown>): void {
  addUsage(tally, ...usageNumbers(run));
}

export interface Totals {
  byStatus: Record<WorkflowRunStatus, number>;
  credits: Decimal;
  totalCredits: Decimal;
  runsWithoutUsage: number;
}

export function emptyTotals(): Totals {
  const byStatus = Object.fromEntries(WORKFLOW_RUN_STATUSES.map((s) => [s, 0])) as Record<
    WorkflowRunStatus,
    number
  >;
  return { byStatus, credits: ZERO, totalCredits: ZERO, runsWithoutUsage: 0 };
}

export function addTally(totals: Totals, status: WorkflowRunStatus, tally: Tally): void {
  totals.byStatus[status] += tally.runs;
  totals.credits = addDecimal(totals.credits, tally.credits);
  totals.totalCredits = addDecimal(totals.totalCredits, tally.totalCredits);
  totals.runsWithoutUsage += tally.runsWithoutUsage;
}

export function totalRuns(totals: Totals): number {
  return WORKFLOW_RUN_STATUSES.reduce((sum, status) => sum + totals.byStatus[status], 0);
}

/** The counting part of a /stats body, the same whether a scan or the index counted. */
export function totalsBody(totals: Totals): {
  total: number;
  byStatus: Record<WorkflowRunStatus, number>;
  usage: { credits: number; totalCredits: number; runsWithoutUsage: number };
} {
  return {
    total: totalRuns(totals),
    byStatus: { ...totals.byStatus },
    usage: {
      credits: decimalToNumber(totals.credits),
      totalCredits: decimalToNumber(totals.totalCredits),
      runsWithoutUsage: totals.runsWithoutUsage,
    },
  };
}
