// The two Extend calls the sync makes, behind a narrow interface so the sync runs against any
// source of pages: in the object, the tenant's gateway (the one budget every upstream call of
// the tenant shares); in tests, the fake.
import type { Config } from "../app/config.ts";
import { ApiError } from "../app/errors.ts";
import {
  type AttemptReport,
  createExtendUpstream,
  parseListBody,
  type RunLookup,
  type UpstreamPage,
  type WorkflowPage,
} from "../extend/client.ts";
import type { CanonicalListQuery } from "../extend/schemas.ts";
import type { GatewaySettings, TenantGateway } from "../gateway/tenant-gateway.ts";
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

/** The gateway refused the call or Extend failed it: the error the sync records (Retry-After kept). */
function outcomeError(outcome: { code: ApiError["code"]; message: string; retryAfter?: number }): ApiError {
  return new ApiError(
    outcome.code,
    outcome.message,
    outcome.retryAfter !== undefined ? { retryAfter: outcome.retryAfter } : {},
  );
}

/**
 * The sync's calls through the tenant's gateway, at bulk priority: list pages go through its
 * `list` (budget, shared loads); the GET of one run and the workflows' pages take a slot of the
 * same budget before every attempt and report each answer back to it.
 */
export function gatewayUpstream(
  gateway: TenantGateway,
  settings: GatewaySettings,
  clock: Clock,
): SyncUpstream {
  const client = createExtendUpstream(
    {
      extendApiKey: settings.apiKey,
      extendApiBaseUrl: new URL(settings.baseUrl),
      extendApiVersion: settings.apiVersion,
      extendWorkspaceId: settings.workspaceId,
      upstreamTimeoutMs: settings.timeoutMs,
      upstreamDeadlineMs: settings.deadlineMs,
    },
    { clock },
  );
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
    async list(query) {
      const outcome = await gateway.list({
        settings,
        query,
        ...slot,
        deadlineMs: settings.deadlineMs,
      });
      if (!outcome.ok) throw outcomeError(outcome);
      const page = parseListBody(outcome.body);
      if (!page)
        throw new ApiError("UPSTREAM_INVALID_RESPONSE", "Extend answered with a body that is not a list.");
      return page;
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
