import { createMiddleware } from "hono/factory";
import { secureHeaders } from "hono/secure-headers";
import type { AppEnv } from "../app/env.ts";

/** A JSON API loads nothing and may be framed by no one (OWASP REST Security). */
export const API_CONTENT_SECURITY_POLICY = "default-src 'none'; frame-ancestors 'none'";
/** One year, the HSTS preload list's minimum (hstspreload.org). */
export const HSTS_VALUE = "max-age=31536000; includeSubDomains";

const secure = secureHeaders({
  contentSecurityPolicy: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] },
  // hono's default is SAMEORIGIN; nothing should frame an API.
  xFrameOptions: "DENY",
  strictTransportSecurity: HSTS_VALUE,
  referrerPolicy: "no-referrer",
  xContentTypeOptions: "nosniff",
  // CORP is not checked for CORS-mode fetches (Fetch spec), so it does not hinder allowed origins.
  crossOriginResourcePolicy: "same-origin",
  crossOriginOpenerPolicy: "same-origin",
  crossOriginEmbedderPolicy: false,
  originAgentCluster: "?1",
  xDnsPrefetchControl: "off",
  xDownloadOptions: "noopen",
  xPermittedCrossDomainPolicies: "none",
  xXssProtection: "0",
  removePoweredBy: true,
  // A route that needs another policy (an HTML docs page with a script) sets the header itself.
  overwrite: false,
});

/**
 * Security headers on every response, errors and 404s included. A handler that sets one of these
 * headers itself (for example its own `Content-Security-Policy`) keeps its value. Responses that
 * chose no caching policy get `Cache-Control: no-store`.
 */
export function securityHeaders() {
  return createMiddleware<AppEnv>(async (c, next) => {
    await secure(c, async () => {
      await next();
    });
    c.res.headers.delete("server");
    if (!c.res.headers.has("cache-control")) c.res.headers.set("cache-control", "no-store");
  });
}

/** A fresh CSP nonce (128 random bits, base64) for one HTML response; it must not outlive it. */
export function cspNonce(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return btoa(String.fromCharCode(...bytes));
}

/**
 * /docs: the reference page runs the renderer this Worker serves, under a per-response nonce. It
 * may fetch only this origin (the document and "try it" calls), and nothing may frame it.
 */
export function docsContentSecurityPolicy(nonce: string): string {
  return [
    "default-src 'none'",
    `script-src 'nonce-${nonce}'`,
    // Scalar renders inline style attributes, which a nonce cannot authorise.
    "style-src 'unsafe-inline'",
    "img-src 'self' data:",
    "font-src data:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join("; ");
}

/**
 * /dashboard: server-rendered HTML with inline SVG and no script at all. Its one stylesheet is
 * inline under the nonce, its forms post only to this origin, and nothing may frame it.
 */
export function dashboardContentSecurityPolicy(nonce: string): string {
  return [
    "default-src 'none'",
    `style-src 'nonce-${nonce}'`,
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
  ].join("; ");
}
