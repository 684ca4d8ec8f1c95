import { createRoute } from "@hono/zod-openapi";

import { createRouter, jsonText } from "../http.ts";
import { canonicalListQuery, ListWorkflowRunsQuery, WorkflowRunsListResponse } from "../schemas.ts";
import { redactRuns } from "../security/redact.ts";
import { servicesFor, trackedOptions } from "../services.ts";
import { errorResponses } from "./responses.ts";

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
      content: { "application/json": { schema: WorkflowRunsListResponse } },
    },
    ...errorResponses(),
  },
});

export const workflowRuns = createRouter().openapi(listRoute, async (c) => {
  const query = canonicalListQuery(c.req.valid("query"));
  const { pages } = servicesFor(c);
  const result = await pages.get(query, trackedOptions(c));
  c.var.telemetry.cache = result.cache;
  const headers: Record<string, string> = { "x-cache": result.cache };
  if (result.ageSeconds !== undefined) headers.age = String(result.ageSeconds);
  const body = redactRuns(result.page.body, c.var.config.redactFields);
  return jsonText<WorkflowRunsListResponse>(c, body, headers);
});

export type WorkflowRunsRoutes = typeof workflowRuns;
