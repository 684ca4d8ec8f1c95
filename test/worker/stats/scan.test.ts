import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type FakeRun, generateRuns, listAll } from "../../../fake/extend.ts";
import { getStats, type ReferenceFilters, referenceStats, scanToEnd, summary } from "../support/stats.ts";
import { isolatedTenant } from "../support/tenant.ts";

/** Runs where a share of neighbours share one createdAt instant, so equal instants cross pages. */
function withTies(runs: FakeRun[], tieRate: number, seed: number): FakeRun[] {
  let state = seed >>> 0 || 1;
  const random = () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 4294967296;
  };
  const out: FakeRun[] = [];
  for (const run of runs) {
    const previous = out[out.length - 1];
    out.push(previous && random() < tieRate ? { ...run, createdAt: previous.createdAt } : run);
  }
  return out;
}

const directions = (calls: URL[]) => calls.map((url) => url.searchParams.get("sortDir"));

describe("GET /stats: the scan counts every matching run exactly once", () => {
  it("matches the reference fold on random datasets, page sizes, page budgets and filters", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          size: fc.integer({ min: 0, max: 260 }),
          seed: fc.integer({ min: 1, max: 1_000_000 }),
          tieRate: fc.constantFrom(0, 0.3, 0.9),
          pageLimit: fc.integer({ min: 2, max: 60 }),
          maxPages: fc.integer({ min: 2, max: 40 }),
          filter: fc.constantFrom("none", "status", "workflow", "since", "until", "range", "file"),
          cut: fc.double({ min: 0, max: 1, noNaN: true }),
        }),
        async ({ size, seed, tieRate, pageLimit, maxPages, filter, cut }) => {
          const runs = withTies(generateRuns({ size, seed }), tieRate, seed);
          const at = (fraction: number) =>
            runs[Math.min(runs.length - 1, Math.floor(fraction * runs.length))]?.createdAt ??
            "2026-10-01T00:00:00.000Z";
          const filters: ReferenceFilters = {
            none: {},
            status: { status: "PROCESSED" },
            workflow: { workflowId: "workflow_BMdfq_yWM3sT-ZzvCnA3f" },
            since: { since: at(cut) },
            until: { until: at(cut) },
            range: { since: at(cut / 2), until: at(cut) },
            file: { fileNameContains: "pdf" },
          }[filter];
          const tenant = isolatedTenant({ runs, pageLimit });
          const answers = await scanToEnd(tenant, { ...filters }, { STATS_MAX_PAGES: String(maxPages) });
          const last = answers[answers.length - 1];
          expect(last && summary(last)).toEqual(referenceStats(tenant.fake.runs, filters));
          // Each request stays within its page budget, and pagesFetched adds up across requests.
          let previous = 0;
          for (const answer of answers) {
            expect(answer.pagesFetched - previous).toBeLessThanOrEqual(maxPages);
            previous = answer.pagesFetched;
          }
          expect(last?.pagesFetched).toBe(tenant.fake.listCalls.length);
        },
      ),
      { numRuns: 30 },
    );
  }, 120_000);

  it("counts a createdAt instant shared by hundreds of runs across many pages once", async () => {
    const base = generateRuns({ size: 400, seed: 9 });
    const instant = base[0]?.createdAt ?? "";
    const runs = base.map((run) => ({ ...run, status: "FAILED" as const, createdAt: instant }));
    const tenant = isolatedTenant({ runs, pageLimit: 7 });
    const [answer, ...rest] = await scanToEnd(tenant, {}, { STATS_MAX_PAGES: "200" });
    expect(rest).toHaveLength(0);
    expect(answer && summary(answer)).toEqual(referenceStats(tenant.fake.runs));
    expect(answer?.byStatus?.FAILED).toBe(400);
  });

  it("walks a large partition from both ends and stops where the walks meet", async () => {
    const runs = generateRuns({ size: 3000, seed: 21 });
    const processed = listAll(runs, { status: "PROCESSED" }).length;
    const tenant = isolatedTenant({ runs, pageLimit: 100 });
    const { body } = await getStats(tenant, { status: "PROCESSED" }, { STATS_MAX_PAGES: "200" });
    expect(body.byStatus?.PROCESSED).toBe(processed);
    const dirs = directions(tenant.calls);
    const pagesNeeded = Math.ceil(processed / 100);
    expect(dirs.filter((d) => d === "desc").length).toBeGreaterThan(pagesNeeded / 3);
    expect(dirs.filter((d) => d === "asc").length).toBeGreaterThan(pagesNeeded / 3);
    // At most one page per walk is read past the meeting point.
    expect(tenant.calls.length).toBeLessThanOrEqual(pagesNeeded + 2);
  });

  it("reads a partition that fits one page once, without opening its ascending end", async () => {
    const tenant = isolatedTenant({ dataset: { size: 900, seed: 4 } });
    const { body } = await getStats(tenant, {});
    expect(body.total).toBe(900);
    expect(tenant.calls).toHaveLength(8);
    expect(new Set(directions(tenant.calls))).toEqual(new Set(["desc"]));
    expect(new Set(tenant.calls.map((u) => u.searchParams.get("status"))).size).toBe(8);
  });
});

describe("GET /stats: since and until stop the walk early", () => {
  const runs = generateRuns({ size: 2000, seed: 33 });
  const processed = listAll(runs, { status: "PROCESSED", sortBy: "createdAt", sortDir: "desc" });
  const newestFirst = (k: number) => processed[k]?.createdAt ?? "";

  it.each([
    // [case, filters, pages the newest-first walk needs at 100 runs a page]
    ["since within the first page", () => ({ since: newestFirst(40) }), 1],
    ["since on a page boundary", () => ({ since: newestFirst(99) }), 2],
    ["since three pages down", () => ({ since: newestFirst(250) }), 3],
    ["since after every run", () => ({ since: "2030-01-01T00:00:00Z" }), 1],
    [
      "since and until (skips the newest runs, then stops)",
      () => ({ since: newestFirst(450), until: newestFirst(120) }),
      5,
    ],
  ] as const)("%s", async (_, filtersOf, pages) => {
    const filters = filtersOf();
    const tenant = isolatedTenant({ runs, pageLimit: 100 });
    const { body } = await getStats(tenant, { status: "PROCESSED", ...filters }, { STATS_MAX_PAGES: "200" });
    expect(summary(body)).toEqual(referenceStats(tenant.fake.runs, { status: "PROCESSED", ...filters }));
    expect(tenant.calls).toHaveLength(pages);
    expect(body.pagesFetched).toBe(pages);
    expect(new Set(directions(tenant.calls))).toEqual(new Set(["desc"]));
  });

  it("walks oldest first with only until, and stops after it", async () => {
    const oldestFirst = [...processed].reverse();
    const until = oldestFirst[130]?.createdAt ?? "";
    const tenant = isolatedTenant({ runs, pageLimit: 100 });
    const { body } = await getStats(tenant, { status: "PROCESSED", until }, { STATS_MAX_PAGES: "200" });
    expect(summary(body)).toEqual(referenceStats(tenant.fake.runs, { status: "PROCESSED", until }));
    expect(tenant.calls).toHaveLength(2);
    expect(new Set(directions(tenant.calls))).toEqual(new Set(["asc"]));
  });

  it("reads one page per status for since in the last hour, whatever the dataset size", async () => {
    const big = generateRuns({ size: 6000, seed: 2 });
    const since = new Date(Date.parse(big[big.length - 1]?.createdAt ?? "") - 3_600_000).toISOString();
    const tenant = isolatedTenant({ runs: big });
    const { body } = await getStats(tenant, { since });
    expect(summary(body)).toEqual(referenceStats(tenant.fake.runs, { since }));
    expect(tenant.calls).toHaveLength(8);
  });
});
