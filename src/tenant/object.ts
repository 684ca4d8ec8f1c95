import { DurableObject } from "cloudflare:workers";
import type { SchedulerStats } from "../gateway/scheduler.ts";
import { type GatewayListRequest, type GatewayOutcome, TenantGateway } from "../gateway/tenant-gateway.ts";
import { systemClock } from "../lib/clock.ts";

/**
 * One object per tenant (upstream origin, API version, workspace and key fingerprint): the single
 * gateway every upstream call of the proxy passes through, and the home of the tenant's run
 * index. The class stays thin; the logic lives in pure modules under src/gateway and src/run-index.
 */
export class TenantObject extends DurableObject<Env> {
  private readonly gateway = new TenantGateway({ clock: systemClock });

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
}
