// The Worker's side of the run index: which object holds the tenant's index, and the calls the
// routes and the cron make to it.
import type { Config } from "../app/config.ts";
import { loadConfig } from "../app/config.ts";
import { ApiError } from "../app/errors.ts";
import { logLine } from "../app/request-log.ts";
import { gatewayLocationHint, gatewayName } from "../gateway/client.ts";
import type { StatsFilters } from "../stats/filters.ts";
import type { WorkflowRunStats } from "../stats/schemas.ts";
import type { TenantObject } from "../tenant/object.ts";
import type { IndexAnswer } from "./answer.ts";
import type { EventOutcome, IndexEvent } from "./sync.ts";
import { type IndexSettings, indexSettings } from "./upstream.ts";
import type { DashboardIndexAnswer, IndexWorkflows, WorkflowsQuery } from "./workflows.ts";

/** The tenant's object, by the same non-secret name every part of the proxy uses for it. */
export async function tenantObject(env: Env, config: Config): Promise<DurableObjectStub<TenantObject>> {
  // Placed as the gateway places it: whichever route creates the object first fixes where it runs.
  const hint = gatewayLocationHint(config);
  return env.TENANT.getByName(await gatewayName(config), hint ? { locationHint: hint } : {});
}

const settings = new WeakMap<Config, IndexSettings>();

/** The index settings of a parsed configuration, built once per isolate. */
function settingsOf(config: Config): IndexSettings {
  let built = settings.get(config);
  if (!built) {
    built = indexSettings(config);
    settings.set(config, built);
  }
  return built;
}

/** The index's answer, with the dashboard's per-workflow view when it was asked for. */
export type IndexAnswerWith = IndexAnswer & { workflows?: IndexWorkflows };

/**
 * The index's answer for /stats, or undefined when the route should scan: RUN_INDEX=off, or the
 * object failed (the index is an accelerator; /stats keeps working without it). With `workflows`,
 * the same call also reads the dashboard's per-workflow view.
 */
export async function statsFromIndex(
  env: Env,
  config: Config,
  filters: StatsFilters,
  maxLagSeconds: number | undefined,
  requestId: string,
  workflows?: WorkflowsQuery,
): Promise<IndexAnswerWith | undefined> {
  if (!config.runIndex) return undefined;
  try {
    const stub = await tenantObject(env, config);
    const options = maxLagSeconds === undefined ? {} : { maxLagSeconds };
    if (workflows === undefined) {
      return (await stub.indexStats(filters, settingsOf(config), options)) as IndexAnswer;
    }
    const answer = (await stub.indexDashboard(
      filters,
      settingsOf(config),
      options,
      workflows,
    )) as DashboardIndexAnswer;
    return answer.kind === "ready" ? { ...answer.stats, workflows: answer.workflows } : answer.stats;
  } catch (error) {
    logLine({
      level: "warn",
      msg: "run index unavailable, scanning",
      requestId,
      error: error instanceof Error ? error.name : "unknown",
    });
    return undefined;
  }
}

/** The 503 for an index that could not catch up with `maxLagSeconds` in time. */
export function indexLagging(answer: { lagSeconds: number; retryAfterSeconds: number }): ApiError {
  return new ApiError(
    "INDEX_LAGGING",
    `The run index is ${Math.round(answer.lagSeconds)} s behind Extend and could not catch up in time.`,
    { retryAfter: answer.retryAfterSeconds },
  );
}

/** Headers of an index answer: not from the KV cache, modified when its sync began. */
export function indexHeaders(body: WorkflowRunStats): Record<string, string> {
  return {
    "x-cache": "BYPASS",
    "cache-control": "private, no-cache",
    "last-modified": new Date(body.asOf ?? body.computedAt).toUTCString(),
  };
}

/** What a scan's answer adds: its source, and while the index is built, how far it is. */
export function scanSource(answer: IndexAnswer | undefined) {
  return {
    source: "scan" as const,
    asOf: null,
    lagSeconds: null,
    ...(answer?.kind === "building" ? { build: answer.build } : {}),
  };
}

/** Hands a verified event to the index; with RUN_INDEX=off it is acknowledged and dropped. */
export async function deliverEvent(
  env: Env,
  config: Config,
  event: IndexEvent,
): Promise<EventOutcome | undefined> {
  if (!config.runIndex) return undefined;
  const stub = await tenantObject(env, config);
  return (await stub.indexEvent(event, indexSettings(config))) as EventOutcome;
}

/**
 * The Cron Trigger: re-arms the alarm of the tenant's index if it was lost (an index in use
 * always has one), or with RUN_INDEX=off removes the index's storage and alarm.
 */
export async function watchdog(_controller: ScheduledController, env: Env): Promise<void> {
  let config: Config;
  try {
    config = loadConfig(env);
  } catch {
    logLine({ level: "error", msg: "watchdog skipped: the configuration is invalid" });
    return;
  }
  const stub = await tenantObject(env, config);
  if (config.runIndex) await stub.indexWatchdog(indexSettings(config));
  else await stub.indexOff();
}
