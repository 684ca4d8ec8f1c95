import { z } from "@hono/zod-openapi";

/** Extend's workflow run statuses (API version 2026-02-09), in the order the docs list them. */
export const WORKFLOW_RUN_STATUSES = [
  "PENDING",
  "PROCESSING",
  "NEEDS_REVIEW",
  "REJECTED",
  "PROCESSED",
  "FAILED",
  "CANCELLED",
  "CANCELLING",
] as const;

export const WorkflowRunStatus = z
  .enum(WORKFLOW_RUN_STATUSES, { error: `must be one of ${WORKFLOW_RUN_STATUSES.join(", ")}` })
  .openapi("WorkflowRunStatus");
export type WorkflowRunStatus = z.infer<typeof WorkflowRunStatus>;

/** Longest cursor accepted; Extend's look like `base64:base64`, well under 200 characters. */
export const MAX_CURSOR_LENGTH = 2048;
/** Extend ids are at most 255 characters (API versioning docs). */
export const MAX_ID_LENGTH = 255;
export const MAX_FILE_NAME_FILTER_LENGTH = 1024;
export const DEFAULT_PAGE_SIZE = 10;
export const MAX_PAGE_SIZE = 1000;

const PRINTABLE_ASCII = /^[\x21-\x7e]+$/;
// Control characters have no business in a file-name filter and would only confuse logs. No `u`
// flag: the OpenAPI document publishes the source as a pattern, and flags would not survive.
// biome-ignore lint/suspicious/noControlCharactersInRegex: the point is to reject them
const NO_CONTROL_CHARS = /^[^\u0000-\u001f\u007f]+$/;

export const IdParam = z
  .string()
  .min(1, { error: "must not be empty" })
  .max(MAX_ID_LENGTH, { error: `must be at most ${MAX_ID_LENGTH} characters` })
  .regex(PRINTABLE_ASCII, { error: "must be printable ASCII without spaces" });

export const PageSizeParam = z
  .string()
  .regex(/^[1-9]\d{0,3}$/, {
    error: `must be a whole number from 1 to ${MAX_PAGE_SIZE}, written without signs, spaces or leading zeros`,
  })
  .transform(Number)
  .pipe(
    z
      .number()
      .int()
      .min(1)
      .max(MAX_PAGE_SIZE, { error: `must be at most ${MAX_PAGE_SIZE}` }),
  )
  .openapi({ type: "integer", minimum: 1, maximum: MAX_PAGE_SIZE, default: DEFAULT_PAGE_SIZE });

export const SortBy = z.enum(["updatedAt", "createdAt"], { error: "must be updatedAt or createdAt" });
export const SortDir = z.enum(["asc", "desc"], { error: "must be asc or desc" });

export const ListWorkflowRunsQuery = z
  .strictObject({
    status: WorkflowRunStatus.optional().openapi({ param: { description: "Only runs in this status." } }),
    workflowId: IdParam.optional().openapi({
      param: { description: "Only runs of this workflow.", example: "workflow_BMdfq_yWM3sT-ZzvCnA3f" },
    }),
    batchId: IdParam.optional().openapi({
      param: { description: "Only runs of this batch.", example: "batch_7Ws31-F5" },
    }),
    fileNameContains: z
      .string()
      .min(1, { error: "must not be empty" })
      .max(MAX_FILE_NAME_FILTER_LENGTH, {
        error: `must be at most ${MAX_FILE_NAME_FILTER_LENGTH} characters`,
      })
      .regex(NO_CONTROL_CHARS, { error: "must not contain control characters" })
      .optional()
      .openapi({
        param: { description: "Only runs whose file name contains this text.", example: "invoice" },
      }),
    sortBy: SortBy.optional().openapi({
      param: { description: "Sort field; Extend's default is updatedAt." },
    }),
    sortDir: SortDir.optional().openapi({
      param: { description: "Sort direction; Extend's default is desc." },
    }),
    nextPageToken: z
      .string()
      .min(1, { error: "must not be empty" })
      .max(MAX_CURSOR_LENGTH, { error: `must be at most ${MAX_CURSOR_LENGTH} characters` })
      .regex(PRINTABLE_ASCII, { error: "must be printable ASCII without spaces (URL-encode + / = :)" })
      .optional()
      .openapi({ param: { description: "Cursor from the previous page; repeat the same filters with it." } }),
    maxPageSize: PageSizeParam.optional().openapi({
      param: { description: "Runs per page, 1-1000 (default 10)." },
    }),
  })
  .openapi("ListWorkflowRunsQuery");

export type ListWorkflowRunsQuery = z.infer<typeof ListWorkflowRunsQuery>;

/** The filters of Extend's list: the part of a query that chooses runs, not how they are paged. */
export interface RunFilters {
  status?: WorkflowRunStatus;
  workflowId?: string;
  batchId?: string;
  fileNameContains?: string;
}

/** How a list is paged; Extend's defaults fill what is left out. */
export interface PageRequest {
  sortBy?: z.infer<typeof SortBy>;
  sortDir?: z.infer<typeof SortDir>;
  nextPageToken?: string;
  maxPageSize?: number;
}

/** A list query with Extend's defaults applied: what the cache keys on and what goes upstream. */
export interface CanonicalListQuery extends RunFilters {
  sortBy: z.infer<typeof SortBy>;
  sortDir: z.infer<typeof SortDir>;
  nextPageToken?: string;
  maxPageSize: number;
}

/** The filters that are set, always in one key order (cache keys and token bindings rely on it). */
export function runFilters(source: RunFilters): RunFilters {
  return {
    ...(source.status ? { status: source.status } : {}),
    ...(source.workflowId ? { workflowId: source.workflowId } : {}),
    ...(source.batchId ? { batchId: source.batchId } : {}),
    ...(source.fileNameContains ? { fileNameContains: source.fileNameContains } : {}),
  };
}

/** The one builder of upstream list queries: filters in their fixed order, then paging with defaults. */
export function listQuery(filters: RunFilters, page: PageRequest = {}): CanonicalListQuery {
  return {
    ...runFilters(filters),
    sortBy: page.sortBy ?? "updatedAt",
    sortDir: page.sortDir ?? "desc",
    ...(page.nextPageToken ? { nextPageToken: page.nextPageToken } : {}),
    maxPageSize: page.maxPageSize ?? DEFAULT_PAGE_SIZE,
  };
}

/** A validated `GET /workflow_runs` query as it goes upstream. */
export function canonicalListQuery(query: ListWorkflowRunsQuery): CanonicalListQuery {
  return listQuery(query, query);
}

/** Parameter order of the official SDK; the upstream query string always uses it. */
export const UPSTREAM_PARAM_ORDER = [
  "status",
  "workflowId",
  "batchId",
  "fileNameContains",
  "sortBy",
  "sortDir",
  "nextPageToken",
  "maxPageSize",
] as const satisfies readonly (keyof CanonicalListQuery)[];

export function toSearchParams(query: CanonicalListQuery): URLSearchParams {
  const params = new URLSearchParams();
  for (const name of UPSTREAM_PARAM_ORDER) {
    const value = query[name];
    if (value !== undefined) params.set(name, String(value));
  }
  return params;
}

const CreatedBy = z.union([
  z.object({ type: z.literal("user"), email: z.string() }),
  z.object({ type: z.literal("api_key"), name: z.string() }),
]);

const FileSummary = z.looseObject({
  object: z.literal("file"),
  id: z.string(),
  name: z.string(),
  type: z.string().nullable(),
  parentFileId: z.string().nullable().optional(),
  createdAt: z.string(),
  updatedAt: z.string(),
});

export const RunUsageSummary = z.looseObject({
  credits: z.number(),
  totalCredits: z.number().optional(),
});

export const WorkflowRunSummary = z
  .looseObject({
    object: z.literal("workflow_run"),
    id: z.string(),
    status: WorkflowRunStatus,
    workflow: z.looseObject({
      object: z.literal("workflow"),
      id: z.string(),
      name: z.string(),
      createdAt: z.string(),
      updatedAt: z.string(),
      createdBy: CreatedBy.nullable().optional(),
    }),
    workflowVersion: z.looseObject({
      object: z.literal("workflow_version"),
      id: z.string(),
      version: z.string(),
      name: z.string().nullable(),
      createdAt: z.string(),
      createdBy: CreatedBy.nullable().optional(),
    }),
    dashboardUrl: z.string(),
    reviewedByUser: z.string().nullable(),
    reviewedAt: z.string().nullable(),
    initialRunAt: z.string().nullable(),
    startTime: z.string().nullable(),
    endTime: z.string().nullable(),
    batchId: z.string().nullable(),
    rejectionNote: z.string().nullable(),
    files: z.array(FileSummary),
    createdAt: z.string(),
    updatedAt: z.string(),
    usage: RunUsageSummary.nullable(),
  })
  .openapi("WorkflowRunSummary", { description: "Extend's run summary, passed through unchanged." });

export const WorkflowRunsListResponse = z
  .object({
    object: z.literal("list"),
    data: z.array(WorkflowRunSummary),
    nextPageToken: z.string().optional().openapi({ description: "Present while more runs follow." }),
  })
  .openapi("WorkflowRunsListResponse");

export type WorkflowRunsListResponse = z.infer<typeof WorkflowRunsListResponse>;
