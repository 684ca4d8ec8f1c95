import { describe, expect, it } from "vitest";
import { FakeExtend } from "../../../fake/extend.ts";
import { listQuery } from "../../../src/extend/schemas.ts";
import { type GatewayListRequest, TenantGateway } from "../../../src/gateway/tenant-gateway.ts";
import { readExactly } from "../../../src/lib/bytes.ts";
import { systemClock } from "../../../src/lib/clock.ts";
import { VALUES_PER_RUN } from "../../../src/stats/fold-bytes.ts";
import { FAKE_EXTEND_ORIGIN, TEST_UPSTREAM_KEY } from "../support/constants.ts";

function gatewayOverFake(fake: FakeExtend): TenantGateway {
  return new TenantGateway({
    clock: systemClock,
    fetch: (input, init) =>
      fake.handle({
        url: String(input),
        method: init?.method ?? "GET",
        headers: new Headers(init?.headers),
        signal: init?.signal ?? new AbortController().signal,
      }),
  });
}

function request(overrides: Partial<GatewayListRequest> = {}): GatewayListRequest {
  return {
    settings: {
      baseUrl: FAKE_EXTEND_ORIGIN,
      apiVersion: "2026-02-09",
      workspaceId: undefined,
      apiKey: TEST_UPSTREAM_KEY,
      timeoutMs: 2_000,
      deadlineMs: 5_000,
      maxRps: 2,
    },
    query: listQuery({}, { maxPageSize: 3 }),
    priority: "interactive",
    caller: "a",
    maxWaitMs: 5_000,
    deadlineMs: 5_000,
    ...overrides,
  };
}

/** 20 runs behind a 100 ms answer: long enough for three calls of one page to share its load. */
function sharedPageFake(): FakeExtend {
  return new FakeExtend({
    apiKey: TEST_UPSTREAM_KEY,
    dataset: { size: 20, seed: 1 },
    latency: { baseMs: 100, perRunMs: 0 },
  });
}

describe("shared loads in the tenant gateway", () => {
  it("belong to no single request: a joiner that may wait longer gets the page the starter gave up on", async () => {
    const fake = new FakeExtend({ apiKey: TEST_UPSTREAM_KEY, dataset: { size: 20, seed: 1 } });
    const gateway = gatewayOverFake(fake);
    // Fill this second's two slots with other calls.
    const fillers = [1, 2].map((i) =>
      gateway.list(request({ query: listQuery({}, { maxPageSize: i }), caller: `f${i}` })),
    );
    // A bulk call that will not wait, then an interactive call for the same page that will.
    const impatient = gateway.list(request({ priority: "bulk", caller: "scan", maxWaitMs: 50 }));
    const patient = gateway.list(request({ caller: "reader", maxWaitMs: 3_000 }));
    const [first, second] = await Promise.all([impatient, patient]);
    await Promise.all(fillers);
    expect(first).toMatchObject({ ok: false, code: "UPSTREAM_RATE_LIMITED", refused: "busy" });
    expect(second).toMatchObject({ ok: true, shared: false });
    // Fillers, then one call for the shared page.
    expect(fake.listCalls).toHaveLength(3);
  });

  it("tells only the first participant to store the page", async () => {
    const fake = sharedPageFake();
    const gateway = gatewayOverFake(fake);
    const outcomes = await Promise.all([1, 2, 3].map((i) => gateway.list(request({ caller: `c${i}` }))));
    expect(outcomes.map((o) => o.ok && o.shared)).toEqual([false, true, true]);
    expect(fake.listCalls).toHaveLength(1);
    expect(gateway.inFlight).toBe(0);
  });

  it("streams each participant the whole page, however late it reads, and checks it once", async () => {
    const fake = sharedPageFake();
    const gateway = gatewayOverFake(fake);
    const outcomes = await Promise.all([1, 2, 3].map((i) => gateway.list(request({ caller: `c${i}` }))));
    // What the object's check read: three numbers a run, the same for every participant. (Over
    // RPC each participant gets a copy; here, in the object, they share the object's own.)
    const [first] = outcomes;
    expect(first?.ok && first.pruned.runs).toBe(3);
    expect(outcomes.every((o) => o.ok && o.pruned.values.length === 3 * VALUES_PER_RUN)).toBe(true);
    const texts: string[] = [];
    for (const outcome of outcomes) {
      if (!outcome.ok) throw new Error(`refused: ${outcome.message}`);
      // The others' streams have been read (and the page perhaps freed) before this one is.
      await new Promise((resolve) => setTimeout(resolve, 30));
      texts.push(new TextDecoder().decode(await readExactly(outcome.body, outcome.length)));
    }
    const [call] = fake.listCalls;
    if (!call) throw new Error("no upstream call");
    const upstream = await (
      await fake.handle({
        url: call.url.toString(),
        method: "GET",
        headers: new Headers(call.headers),
        signal: new AbortController().signal,
      })
    ).text();
    expect(texts).toEqual([upstream, upstream, upstream]);
    expect(gateway.inFlight).toBe(0);
    // Every stream has taken the page: the object let go of its bytes and of its fold.
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(outcomes.every((o) => o.ok && o.pruned.values.length === 0)).toBe(true);
  });
});
