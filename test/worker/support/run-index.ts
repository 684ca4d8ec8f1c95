// Test support for the run index: a fake Extend per test (a workspace of its own, so each test
// has its own tenant object), the object's stub, and ways to drive its alarm to a quiet state.
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach } from "vitest";
import type { FakeExtend, FakeExtendOptions } from "../../../fake/extend.ts";
import { loadConfig } from "../../../src/app/config.ts";
import { ApiError } from "../../../src/app/errors.ts";
import { tenantScope } from "../../../src/cache/keys.ts";
import { createExtendUpstream } from "../../../src/extend/client.ts";
import type { CanonicalListQuery } from "../../../src/extend/schemas.ts";
import { migrate } from "../../../src/run-index/schema.ts";
import {
  DEFAULT_LIMITS,
  RunIndexSync,
  type RunLimits,
  readState,
  type SyncState,
} from "../../../src/run-index/sync.ts";
import type { IndexSettings, SyncUpstream } from "../../../src/run-index/upstream.ts";
import type { TenantObject } from "../../../src/tenant/object.ts";
import { FAKE_EXTEND_ORIGIN } from "./constants.ts";
import { getStats } from "./stats.ts";
import { isolatedTenant, type Tenant, type TenantOptions } from "./tenant.ts";

export interface IndexFake extends Tenant {
  /** The tenant's object, which holds its run index. */
  stub: DurableObjectStub<TenantObject>;
}

/** A tenant of its own (workspace, fake Extend, object), with the run index on. */
export async function useIndexFake(
  options: Partial<FakeExtendOptions> & Pick<TenantOptions, "pageLimit"> = {},
  settings: Partial<Env> = {},
): Promise<IndexFake> {
  const tenant = isolatedTenant({ ...options, env: { RUN_INDEX: "on", ...settings } });
  const stub = await stubFor(tenant.env);
  objectsInUse.add(stub);
  return { ...tenant, stub };
}

const objectsInUse = new Set<DurableObjectStub<TenantObject>>();

// An alarm a test left set (a webhook's confirming head walk, the next sync) would call a fake
// that is gone by the time it fires, in the middle of another test.
afterEach(async () => {
  for (const stub of objectsInUse) await stopAlarm(stub);
  objectsInUse.clear();
});

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

/** An index built by its first /stats, its alarm stopped: the test drives every sync from here. */
export async function restingIndex(
  options: Parameters<typeof useIndexFake>[0] = {},
  settings: Partial<Env> = {},
): Promise<IndexFake> {
  const index = await useIndexFake(options, settings);
  await getStats(index, {});
  await settle(index.stub);
  await stopAlarm(index.stub);
  return index;
}

// The sync engine (src/run-index/sync.ts) driven directly inside a fresh object, against the fake
// Extend through the real client, with a clock the test moves.

export const ENGINE_SETTINGS: IndexSettings = {
  baseUrl: FAKE_EXTEND_ORIGIN,
  apiVersion: "2026-02-09",
  workspaceId: null,
  timeoutMs: 8_000,
  deadlineMs: 20_000,
  maxRps: 1_000,
  syncSeconds: 30,
  reconcileSeconds: 86_400,
  lookbackSeconds: 180,
};

/** A clock after every generated run's updatedAt (datasets end on 2026-11-01, updates run 3 days on). */
export const ENGINE_EPOCH = Date.parse("2026-11-10T00:00:00.000Z");

export interface EngineUpstreamOptions {
  /** Answer at most this many runs per list page whatever maxPageSize asks for. */
  pageLimit?: number;
  /** Ids the list leaves out (as a cursor that skips rows would) while GET still finds them. */
  hiddenFromList?: ReadonlySet<string>;
}

export interface EngineUpstream extends SyncUpstream {
  lists: CanonicalListQuery[];
  /** The run ids of each list page answered, in order. */
  pageIds: string[][];
  gets: string[];
  workflowPages: number;
  /** When set, every call after this many fails as a network error would. */
  failAfter: number | undefined;
}

export function engineUpstream(fake: FakeExtend, options: EngineUpstreamOptions = {}): EngineUpstream {
  const config = loadConfig({ ...env, RUN_INDEX: "on" } as Env);
  const client = createExtendUpstream(
    { ...config, extendWorkspaceId: fake.options.workspaceId },
    {
      fetch: async (input, init) => {
        const url = new URL(String(input));
        const size = Number(url.searchParams.get("maxPageSize") ?? "10");
        if (options.pageLimit !== undefined && size > options.pageLimit) {
          url.searchParams.set("maxPageSize", String(options.pageLimit));
        }
        return fake.handle(new Request(url, init));
      },
      clock: { now: () => Date.now(), sleep: async () => undefined },
    },
  );
  const upstream: EngineUpstream = {
    lists: [],
    pageIds: [],
    gets: [],
    workflowPages: 0,
    failAfter: undefined,
    async list(query, signal) {
      check();
      upstream.lists.push(query);
      const page = await client.list(query, { signal });
      const hidden = options.hiddenFromList;
      const answer = hidden
        ? { ...page, data: page.data.filter((run) => !hidden.has(String(run.id))) }
        : page;
      upstream.pageIds.push(answer.data.map((run) => String(run.id)));
      return answer;
    },
    async getRun(id, signal) {
      check();
      upstream.gets.push(id);
      return client.getRun(id, { signal });
    },
    async listWorkflows(token, signal) {
      check();
      upstream.workflowPages += 1;
      return client.listWorkflows(token, { signal });
    },
  };
  const check = () => {
    const calls = upstream.lists.length + upstream.gets.length + upstream.workflowPages;
    if (upstream.failAfter !== undefined && calls >= upstream.failAfter) {
      throw new ApiError("UPSTREAM_ERROR", "Could not connect to Extend.");
    }
  };
  return upstream;
}

export interface Engine {
  sync: RunIndexSync;
  sql: SqlStorage;
}

export interface EngineClock {
  now: number;
}

/** A tenant object no other test uses. */
export function freshObject(): DurableObjectStub<TenantObject> {
  return env.TENANT.getByName(`engine-test-${crypto.randomUUID()}`);
}

/**
 * Runs `fn` inside `stub` with a new sync engine over its storage: a new engine per call is what
 * an evicted and restarted object would build.
 */
export function inEngine<T>(
  stub: DurableObjectStub<TenantObject>,
  upstream: SyncUpstream,
  clock: EngineClock,
  fn: (engine: Engine) => Promise<T>,
  settings: IndexSettings = ENGINE_SETTINGS,
  /** Runs at the end of every transaction's body: throwing there is a crash before the commit. */
  beforeCommit: () => void = () => undefined,
): Promise<T> {
  return runInDurableObject(stub, async (_instance, state) => {
    const sql = state.storage.sql;
    migrate(sql);
    const sync = new RunIndexSync({
      sql,
      transaction: (body) =>
        state.storage.transactionSync(() => {
          const result = body();
          beforeCommit();
          return result;
        }),
      upstream,
      now: () => clock.now,
    });
    sync.configure(settings);
    return fn({ sync, sql });
  });
}

/** Ticks until a tick finds nothing to do (at the engine's current time). */
export async function drain(
  sync: RunIndexSync,
  limits: RunLimits = DEFAULT_LIMITS,
  maxTicks = 500,
): Promise<void> {
  for (let i = 0; i < maxTicks; i++) {
    const result = await sync.tick(limits);
    if (result.error !== undefined) throw new Error(`sync failed: ${result.error}`);
    if (result.calls === 0) return;
  }
  throw new Error("the sync kept finding work");
}
