import type { CacheState } from "./app-env.ts";
import type { CanonicalListQuery } from "./schemas.ts";
import type { ListOptions, UpstreamPage, WorkflowRunsUpstream } from "./upstream.ts";

/** A list page as the route serves it. */
export interface PageResult {
  readonly page: UpstreamPage;
  readonly cache: CacheState;
  /** Seconds since the page was fetched from Extend (HIT and STALE only). */
  readonly ageSeconds?: number;
}

/** Where the list route and /stats get pages from: the KV page cache, or Extend directly. */
export interface PageSource {
  get(query: CanonicalListQuery, options?: ListOptions): Promise<PageResult>;
}

/** A page source with no cache: every page is an upstream call. */
export function uncachedPages(upstream: WorkflowRunsUpstream): PageSource {
  return {
    async get(query, options) {
      return { page: await upstream.list(query, options), cache: "MISS" };
    },
  };
}
