import { describe, expect, it } from "vitest";
import { type FakeRun, generateRuns } from "../../../fake/extend.ts";
import { TEST_UPSTREAM_KEY } from "../support/constants.ts";
import { json } from "../support/proxy.ts";
import {
  getStats,
  type ReferenceFilters,
  referenceStats,
  STATUSES,
  scanToEnd,
  statsPath,
  summary,
} from "../support/stats.ts";
import { isolatedTenant } from "../support/tenant.ts";

const RUNS_2000 = generateRuns({ size: 2000, seed: 11 });
const newest = (runs: FakeRun[]) => runs[runs.length - 1]?.createdAt ?? "";

function withUsage(run: FakeRun, usage: FakeRun["usage"], status: FakeRun["status"] = run.status): FakeRun {
  return { ...run, usage, status };
}

describe("GET /stats: response contract", () => {
  it("answers the documented shape with every status, exact sums and no token when complete", async () => {
    const tenant = isolatedTenant({ dataset: { size: 300, seed: 3 } });
    const { response, body } = await getStats(tenant, {});
    expect(response.headers.get("content-type")).toMatch(/^application\/json/);
    expect(Object.keys(body).sort()).toEqual(
      [
        "object",
        "filters",
        "total",
        "byStatus",
        "usage",
        "complete",
        "pagesFetched",
        "resumeToken",
        "computedAt",
        "source",
        "asOf",
        "lagSeconds",
      ].sort(),
    );
    expect(body.object).toBe("workflow_run_stats");
    // RUN_INDEX is off in this suite: a live scan, with no index freshness to report.
    expect(body).toMatchObject({ source: "scan", asOf: null, lagSeconds: null });
    expect(body.filters).toEqual({});
    expect(Object.keys(body.byStatus ?? {})).toEqual([...STATUSES]);
    expect(Object.keys(body.usage ?? {}).sort()).toEqual(["credits", "runsWithoutUsage", "totalCredits"]);
    expect(body.complete).toBe(true);
    expect(body.resumeToken).toBeNull();
    expect(new Date(body.computedAt).toISOString()).toBe(body.computedAt);
    expect(summary(body)).toEqual(referenceStats(tenant.fake.runs));
    expect(body.total).toBe(300);
    expect(body.pagesFetched).toBe(tenant.fake.listCalls.length);
  });

  it("sums credits exactly: 0.1 + 0.2 is 0.3, totalCredits falls back to credits, null usage is counted apart", async () => {
    const base = generateRuns({ size: 4, seed: 1 });
    const [a, b, c, d] = base as [FakeRun, FakeRun, FakeRun, FakeRun];
    const runs = [
      withUsage(a, { credits: 0.1, totalCredits: 0.7 }, "PROCESSED"),
      withUsage(b, { credits: 0.2 }, "PROCESSED"),
      withUsage(c, null, "FAILED"),
      withUsage(d, { credits: 1.005, totalCredits: 2.105 }, "PENDING"),
    ];
    const tenant = isolatedTenant({ runs });
    const { body } = await getStats(tenant, {});
    expect(body.usage).toEqual({ credits: 1.305, totalCredits: 3.005, runsWithoutUsage: 1 });
    expect(body.byStatus).toMatchObject({ PROCESSED: 2, FAILED: 1, PENDING: 1, CANCELLED: 0 });
    expect(body.total).toBe(4);
  });

  it("keeps thousands of cents exact where a float sum drifts", async () => {
    const template = generateRuns({ size: 3000, seed: 5 });
    const runs = template.map((run, i) => withUsage(run, { credits: i % 2 === 0 ? 0.1 : 0.2 }));
    const floatSum = runs.reduce((sum, run) => sum + (run.usage?.credits ?? 0), 0);
    expect(floatSum).not.toBe(450);
    const tenant = isolatedTenant({ runs });
    const { body } = await getStats(tenant, {});
    expect(body.usage?.credits).toBe(450);
    expect(body.usage?.totalCredits).toBe(450);
  });

  it("echoes the filters, instants normalised to UTC milliseconds", async () => {
    const tenant = isolatedTenant();
    const { body } = await getStats(tenant, {
      status: "FAILED",
      workflowId: "workflow_BMdfq_yWM3sT-ZzvCnA3f",
      since: "2026-10-01T02:00:00+02:00",
      until: "2026-11-01T00:00:00Z",
    });
    expect(body.filters).toEqual({
      status: "FAILED",
      workflowId: "workflow_BMdfq_yWM3sT-ZzvCnA3f",
      since: "2026-10-01T00:00:00.000Z",
      until: "2026-11-01T00:00:00.000Z",
    });
  });

  it("is described in the OpenAPI document", async () => {
    const tenant = isolatedTenant();
    const response = await tenant.call("/openapi.json");
    expect(response.status).toBe(200);
    const doc = await json<{
      paths: Record<string, { get?: { parameters?: { name: string }[] } }>;
      components: { schemas: Record<string, { properties?: Record<string, unknown> }> };
    }>(response);
    const names = (doc.paths["/stats"]?.get?.parameters ?? []).map((p) => p.name).sort();
    expect(names).toEqual(
      [
        "batchId",
        "fileNameContains",
        "maxLagSeconds",
        "resumeToken",
        "since",
        "status",
        "until",
        "workflowId",
      ].sort(),
    );
    expect(Object.keys(doc.components.schemas.WorkflowRunStats?.properties ?? {})).toContain("resumeToken");
  });
});

describe("GET /stats: validation", () => {
  it.each([
    ["an unknown parameter", { sortBy: "createdAt" }, "sortBy"],
    ["a page size (stats always reads 1000)", { maxPageSize: "5" }, "maxPageSize"],
    ["an unknown status", { status: "DONE" }, "status"],
    ["an empty workflowId", { workflowId: "" }, "workflowId"],
    ["a date without time", { since: "2026-11-01" }, "since"],
    ["an instant without a zone", { until: "2026-11-01T00:00:00" }, "until"],
    ["until before since", { since: "2026-11-02T00:00:00Z", until: "2026-11-01T00:00:00Z" }, "until"],
    ["a resume token with foreign characters", { resumeToken: "abc+/=" }, "resumeToken"],
  ])("rejects %s with a 400 naming the field, before any upstream call", async (_, params, field) => {
    const tenant = isolatedTenant();
    const response = await tenant.call(statsPath(params));
    const body = await json<{ code: string; details: { field: string }[] }>(response);
    expect(response.status).toBe(400);
    expect(body.code).toBe("INVALID_REQUEST");
    expect(body.details.map((d) => d.field)).toContain(field);
    expect(tenant.fake.listCalls).toHaveLength(0);
  });

  it("rejects a repeated parameter", async () => {
    const tenant = isolatedTenant();
    const response = await tenant.call("/stats?status=FAILED&status=PENDING");
    expect(response.status).toBe(400);
    expect(tenant.fake.listCalls).toHaveLength(0);
  });
});

describe("GET /stats: totals equal a reference fold", () => {
  const workflow = "workflow_Kx82-pLmQ4rT9vWyZ1aBc";
  const cases: [string, ReferenceFilters][] = [
    ["no filters", {}],
    ["one status", { status: "PROCESSED" }],
    ["a rare status", { status: "REJECTED" }],
    ["a workflow", { workflowId: workflow }],
    ["a workflow and a status", { workflowId: workflow, status: "FAILED" }],
    ["a file name", { fileNameContains: "invoice" }],
    ["a non-ASCII file name", { fileNameContains: "請求書" }],
    ["a batch", { batchId: RUNS_2000[100]?.batchId ?? "batch_none" }],
    ["no match", { workflowId: "workflow_nope" }],
    ["since", { since: RUNS_2000[1500]?.createdAt }],
    ["until", { until: RUNS_2000[700]?.createdAt }],
    ["since and until", { since: RUNS_2000[300]?.createdAt, until: RUNS_2000[1900]?.createdAt }],
    ["since after the newest run", { since: "2030-01-01T00:00:00Z" }],
    ["until before the oldest run", { until: "2000-01-01T00:00:00Z" }],
    ["an exact instant", { since: RUNS_2000[42]?.createdAt, until: RUNS_2000[42]?.createdAt }],
    [
      "since, status and file name",
      { since: RUNS_2000[1000]?.createdAt, status: "PROCESSED", fileNameContains: "pdf" },
    ],
  ];

  it.each(cases)("with %s (2000 runs, pages of 37)", async (_, filters) => {
    const tenant = isolatedTenant({ runs: RUNS_2000, pageLimit: 37 });
    const answers = await scanToEnd(tenant, { ...filters }, { STATS_MAX_PAGES: "200" });
    expect(answers).toHaveLength(1);
    const [body] = answers;
    expect(body && summary(body)).toEqual(referenceStats(tenant.fake.runs, filters));
  });

  it.each([0, 1, 999, 1000, 1001, 2500])("with %i runs in pages of 1000", async (size) => {
    const tenant = isolatedTenant({ dataset: { size, seed: size + 1 } });
    const { body } = await getStats(tenant, {});
    expect(summary(body)).toEqual(referenceStats(tenant.fake.runs));
    expect(body.complete).toBe(true);
  });

  it("asks every page for 1000 runs in createdAt order with the same filters, never a short-page stop", async () => {
    const tenant = isolatedTenant({ runs: RUNS_2000, pageLimit: 3 });
    await getStats(tenant, { workflowId: workflow, fileNameContains: "a+b=c" }, { STATS_MAX_PAGES: "200" });
    expect(tenant.calls.length).toBeGreaterThan(8);
    for (const url of tenant.calls) {
      const params = url.searchParams;
      expect(params.get("maxPageSize")).toBe("1000");
      expect(params.get("sortBy")).toBe("createdAt");
      expect(params.get("workflowId")).toBe(workflow);
      expect(params.get("fileNameContains")).toBe("a+b=c");
      expect(STATUSES).toContain(params.get("status"));
      expect(["asc", "desc"]).toContain(params.get("sortDir"));
      expect([...params.keys()].every((k) => k !== "since" && k !== "until")).toBe(true);
    }
  });

  it("never sends the upstream key anywhere but the Authorization header", async () => {
    const tenant = isolatedTenant({ runs: RUNS_2000, pageLimit: 100 });
    const response = await tenant.call("/stats", { env: { STATS_MAX_PAGES: "3" } });
    const text = await response.text();
    expect(text).not.toContain(TEST_UPSTREAM_KEY);
    expect(tenant.fake.listCalls.every((c) => !c.url.toString().includes(TEST_UPSTREAM_KEY))).toBe(true);
  });

  it("counts the newest run with since equal to its createdAt", async () => {
    const tenant = isolatedTenant({ runs: RUNS_2000 });
    const { body } = await getStats(tenant, { since: newest(RUNS_2000) });
    expect(summary(body)).toEqual(referenceStats(tenant.fake.runs, { since: newest(RUNS_2000) }));
    expect(body.total).toBeGreaterThan(0);
  });
});
