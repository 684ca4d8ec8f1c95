// Building blocks of `npm run bench`: the fake Extend in its own process, the proxy under wrangler
// with benchmark limits, a bounded load runner with exact latencies, a /stats walker, the SDK
// baseline and a workerd memory sampler.
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { Agent, request as httpRequest } from "node:http";
import { cpus, loadavg, release, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import autocannon, { type AutocannonRequest } from "autocannon";
import { ExtendClient } from "extend-ai";
import type { FakeCounters, FakeListTimes } from "../fake/server.ts";
import {
  freePort,
  PROJECT_ROOT,
  processGroupMembers,
  startWranglerDev,
  type WranglerDev,
} from "../scripts/wrangler-dev.ts";

/** The fake's latency model in every row: 50 ms + 0.5 ms per run returned (100 runs: 100 ms). */
export const LATENCY = { latencyBaseMs: 50, latencyPerRunMs: 0.5 };
/** Extend's pay-as-you-go plan: 10 GET requests per second, where a row gives the fake a limit. */
export const RATE_LIMIT = 10;
/** 100 runs a page: 50 + 100 × 0.5 = 100 ms upstream, the latency the cache-hit target names. */
export const PAGE_SIZE = 100;
/** Connections of the concurrent page rows. */
export const CONNECTIONS = 8;
/** Rows that measure the page path or the scan run without the run index, whose backfill would share Extend's budget. */
export const SCAN_ONLY = { RUN_INDEX: "off" };
/**
 * The page and hop rows fire distinct misses far faster than Extend's 10 GET/s: under the
 * default UPSTREAM_MAX_RPS they would measure the gateway's budget (a lone caller at 7 calls a
 * second), not the path. The fake of those rows has no rate limit; the /stats rows keep the default.
 */
export const NO_BUDGET = { UPSTREAM_MAX_RPS: "1000" };

/** What a run's figures were measured on; the load shifts every row, so it is part of each. */
export interface Machine {
  cpu: string;
  memoryGb: number;
  os: string;
  node: string;
  /** 1-minute load average at the start. */
  loadAverageAtStart: number;
}

export function describeMachine(): Machine {
  const cpu = cpus();
  return {
    cpu: `${cpu[0]?.model ?? "unknown"} × ${cpu.length}`,
    memoryGb: Math.round(totalmem() / 2 ** 30),
    os: `${process.platform} ${release()}`,
    node: process.version,
    loadAverageAtStart: Number(loadavg()[0]?.toFixed(2)),
  };
}

/** One line for the end of a run: the machine and how its load moved. */
export function machineLine(machine: Machine): string {
  return (
    `${machine.cpu}, ${machine.memoryGb} GB, ${machine.os}, Node ${machine.node}, load average ` +
    `${machine.loadAverageAtStart} → ${Number(loadavg()[0]?.toFixed(2))}`
  );
}

export const API_VERSION = "2026-02-09";

/** The fake Extend in a child process, so the load generator never steals its event loop. */
export interface FakeProcess {
  url: string;
  apiKey: string;
  counters(): Promise<FakeCounters>;
  /** Arrival times (the fake's clock, ms) of the list requests since the last reset. */
  listTimes(): Promise<number[]>;
  reset(): Promise<void>;
  stop(): Promise<void>;
}

export interface FakeProcessOptions {
  size: number;
  latencyBaseMs: number;
  latencyPerRunMs: number;
  rateLimitPerSecond?: number;
}

export async function startFakeProcess(options: FakeProcessOptions): Promise<FakeProcess> {
  const apiKey = `sk_bench_${randomBytes(12).toString("hex")}`;
  const args = [
    join(PROJECT_ROOT, "fake", "server.ts"),
    "--port",
    "0",
    "--size",
    String(options.size),
    "--api-key",
    apiKey,
    "--latency-base",
    String(options.latencyBaseMs),
    "--latency-per-run",
    String(options.latencyPerRunMs),
    ...(options.rateLimitPerSecond ? ["--rate-limit", String(options.rateLimitPerSecond)] : []),
  ];
  const child: ChildProcess = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "inherit"] });
  const killOnExit = () => child.kill("SIGKILL");
  process.once("exit", killOnExit);
  const url = await new Promise<string>((resolve, reject) => {
    if (!child.stdout) return reject(new Error("fake Extend has no stdout"));
    const lines = createInterface({ input: child.stdout });
    lines.once("line", (line) => {
      try {
        resolve((JSON.parse(line) as { url: string }).url);
      } catch {
        reject(new Error(`fake Extend did not start: ${line}`));
      }
    });
    child.once("exit", (code) => reject(new Error(`fake Extend exited with ${code}`)));
  });
  return {
    url,
    apiKey,
    counters: async () => (await (await fetch(`${url}/__fake/counters`)).json()) as FakeCounters,
    listTimes: async () => ((await (await fetch(`${url}/__fake/list-times`)).json()) as FakeListTimes).at,
    reset: async () => {
      await (await fetch(`${url}/__fake/reset`, { method: "POST" })).arrayBuffer();
    },
    stop: async () => {
      process.off("exit", killOnExit);
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      await exited;
    },
  };
}

/** Every Rate Limiting binding's limit in a benchmark: far above any load it sends. */
const BENCH_LIMIT = 1_000_000;
/** The settings that repeat the bindings' limits, matching the benchmark's copy of wrangler.toml. */
const BENCH_LIMIT_SETTINGS = {
  RATE_LIMITER_LIMIT: String(BENCH_LIMIT),
  STATS_RATE_LIMITER_LIMIT: String(BENCH_LIMIT),
  AUTH_RATE_LIMITER_LIMIT: String(BENCH_LIMIT),
};

/** A copy of wrangler.toml whose per-caller limits cannot interfere with a benchmark's load. */
async function benchConfig(unbound: readonly string[]): Promise<string> {
  const dir = join(PROJECT_ROOT, ".wrangler", "bench");
  await mkdir(dir, { recursive: true });
  const source = await readFile(join(PROJECT_ROOT, "wrangler.toml"), "utf8");
  let config = source
    .replace(/^main\s*=\s*"([^"]+)"/m, (_, main: string) => `main = "${join(PROJECT_ROOT, main)}"`)
    .replace(/simple\s*=\s*\{\s*limit\s*=\s*\d+/g, `simple = { limit = ${BENCH_LIMIT}`);
  for (const name of unbound) {
    // Top-level blocks only: the environments' are `[[env.<name>.ratelimits]]` and the like.
    const block = new RegExp(
      `^\\[\\[(?:ratelimits|durable_objects\\.bindings)\\]\\]\\nname = "${name}"\\n(?:(?!\\[\\[)[^\\n]*\\n)*`,
      "m",
    );
    if (!block.test(config)) throw new Error(`wrangler.toml has no top-level ${name} binding to drop`);
    config = config.replace(block, "");
  }
  const suffix = unbound.length > 0 ? `.without-${unbound.join("-")}` : "";
  const path = join(dir, `wrangler${suffix}.toml`);
  await writeFile(path, config);
  return path;
}

export interface BenchProxy extends WranglerDev {
  token: string;
  /** wrangler's DevTools inspector, for `inspectWorkerHeap`. */
  inspectorPort: number;
  close(): Promise<void>;
}

/** The proxy under `wrangler dev` on loopback, with a fresh (cold) local KV. */
export interface ProxyOptions {
  vars?: Record<string, string>;
  /**
   * Rate Limiting or Durable Object bindings to leave unbound, an ablation: the proxy then fails
   * open (a limiter lets the request through, the gateway's calls go direct), with a warning on
   * its log line, and skips that round trip.
   */
  unbound?: readonly string[];
  /** wrangler's output line by line, at `logLevel` (the request log needs "log"). */
  onLine?: (line: string) => void;
  logLevel?: "info" | "log";
}

export async function startProxy(fake: FakeProcess, options: ProxyOptions = {}): Promise<BenchProxy> {
  const token = `bench_${randomBytes(24).toString("hex")}`;
  const persistTo = await mkdtemp(join(tmpdir(), "extend-runs-proxy-bench-"));
  const inspectorPort = await freePort();
  const dev = await startWranglerDev({
    configPath: await benchConfig(options.unbound ?? []),
    persistTo,
    inspectorPort,
    ...(options.onLine ? { onLine: options.onLine } : {}),
    ...(options.logLevel ? { logLevel: options.logLevel } : {}),
    vars: {
      EXTEND_API_BASE_URL: fake.url,
      EXTEND_API_KEY: fake.apiKey,
      CLIENT_TOKENS: token,
      ALLOW_ANONYMOUS: "false",
      ...BENCH_LIMIT_SETTINGS,
      ...options.vars,
    },
  });
  return {
    ...dev,
    token,
    inspectorPort,
    close: async () => {
      await dev.stop();
      await rm(persistTo, { recursive: true, force: true });
    },
  };
}

/** The benchmark's anchor, bench/bare/worker.ts under `wrangler dev`, with a fresh local KV. */
export async function startBareWorker(fake: FakeProcess): Promise<BenchProxy> {
  const persistTo = await mkdtemp(join(tmpdir(), "extend-runs-proxy-bench-bare-"));
  const inspectorPort = await freePort();
  const dev = await startWranglerDev({
    configPath: join(PROJECT_ROOT, "bench", "bare", "wrangler.toml"),
    persistTo,
    inspectorPort,
    vars: { UPSTREAM_URL: fake.url, UPSTREAM_KEY: fake.apiKey },
  });
  return {
    ...dev,
    token: "",
    inspectorPort,
    close: async () => {
      await dev.stop();
      await rm(persistTo, { recursive: true, force: true });
    },
  };
}

export interface LoadResult {
  requests: number;
  /** Every response's latency in ms, sorted. */
  latencies: number[];
  p50: number;
  p99: number;
  rps: number;
  errors: number;
  non2xx: number;
  malformed: number;
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN;
}

export interface LoadOptions {
  origin: string;
  /** Paths in order; the run makes exactly `amount` requests cycling through them. */
  paths: string[];
  amount: number;
  connections: number;
  headers: Record<string, string>;
  /** Checks each body (JSON shape); a false counts as malformed. */
  check?: (path: string, body: string) => boolean;
  timeoutSeconds?: number;
}

/** A bounded autocannon run; latencies come from its per-response timer in fractional ms. */
export async function load(options: LoadOptions): Promise<LoadResult> {
  let next = 0;
  let malformed = 0;
  const pathOf = new WeakMap<Record<string, unknown>, string>();
  const request: AutocannonRequest = {
    setupRequest: (req, context) => {
      const path = options.paths[next++ % options.paths.length] ?? "/";
      pathOf.set(context, path);
      return { ...req, path };
    },
    onResponse: (status, body, context) => {
      const path = pathOf.get(context) ?? "";
      if (status === 200 && options.check && !options.check(path, body)) malformed += 1;
    },
  };
  const latencies: number[] = [];
  const instance = autocannon({
    url: options.origin,
    connections: options.connections,
    amount: options.amount,
    timeout: options.timeoutSeconds ?? 60,
    headers: options.headers,
    requests: [request],
  });
  instance.on("response", (_client: unknown, _status: number, _bytes: number, ms: number) => {
    latencies.push(ms);
  });
  const result = await instance;
  latencies.sort((a, b) => a - b);
  return {
    requests: result.requests.total,
    latencies,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    rps: result.duration > 0 ? result.requests.total / result.duration : Number.NaN,
    errors: result.errors + result.timeouts,
    non2xx: result.non2xx,
    malformed,
  };
}

/** The list-shape check used by every page row. */
export function isList(body: string): boolean {
  try {
    const json = JSON.parse(body) as { object?: unknown; data?: unknown };
    return json.object === "list" && Array.isArray(json.data);
  } catch {
    return false;
  }
}

export interface StatsBody {
  object: "workflow_run_stats";
  total: number;
  byStatus: Record<string, number>;
  complete: boolean;
  pagesFetched: number;
  resumeToken?: string | null;
}

export function isStats(body: string): boolean {
  try {
    const json = JSON.parse(body) as Partial<StatsBody>;
    return json.object === "workflow_run_stats" && typeof json.total === "number";
  } catch {
    return false;
  }
}

export interface StatsWalk {
  wallMs: number;
  requests: number;
  pagesFetched: number;
  total: number;
  complete: boolean;
  /** Our own 429/503 answers the client had to wait out. */
  waits: number;
}

/** GET /stats, following resumeToken until complete, as a client of the contract would. */
export async function walkStats(
  proxy: BenchProxy,
  query: Record<string, string>,
  limitMs: number,
): Promise<StatsWalk> {
  const started = performance.now();
  let requests = 0;
  let waits = 0;
  let pagesFetched = 0;
  let resumeToken: string | undefined;
  let last: StatsBody | undefined;
  while (performance.now() - started < limitMs) {
    const params = new URLSearchParams(query);
    if (resumeToken) params.set("resumeToken", resumeToken);
    const response = await fetch(`${proxy.url}/stats?${params}`, {
      headers: { authorization: `Bearer ${proxy.token}` },
    });
    requests += 1;
    if (response.status === 429 || response.status === 503) {
      waits += 1;
      await response.arrayBuffer();
      const seconds = Number(response.headers.get("retry-after") ?? "1");
      await new Promise((resolve) => setTimeout(resolve, Math.max(1, seconds) * 1000));
      continue;
    }
    if (!response.ok) throw new Error(`/stats answered ${response.status}: ${await response.text()}`);
    last = (await response.json()) as StatsBody;
    // Cumulative across resumed calls: the last answer holds the whole scan's count.
    pagesFetched = last.pagesFetched;
    if (last.complete || !last.resumeToken) break;
    resumeToken = last.resumeToken;
  }
  return {
    wallMs: performance.now() - started,
    requests,
    pagesFetched,
    total: last?.total ?? Number.NaN,
    complete: last?.complete ?? false,
    waits,
  };
}

export interface SdkWalk {
  wallMs: number;
  pages: number;
  total: number;
  failed: string | undefined;
}

/**
 * What a client does without the proxy: page the whole list with the official SDK (its default
 * retry policy, which honours Retry-After) and count runs by status.
 */
export async function walkWithSdk(
  fake: FakeProcess,
  maxPageSize: number | undefined,
  limitMs: number,
): Promise<SdkWalk> {
  const client = new ExtendClient({ token: fake.apiKey, baseUrl: fake.url });
  const byStatus = new Map<string, number>();
  const started = performance.now();
  let pages = 0;
  let total = 0;
  let token: string | undefined;
  try {
    do {
      const page = await client.workflowRuns.list({
        ...(maxPageSize ? { maxPageSize } : {}),
        ...(token ? { nextPageToken: token } : {}),
      });
      pages += 1;
      for (const run of page.data) {
        total += 1;
        byStatus.set(run.status, (byStatus.get(run.status) ?? 0) + 1);
      }
      token = page.nextPageToken ?? undefined;
    } while (token && performance.now() - started < limitMs);
  } catch (error) {
    return { wallMs: performance.now() - started, pages, total, failed: String(error) };
  }
  return {
    wallMs: performance.now() - started,
    pages,
    total,
    failed: token ? `stopped after ${limitMs} ms` : undefined,
  };
}

function rssKb(pid: number): number {
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return match ? Number(match[1]) : 0;
  } catch {
    return 0;
  }
}

/** Clock ticks a second in /proc/<pid>/stat (USER_HZ: 100 on Linux). */
const USER_HZ = 100;

/**
 * CPU time (user + system) used so far by every live process of a wrangler dev group: the
 * Worker's isolate, the local KV and rate-limit emulations, wrangler's proxies and its log relay.
 * In ms, 10 ms resolution; 0 where /proc is missing.
 */
export function processGroupCpuMs(pgid: number): number {
  let ticks = 0;
  for (const pid of processGroupMembers(pgid)) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(fields[11] ?? 0) + Number(fields[12] ?? 0);
    } catch {
      // The process ended while we looked.
    }
  }
  return (ticks * 1000) / USER_HZ;
}

function isWorkerd(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/comm`, "utf8").trim() === "workerd";
  } catch {
    return false;
  }
}

/** Samples the RSS of wrangler's workerd processes; `peakMb` is the largest single process seen. */
export function sampleWorkerdMemory(proxy: WranglerDev, everyMs = 25) {
  const read = () => {
    let largest = 0;
    for (const pid of processGroupMembers(proxy.pid))
      if (isWorkerd(pid)) largest = Math.max(largest, rssKb(pid));
    return largest / 1024;
  };
  const idleMb = read();
  let peakMb = idleMb;
  const timer = setInterval(() => {
    peakMb = Math.max(peakMb, read());
  }, everyMs);
  return {
    idleMb,
    stop: () => {
      clearInterval(timer);
      peakMb = Math.max(peakMb, read());
      return { idleMb, peakMb };
    },
  };
}

/** How long one DevTools call may take before the measurement is given up. */
const INSPECTOR_CALL_TIMEOUT_MS = 5_000;

/** A DevTools (Chrome DevTools Protocol) session with the Worker's isolate. */
export interface Inspector {
  call<T = unknown>(method: string, params?: Record<string, unknown>, timeoutMs?: number): Promise<T>;
  /** Calls `listener` with the params of every `method` event from now on. */
  on(method: string, listener: (params: unknown) => void): void;
  close(): void;
}

/** Attaches to the Worker through wrangler's DevTools inspector proxy. */
export async function attachInspector(inspectorPort: number): Promise<Inspector> {
  const listing = await fetch(`http://127.0.0.1:${inspectorPort}/json`);
  const targets = (await listing.json()) as { webSocketDebuggerUrl?: string }[];
  const url = targets.find((t) => t.webSocketDebuggerUrl)?.webSocketDebuggerUrl;
  if (!url) throw new Error("wrangler's inspector lists no Worker to attach to");
  // wrangler's inspector proxy only admits local origins; Node's WebSocket (undici) takes extra
  // handshake headers through its init object.
  const socket = new WebSocket(url, { headers: { origin: "http://127.0.0.1" } } as unknown as string[]);
  await new Promise<void>((resolve, reject) => {
    socket.addEventListener("open", () => resolve(), { once: true });
    socket.addEventListener("error", () => reject(new Error(`cannot attach to ${url}`)), { once: true });
  });
  let lastId = 0;
  const pending = new Map<number, { resolve: (result: unknown) => void; reject: (error: Error) => void }>();
  const listeners = new Map<string, ((params: unknown) => void)[]>();
  socket.addEventListener("message", (event) => {
    const message = JSON.parse(String(event.data)) as {
      id?: number;
      result?: unknown;
      error?: { message?: string };
      method?: string;
      params?: unknown;
    };
    if (message.id === undefined) {
      for (const listener of listeners.get(message.method ?? "") ?? []) listener(message.params);
      return;
    }
    const waiter = pending.get(message.id);
    pending.delete(message.id);
    if (message.error) waiter?.reject(new Error(`inspector: ${message.error.message ?? "error"}`));
    else waiter?.resolve(message.result);
  });
  return {
    call: <T>(
      method: string,
      params: Record<string, unknown> = {},
      timeoutMs = INSPECTOR_CALL_TIMEOUT_MS,
    ) => {
      lastId += 1;
      const id = lastId;
      const answer = new Promise<unknown>((resolve, reject) => pending.set(id, { resolve, reject }));
      socket.send(JSON.stringify({ id, method, params }));
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${method}: no answer from the inspector`)), timeoutMs);
      });
      return Promise.race([answer, timeout]).finally(() => clearTimeout(timer)) as Promise<T>;
    },
    on: (method, listener) => {
      listeners.set(method, [...(listeners.get(method) ?? []), listener]);
    },
    close: () => socket.close(),
  };
}

export interface WorkerHeap {
  /** V8 heap in use by the Worker's isolate, garbage not yet collected included, in MB. */
  usedMb(): Promise<number>;
  close(): void;
}

/**
 * The Worker isolate's own V8 heap, read through wrangler's DevTools inspector (Chrome DevTools
 * Protocol, `Runtime.getHeapUsage`). Unlike workerd's RSS it leaves out local KV, the runtime and
 * memory V8 has not handed back to the system: what the proxy's code holds, plus garbage not yet
 * collected. (workerd does not answer `HeapProfiler.collectGarbage`, so the live set alone is not
 * measured.)
 */
export async function inspectWorkerHeap(inspectorPort: number): Promise<WorkerHeap> {
  const inspector = await attachInspector(inspectorPort);
  return {
    usedMb: async () =>
      (await inspector.call<{ usedSize: number }>("Runtime.getHeapUsage")).usedSize / 2 ** 20,
    close: () => inspector.close(),
  };
}

/** Polls the isolate's heap while a scan runs: in use before, the most at any sample, and after. */
export async function sampleWorkerHeap(heap: WorkerHeap, everyMs = 50) {
  const baseMb = await heap.usedMb();
  let peakMb = baseMb;
  let polling = false;
  const timer = setInterval(() => {
    if (polling) return;
    polling = true;
    heap
      .usedMb()
      .then((mb) => {
        peakMb = Math.max(peakMb, mb);
      })
      .catch(() => undefined)
      .finally(() => {
        polling = false;
      });
  }, everyMs);
  return {
    baseMb,
    stop: async () => {
      clearInterval(timer);
      const afterMb = await heap.usedMb();
      return { baseMb, peakMb: Math.max(peakMb, afterMb), afterMb };
    },
  };
}

/** Walks a list directly against the fake and returns the page paths (cursor included). */
export async function pagePaths(
  fake: FakeProcess,
  query: Record<string, string>,
  limit: number,
): Promise<string[]> {
  const paths: string[] = [];
  let token: string | undefined;
  do {
    const params = new URLSearchParams(query);
    if (token) params.set("nextPageToken", token);
    paths.push(`/workflow_runs?${params}`);
    const response = await fetch(`${fake.url}/workflow_runs?${params}`, { headers: upstreamHeaders(fake) });
    const page = (await response.json()) as { nextPageToken?: string };
    token = page.nextPageToken;
  } while (token && paths.length < limit);
  return paths;
}

export function upstreamHeaders(fake: FakeProcess): Record<string, string> {
  return { authorization: `Bearer ${fake.apiKey}`, "x-extend-api-version": API_VERSION };
}

/** One kind of request in an interleaved comparison. */
export interface Target {
  name: string;
  origin: string;
  /** Each request takes the next path, cycling (distinct pages for misses, one page for hits). */
  paths: string[];
  headers: Record<string, string>;
  /** Checks a 200's body; a false counts as malformed. */
  check?: (body: string) => boolean;
  /** The `x-cache` every answer must carry; another counts as a mismatch. */
  expectCache?: string;
}

export interface TargetResult {
  name: string;
  requests: number;
  p50: number;
  p99: number;
  errors: number;
  malformed: number;
  /** Answers whose `x-cache` was not the expected one. */
  mismatches: number;
}

interface Timed {
  ms: number;
  status: number;
  cache: string | undefined;
  body: string;
}

/** One GET on a kept-alive connection, timed from the request's start to the body's last byte. */
function timedGet(
  agent: Agent,
  origin: string,
  path: string,
  headers: Record<string, string>,
): Promise<Timed> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const req = httpRequest(new URL(path, origin), { agent, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () => {
        const cache = res.headers["x-cache"];
        resolve({
          ms: performance.now() - started,
          status: res.statusCode ?? 0,
          cache: typeof cache === "string" ? cache : undefined,
          body: Buffer.concat(chunks).toString("utf8"),
        });
      });
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}

/**
 * Sequential requests to several targets, interleaved one by one (the order rotates every
 * round), so a machine whose load drifts during the run shifts every target alike: their ratios
 * are what such a run measures.
 */
export async function interleaved(targets: Target[], rounds: number): Promise<TargetResult[]> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const results = targets.map((target) => ({
    target,
    latencies: [] as number[],
    errors: 0,
    malformed: 0,
    mismatches: 0,
    next: 0,
  }));
  try {
    for (let round = 0; round < rounds; round++) {
      for (let i = 0; i < results.length; i++) {
        const result = results[(i + round) % results.length];
        if (!result) continue;
        const { target } = result;
        const path = target.paths[result.next++ % target.paths.length] ?? "/";
        try {
          const answer = await timedGet(agent, target.origin, path, target.headers);
          result.latencies.push(answer.ms);
          if (answer.status !== 200) result.errors += 1;
          else if (target.check && !target.check(answer.body)) result.malformed += 1;
          if (target.expectCache !== undefined && answer.cache !== target.expectCache) result.mismatches += 1;
        } catch {
          result.errors += 1;
        }
      }
    }
  } finally {
    agent.destroy();
  }
  return results.map(({ target, latencies, errors, malformed, mismatches }) => {
    const sorted = latencies.sort((a, b) => a - b);
    return {
      name: target.name,
      requests: sorted.length,
      p50: percentile(sorted, 50),
      p99: percentile(sorted, 99),
      errors,
      malformed,
      mismatches,
    };
  });
}
