// The scan's walk state machine driven directly, page by page: planScan, applyPage, isComplete.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ApiError } from "../../../src/app/errors.ts";
import { WORKFLOW_RUN_STATUSES } from "../../../src/extend/schemas.ts";
import { formatDecimal, type Totals } from "../../../src/stats/aggregate.ts";
import type { StatsFilters } from "../../../src/stats/filters.ts";
import {
  applyPage,
  type Direction,
  foldPage,
  isComplete,
  type PartitionState,
  planScan,
} from "../../../src/stats/scan.ts";

const MINUTE = 60_000;
const T0 = Date.UTC(2026, 9, 1, 0, 0, 0);
/** The instant `n` minutes after T0. */
const t = (n: number) => T0 + n * MINUTE;
const iso = (n: number) => new Date(t(n)).toISOString();

/** Ids are unique, as Extend's are: the scan tells a run listed twice from two runs by its id. */
let runs = 0;

function run(minute: number, credits: number | null = 1): Record<string, unknown> {
  runs += 1;
  return {
    id: `run_${minute}_${runs}`,
    createdAt: iso(minute),
    usage: credits === null ? null : { credits },
  };
}

/** The page as the scan folds it: Extend's JSON of these runs, read by the byte fold. */
function page(runs: Record<string, unknown>[], nextPageToken?: string) {
  return foldPage(new TextEncoder().encode(JSON.stringify({ object: "list", data: runs, nextPageToken })));
}

/** The one partition a scan of one status has. */
function single(filters: StatsFilters = {}): {
  partition: PartitionState;
  totals: Totals;
  filters: StatsFilters;
} {
  const state = planScan({ status: "PROCESSED", ...filters });
  const [partition] = state.partitions;
  if (!partition) throw new Error("no partition");
  return { partition, totals: state.totals, filters: { status: "PROCESSED", ...filters } };
}

describe("planScan", () => {
  it("walks every status from both ends, the ascending end waiting for a second page", () => {
    const state = planScan({});
    expect(state.partitions.map((p) => p.status)).toEqual([...WORKFLOW_RUN_STATUSES]);
    for (const partition of state.partitions) {
      expect(partition).toEqual({
        status: partition.status,
        ascClaimed: null,
        descClaimed: null,
        desc: { phase: "active" },
        asc: { phase: "waiting" },
        done: false,
      });
    }
    expect(state.pagesFetched).toBe(0);
    expect(Object.values(state.totals.byStatus).every((n) => n === 0)).toBe(true);
    expect(isComplete(state)).toBe(false);
  });

  it.each<[string, StatsFilters, Direction[]]>([
    ["no bounds: both ends", {}, ["desc", "asc"]],
    ["since: newest first only", { since: iso(5) }, ["desc"]],
    ["until: oldest first only", { until: iso(5) }, ["asc"]],
    ["since and until: newest first only", { since: iso(1), until: iso(5) }, ["desc"]],
  ])("walks %s", (_name, filters, directions) => {
    const { partitions } = planScan({ status: "FAILED", ...filters });
    expect(partitions).toHaveLength(1);
    const [partition] = partitions;
    expect(partition?.status).toBe("FAILED");
    expect((["desc", "asc"] as const).filter((d) => partition?.[d] !== undefined)).toEqual(directions);
  });
});

describe("applyPage", () => {
  it("counts a list that fits one page and ends the partition without opening the other end", () => {
    const { partition, totals, filters } = single();
    applyPage(filters, partition, "desc", page([run(3), run(2, 0.25), run(2, null), run(1, 0.5)]), totals);
    expect(partition.done).toBe(true);
    expect(partition.asc?.phase).toBe("waiting");
    expect(totals.byStatus.PROCESSED).toBe(4);
    expect(totals.runsWithoutUsage).toBe(1);
    expect(formatDecimal(totals.credits)).toBe("1.75");
  });

  it("takes the end of the list from the missing cursor, never from a short page", () => {
    const { partition, totals, filters } = single();
    applyPage(filters, partition, "desc", page([run(9)], "c1"), totals);
    expect(partition.done).toBe(false);
    expect(partition.desc).toMatchObject({ phase: "active", cursor: "c1" });
    expect(partition.asc?.phase).toBe("active");
    applyPage(filters, partition, "desc", page([], "c2"), totals);
    expect(partition.done).toBe(false);
    applyPage(filters, partition, "desc", page([]), totals);
    expect(partition.done).toBe(true);
    expect(totals.byStatus.PROCESSED).toBe(1);
  });

  it("keeps an instant open across pages and counts it once, whole, when the walk leaves it", () => {
    const { partition, totals, filters } = single();
    applyPage(filters, partition, "desc", page([run(5), run(5)], "c1"), totals);
    expect(totals.byStatus.PROCESSED).toBe(0);
    expect(partition.desc?.open).toMatchObject({ at: t(5), tally: { runs: 2 } });
    applyPage(filters, partition, "desc", page([run(5), run(5)], "c2"), totals);
    expect(totals.byStatus.PROCESSED).toBe(0);
    applyPage(filters, partition, "desc", page([run(5), run(4)], "c3"), totals);
    expect(totals.byStatus.PROCESSED).toBe(5);
    expect(partition.descClaimed).toBe(t(5));
    expect(partition.desc?.open).toMatchObject({ at: t(4), tally: { runs: 1 } });
  });

  it("stops where the two walks meet, counting the meeting instant once", () => {
    const { partition, totals, filters } = single();
    applyPage(filters, partition, "desc", page([run(5), run(4)], "d1"), totals);
    applyPage(filters, partition, "asc", page([run(1), run(2)], "a1"), totals);
    expect(totals.byStatus.PROCESSED).toBe(2);
    expect(partition).toMatchObject({ descClaimed: t(5), ascClaimed: t(1) });
    applyPage(filters, partition, "desc", page([run(3), run(2)], "d2"), totals);
    expect(partition).toMatchObject({ descClaimed: t(3), done: false });
    // The ascending walk reaches an instant the descending one claimed: it closes 2 and ends.
    applyPage(filters, partition, "asc", page([run(3)], "a2"), totals);
    expect(partition).toMatchObject({ ascClaimed: t(2), done: true });
    expect(totals.byStatus.PROCESSED).toBe(5);
  });

  it("lets the descending walk stop at an instant the ascending one claimed", () => {
    const { partition, totals, filters } = single();
    applyPage(filters, partition, "desc", page([run(9)], "d1"), totals);
    applyPage(filters, partition, "asc", page([run(1), run(2), run(3)], "a1"), totals);
    expect(partition.ascClaimed).toBe(t(2));
    applyPage(filters, partition, "desc", page([run(8), run(3), run(2)], "d2"), totals);
    expect(partition.done).toBe(true);
    // 9 and 8 from the top, 1 and 2 from the bottom, and 3 by whichever closed it: the top.
    expect(totals.byStatus.PROCESSED).toBe(5);
  });

  it("skips a run newer than the instant the descending walk has left (created during the scan)", () => {
    const { partition, totals, filters } = single();
    applyPage(filters, partition, "desc", page([run(5), run(4)], "c1"), totals);
    applyPage(filters, partition, "desc", page([run(7), run(4), run(3)]), totals);
    // 5, both runs at 4, and 3; not 7.
    expect(totals.byStatus.PROCESSED).toBe(4);
  });

  it("lets the ascending walk read to the end past an instant the descending walk holds open", () => {
    const { partition, totals, filters } = single();
    // The newest instant, 5, is still open: the descending walk has claimed nothing yet.
    applyPage(filters, partition, "desc", page([run(5), run(5)], "d1"), totals);
    // A run created meanwhile, at 6, lets the ascending walk pass 5, all three runs of it.
    applyPage(filters, partition, "asc", page([run(4), run(5), run(5), run(5), run(6)]), totals);
    expect(partition).toMatchObject({ ascClaimed: t(6), done: true });
    expect(totals.byStatus.PROCESSED).toBe(5);
  });

  it("drops the descending walk's partial instant once the ascending walk has claimed it", () => {
    const { partition, totals, filters } = single();
    applyPage(filters, partition, "desc", page([run(5), run(5)], "d1"), totals);
    applyPage(filters, partition, "asc", page([run(4), run(5), run(5), run(5), run(6)], "a1"), totals);
    expect(partition).toMatchObject({ ascClaimed: t(5), done: false });
    applyPage(filters, partition, "desc", page([run(5), run(4)], "d2"), totals);
    expect(partition.done).toBe(true);
    // 4 and the three runs at 5 from the bottom; 6 is still open and the top's two at 5 are dropped.
    expect(totals.byStatus.PROCESSED).toBe(4);
  });

  it.each<[string, StatsFilters, Direction, Record<string, unknown>[], number, boolean]>([
    [
      "since: newest first, stops at the first older run",
      { since: iso(3) },
      "desc",
      [run(5), run(4), run(3), run(2), run(1)],
      3,
      true,
    ],
    [
      "since equal to a run's instant counts it",
      { since: iso(5) },
      "desc",
      [run(5), run(5), run(4)],
      2,
      true,
    ],
    ["since after every run", { since: iso(10) }, "desc", [run(5), run(4)], 0, true],
    [
      "until: newest first skips newer runs",
      { since: iso(0), until: iso(3) },
      "desc",
      [run(5), run(4), run(3), run(2)],
      2,
      false,
    ],
    [
      "until: oldest first, stops at the first newer run",
      { until: iso(2) },
      "asc",
      [run(1), run(2), run(2), run(3)],
      3,
      true,
    ],
    ["until before every run", { until: iso(0) }, "asc", [run(1), run(2)], 0, true],
  ])("bounds the walk by %s", (_name, bounds, direction, runs, counted, done) => {
    const { partition, totals, filters } = single(bounds);
    applyPage(filters, partition, direction, page(runs, "more"), totals);
    expect(partition.done).toBe(done);
    if (!done) applyPage(filters, partition, direction, page([]), totals);
    expect(totals.byStatus.PROCESSED).toBe(counted);
  });

  it("fails when Extend's cursor does not advance", () => {
    const { partition, totals, filters } = single();
    applyPage(filters, partition, "desc", page([run(5)], "same"), totals);
    const error = (() => {
      try {
        applyPage(filters, partition, "desc", page([run(4)], "same"), totals);
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(error).toBeInstanceOf(ApiError);
    expect(error).toMatchObject({ code: "UPSTREAM_INVALID_RESPONSE" });
  });

  it.each([
    ["no createdAt", { id: "run_x", usage: null }],
    ["a createdAt that is not a date", { id: "run_x", createdAt: "yesterday", usage: null }],
    ["a createdAt that is not text", { id: "run_x", createdAt: 1_700_000_000_000, usage: null }],
  ])("fails on a run with %s", (_name, bad) => {
    const { partition, totals, filters } = single();
    expect(() => applyPage(filters, partition, "desc", page([run(5), bad]), totals)).toThrow(ApiError);
  });

  it("ignores a page that arrives after its partition is done", () => {
    const { partition, totals, filters } = single();
    applyPage(filters, partition, "desc", page([run(2), run(1)]), totals);
    const before = structuredClone({ partition, totals });
    applyPage(filters, partition, "asc", page([run(1), run(2), run(3)], "late"), totals);
    expect({ partition, totals }).toEqual(before);
  });

  it("completes the scan only when every partition is done", () => {
    const state = planScan({});
    state.partitions.forEach((partition, i) => {
      expect(isComplete(state)).toBe(false);
      applyPage({}, partition, "desc", page(i % 2 ? [] : [run(i)]), state.totals);
    });
    expect(isComplete(state)).toBe(true);
    expect(Object.values(state.totals.byStatus).reduce((a, b) => a + b, 0)).toBe(4);
  });
});

interface ModelRun {
  minute: number;
  milliCredits: number | null;
  /** Where the run sorts among runs of the same instant, newest first and oldest first. */
  descTie: number;
  ascTie: number;
  /** Created after the scan started (it has no credits, so the sums stay exact). */
  late: boolean;
}

function inOrder(runs: readonly ModelRun[], direction: Direction): ModelRun[] {
  const tie = direction === "desc" ? "descTie" : "ascTie";
  const sign = direction === "asc" ? 1 : -1;
  return [...runs].sort((a, b) => sign * (a.minute - b.minute) || a[tie] - b[tie]);
}

/**
 * Extend's list as a keyset: a cursor names the last run a page returned, and the next page is
 * what follows it in the walk's order now, so runs created meanwhile show up only ahead of it.
 */
function nextPage(all: readonly ModelRun[], direction: Direction, cursor: string | undefined, size: number) {
  const list = inOrder(all, direction);
  const from = cursor === undefined ? 0 : list.indexOf(all[Number(cursor.split(":")[1])] as ModelRun) + 1;
  const runs = list.slice(from, from + size);
  const last = runs[runs.length - 1];
  const more = from + size < list.length && last !== undefined;
  return page(
    runs.map((r) => ({
      id: `run_${all.indexOf(r)}`,
      createdAt: iso(r.minute),
      usage: r.milliCredits === null ? null : { credits: r.milliCredits / 1000 },
    })),
    more ? `${direction}:${all.indexOf(last)}` : undefined,
  );
}

const modelArb = fc.record({
  // Fewer distinct instants make more ties, up to one instant for every run.
  instants: fc.oneof(fc.constant(1), fc.constant(2), fc.integer({ min: 1, max: 10 })),
  runs: fc.array(
    fc.record({
      minute: fc.integer({ min: 0, max: 9 }),
      milliCredits: fc.option(fc.integer({ min: 0, max: 100_000 }), { nil: null }),
      descTie: fc.integer(),
      ascTie: fc.integer(),
    }),
    { maxLength: 40 },
  ),
  // Runs created while the scan runs: newer than any other, after the given page.
  late: fc.oneof(
    fc.constant([]),
    fc.array(
      fc.record({
        afterPage: fc.integer({ min: 1, max: 6 }),
        minute: fc.integer({ min: 10, max: 12 }),
        descTie: fc.integer(),
        ascTie: fc.integer(),
      }),
      { minLength: 1, maxLength: 6 },
    ),
  ),
  pageSizes: fc.array(fc.integer({ min: 1, max: 6 }), { minLength: 1, maxLength: 20 }),
  // Which walk goes next while both may: streaks of one walk, so one can overtake the other.
  schedule: fc
    .array(fc.tuple(fc.boolean(), fc.integer({ min: 1, max: 20 })), { minLength: 1, maxLength: 12 })
    .map((streaks) => streaks.flatMap(([desc, length]) => Array.from({ length }, () => desc))),
  // Without bounds both walks run, so that case gets most of the runs.
  bounds: fc.oneof(
    { weight: 3, arbitrary: fc.constant({}) },
    fc.record({ since: fc.integer({ min: -1, max: 13 }) }),
    fc.record({ until: fc.integer({ min: -1, max: 13 }) }),
    fc.record({ since: fc.integer({ min: -1, max: 13 }), until: fc.integer({ min: -1, max: 13 }) }),
  ),
});

describe("the walks, against a model of Extend's list", () => {
  it("count every run within the bounds once (one created mid-scan at most once), whatever the pages, ties and turns", () => {
    fc.assert(
      fc.property(modelArb, (model) => {
        const { since, until } = model.bounds as { since?: number; until?: number };
        fc.pre(since === undefined || until === undefined || since <= until);
        const bounds: StatsFilters = {
          ...(since === undefined ? {} : { since: iso(since) }),
          ...(until === undefined ? {} : { until: iso(until) }),
        };
        const inBounds = (r: ModelRun) =>
          (since === undefined || r.minute >= since) && (until === undefined || r.minute <= until);
        const { partition, totals, filters } = single(bounds);
        const all: ModelRun[] = model.runs.map((r) => ({
          ...r,
          minute: r.minute % model.instants,
          late: false,
        }));
        let pages = 0;
        let turn = 0;
        while (!partition.done) {
          for (const r of model.late) {
            if (r.afterPage === pages) all.push({ ...r, milliCredits: null, late: true });
          }
          const active = (["desc", "asc"] as const).filter((d) => partition[d]?.phase === "active");
          const choice = model.schedule[turn++ % model.schedule.length] ? "desc" : "asc";
          const direction = active.length === 1 ? active[0] : choice;
          if (!direction) throw new Error("no walk can go on, yet the partition is not done");
          const size = model.pageSizes[pages % model.pageSizes.length] ?? 1;
          applyPage(
            filters,
            partition,
            direction,
            nextPage(all, direction, partition[direction]?.cursor, size),
            totals,
          );
          pages += 1;
          expect(pages, "the walks never end").toBeLessThanOrEqual(2 * all.length + 4);
        }
        const existing = all.filter((r) => !r.late && inBounds(r));
        const late = all.filter((r) => r.late && inBounds(r));
        const counted = totals.byStatus.PROCESSED;
        if (late.length === 0) expect(counted).toBe(existing.length);
        // A run created mid-scan is counted at most once; every other run exactly once.
        expect(counted).toBeGreaterThanOrEqual(existing.length);
        expect(counted).toBeLessThanOrEqual(existing.length + late.length);
        const withoutUsage = existing.filter((r) => r.milliCredits === null).length;
        expect(totals.runsWithoutUsage - withoutUsage).toBe(counted - existing.length);
        const milli = existing.reduce((sum, r) => sum + BigInt(r.milliCredits ?? 0), 0n);
        expect(formatDecimal(totals.credits)).toBe(formatMilli(milli));
        expect(formatDecimal(totals.totalCredits)).toBe(formatMilli(milli));
        const others = WORKFLOW_RUN_STATUSES.filter((s) => s !== "PROCESSED");
        expect(others.every((s) => totals.byStatus[s] === 0)).toBe(true);
      }),
      { numRuns: 1000 },
    );
  });
});

/** Thousandths as plain decimal text, trailing zeros dropped. */
function formatMilli(milli: bigint): string {
  const fraction = (milli % 1000n).toString().padStart(3, "0").replace(/0+$/, "");
  return fraction ? `${milli / 1000n}.${fraction}` : `${milli / 1000n}`;
}
