// The two Extend calls the sync makes, behind a narrow interface so the sync can run against any
// source of pages (the real client here; the gateway's budgeted calls once it exists).
import type { Config } from "../app/config.ts";
import type { ExtendUpstream, ListOptions, RunLookup, UpstreamPage } from "../extend/client.ts";
import type { CanonicalListQuery } from "../extend/schemas.ts";
import { MAX_PAUSE_WAIT_MS, type RateBudget } from "../stats/budget.ts";

export type { RunLookup };

/** A list page as the sync needs it. */
export type SyncPage = Pick<UpstreamPage, "data" | "nextPageToken">;

export interface SyncUpstream {
  list(query: CanonicalListQuery, signal: AbortSignal): Promise<SyncPage>;
  getRun(id: string, signal: AbortSignal): Promise<RunLookup>;
}

/**
 * Every attempt, retries included, takes a slot of the object's rate budget right before it
 * goes out and reports back how Extend answered; a 429 pause longer than a few seconds ends the
 * call with BudgetPaused instead of holding the alarm.
 */
export function budgetedUpstream(client: ExtendUpstream, budget: RateBudget): SyncUpstream {
  const options = (signal: AbortSignal): ListOptions => ({
    signal,
    beforeAttempt: () => budget.acquire(signal, MAX_PAUSE_WAIT_MS),
    onAttempt: (report) => budget.observe(report.status),
  });
  return {
    list: (query, signal) => client.list(query, options(signal)),
    getRun: (id, signal) => client.getRun(id, options(signal)),
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

/** The object's own configuration (its key) with the tenant's upstream settings laid over it. */
export function upstreamConfig(own: Config, settings: IndexSettings): Config {
  return {
    ...own,
    extendApiBaseUrl: new URL(settings.baseUrl),
    extendApiVersion: settings.apiVersion,
    extendWorkspaceId: settings.workspaceId ?? undefined,
    upstreamTimeoutMs: settings.timeoutMs,
    upstreamDeadlineMs: settings.deadlineMs,
    upstreamMaxRps: settings.maxRps,
  };
}
