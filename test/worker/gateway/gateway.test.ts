import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { http } from "msw";
import { describe, expect, it, vi } from "vitest";
import { busiestWindow } from "../../../fake/windows.ts";
import { captureConsole, requestLines } from "../support/console.ts";
import { FAKE_EXTEND_ORIGIN } from "../support/constants.ts";
import { json } from "../support/proxy.ts";
import { network } from "../support/setup.ts";
import {
  answerWithFake,
  freshClientIp,
  isolatedTenant,
  lateFirstCalls,
  type Tenant,
} from "../support/tenant.ts";

type Worker = { fetch(request: Request, env: Env, ctx: ExecutionContext): Promise<Response> };

/**
 * A second copy of the Worker's modules, with module state of its own: what another isolate of
 * the same Worker is. The tenant object is the same one (one namespace), so whatever must hold
 * across isolates has to live there, not in module scope.
 */
async function anotherIsolate(): Promise<Worker> {
  vi.resetModules();
  const module = (await import("../../../src/index.ts")) as { default: Worker };
  return module.default;
}

async function callThrough(worker: Worker, path: string, overrides: Partial<Env>, ip = freshClientIp()) {
  const ctx = createExecutionContext();
  const response = await worker.fetch(
    new Request(`https://proxy.test${path}`, { headers: { "cf-connecting-ip": ip } }),
    { ...env, ...overrides } as Env,
    ctx,
  );
  await waitOnExecutionContext(ctx);
  return response;
}

/**
 * Calls leave the object a window apart but may reach the fake late on a loaded machine; calls
 * let out in different seconds only fit into 750 ms when one was held up more than 250 ms, while
 * an ungated burst lands within a few ms.
 */
const ARRIVAL_WINDOW_MS = 750;

const distinct = (i: number) =>
  `/workflow_runs?maxPageSize=5&fileNameContains=${encodeURIComponent(`f${i}-${crypto.randomUUID()}`)}`;

/** `n` distinct list misses at once, each of which must be answered 200. */
async function servedMisses(tenant: Tenant, n: number, settings: Partial<Env>): Promise<void> {
  const answers = await Promise.all(
    Array.from({ length: n }, (_, i) => tenant.call(distinct(i), { env: settings })),
  );
  for (const answer of answers) {
    expect(answer.status).toBe(200);
    await answer.body?.cancel();
  }
}

describe("the tenant gateway", () => {
  it("holds distinct misses and a /stats scan, together, to UPSTREAM_MAX_RPS; each answers 200 or 503 with Retry-After", async () => {
    const tenant = isolatedTenant({ dataset: { size: 300, seed: 3 }, pageLimit: 25 });
    const settings = { UPSTREAM_MAX_RPS: "4", STATS_MAX_PAGES: "8" };
    const scan = tenant.call("/stats", { env: settings });
    const misses = Array.from({ length: 16 }, (_, i) => tenant.call(distinct(i), { env: settings }));
    const answers = await Promise.all([scan, ...misses]);
    for (const answer of answers) {
      if (answer.status === 503) {
        expect((await json<{ code: string }>(answer)).code).toBe("UPSTREAM_RATE_LIMITED");
        expect(Number(answer.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
      } else {
        expect(answer.status).toBe(200);
        await answer.body?.cancel();
      }
    }
    expect(answers.filter((a) => a.status === 200).length).toBeGreaterThan(4);
    expect(
      busiestWindow(
        tenant.fake.listCalls.map((c) => c.at),
        ARRIVAL_WINDOW_MS,
      ),
    ).toBeLessThanOrEqual(4);
  }, 30_000);

  it("lets a fresh tenant's calls start at an UPSTREAM_MAX_RPS above the default at once", async () => {
    const tenant = isolatedTenant({ dataset: { size: 50, seed: 5 } });
    const settings = { UPSTREAM_MAX_RPS: "30" };
    await servedMisses(tenant, 16, settings);
    // Sixteen callers, 30 starts a second: all sixteen fit into the first second.
    expect(tenant.fake.listCalls).toHaveLength(16);
    expect(busiestWindow(tenant.fake.listCalls.map((c) => c.at))).toBe(16);
  });

  it("keeps UPSTREAM_MAX_RPS in every second as Extend counts arrivals, when the first calls reach it late", async () => {
    const tenant = isolatedTenant({ dataset: { size: 40, seed: 5 } });
    const settings = { UPSTREAM_MAX_RPS: "4" };
    // The first window's calls reach Extend 60 ms after they reach this handler; the next
    // window's at once. The arrival is counted from the handler's own clock, not from when a
    // 60 ms timer happens to fire: on a loaded machine that comes far later than 60 ms, and then
    // the test would measure the machine, not the guard.
    const arrivals: number[] = [];
    network.use(
      http.get(`${FAKE_EXTEND_ORIGIN}/workflow_runs`, async ({ request }) => {
        const late = arrivals.length < 4;
        arrivals.push(Date.now() + (late ? 60 : 0));
        if (late) await new Promise((resolve) => setTimeout(resolve, 60));
        return answerWithFake(tenant.fake, request);
      }),
    );
    await servedMisses(tenant, 8, settings);
    expect(arrivals).toHaveLength(8);
    expect(busiestWindow(arrivals, 1_000)).toBeLessThanOrEqual(4);
  }, 30_000);

  it("keeps UPSTREAM_MAX_RPS at Extend's arrivals when a busy isolate sends the object's calls late", async () => {
    const tenant = isolatedTenant({ dataset: { size: 40, seed: 9 } });
    const settings = { UPSTREAM_MAX_RPS: "4" };
    // The first window's calls reach Extend long after their grant; the next window's go out at once.
    network.use(lateFirstCalls(tenant.fake, 4));
    await servedMisses(tenant, 8, settings);
    const arrivals = tenant.fake.listCalls.map((c) => c.at);
    expect(arrivals).toHaveLength(8);
    expect(busiestWindow(arrivals, 1_000)).toBeLessThanOrEqual(4);
  }, 30_000);

  it("serves a list miss issued during a long scan within about one slot", async () => {
    const tenant = isolatedTenant({ dataset: { size: 2000, seed: 4 }, pageLimit: 20 });
    const settings = { UPSTREAM_MAX_RPS: "4", STATS_MAX_PAGES: "16" };
    const scan = tenant.call("/stats", { env: settings });
    // Let the scan fill the queue with bulk pages first.
    await new Promise((resolve) => setTimeout(resolve, 1_200));
    const before = tenant.fake.listCalls.length;
    expect(before, "the scan is under way").toBeGreaterThan(0);
    const path = distinct(0);
    const miss = await tenant.call(path, { env: settings });
    expect(miss.status).toBe(200);
    // The miss went ahead of the scan's queued pages: at most one window's worth of calls
    // (4) reached Extend between the miss being asked and its own call.
    const own = tenant.fake.listCalls.findIndex((c) => c.url.searchParams.get("maxPageSize") === "5");
    expect(own).toBeGreaterThanOrEqual(before);
    expect(own - before).toBeLessThanOrEqual(4);
    await (await scan).body?.cancel();
  }, 40_000);

  it("keeps one budget for every isolate: two copies of the Worker share UPSTREAM_MAX_RPS", async () => {
    const tenant = isolatedTenant({ dataset: { size: 50, seed: 5 } });
    const settings = { ...tenant.env, UPSTREAM_MAX_RPS: "3" };
    const first = (await import("../../../src/index.ts")).default as Worker;
    const second = await anotherIsolate();
    const answers = await Promise.all(
      Array.from({ length: 12 }, (_, i) => callThrough(i % 2 ? first : second, distinct(i), settings)),
    );
    for (const answer of answers) await answer.body?.cancel();
    // Each copy alone would let three through in the first second; together they still get three.
    expect(
      busiestWindow(
        tenant.fake.listCalls.map((c) => c.at),
        ARRIVAL_WINDOW_MS,
      ),
    ).toBeLessThanOrEqual(3);
    expect(tenant.fake.listCalls.length).toBeGreaterThan(3);
  }, 30_000);

  it("makes one upstream call for concurrent identical misses, also from two isolates", async () => {
    const tenant = isolatedTenant({
      dataset: { size: 50, seed: 6 },
      latency: { baseMs: 300, perRunMs: 0 },
    });
    const first = (await import("../../../src/index.ts")).default as Worker;
    const second = await anotherIsolate();
    const path = distinct(1);
    const answers = await Promise.all(
      Array.from({ length: 10 }, (_, i) => callThrough(i % 2 ? first : second, path, tenant.env)),
    );
    const bodies = await Promise.all(answers.map((a) => a.text()));
    expect(answers.map((a) => a.status)).toEqual(Array(10).fill(200));
    expect(new Set(bodies).size).toBe(1);
    expect(tenant.fake.listCalls).toHaveLength(1);
  });

  it("pauses the tenant once for a 429 burst, answers with the real remaining pause, then resumes", async () => {
    const tenant = isolatedTenant({ dataset: { size: 50, seed: 7 } });
    const settings = { UPSTREAM_MAX_RPS: "8" };
    tenant.fake.inject({ type: "rate-limit", retryAfter: "3" }, 4);
    const burst = await Promise.all(
      Array.from({ length: 4 }, (_, i) => tenant.call(distinct(i), { env: settings })),
    );
    expect(burst.map((a) => a.status)).toEqual([503, 503, 503, 503]);
    const callsAfterBurst = tenant.fake.listCalls.length;
    const started = Date.now();
    const during = await tenant.call(distinct(9), {
      env: { ...settings, UPSTREAM_TIMEOUT_MS: "500", UPSTREAM_DEADLINE_MS: "1000" },
    });
    expect(during.status).toBe(503);
    const retryAfter = Number(during.headers.get("retry-after"));
    // Four refusals paused the tenant once, for Extend's 3 s: what is left of it, not 3 × 4 s.
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(3);
    expect(Date.now() - started, "refused at once, not after waiting").toBeLessThan(900);
    expect(tenant.fake.listCalls.length).toBe(callsAfterBurst);
    await new Promise((resolve) => setTimeout(resolve, retryAfter * 1000 + 100));
    const after = await tenant.call(distinct(10), {
      env: settings,
    });
    expect(after.status).toBe(200);
  }, 30_000);

  it.each([
    [
      "throws",
      {
        getByName: () => ({
          list: () => Promise.reject(new Error("Durable Object reset because its code was updated.")),
        }),
      },
    ],
    [
      "is overloaded",
      {
        getByName: () => ({
          list: () =>
            Promise.reject(
              Object.assign(new Error("Durable Object is overloaded. Too many requests queued."), {
                overloaded: true,
              }),
            ),
        }),
      },
    ],
    [
      "cannot be reached",
      {
        getByName: () => {
          throw new Error("Network connection lost.");
        },
      },
    ],
  ])(
    "serves directly, under a per-isolate budget, when the object %s, and logs it",
    async (_name, broken) => {
      const tenant = isolatedTenant({ dataset: { size: 50, seed: 8 } });
      const { result, lines } = await captureConsole(() =>
        tenant.call("/workflow_runs?maxPageSize=3", {
          env: { TENANT: broken as unknown as Env["TENANT"] },
        }),
      );
      expect(result.status).toBe(200);
      expect((await json<{ data: unknown[] }>(result)).data).toHaveLength(3);
      expect(tenant.fake.listCalls).toHaveLength(1);
      const [record] = requestLines(lines);
      expect(record?.warnings).toEqual(["gateway unavailable; served directly"]);
    },
  );

  it("serves directly, and logs it, when the object never answers", async () => {
    const tenant = isolatedTenant({ dataset: { size: 50, seed: 8 } });
    const hung = { getByName: () => ({ list: () => new Promise(() => undefined) }) };
    const settings = { UPSTREAM_TIMEOUT_MS: "300", UPSTREAM_DEADLINE_MS: "600" };
    const answer = captureConsole(() =>
      tenant.call("/workflow_runs?maxPageSize=3", {
        env: { ...settings, TENANT: hung as unknown as Env["TENANT"] },
      }),
    );
    const outcome = await Promise.race([
      answer,
      new Promise<"hangs">((resolve) => setTimeout(() => resolve("hangs"), 12_000)),
    ]);
    if (outcome === "hangs") throw new Error("the request waited on the object past its deadline");
    expect(outcome.result.status).toBe(200);
    expect((await json<{ data: unknown[] }>(outcome.result)).data).toHaveLength(3);
    expect(tenant.fake.listCalls).toHaveLength(1);
    expect(requestLines(outcome.lines)[0]?.warnings).toEqual(["gateway unavailable; served directly"]);
  }, 20_000);

  it("serves directly under the per-isolate budget, and logs it, when TENANT is not bound", async () => {
    const tenant = isolatedTenant({ dataset: { size: 50, seed: 8 } });
    const unbound = { UPSTREAM_MAX_RPS: "3", TENANT: undefined as unknown as Env["TENANT"] };
    const { result, lines } = await captureConsole(() =>
      Promise.all(Array.from({ length: 6 }, (_, i) => tenant.call(distinct(i), { env: unbound }))),
    );
    for (const answer of result) {
      expect(answer.status).toBe(200);
      await answer.body?.cancel();
    }
    expect(busiestWindow(tenant.fake.listCalls.map((c) => c.at))).toBeLessThanOrEqual(3);
    const records = requestLines(lines);
    expect(records).toHaveLength(6);
    for (const record of records) expect(record.warnings).toEqual(["gateway unavailable; served directly"]);
  }, 20_000);
});
