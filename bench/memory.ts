// The memory rows of the benchmark (issue #11 item 9): the Worker isolate's V8 heap while idle,
// during one cold /stats scan, and during three concurrent cold scans with distinct filters (so
// their pages are distinct upstream calls, not one coalesced load), over 100,000 runs with the
// run index off so /stats scans. Part of `npm run bench`, or alone: `npm run bench -- --memory`.
import {
  attachInspector,
  type BenchProxy,
  type FakeProcess,
  type Inspector,
  LATENCY,
  RATE_LIMIT,
  type StatsWalk,
  sampleWorkerdMemory,
  sampleWorkerHeap,
  startFakeProcess,
  startProxy,
  type WorkerHeap,
  walkStats,
} from "./lib.ts";
import { type ModuleOf, moduleMap } from "./profile.ts";

export interface MemoryPlan {
  runs: number;
  walkLimitMs: number;
  /** How long the idle isolate is watched after its first requests. */
  idleMs: number;
  /** Also attribute the heap to source modules with V8's sampling heap profiler (slower). */
  attribute?: boolean;
}

export const FULL_MEMORY_PLAN: MemoryPlan = { runs: 100_000, walkLimitMs: 600_000, idleMs: 3_000 };
export const QUICK_MEMORY_PLAN: MemoryPlan = { runs: 20_000, walkLimitMs: 120_000, idleMs: 1_000 };

/** The target of issue #11 item 9: three concurrent cold scans under this heap peak. */
export const HEAP_TARGET_MB = 32;

/**
 * Three filter sets whose scans share no upstream page: every run has a file name with a dot, so
 * the first two count every run; the third counts the runs with a PDF. (since/until are applied
 * by the scan, not by Extend, so they would reuse the first scan's pages.)
 */
export const SCAN_FILTERS: readonly Record<string, string>[] = [
  {},
  { fileNameContains: "." },
  { fileNameContains: "pdf" },
];

export interface ScanMemoryRow {
  scenario: string;
  runs: number;
  scans: number;
  /** The isolate's heap in use before, the most at any sample (garbage included), and after. */
  heapBaseMb: number;
  heapPeakMb: number;
  heapAfterMb: number;
  /** Largest workerd process's RSS (runtime, local KV and V8's reserve included). */
  rssPeakMb: number;
  /** From the first request to the last complete answer. */
  wallS: number;
  /** Runs counted by each scan, and whether each completed. */
  totals: number[];
  complete: boolean;
  pages: number;
  upstreamCalls: number;
  requests: number;
  /** With `attribute`: the sampled live heap at its largest, by where it was allocated (MB). */
  heldBy?: { where: string; mb: number }[];
  /** With `attribute`, idle only: a heap snapshot (taken after a full collection). */
  snapshot?: HeapSnapshotSummary;
}

export interface HeapSnapshotSummary {
  /** Everything reachable, in MB: the idle heap without its garbage. */
  liveMb: number;
  /** The largest single objects (the Scalar bundle's text, if it is on the heap, is one). */
  largest: { mb: number; type: string; what: string }[];
}

export interface MemoryResult {
  plan: MemoryPlan;
  rows: ScanMemoryRow[];
}

function log(message: string): void {
  process.stderr.write(`[bench] ${message}\n`);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Requests that load the routes' modules and the auth path, so "idle" is a served isolate. */
async function warmUp(proxy: BenchProxy): Promise<void> {
  const headers = { authorization: `Bearer ${proxy.token}` };
  for (const path of ["/healthz", "/stats?since=not-a-date", "/workflow_runs?maxPageSize=1"]) {
    await (await fetch(`${proxy.url}${path}`, { headers })).arrayBuffer();
  }
}

async function measureScans(
  proxy: BenchProxy,
  fake: FakeProcess,
  scenario: string,
  filters: readonly Record<string, string>[],
  plan: MemoryPlan,
): Promise<ScanMemoryRow> {
  await fake.reset();
  const inspector = await attachInspector(proxy.inspectorPort);
  const sampler = plan.attribute ? await heapSampler(inspector) : undefined;
  const heap = await sampleWorkerHeap(heapOf(inspector));
  const rss = sampleWorkerdMemory(proxy);
  const started = performance.now();
  const walks: StatsWalk[] = await Promise.all(
    filters.map((query) => walkStats(proxy, query, plan.walkLimitMs)),
  );
  const wallS = (performance.now() - started) / 1000;
  const { peakMb: rssPeakMb } = rss.stop();
  const { baseMb, peakMb, afterMb } = await heap.stop();
  const heldBy = await sampler?.stop();
  inspector.close();
  const counters = await fake.counters();
  return {
    scenario,
    runs: plan.runs,
    scans: filters.length,
    heapBaseMb: baseMb,
    heapPeakMb: peakMb,
    heapAfterMb: afterMb,
    rssPeakMb,
    wallS,
    totals: walks.map((w) => w.total),
    complete: walks.every((w) => w.complete),
    pages: walks.reduce((sum, w) => sum + w.pagesFetched, 0),
    upstreamCalls: counters.listCalls,
    requests: walks.reduce((sum, w) => sum + w.requests, 0),
    ...(heldBy ? { heldBy } : {}),
  };
}

function heapOf(inspector: Inspector): WorkerHeap {
  return {
    usedMb: async () =>
      (await inspector.call<{ usedSize: number }>("Runtime.getHeapUsage")).usedSize / 2 ** 20,
    close: () => inspector.close(),
  };
}

interface SamplingNode {
  callFrame: {
    functionName: string;
    scriptId: string;
    url: string;
    lineNumber: number;
    columnNumber: number;
  };
  selfSize: number;
  children: SamplingNode[];
}

/** Every frame of a node's stack, innermost first, and its live sampled bytes. */
function* allocations(
  node: SamplingNode,
  stack: SamplingNode["callFrame"][] = [],
): Generator<[SamplingNode["callFrame"][], number]> {
  const frames = [node.callFrame, ...stack];
  if (node.selfSize > 0) yield [frames, node.selfSize];
  for (const child of node.children) yield* allocations(child, frames);
}

/** Charges each sampled allocation to the innermost frame of the proxy's own code, or else of a package. */
function holder(frames: SamplingNode["callFrame"][], moduleOf: ModuleOf): string {
  let packageFrame: string | undefined;
  for (const frame of frames) {
    const module = moduleOf(frame);
    if (module?.startsWith("src/")) return `${module} ${frame.functionName || "(anonymous)"}`;
    if (module && !packageFrame) packageFrame = module;
  }
  return packageFrame ?? (frames[0]?.functionName || "(runtime)");
}

/**
 * V8's sampling heap profiler while the scans run: every second the live sampled allocations
 * are read, and the largest such set is kept and charged to source modules.
 */
async function heapSampler(inspector: Inspector) {
  const moduleOf = await moduleMap(inspector);
  await inspector.call("HeapProfiler.enable");
  await inspector.call("HeapProfiler.startSampling", { samplingInterval: 16_384 });
  let largest: { total: number; byHolder: Map<string, number> } | undefined;
  let reading = false;
  const read = async () => {
    if (reading) return;
    reading = true;
    try {
      const { profile } = await inspector.call<{ profile: { head: SamplingNode } }>(
        "HeapProfiler.getSamplingProfile",
        {},
        30_000,
      );
      const byHolder = new Map<string, number>();
      let total = 0;
      for (const [frames, bytes] of allocations(profile.head)) {
        total += bytes;
        const where = holder(frames, moduleOf);
        byHolder.set(where, (byHolder.get(where) ?? 0) + bytes);
      }
      if (!largest || total > largest.total) largest = { total, byHolder };
    } catch {
      // A read that times out on a loaded machine is skipped.
    } finally {
      reading = false;
    }
  };
  const timer = setInterval(() => void read(), 1_000);
  return {
    stop: async () => {
      clearInterval(timer);
      await inspector.call("HeapProfiler.stopSampling", {}, 30_000).catch(() => undefined);
      const held = [...(largest?.byHolder ?? new Map<string, number>())]
        .map(([where, bytes]) => ({ where, mb: bytes / 2 ** 20 }))
        .sort((a, b) => b.mb - a.mb);
      return held.slice(0, 12);
    },
  };
}

/** Each scenario on a fresh proxy (cold KV, a new isolate), against one fake Extend. */
export async function memoryScenarios(plan: MemoryPlan): Promise<MemoryResult> {
  const fake = await startFakeProcess({ size: plan.runs, ...LATENCY, rateLimitPerSecond: RATE_LIMIT });
  const rows: ScanMemoryRow[] = [];
  try {
    const scenarios = [
      { scenario: "idle (after warm-up requests)", filters: [] },
      { scenario: "one cold scan", filters: SCAN_FILTERS.slice(0, 1) },
      { scenario: "three concurrent cold scans", filters: SCAN_FILTERS },
    ];
    for (const { scenario, filters } of scenarios) {
      log(`memory: ${scenario} over ${plan.runs} runs`);
      const proxy = await startProxy(fake, { vars: { RUN_INDEX: "off" } });
      try {
        await warmUp(proxy);
        // The fake's one-second rate window drains before the measured calls.
        await sleep(1_100);
        const row =
          filters.length === 0
            ? await measureIdle(proxy, fake, scenario, plan)
            : await measureScans(proxy, fake, scenario, filters, plan);
        rows.push(row);
        log(
          `memory: ${scenario}: heap ${row.heapBaseMb.toFixed(1)} → peak ${row.heapPeakMb.toFixed(1)} → ` +
            `${row.heapAfterMb.toFixed(1)} MB, ${row.wallS.toFixed(1)} s, totals ${row.totals.join(", ")}`,
        );
      } finally {
        await proxy.close();
      }
    }
  } finally {
    await fake.stop();
  }
  return { plan, rows };
}

async function measureIdle(
  proxy: BenchProxy,
  fake: FakeProcess,
  scenario: string,
  plan: MemoryPlan,
): Promise<ScanMemoryRow> {
  const inspector = await attachInspector(proxy.inspectorPort);
  const heap = await sampleWorkerHeap(heapOf(inspector));
  const rss = sampleWorkerdMemory(proxy);
  await sleep(plan.idleMs);
  const { peakMb: rssPeakMb } = rss.stop();
  const { baseMb, peakMb, afterMb } = await heap.stop();
  const snapshot = plan.attribute ? await snapshotSummary(inspector) : undefined;
  inspector.close();
  return {
    scenario,
    runs: plan.runs,
    scans: 0,
    heapBaseMb: baseMb,
    heapPeakMb: peakMb,
    heapAfterMb: afterMb,
    rssPeakMb,
    wallS: plan.idleMs / 1000,
    totals: [],
    complete: true,
    pages: 0,
    upstreamCalls: (await fake.counters()).listCalls,
    requests: 0,
    ...(snapshot ? { snapshot } : {}),
  };
}

interface RawSnapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

/** A heap snapshot of the isolate (V8 collects garbage first), reduced to its size and largest objects. */
async function snapshotSummary(inspector: Inspector): Promise<HeapSnapshotSummary> {
  const chunks: string[] = [];
  inspector.on("HeapProfiler.addHeapSnapshotChunk", (params) => {
    chunks.push((params as { chunk: string }).chunk);
  });
  await inspector.call("HeapProfiler.enable");
  await inspector.call("HeapProfiler.takeHeapSnapshot", { reportProgress: false }, 120_000);
  const raw = JSON.parse(chunks.join("")) as RawSnapshot;
  const fields = raw.snapshot.meta.node_fields;
  const types = raw.snapshot.meta.node_types[0];
  const width = fields.length;
  const typeAt = fields.indexOf("type");
  const nameAt = fields.indexOf("name");
  const sizeAt = fields.indexOf("self_size");
  let total = 0;
  const largest: { bytes: number; type: string; what: string }[] = [];
  for (let i = 0; i < raw.nodes.length; i += width) {
    const bytes = raw.nodes[i + sizeAt] ?? 0;
    total += bytes;
    if (bytes < 256 * 1024) continue;
    const name = raw.strings[raw.nodes[i + nameAt] ?? 0] ?? "";
    largest.push({
      bytes,
      type: types[raw.nodes[i + typeAt] ?? 0] ?? "?",
      what: name.slice(0, 60).replace(/\s+/g, " "),
    });
  }
  largest.sort((a, b) => b.bytes - a.bytes);
  return {
    liveMb: total / 2 ** 20,
    largest: largest.slice(0, 6).map(({ bytes, type, what }) => ({ mb: bytes / 2 ** 20, type, what })),
  };
}

export function printMemory(result: MemoryResult, table: (h: string[], b: (string | number)[][]) => string) {
  const fmt = (n: number, digits = 1) => n.toFixed(digits);
  console.log(
    `\n/stats scan memory over ${result.plan.runs} runs (RUN_INDEX=off, fake rate limit ${RATE_LIMIT}/s): ` +
      "the Worker isolate's V8 heap, garbage not yet collected included\n",
  );
  console.log(
    table(
      [
        "scenario",
        "heap before MB",
        "heap peak MB",
        "heap after MB",
        "RSS peak MB",
        "wall s",
        "runs counted",
        "complete",
        "pages",
        "upstream calls",
        "/stats calls",
      ],
      result.rows.map((r) => [
        r.scenario,
        fmt(r.heapBaseMb),
        fmt(r.heapPeakMb),
        fmt(r.heapAfterMb),
        fmt(r.rssPeakMb, 0),
        fmt(r.wallS),
        r.totals.join(" / "),
        String(r.complete),
        r.pages,
        r.upstreamCalls,
        r.requests,
      ]),
    ),
  );
  for (const row of result.rows) {
    if (row.snapshot) {
      console.log(
        `\nHeap snapshot, ${row.scenario}: ${fmt(row.snapshot.liveMb)} MB reachable; the largest objects:\n`,
      );
      console.log(
        table(
          ["MB", "type", "starts with"],
          row.snapshot.largest.map((o) => [fmt(o.mb, 2), o.type, JSON.stringify(o.what)]),
        ),
      );
    }
    if (!row.heldBy) continue;
    console.log(`\nLive sampled heap at its largest, ${row.scenario}, by where it was allocated:\n`);
    console.log(
      table(
        ["allocated in", "MB"],
        row.heldBy.map((h) => [h.where, fmt(h.mb, 2)]),
      ),
    );
  }
}

/** The target row: three concurrent cold scans under HEAP_TARGET_MB of heap peak. */
export function memoryTarget(result: MemoryResult) {
  const three = result.rows.find((r) => r.scans === 3);
  if (!three) return undefined;
  return {
    target: `three concurrent cold /stats scans over ${result.plan.runs} runs: heap peak < ${HEAP_TARGET_MB} MB`,
    measured: `${three.heapPeakMb.toFixed(1)} MB peak (${three.heapBaseMb.toFixed(1)} MB before), ${three.wallS.toFixed(1)} s`,
    met: three.complete && three.heapPeakMb < HEAP_TARGET_MB,
  };
}
