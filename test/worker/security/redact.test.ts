import { describe, expect, it } from "vitest";
import { json } from "../support/proxy.ts";
import { isolatedTenant, type Tenant } from "../support/tenant.ts";

interface ListBody {
  object: string;
  data: Record<string, unknown>[];
  nextPageToken?: string | null;
}

async function list(tenant: Tenant, path: string, redact?: string) {
  const response = await tenant.call(path, { env: redact === undefined ? {} : { REDACT_FIELDS: redact } });
  expect(response.status).toBe(200);
  return { response, body: await json<ListBody>(response) };
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

  it("only touches top-level run fields, never the list envelope", async () => {
    const tenant = isolatedTenant();
    const { body } = await list(tenant, "/workflow_runs?maxPageSize=3", "object,nextPageToken,workflow.name");
    expect(body.object).toBe("list");
    expect(typeof body.nextPageToken).toBe("string");
    for (const run of body.data) {
      expect(run).not.toHaveProperty("object");
      expect((run.workflow as { name?: unknown }).name).toEqual(expect.any(String));
    }
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
    const tenant = isolatedTenant();
    const path = "/workflow_runs?maxPageSize=5";
    const redacted = await list(tenant, path, "dashboardUrl");
    const plain = await list(tenant, path);
    const redactedAgain = await list(tenant, path, "dashboardUrl");
    expect(tenant.fake.listCalls.length).toBeLessThan(3);
    expect(redacted.body.data.every((run) => !("dashboardUrl" in run))).toBe(true);
    expect(plain.body.data.every((run) => "dashboardUrl" in run)).toBe(true);
    expect(redactedAgain.body.data.every((run) => !("dashboardUrl" in run))).toBe(true);
  });
});
