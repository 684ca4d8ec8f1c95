// The sync's calls under the tenant's gateway: every attempt holds one of the connections an
// invocation may hold open from just before it takes a slot of the budget until its body is read.
import { HttpResponse, http } from "msw";
import { describe, expect, it } from "vitest";
import { listQuery } from "../../../src/extend/schemas.ts";
import { TenantGateway } from "../../../src/gateway/tenant-gateway.ts";
import { systemClock } from "../../../src/lib/clock.ts";
import { gatewayUpstream, MAX_OPEN_CALLS, Permits } from "../../../src/run-index/upstream.ts";
import { FAKE_EXTEND_ORIGIN, TEST_UPSTREAM_KEY } from "../support/constants.ts";
import { network } from "../support/setup.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("permits", () => {
  it("let at most their number hold at once, the others in arrival order", async () => {
    const permits = new Permits(2);
    const order: number[] = [];
    const holders = [1, 2, 3, 4].map(async (n) => {
      await permits.acquire();
      order.push(n);
      await sleep(5);
      permits.release();
    });
    await sleep(1);
    expect(order).toEqual([1, 2]);
    await Promise.all(holders);
    expect(order).toEqual([1, 2, 3, 4]);
  });
});

const settings = {
  baseUrl: FAKE_EXTEND_ORIGIN,
  apiVersion: "2026-02-09",
  workspaceId: undefined,
  apiKey: TEST_UPSTREAM_KEY,
  timeoutMs: 2_000,
  deadlineMs: 10_000,
  maxRps: 1_000,
};

describe("the sync's upstream", () => {
  it("takes a slot only once its call can leave, not before it waits for a connection", async () => {
    const gateway = new TenantGateway({ clock: systemClock });
    let sent = 0;
    let grantedUnsent = 0;
    network.use(
      http.get(`${FAKE_EXTEND_ORIGIN}/workflow_runs`, async () => {
        sent += 1;
        grantedUnsent = Math.max(grantedUnsent, gateway.scheduler.stats().startsInWindow - sent);
        await sleep(20);
        return HttpResponse.json({ object: "list", data: [] });
      }),
    );
    const upstream = gatewayUpstream(gateway, settings, systemClock);
    await Promise.all(
      Array.from({ length: 3 * MAX_OPEN_CALLS }, (_, i) =>
        upstream.list(listQuery({}, { maxPageSize: i + 1 }), new AbortController().signal),
      ),
    );
    expect(sent).toBe(3 * MAX_OPEN_CALLS);
    // The budget counts a start from its grant: a granted call must be on its way, so at most the
    // calls holding a connection and not yet seen here are granted and unsent.
    expect(grantedUnsent).toBeLessThan(MAX_OPEN_CALLS);
  });

  it("holds at most MAX_OPEN_CALLS attempts open, however many calls are under way", async () => {
    let open = 0;
    let peak = 0;
    network.use(
      http.get(`${FAKE_EXTEND_ORIGIN}/workflow_runs`, async () => {
        open += 1;
        peak = Math.max(peak, open);
        await sleep(20);
        open -= 1;
        return HttpResponse.json({ object: "list", data: [] });
      }),
    );
    const upstream = gatewayUpstream(new TenantGateway({ clock: systemClock }), settings, systemClock);
    const calls = Array.from({ length: 3 * MAX_OPEN_CALLS }, (_, i) =>
      upstream.list(listQuery({}, { maxPageSize: i + 1 }), new AbortController().signal),
    );
    const pages = await Promise.all(calls);
    expect(pages.every((page) => page.data.length === 0)).toBe(true);
    expect(peak).toBe(MAX_OPEN_CALLS);
  });
});
