// /stats scans under upstream faults that come and go: once Extend answers well again, the next
// scan counts what it says, whatever the pages a failed scan left behind in the page cache.
import { HttpResponse, http } from "msw";
import { describe, expect, it } from "vitest";
import { FAKE_EXTEND_ORIGIN } from "../support/constants.ts";
import { json } from "../support/proxy.ts";
import { network } from "../support/setup.ts";
import {
  getStats,
  referenceStats,
  scanToEnd,
  statsPath,
  summary,
  type WorkflowRunStats,
} from "../support/stats.ts";
import { answerWithFake, isolatedTenant, type Tenant } from "../support/tenant.ts";

type Page = { object: "list"; data: Record<string, unknown>[]; nextPageToken?: string };

/** Extend's list pages for the tenant, rewritten by `rewrite` (the request's cursor, and the page). */
function rewritePages(
  tenant: Tenant,
  pageLimit: number,
  rewrite: (cursor: string | null, page: Page) => Page,
) {
  network.use(
    http.get(`${FAKE_EXTEND_ORIGIN}/workflow_runs`, async ({ request }) => {
      const url = new URL(request.url);
      url.searchParams.set("maxPageSize", String(pageLimit));
      const answer = await answerWithFake(tenant.fake, request, url.toString());
      if (answer.status !== 200) return answer;
      const page = (await answer.json()) as Page;
      return HttpResponse.json(rewrite(url.searchParams.get("nextPageToken"), page));
    }),
  );
}

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

describe("GET /stats when Extend lists a run twice", () => {
  it("counts once a run repeated at the top of the next page (an offset cursor, a run created meanwhile)", async () => {
    const tenant = isolatedTenant({ dataset: { size: 200, seed: 5 } });
    const lastOfPage = new Map<string, Record<string, unknown>>();
    rewritePages(tenant, 7, (cursor, page) => {
      const repeated = cursor === null ? undefined : lastOfPage.get(cursor);
      const data = repeated ? [repeated, ...page.data] : page.data;
      const last = page.data[page.data.length - 1];
      if (page.nextPageToken !== undefined && last) lastOfPage.set(page.nextPageToken, last);
      return { ...page, data };
    });
    const { body } = await getStats(tenant, {});
    expect(body.pagesFetched).toBeGreaterThan(16);
    expect(summary(body)).toEqual(referenceStats(tenant.fake.runs));
  });

  it("counts once a run repeated at the top of the next page, across resumed requests", async () => {
    const tenant = isolatedTenant({ dataset: { size: 120, seed: 8 } });
    const lastOfPage = new Map<string, Record<string, unknown>>();
    rewritePages(tenant, 6, (cursor, page) => {
      const repeated = cursor === null ? undefined : lastOfPage.get(cursor);
      const last = page.data[page.data.length - 1];
      if (page.nextPageToken !== undefined && last) lastOfPage.set(page.nextPageToken, last);
      return { ...page, data: repeated ? [repeated, ...page.data] : page.data };
    });
    const answers = await scanToEnd(tenant, { status: "PROCESSED" }, { STATS_MAX_PAGES: "1" });
    expect(answers.length).toBeGreaterThan(2);
    const final = answers[answers.length - 1] as WorkflowRunStats;
    expect(summary(final)).toEqual(referenceStats(tenant.fake.runs, { status: "PROCESSED" }));
  });

  it("counts once a run listed twice in a row on one page", async () => {
    const tenant = isolatedTenant({ dataset: { size: 200, seed: 6 } });
    rewritePages(tenant, 9, (_cursor, page) => {
      const first = page.data[0];
      return first ? { ...page, data: [first, ...page.data] } : page;
    });
    const { body } = await getStats(tenant, { status: "PROCESSED" });
    expect(summary(body)).toEqual(referenceStats(tenant.fake.runs, { status: "PROCESSED" }));
  });
});

describe("GET /stats when Extend refuses a cursor that a cached page carried", () => {
  it("scans again from pages read now instead of answering the caller 400", async () => {
    const tenant = isolatedTenant({ dataset: { size: 60, seed: 41 }, pageLimit: 5 });
    // The list route caches the scan's first page, with the cursor Extend gave then.
    const listed = await tenant.call(
      "/workflow_runs?status=PROCESSED&sortBy=createdAt&sortDir=desc&maxPageSize=1000",
    );
    expect(listed.status).toBe(200);
    expect((await json<{ nextPageToken?: string }>(listed)).nextPageToken).toBeDefined();
    // By the time the scan follows it, Extend has let that cursor expire.
    tenant.fake.inject(
      {
        type: "status",
        status: 400,
        body: JSON.stringify({
          code: "INVALID_REQUEST",
          message: "nextPageToken expired.",
          retryable: false,
        }),
      },
      1,
      (url) => url.searchParams.has("nextPageToken"),
    );
    const { body } = await getStats(tenant, { status: "PROCESSED" });
    expect(body.complete).toBe(true);
    expect(summary(body)).toEqual(referenceStats(tenant.fake.runs, { status: "PROCESSED" }));
  });
});
