// `npm start`: the proxy under `wrangler dev` against a local fake Extend with seeded demo data.
// Needs no Cloudflare account and no Extend key; stops everything it started on Ctrl-C.
//
//   npm start -- --port 8787 --size 3000 --latency-base 50 --latency-per-run 0.5 --rate-limit 10
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { startMutator } from "../fake/mutations.ts";
import { startFakeServer } from "../fake/server.ts";
import { PROJECT_ROOT, processGroupMembers, startWranglerDev, type WranglerDev } from "./wrangler-dev.ts";

const USAGE = `Usage: npm start -- [options]
  --port <n>             proxy port on 127.0.0.1 (default 8787)
  --fake-port <n>        fake Extend port on 127.0.0.1 (default: a free one)
  --size <n>             runs in the demo dataset (default 3000)
  --seed <n>             dataset seed (default 1)
  --latency-base <ms>    fake Extend latency per call (default 50)
  --latency-per-run <ms> extra latency per run returned (default 0.5)
  --rate-limit <n>       fake Extend calls per second before 429 (default: none; Extend PAYG is 10)
  --mutate-every <ms>    the fake changes one run this often and sends its signed webhook to the
                         proxy, so the run index can be watched converging (default 3000; 0: never)
  --var NAME:value       extra proxy setting, repeatable (e.g. --var REDACT_FIELDS:reviewedByUser)
  --state <dir>          local KV and Durable Object storage (default .wrangler/state)
  --quiet                do not echo wrangler's request log`;

function numberFlag(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (text.trim() === "" || !Number.isFinite(value) || value < 0) {
    console.error(`--${name} must be a non-negative number, got "${text}".\n\n${USAGE}`);
    process.exit(2);
  }
  return value;
}

function parse() {
  try {
    return parseArgs({
      args: process.argv.slice(2),
      strict: true,
      options: {
        port: { type: "string" },
        "fake-port": { type: "string" },
        size: { type: "string" },
        seed: { type: "string" },
        "latency-base": { type: "string" },
        "latency-per-run": { type: "string" },
        "rate-limit": { type: "string" },
        "mutate-every": { type: "string" },
        var: { type: "string", multiple: true },
        state: { type: "string" },
        quiet: { type: "boolean", default: false },
        help: { type: "boolean", default: false },
      },
    }).values;
  } catch (error) {
    console.error(`${error instanceof Error ? error.message : String(error)}\n\n${USAGE}`);
    process.exit(2);
  }
}

async function main(): Promise<void> {
  const flags = parse();
  if (flags.help) {
    console.log(USAGE);
    return;
  }
  const extraVars: Record<string, string> = {};
  for (const pair of flags.var ?? []) {
    const colon = pair.indexOf(":");
    if (colon < 1) {
      console.error(`--var expects NAME:value, got "${pair}".`);
      process.exit(2);
    }
    extraVars[pair.slice(0, colon)] = pair.slice(colon + 1);
  }

  // Installed before anything starts: a Ctrl-C while wrangler dev is still starting must stop
  // what already runs (wrangler's process group is detached, so the signal reaches only us).
  const running: { proxy?: WranglerDev; fake?: { close(): Promise<void> }; mutator?: { stop(): void } } = {};
  let stopping = false;
  const shutdown = async (reason: string, code: number) => {
    if (stopping) return;
    stopping = true;
    console.log(`\n${reason}: stopping the proxy and the fake Extend…`);
    running.mutator?.stop();
    await running.proxy?.stop();
    await running.fake?.close();
    const left = running.proxy ? processGroupMembers(running.proxy.pid) : [];
    if (left.length > 0) console.error(`processes still running: ${left.join(", ")}`);
    else console.log("stopped.");
    // A wrangler dev still starting is not in `running` yet: the exit takes its group down.
    process.exit(code);
  };
  process.on("SIGINT", () => void shutdown("SIGINT", 0));
  process.on("SIGTERM", () => void shutdown("SIGTERM", 0));
  process.on("SIGHUP", () => void shutdown("SIGHUP", 0));

  // Fresh local secrets on every start: they only unlock a fake on loopback.
  const apiKey = `sk_local_${randomBytes(12).toString("hex")}`;
  // A --var wins over these, and the lines printed below say what is really in force.
  const firstOf = (list: string | undefined) => list?.split(",")[0]?.trim() || undefined;
  const clientToken = firstOf(extraVars.CLIENT_TOKENS) ?? `local_${randomBytes(16).toString("hex")}`;
  const anonymous = (extraVars.ALLOW_ANONYMOUS ?? "true").trim() === "true";
  const webhookSecret =
    firstOf(extraVars.EXTEND_WEBHOOK_SECRET) ?? `wss_local_${randomBytes(16).toString("hex")}`;
  const rateLimit = numberFlag("rate-limit", flags["rate-limit"], 0);
  const fake = await startFakeServer({
    port: numberFlag("fake-port", flags["fake-port"], 0),
    fake: {
      apiKey,
      dataset: { size: numberFlag("size", flags.size, 3000), seed: numberFlag("seed", flags.seed, 1) },
      latency: {
        baseMs: numberFlag("latency-base", flags["latency-base"], 50),
        perRunMs: numberFlag("latency-per-run", flags["latency-per-run"], 0.5),
      },
      ...(rateLimit > 0 ? { rateLimitPerSecond: rateLimit } : {}),
      memoizeLists: true,
    },
  });
  running.fake = fake;
  console.log(`fake Extend: ${fake.fake.runs.length} demo runs at ${fake.url} (key ${apiKey})`);
  console.log("starting the proxy with wrangler dev…");

  let ready = false;
  let proxy: WranglerDev;
  try {
    proxy = await startWranglerDev({
      port: numberFlag("port", flags.port, 8787),
      persistTo: flags.state ?? join(PROJECT_ROOT, ".wrangler", "state"),
      vars: {
        EXTEND_API_BASE_URL: fake.url,
        EXTEND_API_KEY: apiKey,
        CLIENT_TOKENS: clientToken,
        ALLOW_ANONYMOUS: "true",
        EXTEND_WEBHOOK_SECRET: webhookSecret,
        ...extraVars,
      },
      onLine: (line) => {
        // Our own readiness probes are not the user's requests.
        if (!flags.quiet && (ready || !line.includes("/healthz"))) console.log(`  [wrangler] ${line}`);
      },
    });
  } catch (error) {
    console.error(error instanceof Error ? error.message : String(error));
    await fake.close();
    process.exit(1);
  }

  running.proxy = proxy;
  ready = true;
  const mutateEvery = numberFlag("mutate-every", flags["mutate-every"], 3000);
  const mutator =
    mutateEvery > 0
      ? startMutator(fake.fake, {
          everyMs: mutateEvery,
          webhookUrl: `${proxy.url}/webhooks/extend`,
          webhookSecret,
          onChange: (mutation, status) => {
            if (flags.quiet) return;
            const webhook = status === undefined ? "no webhook" : `webhook ${status}`;
            console.log(`  [fake] ${mutation.kind} ${mutation.run.id} → ${mutation.run.status} (${webhook})`);
          },
        })
      : undefined;
  if (mutator) running.mutator = mutator;
  void proxy.exited.then((code) => shutdown(`wrangler dev exited (code ${code})`, code === 0 ? 0 : 1));

  const u = proxy.url;
  const workflowId = fake.fake.runs[0]?.workflow.id ?? "workflow_BMdfq_yWM3sT-ZzvCnA3f";
  console.log(`
extend-runs-proxy is running at ${u}
  upstream:     fake Extend at ${fake.url} (${fake.fake.runs.length} runs, seed ${flags.seed ?? 1})
  client token: ${extraVars.CLIENT_TOKENS === undefined ? clientToken : `${clientToken} (the first of --var CLIENT_TOKENS)`}   (${anonymous ? "anonymous calls are allowed too: ALLOW_ANONYMOUS=true" : "every call needs it: ALLOW_ANONYMOUS is not true"})
  local KV:     ${flags.state ?? ".wrangler/state"} (and the run index's Durable Object storage)
  run index:    /stats scans until the index is built, then answers from it ("source": "index");
                ${mutateEvery > 0 ? `the fake changes a run every ${mutateEvery} ms and POSTs its signed webhook` : "the fake's runs do not change (--mutate-every 0)"}

Try:
  curl -s "${u}/workflow_runs?maxPageSize=3"
  curl -si -H "Authorization: Bearer ${clientToken}" "${u}/workflow_runs?status=FAILED&maxPageSize=5"
  curl -s "${u}/workflow_runs?fileNameContains=report%20%26%20summary&sortBy=createdAt&sortDir=asc"
  curl -s "${u}/stats?workflowId=${workflowId}"
  watch -n 2 'curl -s "${u}/stats" | jq -c "{source, total, lagSeconds, build}"'   # the run index converging
  curl -s "${u}/workflow_runs?maxPageSize=5000"        # a validation error
  open ${u}/docs                                      # API reference (OpenAPI at ${u}/openapi.json)

With the SDK:  new ExtendClient({ token: "${clientToken}", baseUrl: "${u}" })

Ctrl-C stops the proxy and the fake.
`);
}

await main();
