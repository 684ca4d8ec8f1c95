// The dashboard's per-workflow view, read from the index inside the tenant object: the top
// workflows by runs with their status mix, and the workflows its filter offers. Both aggregate in
// SQL with a bounded LIMIT, so what leaves the object is a few rows whatever the number of runs.
import { WORKFLOW_RUN_STATUSES, type WorkflowRunStatus } from "../extend/schemas.ts";
import { emptyTotals } from "../stats/aggregate.ts";
import type { StatsFilters } from "../stats/filters.ts";
import { type AnswerOptions, answerStats, type IndexAnswer, indexFilters } from "./answer.ts";
import { type IndexFilters, runConditions, usesTotalsOnly } from "./store.ts";
import type { RunIndexSync } from "./sync.ts";

/** The most workflows either list may hold, whatever a caller asks for. */
export const MAX_TOP_WORKFLOWS = 50;
export const MAX_WORKFLOW_CHOICES = 500;

/** How many workflows the dashboard wants in its chart and in its select. */
export interface WorkflowsQuery {
  top: number;
  choices: number;
}

/** One workflow's runs under the filters, per status. */
export interface WorkflowCounts {
  id: string;
  total: number;
  byStatus: Record<WorkflowRunStatus, number>;
}

export interface IndexWorkflows {
  /** The workflows with the most runs under the filters, most first (ties by id). */
  top: WorkflowCounts[];
  /**
   * Workflows by their number of runs (all of them, no filter), most first; the filter's
   * workflowId is always among them, last when the bound or the index leaves it out.
   */
  choices: { id: string; runs: number }[];
}

/** /stats from the index and, once it answers, the per-workflow view of the same instant. */
export type DashboardIndexAnswer =
  | { kind: "ready"; stats: Extract<IndexAnswer, { kind: "ready" }>; workflows: IndexWorkflows }
  | { kind: "not-ready"; stats: Exclude<IndexAnswer, { kind: "ready" }> };

const bound = (n: number, max: number) => Math.max(0, Math.min(max, Math.floor(n)));

/** The statement behind topWorkflows (exported so a test can read its query plan). */
export function topWorkflowsStatement(
  filters: IndexFilters,
  limit: number,
): { query: string; bindings: (string | number)[] } {
  const { where, bindings } = runConditions(filters);
  const fromTotals = usesTotalsOnly(filters);
  const conditions = ["workflow_id <> ''", ...where].join(" AND ");
  const query = `
    WITH counts AS (
      SELECT workflow_id, status, ${fromTotals ? "sum(runs)" : "count(*)"} AS runs
      FROM ${fromTotals ? "run_totals" : "runs"} WHERE ${conditions}
      GROUP BY workflow_id, status
    ),
    top AS (
      SELECT workflow_id, sum(runs) AS total FROM counts
      WHERE status IN (${WORKFLOW_RUN_STATUSES.map(() => "?").join(", ")})
      GROUP BY workflow_id HAVING total > 0
      ORDER BY total DESC, workflow_id LIMIT ?
    )
    SELECT counts.workflow_id AS id, counts.status AS status, counts.runs AS runs, top.total AS total
    FROM counts JOIN top USING (workflow_id)
    WHERE counts.runs > 0
    ORDER BY top.total DESC, counts.workflow_id`;
  return { query, bindings: [...bindings, ...WORKFLOW_RUN_STATUSES, limit] };
}

/**
 * Runs per (workflow, status) under the filters, for the `limit` workflows with the most runs.
 * Without row filters it reads the totals every write keeps exact (workflows × 8 rows); with them, the
 * matching rows through the index on created_at, batch_id or (workflow_id, created_at). Runs a
 * webhook knew no workflow for (an empty id) are left out: no /stats filter selects them.
 */
export function topWorkflows(sql: SqlStorage, filters: IndexFilters, limit: number): WorkflowCounts[] {
  const top = bound(limit, MAX_TOP_WORKFLOWS);
  if (top === 0) return [];
  const { query, bindings } = topWorkflowsStatement(filters, top);
  const rows = sql.exec<{ id: string; status: string; runs: number; total: number }>(query, ...bindings);
  const known = new Set<string>(WORKFLOW_RUN_STATUSES);
  const workflows: WorkflowCounts[] = [];
  for (const row of rows) {
    let current = workflows.at(-1);
    if (current?.id !== row.id) {
      current = { id: row.id, total: row.total, byStatus: emptyTotals().byStatus };
      workflows.push(current);
    }
    if (known.has(row.status)) current.byStatus[row.status as WorkflowRunStatus] += row.runs;
  }
  return workflows;
}

/**
 * The workflows the filter offers, by their number of runs (from the totals, never the rows),
 * at most `limit` of them; `selected` is always there, appended when the bound leaves it out.
 */
export function workflowChoices(
  sql: SqlStorage,
  limit: number,
  selected?: string,
): { id: string; runs: number }[] {
  const choices = sql
    .exec<{ id: string; runs: number }>(
      `SELECT workflow_id AS id, sum(runs) AS runs FROM run_totals WHERE workflow_id <> ''
       GROUP BY workflow_id HAVING runs > 0 ORDER BY runs DESC, workflow_id LIMIT ?`,
      bound(limit, MAX_WORKFLOW_CHOICES),
    )
    .toArray();
  if (selected !== undefined && !choices.some((choice) => choice.id === selected)) {
    const runs =
      sql
        .exec<{ runs: number | null }>(
          `SELECT sum(runs) AS runs FROM run_totals WHERE workflow_id = ?`,
          selected,
        )
        .one().runs ?? 0;
    choices.push({ id: selected, runs });
  }
  return choices;
}

/**
 * What the dashboard needs from the index in one call: the /stats answer, and when it comes from
 * the index, the per-workflow view read right after it with no await between, so both describe
 * the same rows.
 */
export async function answerDashboard(
  sync: RunIndexSync,
  sql: SqlStorage,
  filters: StatsFilters,
  options: AnswerOptions,
  query: WorkflowsQuery,
  now: () => number,
): Promise<DashboardIndexAnswer> {
  const stats = await answerStats(sync, sql, filters, options, now);
  if (stats.kind !== "ready") return { kind: "not-ready", stats };
  return {
    kind: "ready",
    stats,
    workflows: {
      top: topWorkflows(sql, indexFilters(filters, sync.fileNameMatch()), query.top),
      choices: workflowChoices(sql, query.choices, filters.workflowId),
    },
  };
}
