import { describe, expect, it } from "vitest";
import { captureConsole, requestLines } from "../support/console.ts";
import { json } from "../support/proxy.ts";
import { freshClientIp, isolatedTenant } from "../support/tenant.ts";

/** wrangler.toml: RATE_LIMITER 120 per 60 s, STATS_RATE_LIMITER 10 per 60 s. */
/** Over a hundred requests through the whole stack: more than the default 5 s on a busy machine. */
const MANY_REQUESTS_TIMEOUT_MS = 60_000;
const GENERAL_LIMIT = 120;
const STATS_LIMIT = 10;

/** A caller no other test uses: the limiter's counters outlive a test. */
function freshCaller(): { id: string; env: Partial<Env>; headers: Record<string, string> } {
  const id = crypto.randomUUID();
  const token = `rl_${id}`;
  return {
    id,
    env: { CLIENT_TOKENS: token, ALLOW_ANONYMOUS: "false" },
    headers: { authorization: `Bearer ${token}` },
  };
}

async function expectRateLimited(response: Response) {
  const body = await json<{ code: string; retryable: boolean }>(response);
  expect(response.status).toBe(429);
  expect(body.code).toBe("RATE_LIMIT_EXCEEDED");
  expect(body.retryable).toBe(true);
  expect(response.headers.get("retry-after")).toBe("60");
  expect(response.headers.get("content-type")).toMatch(/^application\/json/);
}

/**
 * Sends until the limiter refuses. Its windows are fixed and aligned to the wall clock (60 s), so a
 * run that straddles a window boundary starts counting again: the first refusal comes after
 * between `limit` and `2 × limit` allowed requests, never sooner and never later.
 */
async function sendUntilRefused(
  limit: number,
  send: (i: number) => Promise<Response>,
  expectAllowed: (response: Response, i: number) => void,
): Promise<{ allowed: number; refused: Response }> {
  for (let i = 0; i <= 2 * limit; i++) {
    const response = await send(i);
    if (response.status === 429) {
      expect(i, "requests allowed before the first refusal").toBeGreaterThanOrEqual(limit);
      return { allowed: i, refused: response };
    }
    expectAllowed(response, i);
    await response.body?.cancel();
  }
  throw new Error(`no 429 after ${2 * limit + 1} requests: the limit of ${limit} is not enforced`);
}

describe("per-caller rate limits", () => {
  it(
    `refuses a caller past ${GENERAL_LIMIT} requests a minute on /workflow_runs without calling Extend`,
    async () => {
      const tenant = isolatedTenant();
      const caller = freshCaller();
      // A new query each time, so no page cache can answer in Extend's place.
      const path = (i: number) => `/workflow_runs?maxPageSize=1&fileNameContains=${caller.id}-${i}`;
      const { allowed, refused } = await sendUntilRefused(
        GENERAL_LIMIT,
        (i) => tenant.call(path(i), caller),
        (response, i) => expect(response.status, `request ${i + 1}`).toBe(200),
      );
      await expectRateLimited(refused);
      // Every allowed request went upstream once; the refused one did not.
      expect(tenant.fake.listCalls).toHaveLength(allowed);

      // Another caller is unaffected.
      const other = freshCaller();
      expect((await tenant.call("/workflow_runs?maxPageSize=1", other)).status).toBe(200);
    },
    MANY_REQUESTS_TIMEOUT_MS,
  );

  it(
    `refuses a caller past ${STATS_LIMIT} requests a minute on /stats, and leaves /workflow_runs open`,
    async () => {
      const tenant = isolatedTenant();
      const caller = freshCaller();
      let callsBefore = 0;
      const { refused } = await sendUntilRefused(
        STATS_LIMIT,
        (i) => {
          callsBefore = tenant.fake.listCalls.length;
          return tenant.call(`/stats?fileNameContains=${caller.id}-${i}`, caller);
        },
        (response, i) => expect(response.status, `request ${i + 1}`).toBe(200),
      );
      await expectRateLimited(refused);
      expect(tenant.fake.listCalls).toHaveLength(callsBefore);
      expect((await tenant.call("/workflow_runs?maxPageSize=1", caller)).status).toBe(200);
    },
    MANY_REQUESTS_TIMEOUT_MS,
  );

  it("limits anonymous callers by client ip", async () => {
    const tenant = isolatedTenant();
    const anonymous = { env: { ALLOW_ANONYMOUS: "true" }, headers: { "cf-connecting-ip": freshClientIp() } };
    const { refused } = await sendUntilRefused(
      STATS_LIMIT,
      () => tenant.call("/stats", anonymous),
      (response) => expect(response.status).toBe(200),
    );
    await expectRateLimited(refused);
    const otherIp = { ...anonymous, headers: { "cf-connecting-ip": freshClientIp() } };
    expect((await tenant.call("/stats", otherIp)).status).not.toBe(429);
  });

  it(
    `counts rejected credentials per ip: past ${GENERAL_LIMIT} attempts a minute, 429 instead of 401`,
    async () => {
      const tenant = isolatedTenant();
      const headers = { authorization: "Bearer guessing-0000000000", "cf-connecting-ip": freshClientIp() };
      const env = { CLIENT_TOKENS: `real_${crypto.randomUUID()}`, ALLOW_ANONYMOUS: "false" };
      const { refused } = await sendUntilRefused(
        GENERAL_LIMIT,
        () => tenant.call("/workflow_runs", { env, headers }),
        (response) => expect(response.status).toBe(401),
      );
      await expectRateLimited(refused);
    },
    MANY_REQUESTS_TIMEOUT_MS,
  );

  it("does not limit the health check or the docs", async () => {
    const tenant = isolatedTenant();
    const failing = { limit: () => Promise.resolve({ success: false }) };
    const env = { RATE_LIMITER: failing, STATS_RATE_LIMITER: failing } as unknown as Partial<Env>;
    for (const path of ["/healthz", "/openapi.json", "/docs"]) {
      expect((await tenant.call(path, { env })).status, path).toBe(200);
    }
  });

  it("fails open, and says so in the log line, when the limiter binding throws", async () => {
    const tenant = isolatedTenant();
    const broken = { limit: () => Promise.reject(new Error("limiter down")) };
    const caller = freshCaller();
    const env = { ...caller.env, RATE_LIMITER: broken } as unknown as Partial<Env>;
    const { result, lines } = await captureConsole(() =>
      tenant.call(`/workflow_runs?fileNameContains=${caller.id}`, { env, headers: caller.headers }),
    );
    expect(result.status).toBe(200);
    expect(tenant.fake.listCalls).toHaveLength(1);
    const [line] = requestLines(lines);
    expect(line?.warnings).toEqual(["RATE_LIMITER unavailable; request allowed"]);
  });
});
