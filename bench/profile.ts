// CPU profiles of the Worker's isolate, taken through wrangler's DevTools inspector while a load
// runs, and their attribution to the parts of a request (`npm run bench -- --profile`).
import type { Inspector } from "./lib.ts";

interface CallFrame {
  functionName: string;
  scriptId: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

/** V8's CPU profile (the `.cpuprofile` format DevTools opens). */
export interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** Where each module of a bundled script starts: esbuild writes `// <path>` above each one. */
interface ScriptModules {
  lines: number[];
  paths: string[];
}

/** Maps a frame to the source module it came from (`src/cache/keys.ts`, `node_modules/zod/…`). */
export type ModuleOf = (frame: CallFrame) => string | undefined;

const MODULE_MARKER = /^\/\/ ((?:\.\.\/)*(?:src|node_modules|fake|bench)\/\S+\.[cm]?[jt]sx?)$/;

function indexModules(source: string): ScriptModules {
  const lines: number[] = [];
  const paths: string[] = [];
  source.split("\n").forEach((line, index) => {
    const match = MODULE_MARKER.exec(line);
    if (match?.[1]) {
      lines.push(index);
      paths.push(match[1].replace(/^(\.\.\/)+/, ""));
    }
  });
  return { lines, paths };
}

/** Reads the Worker's bundled scripts once, so frames can be named by their source module. */
export async function moduleMap(inspector: Inspector): Promise<ModuleOf> {
  const scripts: { scriptId: string; url: string }[] = [];
  inspector.on("Debugger.scriptParsed", (params) => {
    scripts.push(params as { scriptId: string; url: string });
  });
  // Enabling replays every parsed script, before it answers.
  await inspector.call("Debugger.enable");
  const byScript = new Map<string, ScriptModules>();
  for (const script of scripts) {
    if (!script.url) continue;
    const { scriptSource } = await inspector.call<{ scriptSource: string }>("Debugger.getScriptSource", {
      scriptId: script.scriptId,
    });
    const modules = indexModules(scriptSource);
    if (modules.lines.length > 0) byScript.set(script.scriptId, modules);
  }
  await inspector.call("Debugger.disable");
  return (frame) => {
    const modules = byScript.get(frame.scriptId);
    if (!modules) return undefined;
    let low = 0;
    let high = modules.lines.length - 1;
    let found = -1;
    while (low <= high) {
      const mid = (low + high) >> 1;
      if ((modules.lines[mid] ?? 0) <= frame.lineNumber) {
        found = mid;
        low = mid + 1;
      } else high = mid - 1;
    }
    return found === -1 ? undefined : modules.paths[found];
  };
}

/** Profiles the isolate while `during` runs, sampling every `intervalUs` microseconds. */
export async function profileWhile(
  inspector: Inspector,
  during: () => Promise<void>,
  intervalUs = 200,
): Promise<CpuProfile> {
  await inspector.call("Profiler.enable");
  await inspector.call("Profiler.setSamplingInterval", { interval: intervalUs });
  await inspector.call("Profiler.start");
  // Stopping serialises the whole profile: it gets time on a loaded machine.
  const stop = () => inspector.call<{ profile: CpuProfile }>("Profiler.stop", {}, 60_000);
  try {
    await during();
  } catch (error) {
    await stop().catch(() => undefined);
    throw error;
  }
  const stopped = await stop();
  await inspector.call("Profiler.disable");
  if (!stopped?.profile) throw new Error("Profiler.stop answered without a profile");
  return stopped.profile;
}

/** A part of a request, as the issue names them, and how to recognise its frames. */
interface Part {
  name: string;
  matches: (module: string | undefined, frame: CallFrame) => boolean;
}

const inModule =
  (...prefixes: string[]) =>
  (module: string | undefined) =>
    module !== undefined && prefixes.some((prefix) => module.startsWith(prefix));

/**
 * The parts, most specific first. A sample is charged to the innermost frame of the stack that
 * belongs to one of them; generic frames (Hono's dispatch, builtins) are charged to whoever
 * called them, and a stack with no owner at all to the framework.
 */
const PARTS: Part[] = [
  {
    name: "zod validation",
    matches: inModule("node_modules/zod/", "node_modules/@hono/zod-", "node_modules/hono/dist/validator"),
  },
  // Digests are charged to whoever asked for them: the cache key, the page's ETag, the token.
  { name: "SHA-256 of key material (cache key)", matches: inModule("src/cache/keys.ts") },
  {
    name: "authentication",
    matches: inModule("src/security/auth.ts", "src/security/jwt.ts", "src/security/client-ip.ts"),
  },
  { name: "rate-limit binding call", matches: inModule("src/security/rate-limit.ts") },
  {
    name: "KV read and write, freshness, the page's validator",
    matches: inModule("src/cache/kv-cache.ts", "src/cache/pages.ts", "src/cache/l1.ts"),
  },
  { name: "log line", matches: inModule("src/app/request-log.ts") },
  {
    name: "header building (security headers, CORS, ETag)",
    matches: inModule(
      "src/security/headers.ts",
      "src/security/cors.ts",
      "src/cache/etag.ts",
      "node_modules/hono/dist/middleware/secure-headers",
      "node_modules/hono/dist/middleware/cors",
    ),
  },
  { name: "configuration", matches: inModule("src/app/config.ts") },
  // On a miss these run in the tenant's object, which `wrangler dev` hosts in the same isolate.
  { name: "the object's check of the page (fold)", matches: inModule("src/stats/fold-bytes.ts") },
  { name: "Extend client (upstream call, body read)", matches: inModule("src/extend/client.ts") },
  {
    name: "upstream gateway hop (Durable Object)",
    matches: inModule("src/gateway/", "src/tenant/", "src/lib/bytes.ts"),
  },
  {
    name: "route handler and redaction",
    matches: inModule("src/routes/", "src/security/redact.ts", "src/services.ts", "src/extend/"),
  },
  {
    name: "middleware chain and routing (Hono)",
    matches: inModule("node_modules/hono/", "node_modules/@hono/", "src/index.ts", "src/app/router.ts"),
  },
  { name: "wrangler dev shims", matches: inModule("node_modules/wrangler/", "node_modules/miniflare/") },
];

const GC = "(garbage collector)";
const IDLE = "(idle)";
const PROGRAM = "(program)";

export interface Breakdown {
  /** Milliseconds of samples in the profile. */
  wallMs: number;
  /** Milliseconds the isolate was not idle. */
  busyMs: number;
  requests: number;
  parts: { name: string; ms: number; msPerRequest: number; share: number }[];
  /** The heaviest functions by self time, for docs/benchmarks.md's reading of the profile. */
  topFunctions: { name: string; module: string; ms: number }[];
}

/** Charges every sample to a part (see PARTS) and sums the time between samples. */
export function attribute(profile: CpuProfile, moduleOf: ModuleOf, requests: number): Breakdown {
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const node of profile.nodes) {
    byId.set(node.id, node);
    for (const child of node.children ?? []) parent.set(child, node.id);
  }
  const partOf = new Map<number, string>();
  const classify = (id: number): string => {
    const known = partOf.get(id);
    if (known) return known;
    const node = byId.get(id);
    let result = "other (runtime, builtins)";
    const name = node?.callFrame.functionName ?? "";
    if (name === GC || name === IDLE || name === PROGRAM) result = name;
    else {
      for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
        const frame = byId.get(at)?.callFrame;
        if (!frame) break;
        const module = moduleOf(frame);
        const part = PARTS.find((p) => p.matches(module, frame));
        if (part) {
          result = part.name;
          break;
        }
      }
    }
    partOf.set(id, result);
    return result;
  };
  const totals = new Map<string, number>();
  const selfTime = new Map<number, number>();
  let wallUs = 0;
  profile.samples.forEach((id, index) => {
    // A delta is the time since the previous sample: charge it to the sample it ends on.
    const us = profile.timeDeltas[index + 1] ?? 0;
    wallUs += us;
    const part = classify(id);
    totals.set(part, (totals.get(part) ?? 0) + us);
    selfTime.set(id, (selfTime.get(id) ?? 0) + us);
  });
  const busyUs = wallUs - (totals.get(IDLE) ?? 0);
  const parts = [...totals]
    .filter(([name]) => name !== IDLE)
    .map(([name, us]) => ({
      name,
      ms: us / 1000,
      msPerRequest: us / 1000 / Math.max(1, requests),
      share: busyUs > 0 ? us / busyUs : 0,
    }))
    .sort((a, b) => b.ms - a.ms);
  const topFunctions = [...selfTime]
    .map(([id, us]) => {
      const frame = byId.get(id)?.callFrame;
      return {
        name: frame?.functionName || "(anonymous)",
        module: (frame && moduleOf(frame)) ?? frame?.url ?? "",
        ms: us / 1000,
      };
    })
    .filter((f) => f.name !== IDLE)
    .sort((a, b) => b.ms - a.ms)
    .slice(0, 25);
  return { wallMs: wallUs / 1000, busyMs: busyUs / 1000, requests, parts, topFunctions };
}
