// GET /dashboard: the status page, server-rendered HTML with inline SVG charts and no script.
// It has the access rules of /stats (default deny, the same authentication and STATS_RATE_LIMITER)
// and reads its numbers through the /stats code path. Static-token callers sign in once through
// POST /dashboard/login and get a signed session cookie (src/dashboard/session.ts).
import { createRoute, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import { createMiddleware } from "hono/factory";
import type { JSX } from "hono/jsx/jsx-runtime";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { AppEnv } from "../app/env.ts";
import { describeError, ErrorBody, invalidQuery } from "../app/errors.ts";
import { createRouter, isRead, rejectMalformedQuery, validationError } from "../app/router.ts";
import { loadDashboardStats } from "../dashboard/data.ts";
import { endSession, hasSessionCookie, readSession, startSession } from "../dashboard/session.ts";
import {
  DashboardPage,
  ErrorPage,
  FILTER_FIELDS,
  type FilterForm,
  renderDocument,
  SignInPage,
  type Viewer,
} from "../dashboard/view.tsx";
import { findSecret } from "../lib/digest.ts";
import { authenticate, CF_ACCESS_JWT_HEADER, DEFAULT_DENY_MESSAGE } from "../security/auth.ts";
import { cspNonce, dashboardContentSecurityPolicy } from "../security/headers.ts";
import { chargeRejectedCredentials, rateLimit, spendCredentialAttempt } from "../security/rate-limit.ts";
import { redactedFilterIssues } from "../security/redact.ts";
import { StatsQuery } from "../stats/schemas.ts";
import { ROUTE_ACCESS } from "./access.ts";

export const DASHBOARD_PATH = "/dashboard" satisfies keyof typeof ROUTE_ACCESS;
export const LOGIN_PATH = "/dashboard/login";
export const LOGOUT_PATH = "/dashboard/logout";

/** A sign-in form is a token and a return query; anything bigger is not one. */
const MAX_FORM_BYTES = 8 * 1024;
const MAX_RETURN_QUERY_CHARS = 2_048;

const html = (description: string) => ({
  description,
  content: { "text/html": { schema: z.string() } },
});

const dashboardRoute = createRoute({
  method: "get",
  path: DASHBOARD_PATH,
  summary: "Status dashboard",
  description:
    "An HTML page for people: runs per status, credits and the total as inline SVG charts and a table, " +
    "with a freshness line, and from the run index the top workflows by runs with their status mix " +
    "(the `workflowId` field is then a select of the indexed workflows), for the filters of `/stats` (`workflowId`, `batchId`, `status`, " +
    "`fileNameContains`, `since`, `until`; empty ones are ignored) chosen in a plain GET form. Same " +
    "access rules and rate limit as `/stats`; a browser with a static client token signs in once " +
    "through `POST /dashboard/login`, which sets a signed `HttpOnly` session cookie.",
  responses: {
    200: html(
      "The dashboard; its counts equal `/stats` for the same filters. For a browser's navigation " +
        "(`Sec-Fetch-Dest: document`) without credentials, the sign-in page.",
    ),
    400: html("A filter is malformed: the form names it with the message `/stats` would give."),
    401: html("No valid credentials: the sign-in page (to any client but a browser's navigation)."),
    303: {
      description:
        "A submitted form with empty fields: the same address without them, before anything is charged.",
    },
    429: html("This caller exceeded the `/stats` rate limit."),
    500: html("A broken configuration (`CONFIG_INVALID`) or an unexpected error, with the API's message."),
    502: html("Extend failed or refused the proxy's key (`UPSTREAM_*`), with the API's message."),
    503: html("Extend's rate limit, the JWT signing keys or the run index unavailable, with `Retry-After`."),
    504: html("Extend did not answer within the proxy's deadline (`UPSTREAM_TIMEOUT`)."),
  },
});

async function sendPage(
  c: Context<AppEnv>,
  status: ContentfulStatusCode,
  nonce: string,
  page: JSX.Element,
  headers: Record<string, string> = {},
): Promise<Response> {
  return c.html(await renderDocument(page), status, {
    ...headers,
    "content-security-policy": dashboardContentSecurityPolicy(nonce),
    // A nonce must not outlive its response, and the numbers are the caller's own.
    "cache-control": "no-store",
    // Not no-referrer: under it, browsers send `Origin: null` on the page's own form posts, and
    // the sign-in's Origin check could not tell them from a cross-site post.
    "referrer-policy": "same-origin",
  });
}

/** A page of the dashboard's own refusals (not an API error's envelope), with the request id. */
function sendErrorPage(
  c: Context<AppEnv>,
  status: ContentfulStatusCode,
  title: string,
  message: string,
): Promise<Response> {
  const nonce = cspNonce();
  return sendPage(
    c,
    status,
    nonce,
    <ErrorPage nonce={nonce} status={status} title={title} message={message} requestId={c.var.requestId} />,
  );
}

/** The form's query as /stats would read it, an empty field meaning "no filter". */
function formQuery(c: Context<AppEnv>): Record<string, string | string[]> {
  const entries: [string, string | string[]][] = [];
  for (const [name, values] of Object.entries(c.req.queries())) {
    const given = values.filter((value) => value !== "");
    if (given.length === 1 && given[0] !== undefined) entries.push([name, given[0]]);
    else if (given.length > 1) entries.push([name, given]);
  }
  // fromEntries defines every name as its own key: assigning `__proto__` would drop it unseen.
  return Object.fromEntries(entries);
}

function formValues(input: Record<string, string | string[]>): FilterForm["values"] {
  const values: FilterForm["values"] = {};
  for (const field of FILTER_FIELDS) {
    const value = input[field];
    const first = Array.isArray(value) ? value[0] : value;
    if (first !== undefined) values[field] = first;
  }
  return values;
}

/**
 * The form's filters of a query, non-empty, and nothing else: a sign-in carries no other parameter
 * across, so a token someone pasted into the address (`?token=…`) is neither put into the sign-in
 * page nor into the address it leads back to.
 */
function filterParams(query: string | URLSearchParams): URLSearchParams {
  const fields: readonly string[] = FILTER_FIELDS;
  return new URLSearchParams(
    [...new URLSearchParams(query)].filter(([name, value]) => fields.includes(name) && value !== ""),
  );
}

/** `/dashboard` with the given query, or bare: the only place a sign-in may lead back to. */
function dashboardHref(query: string | URLSearchParams): string {
  const search = filterParams(query).toString();
  return search && search.length <= MAX_RETURN_QUERY_CHARS ? `${DASHBOARD_PATH}?${search}` : DASHBOARD_PATH;
}

/**
 * The query the sign-in form carries back, if dashboardHref would honour it: a longer one would
 * be dropped after sign-in anyway, and could push the form past MAX_FORM_BYTES.
 */
function returnQuery(c: Context<AppEnv>): string {
  return dashboardHref(new URL(c.req.url).search).slice(DASHBOARD_PATH.length);
}

function viewerOf(c: Context<AppEnv>): Viewer {
  const caller = c.var.caller;
  // authenticate() accepts a client token only from Authorization, so a token caller without one
  // came in through the session cookie.
  const session = caller.method === "token" && c.req.header("authorization") === undefined;
  return { callerId: caller.id, method: caller.method, session };
}

/**
 * Authentication for the page: credentials in headers (a bearer token or JWT, or Cloudflare
 * Access's header) go through authenticate() exactly as on /stats; without them, a valid session
 * cookie identifies the caller. A cookie is a credential like any other: it spends a unit of the
 * address's credential budget before it is checked, and a forged one costs what a rejected
 * token costs. A 401 becomes the sign-in page.
 */
function dashboardAccess() {
  const viaHeaders = authenticate();
  return createMiddleware<AppEnv>(async (c, next) => {
    if (!isRead(c)) return next();
    const config = c.var.config;
    const headerCredentials =
      c.req.header("authorization") !== undefined ||
      (config.jwt !== undefined && c.req.header(CF_ACCESS_JWT_HEADER) !== undefined);
    let sessionEnded = false;
    if (!headerCredentials) {
      if (hasSessionCookie(c)) await spendCredentialAttempt(c);
      const session = await readSession(c);
      if (session.kind === "valid") {
        c.set("caller", session.caller);
        c.var.telemetry.callerId = session.caller.id;
        return next();
      }
      if (session.kind !== "none") {
        endSession(c);
        sessionEnded = true;
        if (session.kind === "forged") await chargeRejectedCredentials(c);
      }
    }
    const result = await viaHeaders(c, next);
    if (!(result instanceof Response) || result.status !== 401) return result;

    const apiMessage = ErrorBody.safeParse(await result.clone().json());
    const hasTokens = config.clientTokens.length > 0;
    const message =
      !hasTokens && config.jwt === undefined
        ? DEFAULT_DENY_MESSAGE
        : headerCredentials && apiMessage.success
          ? apiMessage.data.message
          : sessionEnded
            ? "Your session has ended. Sign in again."
            : hasTokens
              ? "Enter one of the proxy's client tokens to see the dashboard."
              : "This dashboard needs a JWT: open it through Cloudflare Access or your identity provider.";
    const headers: Record<string, string> = { vary: "Sec-Fetch-Dest" };
    const challenge = result.headers.get("www-authenticate");
    if (challenge) headers["www-authenticate"] = challenge;
    // A browser opening the page without credentials gets the way in as a page (200): as a 401,
    // Chromium reports the document itself as a failed load on the console. Every other client,
    // and a credential presented and refused (a header, a cookie), still gets the 401.
    const signInNavigation =
      !headerCredentials &&
      !sessionEnded &&
      (hasTokens || config.jwt !== undefined) &&
      c.req.header("sec-fetch-dest") === "document";
    const nonce = cspNonce();
    return sendPage(
      c,
      signInNavigation ? 200 : 401,
      nonce,
      <SignInPage
        nonce={nonce}
        message={message}
        tokenForm={hasTokens}
        jwt={config.jwt !== undefined}
        returnTo={returnQuery(c)}
      />,
      headers,
    );
  });
}

/**
 * A GET form sends every field, the empty ones too. The page drops them from its address (a 303
 * before anything else is spent), so what the address bar shows is the /stats query the page
 * counts, which /stats itself would refuse with an empty field in it. Pieces are kept as sent,
 * so a malformed escape still reaches rejectMalformedQuery.
 */
function dropEmptyFields() {
  return createMiddleware<AppEnv>(async (c, next) => {
    if (!isRead(c)) return next();
    const url = new URL(c.req.url);
    const pieces = url.search.slice(1).split("&");
    const kept = pieces.filter((piece) => piece !== "" && !/^[^=]*=?$/.test(piece));
    if (url.search === "" || kept.length === pieces.length) return next();
    return c.redirect(kept.length > 0 ? `${url.pathname}?${kept.join("&")}` : url.pathname, 303);
  });
}

const ERROR_TITLES: Partial<Record<number, string>> = {
  400: "Bad request",
  429: "Too many requests",
  500: "Proxy error",
  502: "Extend failed",
  503: "Unavailable",
  504: "Extend timed out",
};

/**
 * Turns the proxy's JSON error envelope (rate limits, upstream failures, malformed queries, a
 * broken configuration) into an HTML page with the same status, message and headers, for a
 * person reading the dashboard. 404 and 405 are left to the app's method handling. The app
 * installs it before the configuration is read (src/index.ts), so a `CONFIG_INVALID` is a page too.
 */
export function dashboardErrorPages() {
  return createMiddleware<AppEnv>(async (c, next) => {
    await next();
    const res = c.res;
    if (res.status < 400 || res.status === 404 || res.status === 405) return;
    if (!res.headers.get("content-type")?.startsWith("application/json")) return;
    const envelope = ErrorBody.safeParse(await res.clone().json());
    if (!envelope.success) return;
    const nonce = cspNonce();
    const headers: Record<string, string> = {};
    for (const name of ["retry-after", "www-authenticate"]) {
      const value = res.headers.get(name);
      if (value !== null) headers[name] = value;
    }
    const page = await sendPage(
      c,
      res.status as ContentfulStatusCode,
      nonce,
      <ErrorPage
        nonce={nonce}
        status={res.status}
        title={ERROR_TITLES[res.status] ?? "Error"}
        message={envelope.data.message}
        {...(envelope.data.details ? { details: envelope.data.details } : {})}
        requestId={envelope.data.requestId}
      />,
      headers,
    );
    c.res = page;
  });
}

async function renderDashboard(c: Context<AppEnv>): Promise<Response> {
  const nonce = cspNonce();
  const input = formQuery(c);
  const form: FilterForm = { values: formValues(input), errors: [] };
  const viewer = viewerOf(c);
  const parsed = StatsQuery.safeParse(input);
  const redacted = parsed.success ? redactedFilterIssues(parsed.data, c.var.config.redactFields) : [];
  if (!parsed.success || redacted.length > 0) {
    const error = parsed.success ? invalidQuery(redacted) : validationError(parsed.error, c);
    const details = error.details ?? [];
    const fields: readonly string[] = FILTER_FIELDS;
    form.errors = details.filter((issue) => fields.includes(issue.field));
    const elsewhere = details.filter((issue) => !fields.includes(issue.field));
    return sendPage(
      c,
      400,
      nonce,
      <DashboardPage
        nonce={nonce}
        viewer={viewer}
        form={form}
        alert={{ message: error.message, ...(elsewhere.length > 0 ? { details: elsewhere } : {}) }}
        now={Date.now()}
      />,
    );
  }
  const data = await loadDashboardStats(c, parsed.data);
  c.var.telemetry.cache = data.freshness.cache;
  const token = data.stats.resumeToken;
  const continueHref = token
    ? `${dashboardHref(new URLSearchParams(Object.entries(form.values)))}${
        Object.keys(form.values).length > 0 ? "&" : "?"
      }resumeToken=${encodeURIComponent(token)}`
    : undefined;
  return sendPage(
    c,
    200,
    nonce,
    <DashboardPage
      nonce={nonce}
      viewer={viewer}
      form={form}
      data={data}
      {...(continueHref ? { continueHref } : {})}
      now={Date.now()}
    />,
  );
}

/**
 * Whether a state-changing POST comes from a page of this origin. Browsers send `Origin` on every
 * POST (and `Sec-Fetch-Site`); a cross-site form or script fails here even before SameSite=Strict
 * keeps the cookie away from it.
 */
function fromThisOrigin(c: Context<AppEnv>): boolean {
  const site = c.req.header("sec-fetch-site");
  if (site !== undefined && site !== "same-origin") return false;
  return c.req.header("origin") === new URL(c.req.url).origin;
}

function refusedCrossOrigin(c: Context<AppEnv>): Promise<Response> {
  return sendErrorPage(
    c,
    403,
    "Refused",
    "Sign-in and sign-out are accepted only from the dashboard's own pages (the request's Origin is another site, or missing).",
  );
}

/** The sign-in form's fields; undefined for another content type, "malformed" for a body that does not parse as its type. */
async function readForm(c: Context<AppEnv>): Promise<Record<string, string> | "malformed" | undefined> {
  const type = c.req.header("content-type") ?? "";
  if (!/^(application\/x-www-form-urlencoded|multipart\/form-data)\b/i.test(type)) return undefined;
  let body: Awaited<ReturnType<typeof c.req.parseBody>>;
  try {
    body = await c.req.parseBody();
  } catch {
    // A multipart body without its boundary, or cut before it ends: the caller's error, not ours.
    return "malformed";
  }
  const fields: Record<string, string> = {};
  for (const [name, value] of Object.entries(body)) if (typeof value === "string") fields[name] = value;
  return fields;
}

async function login(c: Context<AppEnv>): Promise<Response> {
  if (!fromThisOrigin(c)) return refusedCrossOrigin(c);
  const config = c.var.config;
  const nonce = cspNonce();
  const signIn = (status: ContentfulStatusCode, returnTo: string, tokenError?: string, message?: string) =>
    sendPage(
      c,
      status,
      nonce,
      <SignInPage
        nonce={nonce}
        message={message ?? "Enter one of the proxy's client tokens to see the dashboard."}
        tokenForm={config.clientTokens.length > 0}
        jwt={config.jwt !== undefined}
        returnTo={returnTo}
        {...(tokenError ? { tokenError } : {})}
      />,
    );
  if (config.clientTokens.length === 0) {
    return signIn(
      404,
      "",
      undefined,
      "This proxy has no CLIENT_TOKENS, so there is no token to sign in with." +
        (config.jwt ? " Open the dashboard through Cloudflare Access or your identity provider." : ""),
    );
  }
  const form = await readForm(c);
  if (form === "malformed") {
    return signIn(400, "", undefined, "The sign-in form could not be read. Send it again from this page.");
  }
  const returnTo = form?.returnTo ?? "";
  const token = form?.token?.trim() ?? "";
  if (token === "") return signIn(400, returnTo, "token is required");
  await spendCredentialAttempt(c);
  const match = await findSecret(token, config.clientTokens);
  if (match === undefined) {
    c.var.telemetry.callerId = "rejected:dashboard-login";
    await chargeRejectedCredentials(c);
    return signIn(401, returnTo, "This is not one of the proxy's client tokens.");
  }
  await startSession(c, match);
  return c.redirect(dashboardHref(returnTo), 303);
}

function logout(c: Context<AppEnv>): Response | Promise<Response> {
  if (!fromThisOrigin(c)) return refusedCrossOrigin(c);
  endSession(c);
  return c.redirect(DASHBOARD_PATH, 303);
}

const limitForm = bodyLimit({
  maxSize: MAX_FORM_BYTES,
  onError: (c) => sendErrorPage(c, 413, "Too large", `A sign-in form is at most ${MAX_FORM_BYTES} bytes.`),
});

/**
 * The form's size limit, and a 400 page for a body its sender cut off (a dropped connection)
 * while the limit reads it, rather than an unhandled error.
 */
const formLimit = createMiddleware<AppEnv>(async (c, next) => {
  let read = false;
  try {
    return await limitForm(c, async () => {
      read = true;
      await next();
    });
  } catch (error) {
    if (read) throw error;
    c.var.telemetry.cause = describeError(error);
    return sendErrorPage(
      c,
      400,
      "Bad request",
      "The form could not be read to its end. Send it again from the dashboard.",
    );
  }
});

/** The dashboard's routes: the page (GET, HEAD), sign-in and sign-out (POST only). */
export const dashboard = createRouter();
dashboard.use(
  DASHBOARD_PATH,
  dropEmptyFields(),
  dashboardAccess(),
  rateLimit(ROUTE_ACCESS[DASHBOARD_PATH].limiter),
  rejectMalformedQuery(),
);
dashboard.openapi(dashboardRoute, renderDashboard);
dashboard.post(LOGIN_PATH, formLimit, login);
dashboard.post(LOGOUT_PATH, formLimit, logout);
