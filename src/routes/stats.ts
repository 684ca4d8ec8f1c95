import { createRoute, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import type { AppEnv } from "../app-env.ts";
import type { Config } from "../config.ts";
import { createRouter } from "../http.ts";
import { ListWorkflowRunsQuery, WORKFLOW_RUN_STATUSES, WorkflowRunStatus } from "../schemas.ts";
import { servicesFor, trackedOptions } from "../services.ts";
import { decimalToNumber, totalRuns } from "../stats/aggregate.ts";
import { sharedBudget } from "../stats/budget.ts";
import { MAX_RESUME_TOKEN_LENGTH, openResumeToken, sealResumeToken } from "../stats/resume-token.ts";
import { advanceScan, planScan, type ScanState, type StatsFilters } from "../stats/scan.ts";
import { errorResponses } from "./responses.ts";

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

const StatusCounts = z
  .object(Object.fromEntries(WORKFLOW_RUN_STATUSES.map((s) => [s, z.number().int().min(0)])))
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

function filtersOf(query: z.output<typeof StatsQuery>): StatsFilters {
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

async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** The Extend account a scan reads: its cursors and totals mean nothing under another. */
async function accountOf(config: Config): Promise<string> {
  const key = (await sha256Hex(`extend-runs-proxy:${config.extendApiKey}`)).slice(0, 16);
  return [config.extendApiBaseUrl.href, config.extendApiVersion, config.extendWorkspaceId ?? "", key].join(
    "|",
  );
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

async function scan(
  c: Context<AppEnv>,
  filters: StatsFilters,
  resumeToken: string | undefined,
): Promise<WorkflowRunStats> {
  const config = c.var.config;
  const account = await accountOf(config);
  const tokenContext = {
    secret: config.statsSigningKey ?? config.extendApiKey,
    binding: JSON.stringify({ filters, account }),
    now: Date.now(),
  };
  const state = resumeToken ? await openResumeToken(resumeToken, tokenContext) : planScan(filters);
  const { pages } = servicesFor(c);
  const progress = await advanceScan(filters, state, {
    pages,
    budget: sharedBudget(account, config.upstreamMaxRps),
    maxPages: config.statsMaxPages,
    listOptions: (options) => trackedOptions(c, options),
  });
  const token = progress.complete
    ? null
    : await sealResumeToken(progress.state, { ...tokenContext, now: Date.now() });
  return statsBody(filters, progress.state, progress.complete, token);
}

export const stats = createRouter().openapi(statsRoute, async (c) => {
  const query = c.req.valid("query");
  const filters = filtersOf(query);
  const body = await scan(c, filters, query.resumeToken);
  const cache = query.resumeToken ? "BYPASS" : "MISS";
  c.var.telemetry.cache = cache;
  return c.json(body, 200, { "x-cache": cache, "cache-control": "private, no-store" });
});

export type StatsRoutes = typeof stats;
