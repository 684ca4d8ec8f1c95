import { createRoute } from "@hono/zod-openapi";
import { createRouter } from "../app/router.ts";
import { redactStats, refuseRedactedFilters } from "../security/redact.ts";
import { servicesFor } from "../services.ts";
import { statsFilters } from "../stats/filters.ts";
import { StatsQuery, WorkflowRunStats } from "../stats/schemas.ts";
import { errorResponses } from "./responses.ts";

/** Browsers may keep a complete result but must ask again before using it. */
export const STATS_CACHE_CONTROL = "private, no-cache";

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

export const stats = createRouter().openapi(statsRoute, async (c) => {
  const query = c.req.valid("query");
  refuseRedactedFilters(query, c.var.config.redactFields);
  const served = await servicesFor(c).stats.answer(statsFilters(query), query.resumeToken);
  c.var.telemetry.cache = served.cache;
  const headers: Record<string, string> = {
    "x-cache": served.cache,
    // A partial answer carries a token that continues someone's scan: no cache may keep it.
    "cache-control": served.body.complete ? STATS_CACHE_CONTROL : "no-store",
  };
  if (served.ageSeconds !== undefined) headers.age = String(served.ageSeconds);
  return c.json(redactStats(served.body, c.var.config.redactFields), 200, headers);
});

export type StatsRoutes = typeof stats;
