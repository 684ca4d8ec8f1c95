// Test support for the run index: a fake Extend per test (a workspace of its own, so each test
// has its own tenant object), the object's stub, and ways to drive its alarm to a quiet state.
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { http } from "msw";
import { FakeExtend, type FakeExtendOptions } from "../../../fake/extend.ts";
import { loadConfig } from "../../../src/app/config.ts";
import { tenantScope } from "../../../src/cache/keys.ts";
import { readState, type SyncState } from "../../../src/run-index/sync.ts";
import type { TenantObject } from "../../../src/tenant/object.ts";
import { FAKE_EXTEND_ORIGIN, TEST_UPSTREAM_KEY } from "./constants.ts";
import { answerWithFake } from "./fake-upstream.ts";
import { network } from "./setup.ts";

let tenants = 0;

export interface IndexFake {
  fake: FakeExtend;
  env: Partial<Env>;
  /** Upstream requests as they arrived (list and GET by id). */
  calls: URL[];
  stub: DurableObjectStub<TenantObject>;
}

/** A fake Extend and a tenant of its own, with the run index on. */
export async function useIndexFake(
  options: Partial<FakeExtendOptions> = {},
  settings: Partial<Env> = {},
): Promise<IndexFake> {
  tenants += 1;
  const workspaceId = `ws_index_${Date.now().toString(36)}_${tenants}`;
  const fake = new FakeExtend({
    apiKey: TEST_UPSTREAM_KEY,
    dataset: { size: 120, seed: 7 },
    workspaceId,
    ...options,
  });
  const calls: URL[] = [];
  network.use(
    http.all(`${FAKE_EXTEND_ORIGIN}/*`, async ({ request }) => {
      calls.push(new URL(request.url));
      return answerWithFake(fake, request);
    }),
  );
  const testEnv = {
    EXTEND_WORKSPACE_ID: workspaceId,
    UPSTREAM_MAX_RPS: "1000",
    RUN_INDEX: "on",
    STATS_RATE_LIMITER: { limit: async () => ({ success: true }) },
    ...settings,
  } as Partial<Env>;
  return { fake, env: testEnv, calls, stub: await stubFor(testEnv) };
}

/** The tenant object the proxy uses for these settings. */
export async function stubFor(overrides: Partial<Env>): Promise<DurableObjectStub<TenantObject>> {
  const config = loadConfig({ ...env, ...overrides } as Env);
  return env.TENANT.getByName(await tenantScope(config));
}

export function syncState(stub: DurableObjectStub<TenantObject>): Promise<SyncState> {
  return runInDurableObject(stub, (_instance, state) => readState(state.storage.sql));
}

function quiet(state: SyncState): boolean {
  return state.phase === "ready" && state.headStartedAt === null && state.reconcileStartedAt === null;
}

/**
 * Runs the object's alarm until the index is built and nothing is in progress. A real alarm may
 * run meanwhile (workerd fires them); the sync's steps are idempotent, so both only advance it.
 */
export async function settle(stub: DurableObjectStub<TenantObject>, maxRounds = 400): Promise<SyncState> {
  for (let round = 0; round < maxRounds; round++) {
    await runDurableObjectAlarm(stub);
    const state = await syncState(stub);
    const pending = await runInDurableObject(
      stub,
      (_instance, s) => s.storage.sql.exec<{ n: number }>(`SELECT count(*) AS n FROM run_candidates`).one().n,
    );
    if (quiet(state) && pending === 0) return state;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  throw new Error("the run index did not settle");
}

/** Stops the object's alarm, so nothing of this test runs on into the next one. */
export async function stopAlarm(stub: DurableObjectStub<TenantObject>): Promise<void> {
  await runInDurableObject(stub, (_instance, state) => state.storage.deleteAlarm());
}
