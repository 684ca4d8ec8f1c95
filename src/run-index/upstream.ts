// The Extend calls the sync makes, behind a narrow interface so the sync runs against any source
// of pages: in the object, Extend under the tenant's gateway budget (the one budget every upstream
// call of the tenant shares); in tests, the fake.
import type { Config } from "../app/config.ts";
import {
  type AttemptReport,
  createExtendUpstream,
  type ExtendUpstream,
  type ListOptions,
  type RunLookup,
  type UpstreamPage,
  type WorkflowPage,
} from "../extend/client.ts";
import type { CanonicalListQuery } from "../extend/schemas.ts";
import type { Slot } from "../gateway/scheduler.ts";
import {
  type GatewaySettings,
  sendTracked,
  type TenantGateway,
  upstreamConfig,
} from "../gateway/tenant-gateway.ts";
import type { Clock } from "../lib/clock.ts";

export type { RunLookup, WorkflowPage };

/** A list page as the sync needs it. */
export type SyncPage = Pick<UpstreamPage, "data" | "nextPageToken">;

export interface SyncUpstream {
  list(query: CanonicalListQuery, signal: AbortSignal): Promise<SyncPage>;
  getRun(id: string, signal: AbortSignal): Promise<RunLookup>;
  listWorkflows(nextPageToken: string | undefined, signal: AbortSignal): Promise<WorkflowPage>;
}

/** Upstream connections the sync holds open at once: the Workers cap per invocation. */
export const MAX_OPEN_CALLS = 6;

/** A counting semaphore: at most `size` holders at once, the rest served in arrival order. */
export class Permits {
  private free: number;
  private readonly waiting: (() => void)[] = [];

  constructor(size: number) {
    this.free = size;
  }

  acquire(): Promise<void> {
    if (this.free > 0) {
      this.free -= 1;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.free += 1;
  }
}

// One set per gateway (per object): the sync's calls of every alarm and request share it.
const openCalls = new WeakMap<TenantGateway, Permits>();

/** Who the sync's calls are for, in the gateway's round-robin among callers. */
export const SYNC_CALLER = "run-index";
/** Longest a sync call waits for its turn behind interactive calls before it is put off. */
export const SYNC_MAX_WAIT_MS = 5_000;

/**
 * The sync's calls under the tenant's gateway budget, at bulk priority: every attempt takes a
 * slot of the gateway's scheduler first and reports Extend's answer back to it. List pages are
 * read by the object's own client rather than through the gateway's shared loads, which hand
 * back text: parsing each 1000-run page twice was a third of the object's time per page during a
 * backfill, and no two sync walks ask for the same page, so sharing gained nothing.
 *
 * Each slot is tracked as the gateway's own loads track theirs: it frees one window after the
 * call's arrival at Extend is bounded (its prompt departure, else its answer), not a fixed time
 * after its grant. The object's isolate is busy between pages (writing one, serving the Worker),
 * and calls granted then leave late: counted from their grant, a window's calls and the next
 * window's would reach Extend within one second.
 *
 * An attempt holds one of MAX_OPEN_CALLS permits from just before its slot until its body is
 * read: a page being written holds none, so more calls than that may be under way. The permit
 * comes first because the budget counts a start from its grant: a call granted its slot must
 * leave then, not after waiting for a connection, or two windows' calls would reach Extend in one.
 */
export function gatewayUpstream(
  gateway: TenantGateway,
  settings: GatewaySettings,
  clock: Clock,
): SyncUpstream {
  const config = upstreamConfig(settings);
  const slot = { priority: "bulk" as const, caller: SYNC_CALLER, maxWaitMs: SYNC_MAX_WAIT_MS, tracked: true };
  let permits = openCalls.get(gateway);
  if (!permits) {
    permits = new Permits(MAX_OPEN_CALLS);
    openCalls.set(gateway, permits);
  }
  const open = permits;
  const budgeted = <T>(
    signal: AbortSignal,
    call: (client: ExtendUpstream, options: ListOptions) => Promise<T>,
  ): Promise<T> => {
    gateway.scheduler.configure(settings.maxRps);
    let held = false;
    let granted: Slot | undefined;
    const release = () => {
      if (!held) return;
      held = false;
      open.release();
    };
    // A start whose attempt was never sent (deadline, abort) is let go, or it would hold its slot.
    const letGo = () => {
      granted?.ended(clock.now());
      granted = undefined;
    };
    const client = createExtendUpstream(config, {
      clock,
      fetch: (input, init) => {
        const start = granted;
        granted = undefined;
        return start ? sendTracked(start, clock, () => fetch(input, init)) : fetch(input, init);
      },
    });
    return call(client, {
      signal,
      beforeAttempt: async () => {
        release();
        letGo();
        // The permit before the slot: a start counts from its grant, so the call must leave at
        // once, not after waiting for a connection.
        await open.acquire();
        held = true;
        granted = await gateway.scheduler.enqueue(slot).started;
        return undefined;
      },
      onAttempt: (report: AttemptReport) => {
        release();
        gateway.scheduler.observe(report.status, report.retryAfterMs);
      },
    }).finally(() => {
      release();
      letGo();
    });
  };
  return {
    list(query, signal) {
      return budgeted(signal, (client, options) => client.list(query, options));
    },
    getRun(id, signal) {
      return budgeted(signal, (client, options) => client.getRun(id, options));
    },
    listWorkflows(token, signal) {
      return budgeted(signal, (client, options) => client.listWorkflows(token, options));
    },
  };
}

/**
 * The settings the object needs to sync, as plain values (RPC carries no URL objects). The
 * upstream key is not among them: the object reads it from its own env.
 */
export interface IndexSettings {
  baseUrl: string;
  apiVersion: string;
  workspaceId: string | null;
  timeoutMs: number;
  deadlineMs: number;
  maxRps: number;
  syncSeconds: number;
  reconcileSeconds: number;
  lookbackSeconds: number;
}

export function indexSettings(config: Config): IndexSettings {
  return {
    baseUrl: config.extendApiBaseUrl.toString(),
    apiVersion: config.extendApiVersion,
    workspaceId: config.extendWorkspaceId ?? null,
    timeoutMs: config.upstreamTimeoutMs,
    deadlineMs: config.upstreamDeadlineMs,
    maxRps: config.upstreamMaxRps,
    syncSeconds: config.indexSyncSeconds,
    reconcileSeconds: config.indexReconcileSeconds,
    lookbackSeconds: config.indexLookbackSeconds,
  };
}

/** The gateway's settings for these index settings, with the object's own key. */
export function gatewaySettings(settings: IndexSettings, apiKey: string): GatewaySettings {
  return {
    baseUrl: settings.baseUrl,
    apiVersion: settings.apiVersion,
    workspaceId: settings.workspaceId ?? undefined,
    apiKey,
    timeoutMs: settings.timeoutMs,
    deadlineMs: settings.deadlineMs,
    maxRps: settings.maxRps,
  };
}
