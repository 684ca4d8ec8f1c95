// The tenant gateway's rows of `npm run bench` (issue 12), and the ablation of the rows it and
// the second limiter moved (issue 14): `npm run bench -- --gateway` runs these alone.
//
// - A burst of distinct list misses from several callers, against the fake Extend with Extend's
//   rate limit: the most calls the fake saw start in any one-second window (its own arrival
//   times), against UPSTREAM_MAX_RPS, and how the requests were answered.
// - List misses through the gateway against the same Worker with the gateway unbound (both
//   limiters kept), sequential and interleaved: what the Durable Object hop costs.
// - The 8-connection miss row and the cold burst of the main table, on the full proxy and with
//   one round trip unbound at a time, interleaved round by round.
import { randomBytes } from "node:crypto";
import { Agent, request as httpRequest } from "node:http";
import { busiestWindow } from "../fake/windows.ts";
import {
  type BenchProxy,
  CONNECTIONS,
  type FakeProcess,
  interleaved,
  isList,
  LATENCY,
  load,
  NO_BUDGET,
  PAGE_SIZE,
  pagePaths,
  percentile,
  processGroupCpuMs,
  RATE_LIMIT,
  SCAN_ONLY,
  startFakeProcess,
  startProxy,
  type Target,
  upstreamHeaders,
  walkStats,
} from "./lib.ts";

export interface GatewayPlan {
  pageDataset: number;
  /** Distinct list misses fired at once in the burst row. */
  burstQueries: number;
  burstConnections: number;
  /** Client tokens the burst's requests take in turn (each its own caller of the budget). */
  burstCallers: number;
  /** Sequential rounds of the hop comparison (one distinct page per miss row and round). */
  hopRounds: number;
  /** Rounds of the ablation; each round runs every instance once, in rotating order. */
  ablationRounds: number;
  /** Distinct pages a miss run of the ablation takes in each round. */
  ablationMisses: number;
  coldBurst: number;
  /** Runs behind the bulk row's one cold /stats scan (1,000-run pages). */
  bulkRuns: number;
}

export const GATEWAY_FULL: GatewayPlan = {
  pageDataset: 5_000,
  burstQueries: 300,
  burstConnections: 64,
  burstCallers: 4,
  hopRounds: 100,
  ablationRounds: 2,
  ablationMisses: 100,
  coldBurst: 100,
  bulkRuns: 40_000,
};

export const GATEWAY_QUICK: GatewayPlan = {
  pageDataset: 1_000,
  burstQueries: 100,
  burstConnections: 32,
  burstCallers: 4,
  hopRounds: 20,
  ablationRounds: 1,
  ablationMisses: 40,
  coldBurst: 50,
  bulkRuns: 10_000,
};

export interface BurstRow {
  queries: number;
  connections: number;
  callers: number;
  upstreamMaxRps: number;
  fakeRateLimit: number;
  wallS: number;
  ok: number;
  rateLimited: number;
  /** 503 UPSTREAM_RATE_LIMITED answers that carried a Retry-After. */
  withRetryAfter: number;
  other: Record<string, number>;
  upstreamCalls: number;
  upstream429: number;
  /** The most list calls the fake saw arrive in any 1,000 ms. */
  busiestSecond: number;
  /** Log lines saying a call went direct because the gateway object failed. */
  servedDirectly: number;
  /** Request log lines seen in wrangler's output: that the count above saw the log at all. */
  requestLines: number;
  /** p50 and p99 of the 200s and of the 503s, in ms. */
  okP50Ms: number;
  okP99Ms: number;
  refusedP50Ms: number;
  refusedP99Ms: number;
}

/** One bulk caller alone: what the budget lets a cold /stats scan of 1,000-run pages sustain. */
export interface BulkRow {
  runs: number;
  upstreamMaxRps: number;
  wallS: number;
  complete: boolean;
  /** /stats requests the scan took (resumed after a 503 or its page budget). */
  requests: number;
  upstreamCalls: number;
  upstream429: number;
  /** List calls per second at the fake, from its first arrival to its last. */
  callsPerSecond: number;
  busiestSecond: number;
}

export interface LatencyRow {
  scenario: string;
  connections: number;
  requests: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  /** CPU of the instance's whole wrangler dev group per request (concurrent rows). */
  cpuMsPerRequest?: number;
  /** Upstream calls the fake saw per request (cold burst rows). */
  upstreamCalls?: number;
  /** Wall time of the whole row (cold burst rows), ms. */
  wallMs?: number;
}

export interface GatewayResults {
  plan: GatewayPlan;
  burst: BurstRow;
  bulk: BulkRow;
  hop: LatencyRow[];
  ablation: LatencyRow[];
}

function log(message: string): void {
  process.stderr.write(`[bench] ${message}\n`);
}

const fmt = (n: number, digits = 2) => (Number.isFinite(n) ? n.toFixed(digits) : "n/a");

interface Answer {
  ms: number;
  status: number;
  code: string | undefined;
  retryAfter: string | undefined;
}

/** Every request issued at once over at most `connections` kept-alive sockets; each timed from its issue. */
async function fireAll(
  origin: string,
  requests: { path: string; headers: Record<string, string> }[],
  connections: number,
): Promise<{ wallMs: number; answers: Answer[] }> {
  const agent = new Agent({ keepAlive: true, maxSockets: connections });
  const started = performance.now();
  try {
    const answers = await Promise.all(
      requests.map(
        ({ path, headers }) =>
          new Promise<Answer>((resolve) => {
            const issued = performance.now();
            const req = httpRequest(new URL(path, origin), { agent, headers }, (res) => {
              const chunks: Buffer[] = [];
              res.on("data", (chunk: Buffer) => chunks.push(chunk));
              res.on("end", () => {
                let code: string | undefined;
                if (res.statusCode !== 200) {
                  try {
                    code = (JSON.parse(Buffer.concat(chunks).toString("utf8")) as { code?: string }).code;
                  } catch {
                    code = undefined;
                  }
                }
                const retryAfter = res.headers["retry-after"];
                resolve({
                  ms: performance.now() - issued,
                  status: res.statusCode ?? 0,
                  code,
                  retryAfter: typeof retryAfter === "string" ? retryAfter : undefined,
                });
              });
              res.on("error", () =>
                resolve({ ms: Number.NaN, status: 0, code: "reset", retryAfter: undefined }),
              );
            });
            req.on("error", () =>
              resolve({ ms: Number.NaN, status: 0, code: "error", retryAfter: undefined }),
            );
            req.end();
          }),
      ),
    );
    return { wallMs: performance.now() - started, answers };
  } finally {
    agent.destroy();
  }
}

const sortedMs = (answers: Answer[]) => answers.map((a) => a.ms).sort((a, b) => a - b);

/**
 * Distinct list misses at once, several callers, the default UPSTREAM_MAX_RPS, against a fake with
 * Extend's own rate limit. `fileNameContains` values no run matches defeat the cache, as a caller
 * trying to spend the organisation's budget would.
 */
async function burstRow(plan: GatewayPlan): Promise<BurstRow> {
  const fake = await startFakeProcess({
    size: plan.pageDataset,
    ...LATENCY,
    rateLimitPerSecond: RATE_LIMIT,
  });
  const tokens = Array.from({ length: plan.burstCallers }, () => `bench_${randomBytes(24).toString("hex")}`);
  const upstreamMaxRps = 8;
  let servedDirectly = 0;
  let requestLines = 0;
  const proxy = await startProxy(fake, {
    vars: { ...SCAN_ONLY, CLIENT_TOKENS: tokens.join(","), UPSTREAM_MAX_RPS: String(upstreamMaxRps) },
    logLevel: "log",
    onLine: (line) => {
      if (line.includes("gateway unavailable; served directly")) servedDirectly += 1;
      if (line.includes('"msg":"request"')) requestLines += 1;
    },
  });
  try {
    // One request first, so the tenant's object exists and the burst measures the budget, not a cold start.
    const warm = await fetch(
      `${proxy.url}/workflow_runs?fileNameContains=warm-${randomBytes(4).toString("hex")}`,
      {
        headers: { authorization: `Bearer ${tokens[0]}` },
      },
    );
    await warm.arrayBuffer();
    // The warm-up's call must leave the fake's and the budget's one-second windows.
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    await fake.reset();
    servedDirectly = 0;
    requestLines = 0;
    const salt = randomBytes(4).toString("hex");
    const requests = Array.from({ length: plan.burstQueries }, (_, i) => ({
      path: `/workflow_runs?maxPageSize=${PAGE_SIZE}&fileNameContains=burst-${salt}-${i}`,
      headers: { authorization: `Bearer ${tokens[i % tokens.length]}` },
    }));
    log(`gateway burst: ${requests.length} distinct misses at once, ${plan.burstConnections} connections`);
    const { wallMs, answers } = await fireAll(proxy.url, requests, plan.burstConnections);
    const counters = await fake.counters();
    const times = await fake.listTimes();
    const first = Math.min(...times);
    log(`gateway burst: list calls arrived at ${times.map((t) => t - first).join(" ")} ms`);
    const ok = answers.filter((a) => a.status === 200);
    const refused = answers.filter((a) => a.status === 503 && a.code === "UPSTREAM_RATE_LIMITED");
    const other: Record<string, number> = {};
    for (const a of answers) {
      if (a.status === 200 || (a.status === 503 && a.code === "UPSTREAM_RATE_LIMITED")) continue;
      const key = `${a.status} ${a.code ?? ""}`.trim();
      other[key] = (other[key] ?? 0) + 1;
    }
    const okMs = sortedMs(ok);
    const refusedMs = sortedMs(refused);
    return {
      queries: requests.length,
      connections: plan.burstConnections,
      callers: tokens.length,
      upstreamMaxRps,
      fakeRateLimit: RATE_LIMIT,
      wallS: wallMs / 1000,
      ok: ok.length,
      rateLimited: refused.length,
      withRetryAfter: refused.filter((a) => a.retryAfter !== undefined && Number(a.retryAfter) >= 1).length,
      other,
      upstreamCalls: counters.listCalls,
      upstream429: counters.byStatus["429"] ?? 0,
      busiestSecond: busiestWindow(times),
      servedDirectly,
      requestLines,
      okP50Ms: percentile(okMs, 50),
      okP99Ms: percentile(okMs, 99),
      refusedP50Ms: percentile(refusedMs, 50),
      refusedP99Ms: percentile(refusedMs, 99),
    };
  } finally {
    await proxy.close();
    await fake.stop();
  }
}

/**
 * One cold /stats scan, alone, at the default UPSTREAM_MAX_RPS against the fake with Extend's
 * rate limit: slow 1,000-run pages (about 550 ms each in the fake's latency model) are where a
 * slot held until an answer would cost the most.
 */
async function bulkRow(plan: GatewayPlan): Promise<BulkRow> {
  const fake = await startFakeProcess({ size: plan.bulkRuns, ...LATENCY, rateLimitPerSecond: RATE_LIMIT });
  const upstreamMaxRps = 8;
  const proxy = await startProxy(fake, {
    vars: { ...SCAN_ONLY, UPSTREAM_MAX_RPS: String(upstreamMaxRps), STATS_MAX_PAGES: "1000" },
  });
  try {
    await fake.reset();
    log(`gateway bulk: one cold /stats scan over ${plan.bulkRuns} runs`);
    const walk = await walkStats(proxy, {}, 120_000);
    const counters = await fake.counters();
    const times = (await fake.listTimes()).sort((a, b) => a - b);
    const span = (times.at(-1) ?? 0) - (times[0] ?? 0);
    return {
      runs: plan.bulkRuns,
      upstreamMaxRps,
      wallS: walk.wallMs / 1000,
      complete: walk.complete,
      requests: walk.requests,
      upstreamCalls: counters.listCalls,
      upstream429: counters.byStatus["429"] ?? 0,
      callsPerSecond: span > 0 ? ((times.length - 1) * 1000) / span : Number.NaN,
      busiestSecond: busiestWindow(times),
    };
  } finally {
    await proxy.close();
    await fake.stop();
  }
}

/** Full 100-run pages of one status, every sort order: misses for the sequential rows. */
async function fullPages(fake: FakeProcess, status: string): Promise<string[]> {
  const paths: string[] = [];
  for (const sortBy of ["updatedAt", "createdAt"]) {
    for (const sortDir of ["desc", "asc"]) {
      const walk = await pagePaths(fake, { status, maxPageSize: String(PAGE_SIZE), sortBy, sortDir }, 1_000);
      // The last page of a walk is short, and a short page is a faster upstream call.
      paths.push(...walk.slice(0, -1));
    }
  }
  return paths;
}

/** The instances of the ablation, by what is unbound. */
const INSTANCES = [
  { name: "proxy", unbound: [] },
  { name: "gateway (TENANT) unbound", unbound: ["TENANT"] },
  { name: "AUTH_RATE_LIMITER unbound", unbound: ["AUTH_RATE_LIMITER"] },
  { name: "RATE_LIMITER unbound", unbound: ["RATE_LIMITER"] },
  { name: "both limiters unbound", unbound: ["AUTH_RATE_LIMITER", "RATE_LIMITER"] },
  { name: "all three unbound", unbound: ["TENANT", "AUTH_RATE_LIMITER", "RATE_LIMITER"] },
] as const;

const auth = (proxy: BenchProxy) => ({ authorization: `Bearer ${proxy.token}` });

export const HOP = {
  direct: "direct: fake Extend, distinct pages",
  floor: "runtime floor: GET /healthz via wrangler dev",
  gateway: "proxy miss through the gateway",
  noGateway: "proxy miss, gateway unbound (limiters kept)",
} as const;

async function hopRows(
  plan: GatewayPlan,
  fake: FakeProcess,
  proxy: BenchProxy,
  noGateway: BenchProxy,
): Promise<LatencyRow[]> {
  const pages = (await fullPages(fake, "PROCESSED")).slice(0, plan.hopRounds);
  // Warm both isolates and the tenant's object on pages the rows do not use.
  const warm = await fullPages(fake, "FAILED");
  for (const path of warm.slice(0, 3)) {
    for (const instance of [proxy, noGateway]) {
      await (await fetch(`${instance.url}${path}`, { headers: auth(instance) })).arrayBuffer();
    }
  }
  log(`gateway hop: ${pages.length} sequential rounds, interleaved`);
  const list = (body: string) => isList(body);
  // Each instance has its own KV: the same page is a miss in each.
  const targets: Target[] = [
    { name: HOP.direct, origin: fake.url, paths: pages, headers: upstreamHeaders(fake), check: list },
    { name: HOP.floor, origin: proxy.url, paths: ["/healthz"], headers: {} },
    {
      name: HOP.gateway,
      origin: proxy.url,
      paths: pages,
      headers: auth(proxy),
      check: list,
      expectCache: "MISS",
    },
    {
      name: HOP.noGateway,
      origin: noGateway.url,
      paths: pages,
      headers: auth(noGateway),
      check: list,
      expectCache: "MISS",
    },
  ];
  return (await interleaved(targets, pages.length)).map((r) => ({
    scenario: r.name,
    connections: 1,
    requests: r.requests,
    p50Ms: r.p50,
    p99Ms: r.p99,
    errors: r.errors + r.malformed + r.mismatches,
  }));
}

/** The main table's 8-connection miss row and cold burst, on each instance, interleaved round by round. */
async function ablationRows(
  plan: GatewayPlan,
  fake: FakeProcess,
  instances: BenchProxy[],
): Promise<LatencyRow[]> {
  const paths: string[] = [];
  for (const sortBy of ["updatedAt", "createdAt"]) {
    for (const sortDir of ["desc", "asc"]) {
      paths.push(...(await pagePaths(fake, { maxPageSize: String(PAGE_SIZE), sortBy, sortDir }, 1_000)));
    }
  }
  const colds = ["PENDING", "CANCELLED", "NEEDS_REVIEW", "REJECTED"].flatMap((status) =>
    ["asc", "desc"].map(
      (dir) => `/workflow_runs?status=${status}&maxPageSize=${PAGE_SIZE}&sortBy=createdAt&sortDir=${dir}`,
    ),
  );
  const pooled = instances.map(() => ({
    miss: [] as number[],
    missErrors: 0,
    missCpu: 0,
    burst: [] as number[],
    burstErrors: 0,
    burstCpu: 0,
    burstCalls: 0,
    burstWall: 0,
  }));
  for (let round = 0; round < plan.ablationRounds; round++) {
    const misses = paths.slice(round * plan.ablationMisses, (round + 1) * plan.ablationMisses);
    const cold = colds[round % colds.length] ?? "/workflow_runs";
    log(`ablation round ${round + 1}/${plan.ablationRounds}: ${misses.length} misses, then a cold burst`);
    for (let i = 0; i < instances.length; i++) {
      const index = (i + round) % instances.length;
      const instance = instances[index];
      const into = pooled[index];
      if (!instance || !into) continue;
      let cpu = processGroupCpuMs(instance.pid);
      const missRun = await load({
        origin: instance.url,
        paths: misses,
        amount: misses.length,
        connections: CONNECTIONS,
        headers: auth(instance),
        check: (_, body) => isList(body),
      });
      await new Promise((resolve) => setTimeout(resolve, 250));
      into.missCpu += processGroupCpuMs(instance.pid) - cpu;
      into.miss.push(...missRun.latencies);
      into.missErrors += missRun.errors + missRun.non2xx + missRun.malformed;

      await fake.reset();
      cpu = processGroupCpuMs(instance.pid);
      const burstStarted = performance.now();
      const burstRun = await load({
        origin: instance.url,
        paths: [cold],
        amount: plan.coldBurst,
        connections: plan.coldBurst,
        headers: auth(instance),
        check: (_, body) => isList(body),
      });
      into.burstWall += performance.now() - burstStarted;
      await new Promise((resolve) => setTimeout(resolve, 250));
      into.burstCpu += processGroupCpuMs(instance.pid) - cpu;
      into.burst.push(...burstRun.latencies);
      into.burstErrors += burstRun.errors + burstRun.non2xx + burstRun.malformed;
      into.burstCalls += (await fake.counters()).listCalls;
    }
  }
  const rows: LatencyRow[] = [];
  INSTANCES.forEach((kind, index) => {
    const into = pooled[index];
    if (!into) return;
    const miss = into.miss.sort((a, b) => a - b);
    const burst = into.burst.sort((a, b) => a - b);
    rows.push({
      scenario: `${kind.name}: cache miss, distinct pages`,
      connections: CONNECTIONS,
      requests: miss.length,
      p50Ms: percentile(miss, 50),
      p99Ms: percentile(miss, 99),
      errors: into.missErrors,
      cpuMsPerRequest: miss.length > 0 ? into.missCpu / miss.length : Number.NaN,
    });
    rows.push({
      scenario: `${kind.name}: cold burst of ${plan.coldBurst} identical requests`,
      connections: plan.coldBurst,
      requests: burst.length,
      p50Ms: percentile(burst, 50),
      p99Ms: percentile(burst, 99),
      errors: into.burstErrors,
      cpuMsPerRequest: burst.length > 0 ? into.burstCpu / burst.length : Number.NaN,
      upstreamCalls: into.burstCalls,
      wallMs: into.burstWall / plan.ablationRounds,
    });
  });
  return rows;
}

export async function gatewayScenarios(plan: GatewayPlan): Promise<GatewayResults> {
  const burst = await burstRow(plan);
  log(
    `gateway burst: ${burst.ok} × 200, ${burst.rateLimited} × 503 in ${fmt(burst.wallS)} s; ` +
      `busiest second at the fake ${burst.busiestSecond} (UPSTREAM_MAX_RPS ${burst.upstreamMaxRps})`,
  );
  const bulk = await bulkRow(plan);
  log(
    `gateway bulk: ${bulk.upstreamCalls} calls at ${fmt(bulk.callsPerSecond)}/s, busiest second ` +
      `${bulk.busiestSecond}, ${fmt(bulk.wallS)} s`,
  );
  const fake = await startFakeProcess({ size: plan.pageDataset, ...LATENCY });
  const instances: BenchProxy[] = [];
  try {
    for (const kind of INSTANCES) {
      instances.push(await startProxy(fake, { vars: { ...SCAN_ONLY, ...NO_BUDGET }, unbound: kind.unbound }));
    }
    const [proxy, noGateway] = instances;
    if (!proxy || !noGateway) throw new Error("the gateway rows need their two instances");
    const hop = await hopRows(plan, fake, proxy, noGateway);
    const ablation = await ablationRows(plan, fake, instances);
    for (const row of [...hop, ...ablation]) {
      log(`${row.scenario} (${row.connections}): p50 ${fmt(row.p50Ms)} ms, p99 ${fmt(row.p99Ms)} ms`);
    }
    return { plan, burst, bulk, hop, ablation };
  } finally {
    for (const instance of instances) await instance.close();
    await fake.stop();
  }
}

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

export function printGateway(results: GatewayResults): void {
  const b = results.burst;
  console.log(
    `\nGateway: a burst of ${b.queries} distinct list misses at once (${b.connections} connections, ` +
      `${b.callers} callers), UPSTREAM_MAX_RPS ${b.upstreamMaxRps}, fake Extend rate limit ${b.fakeRateLimit}/s\n`,
  );
  const other = Object.entries(b.other)
    .map(([k, n]) => `${n} × ${k}`)
    .join(", ");
  console.log(
    table(
      ["measure", "value"],
      [
        [
          "most upstream calls the fake saw in any 1 s",
          `${b.busiestSecond} (UPSTREAM_MAX_RPS ${b.upstreamMaxRps})`,
        ],
        ["upstream calls, of them 429", `${b.upstreamCalls}, ${b.upstream429}`],
        [
          "calls served directly (gateway unavailable)",
          `${b.servedDirectly} (of ${b.requestLines} request log lines read)`,
        ],
        ["answered 200", `${b.ok} (p50 ${fmt(b.okP50Ms)} ms, p99 ${fmt(b.okP99Ms)} ms)`],
        [
          "answered 503 UPSTREAM_RATE_LIMITED",
          `${b.rateLimited}, ${b.withRetryAfter} with Retry-After (p50 ${fmt(b.refusedP50Ms)} ms, p99 ${fmt(b.refusedP99Ms)} ms)`,
        ],
        ["other answers", other || "none"],
        ["the burst took", `${fmt(b.wallS)} s`],
      ],
    ),
  );
  const k = results.bulk;
  console.log(
    `\nGateway: one bulk caller alone, a cold /stats scan over ${k.runs} runs (1,000-run pages), ` +
      `UPSTREAM_MAX_RPS ${k.upstreamMaxRps}\n`,
  );
  console.log(
    table(
      ["measure", "value"],
      [
        ["list calls per second at the fake (first to last)", fmt(k.callsPerSecond)],
        [
          "most upstream calls the fake saw in any 1 s",
          `${k.busiestSecond} (UPSTREAM_MAX_RPS ${k.upstreamMaxRps})`,
        ],
        ["upstream calls, of them 429", `${k.upstreamCalls}, ${k.upstream429}`],
        ["/stats requests, complete", `${k.requests}, ${k.complete ? "yes" : "no"}`],
        ["the scan took", `${fmt(k.wallS)} s`],
      ],
    ),
  );
  const row = (name: string) => results.hop.find((r) => r.scenario === name);
  const gateway = row(HOP.gateway);
  const noGateway = row(HOP.noGateway);
  console.log(
    "\nGateway hop: list misses, sequential, interleaved one by one (same Worker, limiters kept)\n",
  );
  console.log(
    table(
      ["scenario", "requests", "p50 ms", "p99 ms", "errors"],
      results.hop.map((r) => [r.scenario, r.requests, fmt(r.p50Ms), fmt(r.p99Ms), r.errors]),
    ),
  );
  if (gateway && noGateway) {
    console.log(
      `\nthrough the gateway ÷ gateway unbound: p50 ${fmt(gateway.p50Ms / noGateway.p50Ms, 3)}×, ` +
        `p99 ${fmt(gateway.p99Ms / noGateway.p99Ms, 3)}×; the hop costs ${fmt(gateway.p50Ms - noGateway.p50Ms)} ms ` +
        `at p50, ${fmt(gateway.p99Ms - noGateway.p99Ms)} ms at p99`,
    );
  }
  console.log(
    `\nAblation of the ${CONNECTIONS}-connection miss row and the cold burst, interleaved over ` +
      `${results.plan.ablationRounds} round(s)\n`,
  );
  console.log(
    table(
      [
        "scenario",
        "conns",
        "requests",
        "p50 ms",
        "p99 ms",
        "errors",
        "CPU ms / request",
        "upstream calls",
        "wall ms",
      ],
      results.ablation.map((r) => [
        r.scenario,
        r.connections,
        r.requests,
        fmt(r.p50Ms),
        fmt(r.p99Ms),
        r.errors,
        r.cpuMsPerRequest === undefined ? "" : fmt(r.cpuMsPerRequest),
        r.upstreamCalls ?? "",
        r.wallMs === undefined ? "" : fmt(r.wallMs, 0),
      ]),
    ),
  );
}
