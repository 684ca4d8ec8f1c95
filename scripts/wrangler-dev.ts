// Runs the proxy under `wrangler dev` on loopback as a child process group, for `npm start`, the
// end-to-end tests and the benchmarks: the same binary and flags a developer uses, so what they
// measure and prove is what `wrangler dev` really does.
import { type ChildProcess, spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

/** The project root (this file lives in scripts/). */
export const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const WRANGLER_BIN = join(PROJECT_ROOT, "node_modules", "wrangler", "bin", "wrangler.js");

/** Lines wrangler prints when it cannot reach Cloudflare; offline they are noise, not news. */
const OFFLINE_NOISE = [/Unable to fetch the `Request\.cf` object/, /workers\.cloudflare\.com/];

const READY_POLL_MS = 150;
const STOP_GRACE_MS = 5_000;

export interface WranglerDevOptions {
  /** Vars and secrets, passed as `--var NAME:value` (they override wrangler.toml). */
  vars: Record<string, string>;
  /** A wrangler config other than the project's wrangler.toml (the benchmarks raise limits in one). */
  configPath?: string;
  /** Port on 127.0.0.1; a free one when omitted. */
  port?: number;
  /** Local KV and other state; wrangler's default `.wrangler/state` when omitted. */
  persistTo?: string;
  /** Port of wrangler's DevTools inspector on 127.0.0.1 (the benchmarks read the heap there); any free one when omitted. */
  inspectorPort?: number;
  /**
   * Ignore `.dev.vars` and `.env` (default true), so only wrangler.toml and `vars` apply: a
   * developer's real key or JWT settings must not leak into a local demo, a test or a benchmark.
   */
  hermetic?: boolean;
  /** Where wrangler's output goes, line by line (default: dropped, but kept for error reports). */
  onLine?: (line: string) => void;
  /**
   * wrangler's `--log-level` (default `info`). The Worker's own console lines, such as the
   * request log, are printed from `log` up.
   */
  logLevel?: "info" | "log" | "debug";
  readyTimeoutMs?: number;
}

export interface WranglerDev {
  /** Origin such as http://127.0.0.1:8787. */
  readonly url: string;
  /** Pid of the wrangler process, also the id of its process group (workerd runs inside it). */
  readonly pid: number;
  /** Resolves with wrangler's exit code when it exits, for whatever reason. */
  readonly exited: Promise<number | null>;
  /** Stops wrangler and every process it started; safe to call twice. */
  stop(): Promise<void>;
}

/** A port on 127.0.0.1 that was free a moment ago. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === "string") throw new Error("no port assigned");
  return address.port;
}

const HAS_PROC = (() => {
  try {
    readdirSync("/proc/self");
    return true;
  } catch {
    return false;
  }
})();

/** Pids of the live (not zombie) processes in a process group, read from /proc (Linux). */
export function processGroupMembers(pgid: number): number[] {
  const members: number[] = [];
  if (!HAS_PROC) return members;
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      // Fields after the command name (which may contain spaces) start after its last parenthesis.
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (fields[0] !== "Z" && Number(fields[2]) === pgid) members.push(Number(entry));
    } catch {
      // The process ended while we looked.
    }
  }
  return members;
}

function groupAlive(pgid: number): boolean {
  if (HAS_PROC) return processGroupMembers(pgid).length > 0;
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // Already gone.
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function waitUntilReady(
  url: string,
  child: ChildProcess,
  exited: Promise<number | null>,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  while (Date.now() < deadline) {
    if (gone || child.exitCode !== null) throw new Error("wrangler dev exited before it was ready");
    try {
      const response = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(2_000) });
      await response.arrayBuffer();
      if (response.ok) return;
    } catch {
      // Not listening yet.
    }
    await sleep(READY_POLL_MS);
  }
  throw new Error(`wrangler dev was not ready within ${timeoutMs} ms`);
}

/** Starts `wrangler dev` for this project on 127.0.0.1 and waits until /healthz answers. */
export async function startWranglerDev(options: WranglerDevOptions): Promise<WranglerDev> {
  const port = options.port ?? (await freePort());
  const args = [
    WRANGLER_BIN,
    "dev",
    "--ip",
    "127.0.0.1",
    "--port",
    String(port),
    "--inspector-port",
    String(options.inspectorPort ?? 0),
    "--show-interactive-dev-session=false",
    "--log-level",
    options.logLevel ?? "info",
  ];
  if (options.configPath) args.push("--config", options.configPath);
  if (options.persistTo) args.push("--persist-to", options.persistTo);
  // With an explicit env file wrangler reads neither .dev.vars nor .env.
  if (options.hermetic ?? true) args.push("--env-file", "/dev/null");
  for (const [name, value] of Object.entries(options.vars)) args.push("--var", `${name}:${value}`);

  const child = spawn(process.execPath, args, {
    cwd: PROJECT_ROOT,
    // Its own process group, so one signal reaches wrangler, esbuild and workerd, and a Ctrl-C
    // in the terminal reaches only our script, which then stops the group in order.
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    env: {
      ...process.env,
      WRANGLER_SEND_METRICS: "false",
      CLOUDFLARE_CF_FETCH_ENABLED: "false",
      FORCE_COLOR: process.env.FORCE_COLOR ?? "0",
    },
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error("could not start wrangler dev");

  const recent: string[] = [];
  let skippingStack = false;
  const onLine = (line: string) => {
    recent.push(line);
    if (recent.length > 60) recent.shift();
    if (OFFLINE_NOISE.some((pattern) => pattern.test(line))) {
      skippingStack = true;
      return;
    }
    if (skippingStack && /^\s+at\s/.test(line)) return;
    skippingStack = false;
    options.onLine?.(line);
  };
  for (const stream of [child.stdout, child.stderr]) {
    if (stream) createInterface({ input: stream }).on("line", onLine);
  }

  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  // If this process dies without calling stop(), take the group down with it rather than orphan it.
  const killOnExit = () => signalGroup(pid, "SIGKILL");
  process.once("exit", killOnExit);

  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      signalGroup(pid, "SIGTERM");
      const deadline = Date.now() + STOP_GRACE_MS;
      while (groupAlive(pid) && Date.now() < deadline) await sleep(50);
      if (groupAlive(pid)) signalGroup(pid, "SIGKILL");
      await Promise.race([exited, sleep(1_000)]);
      process.off("exit", killOnExit);
    })();
    return stopping;
  };

  const url = `http://127.0.0.1:${port}`;
  try {
    await waitUntilReady(url, child, exited, options.readyTimeoutMs ?? 90_000);
  } catch (error) {
    await stop();
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(`${reason}. Last output:\n${recent.join("\n")}`);
  }
  return { url, pid, exited, stop };
}
