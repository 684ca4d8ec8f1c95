// The run index against Extends that differ from our fake in ways Extend's reference allows:
// what it promises (every change before asOf counted) must hold for each of them.
import { describe, expect, it } from "vitest";
import type { FakeRun } from "../../../fake/extend.ts";
import { settle, stopAlarm, useIndexFake } from "../support/run-index.ts";
import { getStats, referenceStats, summary } from "../support/stats.ts";

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
