import type { z } from "@hono/zod-openapi";
import type { Context } from "hono";
import type { AppEnv } from "../app/env.ts";
import type { CacheState } from "../cache/kv-cache.ts";
import { indexHeaders, indexLagging, scanSource, statsFromIndex } from "../run-index/client.ts";
import type { IndexWorkflows, WorkflowsQuery } from "../run-index/workflows.ts";
import { redactStats, refuseRedactedFilters } from "../security/redact.ts";
import { servicesFor } from "../services.ts";
import { statsFilters } from "./filters.ts";
import type { StatsQuery, WorkflowRunStats } from "./schemas.ts";

/** Browsers may keep a complete result but must ask again before using it. */
export const STATS_CACHE_CONTROL = "private, no-cache";

/** A /stats answer as both `GET /stats` and the dashboard serve it. */
export interface ServedStats {
  /** Redacted as REDACT_FIELDS says. */
  body: WorkflowRunStats;
  headers: Record<string, string>;
  cache: CacheState;
  ageSeconds?: number;
  /** The per-workflow view, when it was asked for and the index answered. */
  workflows?: IndexWorkflows;
}

/**
 * The one path to a /stats answer: a resumed scan stays a scan; otherwise a built run index
 * answers, and the stats engine's scan is the fallback. Filters on redacted fields are refused.
 * `workflows` (the dashboard) asks the index for its per-workflow view in the same call.
 */
export async function serveStats(
  c: Context<AppEnv>,
  query: z.output<typeof StatsQuery>,
  workflows?: WorkflowsQuery,
): Promise<ServedStats> {
  const config = c.var.config;
  refuseRedactedFilters(query, config.redactFields);
  const filters = statsFilters(query);
  const indexed = query.resumeToken
    ? undefined
    : await statsFromIndex(c.env, config, filters, query.maxLagSeconds, c.var.requestId, workflows);
  if (indexed?.kind === "lagging") throw indexLagging(indexed);
  if (indexed?.kind === "ready") {
    return {
      body: redactStats(indexed.body, config.redactFields),
      headers: indexHeaders(indexed.body),
      cache: "BYPASS",
      ...(indexed.workflows ? { workflows: indexed.workflows } : {}),
    };
  }
  // maxLagSeconds holds for a scan too: no cached answer or page older than it is counted.
  const served = await servicesFor(c).stats.answer(
    filters,
    query.resumeToken,
    query.maxLagSeconds === undefined ? {} : { maxAgeSeconds: query.maxLagSeconds },
  );
  const headers: Record<string, string> = {
    "x-cache": served.cache,
    // A partial answer carries a token that continues someone's scan: no cache may keep it.
    "cache-control": served.body.complete ? STATS_CACHE_CONTROL : "no-store",
  };
  if (served.ageSeconds !== undefined) headers.age = String(served.ageSeconds);
  return {
    body: redactStats({ ...served.body, ...scanSource(indexed) }, config.redactFields),
    headers,
    cache: served.cache,
    ...(served.ageSeconds !== undefined ? { ageSeconds: served.ageSeconds } : {}),
  };
}
