import type { Caller } from "../security/auth.ts";
import type { Config } from "./config.ts";

/** How a response was served, sent as `x-cache` (see README "Caching"). */
export type CacheState = "HIT" | "STALE" | "MISS" | "BYPASS";

/** What the per-request log line reports; handlers fill it in as they go. */
export interface RequestTelemetry {
  route: string;
  cache?: CacheState;
  upstreamAttempts: number;
  upstreamStatus?: number | "timeout" | "network-error";
  callerId?: string;
  /** Degradations the request survived (e.g. a rate limiter that failed open). */
  warnings?: string[];
}

/** The one Hono environment type every app, sub-app and middleware uses. */
export interface AppEnv {
  Bindings: Env;
  Variables: {
    requestId: string;
    config: Config;
    telemetry: RequestTelemetry;
    /** Set by authenticate() on data routes. */
    caller: Caller;
    /** The caller's rate-limit verdict, pending while the handler starts (rateLimitAlongside). */
    admission: Promise<void>;
  };
}
