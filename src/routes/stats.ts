import { createRoute } from "@hono/zod-openapi";
import { createRouter } from "../app/router.ts";
import { serveStats } from "../stats/answer.ts";
import { StatsQuery, WorkflowRunStats } from "../stats/schemas.ts";
import { errorResponses } from "./responses.ts";

export { STATS_CACHE_CONTROL } from "../stats/answer.ts";

const statsRoute = createRoute({
  method: "get",
  path: "/stats",
  summary: "Run counts and credit totals",
  description:
    "Counts runs per status and sums their credits. Once the tenant's run index is built " +
    "(`RUN_INDEX=on`), from the index (`source: index`, with `asOf` and `lagSeconds`); until then, " +
    "or with `RUN_INDEX=off`, over every page of Extend's list for the given filters (`source: scan`). " +
    "A scan reads at most `STATS_MAX_PAGES` pages; an incomplete answer carries a " +
    "`resumeToken`, and calling again with it continues the scan with cumulative totals. Complete " +
    "results are cached for `STATS_TTL_SECONDS` (`x-cache` tells how this one was served).",
  request: { query: StatsQuery },
  responses: {
    200: {
      description: "Totals for the filters; `complete` says whether every matching run was counted.",
      headers: {
        "x-cache": {
          description:
            "`HIT`, `STALE`, `MISS` or `BYPASS` (a resumed scan and an index answer never read the cache).",
          schema: { type: "string", enum: ["HIT", "STALE", "MISS", "BYPASS"] },
        },
        age: {
          description: "With `HIT` and `STALE`: seconds since the cached answer was computed.",
          schema: { type: "integer", minimum: 0 },
        },
        "last-modified": {
          description: "On an answer from the run index: its `asOf`.",
          schema: { type: "string" },
        },
      },
      content: { "application/json": { schema: WorkflowRunStats } },
    },
    ...errorResponses(),
  },
});

export const stats = createRouter().openapi(statsRoute, async (c) => {
  const served = await serveStats(c, c.req.valid("query"));
  c.var.telemetry.cache = served.cache;
  return c.json(served.body, 200, served.headers);
});

export type StatsRoutes = typeof stats;
