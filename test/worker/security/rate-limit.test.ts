import { describe, expect, it } from "vitest";
import { REJECTED_CREDENTIAL_COST } from "../../../src/security/rate-limit.ts";
import { captureConsole, requestLines } from "../support/console.ts";
import { TestIssuer } from "../support/jwt-issuer.ts";
import { json } from "../support/proxy.ts";
import { freshClientIp, freshPrefix64, isolatedTenant, type Tenant } from "../support/tenant.ts";

/** wrangler.toml: RATE_LIMITER 120 per 60 s, STATS_RATE_LIMITER 10, AUTH_RATE_LIMITER 1200. */
/** Over a hundred requests through the whole stack: more than the default 5 s on a busy machine. */
const MANY_REQUESTS_TIMEOUT_MS = 120_000;
const GENERAL_LIMIT = 120;
const STATS_LIMIT = 10;
const AUTH_LIMIT = 1200;
/** Rejected credentials an address may send in a window before it is locked out. */
const REJECTED_BUDGET = AUTH_LIMIT / REJECTED_CREDENTIAL_COST;
const WINDOW_MS = 60_000;

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

/** The local limiter's fixed windows are aligned to the wall clock. */
const windowOf = (time: number) => Math.floor(time / WINDOW_MS);

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

  it("counts IPv6 callers by their /64: a new address per request gains nothing", async () => {
    const tenant = isolatedTenant();
    const prefix = freshPrefix64();
    const env = { ALLOW_ANONYMOUS: "true" };
    const { refused } = await sendUntilRefused(
      STATS_LIMIT,
      (i) =>
        tenant.call("/stats", { env, headers: { "cf-connecting-ip": `${prefix}::${(i + 1).toString(16)}` } }),
      (response) => expect(response.status).toBe(200),
    );
    await expectRateLimited(refused);
    // The same /64 however it is written; another /64 is another caller.
    const spelledOut = `${prefix}:0:0:ffff:1`.replace("2001:db8", "2001:0DB8");
    expect((await tenant.call("/stats", { env, headers: { "cf-connecting-ip": spelledOut } })).status).toBe(
      429,
    );
    const other = { env, headers: { "cf-connecting-ip": `${freshPrefix64()}::1` } };
    expect((await tenant.call("/stats", other)).status).not.toBe(429);
  });

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

describe("rejected credentials", () => {
  /** Tokens, a JWT issuer and anonymous access together: every kind of caller the lockout concerns. */
  async function setup() {
    const tenant = isolatedTenant();
    const issuer = await TestIssuer.start();
    const token = `real_${crypto.randomUUID()}`;
    const env: Partial<Env> = { ...issuer.env, CLIENT_TOKENS: token, ALLOW_ANONYMOUS: "true" };
    return { tenant, issuer, token, env };
  }

  /** A query of its own for every call: no cached page answers in Extend's place. */
  const call = (tenant: Tenant, env: Partial<Env>, ip: string, authorization?: string) =>
    tenant.call(`/workflow_runs?maxPageSize=1&workflowId=wf_${crypto.randomUUID()}`, {
      env,
      headers: { "cf-connecting-ip": ip, ...(authorization ? { authorization } : {}) },
    });

  it(
    `lock an address out past ${REJECTED_BUDGET} a minute: then even the right credentials get 429, unchecked`,
    async () => {
      const { tenant, issuer, token, env } = await setup();
      // A window that ends during the checks would unlock the address early: then lock it again.
      for (let attempt = 1; ; attempt++) {
        const prefix = freshPrefix64();
        // Guesses from ever new addresses of one /64 all count against it.
        const { refused } = await sendUntilRefused(
          REJECTED_BUDGET,
          (i) =>
            call(
              tenant,
              env,
              `${prefix}::${(i + 1).toString(16)}`,
              `Bearer guess_${i}_${crypto.randomUUID()}`,
            ),
          (response) => expect(response.status).toBe(401),
        );
        const lockedIn = windowOf(Date.now());
        await expectRateLimited(refused);
        const callsBefore = tenant.fake.listCalls.length;
        const rightToken = await call(tenant, env, `${prefix}::1`, `Bearer ${token}`);
        const rightJwt = await call(tenant, env, `${prefix}::2`, `Bearer ${await issuer.sign()}`);
        const anonymous = await call(tenant, env, `${prefix}::3`);
        const elsewhere = await call(tenant, env, `${freshPrefix64()}::1`, `Bearer ${token}`);
        if (windowOf(Date.now()) !== lockedIn && attempt < 3) continue;

        await expectRateLimited(rightToken);
        await expectRateLimited(rightJwt);
        // Refused before any check: the key set was never even fetched.
        expect(issuer.fetches).toBe(0);
        // Without credentials the address is just an anonymous caller.
        expect(anonymous.status).toBe(200);
        // Another address is unaffected.
        expect(elsewhere.status).toBe(200);
        expect(tenant.fake.listCalls).toHaveLength(callsBefore + 2);
        return;
      }
    },
    MANY_REQUESTS_TIMEOUT_MS,
  );

  it(
    "count callers on other zones' Workers (all at Cloudflare's one Worker address) by their zone",
    async () => {
      const { tenant, token, env } = await setup();
      // Cloudflare's CF-Connecting-IP for a subrequest from a Worker on another zone.
      const workerAddress = "2a06:98c0:3600::103";
      const fromZone = (zone: string, authorization: string) =>
        tenant.call(`/workflow_runs?maxPageSize=1&workflowId=wf_${crypto.randomUUID()}`, {
          env,
          headers: { "cf-connecting-ip": workerAddress, "cf-worker": zone, authorization },
        });
      for (let attempt = 1; ; attempt++) {
        const guesser = `guesser-${crypto.randomUUID()}.example`;
        const { refused } = await sendUntilRefused(
          REJECTED_BUDGET,
          (i) => fromZone(guesser, `Bearer guess_${i}_${crypto.randomUUID()}`),
          (response) => expect(response.status).toBe(401),
        );
        const lockedIn = windowOf(Date.now());
        await expectRateLimited(refused);
        const sameZone = await fromZone(guesser.toUpperCase(), `Bearer ${token}`);
        const otherZone = await fromZone(`honest-${crypto.randomUUID()}.example`, `Bearer ${token}`);
        if (windowOf(Date.now()) !== lockedIn && attempt < 3) continue;
        await expectRateLimited(sameZone);
        // Another zone's Worker, at the same address, is not locked out by the guesser's.
        expect(otherZone.status).toBe(200);
        return;
      }
    },
    MANY_REQUESTS_TIMEOUT_MS,
  );

  it(
    "leave an address with many accepted callers behind it its budget for mistakes",
    async () => {
      const { tenant, env: base } = await setup();
      const tokens = [`real_${crypto.randomUUID()}`, `real_${crypto.randomUUID()}`];
      const env = { ...base, CLIENT_TOKENS: tokens.join(",") };
      const ip = freshClientIp();
      // More accepted requests than the rejected budget, each token within its own rate limit.
      const accepted = REJECTED_BUDGET + 10;
      for (let i = 0; i < accepted; i++) {
        const response = await call(tenant, env, ip, `Bearer ${tokens[i % 2]}`);
        if (response.status === 429) throw new Error(`request ${i + 1} refused`);
        await response.body?.cancel();
      }
      const wrong = await call(tenant, env, ip, "Bearer guess_0000000000000000000000000000000");
      expect(wrong.status).toBe(401);
    },
    MANY_REQUESTS_TIMEOUT_MS,
  );
});
