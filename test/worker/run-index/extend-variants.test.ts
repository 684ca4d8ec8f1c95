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
