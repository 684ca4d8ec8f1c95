import { createMiddleware } from "hono/factory";
import { methodNotAllowed as methodNotAllowedMiddleware } from "hono/method-not-allowed";
import { requestId } from "hono/request-id";
import { loadConfig } from "./app/config.ts";
import type { AppEnv } from "./app/env.ts";
import { requestLog } from "./app/request-log.ts";
import { createRouter, methodNotAllowed, notFound, onError, rejectMalformedQuery } from "./app/router.ts";
import { CALLER_ROUTES } from "./routes/access.ts";
import { DASHBOARD_PATH, dashboard, dashboardErrorPages, LOGIN_PATH } from "./routes/dashboard.tsx";
import { registerDocs } from "./routes/docs.ts";
import { health } from "./routes/health.ts";
import { stats } from "./routes/stats.ts";
import { webhooks } from "./routes/webhooks.ts";
import { workflowRuns } from "./routes/workflow-runs.ts";
import { watchdog } from "./run-index/client.ts";
import { authenticate } from "./security/auth.ts";
import { corsPolicy } from "./security/cors.ts";
import { securityHeaders } from "./security/headers.ts";

const app = createRouter();

app.use(
  requestId({ headerName: "x-request-id", limitLength: 128, generator: () => `req_${crypto.randomUUID()}` }),
);
app.use(
  createMiddleware<AppEnv>(async (c, next) => {
    c.set("telemetry", { route: c.req.path, upstreamAttempts: 0 });
    await next();
  }),
);
// Every response, errors and 404s included: one log line, security headers, CORS (preflights too).
app.use(requestLog());
app.use(securityHeaders());
// Extend's webhooks, server to server and signed: before CORS, the 405s and caller auth.
app.route("/", webhooks);
app.use(corsPolicy());
app.use(methodNotAllowedMiddleware({ app, onMethodNotAllowed: methodNotAllowed }));
app.onError(onError);
app.notFound(notFound);

// Liveness first: it must answer even when the configuration is broken.
app.route("/", health);
registerDocs(app);

// A person at the dashboard reads every error, a broken configuration's included, as a page.
for (const path of [DASHBOARD_PATH, LOGIN_PATH]) app.use(path, dashboardErrorPages());

app.use(
  createMiddleware<AppEnv>(async (c, next) => {
    c.set("config", loadConfig(c.env));
    await next();
  }),
);

// Data routes: the caller authenticates and spends its rate limit, the two limiter round trips
// side by side (health and docs stay open). A page's cache read also runs beside its caller's
// verdict, which it awaits before it serves, loads or writes; /stats waits for it before it starts.
for (const { path, limiter } of CALLER_ROUTES) {
  const alongside = path === "/workflow_runs";
  app.use(`${path}/*`, authenticate({ limiter, alongside }), rejectMalformedQuery());
}

app.route("/", dashboard);
const routes = app.route("/", workflowRuns).route("/", stats);

/** Route types for `hc<AppType>()` from `hono/client`. */
export type AppType = typeof routes;

export { app };

/** The Worker: HTTP requests, and the Cron Trigger that watches over the run index's alarm. */
export default {
  fetch: app.fetch,
  scheduled: (controller, env) => watchdog(controller, env),
} satisfies ExportedHandler<Env>;

export { TenantObject } from "./tenant/object.ts";
