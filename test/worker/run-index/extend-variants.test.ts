import { describe, expect, it } from "vitest";
import { FakeExtend, type FakeRun } from "../../../fake/extend.ts";
import { busiestWindow } from "../../../fake/windows.ts";
import { indexStatsBody } from "../../../src/run-index/answer.ts";
import { queryTotals } from "../../../src/run-index/store.ts";
import { RECONCILE_AFTER_BUILD_MS } from "../../../src/run-index/sync.ts";
import type { SyncUpstream } from "../../../src/run-index/upstream.ts";
import { TEST_UPSTREAM_KEY } from "../support/constants.ts";
import {
  drain,
  ENGINE_EPOCH,
  ENGINE_SETTINGS,
  type EngineClock,
  type EngineUpstream,
  engineUpstream,
  freshObject,
  inEngine,
  restingIndex,
  settle,
  stopAlarm,
  useIndexFake,
} from "../support/run-index.ts";
import { network } from "../support/setup.ts";
import { getStats, referenceStats, summary } from "../support/stats.ts";
import { lateFirstCalls } from "../support/tenant.ts";

describe("run index: an Extend whose updatedAt does not move with every change", () => {
  // Whole-second timestamps, or two changes within one millisecond: the second change lists the
  // run with the updatedAt the index already holds.
  it("counts the later state of a run read between two changes of one updatedAt", async () => {
    const index = await restingIndex({ dataset: { size: 40, seed: 23 } });

    const id = index.fake.runs[0]?.id ?? "";
    const first = index.fake.updateRun(id, {
      status: "PROCESSING",
      usage: { credits: 1.25, totalCredits: 1.25 },
    }) as FakeRun;
    expect((await getStats(index, { maxLagSeconds: "0" })).body.byStatus?.PROCESSING).toBe(
      referenceStats(index.fake.runs).byStatus.PROCESSING,
    );

    const second: FakeRun = {
      ...first,
      status: "PROCESSED",
      usage: { credits: 3.5, totalCredits: 4 },
      updatedAt: first.updatedAt,
    };
    index.fake.runs = index.fake.runs.map((run) => (run.id === id ? second : run));
    const { body } = await getStats(index, { maxLagSeconds: "0" });
    expect(body.source).toBe("index");
    expect(summary(body)).toEqual(referenceStats(index.fake.runs));
    await stopAlarm(index.stub);
  });
});

describe("run index: an Extend that answers 410 Gone for an expired cursor", () => {
  const gone = {
    type: "status" as const,
    status: 410,
    body: JSON.stringify({ code: "INVALID_REQUEST", message: "nextPageToken expired.", retryable: false }),
  };
  const withCursor = (url: URL) => url.searchParams.has("nextPageToken");

  it("restarts a backfill walk whose cursor expired, and builds an index that counts every run", async () => {
    const index = await useIndexFake({ dataset: { size: 60, seed: 29 }, pageLimit: 7 });
    index.fake.inject(gone, 3, withCursor);
    await getStats(index, {});
    await settle(index.stub);
    const { body } = await getStats(index, {});
    expect(body.source).toBe("index");
    expect(summary(body)).toEqual(referenceStats(index.fake.runs));
    await stopAlarm(index.stub);
  });

  it("restarts a head walk whose cursor expired: a sync asked for still answers, and exactly", async () => {
    const index = await restingIndex({ dataset: { size: 60, seed: 31 }, pageLimit: 7 });

    index.fake.updateRuns(
      index.fake.runs.slice(0, 20).map((run) => run.id),
      { status: "CANCELLED" },
    );
    index.fake.inject(gone, 1, (url) => withCursor(url) && url.searchParams.get("sortBy") === "updatedAt");
    const { body } = await getStats(index, { maxLagSeconds: "0" });
    expect(body.source).toBe("index");
    expect(summary(body)).toEqual(referenceStats(index.fake.runs));
    await stopAlarm(index.stub);
  });
});

describe("run index: an object too busy to send its granted calls at once", () => {
  it("keeps the sync's calls at UPSTREAM_MAX_RPS where Extend counts them, on arrival", async () => {
    const settings = { UPSTREAM_MAX_RPS: "4" };
    const index = await useIndexFake({ dataset: { size: 120, seed: 37 } }, settings);
    // The first window's calls reach Extend long after their grant; the next window's go out at once.
    network.use(lateFirstCalls(index.fake, 4));
    await getStats(index, {});
    await settle(index.stub);
    const arrivals = index.fake.listCalls.map((call) => call.at);
    expect(arrivals.length).toBeGreaterThan(8);
    expect(busiestWindow(arrivals, 1_000)).toBeLessThanOrEqual(4);
    await stopAlarm(index.stub);
  }, 60_000);
});

describe("run index: an Extend that sends an empty page before more runs", () => {
  const EMPTY = "empty-before:";
  const ENGINE_LIMITS = { maxCalls: 40, maxMs: 60_000, concurrency: 6 };

  /** Answers every follow-up page of the walks `when` picks with an empty page first, then the page. */
  function withEmptyPages(inner: EngineUpstream, when: { on: boolean }): SyncUpstream {
    return {
      list(query, signal) {
        const token = query.nextPageToken;
        if (token?.startsWith(EMPTY)) {
          return inner.list({ ...query, nextPageToken: token.slice(EMPTY.length) }, signal);
        }
        if (when.on && token !== undefined) {
          return Promise.resolve({ data: [], nextPageToken: `${EMPTY}${token}` });
        }
        return inner.list(query, signal);
      },
      getRun: (id, signal) => inner.getRun(id, signal),
      listWorkflows: (token, signal) => inner.listWorkflows(token, signal),
    };
  }

  function indexTotals(sql: SqlStorage) {
    return summary(indexStatsBody({}, queryTotals(sql, { fileNameMatch: "folded" }), 0, 0));
  }

  it("reads a head walk on past it: every change before asOf is counted", async () => {
    const fake = new FakeExtend({ apiKey: TEST_UPSTREAM_KEY, dataset: { size: 200, seed: 43 } });
    const inner = engineUpstream(fake, { pageLimit: 10 });
    const empties = { on: false };
    const clock: EngineClock = { now: ENGINE_EPOCH };
    await inEngine(freshObject(), withEmptyPages(inner, empties), clock, async ({ sync, sql }) => {
      sync.use();
      await drain(sync, ENGINE_LIMITS);
      clock.now += 31_000;
      for (let i = 0; i < 35; i++) {
        const run = fake.runs[i * 5] as FakeRun;
        fake.updateRun(
          run.id,
          { status: run.status === "FAILED" ? "PROCESSED" : "FAILED" },
          clock.now - 10_000 + i,
        );
      }
      empties.on = true;
      await drain(sync, ENGINE_LIMITS);
      expect(sync.state().asOf).toBe(clock.now);
      expect(indexTotals(sql)).toEqual(referenceStats(fake.runs));
    });
  });

  it("closes nothing of a reconcile walk's range on it: no run is taken for deleted", async () => {
    const fake = new FakeExtend({ apiKey: TEST_UPSTREAM_KEY, dataset: { size: 200, seed: 47 } });
    const inner = engineUpstream(fake, { pageLimit: 10 });
    const empties = { on: false };
    const clock: EngineClock = { now: ENGINE_EPOCH };
    await inEngine(
      freshObject(),
      withEmptyPages(inner, empties),
      clock,
      async ({ sync, sql }) => {
        sync.use();
        await drain(sync, ENGINE_LIMITS);
        const deleted = (fake.runs[60] as FakeRun).id;
        fake.deleteRun(deleted);
        empties.on = true;
        clock.now += RECONCILE_AFTER_BUILD_MS + 1_000;
        await drain(sync, ENGINE_LIMITS);
        expect(sync.state().lastReconcileAt).toBe(ENGINE_EPOCH + RECONCILE_AFTER_BUILD_MS + 1_000);
        expect(inner.gets).toEqual([deleted]);
        expect(indexTotals(sql)).toEqual(referenceStats(fake.runs));
      },
      { ...ENGINE_SETTINGS, reconcileSeconds: 30 },
    );
  });
});

describe("run index: an Extend that answers 410 Gone for a deleted run", () => {
  it("removes the run the reconcile found missing once GET says it is gone", async () => {
    const fake = new FakeExtend({ apiKey: TEST_UPSTREAM_KEY, dataset: { size: 120, seed: 53 } });
    const upstream = engineUpstream(fake, { pageLimit: 25 });
    const clock: EngineClock = { now: ENGINE_EPOCH };
    await inEngine(
      freshObject(),
      upstream,
      clock,
      async ({ sync, sql }) => {
        sync.use();
        await drain(sync, { maxCalls: 40, maxMs: 60_000, concurrency: 6 });
        const deleted = (fake.runs[30] as FakeRun).id;
        fake.deleteRun(deleted);
        fake.inject(
          {
            type: "status",
            status: 410,
            body: JSON.stringify({ code: "NOT_FOUND", message: "Workflow run deleted.", retryable: false }),
          },
          10,
          (url) => url.pathname.endsWith(`/workflow_runs/${deleted}`),
        );
        clock.now += RECONCILE_AFTER_BUILD_MS + 1_000;
        await drain(sync, { maxCalls: 40, maxMs: 60_000, concurrency: 6 });
        expect(upstream.gets).toEqual([deleted]);
        expect(summary(indexStatsBody({}, queryTotals(sql, { fileNameMatch: "folded" }), 0, 0))).toEqual(
          referenceStats(fake.runs),
        );
      },
      { ...ENGINE_SETTINGS, reconcileSeconds: 30 },
    );
  });
});
