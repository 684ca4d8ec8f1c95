import type { Context } from "hono";
import type { AppEnv } from "./app-env.ts";
import { type PageSource, uncachedPages } from "./pages.ts";
import { createExtendUpstream, type ListOptions, type WorkflowRunsUpstream } from "./upstream.ts";

/** The capabilities a handler needs, built from the request's config and bindings. */
export interface Services {
  upstream: WorkflowRunsUpstream;
  pages: PageSource;
}

export function servicesFor(c: Context<AppEnv>): Services {
  const upstream = createExtendUpstream(c.var.config);
  return { upstream, pages: uncachedPages(upstream) };
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
