// A scan holds each page as bytes and lets them go (detaches them) once it has folded the page.
// What must still hold: KV keeps every page intact, in the format text-era entries had, and a
// list request that shares the page's load gets the whole page.
import { env } from "cloudflare:workers";
import { http } from "msw";
import { describe, expect, it } from "vitest";
import type { FakeExtend, RecordedRequest } from "../../../fake/extend.ts";
import { sha256Hex } from "../../../src/lib/digest.ts";
import { FAKE_EXTEND_ORIGIN } from "../support/constants.ts";
import { read } from "../support/envelope.ts";
import { network } from "../support/setup.ts";
import { getStats, referenceStats, summary } from "../support/stats.ts";
import { answerWithFake, isolatedTenant, type Tenant } from "../support/tenant.ts";

/** What Extend (the fake) answers to one recorded call, as text. */
async function upstreamText(fake: FakeExtend, call: RecordedRequest): Promise<string> {
  const response = await fake.handle({
    url: call.url.toString(),
    method: "GET",
    headers: new Headers(call.headers),
    signal: new AbortController().signal,
  });
  return response.text();
}

/** The list route's path for the page an upstream call fetched. */
const listPath = (call: RecordedRequest) => `/workflow_runs?${call.url.searchParams}`;

async function listed(tenant: Tenant, path: string) {
  return read(await tenant.call(path));
}

describe("a scan's pages, let go once folded", () => {
  it("are stored intact: the list route serves each from KV, byte for byte, with a text-era entry's metadata", async () => {
    // File names with "é" make the pages' UTF-8 longer than their text: both lengths are exercised.
    const tenant = isolatedTenant({ dataset: { size: 2_500, seed: 8 } });
    const stats = await getStats(tenant, { status: "PROCESSED" });
    expect(summary(stats.body)).toEqual(referenceStats(tenant.fake.runs, { status: "PROCESSED" }));
    const calls = [...tenant.fake.listCalls];
    expect(calls.length).toBeGreaterThan(1);
    const reachedExtend = tenant.calls.length;
    for (const call of calls) {
      const text = await upstreamText(tenant.fake, call);
      const served = await listed(tenant, listPath(call));
      expect(served.headers.get("x-cache")).toBe("HIT");
      expect(served.text).toBe(text);
      // The ETag is the SHA-256 of the page's text, as when pages were stored as text.
      expect(served.headers.get("etag")).toBe(`W/"${(await sha256Hex(text)).slice(0, 32)}"`);
    }
    const stored = await env.PAGE_CACHE.list();
    const metadata = stored.keys.map((k) => k.metadata as { v: number; n: number; tag: string });
    const lengths = await Promise.all(
      calls.map(async (call) => (await upstreamText(tenant.fake, call)).length),
    );
    for (const length of lengths) expect(metadata.map((m) => m.n)).toContain(length);
    expect(metadata.every((m) => m.v === 1)).toBe(true);
    expect(tenant.calls).toHaveLength(reachedExtend);
  });

  it("serves an entry stored as text by the earlier format", async () => {
    const tenant = isolatedTenant({ dataset: { size: 40, seed: 9 } });
    const path = "/workflow_runs?maxPageSize=7&fileNameContains=sum";
    const miss = await listed(tenant, path);
    expect(miss.headers.get("x-cache")).toBe("MISS");
    // Rewrite the entry as the text-era cache wrote it: the text itself, its UTF-16 length.
    const { keys } = await env.PAGE_CACHE.list();
    const key = keys.find((k) => (k.metadata as { n?: number } | null)?.n === miss.text.length);
    if (!key) throw new Error("the page's entry is not in KV");
    const at = (key.metadata as { at: number }).at;
    const tag = (await sha256Hex(miss.text)).slice(0, 32);
    await env.PAGE_CACHE.put(key.name, miss.text, {
      expirationTtl: 600,
      metadata: { v: 1, at, tag, n: miss.text.length },
    });
    const hit = await listed(tenant, path);
    expect(hit.headers.get("x-cache")).toBe("HIT");
    expect(hit.text).toBe(miss.text);
    expect(hit.headers.get("etag")).toBe(miss.headers.get("etag"));
    expect(miss.text).toContain("é");
    expect(tenant.fake.listCalls).toHaveLength(1);
  });

  it("reach a list request that joined the scan's load whole, though the scan let them go", async () => {
    const tenant = isolatedTenant({ dataset: { size: 60, seed: 10 } });
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let arrived: () => void = () => undefined;
    const first = new Promise<void>((resolve) => {
      arrived = resolve;
    });
    network.use(
      http.get(`${FAKE_EXTEND_ORIGIN}/workflow_runs`, async ({ request }) => {
        arrived();
        await gate;
        return answerWithFake(tenant.fake, request);
      }),
    );
    // One status, few runs: the scan reads one page, newest first.
    const scan = getStats(tenant, { status: "FAILED" });
    await first;
    const path = `/workflow_runs?${new URLSearchParams({
      status: "FAILED",
      sortBy: "createdAt",
      sortDir: "desc",
      maxPageSize: "1000",
    })}`;
    const joined = tenant.call(path);
    // The list request reaches the cache's shared load while the page is still on its way.
    await new Promise((resolve) => setTimeout(resolve, 200));
    release();
    const [stats, list] = await Promise.all([scan, joined.then(read)]);
    expect(summary(stats.body)).toEqual(referenceStats(tenant.fake.runs, { status: "FAILED" }));
    expect(list.status).toBe(200);
    expect(list.headers.get("x-cache")).toBe("MISS");
    const [only] = tenant.fake.listCalls;
    expect(tenant.fake.listCalls).toHaveLength(1);
    expect(list.text).toBe(await upstreamText(tenant.fake, only as RecordedRequest));
    expect(list.text.length).toBeGreaterThan(1_000);
  });

  it("are folded by every scan that shares their load, though each lets them go", async () => {
    // `until` is applied by the scan, not by Extend: two scans with different bounds past every
    // run walk the same pages oldest first, in step, and share each page's load.
    const tenant = isolatedTenant({
      dataset: { size: 1_500, seed: 12 },
      pageLimit: 100,
      latency: { baseMs: 30, perRunMs: 0 },
    });
    const bounds = ["2100-01-01T00:00:00.000Z", "2200-01-01T00:00:00.000Z"];
    const answers = await Promise.all(
      bounds.map((until) => getStats(tenant, { status: "PROCESSED", until })),
    );
    const expected = referenceStats(tenant.fake.runs, { status: "PROCESSED" });
    for (const { body } of answers) expect(summary(body)).toEqual(expected);
    const pages = answers.reduce((sum, { body }) => sum + body.pagesFetched, 0);
    // Shared: one upstream call a page for both scans.
    expect(tenant.fake.listCalls.length).toBeLessThan(pages);
  });
});
