import { describe, expect, it } from "vitest";
import { normaliseRedactPaths, redactedFilterIssues, redactRuns } from "../../../src/security/redact.ts";
import { json } from "../support/proxy.ts";
import { getStats, referenceStats, type WorkflowRunStats } from "../support/stats.ts";
import { isolatedTenant, type Tenant } from "../support/tenant.ts";

interface ListBody {
  object: string;
  data: Record<string, unknown>[];
  nextPageToken?: string | null;
}

async function list(tenant: Tenant, path: string, redact?: string) {
  const response = await tenant.call(path, { env: redact === undefined ? {} : { REDACT_FIELDS: redact } });
  expect(response.status).toBe(200);
  const body = await json<ListBody>(response);
  expect(body.data.length, "a page with runs to redact").toBeGreaterThan(0);
  return { response, body };
}

/** An independent oracle: deletes one dotted path from a copy of a run, arrays of objects included. */
function without(run: unknown, path: string): unknown {
  const copy = structuredClone(run);
  const remove = (value: unknown, segments: string[]): void => {
    if (Array.isArray(value)) {
      for (const item of value) remove(item, segments);
      return;
    }
    if (typeof value !== "object" || value === null) return;
    const [head = "", ...rest] = segments;
    const record = value as Record<string, unknown>;
    if (rest.length === 0) delete record[head];
    else remove(record[head], rest);
  };
  remove(copy, path.split("."));
  return copy;
}

describe("REDACT_FIELDS", () => {
  it("removes the listed fields from every run and keeps everything else", async () => {
    const tenant = isolatedTenant();
    const { body } = await list(tenant, "/workflow_runs?maxPageSize=25", "reviewedByUser, dashboardUrl");
    expect(body.data).toHaveLength(25);
    const upstream = tenant.fake.runs;
    for (const run of body.data) {
      expect(run).not.toHaveProperty("reviewedByUser");
      expect(run).not.toHaveProperty("dashboardUrl");
      const original = upstream.find((r) => r.id === run.id);
      const { reviewedByUser: _r, dashboardUrl: _d, ...rest } = original ?? {};
      expect(run).toEqual(rest);
    }
    expect(body.object).toBe("list");
    expect(typeof body.nextPageToken).toBe("string");
  });

  it("follows dotted paths into nested objects and into arrays of objects", async () => {
    const tenant = isolatedTenant();
    const paths = ["workflow.createdBy", "workflowVersion.createdBy.email", "files.name"];
    const { body } = await list(tenant, "/workflow_runs?maxPageSize=25", paths.join(","));
    expect(body.data).toHaveLength(25);
    for (const run of body.data) {
      const original = tenant.fake.runs.find((r) => r.id === run.id);
      expect(run).toEqual(paths.reduce<unknown>((value, path) => without(value, path), original));
      expect(run.workflow).not.toHaveProperty("createdBy");
      expect(run.workflow).toHaveProperty("name");
      for (const file of run.files as Record<string, unknown>[]) {
        expect(file).not.toHaveProperty("name");
        expect(file).toHaveProperty("id");
      }
    }
    expect(JSON.stringify(body.data)).not.toMatch(/"email"/);
  });

  it("never touches the list envelope: top-level paths are fields of each run", async () => {
    const tenant = isolatedTenant();
    const { body } = await list(tenant, "/workflow_runs?maxPageSize=3", "object,nextPageToken,data");
    expect(body.object).toBe("list");
    expect(typeof body.nextPageToken).toBe("string");
    expect(body.data).toHaveLength(3);
    for (const run of body.data) expect(run).not.toHaveProperty("object");
  });

  it("passes pages through untouched when unset", async () => {
    const tenant = isolatedTenant();
    const { body } = await list(tenant, "/workflow_runs?maxPageSize=3");
    for (const run of body.data) {
      expect(run).toHaveProperty("dashboardUrl");
      expect(run).toHaveProperty("reviewedByUser");
    }
  });

  it("applies on the way out: the cache keeps Extend's page, whichever setting filled it", async () => {
    // A tenant of its own: the first call fills the page cache.
    const tenant = isolatedTenant();
    const path = "/workflow_runs?maxPageSize=20";
    const redacted = await list(tenant, path, "dashboardUrl,workflow.createdBy");
    const plain = await list(tenant, path);
    const redactedAgain = await list(tenant, path, "dashboardUrl,workflow.createdBy");
    expect(tenant.fake.listCalls.length).toBeLessThan(3);
    expect(redacted.body.data.every((run) => !("dashboardUrl" in run))).toBe(true);
    expect(plain.body.data.every((run) => "dashboardUrl" in run)).toBe(true);
    expect(plain.body.data.some((run) => "createdBy" in (run.workflow as object))).toBe(true);
    expect(redactedAgain.body.data.every((run) => !("createdBy" in (run.workflow as object)))).toBe(true);
  });

  it("keeps every number as Extend wrote it, however large, precise or exotic", async () => {
    const tenant = isolatedTenant();
    const run = (id: string, reviewed: string) =>
      `{"object":"workflow_run","id":"${id}",${reviewed}"usage":{"credits":1.50,"totalCredits":2.5E-3},` +
      `"pages":12345678901234567890,"ratio":1e400,"offset":-0,"count":7}`;
    const page = (reviewed: string) =>
      `{"object":"list","data":[${run("workflow_run_1", reviewed)}],"nextPageToken":"c1"}`;
    tenant.fake.inject({ type: "status", status: 200, body: page('"reviewedByUser":"a@example.com",') });
    const response = await tenant.call("/workflow_runs?maxPageSize=1", {
      env: { REDACT_FIELDS: "reviewedByUser" },
    });
    expect(response.status).toBe(200);
    expect(await response.text()).toBe(page(""));
  });

  it.each([
    ["a top-level field", "reviewedByUser"],
    ["a path into the deep field", "deep.name"],
  ])("refuses with a clear 502 a run nested too deeply to redact, redacting %s", async (_name, redact) => {
    const tenant = isolatedTenant();
    const depth = 100_000;
    const run =
      `{"object":"workflow_run","id":"workflow_run_1","reviewedByUser":"a@example.com",` +
      `"deep":${"[".repeat(depth)}${"]".repeat(depth)}}`;
    const body = `{"object":"list","data":[${run}],"nextPageToken":null}`;
    tenant.fake.inject({ type: "status", status: 200, body });
    const response = await tenant.call("/workflow_runs?maxPageSize=1", { env: { REDACT_FIELDS: redact } });
    expect(response.status).toBe(502);
    const error = await json<{ code: string; message: string }>(response);
    expect(error.code).toBe("UPSTREAM_INVALID_RESPONSE");
    expect(error.message).not.toContain("a@example.com");
  });

  it("gives every setting its own ETag, and equal settings the same one", async () => {
    const tenant = isolatedTenant();
    const path = "/workflow_runs?maxPageSize=5";
    const etagUnder = async (redact?: string) =>
      (await list(tenant, path, redact)).response.headers.get("etag");
    const tags = [
      await etagUnder(),
      await etagUnder("files"),
      await etagUnder("files.name"),
      await etagUnder("workflow.createdBy"),
      await etagUnder("files.name,workflow.createdBy"),
    ];
    expect(new Set(tags).size).toBe(tags.length);
    expect(await etagUnder(" workflow.createdBy, files.name,files.name")).toBe(tags[4]);
    // A tag taken under one setting does not revalidate a body served under another.
    const revalidated = await tenant.call(path, {
      env: { REDACT_FIELDS: "files.name" },
      headers: { "if-none-match": tags[3] ?? "" },
    });
    expect(revalidated.status).toBe(200);
  });
});

describe("filters on redacted fields", () => {
  it.each<[string, string, string, string]>([
    ["files", "/workflow_runs", "fileNameContains=invoice", "fileNameContains"],
    ["files.name", "/workflow_runs", "fileNameContains=invoice", "fileNameContains"],
    ["workflow", "/workflow_runs", "workflowId=wf_1", "workflowId"],
    ["workflow.id", "/workflow_runs", "workflowId=wf_1", "workflowId"],
    ["batchId", "/workflow_runs", "batchId=batch_1", "batchId"],
    ["status", "/workflow_runs", "status=FAILED", "status"],
    ["files.name", "/workflow_runs", "fileNameContains=a&nextPageToken=abc", "fileNameContains"],
    ["files", "/stats", "fileNameContains=invoice", "fileNameContains"],
    ["workflow", "/stats", "workflowId=wf_1", "workflowId"],
    ["batchId", "/stats", "batchId=batch_1", "batchId"],
    ["status", "/stats", "status=FAILED", "status"],
    ["createdAt", "/stats", "since=2026-01-01T00:00:00Z", "since"],
    ["createdAt", "/stats", "until=2026-01-01T00:00:00Z", "until"],
  ])(
    "REDACT_FIELDS=%s: %s?%s is a 400 naming %s, with no upstream call",
    async (redact, route, query, field) => {
      const tenant = isolatedTenant();
      const response = await tenant.call(`${route}?${query}`, {
        env: { REDACT_FIELDS: `dashboardUrl,${redact}` },
      });
      const body = await json<{ code: string; details: { field: string; message: string }[] }>(response);
      expect(response.status).toBe(400);
      expect(body.code).toBe("INVALID_REQUEST");
      expect(body.details.map((d) => d.field)).toEqual([field]);
      expect(body.details[0]?.message).toMatch(/redacted/);
      expect(tenant.fake.requests).toHaveLength(0);
    },
  );

  it("names every such filter at once", () => {
    const issues = redactedFilterIssues({ status: "FAILED", workflowId: "wf", fileNameContains: "x" }, [
      "files",
      "status",
    ]);
    expect(issues.map((i) => i.field)).toEqual(["status", "fileNameContains"]);
  });

  it.each<[string, string]>([
    ["files.id", "/workflow_runs?fileNameContains=a"],
    ["workflow.createdBy", "/workflow_runs?workflowId=wf_1"],
    ["workflow.name", "/stats?workflowId=wf_1"],
    ["usage", "/stats?status=FAILED&since=2026-01-01T00:00:00Z"],
  ])("REDACT_FIELDS=%s leaves %s open: the filter reads no redacted field", async (redact, path) => {
    const tenant = isolatedTenant();
    const response = await tenant.call(path, { env: { REDACT_FIELDS: redact } });
    expect(response.status).toBe(200);
  });
});

describe("/stats under REDACT_FIELDS", () => {
  const statsUnder = async (
    tenant: Tenant,
    redact: string | undefined,
    params = {},
    env: Partial<Env> = {},
  ) => {
    const { response, body } = await getStats(tenant, params, {
      ...env,
      ...(redact === undefined ? {} : { REDACT_FIELDS: redact }),
    });
    return { cache: response.headers.get("x-cache"), body };
  };

  it.each([
    ["usage", ["usage"]],
    ["usage.credits", ["usage"]],
    ["usage.totalCredits,dashboardUrl", ["usage"]],
    ["status", ["byStatus"]],
    ["status,usage", ["usage", "byStatus"]],
  ])("REDACT_FIELDS=%s leaves out %j", async (redact, absent) => {
    const tenant = isolatedTenant();
    const { body } = await statsUnder(tenant, redact);
    for (const field of absent) expect(body).not.toHaveProperty(field);
    const reference = referenceStats(tenant.fake.runs);
    expect(body.total).toBe(reference.total);
    if (!absent.includes("usage")) expect(body.usage).toEqual(reference.usage);
    if (!absent.includes("byStatus")) expect(body.byStatus).toEqual(reference.byStatus);
  });

  it("keeps usage and byStatus when only other fields are redacted", async () => {
    const tenant = isolatedTenant();
    const { body } = await statsUnder(tenant, "files,workflow.createdBy,dashboardUrl");
    const reference = referenceStats(tenant.fake.runs);
    expect(body.usage).toEqual(reference.usage);
    expect(body.byStatus).toEqual(reference.byStatus);
  });

  it("serves one cached result to every setting, redacted on the way out", async () => {
    const tenant = isolatedTenant();
    const reference = referenceStats(tenant.fake.runs);
    const plain = await statsUnder(tenant, undefined);
    const redacted = await statsUnder(tenant, "usage");
    const plainAgain = await statsUnder(tenant, undefined);
    expect([plain.cache, redacted.cache, plainAgain.cache]).toEqual(["MISS", "HIT", "HIT"]);
    expect(redacted.body).not.toHaveProperty("usage");
    expect(plainAgain.body.usage).toEqual(reference.usage);
  });

  it("never stores a redacted answer: a result first computed under redaction still has usage for others", async () => {
    const tenant = isolatedTenant();
    const redacted = await statsUnder(tenant, "usage", { status: "PROCESSED" });
    const plain = await statsUnder(tenant, undefined, { status: "PROCESSED" });
    expect([redacted.cache, plain.cache]).toEqual(["MISS", "HIT"]);
    expect(redacted.body).not.toHaveProperty("usage");
    expect(plain.body.usage).toEqual(referenceStats(tenant.fake.runs, { status: "PROCESSED" }).usage);
  });

  it("leaves out usage from a partial answer too", async () => {
    const tenant = isolatedTenant({ dataset: { size: 3000, seed: 3 } });
    const { body } = await statsUnder(tenant, "usage", {}, { STATS_MAX_PAGES: "1" });
    expect(body.complete).toBe(false);
    expect(body).not.toHaveProperty("usage");
    expect((body as WorkflowRunStats).resumeToken).toEqual(expect.any(String));
  });
});

describe("redactRuns and normaliseRedactPaths", () => {
  it("does not parse the page when nothing is redacted", () => {
    const notEvenJson = "{ this is not JSON";
    expect(redactRuns(notEvenJson, [])).toBe(notEvenJson);
  });

  it("walks only a run's own fields, never its prototype", () => {
    const body = JSON.stringify({ object: "list", data: [{ id: "a", files: [{ name: "x" }] }] });
    expect(redactRuns(body, ["constructor.name", "toString", "files.constructor"])).toBe(body);
    expect({}.constructor.name).toBe("Object");
  });

  it("treats a number as a value, not an object, whatever its form", () => {
    const body = '{"object":"list","data":[{"id":"a","usage":{"credits":1e400},"n":-0}]}';
    expect(redactRuns(body, ["usage.credits.rawJSON", "n.x"])).toBe(body);
    expect(redactRuns(body, ["usage.credits"])).toBe(
      '{"object":"list","data":[{"id":"a","usage":{},"n":-0}]}',
    );
  });

  it("reaches into arrays nested in arrays and skips values that are not objects", () => {
    const body = JSON.stringify({
      object: "list",
      data: [{ id: "a", files: [[{ name: "x", id: 1 }], null, "text", { name: "y", id: 2 }] }, "not a run"],
    });
    expect(JSON.parse(redactRuns(body, ["files.name"]))).toEqual({
      object: "list",
      data: [{ id: "a", files: [[{ id: 1 }], null, "text", { id: 2 }] }, "not a run"],
    });
  });

  it.each([
    [
      ["b", "a.c", "a"],
      ["a", "b"],
    ],
    [
      ["files.name", "files.id"],
      ["files.id", "files.name"],
    ],
    [[], []],
  ])("normalises %j to %j", (entries, normalised) => {
    expect(normaliseRedactPaths(entries)).toEqual(normalised);
  });
});
