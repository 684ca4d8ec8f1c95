import { createRoute } from "@hono/zod-openapi";
import { createRouter, jsonText } from "../app/router.ts";
import { ifNoneMatchHits, weakEtag } from "../cache/etag.ts";
import { pageText } from "../extend/client.ts";
import { canonicalListQuery, ListWorkflowRunsQuery, WorkflowRunsListResponse } from "../extend/schemas.ts";
import { redactRuns, refuseRedactedFilters } from "../security/redact.ts";
import { servicesFor, trackedOptions } from "../services.ts";
import { errorResponses } from "./responses.ts";

/**
 * Browsers may keep a page but must revalidate it on every use: a revalidation is a KV read and a
 * 304 for an authenticated caller, and the proxy's cache stays the one place that decides freshness.
 */
export const LIST_CACHE_CONTROL = "private, no-cache";

const PAGE_ETAG_HEADER = {
  description: "A weak validator of the page's bytes and the redaction setting, for `If-None-Match`.",
  schema: { type: "string" },
} as const;

const listRoute = createRoute({
  method: "get",
  path: "/workflow_runs",
  summary: "List workflow runs",
  description:
    "Extend's List Workflow Runs, validated, cached by cursor and forwarded with the proxy's own key. " +
    "Same parameters and response shape as Extend's API (version 2026-02-09).",
  request: { query: ListWorkflowRunsQuery },
  responses: {
    200: {
      description: "One page of runs, exactly as Extend returned it.",
      headers: {
        "x-cache": {
          description: "`HIT`, `STALE`, `MISS` or `BYPASS`: how the page was served.",
          schema: { type: "string", enum: ["HIT", "STALE", "MISS", "BYPASS"] },
        },
        etag: PAGE_ETAG_HEADER,
        age: {
          description: "With `HIT` and `STALE`: seconds since the page was fetched from Extend.",
          schema: { type: "integer", minimum: 0 },
        },
      },
      content: { "application/json": { schema: WorkflowRunsListResponse } },
    },
    304: {
      description: "Not modified: `If-None-Match` matched the page's current `ETag`.",
      headers: { etag: PAGE_ETAG_HEADER },
    },
    ...errorResponses(),
  },
});

export const workflowRuns = createRouter().openapi(listRoute, async (c) => {
  const query = canonicalListQuery(c.req.valid("query"));
  refuseRedactedFilters(query, c.var.config.redactFields);
  const { pages } = servicesFor(c);
  const result = await pages.get(query, { ...trackedOptions(c), admission: c.var.admission });
  c.var.telemetry.cache = result.cache;
  const headers: Record<string, string> = { "x-cache": result.cache, "cache-control": LIST_CACHE_CONTROL };
  if (result.ageSeconds !== undefined) headers.age = String(result.ageSeconds);
  if (result.entryTag !== undefined) {
    // The served body depends on the stored page and the redaction setting: both name the ETag.
    headers.etag = weakEtag(result.entryTag, c.var.config.redactFields);
    if (ifNoneMatchHits(c.req.header("if-none-match"), headers.etag)) return c.body(null, 304, headers);
  }
  const fields = c.var.config.redactFields;
  // The page's bytes go out as stored; only redaction, which rewrites them, makes them text.
  const body = fields.length === 0 ? result.page.body : redactRuns(pageText(result.page), fields);
  return jsonText<WorkflowRunsListResponse>(c, body, headers);
});

export type WorkflowRunsRoutes = typeof workflowRuns;
