import { describe, expect, it } from "vitest";
import { settle, stopAlarm, useIndexFake } from "../support/run-index.ts";
import { getStats, referenceStats, summary } from "../support/stats.ts";

describe("run index smoke", () => {
  it("builds and answers", async () => {
    const { fake, env, stub } = await useIndexFake({ dataset: { size: 300, seed: 3 } });
    const first = await getStats({}, env);
    expect(first.body.source).toBe("scan");
    console.log(JSON.stringify(first.body.build));
    const state = await settle(stub);
    console.log(JSON.stringify(state));
    const second = await getStats({}, env);
    expect(second.body.source).toBe("index");
    expect(summary(second.body)).toEqual(referenceStats(fake.runs));
    await stopAlarm(stub);
  });
});
