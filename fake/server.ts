// The fake Extend (fake/extend.ts) as a real HTTP server on loopback, for `npm start`, the
// end-to-end tests and the benchmarks. Faults keep their wire meaning: `Response.error()` becomes a
// connection reset and an erroring body stream a body cut off mid-way, so the proxy meets them the
// way it would meet a misbehaving Extend.
//
//   node fake/server.ts --port 8788 --size 3000 --latency-base 50 --latency-per-run 0.5 --rate-limit 10
import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { parseArgs } from "node:util";
import { FakeExtend, type FakeExtendOptions, type RunStatus, STATUSES } from "./extend.ts";
import { type MutatorOptions, startMutator } from "./mutations.ts";

/** Hosts the fake may bind to: it holds a key and answers anyone, so never a public interface. */
export const LOOPBACK_HOSTS = ["127.0.0.1", "::1", "localhost"] as const;

/** Control routes (counters for the benchmarks); they never collide with Extend's paths. */
const CONTROL_PREFIX = "/__fake/";

/** What the server saw, for benchmarks that run the fake in another process. */
export interface FakeCounters {
  /** Requests to the list endpoint. */
  listCalls: number;
  /** Responses by HTTP status ("reset" for connection resets). */
  byStatus: Record<string, number>;
  /** Most list requests in flight at once. */
  peakInFlight: number;
  /** The fake process's own CPU (user + system) since the last reset, in ms. */
  cpuMs: number;
  /** Between the first list request since the reset and the last answer: time with none in flight. */
  idleMs: number;
  /** The longest such stretch. */
  longestIdleMs: number;
  /** Sum over time of the list requests in flight (÷ the span: the mean concurrency), in ms. */
  inFlightMs: number;
  /** From the first list request since the reset to the last list answer, in ms. */
  spanMs: number;
  /** Most list requests started within any one second. */
  peakStartsPerSecond: number;
}

/** Arrival times of the list requests since the last reset, in arrival order. */
export interface FakeListTimes {
  at: number[];
}

export interface FakeServerOptions {
  /** An existing fake (tests inject faults into it), or options to build one. */
  fake: FakeExtend | FakeExtendOptions;
  /** 0 (the default) picks a free port. */
  port?: number;
  host?: (typeof LOOPBACK_HOSTS)[number];
}

export interface RunningFakeServer {
  readonly fake: FakeExtend;
  /** Origin such as http://127.0.0.1:41234, the value for EXTEND_API_BASE_URL. */
  readonly url: string;
  readonly port: number;
  readonly counters: FakeCounters;
  resetCounters(): void;
  close(): Promise<void>;
}

function toWebRequest(req: IncomingMessage, origin: string, signal: AbortSignal): Request {
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined) continue;
    for (const item of Array.isArray(value) ? value : [value]) headers.append(name, item);
  }
  return new Request(new URL(req.url ?? "/", origin), { method: req.method ?? "GET", headers, signal });
}

function writeHead(res: ServerResponse, response: Response): void {
  const headers: Record<string, string | string[]> = {};
  response.headers.forEach((value, name) => {
    if (name !== "set-cookie") headers[name] = value;
  });
  const cookies = response.headers.getSetCookie();
  if (cookies.length > 0) headers["set-cookie"] = cookies;
  res.writeHead(response.status, headers);
}

/** Streams a web Response into a Node response; a body that errors cuts the connection. */
async function send(res: ServerResponse, response: Response): Promise<void> {
  writeHead(res, response);
  // Status and headers go out now, so a body that fails at once still reaches the client as cut off.
  res.flushHeaders();
  if (response.body === null) {
    res.end();
    return;
  }
  const reader = response.body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (!res.write(value)) await new Promise<void>((resolve) => res.once("drain", resolve));
    }
    res.end();
  } catch {
    // Flush what was written, then close the socket without the final chunk: the client sees
    // the status and headers, part of the body, and then a connection that ends mid-body.
    const socket = res.socket;
    if (socket && !socket.destroyed) await new Promise<void>((resolve) => socket.end(resolve));
    res.destroy();
  }
}

function resetConnection(req: IncomingMessage): void {
  const socket = req.socket;
  // A TCP RST, as a crashed upstream or a middlebox would send, rather than a polite FIN.
  if (typeof socket.resetAndDestroy === "function") socket.resetAndDestroy();
  else socket.destroy();
}

/** Starts the fake Extend on loopback. */
export async function startFakeServer(options: FakeServerOptions): Promise<RunningFakeServer> {
  const host = options.host ?? "127.0.0.1";
  if (!(LOOPBACK_HOSTS as readonly string[]).includes(host)) {
    throw new Error(`The fake Extend only binds to loopback (${LOOPBACK_HOSTS.join(", ")}), not ${host}.`);
  }
  const fake = options.fake instanceof FakeExtend ? options.fake : new FakeExtend(options.fake);
  const counters: FakeCounters = {
    listCalls: 0,
    byStatus: {},
    peakInFlight: 0,
    cpuMs: 0,
    idleMs: 0,
    longestIdleMs: 0,
    inFlightMs: 0,
    spanMs: 0,
    peakStartsPerSecond: 0,
  };
  let inFlight = 0;
  let cpuAtReset = process.cpuUsage();
  // When the in-flight count last changed, the first list request since the reset, the recent starts.
  let changedAt = 0;
  let firstAt: number | undefined;
  let recentStarts: number[] = [];
  const count = (status: string) => {
    counters.byStatus[status] = (counters.byStatus[status] ?? 0) + 1;
  };
  const track = (delta: 1 | -1) => {
    const now = performance.now();
    if (firstAt === undefined) {
      firstAt = now;
    } else {
      counters.inFlightMs += inFlight * (now - changedAt);
      if (inFlight === 0) {
        counters.idleMs += now - changedAt;
        counters.longestIdleMs = Math.max(counters.longestIdleMs, now - changedAt);
      }
    }
    changedAt = now;
    inFlight += delta;
    if (delta === 1) {
      recentStarts = recentStarts.filter((t) => now - t < 1000);
      recentStarts.push(now);
      counters.peakStartsPerSecond = Math.max(counters.peakStartsPerSecond, recentStarts.length);
    } else {
      counters.spanMs = now - firstAt;
    }
  };
  const readCounters = (): FakeCounters => {
    const cpu = process.cpuUsage(cpuAtReset);
    return { ...counters, cpuMs: (cpu.user + cpu.system) / 1000 };
  };
  const resetCounters = () => {
    counters.listCalls = 0;
    counters.byStatus = {};
    counters.peakInFlight = inFlight;
    counters.idleMs = 0;
    counters.longestIdleMs = 0;
    counters.inFlightMs = 0;
    counters.spanMs = 0;
    counters.peakStartsPerSecond = 0;
    cpuAtReset = process.cpuUsage();
    firstAt = inFlight > 0 ? performance.now() : undefined;
    changedAt = performance.now();
    recentStarts = [];
    // The fake records every request; long benchmark runs must not grow it without bound.
    fake.requests.length = 0;
  };

  let origin = "";
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    if (path.startsWith(CONTROL_PREFIX)) {
      control(path, req, res, fake, readCounters, resetCounters);
      return;
    }
    const aborter = new AbortController();
    // The client went away before we answered: stop the fake's latency sleep or hang.
    res.on("close", () => {
      if (!res.writableFinished) aborter.abort(new Error("client disconnected"));
    });
    const isList = path.endsWith("/workflow_runs");
    if (isList) {
      counters.listCalls += 1;
      track(1);
      counters.peakInFlight = Math.max(counters.peakInFlight, inFlight);
    }
    const done = () => {
      if (isList) track(-1);
    };
    fake
      .handle(toWebRequest(req, origin, aborter.signal))
      .then(async (response) => {
        if (response.type === "error") {
          count("reset");
          resetConnection(req);
          return;
        }
        count(String(response.status));
        await send(res, response);
      })
      .catch(() => {
        // Only an aborted sleep lands here: the client is gone, so there is no one to answer.
        if (!res.headersSent) res.destroy();
      })
      .finally(done);
  });
  // Benchmarks open many keep-alive connections; Node's default header timeout would cut idle ones.
  server.keepAliveTimeout = 60_000;

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const hostPart = address.family === "IPv6" ? `[${address.address}]` : address.address;
  origin = `http://${hostPart}:${address.port}`;

  return {
    fake,
    url: origin,
    port: address.port,
    counters,
    resetCounters,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      }),
  };
}

function control(
  path: string,
  req: IncomingMessage,
  res: ServerResponse,
  fake: FakeExtend,
  counters: () => FakeCounters,
  resetCounters: () => void,
): void {
  const reply = (status: number, body: unknown) => {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  };
  if (path === `${CONTROL_PREFIX}counters` && req.method === "GET") {
    reply(200, counters());
  } else if (path === `${CONTROL_PREFIX}list-times` && req.method === "GET") {
    // When each list request since the last reset arrived (ms since the epoch, the fake's clock):
    // the benchmarks count upstream calls in any one-second window from the upstream's own view.
    const times: FakeListTimes = { at: fake.listCalls.map((r) => r.at) };
    reply(200, times);
  } else if (path === `${CONTROL_PREFIX}update` && req.method === "POST") {
    // Moves the `count` oldest-updated runs to `status` now: k changes for the sync-cost bench.
    const params = new URL(req.url ?? "/", "http://fake").searchParams;
    const count = Number(params.get("count") ?? "0");
    const status = params.get("status") ?? "FAILED";
    if (!Number.isSafeInteger(count) || count < 0 || !(STATUSES as readonly string[]).includes(status)) {
      reply(400, { code: "INVALID_REQUEST", message: "count must be a whole number, status a run status." });
      return;
    }
    const ids = fake.runs.slice(0, count).map((run) => run.id);
    reply(200, { changed: fake.updateRuns(ids, { status: status as RunStatus }).length });
  } else if (path === `${CONTROL_PREFIX}reset` && req.method === "POST") {
    resetCounters();
    reply(200, counters());
  } else {
    reply(404, { code: "NOT_FOUND", message: "Unknown control route." });
  }
}

const CLI_OPTIONS = {
  port: { type: "string", default: "8788" },
  host: { type: "string", default: "127.0.0.1" },
  size: { type: "string", default: "3000" },
  seed: { type: "string", default: "1" },
  "api-key": { type: "string" },
  "api-version": { type: "string" },
  "workspace-id": { type: "string" },
  "latency-base": { type: "string", default: "0" },
  "latency-per-run": { type: "string", default: "0" },
  "rate-limit": { type: "string" },
  "mutate-every": { type: "string", default: "0" },
  "webhook-url": { type: "string" },
  "webhook-secret": { type: "string" },
  help: { type: "boolean", default: false },
} as const;

const USAGE = `Usage: node fake/server.ts [options]
  --port <n>             port on loopback (default 8788; 0 picks a free one)
  --host <h>             127.0.0.1 (default), ::1 or localhost; never a public interface
  --size <n>             runs in the seeded dataset (default 3000)
  --seed <n>             dataset seed (default 1)
  --api-key <key>        key to accept as Authorization: Bearer (default: a random sk_local_… key)
  --api-version <v>      x-extend-api-version to require (default 2026-02-09)
  --workspace-id <id>    x-extend-workspace-id to require (default: none)
  --latency-base <ms>    latency per list call (default 0)
  --latency-per-run <ms> extra latency per run returned (default 0)
  --rate-limit <n>       list calls per second before answering 429 with Retry-After (default: none)
  --mutate-every <ms>    change one run (create, status change, delete) this often (default 0: never)
  --webhook-url <url>    POST each change's signed run event here (with --webhook-secret)
  --webhook-secret <s>   signing secret for those webhooks (wss_…)`;

function number(name: string, text: string, min: number): number {
  const value = Number(text);
  if (text.trim() === "" || !Number.isFinite(value) || value < min) {
    throw new Error(`--${name} must be a number of at least ${min}, got "${text}".`);
  }
  return value;
}

/** Parses the CLI flags into server options; exported for scripts that spawn the fake. */
export function parseFakeServerArgs(
  args: string[],
): FakeServerOptions & { fake: FakeExtendOptions; mutator: Omit<MutatorOptions, "onChange"> } {
  const { values } = parseArgs({ args, options: CLI_OPTIONS, strict: true });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const host = values.host;
  if (!(LOOPBACK_HOSTS as readonly string[]).includes(host)) {
    throw new Error(`--host must be one of ${LOOPBACK_HOSTS.join(", ")}; the fake never binds publicly.`);
  }
  const base = number("latency-base", values["latency-base"], 0);
  const perRun = number("latency-per-run", values["latency-per-run"], 0);
  const fake: FakeExtendOptions = {
    apiKey: values["api-key"] ?? `sk_local_${randomBytes(12).toString("hex")}`,
    // The CLI's dataset never changes after start, so each query's sorted list can be reused.
    memoizeLists: true,
    dataset: {
      size: Math.floor(number("size", values.size, 0)),
      seed: Math.floor(number("seed", values.seed, 0)),
    },
    ...(values["api-version"] ? { apiVersion: values["api-version"] } : {}),
    ...(values["workspace-id"] ? { workspaceId: values["workspace-id"] } : {}),
    ...(base > 0 || perRun > 0 ? { latency: { baseMs: base, perRunMs: perRun } } : {}),
    ...(values["rate-limit"] ? { rateLimitPerSecond: number("rate-limit", values["rate-limit"], 1) } : {}),
  };
  const mutator: Omit<MutatorOptions, "onChange"> = {
    everyMs: number("mutate-every", values["mutate-every"], 0),
    ...(values["webhook-url"] ? { webhookUrl: values["webhook-url"] } : {}),
    ...(values["webhook-secret"] ? { webhookSecret: values["webhook-secret"] } : {}),
  };
  return {
    fake,
    mutator,
    port: Math.floor(number("port", values.port, 0)),
    host: host as FakeServerOptions["host"],
  };
}

async function main(): Promise<void> {
  let options: ReturnType<typeof parseFakeServerArgs>;
  try {
    options = parseFakeServerArgs(process.argv.slice(2));
  } catch (error) {
    console.error(`${error instanceof Error ? error.message : String(error)}\n\n${USAGE}`);
    process.exit(2);
  }
  const server = await startFakeServer(options);
  const { latency, rateLimitPerSecond } = options.fake;
  // One machine-readable line first, so a parent process can read the origin and key.
  console.log(JSON.stringify({ ready: true, url: server.url, apiKey: options.fake.apiKey }));
  console.log(
    `fake Extend: ${server.fake.runs.length} runs at ${server.url}/workflow_runs` +
      (latency ? `, latency ${latency.baseMs} ms + ${latency.perRunMs} ms/run` : "") +
      (rateLimitPerSecond ? `, rate limit ${rateLimitPerSecond}/s` : ""),
  );
  const mutating =
    options.mutator.everyMs > 0
      ? startMutator(server.fake, {
          ...options.mutator,
          onChange: (mutation, status) =>
            console.log(
              `changed: ${mutation.kind} ${mutation.run.id} ${mutation.run.status}` +
                (status === undefined ? "" : ` (webhook ${status})`),
            ),
        })
      : undefined;
  const stop = () => {
    mutating?.stop();
    server.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
}

if (import.meta.main) await main();
