import { afterEach, describe, expect, it, vi } from "vitest";
import { generateRuns } from "../../../fake/extend.ts";
import { TEST_UPSTREAM_KEY } from "../support/constants.ts";
import { json } from "../support/proxy.ts";
import { getStats, referenceStats, scanToEnd, statsPath, summary } from "../support/stats.ts";
import { isolatedTenant, type Tenant } from "../support/tenant.ts";

const RUNS = generateRuns({ size: 3000, seed: 17 });

interface ErrorBody {
  code: string;
  retryable: boolean;
  details?: { field: string; message: string }[];
}

async function partialToken(
  tenant: Tenant,
  params: Record<string, string>,
  env: Partial<Env>,
): Promise<string> {
  const { body } = await getStats(tenant, params, env);
  expect(body.complete).toBe(false);
  if (body.resumeToken === null) throw new Error("expected a resume token");
  return body.resumeToken;
}

function flip(token: string, index: number): string {
  const ch = token[index] === "A" ? "B" : "A";
  return token.slice(0, index) + ch + token.slice(index + 1);
}

afterEach(() => {
  vi.useRealTimers();
});

describe("GET /stats: resume tokens", () => {
  it("continues to completion with cumulative totals equal to a one-shot scan", async () => {
    const tenant = isolatedTenant({ runs: RUNS, pageLimit: 40 });
    const answers = await scanToEnd(
      tenant,
      { workflowId: "workflow_BMdfq_yWM3sT-ZzvCnA3f" },
      { STATS_MAX_PAGES: "4" },
    );
    expect(answers.length).toBeGreaterThan(3);
    for (const [i, answer] of answers.entries()) {
      const last = i === answers.length - 1;
      expect(answer.complete).toBe(last);
      expect(answer.resumeToken === null).toBe(last);
      const previous = answers[i - 1];
      if (previous) {
        expect(answer.total).toBeGreaterThanOrEqual(previous.total);
        expect(answer.pagesFetched - previous.pagesFetched).toBeGreaterThan(0);
        expect(answer.pagesFetched - previous.pagesFetched).toBeLessThanOrEqual(4);
      }
    }
    const final = answers[answers.length - 1];
    const reference = referenceStats(tenant.fake.runs, { workflowId: "workflow_BMdfq_yWM3sT-ZzvCnA3f" });
    expect(final && summary(final)).toEqual(reference);

    const oneShot = isolatedTenant({ runs: RUNS, pageLimit: 40 });
    const { body } = await getStats(
      oneShot,
      { workflowId: "workflow_BMdfq_yWM3sT-ZzvCnA3f" },
      { STATS_MAX_PAGES: "1000" },
    );
    expect(body.complete).toBe(true);
    expect(summary(body)).toEqual(reference);
  });

  it("marks partial answers uncacheable and resumed ones as cache bypasses", async () => {
    const tenant = isolatedTenant({ runs: RUNS, pageLimit: 40 });
    const first = await tenant.call(statsPath({}), { env: { STATS_MAX_PAGES: "3" } });
    const body = await json<{ resumeToken: string }>(first);
    expect(first.headers.get("x-cache")).toBe("MISS");
    expect(first.headers.get("cache-control")).toBe("no-store");
    const second = await tenant.call(statsPath({ resumeToken: body.resumeToken }), {
      env: { STATS_MAX_PAGES: "3" },
    });
    expect(second.status).toBe(200);
    expect(second.headers.get("x-cache")).toBe("BYPASS");
  });

  it("is opaque: neither Extend's cursors nor the filters can be read from it", async () => {
    const tenant = isolatedTenant({ runs: RUNS, pageLimit: 40 });
    const token = await partialToken(tenant, { status: "PROCESSED" }, { STATS_MAX_PAGES: "2" });
    const cursor = tenant.fake.listCalls.map((c) => c.url.searchParams.get("nextPageToken")).find(Boolean);
    const decoded = atob(token.replaceAll("-", "+").replaceAll("_", "/"));
    for (const secret of ["PROCESSED", "cursor", "createdAt", TEST_UPSTREAM_KEY, cursor ?? "none"]) {
      expect(token).not.toContain(secret);
      expect(decoded).not.toContain(secret);
    }
  });

  it("stays small whatever the dataset size (the state is a cursor and a tally per walk)", async () => {
    const small = isolatedTenant({ dataset: { size: 2500, seed: 1 }, pageLimit: 50 });
    const a = await partialToken(small, {}, { STATS_MAX_PAGES: "20" });
    const large = isolatedTenant({ dataset: { size: 20000, seed: 1 }, pageLimit: 50 });
    const b = await partialToken(large, {}, { STATS_MAX_PAGES: "20" });
    // Sixteen walks' cursors and tallies, far inside the URL limit, and not growing with the data.
    expect(a.length).toBeLessThan(8000);
    expect(b.length).toBeLessThan(a.length * 1.2);
  });

  it.each([
    ["a flipped character at the start", (t: string) => flip(t, 3)],
    ["a flipped character in the middle", (t: string) => flip(t, Math.floor(t.length / 2))],
    ["a flipped character at the end", (t: string) => flip(t, t.length - 2)],
    ["a truncated token", (t: string) => t.slice(0, -10)],
    ["an appended block", (t: string) => `${t}AAAAAAAAAAAAAAAA`],
    ["a forged token", () => "AQ".padEnd(200, "x")],
    ["a tiny token", () => "abc"],
  ])("refuses %s with a 400 naming resumeToken and no upstream call", async (_, alter) => {
    const tenant = isolatedTenant({ runs: RUNS, pageLimit: 40 });
    const limited = { STATS_MAX_PAGES: "2" };
    const token = await partialToken(tenant, {}, limited);
    const before = tenant.fake.listCalls.length;
    const response = await tenant.call(statsPath({ resumeToken: alter(token) }), { env: limited });
    const body = await json<ErrorBody>(response);
    expect(response.status).toBe(400);
    expect(body.code).toBe("INVALID_REQUEST");
    expect(body.details?.map((d) => d.field)).toEqual(["resumeToken"]);
    expect(tenant.fake.listCalls.length).toBe(before);
  });

  it.each([
    ["another status", { status: "FAILED" }],
    ["no filters at all", {}],
    ["an added filter", { status: "PROCESSED", fileNameContains: "pdf" }],
    ["a since bound", { status: "PROCESSED", since: "2026-01-01T00:00:00Z" }],
  ])("refuses a token used with %s", async (_, otherFilters: Record<string, string>) => {
    const tenant = isolatedTenant({ runs: RUNS, pageLimit: 40 });
    const limited = { STATS_MAX_PAGES: "2" };
    const token = await partialToken(tenant, { status: "PROCESSED" }, limited);
    const before = tenant.fake.listCalls.length;
    const response = await tenant.call(statsPath({ ...otherFilters, resumeToken: token }), { env: limited });
    const body = await json<ErrorBody>(response);
    expect(response.status).toBe(400);
    expect(body.details?.[0]?.field).toBe("resumeToken");
    expect(body.details?.[0]?.message).toMatch(/other filters/);
    expect(tenant.fake.listCalls.length).toBe(before);
  });

  it.each([
    ["STATS_SIGNING_KEY is set after the token was issued", {}, { STATS_SIGNING_KEY: "k".repeat(40) }],
    [
      "STATS_SIGNING_KEY changes",
      { STATS_SIGNING_KEY: "a".repeat(40) },
      { STATS_SIGNING_KEY: "b".repeat(40) },
    ],
    ["the workspace changes", {}, { EXTEND_WORKSPACE_ID: "ws_other" }],
  ])("refuses a token once %s", async (_, before: Partial<Env>, after: Partial<Env>) => {
    const tenant = isolatedTenant({ runs: RUNS, pageLimit: 40 });
    const token = await partialToken(tenant, {}, { STATS_MAX_PAGES: "2", ...before });
    const response = await tenant.call(statsPath({ resumeToken: token }), {
      env: { STATS_MAX_PAGES: "2", ...before, ...after },
    });
    expect(response.status).toBe(400);
    expect((await json<ErrorBody>(response)).details?.[0]?.field).toBe("resumeToken");
  });

  it("accepts a token under the same STATS_SIGNING_KEY", async () => {
    const tenant = isolatedTenant({ runs: RUNS, pageLimit: 40 });
    const signed = { STATS_MAX_PAGES: "2", STATS_SIGNING_KEY: "s".repeat(40) };
    const token = await partialToken(tenant, {}, signed);
    const response = await tenant.call(statsPath({ resumeToken: token }), { env: signed });
    expect(response.status).toBe(200);
  });

  it("refuses a token older than an hour", async () => {
    const tenant = isolatedTenant({ runs: RUNS, pageLimit: 40 });
    const limited = { STATS_MAX_PAGES: "2" };
    const token = await partialToken(tenant, {}, limited);
    vi.useFakeTimers({ toFake: ["Date"] });
    vi.setSystemTime(Date.now() + 61 * 60_000);
    const response = await tenant.call(statsPath({ resumeToken: token }), { env: limited });
    const body = await json<ErrorBody>(response);
    expect(response.status).toBe(400);
    expect(body.details?.[0]?.message).toMatch(/expired/);
  });
});

describe("GET /stats: a scan's age", () => {
  // Time keeps moving after the jump: the tenant's budget counts starts per real second.
  const travel = (ms: number) => {
    vi.useFakeTimers({ toFake: ["Date"], shouldAdvanceTime: true });
    vi.setSystemTime(Date.now() + ms);
  };

  it("expires an hour after the scan started, however often it was resumed", async () => {
    const tenant = isolatedTenant({ runs: RUNS, pageLimit: 40 });
    const limited = { STATS_MAX_PAGES: "2" };
    const first = await partialToken(tenant, {}, limited);
    travel(59 * 60_000);
    const second = await partialToken(tenant, { resumeToken: first }, limited);
    travel(2 * 60_000);
    const response = await tenant.call(statsPath({ resumeToken: second }), { env: limited });
    expect(response.status).toBe(400);
    expect((await json<ErrorBody>(response)).details?.[0]).toMatchObject({
      field: "resumeToken",
      message: expect.stringMatching(/expired/),
    });
  });

  async function finish(tenant: Tenant, token: string, env: Partial<Env>): Promise<void> {
    let next: string | null = token;
    while (next) {
      const { body } = await getStats(tenant, { resumeToken: next }, env);
      next = body.resumeToken;
    }
  }

  it("offers a completed resumed scan to the cache with the age of its oldest page", async () => {
    const tenant = isolatedTenant({ dataset: { size: 400, seed: 3 }, pageLimit: 40 });
    const limited = { STATS_MAX_PAGES: "6" };
    const token = await partialToken(tenant, {}, limited);
    travel(200_000);
    await finish(tenant, token, limited);
    const cached = await tenant.call(statsPath({}), { env: limited });
    expect(cached.status).toBe(200);
    // Its first pages were read 200 s ago: past STATS_TTL_SECONDS (60), within the stale window.
    expect(cached.headers.get("x-cache")).toBe("STALE");
    expect(Number(cached.headers.get("age"))).toBeGreaterThanOrEqual(200);
  });

  it("does not offer it at all once its oldest page is past the stale window", async () => {
    const tenant = isolatedTenant({ dataset: { size: 400, seed: 3 }, pageLimit: 40 });
    const limited = { STATS_MAX_PAGES: "6" };
    const token = await partialToken(tenant, {}, limited);
    travel(400_000);
    await finish(tenant, token, limited);
    const fresh = await tenant.call(statsPath({}), { env: limited });
    expect(fresh.headers.get("x-cache"), await fresh.clone().text()).toBe("MISS");
    await fresh.body?.cancel();
  });
});
