// /stats scans under upstream faults that come and go: once Extend answers well again, the next
// scan counts what it says, whatever the pages a failed scan left behind in the page cache.
import { describe, expect, it } from "vitest";
import { json } from "../support/proxy.ts";
import { getStats, referenceStats, statsPath, summary } from "../support/stats.ts";
import { isolatedTenant } from "../support/tenant.ts";

describe("GET /stats after a fault of Extend's has passed", () => {
  it("recounts a page the fold refused rather than serving it from the page cache", async () => {
    const tenant = isolatedTenant({ dataset: { size: 300, seed: 11 } });
    const run = tenant.fake.runs.find((r) => r.status === "FAILED");
    if (!run) throw new Error("the dataset has no FAILED run");
    const createdAt = run.createdAt;
    // A list page is passed on as Extend sent it, so the list cache keeps it; the scan cannot place it.
    run.createdAt = "not a date";
    const failed = await tenant.call(statsPath({ status: "FAILED" }));
    expect(failed.status).toBe(502);
    expect(await json(failed)).toMatchObject({ code: "UPSTREAM_INVALID_RESPONSE" });

    run.createdAt = createdAt;
    const { response, body } = await getStats(tenant, { status: "FAILED" });
    expect(response.headers.get("x-cache")).toBe("MISS");
    expect(summary(body)).toEqual(referenceStats(tenant.fake.runs, { status: "FAILED" }));
  });
});
