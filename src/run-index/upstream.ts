// The Extend calls the sync makes, behind a narrow interface so the sync runs against any source
// of pages: in the object, Extend under the tenant's gateway budget (the one budget every upstream
// call of the tenant shares); in tests, the fake.
import type { Config } from "../app/config.ts";
import {
  type AttemptReport,
  createExtendUpstream,
  type RunLookup,
  type UpstreamPage,
  type WorkflowPage,
} from "../extend/client.ts";
import type { CanonicalListQuery } from "../extend/schemas.ts";
import { type GatewaySettings, type TenantGateway, upstreamConfig } from "../gateway/tenant-gateway.ts";
import type { Clock } from "../lib/clock.ts";

export type { RunLookup, WorkflowPage };

/** A list page as the sync needs it. */
export type SyncPage = Pick<UpstreamPage, "data" | "nextPageToken">;

export interface SyncUpstream {
  list(query: CanonicalListQuery, signal: AbortSignal): Promise<SyncPage>;
  getRun(id: string, signal: AbortSignal): Promise<RunLookup>;
  listWorkflows(nextPageToken: string | undefined, signal: AbortSignal): Promise<WorkflowPage>;
}

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
 */
export function gatewayUpstream(
  gateway: TenantGateway,
  settings: GatewaySettings,
  clock: Clock,
): SyncUpstream {
  const client = createExtendUpstream(upstreamConfig(settings), { clock });
  const slot = { priority: "bulk" as const, caller: SYNC_CALLER, maxWaitMs: SYNC_MAX_WAIT_MS };
  const budgeted = (signal: AbortSignal) => {
    gateway.scheduler.configure(settings.maxRps);
    return {
      signal,
      beforeAttempt: () => gateway.scheduler.acquire(slot),
      onAttempt: (report: AttemptReport) => gateway.scheduler.observe(report.status, report.retryAfterMs),
    };
  };
  return {
    list(query, signal) {
      return client.list(query, budgeted(signal));
    },
    getRun(id, signal) {
      return client.getRun(id, budgeted(signal));
    },
    listWorkflows(token, signal) {
      return client.listWorkflows(token, budgeted(signal));
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
