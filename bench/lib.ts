// Building blocks of `npm run bench`: the fake Extend in its own process, the proxy under wrangler
// with benchmark limits, a bounded load runner with exact latencies, a /stats walker, the SDK
// baseline and a workerd memory sampler.
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import autocannon, { type AutocannonRequest } from "autocannon";
import { ExtendClient } from "extend-ai";
import type { FakeCounters } from "../fake/server.ts";
import {
  freePort,
  PROJECT_ROOT,
  processGroupMembers,
  startWranglerDev,
  type WranglerDev,
} from "../scripts/wrangler-dev.ts";

export const API_VERSION = "2026-02-09";

/** The fake Extend in a child process, so the load generator never steals its event loop. */
export interface FakeProcess {
  url: string;
  apiKey: string;
  counters(): Promise<FakeCounters>;
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

/** A copy of wrangler.toml whose per-caller limits cannot interfere with a benchmark's load. */
async function benchConfig(): Promise<string> {
  const dir = join(PROJECT_ROOT, ".wrangler", "bench");
  await mkdir(dir, { recursive: true });
  const source = await readFile(join(PROJECT_ROOT, "wrangler.toml"), "utf8");
  const config = source
    .replace(/^main\s*=\s*"([^"]+)"/m, (_, main: string) => `main = "${join(PROJECT_ROOT, main)}"`)
    .replace(/simple\s*=\s*\{\s*limit\s*=\s*\d+/g, "simple = { limit = 1000000");
  const path = join(dir, "wrangler.toml");
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
export async function startProxy(fake: FakeProcess, vars: Record<string, string> = {}): Promise<BenchProxy> {
  const token = `bench_${randomBytes(24).toString("hex")}`;
  const persistTo = await mkdtemp(join(tmpdir(), "extend-runs-proxy-bench-"));
  const inspectorPort = await freePort();
  const dev = await startWranglerDev({
    configPath: await benchConfig(),
    persistTo,
    inspectorPort,
    vars: {
      EXTEND_API_BASE_URL: fake.url,
      EXTEND_API_KEY: fake.apiKey,
      CLIENT_TOKENS: token,
      ALLOW_ANONYMOUS: "false",
      ...vars,
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

export interface LoadResult {
  requests: number;
  p50: number;
  p99: number;
  rps: number;
  errors: number;
  non2xx: number;
  malformed: number;
}

function percentile(sorted: number[], p: number): number {
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

export interface WorkerHeap {
  /** V8 heap in use by the Worker's isolate, garbage not yet collected included, in MB. */
  usedMb(): Promise<number>;
  close(): void;
}

/** How long one DevTools call may take before the measurement is given up. */
const INSPECTOR_CALL_TIMEOUT_MS = 5_000;

/**
 * The Worker isolate's own V8 heap, read through wrangler's DevTools inspector (Chrome DevTools
 * Protocol, `Runtime.getHeapUsage`). Unlike workerd's RSS it leaves out local KV, the runtime and
 * memory V8 has not handed back to the system: what the proxy's code holds, plus garbage not yet
 * collected. (workerd does not answer `HeapProfiler.collectGarbage`, so the live set alone is not
 * measured.)
 */
export async function inspectWorkerHeap(inspectorPort: number): Promise<WorkerHeap> {
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
  const pending = new Map<number, (result: unknown) => void>();
  socket.addEventListener("message", (event) => {
    const message = JSON.parse(String(event.data)) as { id?: number; result?: unknown };
    if (message.id === undefined) return;
    pending.get(message.id)?.(message.result);
    pending.delete(message.id);
  });
  const call = (method: string) => {
    lastId += 1;
    const id = lastId;
    const answer = new Promise<unknown>((resolve) => pending.set(id, resolve));
    socket.send(JSON.stringify({ id, method, params: {} }));
    const timeout = new Promise<never>((_, reject) =>
      setTimeout(
        () => reject(new Error(`${method}: no answer from the inspector`)),
        INSPECTOR_CALL_TIMEOUT_MS,
      ),
    );
    return Promise.race([answer, timeout]);
  };
  return {
    usedMb: async () => ((await call("Runtime.getHeapUsage")) as { usedSize: number }).usedSize / 2 ** 20,
    close: () => socket.close(),
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
