import { describe, expect, it } from "vitest";
import { useFakeExtend } from "./support/fake-upstream.ts";
import { callProxy, json } from "./support/proxy.ts";

describe("smoke", () => {
  it("lists runs", async () => {
    const fake = useFakeExtend();
    const res = await callProxy("/workflow_runs?maxPageSize=5");
    const body = await json(res);
    expect(res.status, JSON.stringify(body)).toBe(200);
    expect((body.data as unknown[]).length).toBe(5);
    expect(fake.listCalls.length).toBe(1);
  });
  it("hang", async () => {
    const fake = useFakeExtend();
    fake.inject({ type: "hang" }, 5);
    const res = await callProxy("/workflow_runs", {
      env: { UPSTREAM_TIMEOUT_MS: "200", UPSTREAM_DEADLINE_MS: "1000" },
    });
    expect(res.status).toBe(504);
  });
  it("reset + truncated", async () => {
    const fake = useFakeExtend();
    fake.inject({ type: "reset" }, 1).inject({ type: "truncated" }, 1);
    const res = await callProxy("/workflow_runs");
    expect(res.status).toBe(200);
    expect(fake.listCalls.length).toBe(3);
  });
});
