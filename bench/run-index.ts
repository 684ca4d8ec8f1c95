// The run index rows of the benchmark: /stats from the index over 100,000 and 1,000,000 runs
// beside /healthz in the same run and the SDK loop; the backfill against the rate floor; the
// sync's cost after k changes; the Worker isolate's heap while the index answers. Part of
// `npm run bench`, or alone: `node bench/run-index.ts [--quick] [--runs 100000 …] [--backfill]`
// (writes bench/results-run-index.json); `npm run bench -- --backfill [--runs …]` runs only the
// backfill rows.
import { writeFile } from "node:fs/promises";
import { loadavg } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { PROJECT_ROOT } from "../scripts/wrangler-dev.ts";
import {
  attachInspector,
  type BenchProxy,
  describeMachine,
  type FakeProcess,
  inspectWorkerHeap,
  isStats,
  LATENCY,
  load,
  machineLine,
  processGroupCpuMs,
  RATE_LIMIT,
  sampleWorkerdMemory,
  sampleWorkerHeap,
  startFakeProcess,
  startProxy,
  walkWithSdk,
} from "./lib.ts";
import { type CpuProfile, type ModuleOf, moduleMap, profileWhile } from "./profile.ts";

/** The proxy's default budget, below Extend's limit. */
const UPSTREAM_MAX_RPS = 8;
const PAGE_SIZE = 1000;

export interface RunIndexPlan {
  datasets: number[];
  /** The SDK loop runs for datasets up to this size; above it, its time is extrapolated per page. */
  sdkUpTo: number;
  requests: number;
  connections: number;
  /** Changes made before each measured sync. */
  changes: number[];
  buildLimitMs: number;
  /** Only the backfill rows: no latency, sync-cost, SDK or memory rows. */
  backfillOnly?: boolean;
  /** Takes a CPU profile of the isolate (which hosts the object locally) during each backfill. */
  profileBackfill?: boolean;
}

export const FULL_PLAN: RunIndexPlan = {
  datasets: [100_000, 1_000_000],
  sdkUpTo: 100_000,
  requests: 2_000,
  connections: 8,
  changes: [0, 10, 1_000, 2_500],
  buildLimitMs: 900_000,
};

export const QUICK_PLAN: RunIndexPlan = {
  datasets: [5_000, 20_000],
  sdkUpTo: 20_000,
  requests: 300,
  connections: 8,
  changes: [0, 10, 1_000],
  buildLimitMs: 300_000,
};

export interface IndexLatencyRow {
  runs: number;
  scenario: string;
  requests: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  malformed: number;
}

export interface BackfillRow {
  runs: number;
  wallS: number;
  pages: number;
  /** pages ÷ UPSTREAM_MAX_RPS: no walk can finish sooner within the budget. */
  floorS: number;
  ratio: number;
  upstream429: number;
  /** Where the time goes: CPU of wrangler's process group (the Worker and the object) per page. */
  proxyCpuMsPerPage: number;
  /** The fake's own CPU per page (its process: HTTP, filters, JSON). */
  fakeCpuMsPerPage: number;
  /** List calls in flight on average over the fake's span, and the most seen. */
  meanInFlight: number;
  peakInFlight: number;
  /** Time in that span with no list call in flight (between alarms, or waiting for the budget). */
  idleS: number;
  longestIdleMs: number;
  /** pages ÷ the fake's span: the rate the budget allowed in practice. */
  pagesPerSecond: number;
  peakStartsPerSecond: number;
  /** With a profile: share of the backfill the isolate was busy, and its time by module per page. */
  profile?: BackfillProfile;
}

export interface BackfillProfile {
  busyShare: number;
  busyMsPerPage: number;
  modules: { module: string; msPerPage: number }[];
  functions: { name: string; module: string; msPerPage: number }[];
}

/** Self time of each sample, by the module of its frame and by function, per page. */
function backfillProfile(profile: CpuProfile, moduleOf: ModuleOf, pages: number): BackfillProfile {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const modules = new Map<string, number>();
  const functions = new Map<string, { name: string; module: string; us: number }>();
  let wallUs = 0;
  let idleUs = 0;
  profile.samples.forEach((id, index) => {
    const us = profile.timeDeltas[index + 1] ?? 0;
    wallUs += us;
    const frame = byId.get(id)?.callFrame;
    const name = frame?.functionName || "(anonymous)";
    if (name === "(idle)") {
      idleUs += us;
      return;
    }
    const module = (frame && moduleOf(frame)) ?? (frame?.url || "(runtime)");
    modules.set(module, (modules.get(module) ?? 0) + us);
    const key = `${module} ${name}`;
    const entry = functions.get(key) ?? { name, module, us: 0 };
    entry.us += us;
    functions.set(key, entry);
  });
  const perPage = (us: number) => us / 1000 / Math.max(1, pages);
  return {
    busyShare: wallUs > 0 ? (wallUs - idleUs) / wallUs : 0,
    busyMsPerPage: perPage(wallUs - idleUs),
    modules: [...modules]
      .map(([module, us]) => ({ module, msPerPage: perPage(us) }))
      .sort((a, b) => b.msPerPage - a.msPerPage)
      .slice(0, 12),
    functions: [...functions.values()]
      .map((f) => ({ name: f.name, module: f.module, msPerPage: perPage(f.us) }))
      .sort((a, b) => b.msPerPage - a.msPerPage)
      .slice(0, 15),
  };
}

export interface SyncCostRow {
  runs: number;
  changes: number;
  pages: number;
  expected: number;
}

export interface SdkRow {
  runs: number;
  wallS: number;
  pages: number;
  extrapolated: boolean;
}

export interface IndexMemoryRow {
  runs: number;
  heapBaseMb: number;
  heapPeakMb: number;
  heapAfterMb: number;
  rssPeakMb: number;
}

export interface RunIndexResults {
  latency: IndexLatencyRow[];
  backfill: BackfillRow[];
  syncCost: SyncCostRow[];
  sdk: SdkRow[];
  memory: IndexMemoryRow[];
  notes: string[];
}

function log(message: string): void {
  process.stderr.write(`[bench:run-index] ${message}\n`);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function getJson(
  proxy: BenchProxy,
  path: string,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${proxy.url}${path}`, {
    headers: { authorization: `Bearer ${proxy.token}` },
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

/**
 * Starts the backfill with one /stats call and waits until /stats answers from the index. The
 * probe is a filter whose scan is one empty page, cached for a minute, so polling costs Extend
 * almost nothing; the bench proxy reads one page per scan.
 */
async function build(proxy: BenchProxy, limitMs: number): Promise<number> {
  const started = performance.now();
  const probe = "/stats?status=CANCELLING&batchId=batch_bench_probe";
  for (;;) {
    const { status, body } = await getJson(proxy, probe);
    if (status === 200 && body.source === "index") return performance.now() - started;
    if (performance.now() - started > limitMs) throw new Error(`index not built within ${limitMs} ms`);
    await sleep(500);
  }
}

/** RECONCILE_AFTER_BUILD_MS in src/run-index/sync.ts: the reconcile that follows a whole build. */
const RECONCILE_AFTER_BUILD_MS = 60_000;

/**
 * Waits for the reconcile that follows every build (it re-reads the tenant) to start and end, so
 * the rows after it measure an index at rest: until the fake has seen no list call for two
 * seconds, once the reconcile is due.
 */
async function quiet(fake: FakeProcess, limitMs: number): Promise<{ pages: number; ms: number }> {
  const started = performance.now();
  const before = (await fake.counters()).listCalls;
  await sleep(RECONCILE_AFTER_BUILD_MS + 5_000);
  let seen = before;
  for (;;) {
    await sleep(2_000);
    const now = (await fake.counters()).listCalls;
    if (now === seen) return { pages: now - before, ms: performance.now() - started };
    if (performance.now() - started > limitMs)
      throw new Error(`the index was still reading after ${limitMs} ms`);
    seen = now;
  }
}

async function update(fake: FakeProcess, count: number): Promise<void> {
  const response = await fetch(`${fake.url}/__fake/update?count=${count}&status=FAILED`, { method: "POST" });
  if (!response.ok) throw new Error(`the fake refused the update: ${response.status}`);
  await response.arrayBuffer();
}

async function measure(
  proxy: BenchProxy,
  runs: number,
  scenario: string,
  path: string,
  requests: number,
  connections: number,
  headers: Record<string, string>,
): Promise<IndexLatencyRow> {
  const check = (p: string, body: string) =>
    p.startsWith("/stats") ? isStats(body) && body.includes('"index"') : true;
  const result = await load({
    origin: proxy.url,
    paths: [path],
    amount: requests,
    connections,
    headers,
    check,
  });
  const row = {
    runs,
    scenario,
    requests: result.requests,
    p50Ms: result.p50,
    p99Ms: result.p99,
    errors: result.errors + result.non2xx,
    malformed: result.malformed,
  };
  log(`${runs} runs, ${scenario}: p50 ${row.p50Ms.toFixed(2)} ms, p99 ${row.p99Ms.toFixed(2)} ms`);
  return row;
}

export async function runIndexScenarios(plan: RunIndexPlan): Promise<RunIndexResults> {
  const results: RunIndexResults = {
    latency: [],
    backfill: [],
    syncCost: [],
    sdk: [],
    memory: [],
    notes: [],
  };
  // A million fake runs need a few GB in the fake's own process (inherited by the child).
  process.env.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ""} --max-old-space-size=8192`.trim();
  let msPerSdkPage: number | undefined;
  for (const runs of plan.datasets) {
    log(`fake Extend with ${runs} runs, rate limit ${RATE_LIMIT}/s`);
    const fake = await startFakeProcess({ size: runs, ...LATENCY, rateLimitPerSecond: RATE_LIMIT });
    // One page per scan while the index builds; no timed head walk to muddle the sync-cost rows.
    const proxy = await startProxy(fake, {
      vars: { STATS_MAX_PAGES: "1", UPSTREAM_MAX_RPS: String(UPSTREAM_MAX_RPS), INDEX_SYNC_SECONDS: "3600" },
    });
    const auth = { authorization: `Bearer ${proxy.token}` };
    try {
      await sleep(1_100);
      await fake.reset();
      log(`backfill of ${runs} runs`);
      const profiler = plan.profileBackfill ? await attachInspector(proxy.inspectorPort) : undefined;
      const moduleOf = profiler ? await moduleMap(profiler) : undefined;
      const cpuBefore = processGroupCpuMs(proxy.pid);
      let wallMs = 0;
      const measureBuild = async () => {
        wallMs = await build(proxy, plan.buildLimitMs);
      };
      const profile = profiler ? await profileWhile(profiler, measureBuild, 1000) : await measureBuild();
      const proxyCpuMs = processGroupCpuMs(proxy.pid) - cpuBefore;
      profiler?.close();
      const counters = await fake.counters();
      const pages = counters.listCalls;
      const floorS = pages / UPSTREAM_MAX_RPS;
      const row: BackfillRow = {
        runs,
        wallS: wallMs / 1000,
        pages,
        floorS,
        ratio: wallMs / 1000 / floorS,
        upstream429: counters.byStatus["429"] ?? 0,
        proxyCpuMsPerPage: proxyCpuMs / pages,
        fakeCpuMsPerPage: counters.cpuMs / pages,
        meanInFlight: counters.inFlightMs / counters.spanMs,
        peakInFlight: counters.peakInFlight,
        idleS: counters.idleMs / 1000,
        longestIdleMs: counters.longestIdleMs,
        pagesPerSecond: pages / (counters.spanMs / 1000),
        peakStartsPerSecond: counters.peakStartsPerSecond,
        ...(profile && moduleOf ? { profile: backfillProfile(profile, moduleOf, pages) } : {}),
      };
      results.backfill.push(row);
      log(
        `backfill: ${fmt(row.wallS, 1)} s for ${pages} pages (floor ${fmt(floorS, 1)} s, ${fmt(row.ratio)}×); ` +
          `proxy CPU ${fmt(row.proxyCpuMsPerPage, 0)} ms/page, fake ${fmt(row.fakeCpuMsPerPage, 0)} ms/page; ` +
          `${fmt(row.pagesPerSecond)} pages/s, ${fmt(row.meanInFlight)} in flight (peak ${row.peakInFlight}), ` +
          `idle ${fmt(row.idleS, 1)} s (longest ${fmt(row.longestIdleMs, 0)} ms)`,
      );
      if (row.profile) {
        log(
          `isolate busy ${fmt(row.profile.busyShare * 100, 0)}% of the backfill, ` +
            `${fmt(row.profile.busyMsPerPage, 1)} ms a page: ` +
            row.profile.modules.map((m) => `${m.module} ${fmt(m.msPerPage, 1)}`).join(", "),
        );
        for (const f of row.profile.functions)
          log(`  ${fmt(f.msPerPage, 2)} ms/page ${f.name} (${f.module})`);
      }
      if (plan.backfillOnly) continue;
      const reconcile = await quiet(fake, plan.buildLimitMs);
      log(`reconcile after the build: ${reconcile.pages} pages in ${fmt(reconcile.ms / 1000, 1)} s`);

      results.latency.push(
        await measure(proxy, runs, "GET /healthz", "/healthz", plan.requests, plan.connections, {}),
      );
      // The route's own cost before the index is asked: authentication, the per-caller limit, validation.
      results.latency.push(
        await measure(
          proxy,
          runs,
          "GET /stats refused by validation (no index call)",
          "/stats?maxLagSeconds=x",
          plan.requests,
          plan.connections,
          auth,
        ),
      );
      const serial = Math.max(50, Math.floor(plan.requests / 10));
      results.latency.push(
        await measure(proxy, runs, "GET /healthz, 1 connection", "/healthz", serial, 1, {}),
      );
      results.latency.push(
        await measure(proxy, runs, "/stats, index, no filter, 1 connection", "/stats", serial, 1, auth),
      );
      const inspector = await inspectWorkerHeap(proxy.inspectorPort);
      const heap = await sampleWorkerHeap(inspector);
      const rss = sampleWorkerdMemory(proxy);
      results.latency.push(
        await measure(
          proxy,
          runs,
          "/stats, index, no filter",
          "/stats",
          plan.requests,
          plan.connections,
          auth,
        ),
      );
      const { peakMb: rssPeakMb } = rss.stop();
      const { baseMb, peakMb, afterMb } = await heap.stop();
      inspector.close();
      results.memory.push({ runs, heapBaseMb: baseMb, heapPeakMb: peakMb, heapAfterMb: afterMb, rssPeakMb });
      results.latency.push(
        await measure(
          proxy,
          runs,
          "/stats, index, workflowId + status",
          "/stats?workflowId=workflow_BMdfq_yWM3sT-ZzvCnA3f&status=PROCESSED",
          plan.requests,
          plan.connections,
          auth,
        ),
      );
      const scans = Math.max(20, Math.floor(plan.requests / 20));
      results.latency.push(
        await measure(
          proxy,
          runs,
          "/stats, index, since (row scan)",
          "/stats?since=2026-10-01T00:00:00Z",
          scans,
          1,
          auth,
        ),
      );
      results.latency.push(
        await measure(
          proxy,
          runs,
          "/stats, index, fileNameContains (row scan)",
          "/stats?fileNameContains=invoice",
          scans,
          1,
          auth,
        ),
      );

      for (const k of plan.changes) {
        await update(fake, k);
        await sleep(1_100);
        await fake.reset();
        const { status, body } = await getJson(proxy, "/stats?maxLagSeconds=0");
        if (status !== 200 || body.source !== "index")
          throw new Error(`sync after ${k} changes answered ${status}`);
        const pages = (await fake.counters()).listCalls;
        results.syncCost.push({ runs, changes: k, pages, expected: Math.ceil(k / PAGE_SIZE) + 1 });
        log(`sync after ${k} changes: ${pages} pages`);
      }

      if (runs <= plan.sdkUpTo) {
        await sleep(1_100);
        log(`SDK loop, maxPageSize 1000, over ${runs} runs`);
        const walk = await walkWithSdk(fake, PAGE_SIZE, plan.buildLimitMs);
        msPerSdkPage = walk.wallMs / Math.max(1, walk.pages);
        results.sdk.push({ runs, wallS: walk.wallMs / 1000, pages: walk.pages, extrapolated: false });
      } else if (msPerSdkPage !== undefined) {
        const pages = Math.ceil(runs / PAGE_SIZE);
        results.sdk.push({ runs, wallS: (pages * msPerSdkPage) / 1000, pages, extrapolated: true });
        results.notes.push(
          `The SDK loop over ${runs} runs is extrapolated from the measured time per page at ${plan.sdkUpTo} runs ` +
            "(it is sequential and latency-bound, so linear in pages).",
        );
      }
    } finally {
      await proxy.close();
      await fake.stop();
    }
  }
  return results;
}

/** The plan for command-line flags: `--quick`, `--runs N` (repeatable), `--backfill`. */
export function runIndexPlan(flags: {
  quick: boolean;
  runs?: string[];
  backfillOnly: boolean;
  profileBackfill?: boolean;
}): RunIndexPlan {
  const plan = flags.quick ? QUICK_PLAN : FULL_PLAN;
  const datasets = flags.runs?.map(Number).filter((n) => Number.isSafeInteger(n) && n > 0);
  return {
    ...plan,
    ...(datasets?.length ? { datasets, sdkUpTo: Math.max(...datasets) } : {}),
    backfillOnly: flags.backfillOnly,
    profileBackfill: flags.profileBackfill ?? false,
  };
}

const fmt = (n: number, digits = 2) => (Number.isFinite(n) ? n.toFixed(digits) : "n/a");

function table(header: string[], body: (string | number)[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => String(row[i] ?? "").length)));
  const line = (cells: (string | number)[]) =>
    `| ${cells.map((cell, i) => String(cell).padEnd(widths[i] ?? 0)).join(" | ")} |`;
  return [line(header), `| ${widths.map((w) => "-".repeat(w)).join(" | ")} |`, ...body.map(line)].join("\n");
}

/** The tables docs/benchmarks.md "Run index rows" reproduces, and the targets checked against them. */
export function printRunIndex(results: RunIndexResults): void {
  console.log("\nRun index: /stats from the index beside /healthz in the same run\n");
  console.log(
    table(
      ["runs", "scenario", "requests", "p50 ms", "p99 ms", "errors", "malformed"],
      results.latency.map((r) => [
        r.runs,
        r.scenario,
        r.requests,
        fmt(r.p50Ms),
        fmt(r.p99Ms),
        r.errors,
        r.malformed,
      ]),
    ),
  );
  console.log(`\nBackfill against the rate floor (pages ÷ UPSTREAM_MAX_RPS = ${UPSTREAM_MAX_RPS})\n`);
  console.log(
    table(
      [
        "runs",
        "wall s",
        "pages",
        "floor s",
        "wall ÷ floor",
        "429s",
        "pages/s",
        "in flight",
        "idle s",
        "proxy CPU ms/page",
        "fake CPU ms/page",
      ],
      results.backfill.map((r) => [
        r.runs,
        fmt(r.wallS, 1),
        r.pages,
        fmt(r.floorS, 1),
        fmt(r.ratio),
        r.upstream429,
        fmt(r.pagesPerSecond),
        `${fmt(r.meanInFlight)} (${r.peakInFlight})`,
        `${fmt(r.idleS, 1)} (${fmt(r.longestIdleMs, 0)} ms)`,
        fmt(r.proxyCpuMsPerPage, 0),
        fmt(r.fakeCpuMsPerPage, 0),
      ]),
    ),
  );
  console.log("\nSync after k changes (pages read; ⌈k/1000⌉ + 1 expected)\n");
  console.log(
    table(
      ["runs", "changes", "pages", "⌈k/1000⌉ + 1"],
      results.syncCost.map((r) => [r.runs, r.changes, r.pages, r.expected]),
    ),
  );
  console.log(
    "\nMemory while the index answers (Worker isolate heap, which hosts the object locally; workerd RSS)\n",
  );
  console.log(
    table(
      ["runs", "heap before MB", "heap peak MB", "heap after MB", "RSS peak MB"],
      results.memory.map((m) => [
        m.runs,
        fmt(m.heapBaseMb, 1),
        fmt(m.heapPeakMb, 1),
        fmt(m.heapAfterMb, 1),
        fmt(m.rssPeakMb, 0),
      ]),
    ),
  );
  console.log("\nTargets\n");
  const rows: [string, string, boolean][] = [];
  for (const runs of new Set(results.latency.map((r) => r.runs))) {
    const health = results.latency.find((r) => r.runs === runs && r.scenario === "GET /healthz");
    const stats = results.latency.find((r) => r.runs === runs && r.scenario === "/stats, index, no filter");
    const sdk = results.sdk.find((r) => r.runs === runs);
    if (health && stats) {
      const gap = stats.p50Ms - health.p50Ms;
      rows.push([
        `${runs} runs: /stats p50 within a few ms of /healthz`,
        `${fmt(gap)} ms above (${fmt(stats.p50Ms)} vs ${fmt(health.p50Ms)})`,
        gap <= 5,
      ]);
    }
    if (stats && sdk) {
      const speedup = (sdk.wallS * 1000) / stats.p50Ms;
      rows.push([
        `${runs} runs: /stats ≥ 1000× faster than the SDK loop (maxPageSize 1000)`,
        `${fmt(speedup, 0)}× (${fmt(sdk.wallS, 1)} s${sdk.extrapolated ? ", extrapolated" : ""} vs ${fmt(stats.p50Ms)} ms)`,
        speedup >= 1000,
      ]);
    }
  }
  for (const b of results.backfill) {
    rows.push([
      `backfill of ${b.runs} runs within 1.5× of the rate floor`,
      `${fmt(b.ratio)}× (${fmt(b.wallS, 1)} s vs ${fmt(b.floorS, 1)} s)`,
      b.ratio <= 1.5,
    ]);
  }
  const worst = results.syncCost.filter((r) => r.pages > r.expected);
  rows.push([
    "sync after k changes ≈ ⌈k/1000⌉ + 1 pages",
    worst.length === 0 ? "all within" : worst.map((r) => `${r.changes}: ${r.pages}`).join(", "),
    worst.length === 0,
  ]);
  const [small, large] = [results.memory[0], results.memory[results.memory.length - 1]];
  if (small && large && small !== large) {
    const growth = large.heapPeakMb / small.heapPeakMb;
    rows.push([
      "object's memory flat in the number of runs while answering",
      `heap peak ${fmt(small.heapPeakMb, 1)} MB at ${small.runs}, ${fmt(large.heapPeakMb, 1)} MB at ${large.runs} (×${fmt(growth)})`,
      growth <= 1.25,
    ]);
  }
  console.log(
    table(
      ["target", "measured", "met"],
      rows.map(([t, m, ok]) => [t, m, ok ? "yes" : "NO"]),
    ),
  );
  for (const note of results.notes) console.log(`\nnote: ${note}`);
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      quick: { type: "boolean", default: false },
      runs: { type: "string", multiple: true },
      backfill: { type: "boolean", default: false },
    },
    strict: true,
  });
  const started = Date.now();
  const machine = describeMachine();
  const results = await runIndexScenarios(
    runIndexPlan({ quick: values.quick, runs: values.runs, backfillOnly: values.backfill }),
  );
  const out = join(PROJECT_ROOT, "bench", "results-run-index.json");
  const summary = {
    machine,
    durationS: (Date.now() - started) / 1000,
    loadAverageAtEnd: Number(loadavg()[0]?.toFixed(2)),
    ...results,
  };
  await writeFile(out, `${JSON.stringify(summary, null, 2)}\n`);
  console.log(`\n${machineLine(machine)}`);
  printRunIndex(results);
  console.log(`\nwritten to ${out} in ${fmt(summary.durationS, 0)} s`);
  process.exit(0);
}
