// The sync engine inside a real Durable Object (its SQLite storage), against the fake Extend
// through the real client, with a clock the test moves.
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { FakeExtend, type FakeRun, generateRuns } from "../../../fake/extend.ts";
import { ApiError } from "../../../src/app/errors.ts";
import { indexFilters, indexStatsBody } from "../../../src/run-index/answer.ts";
import { factsFromWorkflowRun, rowFromListRun } from "../../../src/run-index/row.ts";
import { buildFilterIndexes, migrate } from "../../../src/run-index/schema.ts";
import { queryTotals, upsertListRow } from "../../../src/run-index/store.ts";
import {
  CANDIDATE_MAX_FAILURES,
  RECONCILE_AFTER_BUILD_MS,
  type RunIndexSync,
  SYNC_RETRY_CAP_MS,
} from "../../../src/run-index/sync.ts";
import type { SyncUpstream } from "../../../src/run-index/upstream.ts";
import type { StatsFilters } from "../../../src/stats/filters.ts";
import { TEST_UPSTREAM_KEY } from "../support/constants.ts";
import {
  drain,
  ENGINE_EPOCH,
  ENGINE_SETTINGS,
  type EngineClock,
  engineUpstream,
  freshObject,
  inEngine,
} from "../support/run-index.ts";
import { type Reference, type ReferenceFilters, referenceStats, summary } from "../support/stats.ts";

const ONE_AT_A_TIME = { maxCalls: 1, maxMs: 60_000, concurrency: 1 };
/** Reconciles are due 30 s after the last one (the shortest INDEX_RECONCILE_SECONDS allows). */
const RECONCILING = { ...ENGINE_SETTINGS, reconcileSeconds: 30 };

function fakeWith(options: {
  runs?: FakeRun[];
  size?: number;
  seed?: number;
  memoizeLists?: boolean;
}): FakeExtend {
  return new FakeExtend({
    apiKey: TEST_UPSTREAM_KEY,
    memoizeLists: options.memoizeLists ?? false,
    ...(options.runs
      ? { runs: options.runs }
      : { dataset: { size: options.size ?? 300, seed: options.seed ?? 3 } }),
  });
}

function indexSummary(sql: SqlStorage, filters: ReferenceFilters = {}): Partial<Reference> {
  const stats = filters as StatsFilters;
  return summary(indexStatsBody(stats, queryTotals(sql, indexFilters(stats, "folded")), 0, 0));
}

const FILTER_INDEXES = ["runs_by_batch", "runs_by_created", "runs_by_workflow_created"];

function filterIndexes(sql: SqlStorage): string[] {
  return sql
    .exec<{ name: string }>(
      `SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'runs' AND name IN (?, ?, ?)
       ORDER BY name`,
      ...FILTER_INDEXES,
    )
    .toArray()
    .map((row) => row.name);
}

function storedIds(sql: SqlStorage): Set<string> {
  return new Set(
    sql
      .exec<{ id: string }>(`SELECT id FROM runs`)
      .toArray()
      .map((row) => row.id),
  );
}

function rowCount(sql: SqlStorage): number {
  return sql.exec<{ n: number }>(`SELECT count(*) AS n FROM runs`).one().n;
}

/** A spread of filters over the fake's own values. */
function sampleFilters(runs: readonly FakeRun[]): ReferenceFilters[] {
  const middle = runs[Math.floor(runs.length / 2)];
  const batch = runs.find((r) => r.batchId !== null)?.batchId ?? undefined;
  return [
    {},
    { status: "PROCESSED" },
    { status: "CANCELLING" },
    { workflowId: runs[0]?.workflow.id },
    { workflowId: runs[0]?.workflow.id, status: "FAILED" },
    { batchId: batch },
    { fileNameContains: "invoice" },
    { fileNameContains: "März" },
    { since: middle?.createdAt },
    { until: middle?.createdAt, status: "PROCESSED" },
  ];
}

async function build(sync: RunIndexSync, limits = ONE_AT_A_TIME): Promise<void> {
  sync.use();
  await drain(sync, limits, 5_000);
  expect(sync.state().phase).toBe("ready");
}

/** build, then the reconcile that follows a whole build: the index at rest, as time goes on. */
async function builtAndReconciled(
  sync: RunIndexSync,
  clock: EngineClock,
  limits = ONE_AT_A_TIME,
): Promise<void> {
  await build(sync, limits);
  clock.now += RECONCILE_AFTER_BUILD_MS;
  await drain(sync, limits, 5_000);
  expect(sync.state().reconcileStartedAt).toBeNull();
}

/** Every run of one list query, page by page through the fake's HTTP handler. */
async function pagedIds(fake: FakeExtend, query: Record<string, string>): Promise<string[]> {
  const ids: string[] = [];
  let token: string | undefined;
  do {
    const params = new URLSearchParams({
      ...query,
      maxPageSize: "37",
      ...(token ? { nextPageToken: token } : {}),
    });
    const response = await fake.handle(
      new Request(`https://fake-extend.test/workflow_runs?${params}`, {
        headers: { authorization: `Bearer ${TEST_UPSTREAM_KEY}`, "x-extend-api-version": "2026-02-09" },
      }),
    );
    const page = (await response.json()) as { data: { id: string }[]; nextPageToken?: string };
    ids.push(...page.data.map((run) => run.id));
    token = page.nextPageToken;
  } while (token !== undefined);
  return ids;
}

describe("the fake with memoized lists (as the benchmarks and npm start run it)", () => {
  it("pages every partition exactly as the fake that sorts on every call", async () => {
    const runs = generateRuns({ size: 600, seed: 12 });
    const plain = fakeWith({ runs });
    const memoized = fakeWith({ runs, memoizeLists: true });
    const workflows = [...new Set(runs.map((run) => run.workflow.id))];
    const statuses = [...new Set(runs.map((run) => run.status))];
    const partitions = [
      {},
      ...workflows.map((workflowId) => ({ workflowId })),
      ...statuses.map((status) => ({ status })),
    ];
    for (const partition of partitions) {
      for (const sortBy of ["createdAt", "updatedAt"]) {
        for (const sortDir of ["asc", "desc"]) {
          const query = { ...partition, sortBy, sortDir };
          const expected = await pagedIds(plain, query);
          expect(expected.length).toBeGreaterThan(0);
          // Twice: the second walk is served from the lists the first one kept.
          expect(await pagedIds(memoized, query), JSON.stringify(query)).toEqual(expected);
          expect(await pagedIds(memoized, query), JSON.stringify(query)).toEqual(expected);
        }
      }
    }
  });
});

describe("backfill", () => {
  it("indexes every run once; every filter answers as a fold over Extend's runs", async () => {
    const fake = fakeWith({ size: 400, seed: 5 });
    const upstream = engineUpstream(fake, { pageLimit: 40 });
    const clock: EngineClock = { now: ENGINE_EPOCH };
    await inEngine(freshObject(), upstream, clock, async ({ sync, sql }) => {
      await build(sync, { maxCalls: 40, maxMs: 60_000, concurrency: 6 });
      expect(rowCount(sql)).toBe(400);
      for (const filters of sampleFilters(fake.runs)) {
        expect(indexSummary(sql, filters), JSON.stringify(filters)).toEqual(
          referenceStats(fake.runs, filters),
        );
      }
      // One walk from each end per workflow at createdAt, then one head walk at updatedAt.
      const walks = upstream.lists.filter((q) => q.sortBy === "createdAt");
      const workflows = new Set(fake.runs.map((r) => r.workflow.id));
      expect(workflows.size).toBeGreaterThanOrEqual(4);
      expect(new Set(walks.map((q) => `${q.workflowId}:${q.sortDir}`)).size).toBe(workflows.size * 2);
      expect(walks.every((q) => q.status === undefined && q.workflowId !== undefined)).toBe(true);
      expect(upstream.workflowPages).toBe(1);
      expect(upstream.lists.every((q) => q.maxPageSize === 1000)).toBe(true);
      expect(upstream.lists.filter((q) => q.sortBy === "updatedAt" && !q.fileNameContains)).toEqual([
        { sortBy: "updatedAt", sortDir: "desc", maxPageSize: 1000 },
      ]);
      // And one question of how Extend matches file names: this one ignores case, which one call tells.
      expect(upstream.lists.filter((q) => q.fileNameContains)).toHaveLength(1);
      expect(upstream.gets).toEqual([]);
    });
  });

  it("walks by status when Extend cannot list the workflows", async () => {
    const fake = new FakeExtend({
      apiKey: TEST_UPSTREAM_KEY,
      dataset: { size: 200, seed: 5 },
      listWorkflows: false,
    });
    const upstream = engineUpstream(fake, { pageLimit: 40 });
    const clock: EngineClock = { now: ENGINE_EPOCH };
    await inEngine(freshObject(), upstream, clock, async ({ sync, sql }) => {
      await build(sync, { maxCalls: 40, maxMs: 60_000, concurrency: 6 });
      const walks = upstream.lists.filter((q) => q.sortBy === "createdAt");
      expect(new Set(walks.map((q) => `${q.status}:${q.sortDir}`)).size).toBeGreaterThanOrEqual(8);
      expect(walks.every((q) => q.workflowId === undefined && q.status !== undefined)).toBe(true);
      expect(indexSummary(sql)).toEqual(referenceStats(fake.runs));
    });
  });

  it("walks by status when the tenant has too few workflows to spread the walks", async () => {
    const runs = generateRuns({ size: 150, seed: 8 }).map((run) => ({
      ...run,
      workflow: { ...run.workflow, id: "workflow_only_one" },
    }));
    const fake = fakeWith({ runs });
    const upstream = engineUpstream(fake, { pageLimit: 40 });
    await inEngine(freshObject(), upstream, { now: ENGINE_EPOCH }, async ({ sync, sql }) => {
      await build(sync, { maxCalls: 40, maxMs: 60_000, concurrency: 6 });
      expect(
        upstream.lists.filter((q) => q.sortBy === "createdAt").every((q) => q.status !== undefined),
      ).toBe(true);
      expect(indexSummary(sql)).toEqual(referenceStats(fake.runs));
      // Nothing changed while it walked: no reconcile follows at once.
      expect(sync.nextWakeAt(ENGINE_EPOCH)).toBe(ENGINE_EPOCH + ENGINE_SETTINGS.syncSeconds * 1000);
    });
  });

  it("reconciles at once when a run turns up of a workflow Extend did not list", async () => {
    const runs = generateRuns({ size: 300, seed: 6 });
    const unlisted = runs[0]?.workflow.id ?? "";
    // One run of it changed just now: the head walk that ends the backfill reads it.
    const recent = runs.findIndex((run) => run.workflow.id === unlisted);
    runs[recent] = { ...(runs[recent] as FakeRun), updatedAt: new Date(ENGINE_EPOCH).toISOString() };
    const fake = fakeWith({ runs });
    const older = fake.runs.filter(
      (run) => run.workflow.id === unlisted && Date.parse(run.updatedAt) < ENGINE_EPOCH,
    );
    expect(older.length).toBeGreaterThan(10);
    const upstream = engineUpstream(fake, { pageLimit: 40 });
    const listWorkflows = upstream.listWorkflows.bind(upstream);
    upstream.listWorkflows = async (token, signal) => {
      const page = await listWorkflows(token, signal);
      return "ids" in page ? { ...page, ids: page.ids.filter((id) => id !== unlisted) } : page;
    };
    const clock: EngineClock = { now: ENGINE_EPOCH };
    await inEngine(freshObject(), upstream, clock, async ({ sync, sql }) => {
      await build(sync, { maxCalls: 40, maxMs: 60_000, concurrency: 6 });
      const walked = upstream.lists.filter((q) => q.sortBy === "createdAt");
      expect(walked.some((q) => q.workflowId === unlisted)).toBe(false);
      // The reconcile (by status) ran in the same drain, not a day later.
      expect(walked.some((q) => q.status !== undefined)).toBe(true);
      expect(rowCount(sql)).toBe(300);
      for (const filters of [{}, { workflowId: unlisted }, { status: "PROCESSED" as const }]) {
        expect(indexSummary(sql, filters), JSON.stringify(filters)).toEqual(
          referenceStats(fake.runs, filters),
        );
      }
      expect(sync.nextWakeAt(clock.now)).toBeGreaterThan(clock.now);
    });
  });

  it("walked by status while a run changed, reconciles at once: a run the cursor stepped over is found", async () => {
    const runs = generateRuns({ size: 150, seed: 8 }).map((run) => ({
      ...run,
      workflow: { ...run.workflow, id: "workflow_only_one" },
    }));
    // A run that changed status while the walks ran (the head walk that ends the backfill reads it).
    runs[10] = {
      ...(runs[10] as FakeRun),
      status: "FAILED",
      updatedAt: new Date(ENGINE_EPOCH).toISOString(),
    };
    const fake = fakeWith({ runs });
    // The walks' pages leave this one out, as an offset cursor does once a run before it left.
    const stepped = (fake.runs.find((run) => Date.parse(run.updatedAt) < ENGINE_EPOCH) as FakeRun).id;
    const hidden = new Set([stepped]);
    const upstream = engineUpstream(fake, { pageLimit: 40, hiddenFromList: hidden });
    const list = upstream.list.bind(upstream);
    upstream.list = (query, signal) => {
      if (query.sortBy === "updatedAt") hidden.clear();
      return list(query, signal);
    };
    const clock: EngineClock = { now: ENGINE_EPOCH };
    await inEngine(freshObject(), upstream, clock, async ({ sync, sql }) => {
      await build(sync);
      expect(storedIds(sql).has(stepped)).toBe(true);
      expect(indexSummary(sql)).toEqual(referenceStats(fake.runs));
      expect(sync.state().lastReconcileAt).toBe(ENGINE_EPOCH);
    });
  });

  it("after a whole backfill by workflow, reconciles a minute later: a run stepped over by a deletion is found", async () => {
    const fake = fakeWith({ size: 300, seed: 6 });
    // The walks' pages leave this run out, as an offset cursor does once a run before it was
    // deleted: nothing updates it, so no head walk brings it.
    const stepped = (fake.runs[40] as FakeRun).id;
    const hidden = new Set([stepped]);
    const upstream = engineUpstream(fake, { pageLimit: 40, hiddenFromList: hidden });
    const clock: EngineClock = { now: ENGINE_EPOCH };
    await inEngine(freshObject(), upstream, clock, async ({ sync, sql }) => {
      await build(sync, { maxCalls: 40, maxMs: 60_000, concurrency: 6 });
      expect(upstream.lists.some((q) => q.status !== undefined)).toBe(false);
      expect(storedIds(sql).has(stepped)).toBe(false);
      // Not at once: the build's own reading is done and the index answers meanwhile.
      await drain(sync);
      expect(upstream.lists.some((q) => q.status !== undefined)).toBe(false);
      expect(sync.nextWakeAt()).toBeLessThanOrEqual(clock.now + RECONCILE_AFTER_BUILD_MS);
      hidden.clear();
      clock.now += RECONCILE_AFTER_BUILD_MS;
      await drain(sync, { maxCalls: 40, maxMs: 60_000, concurrency: 6 });
      expect(upstream.lists.some((q) => q.status !== undefined)).toBe(true);
      expect(storedIds(sql).has(stepped)).toBe(true);
      expect(indexSummary(sql)).toEqual(referenceStats(fake.runs));
    });
  });

  it("interrupted at every page boundary, resumes with nothing lost or doubled", async () => {
    const fake = fakeWith({ size: 300, seed: 9 });
    const clock: EngineClock = { now: ENGINE_EPOCH };
    const clean = engineUpstream(fake, { pageLimit: 50 });
    await inEngine(freshObject(), clean, clock, async ({ sync }) => build(sync));
    const pages = clean.lists.length;
    expect(pages).toBeGreaterThanOrEqual(10);
    const reference = referenceStats(fake.runs);
    for (let boundary = 0; boundary < pages; boundary++) {
      const stub = freshObject();
      const crashing = engineUpstream(fake, { pageLimit: 50 });
      crashing.failAfter = boundary;
      await inEngine(stub, crashing, clock, async ({ sync }) => {
        sync.use();
        const result = await sync.tick({ ...ONE_AT_A_TIME, maxCalls: pages });
        expect(result.error).toBe("UPSTREAM_ERROR");
      });
      // A new engine over the same storage: what an evicted object restarts with. It waits out
      // the failure's retry time first.
      clock.now += 3_600_000;
      const resumed = engineUpstream(fake, { pageLimit: 50 });
      await inEngine(stub, resumed, clock, async ({ sync, sql }) => {
        await build(sync);
        expect(rowCount(sql), `boundary ${boundary}`).toBe(300);
        expect(indexSummary(sql), `boundary ${boundary}`).toEqual(reference);
      });
      // Each page's rows and cursor were written together: no backfill page was read twice.
      const walked = (u: typeof clean) => u.lists.filter((q) => q.sortBy === "createdAt").length;
      expect(walked(crashing) + walked(resumed), `boundary ${boundary}`).toBe(walked(clean));
    }
  });

  it("writes a page's rows and its cursor together: a crash before the commit leaves neither", async () => {
    const fake = fakeWith({ size: 200, seed: 2 });
    const clock: EngineClock = { now: ENGINE_EPOCH };
    const stub = freshObject();
    const upstream = engineUpstream(fake, { pageLimit: 20 });
    let crashAt: number | undefined = 3;
    const crash = () => {
      if (upstream.lists.length === crashAt) {
        crashAt = undefined;
        throw new Error("evicted mid-write");
      }
    };
    const read = (sql: SqlStorage) => ({
      ids: new Set(
        sql
          .exec<{ id: string }>(`SELECT id FROM runs`)
          .toArray()
          .map((r) => r.id),
      ),
      pages: sql.exec<{ n: number }>(`SELECT sum(pages) AS n FROM run_walks`).one().n,
    });
    await inEngine(
      stub,
      upstream,
      clock,
      async ({ sync, sql }) => {
        sync.use();
        const result = await sync.tick({ ...ONE_AT_A_TIME, maxCalls: 100 });
        expect(result.error).toBe("INTERNAL_ERROR");
        const { ids, pages } = read(sql);
        // Two pages committed; the third page's runs are not in, and no walk moved past it.
        expect(pages).toBe(2);
        const third = upstream.pageIds[2] ?? [];
        expect(third.length).toBeGreaterThan(0);
        expect(third.filter((id) => ids.has(id) && !(upstream.pageIds[0] ?? []).includes(id))).toEqual([]);
      },
      ENGINE_SETTINGS,
      crash,
    );
    clock.now += 3_600_000;
    await inEngine(stub, engineUpstream(fake, { pageLimit: 20 }), clock, async ({ sync, sql }) => {
      await build(sync);
      expect(rowCount(sql)).toBe(200);
      expect(indexSummary(sql)).toEqual(referenceStats(fake.runs));
    });
  });

  it("a page whose commit failed does not count as read for the other end of its partition", async () => {
    const runs = generateRuns({ size: 200, seed: 2 });
    const first = [...new Set(runs.map((run) => run.workflow.id))].sort()[0] ?? "";
    const inFirst = runs.filter((run) => run.workflow.id === first).length;
    // Each end's first page covers more than half of the partition: together they cover it all.
    const pageLimit = Math.ceil((inFirst * 2) / 3);
    const fake = fakeWith({ runs });
    const upstream = engineUpstream(fake, { pageLimit });
    let failed: () => void = () => undefined;
    const afterFailure = new Promise<void>((resolve) => {
      failed = resolve;
    });
    // The other end's page is already read when the first end's commit fails, so it lands after.
    const gated: SyncUpstream = {
      list: async (query, signal) => {
        const page = await upstream.list(query, new AbortController().signal);
        if (query.workflowId === first && query.sortDir === "desc") await afterFailure;
        else signal.throwIfAborted();
        return page;
      },
      getRun: (id, signal) => upstream.getRun(id, signal),
      listWorkflows: (token, signal) => upstream.listWorkflows(token, signal),
    };
    let crashed = false;
    const crash = () => {
      if (!crashed && upstream.lists.length === 2) {
        crashed = true;
        failed();
        throw new Error("storage refused the commit");
      }
    };
    const clock: EngineClock = { now: ENGINE_EPOCH };
    const stub = freshObject();
    await inEngine(
      stub,
      gated,
      clock,
      async ({ sync }) => {
        sync.use();
        const result = await sync.tick({ maxCalls: 100, maxMs: 60_000, concurrency: 2 });
        expect(result.error).toBe("INTERNAL_ERROR");
        expect(upstream.lists.slice(0, 2).map((q) => `${q.workflowId}:${q.sortDir}`)).toEqual([
          `${first}:asc`,
          `${first}:desc`,
        ]);
      },
      ENGINE_SETTINGS,
      crash,
    );
    clock.now += 3_600_000;
    await inEngine(stub, engineUpstream(fake, { pageLimit }), clock, async ({ sync, sql }) => {
      await build(sync);
      expect(rowCount(sql)).toBe(200);
      expect(indexSummary(sql)).toEqual(referenceStats(fake.runs));
    });
  });
});

describe("runs that overlap (the alarm's)", () => {
  it("return once their calls are started; the next counts them in its concurrency; nothing lost", async () => {
    const fake = fakeWith({ size: 300, seed: 9 });
    const clock: EngineClock = { now: ENGINE_EPOCH };
    const upstream = engineUpstream(fake, { pageLimit: 20 });
    let open: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const gated: SyncUpstream = {
      list: async (query, signal) => {
        const page = await upstream.list(query, signal);
        await gate;
        return page;
      },
      getRun: (id, signal) => upstream.getRun(id, signal),
      listWorkflows: (token, signal) => upstream.listWorkflows(token, signal),
    };
    const pagesApplied = (sql: SqlStorage) =>
      sql.exec<{ n: number | null }>(`SELECT sum(pages) AS n FROM run_walks`).one().n ?? 0;
    const overlapping = { maxCalls: 3, maxMs: 60_000, concurrency: 4, overlap: true };
    await inEngine(freshObject(), gated, clock, async ({ sync, sql }) => {
      sync.use();
      // The workflows, then two pages: the run is back while both pages are still on their way.
      expect(await sync.tick(overlapping)).toEqual({ calls: 3 });
      expect(upstream.lists).toHaveLength(2);
      expect(pagesApplied(sql)).toBe(0);
      const next = sync.tick({ ...overlapping, maxCalls: 100 });
      await new Promise((resolve) => setTimeout(resolve, 50));
      // Two calls of the last run are in flight: this one starts two more, not four.
      expect(upstream.lists).toHaveLength(4);
      open();
      expect((await next).error).toBeUndefined();
      await drain(sync, { ...overlapping, maxCalls: 40 });
      expect(sync.state().phase).toBe("ready");
      expect(rowCount(sql)).toBe(300);
      expect(indexSummary(sql)).toEqual(referenceStats(fake.runs));
    });
    // No page was asked for twice (both ends of a partition may read past where they meet).
    const pages = upstream.lists.filter((q) => q.sortBy === "createdAt").map((q) => JSON.stringify(q));
    expect(new Set(pages).size).toBe(pages.length);
  });
});

describe("the head walk that ends the backfill", () => {
  it("reads beside the last walk pages; the index answers only once they have landed", async () => {
    const fake = fakeWith({ size: 200, seed: 8 });
    const clock: EngineClock = { now: ENGINE_EPOCH };
    // Pages large enough that each walk's first page is its partition's last.
    const upstream = engineUpstream(fake, { pageLimit: 1000 });
    const last = [...new Set(fake.runs.map((run) => run.workflow.id))].sort().at(-1) ?? "";
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const gated: SyncUpstream = {
      list: async (query, signal) => {
        const page = await upstream.list(query, signal);
        if (query.workflowId === last && query.sortDir === "desc") await held;
        return page;
      },
      getRun: (id, signal) => upstream.getRun(id, signal),
      listWorkflows: (token, signal) => upstream.listWorkflows(token, signal),
    };
    await inEngine(freshObject(), gated, clock, async ({ sync, sql }) => {
      sync.use();
      const running = sync.tick({ maxCalls: 40, maxMs: 60_000, concurrency: 6 });
      const headRead = () => upstream.pageIds.length === upstream.lists.length;
      for (let i = 0; i < 100 && !(upstream.lists.some((q) => q.sortBy === "updatedAt") && headRead()); i++) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      // The head walk's page is in while one walk page is still held: not ready yet.
      expect(upstream.lists.filter((q) => q.sortBy === "updatedAt" && !q.fileNameContains)).toHaveLength(1);
      await new Promise((resolve) => setTimeout(resolve, 20));
      expect(sync.state().phase).toBe("backfill");
      release();
      expect((await running).error).toBeUndefined();
      expect(sync.state().phase).toBe("ready");
      expect(rowCount(sql)).toBe(200);
      expect(indexSummary(sql)).toEqual(referenceStats(fake.runs));
      // Nothing was read again to finish it.
      expect(upstream.lists.filter((q) => q.sortBy === "updatedAt" && !q.fileNameContains)).toHaveLength(1);
    });
  });
});

describe("filter indexes", () => {
  it("are built when the backfill completes; every filter answers right before and after", async () => {
    const fake = fakeWith({ size: 300, seed: 4 });
    const clock: EngineClock = { now: ENGINE_EPOCH };
    await inEngine(freshObject(), engineUpstream(fake, { pageLimit: 40 }), clock, async ({ sync, sql }) => {
      sync.use();
      for (let i = 0; i < 4; i++) expect((await sync.tick(ONE_AT_A_TIME)).error).toBeUndefined();
      expect(sync.state().phase).toBe("backfill");
      expect(filterIndexes(sql)).toEqual([]);
      // The rows written so far answer every filter through a pass over them.
      const ids = storedIds(sql);
      expect(ids.size).toBeGreaterThan(0);
      const partial = fake.runs.filter((run) => ids.has(run.id));
      for (const filters of sampleFilters(fake.runs)) {
        expect(indexSummary(sql, filters), JSON.stringify(filters)).toEqual(referenceStats(partial, filters));
      }
      await build(sync);
      expect(filterIndexes(sql)).toEqual(FILTER_INDEXES);
      for (const filters of sampleFilters(fake.runs)) {
        expect(indexSummary(sql, filters), JSON.stringify(filters)).toEqual(
          referenceStats(fake.runs, filters),
        );
      }
    });
  });

  it("an index from before they were deferred keeps its rows, resumes its backfill and answers", async () => {
    const fake = fakeWith({ size: 300, seed: 6 });
    const clock: EngineClock = { now: ENGINE_EPOCH };
    const stub = freshObject();
    const clean = engineUpstream(fake, { pageLimit: 40 });
    await inEngine(freshObject(), clean, clock, async ({ sync }) => build(sync));
    // What the earlier schema left: the filter indexes from the start, a backfill half done.
    const before = engineUpstream(fake, { pageLimit: 40 });
    await inEngine(stub, before, clock, async ({ sync, sql }) => {
      buildFilterIndexes(sql);
      sync.use();
      for (let i = 0; i < 4; i++) expect((await sync.tick(ONE_AT_A_TIME)).error).toBeUndefined();
    });
    const resumed = engineUpstream(fake, { pageLimit: 40 });
    await inEngine(stub, resumed, clock, async ({ sync, sql }) => {
      expect(rowCount(sql)).toBeGreaterThan(0);
      await build(sync);
      expect(rowCount(sql)).toBe(300);
      expect(filterIndexes(sql)).toEqual(FILTER_INDEXES);
      for (const filters of sampleFilters(fake.runs)) {
        expect(indexSummary(sql, filters), JSON.stringify(filters)).toEqual(
          referenceStats(fake.runs, filters),
        );
      }
    });
    // It went on from its cursors: no page read before was read again.
    const walked = (u: typeof clean) => u.lists.filter((q) => q.sortBy === "createdAt").length;
    expect(walked(before) + walked(resumed)).toBe(walked(clean));
  });

  it("an index that answers gets a filter index it lacks when the object starts, rows untouched", async () => {
    const fake = fakeWith({ size: 200, seed: 7 });
    const clock: EngineClock = { now: ENGINE_EPOCH };
    const stub = freshObject();
    await inEngine(stub, engineUpstream(fake, { pageLimit: 50 }), clock, async ({ sync, sql }) => {
      await build(sync);
      sql.exec(`DROP INDEX runs_by_batch`);
      expect(filterIndexes(sql)).toEqual(["runs_by_created", "runs_by_workflow_created"]);
    });
    await runInDurableObject(stub, (_instance, state) => {
      const sql = state.storage.sql;
      migrate(sql);
      expect(filterIndexes(sql)).toEqual(FILTER_INDEXES);
      expect(rowCount(sql)).toBe(200);
      expect(indexSummary(sql)).toEqual(referenceStats(fake.runs));
    });
  });
});

describe("head walk", () => {
  it("reads about ceil(k / 1000) + 1 pages after k changes, not the whole list", async () => {
    const fake = fakeWith({ size: 3_000, seed: 4 });
    const upstream = engineUpstream(fake);
    const clock: EngineClock = { now: ENGINE_EPOCH };
    await inEngine(freshObject(), upstream, clock, async ({ sync, sql }) => {
      await builtAndReconciled(sync, clock, { maxCalls: 40, maxMs: 60_000, concurrency: 6 });
      for (const k of [0, 1, 999, 1_000, 2_500]) {
        clock.now += 31_000;
        for (let i = 0; i < k; i++) {
          const run = fake.runs[(i * 7) % fake.runs.length] as FakeRun;
          fake.updateRun(run.id, { status: i % 2 === 0 ? "FAILED" : "PROCESSED" }, clock.now - 60_000 + i);
        }
        const before = upstream.lists.length;
        await drain(sync);
        const pages = upstream.lists.length - before;
        expect(pages, `k = ${k}`).toBeLessThanOrEqual(Math.ceil(k / 1000) + 1);
        expect(pages, `k = ${k}`).toBeGreaterThanOrEqual(Math.floor(k / 1000) + 1);
        expect(indexSummary(sql), `k = ${k}`).toEqual(referenceStats(fake.runs));
      }
    });
  });

  it("reads a change Extend stamps before the Worker's clock, past a lookback of 0", async () => {
    const fake = fakeWith({ size: 120, seed: 13 });
    const upstream = engineUpstream(fake);
    const clock: EngineClock = { now: ENGINE_EPOCH };
    const settings = { ...ENGINE_SETTINGS, lookbackSeconds: 0 };
    await inEngine(
      freshObject(),
      upstream,
      clock,
      async ({ sync, sql }) => {
        await builtAndReconciled(sync, clock);
        // Extend's clock runs a minute behind the Worker's: it stamps the change before the build began.
        const run = fake.runs[17] as FakeRun;
        fake.updateRun(
          run.id,
          { status: run.status === "FAILED" ? "PROCESSED" : "FAILED" },
          clock.now - 60_000,
        );
        clock.now += settings.syncSeconds * 1000;
        await drain(sync);
        expect(sync.state().asOf).toBe(clock.now);
        expect(indexSummary(sql)).toEqual(referenceStats(fake.runs));
        // An idle walk reads little more than the newest run again.
        const lists = upstream.lists.length;
        clock.now += settings.syncSeconds * 1000;
        await drain(sync);
        expect(upstream.lists.length).toBe(lists + 1);
      },
      settings,
    );
  });

  it("never moves a run back: an older list row after a newer one changes nothing", async () => {
    const fake = fakeWith({ size: 50, seed: 8 });
    const clock: EngineClock = { now: ENGINE_EPOCH };
    await inEngine(freshObject(), engineUpstream(fake), clock, async ({ sync, sql }) => {
      await build(sync);
      const run = fake.runs[10] as FakeRun;
      const old = { ...run };
      fake.updateRun(run.id, { status: "REJECTED" }, clock.now + 1_000);
      clock.now += 60_000;
      await drain(sync);
      expect(indexSummary(sql)).toEqual(referenceStats(fake.runs));
      // The page fetched before the change, replayed: the guard keeps the newer state.
      const stale = rowFromListRun(old as unknown as Record<string, unknown>);
      if (!stale) throw new Error("no row");
      const written = upsertListRow(sql, stale);
      expect(written).toBe(0);
      expect(sql.exec(`SELECT status FROM runs WHERE id = ?`, run.id).one()).toEqual({ status: "REJECTED" });
      expect(indexSummary(sql)).toEqual(referenceStats(fake.runs));
    });
  });
});

describe("reconcile", () => {
  it("removes a run missing from the list only when GET answers 404, and recomputes the totals", async () => {
    const fake = fakeWith({ size: 200, seed: 6 });
    const hidden = new Set<string>();
    const upstream = engineUpstream(fake, { pageLimit: 30, hiddenFromList: hidden });
    const clock: EngineClock = { now: ENGINE_EPOCH };
    await inEngine(
      freshObject(),
      upstream,
      clock,
      async ({ sync, sql }) => {
        await builtAndReconciled(sync, clock, { maxCalls: 40, maxMs: 60_000, concurrency: 6 });
        const deleted = [3, 50, 120, 121, 199].map((i) => (fake.runs[i] as FakeRun).id);
        const skipped = [7, 88].map((i) => (fake.runs[i] as FakeRun).id);
        for (const id of deleted) fake.deleteRun(id);
        for (const id of skipped) hidden.add(id);
        // Totals that drifted (as a float sum or a lost trigger would make them) are rebuilt.
        sql.exec(`UPDATE run_totals SET runs = runs + 5 WHERE status = 'PROCESSED'`);
        clock.now += 31_000;
        const reconciledAt = clock.now;
        await drain(sync, { maxCalls: 40, maxMs: 60_000, concurrency: 6 });
        expect(sync.state().lastReconcileAt).toBe(reconciledAt);
        expect([...upstream.gets].sort()).toEqual([...deleted, ...skipped].sort());
        expect(rowCount(sql)).toBe(fake.runs.length);
        expect(indexSummary(sql)).toEqual(referenceStats(fake.runs));
      },
      RECONCILING,
    );
  });

  it("with many runs at one instant across pages, finds exactly the deleted ones", async () => {
    const at = "2026-10-20T10:00:00.000Z";
    const runs = generateRuns({ size: 130, seed: 12 }).map((run) => ({
      ...run,
      status: "PROCESSED" as const,
      createdAt: at,
    }));
    const fake = fakeWith({ runs });
    const upstream = engineUpstream(fake, { pageLimit: 50 });
    const clock: EngineClock = { now: ENGINE_EPOCH };
    await inEngine(
      freshObject(),
      upstream,
      clock,
      async ({ sync, sql }) => {
        await builtAndReconciled(sync, clock);
        const deleted = [0, 49, 50, 99, 129].map((i) => (fake.runs[i] as FakeRun).id);
        for (const id of deleted) fake.deleteRun(id);
        clock.now += 31_000;
        await drain(sync, ONE_AT_A_TIME, 2_000);
        expect([...upstream.gets].sort()).toEqual([...deleted].sort());
        expect(rowCount(sql)).toBe(125);
        expect(indexSummary(sql)).toEqual(referenceStats(fake.runs));
      },
      RECONCILING,
    );
  });
});

describe("webhook events", () => {
  const eventFor = (run: FakeRun, eventId: string, signedAt: number) => ({
    eventId,
    signedAt,
    run: { ...factsFromWorkflowRun(run as unknown as Record<string, unknown>, run.id), status: run.status },
  });

  it("apply at once, once per eventId, and an older event never undoes a newer one", async () => {
    const fake = fakeWith({ size: 40, seed: 1 });
    const clock: EngineClock = { now: ENGINE_EPOCH };
    await inEngine(freshObject(), engineUpstream(fake), clock, async ({ sync, sql }) => {
      await build(sync);
      const run = fake.runs[5] as FakeRun;
      const review = fake.updateRun(run.id, { status: "NEEDS_REVIEW" }, clock.now + 1_000) as FakeRun;
      const done = fake.updateRun(run.id, { status: "PROCESSED" }, clock.now + 2_000) as FakeRun;
      clock.now += 3_000;
      // Delivered out of order, and the later one twice.
      expect(sync.applyEvent(eventFor(done, "evt_2", clock.now))).toEqual({
        duplicate: false,
        applied: true,
      });
      expect(sync.applyEvent(eventFor(review, "evt_1", clock.now - 1_500))).toEqual({
        duplicate: false,
        applied: false,
      });
      expect(sync.applyEvent(eventFor(done, "evt_2", clock.now))).toEqual({
        duplicate: true,
        applied: false,
      });
      // Seen before any sync: the index already agrees with Extend.
      expect(indexSummary(sql)).toEqual(referenceStats(fake.runs));
      expect(sync.nextWakeAt()).toBe(clock.now + 2_000);
      clock.now += 2_000;
      await drain(sync);
      expect(indexSummary(sql)).toEqual(referenceStats(fake.runs));
    });
  });

  it("after a long outage of Extend, tries again within 2 minutes and catches up once it answers", async () => {
    const fake = fakeWith({ size: 40, seed: 4 });
    const upstream = engineUpstream(fake);
    const clock: EngineClock = { now: ENGINE_EPOCH };
    await inEngine(freshObject(), upstream, clock, async ({ sync, sql }) => {
      await build(sync);
      const list = upstream.list.bind(upstream);
      let down = true;
      upstream.list = (query, signal) =>
        down
          ? Promise.reject(new ApiError("UPSTREAM_ERROR", "Extend failed with HTTP 500."))
          : list(query, signal);
      const moved = fake.runs[3] as FakeRun;
      fake.updateRun(moved.id, { status: moved.status === "FAILED" ? "PROCESSED" : "FAILED" }, clock.now);
      // An hour of Extend failing every call, the sync woken only by its alarm.
      const waits: number[] = [];
      while (clock.now < ENGINE_EPOCH + 3_600_000) {
        const wake = sync.nextWakeAt() ?? Number.POSITIVE_INFINITY;
        waits.push(wake - clock.now);
        clock.now = wake;
        await sync.tick(ONE_AT_A_TIME);
      }
      expect(sync.state().errorCount).toBeGreaterThan(10);
      expect(Math.max(...waits)).toBe(SYNC_RETRY_CAP_MS);
      down = false;
      clock.now = sync.nextWakeAt() ?? clock.now;
      await drain(sync);
      expect(sync.state().errorCount).toBe(0);
      expect(indexSummary(sql)).toEqual(referenceStats(fake.runs));
    });
  });

  it("a run whose GET keeps failing holds back no head walk and no alarm, and is given up after a few tries", async () => {
    const fake = fakeWith({ size: 40, seed: 4 });
    const upstream = engineUpstream(fake);
    const poisoned = "workflow_run_get_fails";
    const getRun = upstream.getRun.bind(upstream);
    upstream.getRun = (id, signal) => {
      if (id !== poisoned) return getRun(id, signal);
      upstream.gets.push(id);
      return Promise.reject(new ApiError("UPSTREAM_ERROR", "Extend failed with HTTP 500."));
    };
    const clock: EngineClock = { now: ENGINE_EPOCH };
    await inEngine(freshObject(), upstream, clock, async ({ sync, sql }) => {
      await builtAndReconciled(sync, clock);
      const template = fake.runs[0] as FakeRun;
      sync.applyEvent(eventFor({ ...template, id: poisoned, status: "PROCESSED" }, "evt_poison", clock.now));
      const tries = () => upstream.gets.filter((id) => id === poisoned).length;
      const moved = fake.runs[7] as FakeRun;
      for (let round = 0; round < 40 && tries() < CANDIDATE_MAX_FAILURES; round++) {
        const status = moved.status === "FAILED" ? "PROCESSED" : "FAILED";
        fake.updateRun(moved.id, { status }, clock.now);
        clock.now += ENGINE_SETTINGS.syncSeconds * 1000;
        await drain(sync);
        // Every head walk ran on time, and the run just changed is counted as Extend has it.
        expect(sync.state().retryAt).toBeNull();
        expect(sync.state().asOf).toBe(clock.now);
        expect(sql.exec(`SELECT status FROM runs WHERE id = ?`, moved.id).one().status).toBe(status);
        expect(sync.nextWakeAt()).toBeGreaterThan(clock.now);
      }
      expect(tries()).toBe(CANDIDATE_MAX_FAILURES);
      expect(sql.exec(`SELECT count(*) AS n FROM run_candidates`).one().n).toBe(0);
      clock.now += 3_600_000;
      await drain(sync);
      expect(tries()).toBe(CANDIDATE_MAX_FAILURES);
    });
  });

  it("a stale event (an old status in a fresh delivery) is settled by GET after the next head walk", async () => {
    const fake = fakeWith({ size: 40, seed: 2 });
    const upstream = engineUpstream(fake);
    const clock: EngineClock = { now: ENGINE_EPOCH };
    await inEngine(freshObject(), upstream, clock, async ({ sync, sql }) => {
      await build(sync);
      const run = fake.runs[9] as FakeRun;
      const failed = fake.updateRun(run.id, { status: "FAILED" }, clock.now - 600_000) as FakeRun;
      fake.updateRun(run.id, { status: "PROCESSED" }, clock.now - 500_000);
      clock.now += 10_000;
      await drain(sync);
      // A retry of the old FAILED event, signed now: it wins for now (it looks newer)…
      expect(sync.applyEvent(eventFor(failed, "evt_old", clock.now)).applied).toBe(true);
      expect(indexSummary(sql, { status: "FAILED" }).total).toBe(
        referenceStats(fake.runs, { status: "FAILED" }).total + 1,
      );
      // …until the head walk that follows, which does not see the run change, and GET says PROCESSED.
      clock.now += 2_000;
      await drain(sync);
      expect(upstream.gets).toEqual([run.id]);
      expect(indexSummary(sql)).toEqual(referenceStats(fake.runs));
    });
  });

  it("counts a run first seen in a signed-URL event at once; the head walk fills in the rest", async () => {
    const fake = fakeWith({ size: 30, seed: 3 });
    const clock: EngineClock = { now: ENGINE_EPOCH };
    await inEngine(freshObject(), engineUpstream(fake), clock, async ({ sync, sql }) => {
      await build(sync);
      const template = generateRuns({ size: 1, seed: 99 })[0] as FakeRun;
      const created = fake.addRun(
        { ...template, id: "workflow_run_from_webhook", status: "PROCESSED" },
        clock.now,
      );
      clock.now += 1_000;
      sync.applyEvent({
        eventId: "evt_url",
        signedAt: clock.now,
        run: { id: created.id, status: "PROCESSED" },
      });
      expect(indexSummary(sql).byStatus?.PROCESSED).toBe(referenceStats(fake.runs).byStatus.PROCESSED);
      clock.now += 2_000;
      await drain(sync);
      expect(indexSummary(sql)).toEqual(referenceStats(fake.runs));
      for (const filters of sampleFilters(fake.runs)) {
        expect(indexSummary(sql, filters), JSON.stringify(filters)).toEqual(
          referenceStats(fake.runs, filters),
        );
      }
    });
  });
});
