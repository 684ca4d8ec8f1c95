// A caller this isolate has seen admitted goes on before the Rate Limiting binding answers again
// (src/security/limiter-ledger.ts); every request is still counted, and a refusal, wherever its
// units were spent, stops the caller from the next request on. The bindings are recording fakes.
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env as testEnv } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import worker from "../../../src/index.ts";
import { RATE_LIMITER_DEFAULTS } from "../../../src/security/limits.ts";
import wranglerToml from "../../../wrangler.toml?raw";
import { captureConsole, requestLines } from "../support/console.ts";
import { json } from "../support/proxy.ts";
import { freshClientIp, isolatedTenant } from "../support/tenant.ts";

/** Long enough for a request that needs no verdict; a request waiting for one never ends. */
const ANSWER_WITHIN_MS = 5_000;
/**
 * For a request expected to wait: one that needs no verdict answers well within this. A machine
 * too slow for that makes such a request look waiting, which is what these cases expect anyway.
 */
const WAITS = 500;

interface Limiter {
  readonly binding: RateLimit;
  /** The key of every `limit()` call, in order. */
  readonly keys: string[];
  /** From now on, calls wait for release(). */
  hold(): void;
  /** Answers every held call, and every later one at once until the next hold(). */
  release(): void;
}

/** Answers its first call with `first`, and every later one with `later` (held while asked to). */
function limiter(first: boolean, later: boolean): Limiter {
  const keys: string[] = [];
  const held: (() => void)[] = [];
  let holding = false;
  return {
    keys,
    binding: {
      limit: ({ key }) => {
        keys.push(key);
        const success = keys.length === 1 ? first : later;
        if (!holding) return Promise.resolve({ success });
        return new Promise((resolve) => held.push(() => resolve({ success })));
      },
    },
    hold: () => {
      holding = true;
    },
    release: () => {
      holding = false;
      for (const answer of held.splice(0)) answer();
    },
  };
}

function setup(overrides: Partial<Env> = {}) {
  const tenant = isolatedTenant();
  const token = `real_${crypto.randomUUID()}`;
  const ip = freshClientIp();
  const settings: Partial<Env> = {
    ...tenant.env,
    CLIENT_TOKENS: token,
    ALLOW_ANONYMOUS: "false",
    ...overrides,
  };
  /**
   * Sends one request while `held` hold their verdicts, and says whether the Worker answered in
   * time without them; then releases them and lets background work finish.
   */
  const send = async (
    path: string,
    authorization: string,
    held: Limiter[],
    patienceMs = ANSWER_WITHIN_MS,
  ) => {
    for (const limiter of held) limiter.hold();
    const ctx = createExecutionContext();
    const request = new Request(`https://proxy.test${path}`, {
      headers: { authorization, "cf-connecting-ip": ip },
    });
    const answer = worker.fetch(request, { ...testEnv, ...settings }, ctx);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const result = await Promise.race([
      answer,
      new Promise<"waiting">((resolve) => {
        timer = setTimeout(() => resolve("waiting"), patienceMs);
      }),
    ]);
    clearTimeout(timer);
    for (const limiter of held) limiter.release();
    const response = result === "waiting" ? await answer : result;
    const status = response.status;
    await response.body?.cancel();
    await waitOnExecutionContext(ctx);
    return { waited: result === "waiting", status };
  };
  return { tenant, token, settings, send };
}

describe("early admission of trusted callers", () => {
  it.each([
    ["/workflow_runs?maxPageSize=5", "RATE_LIMITER"],
    ["/stats", "STATS_RATE_LIMITER"],
  ] as const)(
    "%s: a caller admitted before is answered without waiting for its verdicts, and still counted",
    async (path, budget) => {
      const auth = limiter(true, true);
      const caller = limiter(true, true);
      const { token, send } = setup({ AUTH_RATE_LIMITER: auth.binding, [budget]: caller.binding });
      const bearer = `Bearer ${token}`;

      expect(await send(path, bearer, [])).toEqual({ waited: false, status: 200 });
      // Both verdicts are held now: a request that waited for either would never be answered.
      expect(await send(path, bearer, [auth, caller])).toEqual({ waited: false, status: 200 });
      expect(await send(path, bearer, [auth, caller])).toEqual({ waited: false, status: 200 });
      expect(auth.keys).toHaveLength(3);
      expect(caller.keys).toHaveLength(3);
      expect(new Set(caller.keys).size).toBe(1);
    },
  );

  it("refuses a caller from the request after its first refused verdict, with no upstream call", async () => {
    const auth = limiter(true, true);
    // Admitted once here, then spent by other isolates: every later verdict refuses.
    const caller = limiter(true, false);
    const { tenant, token, send } = setup({ AUTH_RATE_LIMITER: auth.binding, RATE_LIMITER: caller.binding });
    const bearer = `Bearer ${token}`;
    const page = (i: number) => `/workflow_runs?maxPageSize=1&workflowId=wf_${i}`;

    expect((await send(page(1), bearer, [auth, caller])).status).toBe(200);
    // Trusted: answered before its (refusing) verdict came back.
    expect(await send(page(2), bearer, [auth, caller])).toEqual({ waited: false, status: 200 });
    const calls = tenant.fake.listCalls.length;
    // From here the caller waits for each verdict, and each refuses.
    expect(await send(page(3), bearer, [auth, caller], WAITS)).toEqual({ waited: true, status: 429 });
    expect(await send(page(4), bearer, [auth, caller], WAITS)).toEqual({ waited: true, status: 429 });
    expect(tenant.fake.listCalls).toHaveLength(calls);
    expect(caller.keys).toHaveLength(4);
  });

  it("answers wrong credentials with the lockout when their early attempt is refused, and then the right ones too", async () => {
    // The address was admitted once here; other isolates then saw it locked out.
    const auth = limiter(true, false);
    const caller = limiter(true, true);
    const { token, send } = setup({ AUTH_RATE_LIMITER: auth.binding, RATE_LIMITER: caller.binding });

    expect((await send("/workflow_runs?maxPageSize=1", `Bearer ${token}`, [])).status).toBe(200);
    // A wrong guess goes on early, but its answer waits for the lockout verdict: 429, not 401.
    const guess = await send(
      "/workflow_runs?maxPageSize=1",
      `Bearer guess_${crypto.randomUUID()}`,
      [auth],
      WAITS,
    );
    expect(guess).toEqual({ waited: true, status: 429 });
    // The address is suspect now: the right token waits for its verdict, and is refused.
    expect(await send("/workflow_runs?maxPageSize=1", `Bearer ${token}`, [auth], WAITS)).toEqual({
      waited: true,
      status: 429,
    });
  });

  it("sends an early answer's unit after the response, and its log line says when the binding failed", async () => {
    let calls = 0;
    const flaky = {
      limit: () => (++calls === 1 ? Promise.resolve({ success: true }) : Promise.reject(new Error("down"))),
    } as unknown as RateLimit;
    const tenant = isolatedTenant();
    const token = `real_${crypto.randomUUID()}`;
    const options = {
      env: { CLIENT_TOKENS: token, ALLOW_ANONYMOUS: "false", RATE_LIMITER: flaky },
      headers: { authorization: `Bearer ${token}` },
    };
    expect((await tenant.call("/workflow_runs?maxPageSize=1", options)).status).toBe(200);
    const { result, lines } = await captureConsole(() =>
      tenant.call("/workflow_runs?maxPageSize=1", options),
    );
    expect(result.status).toBe(200);
    expect(calls).toBe(2);
    expect(requestLines(lines)[0]?.warnings).toEqual(["RATE_LIMITER unavailable; request allowed"]);
  });

  it("waits for every verdict when a limit is set to 0", async () => {
    const auth = limiter(true, true);
    const caller = limiter(true, false);
    const { token, send } = setup({
      AUTH_RATE_LIMITER: auth.binding,
      RATE_LIMITER: caller.binding,
      RATE_LIMITER_LIMIT: "0",
    });
    const bearer = `Bearer ${token}`;
    expect((await send("/workflow_runs?maxPageSize=1", bearer, [auth, caller])).status).toBe(200);
    expect(await send("/workflow_runs?maxPageSize=1", bearer, [auth, caller], WAITS)).toEqual({
      waited: true,
      status: 429,
    });
  });
});

describe("the *_LIMIT settings", () => {
  it("repeat every environment's binding limits in wrangler.toml", () => {
    const blocks = [
      ...wranglerToml.matchAll(/name = "(\w+)"\nnamespace_id = "\d+"\nsimple = \{ limit = (\d+)/g),
    ];
    expect(blocks).toHaveLength(9);
    for (const [, name, limit] of blocks) {
      expect(Number(limit), name).toBe(RATE_LIMITER_DEFAULTS[name as keyof typeof RATE_LIMITER_DEFAULTS]);
    }
  });

  it("refuse a malformed value, naming the setting", async () => {
    const response = await isolatedTenant().call("/stats", { env: { STATS_RATE_LIMITER_LIMIT: "many" } });
    const body = await json<{ code: string; message: string }>(response);
    expect(response.status).toBe(500);
    expect(body.code).toBe("CONFIG_INVALID");
    expect(body.message).toContain("STATS_RATE_LIMITER_LIMIT");
  });
});
