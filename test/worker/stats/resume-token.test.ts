import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ApiError } from "../../../src/app/errors.ts";
import { WORKFLOW_RUN_STATUSES } from "../../../src/extend/schemas.ts";
import { addDecimal, type Decimal, type Tally, type Totals, ZERO } from "../../../src/stats/aggregate.ts";
import {
  MAX_RESUME_TOKEN_LENGTH,
  openResumeToken,
  RESUME_TOKEN_MAX_AGE_MS,
  sealResumeToken,
  type TokenContext,
} from "../../../src/stats/resume-token.ts";
import type { PartitionState, ScanState, WalkState } from "../../../src/stats/scan.ts";

const ISSUED = Date.UTC(2026, 9, 1, 12, 0, 0);
const CONTEXT: TokenContext = { secret: "s".repeat(40), binding: "filters-and-account-1", now: ISSUED };
/** The SDK documentation's example of an Extend cursor. */
const EXTEND_CURSOR = "xK9mLPqRtN3vS8wF5hB2cQ==:zWvUxYjM4nKpL7aDgE9HbTcR2mAyX3/Q+CNkfBSw1dZ=";

function decimal(units: bigint, scale: number): Decimal {
  return addDecimal(ZERO, { units, scale });
}

function tally(runs: number, credits: Decimal, runsWithoutUsage = 0): Tally {
  return { runs, credits, totalCredits: addDecimal(credits, credits), runsWithoutUsage };
}

/** A scan caught mid-way: walks in every phase, open groups, claims from both ends, exact sums. */
function midScan(): ScanState {
  const byStatus = Object.fromEntries(WORKFLOW_RUN_STATUSES.map((s, i) => [s, i * 7])) as Totals["byStatus"];
  return {
    pagesFetched: 17,
    startedAt: ISSUED,
    oldestPageAt: ISSUED - 900_000,
    totals: {
      byStatus,
      credits: decimal(123456789n, 4),
      totalCredits: decimal(30000000000001n, 12),
      runsWithoutUsage: 3,
    },
    partitions: [
      {
        status: "PROCESSED",
        ascClaimed: ISSUED - 86_400_000,
        descClaimed: ISSUED - 3_600_000,
        asc: {
          phase: "active",
          cursor: `${EXTEND_CURSOR}asc`,
          open: { at: ISSUED - 80_000_000, tally: tally(4, decimal(15n, 1)) },
        },
        desc: {
          phase: "active",
          cursor: EXTEND_CURSOR,
          open: { at: ISSUED - 3_700_000, tally: tally(2, ZERO, 2) },
        },
        done: false,
      },
      {
        status: "FAILED",
        ascClaimed: null,
        descClaimed: null,
        desc: { phase: "active" },
        asc: { phase: "waiting" },
        done: false,
      },
      { status: "PENDING", ascClaimed: null, descClaimed: ISSUED, desc: { phase: "done" }, done: true },
    ],
  };
}

function fromBase64Url(text: string): Uint8Array {
  const binary = atob(text.replaceAll("-", "+").replaceAll("_", "/"));
  return Uint8Array.from(binary, (ch) => ch.charCodeAt(0));
}

function toBase64Url(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

/** Opens the token expecting a refusal: the one 400 that names resumeToken. */
async function refusal(token: string, context: TokenContext = CONTEXT): Promise<string> {
  const error = await openResumeToken(token, context).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, "the token was accepted").toBeInstanceOf(ApiError);
  const apiError = error as ApiError;
  expect(apiError.code).toBe("INVALID_REQUEST");
  expect(apiError.status).toBe(400);
  expect(apiError.details?.map((d) => d.field)).toEqual(["resumeToken"]);
  return apiError.details?.[0]?.message ?? "";
}

const instantArb = fc.integer({ min: 0, max: 4_102_444_800_000 });
const countArb = fc.maxSafeNat();
const decimalArb = fc
  .record({ units: fc.bigInt({ min: 0n, max: 10n ** 24n }), scale: fc.integer({ min: 0, max: 12 }) })
  .map(({ units, scale }) => decimal(units, scale));
const tallyArb: fc.Arbitrary<Tally> = fc.record({
  runs: countArb,
  credits: decimalArb,
  totalCredits: decimalArb,
  runsWithoutUsage: countArb,
});
// A finished walk carries nothing on the wire (its cursor could only grow the token).
const walkArb: fc.Arbitrary<WalkState> = fc.oneof(
  fc.constant<WalkState>({ phase: "done" }),
  fc.record(
    {
      phase: fc.constantFrom("waiting", "active"),
      cursor: fc.string({ minLength: 1, maxLength: 120 }),
      open: fc.record({ at: instantArb, tally: tallyArb }),
    },
    { requiredKeys: ["phase"] },
  ),
);
const partitionArb: fc.Arbitrary<PartitionState> = fc.record(
  {
    status: fc.constantFrom(...WORKFLOW_RUN_STATUSES),
    ascClaimed: fc.option(instantArb, { nil: null }),
    descClaimed: fc.option(instantArb, { nil: null }),
    asc: walkArb,
    desc: walkArb,
    done: fc.boolean(),
  },
  { requiredKeys: ["status", "ascClaimed", "descClaimed", "done"] },
);
const stateArb: fc.Arbitrary<ScanState> = fc.record({
  partitions: fc.array(partitionArb, { minLength: 1, maxLength: WORKFLOW_RUN_STATUSES.length }),
  totals: fc.record({
    byStatus: fc
      .tuple(...WORKFLOW_RUN_STATUSES.map(() => countArb))
      .map(
        (counts) =>
          Object.fromEntries(WORKFLOW_RUN_STATUSES.map((s, i) => [s, counts[i]])) as Totals["byStatus"],
      ),
    credits: decimalArb,
    totalCredits: decimalArb,
    runsWithoutUsage: countArb,
  }),
  pagesFetched: countArb,
  startedAt: fc.integer({ min: ISSUED - 3_599_000, max: ISSUED }),
  oldestPageAt: fc.integer({ min: ISSUED - 86_400_000, max: ISSUED - 3_599_000 }),
});

describe("resume token: seal and open", () => {
  it("opens to exactly the state it sealed", async () => {
    const state = midScan();
    expect(await openResumeToken(await sealResumeToken(state, CONTEXT), CONTEXT)).toEqual(state);
  });

  it("round-trips any scan state", async () => {
    await fc.assert(
      fc.asyncProperty(stateArb, async (state) => {
        expect(await openResumeToken(await sealResumeToken(state, CONTEXT), CONTEXT)).toEqual(state);
      }),
      { numRuns: 150 },
    );
  });

  it("is URL-safe, different every time (a fresh IV) and readable by nobody without the key", async () => {
    const state = midScan();
    const [a, b] = await Promise.all([sealResumeToken(state, CONTEXT), sealResumeToken(state, CONTEXT)]);
    expect(a).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(a).not.toBe(b);
    expect(await openResumeToken(b, CONTEXT)).toEqual(state);
    const plain = new TextDecoder("latin1").decode(fromBase64Url(a));
    for (const secret of [EXTEND_CURSOR, "PROCESSED", CONTEXT.binding, "12345.6789", "cursor", "byStatus"]) {
      expect(a).not.toContain(secret);
      expect(plain).not.toContain(secret);
    }
  });
});

describe("resume token: refused", () => {
  it("when any bit of it is changed", async () => {
    const token = await sealResumeToken(midScan(), CONTEXT);
    const bytes = fromBase64Url(token);
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: bytes.length - 1 }),
        fc.integer({ min: 1, max: 255 }),
        async (index, mask) => {
          const altered = Uint8Array.from(bytes);
          altered[index] = (altered[index] ?? 0) ^ mask;
          await refusal(toBase64Url(altered));
        },
      ),
      { numRuns: 200 },
    );
  });

  it.each<[string, (token: string) => string]>([
    ["truncated by a character", (t) => t.slice(0, -1)],
    ["truncated by a block", (t) => t.slice(0, -16)],
    ["cut to its header", (t) => t.slice(0, 20)],
    ["extended by a block", (t) => `${t}AAAAAAAAAAAAAAAA`],
    ["empty", () => ""],
    ["a couple of characters", () => "AQ"],
    ["a forgery of the right shape", () => `AQ${"x".repeat(198)}`],
    ["standard base64 with padding", (t) => `${t.replaceAll("-", "+").replaceAll("_", "/")}==`],
    ["with a space", (t) => `${t.slice(0, 10)} ${t.slice(10)}`],
  ])("when %s", async (_name, alter) => {
    const token = await sealResumeToken(midScan(), CONTEXT);
    await refusal(alter(token));
  });

  it("when sealed under another key: a changed STATS_SIGNING_KEY or EXTEND_API_KEY", async () => {
    await fc.assert(
      fc.asyncProperty(fc.string({ minLength: 1, maxLength: 64 }), async (other) => {
        fc.pre(other !== CONTEXT.secret);
        const token = await sealResumeToken(midScan(), { ...CONTEXT, secret: other });
        expect(await refusal(token)).toMatch(/altered, or was not issued by this proxy/);
      }),
      { numRuns: 40 },
    );
  });

  it("when used for a scan with other filters or another account", async () => {
    const token = await sealResumeToken(midScan(), CONTEXT);
    await fc.assert(
      fc.asyncProperty(fc.string({ maxLength: 80 }), async (binding) => {
        fc.pre(binding !== CONTEXT.binding);
        expect(await refusal(token, { ...CONTEXT, binding })).toMatch(/other filters/);
      }),
      { numRuns: 40 },
    );
  });

  it.each<[string, number, boolean]>([
    ["at once: accepted", 0, true],
    ["at the last millisecond of its hour: accepted", RESUME_TOKEN_MAX_AGE_MS, true],
    ["a millisecond after its hour: expired", RESUME_TOKEN_MAX_AGE_MS + 1, false],
    ["a day later: expired", 86_400_000, false],
    ["a minute before it was issued (clock skew): accepted", -60_000, true],
    ["more than a minute before it was issued: refused", -60_001, false],
  ])("opened %s", async (_name, offset, accepted) => {
    const token = await sealResumeToken(midScan(), CONTEXT);
    const later = { ...CONTEXT, now: ISSUED + offset };
    if (accepted) expect(await openResumeToken(token, later)).toEqual(midScan());
    else expect(await refusal(token, later)).toMatch(/expired/);
  });
});

describe("resume token: size", () => {
  /** Every walk of every partition open, with large tallies, twelve-decimal sums and long cursors. */
  function fullest(cursorLength: number): ScanState {
    const big = Number.MAX_SAFE_INTEGER;
    const sum = decimal(10n ** 24n - 1n, 12);
    const walk = (suffix: string): WalkState => ({
      phase: "active",
      cursor: `${EXTEND_CURSOR}${suffix}`.padEnd(cursorLength, "x"),
      open: { at: ISSUED, tally: { runs: big, credits: sum, totalCredits: sum, runsWithoutUsage: big } },
    });
    return {
      pagesFetched: big,
      startedAt: ISSUED,
      oldestPageAt: ISSUED,
      totals: {
        byStatus: Object.fromEntries(WORKFLOW_RUN_STATUSES.map((s) => [s, big])) as Totals["byStatus"],
        credits: sum,
        totalCredits: sum,
        runsWithoutUsage: big,
      },
      partitions: WORKFLOW_RUN_STATUSES.map((status) => ({
        status,
        ascClaimed: ISSUED,
        descClaimed: ISSUED,
        asc: walk("a"),
        desc: walk("d"),
        done: false,
      })),
    };
  }

  it("fits MAX_RESUME_TOKEN_LENGTH with sixteen walks, the largest counts and cursors thrice Extend's", async () => {
    const token = await sealResumeToken(fullest(3 * EXTEND_CURSOR.length), CONTEXT);
    expect(token.length).toBeLessThanOrEqual(MAX_RESUME_TOKEN_LENGTH);
    expect(await openResumeToken(token, CONTEXT)).toEqual(fullest(3 * EXTEND_CURSOR.length));
  });
});
