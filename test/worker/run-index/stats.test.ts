// GET /stats with the run index on: scans while the index is built, then answers from it; the
// alarm that drives it, the cron that watches the alarm, and RUN_INDEX=off.
import { createScheduledController, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import { type FakeRun, generateRuns } from "../../../fake/extend.ts";
import worker from "../../../src/index.ts";
import { hasIndex } from "../../../src/run-index/schema.ts";
import { expectErrorEnvelope, read } from "../support/envelope.ts";
import { callProxy } from "../support/proxy.ts";
import { type IndexFake, settle, stopAlarm, syncState, useIndexFake } from "../support/run-index.ts";
import { getStats, type ReferenceFilters, referenceStats, summary } from "../support/stats.ts";

async function built(options: Parameters<typeof useIndexFake>[0] = {}, settings: Partial<Env> = {}) {
  const index = await useIndexFake(options, settings);
  await getStats(index, {});
  await settle(index.stub);
  return index;
}

/** Runs one statement in the index's object, beneath the sync: to age its state, or forget a fact. */
function execInIndex(index: IndexFake, statement: string): Promise<void> {
  return runInDurableObject(index.stub, (_i, state) => {
    state.storage.sql.exec(statement);
  });
}

function alarmOf(index: IndexFake): Promise<number | null> {
  return runInDurableObject(index.stub, (_i, state) => state.storage.getAlarm());
}

/** The Worker's scheduled handler, as the Cron Trigger calls it. */
async function cron(overrides: Partial<Env>): Promise<void> {
  await worker.scheduled(createScheduledController({ cron: "*/5 * * * *" }), { ...env, ...overrides } as Env);
}

/** File names LIKE would misread, case and non-ASCII, and one longer than LIKE's 50-byte limit. */
const LONG_NAME = `quarterly-report-${"ab".repeat(28)}-final.pdf`;
const NAMES = ["100% done_v2.pdf", "back\\slash [1].pdf", "Rechnung MÄRZ.pdf", "請求書 第3期.pdf", LONG_NAME];

function runsWithNames(): FakeRun[] {
  return generateRuns({ size: 60, seed: 31 }).map((run, i) => ({
    ...run,
    files: run.files.map((file) => ({ ...file, name: NAMES[i % NAMES.length] ?? file.name })),
  }));
}

describe("GET /stats with the run index", () => {
  it("scans while the index is built, saying how far it is; then answers from the index", async () => {
    const index = await useIndexFake({ dataset: { size: 250, seed: 4 } });
    const { body: first } = await getStats(index, {});
    expect(first).toMatchObject({ source: "scan", asOf: null, lagSeconds: null, complete: true });
    expect(first.build).toMatchObject({ state: "building", walksDone: 0, runsIndexed: 0 });
    expect(summary(first)).toEqual(referenceStats(index.fake.runs));
    // Started on first use: from here only the object's alarm advances it (workerd fires it, or
    // settle runs it), no further request.
    await settle(index.stub);
    // Every sync call went through the tenant's gateway, which took this tenant's rate from them.
    expect((await index.stub.gatewayState()).maxPerSecond).toBe(1000);
    const calls = index.calls.length;
    const { response, body } = await getStats(index, {});
    expect(body.source).toBe("index");
    expect(body.build).toBeUndefined();
    expect(summary(body)).toEqual(referenceStats(index.fake.runs));
    expect(body.lagSeconds).toBeGreaterThanOrEqual(0);
    expect(body.asOf).toBe(
      new Date(Date.parse(body.computedAt) - (body.lagSeconds ?? 0) * 1000).toISOString(),
    );
    expect(response.headers.get("x-cache")).toBe("BYPASS");
    expect(response.headers.get("last-modified")).toBe(new Date(body.asOf ?? "").toUTCString());
    expect(index.calls.length).toBe(calls);
    await stopAlarm(index.stub);
  });

  it("builds under the smallest upstream budget: a call the budget puts off stops no other", {
    timeout: 90_000,
  }, async () => {
    // UPSTREAM_MAX_RPS=1 starts one call a window; the sync queues six at once, and the budget
    // refuses the sixth at once (its turn is past the 5 s wait). The five before it must land.
    const index = await useIndexFake({ dataset: { size: 40, seed: 6 } }, { UPSTREAM_MAX_RPS: "1" });
    const { body: first } = await getStats(index, { status: "FAILED" });
    expect(first.build).toMatchObject({ state: "building", pagesFetched: 0 });
    // workerd fires the object's alarm itself; only its progress is awaited, never a duration.
    await vi.waitFor(
      async () => expect((await getStats(index, { status: "FAILED" })).body.source).toBe("index"),
      { timeout: 50_000, interval: 1_000 },
    );
    const { body } = await getStats(index, {});
    expect(summary(body)).toEqual(referenceStats(index.fake.runs));
    // Nothing of this tenant's sync may still be under way when the next test starts.
    await settle(index.stub);
    await stopAlarm(index.stub);
  });

  it("answers every filter from the index as a fold over Extend's runs, with no upstream call", async () => {
    const runs = runsWithNames();
    const index = await built({ runs });
    const middle = runs[30] as FakeRun;
    const filters: ReferenceFilters[] = [
      { status: "PROCESSED" },
      { workflowId: middle.workflow.id },
      { workflowId: middle.workflow.id, status: middle.status },
      { batchId: runs.find((r) => r.batchId)?.batchId ?? "batch_none" },
      { since: middle.createdAt },
      { until: middle.createdAt },
      { since: runs[10]?.createdAt, until: middle.createdAt, status: "PROCESSED" },
      // LIKE's wildcards and escape are plain characters here; case folds; beyond 50 bytes works.
      ...[
        "%",
        "_",
        "\\",
        "100%",
        "e_v",
        "[1]",
        "märz",
        "請求書",
        LONG_NAME,
        LONG_NAME.toUpperCase(),
        "zz%",
      ].map((fileNameContains) => ({ fileNameContains })),
    ];
    const calls = index.calls.length;
    for (const f of filters) {
      const { body } = await getStats(index, f as Record<string, string>);
      expect(body.source, JSON.stringify(f)).toBe("index");
      expect(summary(body), JSON.stringify(f)).toEqual(referenceStats(index.fake.runs, f));
    }
    expect(LONG_NAME.length).toBeGreaterThan(70);
    expect(referenceStats(runs, { fileNameContains: LONG_NAME }).total).toBeGreaterThan(0);
    expect(index.calls.length).toBe(calls);
    await stopAlarm(index.stub);
  });

  for (const fileNameCase of ["insensitive", "sensitive"] as const) {
    it(`matches fileNameContains as Extend does (${fileNameCase} to case), from the index with no call`, async () => {
      const runs = runsWithNames();
      const index = await built({ runs, fileNameCase });
      const calls = index.calls.length;
      const needles = ["märz", "MÄRZ", "Rechnung", "rechnung", "RECHNUNG MÄRZ", "PDF", "pdf", "V2", "Final"];
      needles.push(LONG_NAME.toUpperCase(), LONG_NAME);
      for (const fileNameContains of needles) {
        const { body } = await getStats(index, { fileNameContains });
        expect(body.source, fileNameContains).toBe("index");
        const expected = referenceStats(index.fake.runs, { fileNameContains, fileNameCase });
        expect(summary(body), fileNameContains).toEqual(expected);
      }
      // The two ways of matching differ on these names: the test can tell them apart.
      expect(referenceStats(runs, { fileNameContains: "märz" }).total).not.toBe(
        referenceStats(runs, { fileNameContains: "märz", fileNameCase: "sensitive" }).total,
      );
      expect(index.calls.length).toBe(calls);
    });
  }

  it("asks Extend how it matches file names when a name to ask with comes in after the build", async () => {
    const caseless = generateRuns({ size: 20, seed: 8 }).map((run) => ({
      ...run,
      files: run.files.map((file) => ({ ...file, name: "請求書 第3期-2026.001" })),
    }));
    const index = await built({ runs: caseless, fileNameCase: "sensitive" });
    const probes = () => index.fake.requests.filter((r) => r.url.searchParams.has("fileNameContains"));
    // No name with a letter to ask with: nothing asked, and no letter of a filter can match.
    expect(probes()).toHaveLength(0);
    const named = generateRuns({ size: 3, seed: 9 }).map((run) => ({
      ...run,
      id: `${run.id}_named`,
      files: run.files.map((file) => ({ ...file, name: "Invoice-Q3.PDF" })),
    }));
    for (const run of named) index.fake.addRun(run);
    const { body: fresh } = await getStats(index, { maxLagSeconds: "0" });
    expect(fresh.total).toBe(23);
    for (const fileNameContains of ["invoice", "Invoice", "PDF", "pdf"]) {
      const { body } = await getStats(index, { fileNameContains });
      expect(body.source, fileNameContains).toBe("index");
      expect(summary(body), fileNameContains).toEqual(
        referenceStats(index.fake.runs, { fileNameContains, fileNameCase: "sensitive" }),
      );
    }
    // A sensitive Extend takes two lists to tell: the swapped name finds nothing, the name itself its run.
    expect(probes()).toHaveLength(2);
    await stopAlarm(index.stub);
  });

  it("scans a file name filter while Extend cannot be asked how it matches; the sync goes on", async () => {
    const runs = runsWithNames();
    const index = await built({ runs, fileNameCase: "sensitive" });
    await execInIndex(index, `DELETE FROM run_meta WHERE key = 'file_name_match'`);
    // The probe lists within one workflow; the scan below lists by status, unfailed.
    const probe = (url: URL) =>
      url.searchParams.has("fileNameContains") && url.searchParams.has("workflowId");
    index.fake.inject({ type: "status", status: 503 }, 20, probe);
    const { body } = await getStats(index, { fileNameContains: "MÄRZ" });
    expect(body.source).toBe("scan");
    expect(body.build).toBeUndefined();
    expect(summary(body)).toEqual(
      referenceStats(index.fake.runs, { fileNameContains: "MÄRZ", fileNameCase: "sensitive" }),
    );
    const state = await syncState(index.stub);
    expect(state.errorCount).toBe(0);
    await stopAlarm(index.stub);
  });

  it("counts runs of unusual shapes exactly as the scan does, for every filter", async () => {
    const base = generateRuns({ size: 30, seed: 17 });
    const shapes: Record<string, unknown>[] = [
      { usage: { credits: 0.1 } },
      { usage: { credits: "2.5", totalCredits: "3" } },
      { usage: {} },
      { usage: { credits: null, totalCredits: 4 } },
      { usage: { credits: 1e-7, totalCredits: 2e-7 } },
      { usage: { credits: 3, totalCredits: null } },
      { usage: { credits: 5_000_000_000.25, totalCredits: 7_500_000_000_000.5 } },
      { usage: undefined },
      { status: "ARCHIVED" },
      { batchId: undefined },
      { createdAt: "2026-10-30T12:00:00+02:00", updatedAt: "2026-10-31T09:30:00.250+02:00" },
      { createdAt: "2026-10-30T10:00:00Z", updatedAt: "2026-10-31T10:00:00Z" },
      { createdAt: "2026-10-30T10:00:00.123456Z" },
    ];
    const runs = base.map((run, i) => {
      const shaped: Record<string, unknown> = { ...run, ...shapes[i % shapes.length] };
      for (const [key, value] of Object.entries(shaped)) if (value === undefined) delete shaped[key];
      return shaped as unknown as FakeRun;
    });
    const index = await built({ runs });
    const filters: Record<string, string>[] = [
      {},
      { status: "PROCESSED" },
      { batchId: runs.find((r) => r.batchId)?.batchId ?? "batch_none" },
      { since: "2026-10-30T10:00:00.123Z" },
      { until: "2026-10-30T10:00:00.123Z" },
      { since: "2026-10-30T10:00:00Z", until: "2026-10-30T10:00:00Z" },
    ];
    for (const f of filters) {
      const { body } = await getStats(index, f);
      const { body: scanned } = await getStats(index, f, { RUN_INDEX: "off" });
      expect(body.source, JSON.stringify(f)).toBe("index");
      expect(summary(body), JSON.stringify(f)).toEqual(summary(scanned));
    }
    await stopAlarm(index.stub);
  });

  it("keeps resumeToken working: a resumed scan stays a scan", async () => {
    const index = await useIndexFake({ dataset: { size: 250, seed: 4 } }, { STATS_MAX_PAGES: "1" });
    const { body: first } = await getStats(index, {});
    expect(first).toMatchObject({ source: "scan", complete: false });
    await settle(index.stub);
    let body = first;
    while (!body.complete) {
      body = (await getStats(index, { resumeToken: body.resumeToken ?? "" })).body;
      expect(body.source).toBe("scan");
    }
    expect(summary(body)).toEqual(referenceStats(index.fake.runs));
    await stopAlarm(index.stub);
  });

  it("syncs first when older than maxLagSeconds", async () => {
    const index = await built({ dataset: { size: 80, seed: 2 } });
    await stopAlarm(index.stub);
    const run = index.fake.runs[3] as FakeRun;
    index.fake.updateRun(run.id, { status: "CANCELLED" });
    await execInIndex(index, `UPDATE run_sync SET as_of = as_of - 120000`);
    const { body: stale } = await getStats(index, {});
    expect(stale.lagSeconds).toBeGreaterThanOrEqual(120);
    const { body } = await getStats(index, { maxLagSeconds: "60" });
    expect(body.source).toBe("index");
    expect(body.lagSeconds).toBeLessThanOrEqual(60);
    expect(summary(body)).toEqual(referenceStats(index.fake.runs));
    await stopAlarm(index.stub);
  });

  it("with maxLagSeconds=0 counts a change made just before the request", async () => {
    const index = await built({ dataset: { size: 50, seed: 6 } });
    await stopAlarm(index.stub);
    const run = index.fake.runs.find((r) => r.status !== "FAILED") as FakeRun;
    index.fake.updateRun(run.id, { status: "FAILED" });
    const { body: cached } = await getStats(index, {});
    expect(summary(cached)).not.toEqual(referenceStats(index.fake.runs));
    const { body } = await getStats(index, { maxLagSeconds: "0" });
    expect(body.source).toBe("index");
    expect(summary(body)).toEqual(referenceStats(index.fake.runs));
    await stopAlarm(index.stub);
  });

  it("keeps counting changes after Extend lists a run as updated ahead of this clock", async () => {
    const runs = generateRuns({ size: 40, seed: 12 });
    const [first, ...rest] = runs as [FakeRun, ...FakeRun[]];
    const ahead = { ...first, updatedAt: new Date(Date.now() + 3_600_000).toISOString() };
    const index = await built({ runs: [ahead, ...rest] });
    await stopAlarm(index.stub);
    const run = index.fake.runs.find((r) => r.id !== ahead.id && r.status !== "FAILED") as FakeRun;
    index.fake.updateRun(run.id, { status: "FAILED" });
    const { body } = await getStats(index, { maxLagSeconds: "0" });
    expect(body.source).toBe("index");
    expect(summary(body)).toEqual(referenceStats(index.fake.runs));
    await stopAlarm(index.stub);
  });

  it("stops counting a run once Extend lists it with a status outside the eight", async () => {
    const index = await built({ dataset: { size: 40, seed: 13 } });
    await stopAlarm(index.stub);
    const run = index.fake.runs.find((r) => r.status === "PROCESSED") as FakeRun;
    index.fake.updateRun(run.id, { status: "ARCHIVED" as FakeRun["status"] });
    const { body } = await getStats(index, { maxLagSeconds: "0" });
    expect(body.source).toBe("index");
    const counted = index.fake.runs.filter((r) => r.id !== run.id);
    expect(summary(body)).toEqual(referenceStats(counted));
    const { body: processed } = await getStats(index, { status: "PROCESSED" });
    expect(summary(processed)).toEqual(referenceStats(counted, { status: "PROCESSED" }));
    await stopAlarm(index.stub);
  });

  it("answers 503 with Retry-After when it cannot catch up in time", async () => {
    const index = await built(
      { dataset: { size: 40, seed: 2 } },
      { UPSTREAM_TIMEOUT_MS: "200", UPSTREAM_DEADLINE_MS: "400" },
    );
    await stopAlarm(index.stub);
    await execInIndex(index, `UPDATE run_sync SET as_of = as_of - 120000`);
    index.fake.inject({ type: "status", status: 503 }, 1_000);
    const response = await read(await callProxy("/stats?maxLagSeconds=30", { env: index.env }));
    expectErrorEnvelope(response, { status: 503, code: "INDEX_LAGGING", retryable: true });
    // Not the sync's own back-off (30 s and doubling): the next request tries to catch up again.
    expect(Number(response.headers.get("retry-after"))).toBe(5);
    index.fake.clearFaults();
    await stopAlarm(index.stub);
  });

  it("answers 503 with Extend's own Retry-After when Extend asked the sync to wait longer", async () => {
    const index = await built({ dataset: { size: 40, seed: 2 } });
    await stopAlarm(index.stub);
    await execInIndex(index, `UPDATE run_sync SET as_of = as_of - 120000`);
    index.fake.inject({ type: "rate-limit", retryAfter: "40" }, 1_000);
    const response = await read(await callProxy("/stats?maxLagSeconds=30", { env: index.env }));
    expectErrorEnvelope(response, { status: 503, code: "INDEX_LAGGING", retryable: true });
    const retryAfter = Number(response.headers.get("retry-after"));
    expect(retryAfter).toBeGreaterThanOrEqual(38);
    expect(retryAfter).toBeLessThanOrEqual(40);
    index.fake.clearFaults();
    await stopAlarm(index.stub);
  });

  it("answers 503 within its catch-up budget while Extend hangs, whatever the upstream timeout", async () => {
    let release = () => {};
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    // The fake's hang waits for the test, not for ten minutes: nothing outlives the test.
    const sleep = (_ms: number, signal: AbortSignal) =>
      new Promise<void>((resolve, reject) => {
        void released.then(resolve);
        signal.addEventListener("abort", () => reject(signal.reason), { once: true });
      });
    const index = await built(
      { dataset: { size: 40, seed: 2 }, sleep },
      { UPSTREAM_TIMEOUT_MS: "120000", UPSTREAM_DEADLINE_MS: "120000" },
    );
    await stopAlarm(index.stub);
    await execInIndex(index, `UPDATE run_sync SET as_of = as_of - 120000`);
    index.fake.inject({ type: "hang" }, 1);
    const response = await read(await callProxy("/stats?maxLagSeconds=30", { env: index.env }));
    expectErrorEnvelope(response, { status: 503, code: "INDEX_LAGGING", retryable: true });
    expect(Number(response.headers.get("retry-after"))).toBeGreaterThan(0);
    release();
    await settle(index.stub);
    await stopAlarm(index.stub);
  });

  it.each([
    ["not a number", "soon"],
    ["negative", "-1"],
    ["more than a day", "86401"],
    ["with a sign", "+5"],
  ])("refuses a maxLagSeconds that is %s, naming it", async (_name, value) => {
    const index = await useIndexFake();
    const response = await read(
      await callProxy(`/stats?maxLagSeconds=${encodeURIComponent(value)}`, { env: index.env }),
    );
    const body = expectErrorEnvelope(response, { status: 400, code: "INVALID_REQUEST" });
    expect(body.details?.map((d) => d.field)).toEqual(["maxLagSeconds"]);
    expect(index.calls).toEqual([]);
  });

  it("with RUN_INDEX=off scans and keeps no index in the tenant object", async () => {
    const index = await useIndexFake({ dataset: { size: 60, seed: 5 } }, { RUN_INDEX: "off" });
    const { body } = await getStats(index, {});
    expect(body).toMatchObject({ source: "scan", asOf: null, lagSeconds: null });
    expect(body.build).toBeUndefined();
    expect(summary(body)).toEqual(referenceStats(index.fake.runs));
    // The scan's pages went through the object's gateway; the object holds no index and no alarm.
    expect(await runInDurableObject(index.stub, (_i, state) => hasIndex(state.storage.sql))).toBe(false);
    expect(await alarmOf(index)).toBeNull();
  });
});

describe("alarm and cron", () => {
  it("keeps syncing on its alarm: a change in Extend shows after the next head walk", async () => {
    const index = await built({ dataset: { size: 60, seed: 9 } }, { INDEX_SYNC_SECONDS: "5" });
    const alarm = await alarmOf(index);
    const { asOf } = await syncState(index.stub);
    expect(alarm).toBe((asOf ?? 0) + 5_000);
    const run = index.fake.runs[0] as FakeRun;
    index.fake.updateRun(run.id, { status: "REJECTED" });
    // The alarm is due in 5 s; run it now, as workerd would then.
    await execInIndex(index, `UPDATE run_sync SET as_of = as_of - 5000`);
    expect(await runDurableObjectAlarm(index.stub)).toBe(true);
    const { body } = await getStats(index, {});
    expect(summary(body)).toEqual(referenceStats(index.fake.runs));
    await stopAlarm(index.stub);
  });

  it("re-arms a lost alarm from the Cron Trigger, for an index in use", async () => {
    const index = await built({ dataset: { size: 30, seed: 3 } });
    await stopAlarm(index.stub);
    expect(await alarmOf(index)).toBeNull();
    await cron(index.env);
    expect(await alarmOf(index)).not.toBeNull();
    await stopAlarm(index.stub);
  });

  it("lets an index nobody read for a day sleep, and wakes it on the next read", async () => {
    const index = await built({ dataset: { size: 30, seed: 3 } });
    await stopAlarm(index.stub);
    await execInIndex(index, `UPDATE run_sync SET last_used_at = last_used_at - 90000000`);
    await cron(index.env);
    expect(await alarmOf(index)).toBeNull();
    const { body } = await getStats(index, {});
    expect(body.source).toBe("index");
    expect(await alarmOf(index)).not.toBeNull();
    await stopAlarm(index.stub);
  });

  it("with RUN_INDEX=off, the cron removes the index and its alarm; turning it on rebuilds", async () => {
    const index = await built({ dataset: { size: 30, seed: 3 } });
    await cron({ ...index.env, RUN_INDEX: "off" });
    expect(await alarmOf(index)).toBeNull();
    expect(await runInDurableObject(index.stub, (_i, state) => hasIndex(state.storage.sql))).toBe(false);
    const { body } = await getStats(index, {});
    expect(body).toMatchObject({ source: "scan", build: { walksDone: 0 } });
    await settle(index.stub);
    expect((await getStats(index, {})).body.source).toBe("index");
    await stopAlarm(index.stub);
  });
});
