import type { Context } from "hono";
import type { AppEnv } from "./app/env.ts";
import { logLine } from "./app/request-log.ts";
import { createKvCache, type KvCache } from "./cache/kv-cache.ts";
import { withL1 } from "./cache/l1.ts";
import { cachedPages, type PageSource } from "./cache/pages.ts";
import { createExtendUpstream, type ListOptions, type WorkflowRunsUpstream } from "./extend/client.ts";

/** The capabilities a handler needs, built from the request's config and bindings. */
export interface Services {
  upstream: WorkflowRunsUpstream;
  /**
   * The KV cache (binding PAGE_CACHE), behind the isolate's L1, for whole results such as /stats;
   * pages go through `pages`.
   */
  cache: KvCache;
  pages: PageSource;
}

export function servicesFor(c: Context<AppEnv>): Services {
  const config = c.var.config;
  const upstream = createExtendUpstream(config);
  const kv = c.env.PAGE_CACHE;
  const kvCache = createKvCache({
    kv,
    waitUntil: (promise) => c.executionCtx.waitUntil(promise),
    log: (record) => logLine({ ...record, requestId: c.var.requestId }),
  });
  const cache = withL1(kvCache, { kv });
  return { upstream, cache, pages: cachedPages({ cache, config, upstream }) };
}

/** Upstream options that record every attempt in the request's telemetry. */
export function trackedOptions(c: Context<AppEnv>, options: ListOptions = {}): ListOptions {
  return {
    ...options,
    onAttempt: (report) => {
      const telemetry = c.var.telemetry;
      telemetry.upstreamAttempts += 1;
      telemetry.upstreamStatus = report.status;
      options.onAttempt?.(report);
    },
  };
}
