// The run index's settings: defaults, ranges, and errors that name the setting, never its value.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../../src/app/config.ts";
import { expectErrorEnvelope, read } from "../support/envelope.ts";
import { isolatedTenant } from "../support/tenant.ts";

const MARK = "qX7vz";

describe("run index settings", () => {
  it("defaults: index on, sync every 30 s, reconcile daily, 3 minutes of lookback, no webhook secret", () => {
    const config = loadConfig({ EXTEND_API_KEY: "sk_test_defaults" } as Env);
    expect(config).toMatchObject({
      runIndex: true,
      indexSyncSeconds: 30,
      indexReconcileSeconds: 86_400,
      indexLookbackSeconds: 180,
      webhookSecrets: [],
    });
  });

  it("takes comma-separated webhook secrets as issued, trimmed", () => {
    const config = loadConfig({
      EXTEND_API_KEY: "sk_test_secrets",
      EXTEND_WEBHOOK_SECRET: " wss_first_1234 , wss_second_5678 ",
      RUN_INDEX: "off",
    } as Env);
    expect(config.webhookSecrets).toEqual(["wss_first_1234", "wss_second_5678"]);
    expect(config.runIndex).toBe(false);
  });

  it.each([
    ["RUN_INDEX", `maybe${MARK}`],
    ["RUN_INDEX", "true"],
    ["INDEX_SYNC_SECONDS", "4"],
    ["INDEX_SYNC_SECONDS", "3601"],
    ["INDEX_SYNC_SECONDS", `30${MARK}`],
    ["INDEX_RECONCILE_SECONDS", "29"],
    ["INDEX_LOOKBACK_SECONDS", "3601"],
    ["INDEX_LOOKBACK_SECONDS", "-1"],
    ["EXTEND_WEBHOOK_SECRET", `wss_with space${MARK}`],
  ])("%s=%j: a 500 naming the setting, never its value", async (setting, value) => {
    const tenant = isolatedTenant();
    const res = await read(await tenant.call("/workflow_runs?maxPageSize=2", { env: { [setting]: value } }));
    const body = expectErrorEnvelope(res, { status: 500, code: "CONFIG_INVALID", retryable: false });
    expect(body.details?.map((d) => d.field)).toEqual([setting]);
    expect(res.text).not.toContain(MARK);
    expect(tenant.fake.requests).toHaveLength(0);
  });

  it("the test suites run with the index off unless they turn it on", () => {
    expect(loadConfig(env).runIndex).toBe(false);
  });
});
