// /stats answered from the index: the same body as a scan's, plus where it came from and how
// fresh it is. Runs inside the tenant object, next to the rows.

import { type Totals, totalsBody } from "../stats/aggregate.ts";
import type { StatsFilters } from "../stats/filters.ts";
import type { WorkflowRunStats } from "../stats/schemas.ts";
import { hasCase } from "./name-match.ts";
import { type FileNameMatch, type IndexFilters, queryTotals } from "./store.ts";
import { type BuildProgress, DEFAULT_LIMITS, type RunIndexSync } from "./sync.ts";

/** What the object tells the route: an answer, or why the route must scan or refuse. */
export type IndexAnswer =
  | { kind: "ready"; body: WorkflowRunStats }
  | { kind: "building"; build: BuildProgress }
  /** The filter's letters may match as written or not, and the index could not ask Extend which in time. */
  | { kind: "matching" }
  | { kind: "lagging"; lagSeconds: number; retryAfterSeconds: number };

export interface AnswerOptions {
  /** Sync first when the index is older than this (the `maxLagSeconds` parameter). */
  maxLagSeconds?: number;
}

/** Retry-After for a 503 when the index could not catch up in time: about one more head walk. */
const CATCH_UP_RETRY_SECONDS = 5;
/**
 * How long a request with maxLagSeconds may wait for head walks before the 503, and one with a
 * file name filter for the index to ask Extend how it matches one (then the route scans).
 */
export const CATCH_UP_BUDGET_MS = 10_000;

export function indexFilters(filters: StatsFilters, fileNameMatch: FileNameMatch): IndexFilters {
  return {
    fileNameMatch,
    ...(filters.status !== undefined ? { status: filters.status } : {}),
    ...(filters.workflowId !== undefined ? { workflowId: filters.workflowId } : {}),
    ...(filters.batchId !== undefined ? { batchId: filters.batchId } : {}),
    ...(filters.fileNameContains !== undefined ? { fileNameContains: filters.fileNameContains } : {}),
    ...(filters.since !== undefined ? { since: Date.parse(filters.since) } : {}),
    ...(filters.until !== undefined ? { until: Date.parse(filters.until) } : {}),
  };
}

export function lagSecondsOf(asOf: number, now: number): number {
  return Math.max(0, now - asOf) / 1000;
}

/** The /stats body for totals read from the index as of `asOf`. */
export function indexStatsBody(
  filters: StatsFilters,
  totals: Totals,
  asOf: number,
  now: number,
): WorkflowRunStats {
  return {
    object: "workflow_run_stats",
    filters,
    ...totalsBody(totals),
    complete: true,
    pagesFetched: 0,
    resumeToken: null,
    computedAt: new Date(now).toISOString(),
    source: "index",
    asOf: new Date(asOf).toISOString(),
    lagSeconds: lagSecondsOf(asOf, now),
  };
}

/**
 * Answers /stats from a built index, catching up first when the caller asked for a maximum lag
 * the index exceeds. While the backfill runs, says how far it is (the route scans meanwhile).
 */
export async function answerStats(
  sync: RunIndexSync,
  sql: SqlStorage,
  filters: StatsFilters,
  options: AnswerOptions,
  now: () => number,
): Promise<IndexAnswer> {
  sync.use();
  const state = sync.state();
  if (state.phase !== "ready" || state.asOf === null) return { kind: "building", build: sync.progress() };
  if (options.maxLagSeconds !== undefined && now() - state.asOf > options.maxLagSeconds * 1000) {
    const caughtUp = await sync.catchUp(options.maxLagSeconds * 1000, {
      ...DEFAULT_LIMITS,
      maxMs: CATCH_UP_BUDGET_MS,
    });
    const after = sync.state();
    const asOf = after.asOf ?? state.asOf;
    if (!caughtUp) {
      // Paused by a 429 (Extend's Retry-After, or the tenant's budget), a catch-up is refused at
      // once until the pause ends; after any other failure the next request tries again.
      const paused = after.errorCode === "UPSTREAM_RATE_LIMITED" && after.retryAt !== null;
      const backOff = paused ? Math.ceil(((after.retryAt as number) - now()) / 1000) : 0;
      return {
        kind: "lagging",
        lagSeconds: lagSecondsOf(asOf, now()),
        retryAfterSeconds: Math.max(CATCH_UP_RETRY_SECONDS, backOff),
      };
    }
  }
  // Only a file name filter depends on how Extend matches names.
  let match: FileNameMatch = "folded";
  if (filters.fileNameContains !== undefined) {
    const settled = hasCase(filters.fileNameContains)
      ? await sync.settleFileNameMatch(CATCH_UP_BUDGET_MS)
      : sync.fileNameMatch();
    if (settled === undefined) return { kind: "matching" };
    match = settled;
  }
  const asOf = sync.state().asOf ?? state.asOf;
  return {
    kind: "ready",
    body: indexStatsBody(filters, queryTotals(sql, indexFilters(filters, match)), asOf, now()),
  };
}
