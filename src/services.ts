import type { Context } from "hono";
import { type AppEnv, addWarning } from "./app/env.ts";
import { describeError } from "./app/errors.ts";
import { logLine } from "./app/request-log.ts";
import { createKvCache, type KvCache } from "./cache/kv-cache.ts";
import { withL1 } from "./cache/l1.ts";
import { cachedPages, type PageSource } from "./cache/pages.ts";
import { createExtendUpstream, type ListOptions, type WorkflowRunsUpstream } from "./extend/client.ts";
import { gatewayUpstream } from "./gateway/client.ts";
import { systemClock } from "./lib/clock.ts";
import { createStatsEngine, type StatsEngine } from "./stats/engine.ts";

/** The capabilities a handler needs, built from the request's config and bindings. */
export interface Services {
  /** Extend's list through the tenant's gateway object (budget, shared loads), direct as fallback. */
  upstream: WorkflowRunsUpstream;
  /**
   * The KV cache (binding PAGE_CACHE), behind the isolate's L1, for whole results such as /stats;
   * pages go through `pages`.
   */
  cache: KvCache;
  pages: PageSource;
  stats: StatsEngine;
}

export function servicesFor(c: Context<AppEnv>): Services {
  const config = c.var.config;
  const clock = systemClock;
  const upstream = gatewayUpstream({
    namespace: c.env.TENANT,
    config,
    direct: createExtendUpstream(config, { clock }),
    clock,
    onFallback: (reason, error) => {
      addWarning(c.var.telemetry, reason);
      logLine({ level: "warn", msg: reason, requestId: c.var.requestId, error: describeError(error) });
    },
  });
  const kv = c.env.PAGE_CACHE;
  const kvCache = createKvCache({
    kv,
    waitUntil: (promise) => c.executionCtx.waitUntil(promise),
    log: (record) => logLine({ ...record, requestId: c.var.requestId }),
    clock,
  });
  const cache = withL1(kvCache, { kv, clock });
  const pages = cachedPages({ cache, config, upstream });
  const stats = createStatsEngine({
    config,
    cache,
    pages,
    clock,
    ...(c.var.caller ? { caller: c.var.caller.id } : {}),
    listOptions: (options) => trackedOptions(c, options),
  });
  return { upstream, cache, pages, stats };
}

/** Upstream options that name the caller and record every attempt in the request's telemetry. */
export function trackedOptions(c: Context<AppEnv>, options: ListOptions = {}): ListOptions {
  return {
    ...options,
    ...(c.var.caller && options.caller === undefined ? { caller: c.var.caller.id } : {}),
    onAttempt: (report) => {
      const telemetry = c.var.telemetry;
      telemetry.upstreamAttempts += 1;
      telemetry.upstreamStatus = report.status;
      options.onAttempt?.(report);
    },
  };
}
