import type { Config } from "../app/config.ts";
import {
  type ListOptions,
  pageFromBytes,
  type UpstreamPage,
  type WorkflowRunsUpstream,
} from "../extend/client.ts";
import type { CanonicalListQuery } from "../extend/schemas.ts";
import { BudgetPaused } from "../gateway/isolate-budget.ts";
import { releaseBytes } from "../lib/bytes.ts";
import { pageCacheKey } from "./keys.ts";
import type { CacheState, KvCache } from "./kv-cache.ts";

/** A list page as the route serves it. */
export interface PageResult {
  readonly page: UpstreamPage;
  readonly cache: CacheState;
  /** Seconds since the page was fetched from Extend (HIT and STALE only). */
  readonly ageSeconds?: number;
  /**
   * Validator of the page's stored bytes (hex), known without reading the body; pass it through
   * `weakEtag(entryTag, transform settings)` to build the response's ETag.
   */
  readonly entryTag?: string;
  /**
   * Says the caller is done with the page and will not read its body or its fold again: both are
   * freed as soon as no other reader of the same load holds them (a scan calls it once the page
   * is folded in; the list route, which sends the body, does not).
   */
  readonly release: () => void;
}

export interface PageOptions extends ListOptions {
  /** False: a page past CACHE_TTL_SECONDS is loaded again rather than served stale. */
  acceptStale?: boolean;
  /** A page stored longer ago than this is loaded again (see CacheReadOptions.maxAgeSeconds). */
  maxAgeSeconds?: number;
  /** The caller's rate-limit verdict: nothing is served or loaded for it until this resolves. */
  admission?: Promise<unknown>;
}

/** Where the list route and /stats get pages from (the KV page cache over Extend). */
export interface PageSource {
  get(query: CanonicalListQuery, options?: PageOptions): Promise<PageResult>;
}

export interface CachedPagesDeps {
  cache: KvCache;
  config: Config;
  upstream: WorkflowRunsUpstream;
}

/**
 * Pages through the KV cache (CACHE_TTL_SECONDS fresh, then CACHE_STALE_SECONDS served stale
 * while refreshed). Only pages the upstream client returned are stored, and it returns only
 * 200s with the list shape: every other answer is an error, and errors are never stored.
 */
export function cachedPages({ cache, config, upstream }: CachedPagesDeps): PageSource {
  return {
    async get(query, options = {}) {
      const key = await pageCacheKey(config, query);
      // The load may be shared with other requests and outlive this one (a background refresh):
      // it must not die with this caller's signal. The caller still stops waiting on abort.
      const { signal, acceptStale, maxAgeSeconds, admission, ...shared } = options;
      const result = await cache.read<UpstreamPage>(key, {
        ttlSeconds: config.cacheTtlSeconds,
        staleSeconds: config.cacheStaleSeconds,
        // A refresh is for nobody in particular: it waits behind interactive calls.
        load: ({ background }) => upstream.list(query, background ? { ...shared, priority: "bulk" } : shared),
        // A page another request's load produced is stored by that request.
        store: (page) => page.shared !== true,
        retryAlone: (error) => error instanceof BudgetPaused,
        serialize: (page) => page.body,
        parse: (stored) => pageFromBytes(stored),
        release: (page) => {
          releaseBytes(page.body);
          if (page.pruned) releaseBytes(page.pruned.values);
        },
        maxCoalesceWaitMs: config.upstreamDeadlineMs + 1_000,
        ...(signal ? { signal } : {}),
        ...(acceptStale === false ? { acceptStale } : {}),
        ...(maxAgeSeconds !== undefined ? { maxAgeSeconds } : {}),
        ...(admission ? { admission } : {}),
      });
      return {
        page: result.value,
        cache: result.cache,
        entryTag: result.entryTag,
        release: result.release,
        ...(result.ageSeconds !== undefined ? { ageSeconds: result.ageSeconds } : {}),
      };
    },
  };
}
