import { OpenAPIHono } from "@hono/zod-openapi";
import type { Context, ErrorHandler, NotFoundHandler, TypedResponse } from "hono";
import { createMiddleware } from "hono/factory";
import { HTTPException } from "hono/http-exception";
import type { JSONParsed } from "hono/utils/types";
import type { z } from "zod";
import type { AppEnv } from "./env.ts";
import { ApiError, describeError, type FieldIssue, invalidQuery } from "./errors.ts";

/** Methods the proxy serves on every route; everything else is a 405. */
export const ALLOWED_METHODS = ["GET", "HEAD", "OPTIONS"] as const;

/** Whether the request reads (GET or HEAD): the methods data-route middleware acts on. */
export function isRead(c: Context<AppEnv>): boolean {
  return c.req.method === "GET" || c.req.method === "HEAD";
}

function describeIssue(issue: z.core.$ZodIssue): FieldIssue[] {
  if (issue.code === "unrecognized_keys") {
    return issue.keys.map((key) => ({ field: key, message: "is not a known query parameter" }));
  }
  const field = issue.path.map(String).join(".") || "query";
  return [{ field, message: issue.message }];
}

/** Turns a zod failure on the query into the one 400 every route answers with. */
export function validationError(error: z.ZodError, c: Context<AppEnv>): ApiError {
  const repeated = Object.entries(c.req.queries())
    .filter(([, values]) => values.length > 1)
    .map(([field]) => field);
  const details: FieldIssue[] = repeated.map((field) => ({
    field,
    message: "must be given once, not repeated",
  }));
  for (const issue of error.issues) {
    for (const detail of describeIssue(issue)) {
      if (!details.some((d) => d.field === detail.field)) details.push(detail);
    }
  }
  return invalidQuery(details);
}

/**
 * Rejects a query whose percent-encoding does not decode as UTF-8 (`%ZZ`, a lone `%ED%A0%80`).
 * Hono keeps such text undecoded, and the literal `%…` would then travel upstream as a filter
 * value nobody asked for; the 400 names the parameter as it was written. A parameter without a
 * name (`=x`) is refused too: Hono drops it before validation would see it as unknown.
 */
export function rejectMalformedQuery() {
  return createMiddleware<AppEnv>(async (c, next) => {
    const search = new URL(c.req.url).search.slice(1);
    const details: FieldIssue[] = [];
    for (const part of search.split("&")) {
      if (part === "") continue;
      const cut = part.indexOf("=");
      const name = cut === -1 ? part : part.slice(0, cut);
      if (name === "") {
        if (!details.some((d) => d.field === "")) {
          details.push({ field: "", message: "is a parameter without a name" });
        }
        continue;
      }
      const decodedName = decodeQueryComponent(name);
      if (
        decodedName === undefined ||
        decodeQueryComponent(cut === -1 ? "" : part.slice(cut + 1)) === undefined
      ) {
        const field = decodedName ?? name;
        if (!details.some((d) => d.field === field)) {
          details.push({ field, message: "is not valid percent-encoded UTF-8" });
        }
      }
    }
    if (details.length > 0) throw invalidQuery(details);
    await next();
  });
}

function decodeQueryComponent(text: string): string | undefined {
  try {
    return decodeURIComponent(text.replace(/\+/g, " "));
  } catch {
    return undefined;
  }
}

/** A router whose validation failures all go through `validationError`. */
export function createRouter() {
  return new OpenAPIHono<AppEnv>({
    defaultHook: (result, c) => {
      if (!result.success) throw validationError(result.error, c);
    },
  });
}

export function errorResponse(c: Context<AppEnv>, error: ApiError): Response {
  const requestId = c.get("requestId") ?? "unknown";
  const headers: Record<string, string> = { "cache-control": "no-store" };
  if (error.retryAfter !== undefined) headers["retry-after"] = String(error.retryAfter);
  return c.json(error.toBody(requestId), error.status, headers);
}

export const onError: ErrorHandler<AppEnv> = (err, c) => {
  if (err instanceof ApiError) {
    const telemetry = c.get("telemetry");
    if (err.cause !== undefined && telemetry) telemetry.cause = describeError(err.cause);
    return errorResponse(c, err);
  }
  if (err instanceof HTTPException && err.status < 500) {
    const code = err.status === 401 ? "UNAUTHORIZED" : err.status === 404 ? "NOT_FOUND" : "INVALID_REQUEST";
    return errorResponse(
      c,
      new ApiError(code, code === "INVALID_REQUEST" ? "The request is malformed." : err.message),
    );
  }
  console.error(
    JSON.stringify({
      level: "error",
      msg: "unhandled error",
      requestId: c.get("requestId"),
      error: err instanceof Error ? { name: err.name, stack: err.stack } : String(err),
    }),
  );
  return errorResponse(c, new ApiError("INTERNAL_ERROR", "Internal error."));
};

export const notFound: NotFoundHandler<AppEnv> = (c) =>
  errorResponse(c, new ApiError("NOT_FOUND", `No route for ${c.req.method} ${c.req.path}.`));

/**
 * Answers a method the route does not serve: a plain OPTIONS (no CORS preflight reached it) gets
 * 204 with `Allow`, anything else a 405 with `Allow`. `methods` are the ones the path serves
 * (hono's method-not-allowed middleware passes them); OPTIONS is always among them.
 */
export const methodNotAllowed = (c: Context<AppEnv>, methods: readonly string[] = ALLOWED_METHODS) => {
  const allow = [...new Set([...methods, "OPTIONS"])].join(", ");
  if (c.req.method === "OPTIONS") {
    return c.body(null, 204, { allow, "cache-control": "no-store" });
  }
  const response = errorResponse(
    c,
    new ApiError("METHOD_NOT_ALLOWED", `${c.req.method} is not allowed; use ${allow}.`),
  );
  response.headers.set("allow", allow);
  return response;
};

/**
 * Sends JSON that is already serialised (a cached or upstream body) without parsing it again,
 * typed as the route's declared response so `hc` clients see the right shape.
 */
export function jsonText<T>(
  c: Context<AppEnv>,
  body: string | Uint8Array<ArrayBuffer>,
  headers: Record<string, string>,
): Response & TypedResponse<JSONParsed<T>, 200, "json"> {
  const response = c.body(body, 200, { ...headers, "content-type": "application/json; charset=utf-8" });
  // The body was checked against the list shape before it got here; only its static type is missing.
  return response as unknown as Response & TypedResponse<JSONParsed<T>, 200, "json">;
}
