import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, expectTypeOf, it } from "vitest";
import { type FakeExtend, listAll } from "../../../fake/extend.ts";
import type { ErrorCode } from "../../../src/app/errors.ts";
import {
  createProxyClient,
  listAllRuns,
  ProxyError,
  unwrap,
  type WorkflowRun,
  type WorkflowRunsPage,
  type WorkflowRunsQuery,
} from "../../../src/client/index.ts";
import type { WorkflowRunStatus } from "../../../src/extend/schemas.ts";
import worker from "../../../src/index.ts";
import { TEST_UPSTREAM_KEY } from "../support/constants.ts";
import { isolatedTenant, type Tenant } from "../support/tenant.ts";

const PROXY_ORIGIN = "https://proxy.test";
const CLIENT_TOKEN = "tok_client_typed_4b1e7c09a3d85f62e1";

/**
 * A fetch that hands every request to the Worker's own fetch inside workerd, with the tenant's
 * settings, and records it.
 */
function workerFetch(tenant: Tenant, overrides: Partial<Env> = {}) {
  const sent: Request[] = [];
  const settings = { ...env, CLIENT_TOKENS: CLIENT_TOKEN, ...tenant.env, ...overrides };
  const fetcher: typeof fetch = async (input, init) => {
    const request = new Request(input, init);
    sent.push(request.clone());
    const ctx = createExecutionContext();
    const response = await worker.fetch(request, settings, ctx);
    await waitOnExecutionContext(ctx);
    return response;
  };
  return { fetcher, sent };
}

function clientFor(tenant: Tenant, overrides: Partial<Env> = {}) {
  const { fetcher, sent } = workerFetch(tenant, overrides);
  return { client: createProxyClient(PROXY_ORIGIN, { token: CLIENT_TOKEN, fetch: fetcher }), sent };
}

describe("typed hc client", () => {
  it("reads one page with the filters it was given, typed as the route's response", async () => {
    const tenant = isolatedTenant();
    const { client, sent } = clientFor(tenant);

    const page = await unwrap(client.workflow_runs.$get({ query: { status: "FAILED", maxPageSize: "5" } }));

    expectTypeOf(page).toEqualTypeOf<WorkflowRunsPage>();
    expectTypeOf(page.data[0]).toEqualTypeOf<WorkflowRun | undefined>();
    expectTypeOf<WorkflowRun["status"]>().toEqualTypeOf<WorkflowRunStatus>();
    expectTypeOf(page.nextPageToken).toEqualTypeOf<string | undefined>();
    const expected = listAll(tenant.fake.runs, { status: "FAILED" }).slice(0, 5);
    expect(page.object).toBe("list");
    expect(page.data.map((run) => run.id)).toEqual(expected.map((run) => run.id));
    expect(page.data.every((run) => run.status === "FAILED")).toBe(true);
    expect(sent.map((r) => new URL(r.url).pathname)).toEqual(["/workflow_runs"]);
  });

  it.each<[string, Omit<WorkflowRunsQuery, "nextPageToken">]>([
    ["all runs, default sort", { maxPageSize: "7" }],
    [
      "one status, oldest created first",
      { status: "PROCESSED", sortBy: "createdAt", sortDir: "asc", maxPageSize: "4" },
    ],
    [
      "one workflow, updated ascending",
      { workflowId: "FIRST_RUNS_WORKFLOW", sortBy: "updatedAt", sortDir: "asc", maxPageSize: "9" },
    ],
    [
      "file name contains text, newest first",
      { fileNameContains: "invoice", sortDir: "desc", maxPageSize: "3" },
    ],
  ])("pages to the end: %s", async (_name, given) => {
    const tenant = isolatedTenant();
    // The workflow filter needs a workflow id that exists in this dataset.
    const query =
      given.workflowId === "FIRST_RUNS_WORKFLOW"
        ? { ...given, workflowId: tenant.fake.runs[0]?.workflow.id }
        : given;
    const { client } = clientFor(tenant);

    const ids: string[] = [];
    for await (const run of listAllRuns(client, query)) ids.push(run.id);

    const { maxPageSize, ...filters } = query;
    const expected = listAll(tenant.fake.runs, filters).map((run) => run.id);
    expect(expected.length).toBeGreaterThan(Number(maxPageSize));
    expect(ids).toEqual(expected);
    // One call per page; a list that ends on a full page may need one more, empty, page to say so.
    const pages = Math.ceil(expected.length / Number(maxPageSize));
    expect(tenant.fake.listCalls.length).toBeGreaterThanOrEqual(pages);
    expect(tenant.fake.listCalls.length).toBeLessThanOrEqual(pages + 1);
  });

  it("reads /stats, following resumeToken until the scan is complete", async () => {
    const tenant = isolatedTenant({ dataset: { size: 300, seed: 11 } });
    const { client } = clientFor(tenant, { STATS_MAX_PAGES: "1" });
    const workflowId = tenant.fake.runs[0]?.workflow.id ?? "none";

    let stats = await unwrap(client.stats.$get({ query: { workflowId } }));
    let answers = 1;
    while (!stats.complete && stats.resumeToken) {
      stats = await unwrap(client.stats.$get({ query: { workflowId, resumeToken: stats.resumeToken } }));
      answers += 1;
    }

    expectTypeOf(stats.total).toEqualTypeOf<number>();
    expectTypeOf(stats.complete).toEqualTypeOf<boolean>();
    const runs = listAll(tenant.fake.runs, { workflowId });
    expect(stats.object).toBe("workflow_run_stats");
    expect(stats.complete).toBe(true);
    expect(stats.resumeToken).toBeNull();
    expect(stats.total).toBe(runs.length);
    expect(stats.byStatus?.FAILED).toBe(runs.filter((run) => run.status === "FAILED").length);
    expect(answers).toBeGreaterThan(1);
  });

  it("sends the token as a bearer credential and never passes it upstream", async () => {
    const tenant = isolatedTenant();
    let calls = 0;
    const { fetcher, sent } = workerFetch(tenant);
    const client = createProxyClient(PROXY_ORIGIN, {
      token: () => {
        calls += 1;
        return CLIENT_TOKEN;
      },
      headers: { "x-client": "dashboard" },
      fetch: fetcher,
    });

    await unwrap(client.workflow_runs.$get({ query: { maxPageSize: "2" } }));
    await unwrap(client.workflow_runs.$get({ query: { maxPageSize: "3" } }));

    expect(calls).toBe(2);
    expect(sent.map((r) => r.headers.get("authorization"))).toEqual([
      `Bearer ${CLIENT_TOKEN}`,
      `Bearer ${CLIENT_TOKEN}`,
    ]);
    expect(sent.every((r) => r.headers.get("x-client") === "dashboard")).toBe(true);
    expect(tenant.fake.listCalls.length).toBe(2);
    for (const call of tenant.fake.listCalls) {
      expect(call.headers.authorization).toBe(`Bearer ${TEST_UPSTREAM_KEY}`);
      expect(JSON.stringify(call.headers)).not.toContain(CLIENT_TOKEN);
      expect(call.headers["x-client"]).toBeUndefined();
    }
  });

  it("sends no authorization header when it has no token", async () => {
    const tenant = isolatedTenant();
    const { fetcher, sent } = workerFetch(tenant);
    const client = createProxyClient(PROXY_ORIGIN, { fetch: fetcher });

    await unwrap(client.workflow_runs.$get({ query: {} }));

    expect(sent[0]?.headers.has("authorization")).toBe(false);
  });

  it.each<{
    name: string;
    setup: (fake: FakeExtend) => void;
    query: Record<string, string>;
    status: number;
    code: ErrorCode;
    retryable: boolean;
    upstreamCalls: number;
    retryAfter: boolean;
  }>([
    {
      name: "invalid page size",
      setup: () => {},
      query: { maxPageSize: "0" },
      status: 400,
      code: "INVALID_REQUEST",
      retryable: false,
      upstreamCalls: 0,
      retryAfter: false,
    },
    {
      name: "Extend keeps failing",
      setup: (fake) => fake.inject({ type: "status", status: 500 }, 10),
      query: { maxPageSize: "17" },
      status: 502,
      code: "UPSTREAM_ERROR",
      retryable: true,
      upstreamCalls: 3,
      retryAfter: false,
    },
    {
      name: "Extend rate limit with a long Retry-After",
      setup: (fake) => fake.inject({ type: "rate-limit", retryAfter: "120" }, 10),
      query: { maxPageSize: "19" },
      status: 503,
      code: "UPSTREAM_RATE_LIMITED",
      retryable: true,
      upstreamCalls: 1,
      retryAfter: true,
    },
  ])("turns an error answer into a ProxyError: $name", async (c) => {
    const tenant = isolatedTenant();
    c.setup(tenant.fake);
    const { client } = clientFor(tenant);

    const error = await unwrap(client.workflow_runs.$get({ query: c.query })).then(
      () => undefined,
      (e: unknown) => e,
    );

    expect(error).toBeInstanceOf(ProxyError);
    const proxyError = error as ProxyError;
    expect(proxyError.status).toBe(c.status);
    expect(proxyError.code).toBe(c.code);
    expect(proxyError.retryable).toBe(c.retryable);
    expect(proxyError.requestId).toMatch(/\S/);
    expect(proxyError.retryAfter !== undefined).toBe(c.retryAfter);
    expect(tenant.fake.listCalls.length).toBe(c.upstreamCalls);
    if (c.code === "INVALID_REQUEST")
      expect(proxyError.details?.map((d) => d.field)).toEqual(["maxPageSize"]);
  });

  it("types error bodies as the envelope", async () => {
    const tenant = isolatedTenant();
    const { client } = clientFor(tenant);

    const res = await client.workflow_runs.$get({ query: { sortDir: "sideways" as "asc" } });

    expect(res.status).toBe(400);
    if (res.status === 400) {
      const body = await res.json();
      expectTypeOf(body.code).toEqualTypeOf<ErrorCode>();
      expect(body.code).toBe("INVALID_REQUEST");
      expect(body.details?.[0]?.field).toBe("sortDir");
    }
  });

  it("rejects undeclared query parameters and values at compile time", () => {
    const { client } = clientFor(isolatedTenant());
    // Only type-checked: these calls are never made.
    const compileOnly = () => {
      // @ts-expect-error: not a status Extend knows
      void client.workflow_runs.$get({ query: { status: "DONE" } });
      // @ts-expect-error: not a parameter of the route
      void client.workflow_runs.$get({ query: { limit: "5" } });
    };
    expect(typeof compileOnly).toBe("function");
  });
});
