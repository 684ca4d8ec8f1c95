import type { LimiterBinding } from "../security/rate-limit.ts";

/**
 * How a route is reached: by anyone (liveness, the API description), by an authenticated caller,
 * or by a caller who may also be a browser signed in with the dashboard's session cookie (the
 * route authenticates itself, with the same rules plus the cookie, and spends the limiter).
 */
export type RouteAccess =
  | { readonly access: "public" }
  | { readonly access: "caller"; readonly limiter: LimiterBinding }
  | { readonly access: "caller-or-session"; readonly limiter: LimiterBinding };

/**
 * Who may use each route, declared once: src/index.ts mounts caller authentication and the
 * per-caller limit from it, and the OpenAPI document marks the public operations from it. Public
 * routes also answer with a broken configuration.
 */
export const ROUTE_ACCESS = {
  "/healthz": { access: "public" },
  "/openapi.json": { access: "public" },
  "/docs": { access: "public" },
  "/docs/scalar-1.76.0.js": { access: "public" },
  "/workflow_runs": { access: "caller", limiter: "RATE_LIMITER" },
  "/stats": { access: "caller", limiter: "STATS_RATE_LIMITER" },
  "/dashboard": { access: "caller-or-session", limiter: "STATS_RATE_LIMITER" },
} as const satisfies Record<string, RouteAccess>;

type Routes = typeof ROUTE_ACCESS;
type PathsWith<A extends RouteAccess["access"]> = {
  [P in keyof Routes]: Routes[P]["access"] extends A ? P : never;
}[keyof Routes];

function pathsWith<A extends RouteAccess["access"]>(access: A): PathsWith<A>[] {
  return (Object.keys(ROUTE_ACCESS) as (keyof Routes)[]).filter(
    (path): path is PathsWith<A> => ROUTE_ACCESS[path].access === access,
  );
}

/** Routes every caller may use without credentials or a rate limit. */
export const PUBLIC_PATHS = pathsWith("public");

/** Routes that need an authenticated caller, each with the limiter it spends. */
export const CALLER_ROUTES = pathsWith("caller").map((path) => ({
  path,
  limiter: ROUTE_ACCESS[path].limiter,
}));
