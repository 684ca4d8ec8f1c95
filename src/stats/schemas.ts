import { z } from "@hono/zod-openapi";
import { ListWorkflowRunsQuery, WorkflowRunStatus } from "../extend/schemas.ts";
import { MAX_RESUME_TOKEN_LENGTH } from "./resume-token.ts";

const INSTANT_MESSAGE = "must be an ISO 8601 instant with a time zone, such as 2026-11-01T00:00:00Z";

const InstantParam = z
  .string()
  .pipe(z.iso.datetime({ offset: true, error: INSTANT_MESSAGE }))
  .transform((text) => new Date(text).toISOString())
  .openapi({ type: "string", format: "date-time" });

const list = ListWorkflowRunsQuery.shape;

/** Longest `maxLagSeconds` accepted: a day. */
export const MAX_LAG_SECONDS = 86_400;

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
    maxLagSeconds: z
      .string()
      .regex(/^(0|[1-9]\d{0,4})$/, { error: "must be a whole number of seconds, written plainly" })
      .transform(Number)
      .pipe(
        z
          .number()
          .int()
          .max(MAX_LAG_SECONDS, { error: `must be at most ${MAX_LAG_SECONDS}` }),
      )
      .optional()
      .openapi({
        type: "integer",
        minimum: 0,
        maximum: MAX_LAG_SECONDS,
        param: {
          description:
            "Answer from the run index only if it counts every change made up to this many seconds " +
            "before the request: an older index syncs first, or the answer is a 503 with `Retry-After` " +
            "if it cannot in time. Answered by a scan, no cached answer or page older than this counts.",
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
    byStatus: StatusCounts.optional(),
    usage: z
      .object({
        credits: z
          .number()
          .openapi({ description: "Sum of `usage.credits`, exact to the decimals Extend sends." }),
        totalCredits: z
          .number()
          .openapi({ description: "Sum of `usage.totalCredits`, or of `usage.credits` where it is absent." }),
        runsWithoutUsage: z.number().int().min(0).openapi({ description: "Runs whose `usage` is null." }),
      })
      .optional()
      .openapi({ description: "Absent when REDACT_FIELDS hides `usage` or a field inside it." }),
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
    source: z.enum(["index", "scan"]).openapi({
      description: "`index`: read from the run index; `scan`: counted by paging Extend's list live.",
    }),
    asOf: z
      .string()
      .nullable()
      .openapi({
        format: "date-time",
        description:
          "Index answers: the start of the last completed sync. Every change made in Extend before it is " +
          "counted; deletions as of the last reconcile. Null for a scan.",
      }),
    lagSeconds: z
      .number()
      .min(0)
      .nullable()
      .openapi({ description: "Seconds between `asOf` and `computedAt`. Null for a scan." }),
    build: z
      .object({
        state: z.literal("building"),
        startedAt: z.string().nullable().openapi({ format: "date-time" }),
        runsIndexed: z.number().int().min(0),
        pagesFetched: z.number().int().min(0),
        walksDone: z.number().int().min(0),
        walks: z.number().int().min(0),
      })
      .optional()
      .openapi({ description: "While the run index is being built (this answer is a scan): how far it is." }),
  })
  .openapi("WorkflowRunStats");

export type WorkflowRunStats = z.infer<typeof WorkflowRunStats>;
