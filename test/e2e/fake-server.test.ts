// The fake Extend's control routes, which the benchmarks read from another process.
import { afterEach, describe, expect, it } from "vitest";
import {
  type FakeCounters,
  type FakeListTimes,
  type RunningFakeServer,
  startFakeServer,
} from "../../fake/server.ts";

const API_KEY = "sk_test_fake_server_control_routes";

let server: RunningFakeServer | undefined;

afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function list(origin: string): Promise<number> {
  const response = await fetch(`${origin}/workflow_runs?maxPageSize=5`, {
    headers: { authorization: `Bearer ${API_KEY}`, "x-extend-api-version": "2026-02-09" },
  });
  await response.arrayBuffer();
  return response.status;
}

describe("the fake Extend's control routes", () => {
  it("gives the arrival time of every list call since the last reset, in order, beside the counters", async () => {
    server = await startFakeServer({ fake: { apiKey: API_KEY, dataset: { size: 20 } } });
    const { url } = server;
    const before = Date.now();
    for (let i = 0; i < 3; i++) expect(await list(url)).toBe(200);
    const after = Date.now();
    const times = (await (await fetch(`${url}/__fake/list-times`)).json()) as FakeListTimes;
    expect(times.at).toHaveLength(3);
    expect([...times.at].sort((a, b) => a - b)).toEqual(times.at);
    for (const at of times.at) {
      expect(at).toBeGreaterThanOrEqual(before);
      expect(at).toBeLessThanOrEqual(after);
    }
    const counters = (await (await fetch(`${url}/__fake/counters`)).json()) as FakeCounters;
    expect(counters.listCalls).toBe(3);

    await (await fetch(`${url}/__fake/reset`, { method: "POST" })).arrayBuffer();
    expect(await list(url)).toBe(200);
    const afterReset = (await (await fetch(`${url}/__fake/list-times`)).json()) as FakeListTimes;
    expect(afterReset.at).toHaveLength(1);
  });
});
