// Starts, once for the whole browser suite: the fake Extend, the proxy under `wrangler dev`, a
// static server for the frontend fixture on two loopback origins (one allowed by CORS, one not),
// and one headless Chromium that every test file connects to. Without Chromium it prints a
// visible "skipped" line and starts nothing.
import { randomBytes } from "node:crypto";
import { appendFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { build } from "esbuild";
import { chromium } from "playwright-core";
import type { TestProject } from "vitest/node";
import { type RunningFakeServer, startFakeServer } from "../../../fake/server.ts";
import { PROJECT_ROOT, startWranglerDev, type WranglerDev } from "../../../scripts/wrangler-dev.ts";
import { type BrowserSuite, CHROMIUM_ARGS, CHROMIUM_PATH, chromiumInstalled } from "./context.ts";

const DATASET = { size: 3000, seed: 1 };

function tokens(prefix: string, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `br_${prefix}_${i}_${randomBytes(16).toString("hex")}`);
}

/** The frontend fixture: the typed client from src/client bundled for the browser by esbuild. */
async function bundleFrontend(): Promise<string> {
  const result = await build({
    entryPoints: [join(PROJECT_ROOT, "test/browser/fixtures/frontend.ts")],
    bundle: true,
    write: false,
    format: "esm",
    platform: "browser",
    target: "chrome120",
    logLevel: "silent",
  });
  const output = result.outputFiles[0];
  if (!output) throw new Error("esbuild produced no bundle");
  return output.text;
}

const PAGE = `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>A frontend</title>
<script type="module" src="/frontend.js"></script></head><body><h1>A frontend on another origin</h1></body></html>`;

async function serveFixture(bundle: string): Promise<{ server: Server; origin: string }> {
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/frontend.js") {
      res.writeHead(200, { "content-type": "text/javascript; charset=utf-8", "cache-control": "no-store" });
      res.end(bundle);
    } else if (path === "/" || path === "/app.html") {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" });
      res.end(PAGE);
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no port");
  return { server, origin: `http://127.0.0.1:${address.port}` };
}

export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  if (!chromiumInstalled()) {
    console.log(
      `\n  browser tests skipped: no Chromium at ${CHROMIUM_PATH} ` +
        "(apt-get install chromium, or set CHROMIUM_PATH)\n",
    );
    project.provide("browserSuite", null);
    return undefined;
  }

  const stateDir = await mkdtemp(join(tmpdir(), "extend-runs-proxy-browser-"));
  const logFile = join(stateDir, "proxy.log");
  writeFileSync(logFile, "");
  const upstreamKey = `sk_test_CANARY_browser_${randomBytes(6).toString("hex")}`;
  const suiteTokens = {
    dashboard: tokens("dash", 16),
    frontend: tokens("front", 6),
    oracle: tokens("oracle", 24),
  };

  let upstream: RunningFakeServer | undefined;
  let proxy: WranglerDev | undefined;
  const pages: Server[] = [];
  let browser: Awaited<ReturnType<typeof chromium.launchServer>> | undefined;
  const teardown = async () => {
    await browser?.close();
    await proxy?.stop();
    await upstream?.close();
    for (const server of pages) await new Promise<void>((resolve) => server.close(() => resolve()));
    await rm(stateDir, { recursive: true, force: true });
  };

  try {
    const bundle = await bundleFrontend();
    const allowed = await serveFixture(bundle);
    const other = await serveFixture(bundle);
    pages.push(allowed.server, other.server);
    upstream = await startFakeServer({ fake: { apiKey: upstreamKey, dataset: DATASET } });
    const [launched, started] = await Promise.all([
      chromium.launchServer({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS, headless: true }),
      startWranglerDev({
        persistTo: join(stateDir, "state"),
        vars: {
          EXTEND_API_BASE_URL: upstream.url,
          EXTEND_API_KEY: upstreamKey,
          CLIENT_TOKENS: Object.values(suiteTokens).flat().join(","),
          ALLOW_ANONYMOUS: "false",
          ALLOWED_ORIGINS: allowed.origin,
        },
        logLevel: "log",
        onLine: (line) => {
          if (line.includes('"msg":"request"')) appendFileSync(logFile, `${line.slice(line.indexOf("{"))}\n`);
        },
      }),
    ]);
    browser = launched;
    proxy = started;
    const suite: BrowserSuite = {
      wsEndpoint: launched.wsEndpoint(),
      proxyUrl: started.url,
      allowedOrigin: allowed.origin,
      otherOrigin: other.origin,
      tokens: suiteTokens,
      upstreamKey,
      logFile,
      dataset: DATASET,
    };
    project.provide("browserSuite", suite);
  } catch (error) {
    await teardown();
    throw error;
  }
  return teardown;
}
