// The tenant's one object: the list route's gateway and the run index (its sync's calls
// included) are the same Durable Object, so they share one budget and one placement.
import { runDurableObjectAlarm } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { busiestWindow } from "../../../fake/windows.ts";
import { stopAlarm, useIndexFake } from "../support/run-index.ts";
import { getStats } from "../support/stats.ts";

const distinct = (i: number) =>
  `/workflow_runs?maxPageSize=5&fileNameContains=${encodeURIComponent(`f${i}-${crypto.randomUUID()}`)}`;

/** The TENANT binding, recording every object asked for by name and with which options. */
function recordingNamespace() {
  const asked: { name: string; locationHint: string | undefined }[] = [];
  const namespace = {
    getByName(name: string, options?: DurableObjectNamespaceGetDurableObjectOptions) {
      asked.push({ name, locationHint: options?.locationHint });
      return env.TENANT.getByName(name, options);
    },
  };
  return { asked, namespace: namespace as unknown as Env["TENANT"] };
}

describe("the tenant's one object", () => {
  it("is the one the list route and the run index address, by one name and one location hint", async () => {
    const index = await useIndexFake({ dataset: { size: 30, seed: 2 } });
    const { asked, namespace } = recordingNamespace();
    const miss = await index.call(distinct(0), { env: { TENANT: namespace } });
    expect(miss.status).toBe(200);
    await miss.body?.cancel();
    await getStats(index, {}, { TENANT: namespace });
    await stopAlarm(index.stub);
    expect(asked.length).toBeGreaterThanOrEqual(2);
    expect(new Set(asked.map((a) => JSON.stringify(a))).size).toBe(1);
    // Extend's origin in the tests is not loopback: the object is placed as it would be near Extend.
    expect(asked[0]?.locationHint).toBe("enam");
  });

  it("holds the run index's sync and concurrent list misses, together, to UPSTREAM_MAX_RPS", async () => {
    const index = await useIndexFake({ dataset: { size: 60, seed: 3 } }, { UPSTREAM_MAX_RPS: "2" });
    let done = false;
    // The /stats gives the index its settings and starts its build, as the misses arrive. One
    // status scans in one call, which takes its turn beside the six misses and the backfill's
    // calls within the 5 s a call may wait.
    const answers = Promise.all([
      getStats(index, { status: "FAILED" }).then(({ response }) => response),
      ...Array.from({ length: 6 }, (_, i) => index.call(distinct(i))),
    ]).finally(() => {
      done = true;
    });
    const syncCalls = () => index.fake.requests.filter((r) => r.url.searchParams.has("workflowId"));
    // The sync's steps run while the misses and the scan wait for their slots; its calls are
    // bulk, so they may only start once the misses have.
    const giveUpAt = Date.now() + 20_000;
    while (!done || (syncCalls().length === 0 && Date.now() < giveUpAt)) {
      await runDurableObjectAlarm(index.stub);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const [, ...misses] = await answers;
    await stopAlarm(index.stub);
    for (const miss of misses) {
      expect(miss.status).toBe(200);
      await miss.body?.cancel();
    }
    const during = index.fake.requests.map((r) => r.at);
    expect(syncCalls().length, "the sync's backfill called Extend meanwhile").toBeGreaterThan(0);
    // Calls leave a window apart but may reach the fake late on a loaded machine (see gateway.test.ts).
    expect(busiestWindow(during, 750)).toBeLessThanOrEqual(2);
    // The list misses configured the very gateway the sync's calls went through.
    expect((await index.stub.gatewayState()).maxPerSecond).toBe(2);
  }, 40_000);
});
