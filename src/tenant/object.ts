import { DurableObject } from "cloudflare:workers";
import { loadConfig } from "../app/config.ts";
import type { SchedulerStats } from "../gateway/scheduler.ts";
import { type GatewayListRequest, type GatewayOutcome, TenantGateway } from "../gateway/tenant-gateway.ts";
import { systemClock } from "../lib/clock.ts";
import { type AnswerOptions, answerStats, type IndexAnswer } from "../run-index/answer.ts";
import { dropIndex, hasIndex, migrate } from "../run-index/schema.ts";
import { type EventOutcome, type IndexEvent, RunIndexSync } from "../run-index/sync.ts";
import {
  gatewaySettings,
  gatewayUpstream,
  type IndexSettings,
  type SyncUpstream,
} from "../run-index/upstream.ts";
import { answerDashboard, type DashboardIndexAnswer, type WorkflowsQuery } from "../run-index/workflows.ts";
import type { StatsFilters } from "../stats/filters.ts";

function indexEnabled(env: Env): boolean {
  try {
    return loadConfig(env).runIndex;
  } catch {
    // A broken configuration fails every data route; empty tables cost nothing meanwhile.
    return true;
  }
}

/**
 * One object per tenant (upstream origin, API version, workspace and key fingerprint): the single
 * gateway every upstream call of the proxy passes through, and the home of the tenant's run
 * index. The class stays thin; the logic lives in pure modules under src/gateway and src/run-index.
 */
export class TenantObject extends DurableObject<Env> {
  private readonly gateway = new TenantGateway({ clock: systemClock });

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    void ctx.blockConcurrencyWhile(async () => {
      if (indexEnabled(env)) migrate(ctx.storage.sql);
    });
  }

  /** Liveness of the object itself (used by tests and the watchdog). */
  async ping(): Promise<"pong"> {
    return "pong";
  }

  /** One upstream list call under the tenant's budget, shared with identical calls in flight. */
  async list(request: GatewayListRequest): Promise<GatewayOutcome> {
    return this.gateway.list(request);
  }

  /** The budget's current state and the loads in flight (for tests and operators). */
  async gatewayState(): Promise<SchedulerStats & { inFlight: number }> {
    return { ...this.gateway.scheduler.stats(), inFlight: this.gateway.inFlight };
  }

  // ---------------------------------------------------------------------------------------------
  // Run index (src/run-index): /stats answers, webhook events, the watchdog, and the alarm that
  // drives the sync. Settings come from the Worker with each call (and are kept for the alarm);
  // the upstream key does not: the object reads its own env. Every sync call goes through the
  // gateway above, at bulk priority.

  private runIndex: RunIndexSync | undefined;

  /** /stats from the index, or how far its build is (the route scans meanwhile). */
  async indexStats(
    filters: StatsFilters,
    settings: IndexSettings,
    options: AnswerOptions,
  ): Promise<IndexAnswer> {
    const sync = this.index(settings);
    try {
      return await answerStats(sync, this.ctx.storage.sql, filters, options, Date.now);
    } finally {
      await this.armAlarm(sync);
    }
  }

  /** indexStats, plus the dashboard's per-workflow view once the index answers: one round trip. */
  async indexDashboard(
    filters: StatsFilters,
    settings: IndexSettings,
    options: AnswerOptions,
    query: WorkflowsQuery,
  ): Promise<DashboardIndexAnswer> {
    const sync = this.index(settings);
    try {
      return await answerDashboard(sync, this.ctx.storage.sql, filters, options, query, Date.now);
    } finally {
      await this.armAlarm(sync);
    }
  }

  /** Applies a verified webhook event (once per eventId) and schedules the confirming head walk. */
  async indexEvent(event: IndexEvent, settings: IndexSettings): Promise<EventOutcome> {
    const sync = this.index(settings);
    const outcome = sync.applyEvent(event);
    await this.armAlarm(sync);
    return outcome;
  }

  /** The cron's check: re-arms the alarm of an index in use. True when an alarm is set. */
  async indexWatchdog(settings: IndexSettings): Promise<boolean> {
    if (!hasIndex(this.ctx.storage.sql)) return false;
    const sync = this.index(settings);
    await this.armAlarm(sync);
    return (await this.ctx.storage.getAlarm()) !== null;
  }

  /** RUN_INDEX=off: the index's tables and its alarm go; turning it on again rebuilds from Extend. */
  async indexOff(): Promise<void> {
    const sql = this.ctx.storage.sql;
    if (hasIndex(sql)) this.ctx.storage.transactionSync(() => dropIndex(sql));
    this.runIndex = undefined;
    await this.ctx.storage.deleteAlarm();
  }

  override async alarm(): Promise<void> {
    if (!hasIndex(this.ctx.storage.sql)) return;
    const sync = this.index();
    if (sync.state().settings === null) return;
    const result = await sync.tick();
    if (result.error !== undefined) {
      console.error(JSON.stringify({ level: "error", msg: "run index sync failed", code: result.error }));
    }
    await this.armAlarm(sync);
  }

  private index(settings?: IndexSettings): RunIndexSync {
    const sql = this.ctx.storage.sql;
    if (!this.runIndex || !hasIndex(sql)) {
      migrate(sql);
      this.runIndex = new RunIndexSync({
        sql,
        transaction: (fn) => this.ctx.storage.transactionSync(fn),
        upstream: this.upstream(),
        now: Date.now,
      });
    }
    if (settings) this.runIndex.configure(settings);
    return this.runIndex;
  }

  /** Extend through the gateway, with the stored settings and this object's own key. */
  private upstream(): SyncUpstream {
    const current = (): SyncUpstream => {
      const settings = this.runIndex?.state().settings;
      if (!settings) throw new Error("the run index has no settings yet");
      const key = loadConfig(this.env).extendApiKey;
      return gatewayUpstream(this.gateway, gatewaySettings(settings, key), systemClock);
    };
    return {
      list: (query, signal) => current().list(query, signal),
      getRun: (id, signal) => current().getRun(id, signal),
      listWorkflows: (token, signal) => current().listWorkflows(token, signal),
    };
  }

  /** Sets the alarm to when the sync next has work, unless one is due sooner already. */
  private async armAlarm(sync: RunIndexSync): Promise<void> {
    const next = sync.nextWakeAt();
    const current = await this.ctx.storage.getAlarm();
    if (next === null) {
      if (current !== null) await this.ctx.storage.deleteAlarm();
      return;
    }
    if (current === null || next < current) await this.ctx.storage.setAlarm(next);
  }
}
