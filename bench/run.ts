// `npm run bench` (or `npm run bench -- --quick`): the proxy under wrangler dev against the fake
// Extend with a latency model, side by side with direct calls and with the official SDK, in one
// run. Prints tables and writes the same figures to bench/results.json. Timings are medians and
// p99s on a shared machine: compare rows of one run, not runs of different machines.
import { writeFile } from "node:fs/promises";
import { loadavg } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { PROJECT_ROOT } from "../scripts/wrangler-dev.ts";
import {
  GATEWAY_FULL,
  GATEWAY_QUICK,
  type GatewayResults,
  gatewayScenarios,
  printGateway,
} from "./gateway.ts";
import {
  attachInspector,
  type BenchProxy,
  CONNECTIONS,
  describeMachine,
  type FakeProcess,
  inspectWorkerHeap,
  interleaved,
  isList,
  isStats,
  LATENCY,
  type LoadResult,
  load,
  machineLine,
  NO_BUDGET,
  PAGE_SIZE,
  pagePaths,
  percentile,
  processGroupCpuMs,
  RATE_LIMIT,
  SCAN_ONLY,
  type SdkWalk,
  type StatsWalk,
  sampleWorkerdMemory,
  sampleWorkerHeap,
  startBareWorker,
  startFakeProcess,
  startProxy,
  type Target,
  upstreamHeaders,
  walkStats,
  walkWithSdk,
} from "./lib.ts";
import {
  FULL_MEMORY_PLAN,
  type MemoryResult,
  memoryScenarios,
  memoryTarget,
  printMemory,
  QUICK_MEMORY_PLAN,
} from "./memory.ts";
import { attribute, type Breakdown, moduleMap, profileWhile } from "./profile.ts";
import { FULL_PLAN, printRunIndex, QUICK_PLAN, runIndexPlan, runIndexScenarios } from "./run-index.ts";

const { values: flags } = parseArgs({
  args: process.argv.slice(2),
  options: {
    quick: { type: "boolean", default: false },
    profile: { type: "boolean", default: false },
    /** Page rows and the anchor comparison only: no load run, no /stats. */
    pages: { type: "boolean", default: false },
    /** The gateway's rows alone (bench/gateway.ts): the burst, the hop, the ablation at 8 connections. */
    gateway: { type: "boolean", default: false },
    /** The run index rows only (with `--runs N`, repeatable, for the dataset sizes). */
    index: { type: "boolean", default: false },
    /**
     * The run index's backfill rows only (with `--runs N`, repeatable, for the dataset sizes;
     * with `--profile`, a CPU profile of the isolate during each backfill).
     */
    backfill: { type: "boolean", default: false },
    runs: { type: "string", multiple: true },
    /** The scan memory rows only (bench/memory.ts): idle, one cold scan, three concurrent. */
    memory: { type: "boolean", default: false },
    /** With the memory rows: charge the scans' heap to source modules (sampling heap profiler). */
    "heap-profile": { type: "boolean", default: false },
    out: { type: "string" },
  },
  strict: true,
});
const QUICK = flags.quick;

/** Everything the run does, sized for a full run or a one-minute sanity check. */
const PLAN = QUICK
  ? {
      pageDataset: 1_000,
      statsDatasets: [1_000, 5_000],
      memoryOnlyDatasets: [20_000],
      sdkDefaultDataset: 1_000,
      floorRequests: 200,
      hitRequests: 300,
      burst: 100,
      loadRequests: 500,
      loadConnections: 16,
      walkLimitMs: 120_000,
      anchorRounds: 20,
      anchorConcurrentRounds: 3,
      anchorConcurrentRequests: 100,
    }
  : {
      pageDataset: 5_000,
      statsDatasets: [5_000, 100_000],
      /** A cold /stats only (no warm repeat, no SDK loops): is the heap still flat at 3× the runs? */
      memoryOnlyDatasets: [300_000],
      sdkDefaultDataset: 5_000,
      floorRequests: 2_000,
      hitRequests: 3_000,
      burst: 100,
      loadRequests: 10_000,
      loadConnections: 64,
      walkLimitMs: 600_000,
      /** Sequential rounds of the anchor comparison; each takes one distinct page per miss row. */
      anchorRounds: 100,
      anchorConcurrentRounds: 6,
      anchorConcurrentRequests: 300,
    };

interface Row {
  scenario: string;
  requests: number;
  p50Ms: number;
  p99Ms: number;
  rps: number;
  errors: number;
  malformed: number;
  upstreamPerRequest: number;
}
interface StatsRow {
  scenario: string;
  runs: number;
  wallS: number;
  upstreamCalls: number;
  upstream429: number;
  pages: number;
  total: number;
  complete: boolean;
  note?: string;
}
interface MemoryRow {
  runs: number;
  /** workerd's RSS: runtime, local KV and V8's reserve included. */
  idleMb: number;
  peakMb: number;
  /** The Worker isolate's V8 heap in use (garbage not yet collected included): before, peak during, after. */
  heapBaseMb: number;
  heapPeakMb: number;
  heapAfterMb: number;
}

const rows: Row[] = [];
const statsRows: StatsRow[] = [];
const memoryRows: MemoryRow[] = [];
let memory: MemoryResult | undefined;
const notes: string[] = [];

function log(message: string): void {
  process.stderr.write(`[bench] ${message}\n`);
}

async function measured(fake: FakeProcess, scenario: string, run: () => Promise<LoadResult>): Promise<Row> {
  await fake.reset();
  const result = await run();
  const counters = await fake.counters();
  const row: Row = {
    scenario,
    requests: result.requests,
    p50Ms: result.p50,
    p99Ms: result.p99,
    rps: result.rps,
    errors: result.errors + result.non2xx,
    malformed: result.malformed,
    upstreamPerRequest: result.requests > 0 ? counters.listCalls / result.requests : 0,
  };
  rows.push(row);
  log(`${scenario}: p50 ${row.p50Ms.toFixed(2)} ms, p99 ${row.p99Ms.toFixed(2)} ms, ${row.errors} errors`);
  return row;
}

const proxyHeaders = (proxy: BenchProxy) => ({ authorization: `Bearer ${proxy.token}` });

interface PageRun {
  fake: FakeProcess;
  proxy: BenchProxy;
  bare: BenchProxy;
  paths: string[];
}

async function pageScenarios(): Promise<PageRun> {
  log(
    `fake Extend with ${PLAN.pageDataset} runs, ${LATENCY.latencyBaseMs} ms + ${LATENCY.latencyPerRunMs} ms/run`,
  );
  const fake = await startFakeProcess({ size: PLAN.pageDataset, ...LATENCY });
  // These rows measure the cache and the live scan; the run index has rows of its own (run-index.ts).
  const proxy = await startProxy(fake, { vars: { ...SCAN_ONLY, ...NO_BUDGET } });
  const bare = await startBareWorker(fake);
  log(
    `proxy under wrangler dev at ${proxy.url}, bare Worker at ${bare.url}; collecting distinct page cursors`,
  );
  // Distinct pages: every sort order, every cursor. Each is requested once per row.
  const paths: string[] = [];
  for (const sortBy of ["updatedAt", "createdAt"]) {
    for (const sortDir of ["desc", "asc"]) {
      paths.push(...(await pagePaths(fake, { maxPageSize: String(PAGE_SIZE), sortBy, sortDir }, 1_000)));
    }
  }
  const check = (_: string, body: string) => isList(body);

  await measured(fake, "direct: fake Extend, distinct pages (baseline)", () =>
    load({
      origin: fake.url,
      paths,
      amount: paths.length,
      connections: CONNECTIONS,
      headers: upstreamHeaders(fake),
      check,
    }),
  );
  await measured(fake, "runtime floor: GET /healthz via wrangler dev", () =>
    load({
      origin: proxy.url,
      paths: ["/healthz"],
      amount: PLAN.floorRequests,
      connections: CONNECTIONS,
      headers: {},
    }),
  );
  await measured(fake, "proxy, cache miss: distinct pages", () =>
    load({
      origin: proxy.url,
      paths,
      amount: paths.length,
      connections: CONNECTIONS,
      headers: proxyHeaders(proxy),
      check,
    }),
  );
  const hot = paths.slice(0, 1);
  await measured(fake, "proxy, cache hit: one page again and again", () =>
    load({
      origin: proxy.url,
      paths: hot,
      amount: PLAN.hitRequests,
      connections: CONNECTIONS,
      headers: proxyHeaders(proxy),
      check,
    }),
  );
  await (await fetch(`${bare.url}${hot[0]}`)).arrayBuffer();
  await measured(fake, "bare Hono + KV Worker, cache hit: the same page", () =>
    load({
      origin: bare.url,
      paths: hot,
      amount: PLAN.hitRequests,
      connections: CONNECTIONS,
      headers: {},
      check,
    }),
  );
  const cold = [`/workflow_runs?status=PENDING&maxPageSize=${PAGE_SIZE}&sortBy=createdAt&sortDir=asc`];
  await measured(fake, `cold burst: ${PLAN.burst} concurrent identical requests`, () =>
    load({
      origin: proxy.url,
      paths: cold,
      amount: PLAN.burst,
      connections: PLAN.burst,
      headers: proxyHeaders(proxy),
      check,
    }),
  );
  return { fake, proxy, bare, paths };
}

interface AnchorRow {
  scenario: string;
  connections: number;
  requests: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  malformed: number;
  /** Answers whose `x-cache` was not the one the row is about. */
  cacheMismatches: number;
  /** CPU of the serving wrangler dev group (all its processes) per request; concurrent rows only. */
  cpuMsPerRequest?: number;
}

const anchorRows: AnchorRow[] = [];

/** Rows of the anchor comparison, by what they measure. */
const ANCHOR = {
  direct: "direct: fake Extend, distinct pages",
  floor: "runtime floor: GET /healthz via wrangler dev",
  bareFloor: "bare Worker: GET /healthz",
  bareHit: "bare Hono + KV Worker: cache hit",
  bareFirstHit: "bare Hono + KV Worker: a page's first hit",
  bareMiss: "bare Hono + KV Worker: cache miss, distinct pages",
  hit: "proxy: cache hit (in-isolate L1)",
  hitNoLimiter: "ablation: proxy cache hit (L1), limiters unbound",
  missUnbound: "ablation: proxy cache miss, limiters and gateway unbound",
  kvHit: "proxy: a page's first hit (from KV)",
  miss: "proxy: cache miss, distinct pages",
} as const;

/** Full 100-run pages the other rows never ask for: a fresh miss for every round. */
async function freshPages(fake: FakeProcess, wanted: number): Promise<string[]> {
  const paths: string[] = [];
  for (const sortBy of ["updatedAt", "createdAt"]) {
    for (const sortDir of ["desc", "asc"]) {
      const walk = await pagePaths(
        fake,
        { status: "PROCESSED", maxPageSize: String(PAGE_SIZE), sortBy, sortDir },
        1_000,
      );
      // The last page of a walk is short, and a short page is a faster upstream call.
      paths.push(...walk.slice(0, -1));
    }
  }
  return paths.slice(0, wanted);
}

/**
 * The issue's anchor, in one run: the fake called directly, the runtime floor, a bare Hono + KV
 * Worker (bench/bare/) and the proxy, sequential requests interleaved one by one; then hits at
 * 8 connections in interleaved autocannon rounds. A KV hit is each miss page's first hit two
 * rounds later (misses do not fill the L1; a hit read from KV does).
 */
async function anchorScenarios(run: PageRun): Promise<void> {
  // The round trips a page makes besides KV: AUTH_RATE_LIMITER before the credentials are
  // checked, RATE_LIMITER beside the cache read, and on a miss the tenant's gateway object.
  const unlimited = await startProxy(run.fake, {
    vars: { ...SCAN_ONLY, ...NO_BUDGET },
    unbound: ["RATE_LIMITER", "AUTH_RATE_LIMITER", "TENANT"],
  });
  try {
    await anchorRounds(run, unlimited);
  } finally {
    await unlimited.close();
  }
}

async function anchorRounds({ fake, proxy, bare }: PageRun, unlimited: BenchProxy): Promise<void> {
  const LAG = 2;
  const pages = await freshPages(fake, PLAN.anchorRounds + LAG);
  const rounds = pages.length - LAG;
  if (rounds < 1) {
    notes.push("not enough distinct pages for the anchor comparison: its rows were skipped.");
    return;
  }
  log(`anchor: ${rounds} sequential rounds, interleaved`);
  const [hot = "/workflow_runs"] = await pagePaths(fake, { maxPageSize: String(PAGE_SIZE) }, 1);
  for (const path of [hot, ...pages.slice(0, LAG)]) {
    await (await fetch(`${proxy.url}${path}`, { headers: proxyHeaders(proxy) })).arrayBuffer();
    await (await fetch(`${bare.url}${path}`)).arrayBuffer();
  }
  // The hot page again: now from KV, so from here on it is an L1 hit.
  for (const instance of [proxy, unlimited, unlimited]) {
    await (await fetch(`${instance.url}${hot}`, { headers: proxyHeaders(instance) })).arrayBuffer();
  }
  await (await fetch(`${bare.url}${hot}`)).arrayBuffer();
  // The warm-up misses' KV writes land in waitUntil.
  await new Promise((resolve) => setTimeout(resolve, 500));
  const list = (body: string) => isList(body);
  const misses = pages.slice(LAG);
  const auth = proxyHeaders(proxy);
  const targets: Target[] = [
    { name: ANCHOR.direct, origin: fake.url, paths: misses, headers: upstreamHeaders(fake), check: list },
    { name: ANCHOR.floor, origin: proxy.url, paths: ["/healthz"], headers: {} },
    { name: ANCHOR.bareFloor, origin: bare.url, paths: ["/healthz"], headers: {} },
    { name: ANCHOR.bareHit, origin: bare.url, paths: [hot], headers: {}, check: list },
    { name: ANCHOR.hit, origin: proxy.url, paths: [hot], headers: auth, check: list, expectCache: "HIT" },
    {
      name: ANCHOR.hitNoLimiter,
      origin: unlimited.url,
      paths: [hot],
      headers: proxyHeaders(unlimited),
      check: list,
      expectCache: "HIT",
    },
    {
      name: ANCHOR.kvHit,
      origin: proxy.url,
      paths: pages.slice(0, rounds),
      headers: auth,
      check: list,
      expectCache: "HIT",
    },
    { name: ANCHOR.bareFirstHit, origin: bare.url, paths: pages.slice(0, rounds), headers: {}, check: list },
    { name: ANCHOR.bareMiss, origin: bare.url, paths: misses, headers: {}, check: list },
    { name: ANCHOR.miss, origin: proxy.url, paths: misses, headers: auth, check: list, expectCache: "MISS" },
    {
      name: ANCHOR.missUnbound,
      origin: unlimited.url,
      paths: misses,
      headers: proxyHeaders(unlimited),
      check: list,
      expectCache: "MISS",
    },
  ];
  for (const result of await interleaved(targets, rounds)) {
    anchorRows.push({
      scenario: result.name,
      connections: 1,
      requests: result.requests,
      p50Ms: result.p50,
      p99Ms: result.p99,
      errors: result.errors,
      malformed: result.malformed,
      cacheMismatches: result.mismatches,
    });
  }

  log(`anchor: ${PLAN.anchorConcurrentRounds} rounds at ${CONNECTIONS} connections`);
  const concurrent = [
    { name: ANCHOR.floor, server: proxy, path: "/healthz", headers: {} },
    { name: ANCHOR.bareFloor, server: bare, path: "/healthz", headers: {} },
    { name: ANCHOR.bareHit, server: bare, path: hot, headers: {} },
    { name: ANCHOR.hit, server: proxy, path: hot, headers: auth },
    { name: ANCHOR.hitNoLimiter, server: unlimited, path: hot, headers: proxyHeaders(unlimited) },
  ];
  const pooled = concurrent.map(() => ({ latencies: [] as number[], errors: 0, malformed: 0, cpuMs: 0 }));
  for (let round = 0; round < PLAN.anchorConcurrentRounds; round++) {
    for (let i = 0; i < concurrent.length; i++) {
      const index = (i + round) % concurrent.length;
      const kind = concurrent[index];
      const into = pooled[index];
      if (!kind || !into) continue;
      const cpuBefore = processGroupCpuMs(kind.server.pid);
      const result = await load({
        origin: kind.server.url,
        paths: [kind.path],
        amount: PLAN.anchorConcurrentRequests,
        connections: CONNECTIONS,
        headers: kind.headers,
        check: (path, body) => path === "/healthz" || isList(body),
      });
      // Work left after the responses (log lines, KV writes) belongs to these requests too.
      await new Promise((resolve) => setTimeout(resolve, 250));
      into.cpuMs += processGroupCpuMs(kind.server.pid) - cpuBefore;
      into.latencies.push(...result.latencies);
      into.errors += result.errors + result.non2xx;
      into.malformed += result.malformed;
    }
  }
  concurrent.forEach((kind, index) => {
    const into = pooled[index];
    if (!into) return;
    const sorted = into.latencies.sort((a, b) => a - b);
    anchorRows.push({
      scenario: kind.name,
      connections: CONNECTIONS,
      requests: sorted.length,
      p50Ms: percentile(sorted, 50),
      p99Ms: percentile(sorted, 99),
      errors: into.errors,
      malformed: into.malformed,
      cacheMismatches: 0,
      cpuMsPerRequest: sorted.length > 0 ? into.cpuMs / sorted.length : Number.NaN,
    });
  });
  for (const row of anchorRows) {
    log(`anchor ${row.scenario} (${row.connections}): p50 ${fmt(row.p50Ms)} ms, p99 ${fmt(row.p99Ms)} ms`);
  }
}

function anchor(scenario: string, connections = 1): AnchorRow | undefined {
  return anchorRows.find((r) => r.scenario === scenario && r.connections === connections);
}

/** Whether this build serves /stats, asked with an invalid query so no scan (and no cache) starts. */
async function statsAvailable(proxy: BenchProxy): Promise<boolean> {
  const response = await fetch(`${proxy.url}/stats?since=not-a-date`, { headers: proxyHeaders(proxy) });
  await response.arrayBuffer();
  return response.status !== 404 && response.status !== 405;
}

type FakeCounts = { listCalls: number; byStatus: Record<string, number> };

/** A whole-list row: the client's own view of its walk, and what the fake saw of it. */
function walkRow(
  scenario: string,
  runs: number,
  wallMs: number,
  counters: FakeCounts,
  outcome: Pick<StatsRow, "pages" | "total" | "complete" | "note">,
): StatsRow {
  return {
    scenario,
    runs,
    wallS: wallMs / 1000,
    upstreamCalls: counters.listCalls,
    upstream429: counters.byStatus["429"] ?? 0,
    ...outcome,
  };
}

function statsRow(scenario: string, runs: number, walk: StatsWalk, counters: FakeCounts): StatsRow {
  return walkRow(scenario, runs, walk.wallMs, counters, {
    pages: walk.pagesFetched,
    total: walk.total,
    complete: walk.complete,
    ...(walk.requests > 1
      ? { note: `${walk.requests} /stats calls (resume tokens), ${walk.waits} waits` }
      : {}),
  });
}

function sdkRow(scenario: string, runs: number, walk: SdkWalk, counters: FakeCounts): StatsRow {
  return walkRow(scenario, runs, walk.wallMs, counters, {
    pages: walk.pages,
    total: walk.total,
    complete: walk.failed === undefined,
    ...(walk.failed ? { note: walk.failed.slice(0, 120) } : {}),
  });
}

/** Lets the fake's one-second rate window drain so one scenario's calls do not count against the next. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 1_100));

async function statsScenarios(): Promise<void> {
  for (const size of [...PLAN.statsDatasets, ...PLAN.memoryOnlyDatasets]) {
    log(`/stats over ${size} runs with the fake's ${RATE_LIMIT}/s rate limit`);
    const fake = await startFakeProcess({ size, ...LATENCY, rateLimitPerSecond: RATE_LIMIT });
    const proxy = await startProxy(fake, { vars: SCAN_ONLY });
    try {
      if (!(await statsAvailable(proxy))) {
        notes.push("/stats is not served by this build: the /stats rows were skipped.");
        return;
      }
      await settle();
      await fake.reset();
      const inspector = await inspectWorkerHeap(proxy.inspectorPort);
      const heap = await sampleWorkerHeap(inspector);
      const memory = sampleWorkerdMemory(proxy);
      const cold = await walkStats(proxy, {}, PLAN.walkLimitMs);
      const { idleMb, peakMb } = memory.stop();
      const { baseMb, peakMb: heapPeakMb, afterMb } = await heap.stop();
      inspector.close();
      memoryRows.push({ runs: size, idleMb, peakMb, heapBaseMb: baseMb, heapPeakMb, heapAfterMb: afterMb });
      statsRows.push(statsRow("/stats, cold cache", size, cold, await fake.counters()));
      log(
        `/stats cold over ${size}: ${(cold.wallMs / 1000).toFixed(2)} s, peak workerd RSS ${peakMb.toFixed(0)} MB, ` +
          `isolate heap ${baseMb.toFixed(1)} → peak ${heapPeakMb.toFixed(1)} → ${afterMb.toFixed(1)} MB`,
      );

      if (!PLAN.statsDatasets.includes(size)) continue;
      await settle();
      await fake.reset();
      const warm = await walkStats(proxy, {}, PLAN.walkLimitMs);
      statsRows.push(statsRow("/stats, warm (repeat)", size, warm, await fake.counters()));

      if (size <= PLAN.sdkDefaultDataset) {
        await settle();
        await fake.reset();
        log(`SDK loop, default page size, over ${size} runs`);
        const walk = await walkWithSdk(fake, undefined, PLAN.walkLimitMs);
        statsRows.push(sdkRow("SDK loop, default page size (10)", size, walk, await fake.counters()));
      }
      await settle();
      await fake.reset();
      log(`SDK loop, maxPageSize 1000, over ${size} runs`);
      const walk = await walkWithSdk(fake, 1000, PLAN.walkLimitMs);
      statsRows.push(sdkRow("SDK loop, maxPageSize 1000", size, walk, await fake.counters()));
    } finally {
      await proxy.close();
      await fake.stop();
    }
  }
}

async function loadRun(fake: FakeProcess, proxy: BenchProxy, paths: string[]): Promise<void> {
  const hasStats = await statsAvailable(proxy);
  if (hasStats) await walkStats(proxy, {}, PLAN.walkLimitMs);
  // Nine cached pages to one /stats, all warmed by the scenarios before.
  const mix: string[] = [];
  for (const [i, path] of paths.slice(0, 45).entries()) {
    mix.push(path);
    if (hasStats && i % 9 === 8) mix.push("/stats");
  }
  const check = (path: string, body: string) => (path.startsWith("/stats") ? isStats(body) : isList(body));
  await measured(
    fake,
    `load: ${PLAN.loadRequests} requests at concurrency ${PLAN.loadConnections} (pages${hasStats ? " + /stats" : ""})`,
    () =>
      load({
        origin: proxy.url,
        paths: mix,
        amount: PLAN.loadRequests,
        connections: PLAN.loadConnections,
        headers: proxyHeaders(proxy),
        check,
      }),
  );
}

const fmt = (n: number, digits = 2) => (Number.isFinite(n) ? n.toFixed(digits) : "n/a");

function table(header: string[], body: (string | number)[][]): string {
  const cells = [header, ...body.map((r) => r.map(String))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? "").length)));
  const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(widths[i] ?? 0)).join(" | ")} |`;
  return [
    line(header),
    `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`,
    ...cells.slice(1).map(line),
  ].join("\n");
}

function find(prefix: string): Row | undefined {
  return rows.find((r) => r.scenario.startsWith(prefix));
}

function targets(): { target: string; measured: string; met: boolean | null }[] {
  const out: { target: string; measured: string; met: boolean | null }[] = [];
  const direct = find("direct");
  const floor = find("runtime floor");
  const miss = find("proxy, cache miss");
  const hit = find("proxy, cache hit");
  const burst = find("cold burst");
  const loadRow = find("load:");
  if (direct && hit) {
    const ratio = hit.p50Ms / direct.p50Ms;
    out.push({
      target: "cache hit p50 ≤ 1/10 of direct p50",
      measured: `${fmt(ratio, 3)}× direct`,
      met: ratio <= 0.1,
    });
  }
  if (direct && miss && floor) {
    const own = miss.p50Ms - direct.p50Ms - floor.p50Ms;
    out.push({
      target: "miss overhead beyond the runtime floor ≤ 3 ms (p50)",
      measured: `${fmt(own)} ms`,
      met: own <= 3,
    });
  }
  const seqDirect = anchor(ANCHOR.direct);
  const seqFloor = anchor(ANCHOR.floor);
  const seqBareHit = anchor(ANCHOR.bareHit);
  const seqHit = anchor(ANCHOR.hit);
  const seqKvHit = anchor(ANCHOR.kvHit);
  const seqMiss = anchor(ANCHOR.miss);
  const seqBareMiss = anchor(ANCHOR.bareMiss);
  const seqBareFloor = anchor(ANCHOR.bareFloor);
  const conBareHit = anchor(ANCHOR.bareHit, CONNECTIONS);
  const conHit = anchor(ANCHOR.hit, CONNECTIONS);
  const versusBare = (ours: AnchorRow | undefined, bare: AnchorRow | undefined, what: string) => {
    if (!ours || !bare) return;
    const ratio = ours.p50Ms / bare.p50Ms;
    out.push({
      target: `${what} p50 ≤ 1.0× the bare Worker's hit`,
      measured: `${fmt(ratio, 2)}× (${fmt(ours.p50Ms)} vs ${fmt(bare.p50Ms)} ms)`,
      met: ratio <= 1,
    });
  };
  versusBare(seqHit, seqBareHit, "hit (L1), sequential,");
  const seqBareFirstHit = anchor(ANCHOR.bareFirstHit);
  if (seqKvHit && seqBareFirstHit) {
    const ratio = seqKvHit.p50Ms / seqBareFirstHit.p50Ms;
    out.push({
      target: "a page's first hit (from KV), sequential, p50 ≤ 1.0× the bare Worker's first hit",
      measured: `${fmt(ratio, 2)}× (${fmt(seqKvHit.p50Ms)} vs ${fmt(seqBareFirstHit.p50Ms)} ms)`,
      met: ratio <= 1,
    });
  }
  versusBare(conHit, conBareHit, `hit (L1), ${CONNECTIONS} connections,`);
  if (seqHit && seqDirect) {
    const ratio = seqHit.p50Ms / seqDirect.p50Ms;
    out.push({
      target: "hit p50 ≤ 0.1× direct, sequential, 100 ms upstream",
      measured: `${fmt(ratio, 3)}× (${fmt(seqHit.p50Ms)} vs ${fmt(seqDirect.p50Ms)} ms)`,
      met: ratio <= 0.1,
    });
  }
  if (seqMiss && seqDirect && seqFloor) {
    const own = seqMiss.p50Ms - seqDirect.p50Ms - seqFloor.p50Ms;
    const bareOwn =
      seqBareMiss && seqBareFloor ? seqBareMiss.p50Ms - seqDirect.p50Ms - seqBareFloor.p50Ms : Number.NaN;
    out.push({
      target: "miss own work ≤ 3 ms beyond direct + floor (p50), sequential",
      measured:
        `${fmt(own)} ms (${fmt(seqMiss.p50Ms)} − ${fmt(seqDirect.p50Ms)} − ${fmt(seqFloor.p50Ms)}); ` +
        `the bare Worker's: ${fmt(bareOwn)} ms`,
      met: own <= 3,
    });
  }
  if (burst) {
    const calls = burst.upstreamPerRequest * burst.requests;
    out.push({
      target: "cold burst of 100 → 1 upstream call",
      measured: `${fmt(calls, 0)} calls`,
      met: calls <= 1,
    });
  }
  for (const size of PLAN.statsDatasets) {
    const stats = statsRows.find((r) => r.scenario === "/stats, cold cache" && r.runs === size);
    const sdkDefault = statsRows.find((r) => r.scenario.startsWith("SDK loop, default") && r.runs === size);
    const sdk1000 = statsRows.find(
      (r) => r.scenario.startsWith("SDK loop, maxPageSize 1000") && r.runs === size,
    );
    if (stats && sdkDefault) {
      const x = sdkDefault.wallS / stats.wallS;
      out.push({
        target: `/stats ≥ 50× faster than SDK default page size (${size} runs)`,
        measured: `${fmt(x, 1)}×`,
        met: x >= 50,
      });
    }
    if (stats && sdk1000) {
      const x = sdk1000.wallS / stats.wallS;
      const want = size >= 100_000 ? 2 : null;
      out.push({
        target: `/stats vs SDK maxPageSize 1000 (${size} runs)${want ? " ≥ 2×" : ""}`,
        measured: `${fmt(x, 1)}×, 429s ${stats.upstream429} vs SDK ${sdk1000.upstream429}`,
        met: want === null ? null : x >= want && stats.upstream429 <= sdk1000.upstream429,
      });
      const pages = stats.pages || Math.ceil(size / 1000);
      const pageLatencyS = (LATENCY.latencyBaseMs + LATENCY.latencyPerRunMs * Math.min(1000, size)) / 1000;
      const limit = Math.max(pages / RATE_LIMIT, pageLatencyS);
      out.push({
        target: `/stats vs the physical limit (${size} runs)`,
        measured: `${fmt(stats.wallS)} s vs ${fmt(limit)} s (max(${pages} pages ÷ ${RATE_LIMIT}/s, one page)); one sequential chain would take ${fmt(pages * pageLatencyS)} s`,
        met: null,
      });
    }
  }
  if (memoryRows.length >= 2) {
    // The isolate's heap is what the scan's own code holds; RSS is shown for completeness. Up to
    // six pages are in flight, so the peak rises until pages are full (1,000 runs per status);
    // flat means that beyond that, 3× the runs move the peak over the starting heap by at most 25%.
    const full = memoryRows.filter((m) => m.runs >= 100_000 || QUICK);
    const [a, b] = full.length >= 2 ? full.slice(-2) : memoryRows.slice(-2);
    if (a && b) {
      const over = (m: MemoryRow) => m.heapPeakMb - m.heapBaseMb;
      out.push({
        target: "/stats memory flat in dataset size",
        measured:
          `isolate heap peak ${memoryRows.map((m) => `${fmt(m.heapPeakMb, 1)} MB at ${m.runs}`).join(", ")} runs ` +
          `(${fmt(a.heapBaseMb, 1)} MB before); workerd RSS peak ${memoryRows.map((m) => fmt(m.peakMb, 0)).join(" → ")} MB`,
        met: over(b) <= over(a) * 1.25,
      });
    }
  }
  const memoryGoal = memory ? memoryTarget(memory) : undefined;
  if (memoryGoal) out.push(memoryGoal);
  if (loadRow) {
    out.push({
      target: "load run: 0 errors, 0 malformed",
      measured: `${loadRow.errors} errors, ${loadRow.malformed} malformed of ${loadRow.requests}`,
      met: loadRow.errors === 0 && loadRow.malformed === 0 && loadRow.requests === PLAN.loadRequests,
    });
  }
  return out;
}

/** Requests of a profiled run; sequential, like the issue's measurement. */
const PROFILE_HITS = 600;
const PROFILE_MISSES = 150;

/**
 * CPU profiles of the isolate while one connection asks for one cached page again and again
 * (hits), then for distinct pages (misses), each charged to the parts of a request; the raw
 * profiles go to .wrangler/bench/{hit,miss}.cpuprofile (open them in Chrome DevTools).
 */
async function profileRequests(): Promise<{ kind: string; breakdown: Breakdown }[]> {
  const fake = await startFakeProcess({ size: 5_000, ...LATENCY });
  const proxy = await startProxy(fake, { vars: { ...SCAN_ONLY, ...NO_BUDGET } });
  try {
    const pages: string[] = [];
    for (const sortBy of ["updatedAt", "createdAt"]) {
      for (const sortDir of ["desc", "asc"]) {
        pages.push(...(await pagePaths(fake, { maxPageSize: String(PAGE_SIZE), sortBy, sortDir }, 1_000)));
      }
    }
    const [hot = "/workflow_runs"] = pages;
    for (let i = 0; i < 2; i++) {
      await (await fetch(`${proxy.url}${hot}`, { headers: proxyHeaders(proxy) })).arrayBuffer();
    }
    const run = (paths: string[], amount: number) =>
      load({
        origin: proxy.url,
        paths,
        amount,
        connections: 1,
        headers: proxyHeaders(proxy),
        check: (_, body) => isList(body),
      });
    // Warms the JIT (and the miss path on pages the profiled misses do not use).
    await run([hot], PROFILE_HITS);
    await run(pages.slice(1, 21), 20);
    const misses = pages.slice(21, 21 + PROFILE_MISSES);
    const inspector = await attachInspector(proxy.inspectorPort);
    try {
      const moduleOf = await moduleMap(inspector);
      const out: { kind: string; breakdown: Breakdown }[] = [];
      for (const [kind, paths, amount] of [
        ["hit", [hot], PROFILE_HITS],
        ["miss", misses, misses.length],
      ] as const) {
        let result: LoadResult | undefined;
        const profile = await profileWhile(inspector, async () => {
          result = await run([...paths], amount);
        }).catch((error: unknown) => {
          // One failed profile (the inspector dropped it) must not cost the others.
          log(`profile of ${kind}s failed: ${error instanceof Error ? error.message : String(error)}`);
          return undefined;
        });
        if (!profile) continue;
        await writeFile(
          join(PROJECT_ROOT, ".wrangler", "bench", `${kind}.cpuprofile`),
          JSON.stringify(profile),
        );
        const breakdown = attribute(profile, moduleOf, result?.requests ?? amount);
        log(
          `profiled ${breakdown.requests} ${kind}s: p50 ${fmt(result?.p50 ?? Number.NaN)} ms while profiling`,
        );
        printBreakdown(kind, breakdown);
        out.push({ kind, breakdown });
      }
      return out;
    } finally {
      inspector.close();
    }
  } finally {
    await proxy.close();
    await fake.stop();
  }
}

function printBreakdown(kind: string, breakdown: Breakdown): void {
  console.log(
    `\nCPU profile of ${breakdown.requests} sequential cache ${kind}s: ${fmt(breakdown.wallMs, 0)} ms sampled, ` +
      `isolate busy ${fmt(breakdown.busyMs, 0)} ms (${fmt(breakdown.busyMs / breakdown.requests, 3)} ms a ${kind})\n`,
  );
  console.log(
    table(
      [`part of a ${kind}`, `sampled ms a ${kind}`, "share of non-idle samples"],
      breakdown.parts.map((p) => [p.name, fmt(p.msPerRequest, 3), `${fmt(p.share * 100, 1)}%`]),
    ),
  );
  console.log("\nHeaviest functions by self time\n");
  console.log(
    table(
      ["function", "module", "ms"],
      breakdown.topFunctions.map((f) => [f.name, f.module, fmt(f.ms, 1)]),
    ),
  );
}

async function main(): Promise<void> {
  const started = Date.now();
  const machine = describeMachine();
  if (flags.backfill) {
    const backfill = await runIndexScenarios(
      runIndexPlan({
        quick: QUICK,
        runs: flags.runs,
        backfillOnly: true,
        profileBackfill: flags.profile,
      }),
    );
    console.log(`\n${machineLine(machine)}`);
    printRunIndex(backfill);
    process.exit(0);
  }
  if (flags.profile) {
    await profileRequests();
    return;
  }
  if (flags.index) {
    const plan = QUICK ? QUICK_PLAN : FULL_PLAN;
    const datasets = flags.runs?.map(Number).filter((n) => Number.isSafeInteger(n) && n > 0);
    const results = await runIndexScenarios(
      datasets?.length ? { ...plan, datasets, sdkUpTo: Math.max(...datasets) } : plan,
    );
    console.log(`\n${machine.cpu}, load average ${machine.loadAverageAtStart} → ${loadavg()[0]?.toFixed(2)}`);
    printRunIndex(results);
    return;
  }
  let gateway: GatewayResults | undefined;
  if (flags.gateway) {
    gateway = await gatewayScenarios(QUICK ? GATEWAY_QUICK : GATEWAY_FULL);
    const command = `npm run bench -- ${process.argv.slice(2).join(" ")}`;
    await writeFile(
      flags.out ?? join(PROJECT_ROOT, "bench", "results.gateway.json"),
      `${JSON.stringify({ command, machine, finishedAt: new Date().toISOString(), gateway }, null, 2)}\n`,
    );
    console.log(`\n${command} on ${machineLine(machine)}`);
    printGateway(gateway);
    return;
  }
  const memoryPlan = {
    ...(QUICK ? QUICK_MEMORY_PLAN : FULL_MEMORY_PLAN),
    attribute: flags["heap-profile"],
  };
  if (!flags.memory) {
    const run = await pageScenarios();
    try {
      await anchorScenarios(run);
      if (!flags.pages) await loadRun(run.fake, run.proxy, run.paths);
    } finally {
      await run.proxy.close();
      await run.bare.close();
      await run.fake.stop();
    }
    if (!flags.pages) await statsScenarios();
  }
  if (!flags.pages) memory = await memoryScenarios(memoryPlan);
  const runIndex =
    flags.pages || flags.memory ? undefined : await runIndexScenarios(QUICK ? QUICK_PLAN : FULL_PLAN);
  if (!flags.pages && !flags.memory) gateway = await gatewayScenarios(QUICK ? GATEWAY_QUICK : GATEWAY_FULL);

  const results = {
    command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(" ")}` : ""}`,
    mode: QUICK ? "quick" : "full",
    machine,
    finishedAt: new Date().toISOString(),
    durationS: (Date.now() - started) / 1000,
    loadAverageAtEnd: Number(loadavg()[0]?.toFixed(2)),
    settings: {
      ...LATENCY,
      rateLimitPerSecond: RATE_LIMIT,
      pageSize: PAGE_SIZE,
      connections: CONNECTIONS,
      plan: PLAN,
    },
    rows,
    anchor: anchorRows,
    stats: statsRows,
    memory: memoryRows,
    scanMemory: memory,
    targets: targets(),
    runIndex,
    gateway,
    notes,
  };
  const out = flags.out ?? join(PROJECT_ROOT, "bench", flags.memory ? "results-memory.json" : "results.json");
  await writeFile(out, `${JSON.stringify(results, null, 2)}\n`);

  console.log(
    `\n${results.command} on ${machine.cpu}, ${machine.memoryGb} GB, ${machine.os}, Node ${machine.node}, ` +
      `load average ${machine.loadAverageAtStart} → ${results.loadAverageAtEnd}`,
  );
  console.log(
    `fake Extend latency ${LATENCY.latencyBaseMs} ms + ${LATENCY.latencyPerRunMs} ms/run; ${PAGE_SIZE}-run pages; ${CONNECTIONS} connections\n`,
  );
  console.log(
    table(
      [
        "scenario",
        "requests",
        "p50 ms",
        "p99 ms",
        "req/s",
        "errors",
        "malformed",
        "upstream calls / request",
      ],
      rows.map((r) => [
        r.scenario,
        r.requests,
        fmt(r.p50Ms),
        fmt(r.p99Ms),
        fmt(r.rps, 0),
        r.errors,
        r.malformed,
        fmt(r.upstreamPerRequest, 3),
      ]),
    ),
  );
  if (anchorRows.length > 0) {
    console.log(
      "\nAgainst the anchor: sequential requests interleaved one by one, then hits in interleaved " +
        `rounds at ${CONNECTIONS} connections\n`,
    );
    console.log(
      table(
        [
          "scenario",
          "connections",
          "requests",
          "p50 ms",
          "p99 ms",
          "errors",
          "x-cache mismatches",
          "p50 ÷ bare hit",
          "CPU ms / request",
        ],
        anchorRows.map((r) => {
          const bareHit = anchor(ANCHOR.bareHit, r.connections);
          return [
            r.scenario,
            r.connections,
            r.requests,
            fmt(r.p50Ms),
            fmt(r.p99Ms),
            r.errors + r.malformed,
            r.cacheMismatches,
            bareHit ? fmt(r.p50Ms / bareHit.p50Ms) : "",
            r.cpuMsPerRequest === undefined ? "" : fmt(r.cpuMsPerRequest),
          ];
        }),
      ),
    );
  }
  if (statsRows.length > 0) {
    console.log(`\nWhole-list statistics, fake Extend rate limit ${RATE_LIMIT}/s\n`);
    console.log(
      table(
        [
          "scenario",
          "runs",
          "wall s",
          "upstream calls",
          "upstream 429s",
          "pages",
          "total",
          "complete",
          "note",
        ],
        statsRows.map((r) => [
          r.scenario,
          r.runs,
          fmt(r.wallS),
          r.upstreamCalls,
          r.upstream429,
          r.pages,
          r.total,
          String(r.complete),
          r.note ?? "",
        ]),
      ),
    );
  }
  if (memoryRows.length > 0) {
    console.log("\nMemory during a cold /stats: the Worker isolate's V8 heap, and workerd's RSS\n");
    console.log(
      table(
        ["runs", "heap before MB", "heap peak MB", "heap after MB", "RSS idle MB", "RSS peak MB"],
        memoryRows.map((m) => [
          m.runs,
          fmt(m.heapBaseMb, 1),
          fmt(m.heapPeakMb, 1),
          fmt(m.heapAfterMb, 1),
          fmt(m.idleMb, 0),
          fmt(m.peakMb, 0),
        ]),
      ),
    );
  }
  if (memory) printMemory(memory, table);
  console.log("\nTargets\n");
  console.log(
    table(
      ["target", "measured", "met"],
      results.targets.map((t) => [t.target, t.measured, t.met === null ? "n/a" : t.met ? "yes" : "NO"]),
    ),
  );
  for (const note of notes) console.log(`\nnote: ${note}`);
  if (runIndex) printRunIndex(runIndex);
  if (gateway) printGateway(gateway);
  console.log(`\nwritten to ${out} in ${fmt(results.durationS, 0)} s`);
}

// Bounded in time as well as in count: a stuck run ends, and says so.
const WATCHDOG_MS = QUICK ? 10 * 60_000 : 40 * 60_000;
setTimeout(() => {
  log(`no result after ${WATCHDOG_MS / 60_000} minutes; giving up`);
  process.exit(1);
}, WATCHDOG_MS).unref();
// Exiting runs the "exit" hooks that take down the wrangler process groups and fake Extends.
process.once("SIGINT", () => process.exit(130));
process.once("SIGTERM", () => process.exit(143));
await main();
