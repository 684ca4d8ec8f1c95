import type { Config } from "../app/config.ts";
import { ApiError } from "../app/errors.ts";
import { statsCacheKey, tenantScope } from "../cache/keys.ts";
import type { CacheReadOptions, CacheState, KvCache } from "../cache/kv-cache.ts";
import type { PageSource } from "../cache/pages.ts";
import type { ListOptions } from "../extend/client.ts";
import { type Clock, systemClock } from "../lib/clock.ts";
import { decodeUtf8 } from "../lib/utf8.ts";
import { totalsBody } from "./aggregate.ts";
import type { StatsFilters } from "./filters.ts";
import { openResumeToken, sealResumeToken } from "./resume-token.ts";
import { advanceScan, planScan, SCAN_TIME_BUDGET_MS, type ScanState } from "./scan.ts";
import type { WorkflowRunStats } from "./schemas.ts";

/** A /stats answer and how it was served. */
export interface StatsAnswer {
  body: WorkflowRunStats;
  cache: CacheState;
  /** Seconds since the served totals were computed (cached answers only). */
  ageSeconds?: number;
}

/** Counts and sums runs for a set of filters; owns cache policy, resume tokens and the scan. */
export interface StatsEngine {
  /**
   * `maxAgeSeconds` (the `maxLagSeconds` parameter): no cached answer and no cached page older
   * than this counts; they are read again.
   */
  answer(
    filters: StatsFilters,
    resumeToken?: string,
    options?: { maxAgeSeconds?: number },
  ): Promise<StatsAnswer>;
}

export interface StatsEngineDeps {
  config: Config;
  /** The KV cache for whole results (binding PAGE_CACHE). */
  cache: KvCache;
  pages: PageSource;
  clock?: Clock;
  /** Who asked: scan pages share the tenant's budget fairly with that caller's other calls. */
  caller?: string;
  /** Wraps the per-page upstream options (the request's telemetry). */
  listOptions?: (options: ListOptions) => ListOptions;
}

function statsBody(
  filters: StatsFilters,
  state: ScanState,
  complete: boolean,
  resumeToken: string | null,
  now: number,
): WorkflowRunStats {
  return {
    object: "workflow_run_stats",
    filters,
    ...totalsBody(state.totals),
    complete,
    pagesFetched: state.pagesFetched,
    resumeToken,
    computedAt: new Date(now).toISOString(),
    source: "scan",
    asOf: null,
    lagSeconds: null,
  };
}

function storedStats(text: string): WorkflowRunStats | undefined {
  const value: unknown = JSON.parse(text);
  const stats = value as Partial<WorkflowRunStats> | null;
  // Only complete results are ever written; anything else is a corrupt entry.
  return stats?.object === "workflow_run_stats" && stats.complete === true && stats.resumeToken === null
    ? (stats as WorkflowRunStats)
    : undefined;
}

/**
 * The /stats engine. A fresh scan goes through the KV cache: fresh and stale entries are served
 * (a stale one is refreshed in the background), concurrent identical scans share one, and only
 * complete results are stored. A resumed scan never reads the cache (BYPASS); once it completes,
 * its result is offered to the cache so the next caller gets it without scanning.
 */
export function createStatsEngine(deps: StatsEngineDeps): StatsEngine {
  const { config, cache, pages } = deps;
  const clock = deps.clock ?? systemClock;
  const window = { ttlSeconds: config.statsTtlSeconds, staleSeconds: config.cacheStaleSeconds };
  const serialize = (body: WorkflowRunStats) => JSON.stringify(body);

  /** A scan's answer and when its oldest page was read: the age the cache must give it. */
  interface Scanned {
    body: WorkflowRunStats;
    oldestPageAt: number;
  }

  async function scan(
    filters: StatsFilters,
    resumeToken: string | undefined,
    maxAgeSeconds: number | undefined,
  ): Promise<Scanned> {
    const account = await tenantScope(config);
    const tokenContext = {
      secret: config.statsSigningKey ?? config.extendApiKey,
      binding: JSON.stringify({ filters, account }),
      now: clock.now(),
    };
    const state = resumeToken
      ? await openResumeToken(resumeToken, tokenContext)
      : planScan(filters, tokenContext.now);
    const progress = await advanceScan(filters, state, {
      pages,
      maxPages: config.statsMaxPages,
      clock,
      ...(deps.caller ? { caller: deps.caller } : {}),
      ...(deps.listOptions ? { listOptions: deps.listOptions } : {}),
      ...(maxAgeSeconds !== undefined ? { maxPageAgeSeconds: maxAgeSeconds } : {}),
    });
    const now = clock.now();
    const token = progress.complete ? null : await sealResumeToken(progress.state, { ...tokenContext, now });
    return {
      body: statsBody(filters, progress.state, progress.complete, token, now),
      oldestPageAt: progress.state.oldestPageAt,
    };
  }

  /**
   * A scan from the start. Cached pages carry the cursors Extend gave when they were read, and
   * Extend may let a cursor expire sooner than the cache keeps its page: a cursor it refuses is
   * then none of the caller's doing, so the scan is made again from pages read now, whose cursors
   * are fresh.
   */
  async function scanAnew(filters: StatsFilters, maxAgeSeconds: number | undefined): Promise<Scanned> {
    try {
      return await scan(filters, undefined, maxAgeSeconds);
    } catch (error) {
      if (!(error instanceof ApiError) || error.code !== "INVALID_REQUEST" || maxAgeSeconds === 0)
        throw error;
      return scan(filters, undefined, 0);
    }
  }

  /** Only complete answers are kept, and only while their oldest page is within the stale window. */
  const storable = (scanned: Scanned) =>
    scanned.body.complete &&
    clock.now() - scanned.oldestPageAt < (window.ttlSeconds + window.staleSeconds) * 1000;

  return {
    async answer(filters, resumeToken, { maxAgeSeconds } = {}) {
      const key = await statsCacheKey(config, filters);
      if (resumeToken) {
        const scanned = await scan(filters, resumeToken, maxAgeSeconds);
        if (storable(scanned)) {
          await cache
            .offer(key, scanned.body, { ...window, serialize, loadedAt: scanned.oldestPageAt })
            .catch(() => undefined);
        }
        return { body: scanned.body, cache: "BYPASS" };
      }
      const options: CacheReadOptions<Scanned> = {
        ...window,
        load: () => scanAnew(filters, maxAgeSeconds),
        store: storable,
        loadedAt: (scanned) => scanned.oldestPageAt,
        serialize: (scanned) => serialize(scanned.body),
        parse: (stored) => {
          const text = decodeUtf8(stored);
          const body = text === undefined ? undefined : storedStats(text);
          return body ? { body, oldestPageAt: 0 } : undefined;
        },
        maxCoalesceWaitMs: SCAN_TIME_BUDGET_MS + config.upstreamDeadlineMs + 1_000,
        ...(maxAgeSeconds !== undefined ? { maxAgeSeconds } : {}),
      };
      const result = await cache.read(key, options);
      return {
        body: result.value.body,
        cache: result.cache,
        ...(result.ageSeconds !== undefined ? { ageSeconds: result.ageSeconds } : {}),
      };
    },
  };
}
