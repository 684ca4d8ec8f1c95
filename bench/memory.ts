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
  SCAN_ONLY,
  type StatsWalk,
  sampleWorkerdMemory,
  startFakeProcess,
  startProxy,
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
  /**
   * The same three readings of the isolate's whole memory: the heap plus V8's external memory
   * (`backingStorageSize`: ArrayBuffer backing stores, Data modules) and the embedder's heap
   * (`embedderHeapUsedSize`). ArrayBuffers are outside `usedSize` but count against the isolate's
   * 128 MB like the heap.
   */
  totalBaseMb: number;
  totalPeakMb: number;
  totalAfterMb: number;
  /** The external part alone at the total's peak sample. */
  externalAtPeakMb: number;
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
  /** With `attribute`: the heap allocated during the scans, garbage included, by where (MB). */
  heldBy?: { where: string; mb: number }[];
  /** With `attribute`: a heap snapshot (taken after a full collection; for scans, once they are done). */
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
  const memory = await sampleIsolateMemory(inspector);
  const rss = sampleWorkerdMemory(proxy);
  const started = performance.now();
  const walks: StatsWalk[] = await Promise.all(
    filters.map((query) => walkStats(proxy, query, plan.walkLimitMs)),
  );
  const wallS = (performance.now() - started) / 1000;
  const { peakMb: rssPeakMb } = rss.stop();
  const readings = await memory.stop();
  const heldBy = await sampler?.stop();
  // After the readings: what is still reachable once V8 has collected (the snapshot collects first).
  const snapshot = plan.attribute ? await snapshotSummary(inspector).catch(() => undefined) : undefined;
  inspector.close();
  const counters = await fake.counters();
  return {
    scenario,
    runs: plan.runs,
    scans: filters.length,
    ...readings,
    rssPeakMb,
    wallS,
    totals: walks.map((w) => w.total),
    complete: walks.every((w) => w.complete),
    pages: walks.reduce((sum, w) => sum + w.pagesFetched, 0),
    upstreamCalls: counters.listCalls,
    requests: walks.reduce((sum, w) => sum + w.requests, 0),
    ...(heldBy ? { heldBy } : {}),
    ...(snapshot ? { snapshot } : {}),
  };
}

interface HeapUsage {
  usedSize: number;
  embedderHeapUsedSize?: number;
  backingStorageSize?: number;
}

interface MemoryReading {
  heapMb: number;
  totalMb: number;
  externalMb: number;
}

async function readMemory(inspector: Inspector): Promise<MemoryReading> {
  const usage = await inspector.call<HeapUsage>("Runtime.getHeapUsage");
  const externalMb = ((usage.backingStorageSize ?? 0) + (usage.embedderHeapUsedSize ?? 0)) / 2 ** 20;
  const heapMb = usage.usedSize / 2 ** 20;
  return { heapMb, totalMb: heapMb + externalMb, externalMb };
}

/**
 * Polls the isolate's heap and its whole memory (heap + external) while the scans run: before, the
 * most at any sample (each series on its own), and after.
 */
async function sampleIsolateMemory(inspector: Inspector, everyMs = 50) {
  const base = await readMemory(inspector);
  let heapPeakMb = base.heapMb;
  let totalPeak = base;
  let polling = false;
  const take = (reading: MemoryReading) => {
    heapPeakMb = Math.max(heapPeakMb, reading.heapMb);
    if (reading.totalMb > totalPeak.totalMb) totalPeak = reading;
  };
  const timer = setInterval(() => {
    if (polling) return;
    polling = true;
    readMemory(inspector)
      .then(take)
      .catch(() => undefined)
      .finally(() => {
        polling = false;
      });
  }, everyMs);
  return {
    stop: async () => {
      clearInterval(timer);
      const after = await readMemory(inspector);
      take(after);
      return {
        heapBaseMb: base.heapMb,
        heapPeakMb,
        heapAfterMb: after.heapMb,
        totalBaseMb: base.totalMb,
        totalPeakMb: totalPeak.totalMb,
        totalAfterMb: after.totalMb,
        externalAtPeakMb: totalPeak.externalMb,
      };
    },
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
 * V8's sampling heap profiler while the scans run, counting what was since collected too: every
 * second the sampled allocations are read, and the largest such set (the last, as it only grows)
 * is charged to source modules.
 */
async function heapSampler(inspector: Inspector) {
  const moduleOf = await moduleMap(inspector);
  await inspector.call("HeapProfiler.enable");
  // Garbage included: the peaks are mostly allocations not yet collected, so where the bytes
  // were allocated matters more than what is still live.
  await inspector.call("HeapProfiler.startSampling", {
    samplingInterval: 16_384,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: true,
  });
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
      const proxy = await startProxy(fake, { vars: SCAN_ONLY });
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
            `${row.heapAfterMb.toFixed(1)} MB; heap + external ${row.totalBaseMb.toFixed(1)} → peak ` +
            `${row.totalPeakMb.toFixed(1)} → ${row.totalAfterMb.toFixed(1)} MB; ${row.wallS.toFixed(1)} s, ` +
            `totals ${row.totals.join(", ")}`,
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
  const memory = await sampleIsolateMemory(inspector);
  const rss = sampleWorkerdMemory(proxy);
  await sleep(plan.idleMs);
  const { peakMb: rssPeakMb } = rss.stop();
  const readings = await memory.stop();
  const snapshot = plan.attribute ? await snapshotSummary(inspector) : undefined;
  inspector.close();
  return {
    scenario,
    runs: plan.runs,
    scans: 0,
    ...readings,
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
      "the Worker isolate's V8 heap, garbage not yet collected included, and the heap plus external " +
      "memory (ArrayBuffer backing stores, Data modules, the embedder's heap)\n",
  );
  console.log(
    table(
      [
        "scenario",
        "heap before MB",
        "heap peak MB",
        "heap after MB",
        "heap+ext before MB",
        "heap+ext peak MB",
        "heap+ext after MB",
        "ext at peak MB",
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
        fmt(r.totalBaseMb),
        fmt(r.totalPeakMb),
        fmt(r.totalAfterMb),
        fmt(r.externalAtPeakMb),
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
    console.log(`\nHeap allocated during the scans (collected or not), ${row.scenario}, by where:\n`);
    console.log(
      table(
        ["allocated in", "MB"],
        row.heldBy.map((h) => [h.where, fmt(h.mb, 2)]),
      ),
    );
  }
}

/**
 * The target row: three concurrent cold scans under HEAP_TARGET_MB, counted as the heap and the
 * external memory together (bytes moved out of the heap into ArrayBuffers still count).
 */
export function memoryTarget(result: MemoryResult) {
  const three = result.rows.find((r) => r.scans === 3);
  if (!three) return undefined;
  return {
    target: `three concurrent cold /stats scans over ${result.plan.runs} runs: heap + external peak < ${HEAP_TARGET_MB} MB`,
    measured:
      `heap + external ${three.totalPeakMb.toFixed(1)} MB peak (${three.totalBaseMb.toFixed(1)} MB before); ` +
      `heap alone ${three.heapPeakMb.toFixed(1)} MB peak (${three.heapBaseMb.toFixed(1)} MB before); ${three.wallS.toFixed(1)} s`,
    met: three.complete && three.totalPeakMb < HEAP_TARGET_MB && three.heapPeakMb < HEAP_TARGET_MB,
  };
}
