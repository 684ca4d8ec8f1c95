// Typed client for frontends and scripts: Hono's `hc` over the proxy's own route types. Everything
// imported from the worker is a type, so a bundle that uses this file pulls in `hono/client` only.
import {
  type ApplyGlobalResponse,
  type ClientResponse,
  hc,
  type InferRequestType,
  type InferResponseType,
} from "hono/client";
import type { ERRORS, ErrorBody, ErrorCode } from "../app/errors.ts";
import type { AppType } from "../index.ts";

type ErrorStatus = (typeof ERRORS)[ErrorCode]["status"];

/** The proxy's routes with every documented error status typed as the error envelope. */
export type ProxyAppType = ApplyGlobalResponse<AppType, { [S in ErrorStatus]: { json: ErrorBody } }>;

export interface ProxyClientOptions {
  /**
   * A client token (one of `CLIENT_TOKENS`) or a JWT, sent as `Authorization: Bearer …`. A function
   * is called before every request, so a short-lived JWT can be refreshed.
   */
  token?: string | (() => string | Promise<string>);
  /** Extra headers on every request. */
  headers?: Record<string, string>;
  /** The fetch to use (a test harness, a service binding, a wrapped fetch); defaults to global fetch. */
  fetch?: typeof fetch;
}

/**
 * A typed client for the proxy: `client.workflow_runs.$get({ query })` and every other route, with
 * the query types of the validators and the response types of the handlers.
 */
export function createProxyClient(baseUrl: string | URL, options: ProxyClientOptions = {}) {
  const { token, headers = {} } = options;
  return hc<ProxyAppType>(String(baseUrl), {
    ...(options.fetch ? { fetch: options.fetch } : {}),
    headers: async (): Promise<Record<string, string>> => {
      const value = typeof token === "function" ? await token() : token;
      return value ? { ...headers, authorization: `Bearer ${value}` } : { ...headers };
    },
  });
}

export type ProxyClient = ReturnType<typeof createProxyClient>;
/** Query parameters of `GET /workflow_runs`, as the client sends them. */
export type WorkflowRunsQuery = InferRequestType<ProxyClient["workflow_runs"]["$get"]>["query"];
/** One page of `GET /workflow_runs`. */
export type WorkflowRunsPage = InferResponseType<ProxyClient["workflow_runs"]["$get"], 200>;
export type WorkflowRun = WorkflowRunsPage["data"][number];

/** A non-2xx answer from the proxy, carrying its error envelope. */
export class ProxyError extends Error {
  readonly status: number;
  readonly code: ErrorCode | "UNKNOWN";
  readonly retryable: boolean;
  readonly requestId: string | undefined;
  readonly details: ErrorBody["details"];
  /** Seconds from `Retry-After`, when the proxy sent one. */
  readonly retryAfter: number | undefined;

  constructor(status: number, body: Partial<ErrorBody>, retryAfter: number | undefined) {
    super(body.message ?? `The proxy answered HTTP ${status}.`);
    this.name = "ProxyError";
    this.status = status;
    this.code = body.code ?? "UNKNOWN";
    this.retryable = body.retryable ?? status >= 500;
    this.requestId = body.requestId;
    this.details = body.details;
    this.retryAfter = retryAfter;
  }
}

type OkBody<R> = R extends ClientResponse<infer T, infer S, "json"> ? (S extends 200 ? T : never) : never;

/**
 * The JSON body of a successful response, typed by route; any other status throws a ProxyError
 * built from the error envelope (or from the status alone when the body is not one).
 */
export async function unwrap<R extends ClientResponse<unknown, number, "json">>(
  response: R | Promise<R>,
): Promise<OkBody<R>> {
  const res = await response;
  if (res.ok) return (await res.json()) as OkBody<R>;
  const text = await res.text();
  let body: Partial<ErrorBody> = {};
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed && typeof parsed === "object") body = parsed as Partial<ErrorBody>;
  } catch {
    // Not the proxy's envelope (an intermediary's page, a truncated body): the status still tells.
  }
  const retryAfterHeader = Number(res.headers.get("retry-after"));
  const retryAfter =
    Number.isFinite(retryAfterHeader) && res.headers.has("retry-after") ? retryAfterHeader : undefined;
  throw new ProxyError(res.status, body, retryAfter);
}

/**
 * Every run matching `query`, page after page, following `nextPageToken` until the list ends.
 * Any error stops the walk with a ProxyError; nothing is retried behind the caller's back.
 */
export async function* listAllRuns(
  client: ProxyClient,
  query: Omit<NonNullable<WorkflowRunsQuery>, "nextPageToken"> = {},
): AsyncGenerator<WorkflowRun, void, undefined> {
  let nextPageToken: string | undefined;
  do {
    const page = await unwrap(
      client.workflow_runs.$get({ query: nextPageToken ? { ...query, nextPageToken } : query }),
    );
    yield* page.data;
    nextPageToken = page.nextPageToken;
  } while (nextPageToken);
}
