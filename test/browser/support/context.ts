// What the browser suite's global setup (global-setup.ts) hands to every test file, and the one
// way to launch Chromium: the Debian package, never a downloaded browser.
import { existsSync } from "node:fs";
import { inject } from "vitest";

/** Debian's `chromium` package installs here; CHROMIUM_PATH points elsewhere on other systems. */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
/** Headless on a CI machine: no sandbox (root in a container), no GPU, no background requests. */
export const CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"];

export function chromiumInstalled(): boolean {
  return existsSync(CHROMIUM_PATH);
}

export interface BrowserSuite {
  /** Playwright's endpoint for the one Chromium all files share. */
  wsEndpoint: string;
  /** The proxy under `wrangler dev`, e.g. http://127.0.0.1:41234. */
  proxyUrl: string;
  /** A page origin listed in ALLOWED_ORIGINS, serving the frontend fixture. */
  allowedOrigin: string;
  /** The same page from an origin that is not allowed. */
  otherOrigin: string;
  /** Client tokens per test file, so no file spends another's rate limit. */
  tokens: Record<"dashboard" | "frontend" | "oracle", string[]>;
  /** The upstream key: it must never reach a browser. */
  upstreamKey: string;
  /** Where the proxy's request log lines (JSON, one per line) are appended. */
  logFile: string;
  /** The fake Extend's dataset, as `npm start` seeds it. */
  dataset: { size: number; seed: number };
}

declare module "vitest" {
  export interface ProvidedContext {
    /** Null when Chromium is missing: every browser test is then skipped. */
    browserSuite: BrowserSuite | null;
  }
}

export function browserSuite(): BrowserSuite | null {
  return inject("browserSuite");
}
