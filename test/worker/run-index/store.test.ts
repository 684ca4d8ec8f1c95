// The runs table and its totals inside a real object's SQLite: exact sums, the version guard's
// cost in rows written, and totals kept by the writes' deltas equal to totals recomputed from
// the rows.
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { generateRuns } from "../../../fake/extend.ts";
import { type RunRow, rowFromListRun } from "../../../src/run-index/row.ts";
import { buildFilterIndexes, migrate } from "../../../src/run-index/schema.ts";
import {
  applyOverlay,
  confirmFromGet,
  deleteRun,
  queryTotals,
  recomputeTotals,
  upsertListRow,
  upsertListRows,
} from "../../../src/run-index/store.ts";
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
      // The writes kept the same totals the rows give.
      const kept = queryTotals(sql, {});
      recomputeTotals(sql);
      expect(queryTotals(sql, {})).toEqual(kept);
      // And a row filter (read from the rows) agrees with the totals.
      expect(queryTotals(sql, { since: 0 })).toEqual(kept);
    });
  });

  it("costs a few rows written per new run, a few per change, none for a replay", async () => {
    await runInDurableObject(freshObject(), (_instance, state) => {
      const sql = state.storage.sql;
      migrate(sql);
      buildFilterIndexes(sql);
      const rows = rowsOf(1_000);
      let inserted = 0;
      for (const row of rows) inserted += upsertListRow(sql, row);
      let changed = 0;
      for (const row of rows)
        changed += upsertListRow(sql, { ...row, status: "FAILED", version: row.version + 1 });
      let replayed = 0;
      for (const row of rows)
        replayed += upsertListRow(sql, { ...row, status: "FAILED", version: row.version + 1 });
      // New, one run at a time, to an index that answers: the row, its createdAt and workflow index entries (and batch, for
      // 40% of runs), one totals row (a page shares it, see below). Changed status: the row and
      // two totals rows; an unchanged status, the row alone. README "Run index" cites these.
      expect(inserted / rows.length).toBeLessThanOrEqual(5);
      const moved = rows.filter((row) => row.status !== "FAILED").length;
      expect(changed).toBe(rows.length + 2 * moved);
      expect(replayed).toBe(0);
      console.log(
        JSON.stringify({ rowsWrittenPerInsert: inserted / rows.length, perChange: changed / rows.length }),
      );
    });
  });

  it.each([
    ["while the backfill runs (no filter index yet)", false],
    ["once the index answers (filter indexes built)", true],
  ])(
    "writes one totals row per workflow and status a page touches, none for a replay, %s",
    async (_name, built) => {
      await runInDurableObject(freshObject(), (_instance, state) => {
        const sql = state.storage.sql;
        migrate(sql);
        if (built) buildFilterIndexes(sql);
        const rows = rowsOf(1_000);
        const groups = new Set(rows.map((row) => `${row.workflowId} ${row.status}`)).size;
        const totalsWrites = (page: RunRow[]) => {
          const before = sql.exec(`SELECT count(*) AS n FROM runs`).one().n as number;
          const written = state.storage.transactionSync(() => upsertListRows(sql, page));
          const after = sql.exec(`SELECT count(*) AS n FROM runs`).one().n as number;
          return { written, added: after - before };
        };
        const first = totalsWrites(rows);
        expect(first.added).toBe(rows.length);
        // Each row (and its createdAt, workflow and batch entries once those indexes exist), plus
        // one write per group of the totals.
        const perRow = built ? rows.reduce((n, row) => n + (row.batchId === null ? 3 : 4), 0) : rows.length;
        expect(first.written).toBe(perRow + groups);
        expect(totalsWrites(rows)).toEqual({ written: 0, added: 0 });
        recomputeTotals(sql);
        const recomputed = queryTotals(sql, {});
        expect(recomputed.byStatus).toEqual(
          rows.reduce<Record<string, number>>(
            (counts, row) => {
              counts[row.status] = (counts[row.status] ?? 0) + 1;
              return counts;
            },
            Object.fromEntries(Object.keys(recomputed.byStatus).map((s) => [s, 0])),
          ),
        );
      });
    },
  );

  it("writes every row of a batch too large for one statement, with exact totals", async () => {
    await runInDurableObject(freshObject(), (_instance, state) => {
      const sql = state.storage.sql;
      migrate(sql);
      // Long file names (including the separator and non-ASCII): the batch spans several statements.
      const rows = rowsOf(1_500).map((row, i) => ({
        ...row,
        fileNames: `${"é".repeat(400)}\n${"x".repeat(i % 300)}`,
      }));
      state.storage.transactionSync(() => upsertListRows(sql, rows));
      expect(sql.exec(`SELECT count(*) AS n FROM runs`).one().n).toBe(rows.length);
      const stored = sql
        .exec<{ id: string; file_names: string }>(`SELECT id, file_names FROM runs`)
        .toArray();
      const names = new Map(rows.map((row) => [row.id, row.fileNames]));
      expect(stored.every((row) => names.get(row.id) === row.file_names)).toBe(true);
      const kept = queryTotals(sql, {});
      recomputeTotals(sql);
      expect(kept).toEqual(queryTotals(sql, {}));
    });
  });

  it("keeps a page's duplicates once (the newest), and sums exact beyond 2^53 units", async () => {
    await runInDurableObject(freshObject(), (_instance, state) => {
      const sql = state.storage.sql;
      migrate(sql);
      const [a, b, c] = rowsOf(3);
      if (!a || !b || !c) throw new Error("no rows");
      // 4,000,000,000,000.001 credits: 4e15 + 1 units of the high part each, so three of them sum
      // past 2^53, where a float accumulator would round the last digit away.
      const big = (row: RunRow, version: number, status: RunRow["status"]): RunRow => ({
        ...(rowFromListRun({
          id: row.id,
          status,
          workflow: { id: "workflow_same" },
          batchId: null,
          files: [],
          createdAt: new Date(row.createdAt).toISOString(),
          updatedAt: new Date(version).toISOString(),
          usage: { credits: 4_000_000_000_000.001, totalCredits: 4_000_000_000_000.001 },
        }) as RunRow),
      });
      const page = [
        big(a, 1_000, "PENDING"),
        big(a, 3_000, "PROCESSED"),
        big(a, 2_000, "FAILED"),
        big(b, 1_000, "PROCESSED"),
        big(b, 1_000, "FAILED"),
        big(c, 5_000, "PROCESSED"),
      ];
      state.storage.transactionSync(() => upsertListRows(sql, page));
      const totals = queryTotals(sql, {});
      expect(totals.byStatus.PROCESSED).toBe(3);
      expect(totals.byStatus.FAILED).toBe(0);
      expect(totals.byStatus.PENDING).toBe(0);
      expect(formatDecimal(totals.credits)).toBe("12000000000000.003");
      const kept = queryTotals(sql, {});
      recomputeTotals(sql);
      expect(queryTotals(sql, {})).toEqual(kept);
    });
  });

  it("moves the totals exactly through webhook states, GET confirmations and deletions", async () => {
    await runInDurableObject(freshObject(), (_instance, state) => {
      const sql = state.storage.sql;
      migrate(sql);
      const rows = rowsOf(60);
      state.storage.transactionSync(() => upsertListRows(sql, rows));
      const check = () => {
        const kept = queryTotals(sql, {});
        const byWorkflow = queryTotals(sql, { workflowId: "workflow_guessed" });
        recomputeTotals(sql);
        expect(queryTotals(sql, {})).toEqual(kept);
        expect(queryTotals(sql, { workflowId: "workflow_guessed" })).toEqual(byWorkflow);
      };
      rows.slice(0, 20).forEach((row, i) => {
        applyOverlay(sql, {
          facts: { id: row.id, status: "REJECTED", usage: i % 2 ? null : undefined },
          version: row.version + 1,
          receivedAt: 1,
          createdAtGuess: 1,
        });
      });
      // Runs the index has never seen, with guessed facts, then a list page shows their real ones.
      const unseen = generateRuns({ size: 5, seed: 99 }).map((run) => rowFromListRun(run as never) as RunRow);
      for (const row of unseen) {
        applyOverlay(sql, {
          facts: { id: row.id, status: "NEEDS_REVIEW", workflowId: "workflow_guessed" },
          version: row.version - 10,
          receivedAt: 1,
          createdAtGuess: 1,
        });
      }
      check();
      state.storage.transactionSync(() => upsertListRows(sql, unseen));
      expect(queryTotals(sql, { workflowId: "workflow_guessed" }).byStatus.NEEDS_REVIEW).toBe(0);
      check();
      for (const row of rows.slice(10, 30)) confirmFromGet(sql, { id: row.id, status: "CANCELLED" });
      check();
      for (const row of rows.slice(25, 40)) deleteRun(sql, row.id);
      deleteRun(sql, "workflow_run_never_there");
      check();
      expect(queryTotals(sql, {}).byStatus).toEqual(
        Object.fromEntries(
          Object.keys(queryTotals(sql, {}).byStatus).map((status) => [
            status,
            sql.exec(`SELECT count(*) AS n FROM runs WHERE status = ?`, status).one().n,
          ]),
        ),
      );
    });
  });
});
