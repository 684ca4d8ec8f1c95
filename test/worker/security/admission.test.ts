// How a data request is admitted: the address's lockout check (AUTH_RATE_LIMITER) and the caller's
// own limit (RATE_LIMITER, STATS_RATE_LIMITER) are asked side by side, and neither the lockout rule
// nor either budget may change for it. The bindings are replaced by recording fakes.
import { describe, expect, it } from "vitest";
import { REJECTED_CREDENTIAL_COST } from "../../../src/security/rate-limit.ts";
import { json } from "../support/proxy.ts";
import { freshClientIp, isolatedTenant } from "../support/tenant.ts";

type Verdict = boolean | "never";

interface RecordingLimiter {
  readonly binding: RateLimit;
  /** The key of every `limit()` call, in order. */
  readonly keys: string[];
}

/** A limiter that records each call in `events` and answers `verdict` (or never answers). */
function recordingLimiter(name: string, events: string[], verdict: () => Verdict): RecordingLimiter {
  const keys: string[] = [];
  const binding = {
    async limit({ key }: { key: string }) {
      keys.push(key);
      events.push(`${name} asked`);
      const answer = verdict();
      if (answer === "never") return new Promise<never>(() => undefined);
      await Promise.resolve();
      events.push(`${name} answered`);
      return { success: answer };
    },
  };
  return { binding: binding as unknown as RateLimit, keys };
}

/**
 * Two limiters that hold their answers until both have been asked. Asked one after the other,
 * the first answers only after a fallback wait, so a sequential admission still completes and the
 * order of events shows it.
 */
function pairedLimiters(events: string[]): { auth: RateLimit; caller: RateLimit } {
  let asked = 0;
  let release: () => void = () => undefined;
  const bothAsked = new Promise<void>((resolve) => {
    release = resolve;
  });
  const held = (name: string) =>
    ({
      async limit() {
        events.push(`${name} asked`);
        asked += 1;
        if (asked === 2) release();
        await Promise.race([bothAsked, new Promise((resolve) => setTimeout(resolve, 500))]);
        events.push(`${name} answered`);
        return { success: true };
      },
    }) as unknown as RateLimit;
  return { auth: held("auth"), caller: held("caller") };
}

function tokenSetup() {
  const tenant = isolatedTenant();
  const token = `real_${crypto.randomUUID()}`;
  const env: Partial<Env> = { CLIENT_TOKENS: token, ALLOW_ANONYMOUS: "false" };
  return { tenant, token, env };
}

/** The parts of a refusal a caller can see, without the request id. */
async function visible(response: Response) {
  const body = await json<Record<string, unknown>>(response);
  delete body.requestId;
  return {
    status: response.status,
    body,
    retryAfter: response.headers.get("retry-after"),
    challenge: response.headers.get("www-authenticate"),
  };
}

describe("admission: the lockout check and the caller's limit side by side", () => {
  it.each([
    ["/workflow_runs", "RATE_LIMITER"],
    ["/stats", "STATS_RATE_LIMITER"],
  ] as const)("%s asks the caller's %s while the lockout verdict is on its way", async (path, limiter) => {
    const { tenant, token, env } = tokenSetup();
    const events: string[] = [];
    const { auth, caller } = pairedLimiters(events);
    const response = await tenant.call(path, {
      env: { ...env, AUTH_RATE_LIMITER: auth, [limiter]: caller },
      headers: { authorization: `Bearer ${token}` },
    });
    expect(response.status).toBe(200);
    expect(events.slice(0, 2).sort()).toEqual(["auth asked", "caller asked"]);
  });

  it("refuses a locked-out address with one answer for the right token, a wrong one and a malformed header, without waiting for the caller's limiter", async () => {
    const { tenant, token, env } = tokenSetup();
    const events: string[] = [];
    const auth = recordingLimiter("auth", events, () => false);
    // The caller's limiter never answers: a locked-out answer that waited for it would never come.
    const callerLimit = recordingLimiter("caller", events, () => "never");
    const ip = freshClientIp();
    const call = (authorization: string) =>
      tenant.call("/workflow_runs", {
        env: { ...env, AUTH_RATE_LIMITER: auth.binding, RATE_LIMITER: callerLimit.binding },
        headers: { authorization, "cf-connecting-ip": ip },
      });
    const right = await visible(await call(`Bearer ${token}`));
    const wrong = await visible(await call(`Bearer guess_${crypto.randomUUID()}`));
    const malformed = await visible(await call(`Basic ${btoa(`user:${token}`)}`));
    expect(right.status).toBe(429);
    expect(right.body.code).toBe("RATE_LIMIT_EXCEEDED");
    expect(right.retryAfter).toBe("60");
    expect(right.challenge).toBeNull();
    expect(wrong).toEqual(right);
    expect(malformed).toEqual(right);
    expect(tenant.fake.listCalls).toHaveLength(0);
    // Each request spent one unit of the address's budget, and only one: no rejected-credential charge.
    expect(auth.keys).toHaveLength(3);
  });

  it("once an address was seen locked out, its caller's budget is asked only after the lockout verdict", async () => {
    const { tenant, token, env } = tokenSetup();
    const events: string[] = [];
    let locked = true;
    const auth = recordingLimiter("auth", events, () => !locked);
    const callerLimit = recordingLimiter("caller", events, () => true);
    const ip = freshClientIp();
    const call = () =>
      tenant.call("/workflow_runs", {
        env: { ...env, AUTH_RATE_LIMITER: auth.binding, RATE_LIMITER: callerLimit.binding },
        headers: { authorization: `Bearer ${token}`, "cf-connecting-ip": ip },
      });
    expect((await call()).status).toBe(429);
    const askedBefore = callerLimit.keys.length;
    expect((await call()).status).toBe(429);
    // A refused request from the known locked-out address costs its caller nothing.
    expect(callerLimit.keys).toHaveLength(askedBefore);

    locked = false;
    events.length = 0;
    expect((await call()).status).toBe(200);
    expect(events).toEqual(["auth asked", "auth answered", "caller asked", "caller answered"]);
  });

  it("after a rejected credential, the address's next caller is asked for only after its lockout verdict", async () => {
    const { tenant, token, env } = tokenSetup();
    const events: string[] = [];
    const auth = recordingLimiter("auth", events, () => true);
    const callerLimit = recordingLimiter("caller", events, () => true);
    const ip = freshClientIp();
    const call = (authorization: string) =>
      tenant.call("/workflow_runs", {
        env: { ...env, AUTH_RATE_LIMITER: auth.binding, RATE_LIMITER: callerLimit.binding },
        headers: { authorization, "cf-connecting-ip": ip },
      });
    expect((await call(`Bearer guess_${crypto.randomUUID()}`)).status).toBe(401);
    expect(callerLimit.keys).toHaveLength(0);
    events.length = 0;
    expect((await call(`Bearer ${token}`)).status).toBe(200);
    expect(events).toEqual(["auth asked", "auth answered", "caller asked", "caller answered"]);
  });

  it("counts each request once in each budget it belongs to", async () => {
    const { tenant, token, env } = tokenSetup();
    const events: string[] = [];
    const auth = recordingLimiter("auth", events, () => true);
    const pages = recordingLimiter("pages", events, () => true);
    const stats = recordingLimiter("stats", events, () => true);
    const ip = freshClientIp();
    const limiters = {
      AUTH_RATE_LIMITER: auth.binding,
      RATE_LIMITER: pages.binding,
      STATS_RATE_LIMITER: stats.binding,
    };
    const call = (path: string, authorization: string) =>
      tenant.call(path, { env: { ...env, ...limiters }, headers: { authorization, "cf-connecting-ip": ip } });
    for (let i = 0; i < 3; i++) {
      const response = await call("/workflow_runs?maxPageSize=5", `Bearer ${token}`);
      expect(response.status).toBe(200);
      await response.body?.cancel();
    }
    for (let i = 0; i < 2; i++) {
      const response = await call("/stats", `Bearer ${token}`);
      expect(response.status).toBe(200);
      await response.body?.cancel();
    }
    expect(auth.keys).toHaveLength(5);
    expect(new Set(auth.keys).size).toBe(1);
    expect(pages.keys).toHaveLength(3);
    expect(stats.keys).toHaveLength(2);
    expect(new Set([...pages.keys, ...stats.keys])).toEqual(new Set([pages.keys[0]]));
    expect(pages.keys[0]).toMatch(/^token:[0-9a-f]{16}$/);

    expect((await call("/workflow_runs", "Bearer guess_0000000000000000000000000000000")).status).toBe(401);
    expect(auth.keys).toHaveLength(5 + REJECTED_CREDENTIAL_COST);
    expect(pages.keys).toHaveLength(3);
  });
});
