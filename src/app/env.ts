import type { CacheState } from "../cache/kv-cache.ts";
import type { Config } from "./config.ts";

/** Who is calling, as far as rate limits and logs are concerned. Never holds a credential. */
export interface Caller {
  /**
   * `token:<fingerprint>`, `jwt:<sub>` (`jwt:hmac:<fingerprint>` for a subject unfit for a log
   * line) or `anon:<client address key>`; fingerprints are keyed (src/security/fingerprint.ts).
   */
  readonly id: string;
  readonly method: "token" | "jwt" | "anonymous";
}

/** What the per-request log line reports; handlers fill it in as they go. */
export interface RequestTelemetry {
  route: string;
  cache?: CacheState;
  upstreamAttempts: number;
  upstreamStatus?: number | "timeout" | "network-error";
  callerId?: string;
  /** Degradations the request survived (e.g. a rate limiter that failed open). */
  warnings?: string[];
  /** What lay under the error the request answered with (class and code only; never sent). */
  cause?: string;
  /**
   * Work that must run for this request but not before its response: requestLog() starts it once
   * the response has left, and waits for it before the log line (whose warnings it may add to).
   */
  afterResponse?: (() => Promise<unknown>)[];
}

/** Records a degradation the request survived; it appears in the request's log line. */
export function addWarning(telemetry: RequestTelemetry, warning: string): void {
  telemetry.warnings = [...(telemetry.warnings ?? []), warning];
}

/** Queues work to start once the request's response has left (see `afterResponse`). */
export function addAfterResponse(telemetry: RequestTelemetry, work: () => Promise<unknown>): void {
  telemetry.afterResponse = [...(telemetry.afterResponse ?? []), work];
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
    /** The caller's rate-limit verdict, pending while the handler starts (`authenticate({ alongside })`). */
    admission: Promise<void>;
  };
}
