// The one way a worker test isolates itself: a tenant of its own. Its workspace is one no other
// test uses, so no page cache, /stats cache or upstream rate budget is shared; its fake Extend
// answers that workspace alone; its calls come from client ips no other call uses, so no
// per-caller rate limit is shared.
import { type DefaultBodyType, HttpResponse, http, type RequestHandler, type StrictRequest } from "msw";
import { FakeExtend, type FakeExtendOptions } from "../../../fake/extend.ts";
import { FAKE_EXTEND_ORIGIN, TEST_UPSTREAM_KEY } from "./constants.ts";
import { type CallOptions, callProxy } from "./proxy.ts";
import { network, unexpectedRequest } from "./setup.ts";

export interface TenantOptions extends Partial<Omit<FakeExtendOptions, "workspaceId">> {
  /**
   * EXTEND_WORKSPACE_ID: by default one no other test uses. A given id is shared with whoever
   * else uses it. `null` configures none; the fake then answers every call at its origin that
   * no tenant with a workspace claims (for tests of the header itself, or of `SELF`, which runs
   * with the static settings).
   */
  workspaceId?: string | null;
  /** The tenant's Extend origin (EXTEND_API_BASE_URL); by default the one the tests run with. */
  origin?: string;
  /** Answer at most this many runs per page whatever maxPageSize asks for, as Extend may. */
  pageLimit?: number;
  /** Settings beyond the workspace and origin. */
  env?: Partial<Env>;
}

export interface Tenant {
  /** The fake Extend behind this tenant, and no other. */
  readonly fake: FakeExtend;
  /** The tenant's settings: for a call's `env`, or a Worker called directly. */
  readonly env: Partial<Env>;
  /** Every upstream request as the proxy sent it (before any page limit was applied). */
  readonly calls: URL[];
  /**
   * Calls the proxy with the tenant's settings (then the call's own `env`), from a client ip no
   * other call uses unless the call names one.
   */
  call(path: string, options?: CallOptions): Promise<Response>;
}

/** A workspace id no other test uses. */
export function freshWorkspaceId(): string {
  return `ws_${crypto.randomUUID().replaceAll("-", "")}`;
}

/** Random groups of an IPv6 address, as hex. */
function groups(count: number): string {
  return Array.from(crypto.getRandomValues(new Uint16Array(count)), (n) => n.toString(16)).join(":");
}

/**
 * A /64 no other test uses, as `2001:db8:x:y`: the proxy counts an IPv6 caller by its /64.
 * Random rather than counted: the limiters' counters outlive a test file, and every file would
 * count from the start again.
 */
export function freshPrefix64(): string {
  return `2001:db8:${groups(2)}`;
}

/** A client ip (in a /64 of its own) no other call uses. */
export function freshClientIp(): string {
  return `${freshPrefix64()}:${groups(4)}`;
}

/**
 * Answers one intercepted request with the fake (at `url`, the request's own unless rewritten).
 * A reset becomes a network error, and so does a hanging call the proxy gave up on.
 */
export async function answerWithFake(
  fake: FakeExtend,
  request: StrictRequest<DefaultBodyType>,
  url = request.url,
): Promise<Response> {
  try {
    const response = await fake.handle({
      url,
      method: request.method,
      headers: request.headers,
      signal: request.signal as AbortSignal,
    });
    return response.type === "error" ? HttpResponse.error() : response;
  } catch (error) {
    // The proxy gave up on a hanging call (its timeout aborted the request): nothing to answer.
    if (request.signal.aborted) return HttpResponse.error();
    throw error;
  }
}

interface Route {
  workspaceId: string | undefined;
  answer(request: StrictRequest<DefaultBodyType>): Promise<Response>;
}

const dispatchers = new Map<string, { handler: RequestHandler; routes: Route[] }>();

/**
 * The routes of this test's tenants at `origin`, newest first. One msw handler per origin hands
 * each request to the tenant whose workspace it carries; one that no tenant claims fails the test.
 */
function routesAt(origin: string): Route[] {
  const existing = dispatchers.get(origin);
  // msw drops every handler after a test, so a handler no longer listed was an earlier test's.
  if (existing && network.listHandlers().includes(existing.handler)) return existing.routes;
  const routes: Route[] = [];
  const handler = http.all(`${origin}/*`, ({ request }) => {
    const workspace = request.headers.get("x-extend-workspace-id") ?? undefined;
    const route =
      routes.find((r) => r.workspaceId !== undefined && r.workspaceId === workspace) ??
      routes.find((r) => r.workspaceId === undefined);
    if (route) return route.answer(request);
    unexpectedRequest(`${request.method} ${request.url} for a workspace no tenant of the test has`);
    return HttpResponse.error();
  });
  network.use(handler);
  dispatchers.set(origin, { handler, routes });
  return routes;
}

/**
 * A tenant of its own for one test, with a fresh fake Extend. A test's own msw handler for the
 * same origin, registered after the tenant, answers in the fake's place.
 */
export function isolatedTenant(options: TenantOptions = {}): Tenant {
  const { workspaceId: requested, origin, pageLimit, env: extra, ...fakeOptions } = options;
  const workspaceId = requested === null ? undefined : (requested ?? freshWorkspaceId());
  const fake = new FakeExtend({
    apiKey: TEST_UPSTREAM_KEY,
    dataset: { size: 120, seed: 7 },
    ...(workspaceId === undefined ? {} : { workspaceId }),
    ...fakeOptions,
  });
  const calls: URL[] = [];
  routesAt(origin ?? FAKE_EXTEND_ORIGIN).unshift({
    workspaceId,
    answer(request) {
      const url = new URL(request.url);
      calls.push(new URL(url));
      const size = Number(url.searchParams.get("maxPageSize") ?? "10");
      if (pageLimit === undefined || size <= pageLimit) return answerWithFake(fake, request);
      url.searchParams.set("maxPageSize", String(pageLimit));
      return answerWithFake(fake, request, url.toString());
    },
  });
  const env: Partial<Env> = {
    ...(workspaceId === undefined ? {} : { EXTEND_WORKSPACE_ID: workspaceId }),
    ...(origin === undefined ? {} : { EXTEND_API_BASE_URL: origin }),
    // The tenant gateway budgets every upstream call; its tests set their own rate, elsewhere it only slows.
    UPSTREAM_MAX_RPS: "1000",
    ...extra,
  };
  return {
    fake,
    env,
    calls,
    call: (path, callOptions = {}) =>
      callProxy(path, {
        ...callOptions,
        env: { ...env, ...callOptions.env },
        headers: { "cf-connecting-ip": freshClientIp(), ...callOptions.headers },
      }),
  };
}

/** Keeps this isolate (the test's, the Worker's and the object's) from running anything else for `ms`. */
export function occupyIsolate(ms: number): void {
  const until = Date.now() + ms;
  let spins = 0;
  while (Date.now() < until) spins += 1;
  if (spins === 0) throw new Error("the clock did not move");
}

/**
 * Extend's list route where the first `late` calls find the isolate busy (as writing a page, or
 * a loaded Worker sharing it, keeps it) and reach `fake` 400 ms after they were sent; the rest
 * go out at once.
 */
export function lateFirstCalls(fake: FakeExtend, late: number): RequestHandler {
  let sent = 0;
  return http.get(`${FAKE_EXTEND_ORIGIN}/workflow_runs`, async ({ request }) => {
    sent += 1;
    if (sent <= late) {
      occupyIsolate(100);
      await new Promise((resolve) => setTimeout(resolve, 400));
    }
    return answerWithFake(fake, request);
  });
}
