// `npm start` as a person runs it: it serves the fake's runs with the token it prints, and a
// Ctrl-C stops everything it started, also while wrangler dev is still starting (wrangler runs
// in its own process group, so the terminal's signal reaches only the script).
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterEach, describe, expect, it } from "vitest";
import { freePort, PROJECT_ROOT } from "../../scripts/wrangler-dev.ts";

interface Started {
  child: ChildProcess;
  port: number;
  lines: string[];
  exited: Promise<number | null>;
  /** Resolves with the first line that matches. */
  line(pattern: RegExp): Promise<string>;
}

const stateDirs: string[] = [];
const children: ChildProcess[] = [];

afterEach(async () => {
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill("SIGKILL");
  for (const dir of stateDirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function start(): Promise<Started> {
  const port = await freePort();
  const state = await mkdtemp(join(tmpdir(), "extend-runs-proxy-start-"));
  stateDirs.push(state);
  const child = spawn(
    process.execPath,
    [
      "scripts/start.ts",
      "--port",
      String(port),
      "--state",
      state,
      "--mutate-every",
      "0",
      "--size",
      "50",
      "--quiet",
    ],
    {
      cwd: PROJECT_ROOT,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, WRANGLER_SEND_METRICS: "false" },
    },
  );
  children.push(child);
  const lines: string[] = [];
  const waiters: { pattern: RegExp; resolve: (line: string) => void }[] = [];
  const onLine = (line: string) => {
    lines.push(line);
    for (const waiter of [...waiters]) {
      if (!waiter.pattern.test(line)) continue;
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve(line);
    }
  };
  for (const stream of [child.stdout, child.stderr])
    if (stream) createInterface({ input: stream }).on("line", onLine);
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return {
    child,
    port,
    lines,
    exited,
    line: (pattern) => {
      const seen = lines.find((line) => pattern.test(line));
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        waiters.push({ pattern, resolve });
        void exited.then((code) => reject(new Error(`npm start exited (${code}):\n${lines.join("\n")}`)));
      });
    },
  };
}

/** Processes whose command line names this port: the script, wrangler and its workerd. */
async function processesOnPort(port: number): Promise<number[]> {
  const found: number[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = (await readFile(`/proc/${entry}/cmdline`, "utf8")).split("\0");
      if (
        cmdline.some((arg, i) => arg === String(port) && cmdline[i - 1] === "--port") ||
        cmdline.some((arg) => arg.endsWith(`127.0.0.1:${port}`))
      )
        found.push(Number(entry));
    } catch {
      // Gone meanwhile.
    }
  }
  return found;
}

async function noneLeft(port: number): Promise<number[]> {
  const deadline = Date.now() + 10_000;
  let left = await processesOnPort(port);
  while (left.length > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 200));
    left = await processesOnPort(port);
  }
  return left;
}

async function answers(port: number): Promise<boolean> {
  try {
    const response = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(2_000) });
    await response.arrayBuffer();
    return true;
  } catch {
    return false;
  }
}

describe.skipIf(process.platform !== "linux")("npm start", () => {
  it("serves the fake's runs with the printed token, and Ctrl-C stops everything", async () => {
    const started = await start();
    await started.line(/extend-runs-proxy is running at/);
    const token = /client token: (\S+)/.exec(started.lines.join("\n"))?.[1];
    expect(token).toBeDefined();
    const response = await fetch(`http://127.0.0.1:${started.port}/workflow_runs?maxPageSize=2`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(response.status).toBe(200);
    const body = (await response.json()) as { object: string; data: unknown[] };
    expect(body.object).toBe("list");
    expect(body.data).toHaveLength(2);

    started.child.kill("SIGINT");
    expect(await started.exited).toBe(0);
    expect(started.lines).toContain("stopped.");
    expect(await noneLeft(started.port)).toEqual([]);
    expect(await answers(started.port)).toBe(false);
  });

  it("stops wrangler dev on a Ctrl-C that comes while it is still starting", async () => {
    const started = await start();
    await started.line(/starting the proxy with wrangler dev/);
    // Once wrangler runs beside the script, and before it is ready.
    while ((await processesOnPort(started.port)).length < 2)
      await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await answers(started.port)).toBe(false);
    started.child.kill("SIGINT");
    expect(await started.exited).toBe(0);
    expect(await noneLeft(started.port)).toEqual([]);
    expect(await answers(started.port)).toBe(false);
  });
});
