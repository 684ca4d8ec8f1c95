// The runs table and its totals inside a real object's SQLite: exact sums, the version guard's
// cost in rows written, and totals kept by triggers equal to totals recomputed from the rows.
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { generateRuns } from "../../../fake/extend.ts";
import { type RunRow, rowFromListRun } from "../../../src/run-index/row.ts";
import { migrate } from "../../../src/run-index/schema.ts";
import { queryTotals, recomputeTotals, upsertListRow } from "../../../src/run-index/store.ts";
import { formatDecimal } from "../../../src/stats/aggregate.ts";
import { freshObject } from "../support/run-index.ts";

/** Exact twelve-decimal units of a decimal literal, written without the code under test. */
function units(text: string): bigint {
  const [whole = "0", fraction = ""] = text.split(".");
  return BigInt(whole + fraction.padEnd(12, "0").slice(0, 12));
}

function rowsOf(size: number): RunRow[] {
  return generateRuns({ size, seed: 17 }).map((run) => {
    const row = rowFromListRun(run as unknown as Record<string, unknown>);
    if (!row) throw new Error("no row");
    return row;
  });
}

// Each literal as a JSON number reads back to its own shortest text, except the long one, which
// reads as its nearest double (123456.78901234568): that is what Extend's JSON carries.
const CREDITS = ["0.1", "0.2", "0.3", "0.000001", "123456.789012345678", "7", "19.99"];

describe("run index store", () => {
  it("keeps sums exact to twelve decimals after tens of thousands of updates", async () => {
    await runInDurableObject(freshObject(), (_instance, state) => {
      const sql = state.storage.sql;
      migrate(sql);
      const rows = rowsOf(500);
      const current = new Map<string, string | null>();
      let float = 0;
      for (let round = 0; round < 40; round++) {
        state.storage.transactionSync(() => {
          rows.forEach((row, i) => {
            const text = (i + round) % 9 === 8 ? null : (CREDITS[(i * 7 + round) % CREDITS.length] ?? "0");
            const amount = text === null ? null : Number(text);
            const next = rowFromListRun({
              id: row.id,
              status: (["PROCESSED", "FAILED", "PENDING"] as const)[(i + round) % 3],
              workflow: { id: row.workflowId },
              batchId: row.batchId,
              files: [],
              createdAt: new Date(row.createdAt).toISOString(),
              updatedAt: new Date(row.version + round + 1).toISOString(),
              usage: amount === null ? null : { credits: amount, totalCredits: amount },
            });
            if (!next) throw new Error("no row");
            upsertListRow(sql, next);
            float += amount ?? 0;
            current.set(row.id, text);
          });
        });
      }
      const expected = [...current.values()].reduce(
        (sum, text) => sum + (text === null ? 0n : units(String(Number(text)))),
        0n,
      );
      const totals = queryTotals(sql, {});
      const exact = formatDecimal(totals.credits);
      const want = `${expected / 10n ** 12n}.${(expected % 10n ** 12n).toString().padStart(12, "0")}`;
      expect(exact).toBe(want.replace(/0+$/, "").replace(/\.$/, ""));
      expect(totals.runsWithoutUsage).toBe([...current.values()].filter((v) => v === null).length);
      expect(float).not.toBe(Number(exact));
      // Triggers kept the same totals the rows give.
      const byTrigger = queryTotals(sql, {});
      recomputeTotals(sql);
      expect(queryTotals(sql, {})).toEqual(byTrigger);
      // And a row filter (read from the rows) agrees with the totals.
      expect(queryTotals(sql, { since: 0 })).toEqual(byTrigger);
    });
  });

  it("costs a few rows written per new run, a few per change, none for a replay", async () => {
    await runInDurableObject(freshObject(), (_instance, state) => {
      const sql = state.storage.sql;
      migrate(sql);
      const rows = rowsOf(1_000);
      let inserted = 0;
      for (const row of rows) inserted += upsertListRow(sql, row);
      let changed = 0;
      for (const row of rows)
        changed += upsertListRow(sql, { ...row, status: "FAILED", version: row.version + 1 });
      let replayed = 0;
      for (const row of rows)
        replayed += upsertListRow(sql, { ...row, status: "FAILED", version: row.version + 1 });
      // New: the row, its createdAt and workflow index entries (and batch, for 40% of runs), one
      // totals row. Changed status: the row and two totals rows. README "Run index" cites these.
      expect(inserted / rows.length).toBeLessThanOrEqual(5);
      expect(changed / rows.length).toBe(3);
      expect(replayed).toBe(0);
      console.log(
        JSON.stringify({ rowsWrittenPerInsert: inserted / rows.length, perChange: changed / rows.length }),
      );
    });
  });
});
