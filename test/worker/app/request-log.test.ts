import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import worker from "../../../src/index.ts";
import { requestLines } from "../support/console.ts";
import { freshClientIp, isolatedTenant } from "../support/tenant.ts";

afterEach(() => {
  vi.restoreAllMocks();
});

/** Console lines from here on, as the proxy wrote them. */
function collectLines(): string[] {
  const lines: string[] = [];
  vi.spyOn(console, "log").mockImplementation((line: unknown) => {
    lines.push(String(line));
  });
  return lines;
}

describe("request log timing", () => {
  it.each([
    ["the health check", "/healthz"],
    ["a page", `/workflow_runs?maxPageSize=2&fileNameContains=${crypto.randomUUID()}`],
    ["an error", "/workflow_runs?maxPageSize=0"],
  ])("writes the line for %s after the response is handed over, once, in waitUntil", async (_name, path) => {
    const tenant = isolatedTenant();
    const lines = collectLines();
    const ctx = createExecutionContext();
    const request = new Request(`https://proxy.test${path}`, {
      headers: { "cf-connecting-ip": freshClientIp() },
    });
    const response = await worker.fetch(request, { ...env, ...tenant.env }, ctx);
    expect(requestLines(lines)).toHaveLength(0);
    await waitOnExecutionContext(ctx);
    const records = requestLines(lines);
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({
      msg: "request",
      status: response.status,
      requestId: response.headers.get("x-request-id"),
      route: new URL(path, "https://x").pathname,
    });
  });
});
