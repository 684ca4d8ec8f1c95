// Scans of separate requests share the isolate's bound on scan pages in flight. Each request runs
// in its own workerd request context (SELF), so a request whose pages all wait for another
// request's slots has no I/O of its own meanwhile; it must still be answered, with exact totals.
import { SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { generateRuns } from "../../../fake/extend.ts";
import { MAX_SCAN_PAGES_PER_ISOLATE } from "../../../src/stats/scan.ts";
import { read } from "../support/envelope.ts";
import { referenceStats, summary, type WorkflowRunStats } from "../support/stats.ts";
import { freshClientIp, isolatedTenant } from "../support/tenant.ts";

describe("GET /stats: concurrent scans in one isolate", () => {
  it("answers every request exactly while their pages queue for the isolate's slots", async () => {
    // SELF runs with the static settings: no workspace of its own. The fake matches file names
    // without regard to case, while each casing is a filter of its own: three scans, same runs.
    const tenant = isolatedTenant({
      workspaceId: null,
      runs: generateRuns({ size: 300, seed: 11 }),
      pageLimit: 20,
      latency: { baseMs: 40, perRunMs: 0 },
    });
    const needles = ["pDf", "PdF", "pdF"];
    const answers = await Promise.all(
      needles.map((needle) =>
        SELF.fetch(`https://proxy.test/stats?fileNameContains=${needle}`, {
          headers: { "cf-connecting-ip": freshClientIp() },
        }).then(read),
      ),
    );
    expect(answers.map((a) => [a.status, a.status === 200 ? "" : a.text])).toEqual([
      [200, ""],
      [200, ""],
      [200, ""],
    ]);
    const expected = referenceStats(tenant.fake.runs, { fileNameContains: "pdf" });
    for (const answer of answers) {
      const body = JSON.parse(answer.text) as WorkflowRunStats;
      expect(body.complete).toBe(true);
      expect(summary(body)).toEqual(expected);
    }
    // More pages were wanted at once than the isolate lets run: some waited for another request's.
    expect(tenant.calls.length).toBeGreaterThan(3 * MAX_SCAN_PAGES_PER_ISOLATE);
  });
});
