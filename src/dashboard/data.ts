import type { Context } from "hono";
import { z } from "zod";
import type { Config } from "../app/config.ts";
import type { AppEnv } from "../app/env.ts";
import type { CacheState } from "../cache/kv-cache.ts";
import type { WorkflowRunStatus } from "../extend/schemas.ts";
import { redactedFilterIssues } from "../security/redact.ts";
import { type ServedStats, serveStats } from "../stats/answer.ts";
import type { StatsQuery, WorkflowRunStats } from "../stats/schemas.ts";

/** How many workflows the chart shows, and at most how many the filter's select offers. */
export const TOP_WORKFLOWS = 10;
export const WORKFLOW_CHOICES = 200;

/** One workflow's runs and their status mix, for the "top workflows" chart. */
export interface WorkflowSummary {
  id: string;
  name?: string;
  total: number;
  /** Absent when REDACT_FIELDS hides `status`, as /stats then has no `byStatus`. */
  byStatus?: Record<WorkflowRunStatus, number>;
}

/** Why the per-workflow view (chart and select) is missing from a page. */
export type WorkflowsMissing =
  | { reason: "off" }
  | { reason: "building"; runsIndexed?: number; walksDone?: number; walks?: number }
  | { reason: "redacted" }
  | { reason: "unavailable" };

/** Where the numbers come from and how old they are, as the freshness line tells it. */
export interface Freshness {
  /** `index` once the run index answers; `scan` for a live scan of Extend (also while it is built). */
  source: "scan" | "index";
  /** The instant the numbers describe: the index's last completed sync, or when the scan ran. */
  asOf: string;
  /** Seconds the index trails Extend (index answers only). */
  lagSeconds?: number;
  /** The run index exists but is still being built, so a live scan answered. */
  indexBuilding?: { runsIndexed?: number };
  /** How this answer was served by the proxy's cache (`x-cache` of /stats). */
  cache: CacheState;
  /** Seconds since a cached answer was computed. */
  ageSeconds?: number;
}

export interface DashboardStats {
  stats: WorkflowRunStats;
  freshness: Freshness;
  /** The top workflows by runs with their status mix (from the run index; absent without it). */
  topWorkflows?: WorkflowSummary[];
  /** Every workflow the filter can offer (from the run index; absent without it). */
  workflowChoices?: { id: string; name?: string }[];
  /** Set when topWorkflows and workflowChoices are absent: why. */
  workflowsMissing?: WorkflowsMissing;
}

// Fields a /stats answer from the run index adds; read leniently so a live-scan answer (which
// has none of them) and an index answer both map onto the freshness line.
const IndexFields = z.object({
  source: z.enum(["scan", "index"]).optional(),
  asOf: z.string().nullish(),
  lagSeconds: z.number().min(0).nullish(),
  build: z
    .object({
      state: z.string(),
      runsIndexed: z.number().int().min(0).optional(),
      walksDone: z.number().int().min(0).optional(),
      walks: z.number().int().min(0).optional(),
    })
    .optional(),
});

function freshnessOf(
  body: WorkflowRunStats,
  extra: z.infer<typeof IndexFields>,
  cache: CacheState,
  ageSeconds: number | undefined,
): Freshness {
  const source = extra.source ?? "scan";
  const build = extra.build;
  const building = source === "scan" && build !== undefined;
  return {
    source,
    asOf: extra.asOf ?? body.computedAt,
    ...(typeof extra.lagSeconds === "number" ? { lagSeconds: extra.lagSeconds } : {}),
    ...(building
      ? { indexBuilding: build.runsIndexed !== undefined ? { runsIndexed: build.runsIndexed } : {} }
      : {}),
    cache,
    ...(ageSeconds !== undefined ? { ageSeconds } : {}),
  };
}

/** The per-workflow view as the page shows it, redacted as /stats is, or why it is missing. */
function workflowsView(
  config: Config,
  served: ServedStats,
  fields: z.infer<typeof IndexFields>,
): Pick<DashboardStats, "topWorkflows" | "workflowChoices" | "workflowsMissing"> {
  if (!config.runIndex) return { workflowsMissing: { reason: "off" } };
  if (workflowIdRedacted(config)) return { workflowsMissing: { reason: "redacted" } };
  const workflows = served.workflows;
  if (workflows === undefined) {
    const build = fields.build;
    if (build === undefined) return { workflowsMissing: { reason: "unavailable" } };
    const { runsIndexed, walksDone, walks } = build;
    return {
      workflowsMissing: {
        reason: "building",
        ...(runsIndexed !== undefined ? { runsIndexed } : {}),
        ...(walksDone !== undefined && walks !== undefined ? { walksDone, walks } : {}),
      },
    };
  }
  // The very rule of redactStats: no byStatus on /stats, no status mix here.
  const withMix = served.body.byStatus !== undefined;
  return {
    topWorkflows: workflows.top.map((w) => ({
      id: w.id,
      total: w.total,
      ...(withMix ? { byStatus: { ...w.byStatus } } : {}),
    })),
    workflowChoices: workflows.choices.map((choice) => ({ id: choice.id })),
  };
}

/** Workflow ids are themselves redacted (the filter on them is refused): no view lists them. */
function workflowIdRedacted(config: Config): boolean {
  return redactedFilterIssues({ workflowId: "" }, config.redactFields).length > 0;
}

/**
 * The dashboard's numbers for a validated /stats query, from the stats engine that answers
 * `GET /stats` (cache, resume tokens, scan) and redacted as /stats redacts them, so the page and
 * the API cannot disagree; from the same call to the run index, the top workflows and the
 * select's choices. The caller has already checked the filters against REDACT_FIELDS.
 */
export async function loadDashboardStats(
  c: Context<AppEnv>,
  query: z.output<typeof StatsQuery>,
): Promise<DashboardStats> {
  const config = c.var.config;
  const wanted = config.runIndex && !workflowIdRedacted(config);
  // Exactly what GET /stats answers (index or scan, redacted), so the page and the API agree.
  const served = await serveStats(
    c,
    query,
    wanted ? { top: TOP_WORKFLOWS, choices: WORKFLOW_CHOICES } : undefined,
  );
  const extra = IndexFields.safeParse(served.body);
  const fields = extra.success ? extra.data : {};
  return {
    stats: served.body,
    freshness: freshnessOf(served.body, fields, served.cache, served.ageSeconds),
    ...workflowsView(config, served, fields),
  };
}
