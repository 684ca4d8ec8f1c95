import { type RunFilters, runFilters } from "../extend/schemas.ts";

/** The filters of one /stats answer, normalised (since/until as `toISOString()` text). */
export interface StatsFilters extends RunFilters {
  since?: string;
  until?: string;
}

/**
 * The filters that are set, in one fixed key order: they are part of the resume-token binding and
 * of the cache key, so equal filters must give equal JSON.
 */
export function statsFilters(source: StatsFilters): StatsFilters {
  return {
    ...runFilters(source),
    ...(source.since ? { since: source.since } : {}),
    ...(source.until ? { until: source.until } : {}),
  };
}
