// The Worker's side of the tenant gateway: every upstream list call goes to the tenant's Durable
// Object, which budgets, coalesces and makes it. If the object cannot be reached the call is made
// from this isolate under a per-isolate budget, so a coordinator outage is never a proxy outage.
import type { Config } from "../app/config.ts";
import { ApiError } from "../app/errors.ts";
import { tenantScope } from "../cache/keys.ts";
import {
  type ListOptions,
  pageFromBytes,
  type UpstreamPage,
  type WorkflowRunsUpstream,
} from "../extend/client.ts";
import type { CanonicalListQuery } from "../extend/schemas.ts";
import { readExactly } from "../lib/bytes.ts";
import { type Clock, settledWithin } from "../lib/clock.ts";
import { BudgetPaused, isolateScheduler } from "./isolate-budget.ts";
import { SlotRefused } from "./scheduler.ts";
import type { GatewayListRequest, GatewayOutcome, GatewaySettings } from "./tenant-gateway.ts";

/** Longest a list miss waits for its turn unless the caller says otherwise. */
export const DEFAULT_MAX_WAIT_MS = 5_000;
/**
 * How long past the call's deadline the object may take to answer: it ends its own work by the
 * deadline, so an object silent beyond this is stuck and the call is made directly instead.
 */
export const GATEWAY_ANSWER_GRACE_MS = 2_000;

/** The object took longer to answer than its deadline allows (never given the call's details). */
class GatewaySilent extends Error {
  constructor(waitedMs: number) {
    super(`the tenant's gateway did not answer within ${waitedMs} ms`);
    this.name = "GatewaySilent";
  }
}

/**
 * The object's answer, or GatewaySilent once `waitMs` has passed. An answer that comes later
 * has its page cancelled, so the object is not left holding a page no one will read.
 */
async function answerWithin(call: Promise<GatewayOutcome>, waitMs: number): Promise<GatewayOutcome> {
  const settled = await settledWithin(call, waitMs);
  if (settled.kind === "done") return settled.value;
  if (settled.kind === "failed") throw settled.error;
  call.then(
    (outcome) => {
      if (outcome.ok) outcome.body.cancel().catch(() => undefined);
    },
    () => undefined,
  );
  throw new GatewaySilent(waitMs);
}

/** The part of the `TENANT` binding the gateway needs (a test may hand in one that fails). */
export interface GatewayNamespace {
  getByName(
    name: string,
    options?: DurableObjectNamespaceGetDurableObjectOptions,
  ): { list(request: GatewayListRequest): Promise<GatewayOutcome> };
}

export interface GatewayUpstreamDeps {
  /** The `TENANT` binding; without one every call is made directly (and says so). */
  namespace: GatewayNamespace | undefined;
  config: Config;
  /** The plain Extend client, for the direct path. */
  direct: WorkflowRunsUpstream;
  clock: Clock;
  /** Told when a call went direct because the object failed (never given the error's text). */
  onFallback: (reason: string, error: unknown) => void;
}

/**
 * Where the object is placed: near Extend, so its upstream calls are short. A setting overrides
 * the guess from the base URL's region (`GATEWAY_LOCATION_HINT`, "none" for no hint).
 */
export function gatewayLocationHint(config: Config): DurableObjectLocationHint | undefined {
  if (config.gatewayLocationHint === "none") return undefined;
  if (config.gatewayLocationHint) return config.gatewayLocationHint;
  const host = config.extendApiBaseUrl.hostname;
  if (/(^|\.)eu\d*\./.test(host)) return "weur";
  if (host === "localhost" || /^127\.|^\[?::1\]?$/.test(host)) return undefined;
  return "enam";
}

/**
 * The object's name: the tenant scope (origin, version, workspace, key fingerprint), never the
 * key. The run index lives in the same object under the same name, so its sync's calls take
 * their slots from this budget too.
 */
export function gatewayName(config: Config): Promise<string> {
  return tenantScope(config);
}

function settingsOf(config: Config): GatewaySettings {
  return {
    baseUrl: config.extendApiBaseUrl.toString(),
    apiVersion: config.extendApiVersion,
    workspaceId: config.extendWorkspaceId,
    apiKey: config.extendApiKey,
    timeoutMs: config.upstreamTimeoutMs,
    deadlineMs: config.upstreamDeadlineMs,
    maxRps: config.upstreamMaxRps,
  };
}

function fromOutcome(outcome: Extract<GatewayOutcome, { ok: false }>): ApiError {
  if (outcome.refused) return new BudgetPaused((outcome.retryAfter ?? 1) * 1000, outcome.message);
  return new ApiError(outcome.code, outcome.message, {
    ...(outcome.retryAfter !== undefined ? { retryAfter: outcome.retryAfter } : {}),
    ...(outcome.cause !== undefined ? { cause: new Error(outcome.cause) } : {}),
  });
}

/** The upstream every handler uses: the tenant gateway, with the direct path as fallback. */
export function gatewayUpstream(deps: GatewayUpstreamDeps): WorkflowRunsUpstream {
  const { config, clock } = deps;
  const settings = settingsOf(config);
  const hint = gatewayLocationHint(config);

  async function direct(query: CanonicalListQuery, options: ListOptions): Promise<UpstreamPage> {
    const scheduler = isolateScheduler(await tenantScope(config), config.upstreamMaxRps, clock);
    const maxWaitMs = options.maxWaitMs ?? DEFAULT_MAX_WAIT_MS;
    return deps.direct.list(query, {
      ...options,
      beforeAttempt: async (attempt) => {
        try {
          await scheduler.acquire({
            priority: options.priority ?? "interactive",
            caller: options.caller ?? "anonymous",
            maxWaitMs,
          });
        } catch (error) {
          if (!(error instanceof SlotRefused)) throw error;
          // A retry with no room in time ends with what Extend last said, not a budget refusal.
          if (attempt > 1) return "skip";
          throw new BudgetPaused(error.retryAfterMs);
        }
        return options.beforeAttempt?.(attempt);
      },
      onAttempt: (report) => {
        scheduler.observe(report.status, report.retryAfterMs);
        options.onAttempt?.(report);
      },
    });
  }

  return {
    async list(query, options = {}) {
      if (!deps.namespace) {
        deps.onFallback("gateway unavailable; served directly", new Error("TENANT is not bound"));
        return direct(query, options);
      }
      const deadlineMs =
        options.deadline !== undefined ? options.deadline - clock.now() : config.upstreamDeadlineMs;
      let outcome: GatewayOutcome;
      try {
        const stub = deps.namespace.getByName(await gatewayName(config), hint ? { locationHint: hint } : {});
        const call = stub.list({
          settings,
          query,
          priority: options.priority ?? "interactive",
          caller: options.caller ?? "anonymous",
          maxWaitMs: Math.min(options.maxWaitMs ?? DEFAULT_MAX_WAIT_MS, deadlineMs),
          deadlineMs,
        });
        outcome = await answerWithin(call, Math.max(0, deadlineMs) + GATEWAY_ANSWER_GRACE_MS);
      } catch (error) {
        deps.onFallback("gateway unavailable; served directly", error);
        return direct(query, options);
      }
      for (const report of outcome.attempts) options.onAttempt?.(report);
      if (!outcome.ok) throw fromOutcome(outcome);
      let body: Uint8Array<ArrayBuffer>;
      try {
        body = await readExactly(outcome.body, outcome.length);
      } catch (error) {
        throw new ApiError("UPSTREAM_ERROR", "The gateway's page was cut off.", { cause: error });
      }
      const page = pageFromBytes(body, { shared: outcome.shared, pruned: outcome.pruned });
      if (!page) throw new ApiError("UPSTREAM_INVALID_RESPONSE", "The gateway returned an unreadable page.");
      return page;
    },
  };
}
