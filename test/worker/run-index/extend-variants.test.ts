// The run index against Extends that differ from our fake in ways Extend's reference allows:
// what it promises (every change before asOf counted) must hold for each of them.
import { http } from "msw";
import { describe, expect, it } from "vitest";
import type { FakeRun } from "../../../fake/extend.ts";
import { busiestWindow } from "../../../fake/windows.ts";
import { FAKE_EXTEND_ORIGIN } from "../support/constants.ts";
import { settle, stopAlarm, useIndexFake } from "../support/run-index.ts";
import { network } from "../support/setup.ts";
import { getStats, referenceStats, summary } from "../support/stats.ts";
import { answerWithFake } from "../support/tenant.ts";

describe("run index: an Extend whose updatedAt does not move with every change", () => {
  // Whole-second timestamps, or two changes within one millisecond: the second change lists the
  // run with the updatedAt the index already holds.
  it("counts the later state of a run read between two changes of one updatedAt", async () => {
    const index = await useIndexFake({ dataset: { size: 40, seed: 23 } });
    await getStats(index, {});
    await settle(index.stub);
    await stopAlarm(index.stub);

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
    const index = await useIndexFake({ dataset: { size: 60, seed: 31 }, pageLimit: 7 });
    await getStats(index, {});
    await settle(index.stub);
    await stopAlarm(index.stub);

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
  /** Keeps this isolate (the test's, the Worker's and the object's) from running anything else for `ms`. */
  function occupyIsolate(ms: number): void {
    const until = Date.now() + ms;
    let spins = 0;
    while (Date.now() < until) spins += 1;
    expect(spins).toBeGreaterThan(0);
  }

  it("keeps the sync's calls at UPSTREAM_MAX_RPS where Extend counts them, on arrival", async () => {
    const settings = { UPSTREAM_MAX_RPS: "4" };
    const index = await useIndexFake({ dataset: { size: 120, seed: 37 } }, settings);
    let sent = 0;
    // The first window's calls find the isolate busy (as writing a page keeps it) and reach Extend
    // long after their grant; the next window's go out at once.
    network.use(
      http.get(`${FAKE_EXTEND_ORIGIN}/workflow_runs`, async ({ request }) => {
        sent += 1;
        if (sent <= 4) {
          occupyIsolate(100);
          await new Promise((resolve) => setTimeout(resolve, 400));
        }
        return answerWithFake(index.fake, request);
      }),
    );
    await getStats(index, {});
    await settle(index.stub);
    const arrivals = index.fake.listCalls.map((call) => call.at);
    expect(arrivals.length).toBeGreaterThan(8);
    expect(busiestWindow(arrivals, 1_000)).toBeLessThanOrEqual(4);
    await stopAlarm(index.stub);
  }, 60_000);
});
