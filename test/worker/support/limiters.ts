// Stand-ins for the Rate Limiting binding: what the proxy asked it, and a fixed verdict.

/** A limiter that answers every call with `success`, recording each key it was asked about. */
export function recordingLimiter(success: boolean): { binding: RateLimit; keys: string[] } {
  const keys: string[] = [];
  const binding: RateLimit = {
    limit: async ({ key }) => {
      keys.push(key);
      return { success };
    },
  };
  return { binding, keys };
}

/** A limiter that never refuses: for tests that call a route far more often than a caller may. */
export const NEVER_REFUSES: RateLimit = { limit: async () => ({ success: true }) };
