// The dashboard's per-workflow queries inside a real object's SQLite: the plan SQLite picks for
// each kind of filter (the totals, or an index on the rows; never a pass over every run where an
// index helps), the bounds, and runs a webhook knew no workflow for.
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { generateRuns } from "../../../fake/extend.ts";
import { rowFromListRun } from "../../../src/run-index/row.ts";
import { buildFilterIndexes, migrate } from "../../../src/run-index/schema.ts";
import { applyOverlay, type IndexFilters, upsertListRows } from "../../../src/run-index/store.ts";
import {
  MAX_TOP_WORKFLOWS,
  topWorkflows,
  topWorkflowsStatement,
  workflowChoices,
} from "../../../src/run-index/workflows.ts";
import { freshObject } from "../support/run-index.ts";

function seed(sql: SqlStorage, workflows: number, size: number): void {
  migrate(sql);
  const rows = generateRuns({ size, seed: 23 }).map((run, i) => {
    const row = rowFromListRun({
      ...run,
      workflow: { ...run.workflow, id: `workflow_${String(i % workflows).padStart(3, "0")}` },
    } as unknown as Record<string, unknown>);
    if (!row) throw new Error("no row");
    return row;
  });
  upsertListRows(sql, rows);
  // As an index that answers has them (the backfill builds them once it has every row).
  buildFilterIndexes(sql);
}

function plan(sql: SqlStorage, filters: IndexFilters): string {
  const { query, bindings } = topWorkflowsStatement(filters, 10);
  return sql
    .exec<{ detail: string }>(`EXPLAIN QUERY PLAN ${query}`, ...bindings)
    .toArray()
    .map((row) => row.detail)
    .join("\n");
}

describe("the per-workflow queries", () => {
  it.each<[string, IndexFilters, RegExp]>([
    ["no filter", {}, /run_totals/],
    ["a status", { status: "FAILED" }, /run_totals/],
    ["a time window", { since: 1, until: 2 }, /runs USING (COVERING )?INDEX runs_by_created/],
    ["a batch", { batchId: "batch_1" }, /runs USING (COVERING )?INDEX runs_by_batch/],
    [
      "a workflow and a time window",
      { workflowId: "workflow_001", since: 1 },
      /runs USING (COVERING )?INDEX runs_by_workflow_created/,
    ],
  ])("reads %s through the totals or an index, never every run", async (_name, filters, expected) => {
    await runInDurableObject(freshObject(), (_instance, state) => {
      const sql = state.storage.sql;
      seed(sql, 12, 200);
      const detail = plan(sql, filters);
      expect(detail).toMatch(expected);
      expect(detail).not.toMatch(/SCAN runs\b(?! USING)/);
    });
  });

  it("bounds both lists and keeps the selected workflow", async () => {
    await runInDurableObject(freshObject(), (_instance, state) => {
      const sql = state.storage.sql;
      seed(sql, 80, 400);
      expect(topWorkflows(sql, {}, 1_000)).toHaveLength(MAX_TOP_WORKFLOWS);
      const choices = workflowChoices(sql, 20, "workflow_079");
      expect(choices).toHaveLength(21);
      expect(choices.at(-1)).toEqual({ id: "workflow_079", runs: 5 });
      expect(workflowChoices(sql, 20, "workflow_000")).toHaveLength(20);
    });
  });

  it("leaves out runs a webhook knew no workflow for: no filter selects them", async () => {
    await runInDurableObject(freshObject(), (_instance, state) => {
      const sql = state.storage.sql;
      seed(sql, 3, 30);
      applyOverlay(sql, {
        facts: { id: "run_from_a_webhook", status: "PROCESSED" },
        version: 1,
        receivedAt: 1,
        createdAtGuess: Date.parse("2026-10-31T23:00:00Z"),
      });
      const ids = (list: { id: string }[]) => list.map((w) => w.id).sort();
      const expected = ["workflow_000", "workflow_001", "workflow_002"];
      expect(ids(topWorkflows(sql, {}, 10))).toEqual(expected);
      expect(ids(topWorkflows(sql, { since: 0 }, 10))).toEqual(expected);
      expect(ids(workflowChoices(sql, 10))).toEqual(expected);
      expect(topWorkflows(sql, {}, 10).reduce((sum, w) => sum + w.total, 0)).toBe(30);
    });
  });
});
