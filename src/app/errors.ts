import { z } from "@hono/zod-openapi";
import type { ContentfulStatusCode } from "hono/utils/http-status";

/**
 * Every error the proxy answers with: HTTP status, whether a retry may succeed, and what the
 * code means. The OpenAPI document and the runtime responses both come from this table.
 */
export const ERRORS = {
  INVALID_REQUEST: {
    status: 400,
    retryable: false,
    description: "A query parameter is missing, unknown, repeated or malformed; `details` names it.",
  },
  UNAUTHORIZED: { status: 401, retryable: false, description: "The caller sent no valid credentials." },
  NOT_FOUND: {
    status: 404,
    retryable: false,
    description: "No such route, or Extend reported the resource missing.",
  },
  METHOD_NOT_ALLOWED: {
    status: 405,
    retryable: false,
    description:
      "The path does not serve this method (`Allow` lists those it does): GET, HEAD and OPTIONS, " +
      "POST on /webhooks/extend and on the dashboard's sign-in and sign-out.",
  },
  PAYLOAD_TOO_LARGE: {
    status: 413,
    retryable: false,
    description: "The request body is larger than the route accepts (10 MiB for webhooks).",
  },
  RATE_LIMIT_EXCEEDED: {
    status: 429,
    retryable: true,
    description: "This caller exceeded its rate limit; wait for `Retry-After` seconds.",
  },
  CONFIG_INVALID: {
    status: 500,
    retryable: false,
    description: "A proxy setting is missing or malformed; the message names it.",
  },
  INTERNAL_ERROR: { status: 500, retryable: false, description: "An unexpected error inside the proxy." },
  UPSTREAM_AUTH_FAILED: {
    status: 502,
    retryable: false,
    description: "Extend rejected the proxy's own credentials: the proxy is misconfigured.",
  },
  UPSTREAM_USAGE_BLOCKED: {
    status: 502,
    retryable: false,
    description: "Extend refused the request for billing reasons (HTTP 402).",
  },
  UPSTREAM_ERROR: {
    status: 502,
    retryable: true,
    description: "Extend failed (5xx, connection error or redirect).",
  },
  UPSTREAM_INVALID_RESPONSE: {
    status: 502,
    retryable: true,
    description: "Extend answered with a truncated, non-JSON or unexpected body.",
  },
  AUTH_UNAVAILABLE: {
    status: 503,
    retryable: true,
    description: "The caller's JWT could not be checked because the signing keys (JWKS) are unreachable.",
  },
  UPSTREAM_RATE_LIMITED: {
    status: 503,
    retryable: true,
    description: "Extend's organisation-wide rate limit is exhausted; wait for `Retry-After` seconds.",
  },
  WEBHOOKS_BUSY: {
    status: 503,
    retryable: true,
    description:
      "Webhook bodies being read fill this isolate's share for them; the sender retries after `Retry-After` seconds.",
  },
  INDEX_LAGGING: {
    status: 503,
    retryable: true,
    description:
      "The run index is older than `maxLagSeconds` and could not sync in time; wait for `Retry-After` seconds.",
  },
  UPSTREAM_TIMEOUT: {
    status: 504,
    retryable: true,
    description: "Extend did not answer within the proxy's deadline.",
  },
} as const satisfies Record<
  string,
  { status: ContentfulStatusCode; retryable: boolean; description: string }
>;

export type ErrorCode = keyof typeof ERRORS;
export const ERROR_CODES = Object.keys(ERRORS) as [ErrorCode, ...ErrorCode[]];

/** A field-level problem, as listed in `details` of a 400. */
export interface FieldIssue {
  field: string;
  message: string;
}

export const ErrorBody = z
  .object({
    code: z.enum(ERROR_CODES).openapi({ description: "Machine-readable error code." }),
    message: z.string().openapi({ description: "What went wrong, for humans." }),
    retryable: z.boolean().openapi({ description: "Whether the same request may succeed later." }),
    requestId: z.string().openapi({ description: "Also sent as the `x-request-id` header." }),
    details: z
      .array(z.object({ field: z.string(), message: z.string() }))
      .optional()
      .openapi({
        description: "The offending fields (validation errors), or the setting (`CONFIG_INVALID`).",
      }),
  })
  .openapi("Error", { description: "Error envelope, modelled on Extend's own." });

export type ErrorBody = z.infer<typeof ErrorBody>;

/**
 * The one error type handlers throw; `app.onError` turns it into the envelope. Its `cause` (a
 * network error, a parse failure) is written to the request's log line and never sent.
 */
export class ApiError extends Error {
  readonly code: ErrorCode;
  readonly status: ContentfulStatusCode;
  readonly retryable: boolean;
  readonly details: FieldIssue[] | undefined;
  /** Seconds, sent as `Retry-After`. */
  readonly retryAfter: number | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    options: { details?: FieldIssue[]; retryAfter?: number; cause?: unknown } = {},
  ) {
    // `cause` is what lay under this error: the request log names it, the response never does.
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "ApiError";
    this.code = code;
    this.status = ERRORS[code].status;
    this.retryable = ERRORS[code].retryable;
    this.details = options.details;
    this.retryAfter = options.retryAfter;
  }

  toBody(requestId: string): ErrorBody {
    return {
      code: this.code,
      message: this.message,
      retryable: this.retryable,
      requestId,
      ...(this.details ? { details: this.details } : {}),
    };
  }
}

/** Offending fields a 400 names; beyond them it only counts, or a crafted query comes back many times its size. */
export const MAX_LISTED_QUERY_ISSUES = 20;

/** The one 400 for a bad query: the message lists the offending fields, `details` names each. */
export function invalidQuery(details: FieldIssue[]): ApiError {
  const listed = details.slice(0, MAX_LISTED_QUERY_ISSUES);
  const more = details.length - listed.length;
  const summary =
    listed.map((d) => `${d.field} ${d.message}`).join("; ") + (more > 0 ? `; and ${more} more` : "");
  return new ApiError("INVALID_REQUEST", `Invalid query parameter: ${summary}.`, { details: listed });
}

/** What a log line may say about an error: its class, machine code and a bounded message. */
export function describeError(error: unknown): string {
  if (!(error instanceof Error)) return typeof error;
  const code = (error as { code?: unknown }).code;
  const name = typeof code === "string" ? `${error.name}:${code}` : error.name;
  const message = error.message.length > 200 ? `${error.message.slice(0, 200)}…` : error.message;
  return message ? `${name}: ${message}` : name;
}
