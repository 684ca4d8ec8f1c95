import type { Context } from "hono";
import { z } from "zod";
import type { AppEnv } from "../app/env.ts";
import type { CacheState } from "../cache/kv-cache.ts";
import type { WorkflowRunStatus } from "../extend/schemas.ts";
import { serveStats } from "../stats/answer.ts";
import type { StatsQuery, WorkflowRunStats } from "../stats/schemas.ts";

/** One workflow's runs and their status mix, for the "top workflows" chart. */
export interface WorkflowSummary {
  id: string;
  name?: string;
  total: number;
  byStatus: Record<WorkflowRunStatus, number>;
}

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
}

// Fields a /stats answer from the run index adds; read leniently so a live-scan answer (which
// has none of them) and an index answer both map onto the freshness line.
const IndexFields = z.object({
  source: z.enum(["scan", "index"]).optional(),
  asOf: z.string().nullish(),
  lagSeconds: z.number().min(0).nullish(),
  build: z.object({ state: z.string(), runsIndexed: z.number().int().min(0).optional() }).optional(),
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

/**
 * The dashboard's numbers for a validated /stats query, from the stats engine that answers
 * `GET /stats` (cache, resume tokens, scan) and redacted as /stats redacts them, so the page and
 * the API cannot disagree. The caller has already checked the filters against REDACT_FIELDS.
 */
export async function loadDashboardStats(
  c: Context<AppEnv>,
  query: z.output<typeof StatsQuery>,
): Promise<DashboardStats> {
  // Exactly what GET /stats answers (index or scan, redacted), so the page and the API agree.
  const served = await serveStats(c, query);
  const extra = IndexFields.safeParse(served.body);
  const fields = extra.success ? extra.data : {};
  return {
    stats: served.body,
    freshness: freshnessOf(served.body, fields, served.cache, served.ageSeconds),
  };
}
