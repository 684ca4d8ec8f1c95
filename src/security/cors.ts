import { cors } from "hono/cors";
import { createMiddleware } from "hono/factory";
import { loadConfig } from "../app/config.ts";
import type { AppEnv } from "../app/env.ts";
import { ALLOWED_METHODS } from "../app/router.ts";

/**
 * Request headers a browser may send cross-origin: credentials, conditional requests, and what
 * the extend-ai SDK adds (API version, workspace, Fern telemetry, and its own `user-agent`, which
 * Firefox sends and preflights). Never the request's own list.
 */
export const CORS_ALLOWED_HEADERS = [
  "authorization",
  "content-type",
  "if-none-match",
  "x-request-id",
  "cf-access-jwt-assertion",
  "x-extend-api-version",
  "x-extend-workspace-id",
  "x-fern-language",
  "x-fern-sdk-name",
  "x-fern-sdk-version",
  "x-fern-runtime",
  "x-fern-runtime-version",
  "user-agent",
] as const;
/** Response headers a browser script may read. */
export const CORS_EXPOSED_HEADERS = ["x-request-id", "x-cache", "age", "etag", "retry-after"] as const;
/** How long a browser may reuse a preflight answer (Chromium caps this at 7200). */
export const CORS_MAX_AGE_SECONDS = 600;

function allowedOrigins(env: Env): readonly string[] {
  try {
    return loadConfig(env).allowedOrigins;
  } catch {
    // A broken configuration grants no origin; the data routes report it.
    return [];
  }
}

const policy = cors({
  origin: (origin, c) => (origin !== "" && allowedOrigins(c.env as Env).includes(origin) ? origin : null),
  allowMethods: [...ALLOWED_METHODS],
  allowHeaders: [...CORS_ALLOWED_HEADERS],
  exposeHeaders: [...CORS_EXPOSED_HEADERS],
  maxAge: CORS_MAX_AGE_SECONDS,
  credentials: false,
});

/**
 * CORS for ALLOWED_ORIGINS (exact matches): an allowed origin gets exactly itself back, with
 * `Vary: Origin`; any other origin (including `null`) gets no `Access-Control-*` header at all.
 * Preflights are answered here, before authentication: browsers send them without credentials.
 */
export function corsPolicy() {
  return createMiddleware<AppEnv>(async (c, next) => {
    const isPreflight =
      c.req.method === "OPTIONS" && c.req.header("access-control-request-method") !== undefined;
    if (c.req.method === "OPTIONS" && !isPreflight) {
      // A plain OPTIONS is not CORS: the routes answer it (with `Allow`).
      await next();
      varyOnOrigin(c.res.headers);
      return;
    }
    if (c.req.method !== "OPTIONS") {
      const origin = c.req.header("origin");
      if (origin === undefined || !allowedOrigins(c.env).includes(origin)) {
        // What the policy would do for an origin it refuses, without touching the response before
        // the handler (hono would build it twice, and then strip what it added).
        await next();
        varyOnOrigin(c.res.headers);
        stripCorsHeaders(c.res.headers);
        return;
      }
    }
    // A preflight is answered by the policy itself, without reaching the routes.
    const preflight = await policy(c, next);
    if (preflight) c.res = preflight;
    stripCorsHeaders(c.res.headers);
  });
}

/**
 * On the response's own headers: hono's `c.header` after the handler would build the response
 * a second time around the same body.
 */
function varyOnOrigin(headers: Headers): void {
  headers.append("vary", "Origin");
}

/** A response that grants no origin carries no `Access-Control-*` header at all. */
function stripCorsHeaders(headers: Headers): void {
  if (headers.has("access-control-allow-origin")) return;
  for (const name of [...headers.keys()]) {
    if (name.startsWith("access-control-")) headers.delete(name);
  }
}
