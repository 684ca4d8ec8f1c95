import { describe, expect, it } from "vitest";
import { ApiError } from "../../../src/app/errors.ts";
import {
  MAX_RESUME_TOKEN_LENGTH,
  openResumeToken,
  sealResumeToken,
} from "../../../src/stats/resume-token.ts";
import { planScan } from "../../../src/stats/scan.ts";

const context = { secret: "k".repeat(40), binding: "b", now: 1_800_000_000_000 };

describe("resume token size", () => {
  it("drops the cursors of finished walks, so they cost nothing", async () => {
    const state = planScan({}, context.now);
    const longCursor = "c".repeat(2000);
    for (const partition of state.partitions) {
      partition.done = true;
      if (partition.desc) partition.desc = { phase: "done", cursor: longCursor };
      if (partition.asc) partition.asc = { phase: "done", cursor: longCursor };
    }
    const token = await sealResumeToken(state, context);
    expect(token.length).toBeLessThan(2000);
    const opened = await openResumeToken(token, context);
    for (const partition of opened.partitions) expect(partition.desc?.cursor).toBeUndefined();
  });

  it("fails clearly at seal time rather than issue a token the route would refuse", async () => {
    const state = planScan({}, context.now);
    // Sixteen live walks with 2,048-character cursors: more than a token may carry.
    for (const partition of state.partitions) {
      partition.desc = { phase: "active", cursor: crypto.randomUUID().repeat(56) };
      partition.asc = { phase: "active", cursor: crypto.randomUUID().repeat(56) };
    }
    const sealed = await sealResumeToken(state, context).catch((error: unknown) => error);
    expect(sealed).toBeInstanceOf(ApiError);
    expect(sealed).toMatchObject({ code: "UPSTREAM_INVALID_RESPONSE", status: 502 });
    expect((sealed as ApiError).message).toMatch(/too long/);
    expect(MAX_RESUME_TOKEN_LENGTH).toBeLessThan(16 * 2016);
  });
});
