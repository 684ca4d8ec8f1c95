import { DurableObject } from "cloudflare:workers";

/**
 * One object per tenant (upstream origin, API version, workspace and key fingerprint): the single
 * gateway every upstream call of the proxy passes through, and the home of the tenant's run
 * index. The class stays thin; the logic lives in pure modules under src/gateway and src/run-index.
 */
export class TenantObject extends DurableObject<Env> {
  /** Liveness of the object itself (used by tests and the watchdog). */
  async ping(): Promise<"pong"> {
    return "pong";
  }
}
