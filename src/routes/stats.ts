import { createRoute, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import type { Config } from "../app/config.ts";
import type { AppEnv, CacheState } from "../app/env.ts";
import { createRouter } from "../app/router.ts";
import { statsCacheKey, tenantScope } from "../cache/keys.ts";
import type { CacheReadOptions } from "../cache/kv-cache.ts";
import { ListWorkflowRunsQuery, WorkflowRunStatus } from "../extend/schemas.ts";
import { type Services, servicesFor, trackedOptions } from "../services.ts";
import { decimalToNumber, totalRuns } from "../stats/aggregate.ts";
import { sharedBudget } from "../stats/budget.ts";
import { MAX_RESUME_TOKEN_LENGTH, openResumeToken, sealResumeToken } from "../stats/resume-token.ts";
import {
  advanceScan,
  planScan,
  SCAN_TIME_BUDGET_MS,
  type ScanState,
  type StatsFilters,
} from "../stats/scan.ts";
import { errorResponses } from "./responses.ts";

/** Browsers may keep a complete result but must ask again before using it. */
export const STATS_CACHE_CONTROL = "private, no-cache";

const INSTANT_MESSAGE = "must be an ISO 8601 instant with a time zone, such as 2026-11-01T00:00:00Z";

const InstantParam = z
  .string()
  .pipe(z.iso.datetime({ offset: true, error: INSTANT_MESSAGE }))
  .transform((text) => new Date(text).toISOString())
  .openapi({ type: "string", format: "date-time" });

const list = ListWorkflowRunsQuery.shape;

export const StatsQuery = z
  .strictObject({
    status: list.status,
    workflowId: list.workflowId,
    batchId: list.batchId,
    fileNameContains: list.fileNameContains,
    since: InstantParam.optional().openapi({
      param: {
        description:
          "Only runs created at or after this instant; the scan walks newest first and stops here.",
        example: "2026-11-01T00:00:00Z",
      },
    }),
    until: InstantParam.optional().openapi({
      param: { description: "Only runs created at or before this instant.", example: "2026-11-30T00:00:00Z" },
    }),
    resumeToken: z
      .string()
      .min(1, { error: "must not be empty" })
      .max(MAX_RESUME_TOKEN_LENGTH, { error: `must be at most ${MAX_RESUME_TOKEN_LENGTH} characters` })
      .regex(/^[A-Za-z0-9_-]+$/, { error: "must be a token returned by /stats, unchanged" })
      .optional()
      .openapi({
        param: {
          description:
            "`resumeToken` of an incomplete answer: continues that scan. Repeat the same filters with it.",
        },
      }),
  })
  .refine((q) => q.since === undefined || q.until === undefined || q.since <= q.until, {
    path: ["until"],
    error: "must not be before since",
  })
  .openapi("StatsQuery");

const count = z.number().int().min(0);
// Spelled out (not built from WORKFLOW_RUN_STATUSES) so hc clients see eight required numbers.
const StatusCounts = z
  .object({
    PENDING: count,
    PROCESSING: count,
    NEEDS_REVIEW: count,
    REJECTED: count,
    PROCESSED: count,
    FAILED: count,
    CANCELLED: count,
    CANCELLING: count,
  } satisfies Record<WorkflowRunStatus, typeof count>)
  .openapi("StatusCounts", { description: "Runs per status; always all eight statuses." });

export const WorkflowRunStats = z
  .object({
    object: z.literal("workflow_run_stats"),
    filters: z
      .object({
        status: WorkflowRunStatus.optional(),
        workflowId: z.string().optional(),
        batchId: z.string().optional(),
        fileNameContains: z.string().optional(),
        since: z.string().optional(),
        until: z.string().optional(),
      })
      .openapi({ description: "The filters given, normalised (instants as UTC with milliseconds)." }),
    total: z.number().int().min(0).openapi({ description: "Matching runs counted (so far)." }),
    byStatus: StatusCounts,
    usage: z.object({
      credits: z
        .number()
        .openapi({ description: "Sum of `usage.credits`, exact to the decimals Extend sends." }),
      totalCredits: z
        .number()
        .openapi({ description: "Sum of `usage.totalCredits`, or of `usage.credits` where it is absent." }),
      runsWithoutUsage: z.number().int().min(0).openapi({ description: "Runs whose `usage` is null." }),
    }),
    complete: z.boolean().openapi({
      description: "False when the page budget ran out: call again with `resumeToken` for the rest.",
    }),
    pagesFetched: z
      .number()
      .int()
      .min(0)
      .openapi({ description: "Pages of 1000 read so far by this scan, across resumed calls." }),
    resumeToken: z.string().nullable().openapi({
      description: "Opaque; pass it back with the same filters to continue. Null once complete.",
    }),
    computedAt: z.string().openapi({ format: "date-time", description: "When these totals were computed." }),
  })
  .openapi("WorkflowRunStats");

export type WorkflowRunStats = z.infer<typeof WorkflowRunStats>;

const statsRoute = createRoute({
  method: "get",
  path: "/stats",
  summary: "Run counts and credit totals",
  description:
    "Counts runs per status and sums their credits over every page of Extend's list for the given " +
    "filters. A request reads at most `STATS_MAX_PAGES` pages; an incomplete answer carries a " +
    "`resumeToken`, and calling again with it continues the scan with cumulative totals. Complete " +
    "results are cached for `STATS_TTL_SECONDS` (`x-cache` tells how this one was served).",
  request: { query: StatsQuery },
  responses: {
    200: {
      description: "Totals for the filters; `complete` says whether every matching run was counted.",
      headers: {
        "x-cache": {
          description: "`HIT`, `STALE`, `MISS` or `BYPASS` (a resumed scan never reads the cache).",
          schema: { type: "string", enum: ["HIT", "STALE", "MISS", "BYPASS"] },
        },
      },
      content: { "application/json": { schema: WorkflowRunStats } },
    },
    ...errorResponses(),
  },
});

/** The scan's filters from a validated /stats query (the dashboard reads through this too). */
export function filtersOf(query: z.output<typeof StatsQuery>): StatsFilters {
  // Fixed key order: the filters are part of the resume-token binding and the cache key.
  return {
    ...(query.status ? { status: query.status } : {}),
    ...(query.workflowId ? { workflowId: query.workflowId } : {}),
    ...(query.batchId ? { batchId: query.batchId } : {}),
    ...(query.fileNameContains ? { fileNameContains: query.fileNameContains } : {}),
    ...(query.since ? { since: query.since } : {}),
    ...(query.until ? { until: query.until } : {}),
  };
}

function statsBody(filters: StatsFilters, state: ScanState, complete: boolean, resumeToken: string | null) {
  const totals = state.totals;
  return {
    object: "workflow_run_stats" as const,
    filters,
    total: totalRuns(totals),
    byStatus: { ...totals.byStatus },
    usage: {
      credits: decimalToNumber(totals.credits),
      totalCredits: decimalToNumber(totals.totalCredits),
      runsWithoutUsage: totals.runsWithoutUsage,
    },
    complete,
    pagesFetched: state.pagesFetched,
    resumeToken,
    computedAt: new Date().toISOString(),
  } satisfies WorkflowRunStats;
}

/** Carries an incomplete answer out of the cache's load, so it is shared but never stored. */
class PartialScan extends Error {
  readonly body: WorkflowRunStats;
  constructor(body: WorkflowRunStats) {
    super("partial /stats result");
    this.name = "PartialScan";
    this.body = body;
  }
}

async function scan(
  c: Context<AppEnv>,
  services: Services,
  filters: StatsFilters,
  resumeToken: string | undefined,
): Promise<WorkflowRunStats> {
  const config = c.var.config;
  const account = await tenantScope(config);
  const tokenContext = {
    secret: config.statsSigningKey ?? config.extendApiKey,
    binding: JSON.stringify({ filters, account }),
    now: Date.now(),
  };
  const state = resumeToken ? await openResumeToken(resumeToken, tokenContext) : planScan(filters);
  const progress = await advanceScan(filters, state, {
    pages: services.pages,
    budget: sharedBudget(account, config.upstreamMaxRps),
    maxPages: config.statsMaxPages,
    listOptions: (options) => trackedOptions(c, options),
  });
  const token = progress.complete
    ? null
    : await sealResumeToken(progress.state, { ...tokenContext, now: Date.now() });
  return statsBody(filters, progress.state, progress.complete, token);
}

function storedStats(text: string): WorkflowRunStats | undefined {
  const value: unknown = JSON.parse(text);
  const stats = value as Partial<WorkflowRunStats> | null;
  // Only complete results are ever written; anything else is a corrupt entry.
  return stats?.object === "workflow_run_stats" && stats.complete === true && stats.resumeToken === null
    ? (stats as WorkflowRunStats)
    : undefined;
}

function cacheOptions(
  config: Config,
  load: () => Promise<WorkflowRunStats>,
): CacheReadOptions<WorkflowRunStats> {
  return {
    ttlSeconds: config.statsTtlSeconds,
    staleSeconds: config.cacheStaleSeconds,
    load,
    serialize: (body) => JSON.stringify(body),
    parse: storedStats,
    maxCoalesceWaitMs: SCAN_TIME_BUDGET_MS + config.upstreamDeadlineMs + 1_000,
  };
}

export interface Served {
  body: WorkflowRunStats;
  cache: CacheState;
  ageSeconds?: number;
}

/**
 * A fresh scan goes through the KV cache: fresh and stale entries are served (a stale one is
 * refreshed in the background), concurrent identical scans share one, and only complete
 * results are stored. A resumed scan never reads the cache (BYPASS); once it completes, its
 * result is offered to the cache so the next caller gets it without scanning.
 */
export async function serve(
  c: Context<AppEnv>,
  filters: StatsFilters,
  resumeToken: string | undefined,
): Promise<Served> {
  const config = c.var.config;
  const services = servicesFor(c);
  const key = await statsCacheKey(config, filters);
  if (resumeToken) {
    const body = await scan(c, services, filters, resumeToken);
    if (body.complete) {
      await services.cache
        .read(
          key,
          cacheOptions(config, async () => body),
        )
        .catch(() => undefined);
    }
    return { body, cache: "BYPASS" };
  }
  try {
    const result = await services.cache.read(
      key,
      cacheOptions(config, async () => {
        const body = await scan(c, services, filters, undefined);
        if (!body.complete) throw new PartialScan(body);
        return body;
      }),
    );
    return {
      body: result.value,
      cache: result.cache,
      ...(result.ageSeconds !== undefined ? { ageSeconds: result.ageSeconds } : {}),
    };
  } catch (error) {
    if (error instanceof PartialScan) return { body: error.body, cache: "MISS" };
    throw error;
  }
}

export const stats = createRouter().openapi(statsRoute, async (c) => {
  const query = c.req.valid("query");
  const served = await serve(c, filtersOf(query), query.resumeToken);
  c.var.telemetry.cache = served.cache;
  const headers: Record<string, string> = {
    "x-cache": served.cache,
    // A partial answer carries a token that continues someone's scan: no cache may keep it.
    "cache-control": served.body.complete ? STATS_CACHE_CONTROL : "no-store",
  };
  if (served.ageSeconds !== undefined) headers.age = String(served.ageSeconds);
  return c.json(served.body, 200, headers);
});

export type StatsRoutes = typeof stats;
