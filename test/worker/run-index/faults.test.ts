// The run index under list pages Extend got wrong for a while: once it answers well again, the
// index counts what it says. A row taken from a faulty page would be kept for good, since a list
// row replaces only a lower version and the run's version (updatedAt) does not move.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { FakeRun } from "../../../fake/extend.ts";
import { loadConfig } from "../../../src/app/config.ts";
import { createExtendUpstream } from "../../../src/extend/client.ts";
import { restingIndex, stopAlarm } from "../support/run-index.ts";
import { getStats, referenceStats, statsPath, summary } from "../support/stats.ts";

describe("run index: a list page with a run Extend sent garbled", () => {
  const garblings: [string, (run: FakeRun) => unknown][] = [
    ["without its status", ({ status: _dropped, ...run }) => run],
    ["with usage as a number", (run) => ({ ...run, usage: 7.5 })],
    ["with usage as a list", (run) => ({ ...run, usage: [run.usage] })],
  ];

  it.each(garblings)(
    "%s is not taken in: the run counts again once Extend lists it whole",
    async (_, garble) => {
      const index = await restingIndex({ dataset: { size: 40, seed: 17 } });

      const id = index.fake.runs[0]?.id ?? "";
      const changed = index.fake.updateRun(id, {
        status: "FAILED",
        usage: { credits: 7.5, totalCredits: 7.5 },
      }) as FakeRun;
      index.fake.runs = index.fake.runs.map((run) => (run.id === id ? (garble(changed) as FakeRun) : run));
      expect((await index.call(statsPath({ maxLagSeconds: "0" }))).status).not.toBe(200);

      index.fake.runs = index.fake.runs.map((run) => (run.id === id ? changed : run));
      const { body } = await getStats(index, { maxLagSeconds: "0" });
      expect(body.source).toBe("index");
      expect(summary(body)).toEqual(referenceStats(index.fake.runs));
      await stopAlarm(index.stub);
    },
  );
});

describe("run index: GET /workflow_runs/{id} answering with another run", () => {
  const answering = (body: Record<string, unknown>) =>
    createExtendUpstream(loadConfig(env as Env), { fetch: async () => Response.json(body) });

  it("is an invalid response, so the confirmation never writes one run's state into another's row", async () => {
    const other = { object: "workflow_run", id: "workflow_run_other", status: "PROCESSED" };
    await expect(answering(other).getRun("workflow_run_mine")).rejects.toMatchObject({
      code: "UPSTREAM_INVALID_RESPONSE",
    });
    const mine = { ...other, id: "workflow_run_mine" };
    await expect(answering(mine).getRun("workflow_run_mine")).resolves.toEqual({ found: mine });
  });
});
