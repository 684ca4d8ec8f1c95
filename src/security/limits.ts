// The Rate Limiting bindings this proxy declares, and the limit wrangler.toml gives each.

/**
 * The `simple.limit` of each Rate Limiting binding in wrangler.toml (a test checks every
 * environment). The *_LIMIT settings repeat them, because a binding does not say its own limit.
 */
export const RATE_LIMITER_DEFAULTS = {
  RATE_LIMITER: 120,
  STATS_RATE_LIMITER: 10,
  AUTH_RATE_LIMITER: 1200,
} as const;
