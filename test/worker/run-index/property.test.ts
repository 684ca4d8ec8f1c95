// Property: whatever happens to the runs in Extend (creates, status changes, deletions) and
// however their webhooks arrive (duplicated, out of order, replayed, late with a stale state),
// once a sync has run the index answers every filter exactly as a fold over Extend's runs.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { FakeExtend, type FakeRun, generateRuns, STATUSES } from "../../../fake/extend.ts";
import { newRun } from "../../../fake/mutations.ts";
import { EVENT_TYPE_BY_STATUS, runEvent } from "../../../fake/webhooks.ts";
import { answerStats } from "../../../src/run-index/answer.ts";
import { parseEvent } from "../../../src/run-index/webhook.ts";
import type { StatsFilters } from "../../../src/stats/filters.ts";
import { TEST_UPSTREAM_KEY } from "../support/constants.ts";
import {
  drain,
  ENGINE_EPOCH,
  ENGINE_SETTINGS,
  engineUpstream,
  freshObject,
  inEngine,
} from "../support/run-index.ts";
import { type ReferenceFilters, referenceStats, summary } from "../support/stats.ts";

type Op =
  | { kind: "create"; seed: number; status: (typeof STATUSES)[number] }
  | { kind: "update"; pick: number; status: (typeof STATUSES)[number]; credits: number }
  | { kind: "delete"; pick: number }
  | { kind: "deliver"; pick: number; lateBy: number }
  | { kind: "sync" };

const status = fc.constantFrom(...STATUSES);
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant("create" as const), seed: fc.nat(), status }),
  fc.record({ kind: fc.constant("update" as const), pick: fc.nat(), status, credits: fc.nat({ max: 5000 }) }),
  fc.record({ kind: fc.constant("delete" as const), pick: fc.nat() }),
  fc.record({ kind: fc.constant("deliver" as const), pick: fc.nat(), lateBy: fc.nat({ max: 200 }) }),
  fc.record({ kind: fc.constant("deliver" as const), pick: fc.nat(), lateBy: fc.nat({ max: 200 }) }),
  fc.constant({ kind: "sync" as const }),
);

/** Substrings that LIKE would misread, case and non-ASCII, and one longer than LIKE's 50-byte limit. */
const NEEDLES = [
  "invoice",
  "INVOICE",
  "100%",
  "a+b",
  "_",
  "%",
  "\\",
  "März",
  "請求書",
  "résumé",
  "x".repeat(70),
];

function filtersFor(runs: readonly FakeRun[]): fc.Arbitrary<ReferenceFilters> {
  const times = runs.map((r) => r.createdAt);
  const workflows = [...new Set(runs.map((r) => r.workflow.id))];
  const batches = [...new Set(runs.map((r) => r.batchId).filter((b): b is string => b !== null))];
  const maybe = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: undefined });
  return fc
    .record({
      status: maybe(status),
      workflowId: workflows.length ? maybe(fc.constantFrom(...workflows)) : fc.constant(undefined),
      batchId: batches.length ? maybe(fc.constantFrom(...batches)) : fc.constant(undefined),
      fileNameContains: maybe(fc.constantFrom(...NEEDLES)),
      since: times.length ? maybe(fc.constantFrom(...times)) : fc.constant(undefined),
      until: times.length ? maybe(fc.constantFrom(...times)) : fc.constant(undefined),
    })
    .map((f) => Object.fromEntries(Object.entries(f).filter(([, v]) => v !== undefined)) as ReferenceFilters);
}

describe("run index property", () => {
  it("after any history of changes and webhook deliveries, a sync makes it equal to Extend", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 60 }),
        fc.nat(),
        fc.array(op, { maxLength: 40 }),
        fc.nat(),
        fc.constantFrom("insensitive" as const, "sensitive" as const),
        async (size, seed, ops, filterSeed, fileNameCase) => {
          const fake = new FakeExtend({
            apiKey: TEST_UPSTREAM_KEY,
            runs: generateRuns({ size, seed }),
            fileNameCase,
          });
          const clock = { now: ENGINE_EPOCH };
          const settings = { ...ENGINE_SETTINGS, reconcileSeconds: 30 };
          // Every event Extend emitted, as JSON bodies: deliveries pick from these.
          const emitted: { body: string; at: number }[] = [];
          let events = 0;
          const emit = (run: FakeRun) => {
            const event = runEvent(run, `evt_${++events}`, events % 3 === 0 ? "url" : "inline");
            if (event) emitted.push({ body: JSON.stringify(event), at: clock.now });
          };
          await inEngine(
            freshObject(),
            engineUpstream(fake, { pageLimit: 25 }),
            clock,
            async ({ sync, sql }) => {
              sync.use();
              await drain(sync);
              for (const step of ops) {
                clock.now += 1_000 + (step.kind === "sync" ? 30_000 : 0);
                const target = fake.runs.length
                  ? fake.runs[("pick" in step ? step.pick : 0) % fake.runs.length]
                  : undefined;
                if (step.kind === "create") {
                  const run = fake.addRun(
                    { ...newRun(() => (step.seed % 1000) / 1000), status: step.status },
                    clock.now,
                  );
                  emit(run);
                } else if (step.kind === "update" && target) {
                  const usage = { credits: step.credits / 100 };
                  const run = fake.updateRun(target.id, { status: step.status, usage }, clock.now);
                  if (run) emit(run);
                } else if (step.kind === "delete" && target) {
                  fake.deleteRun(target.id);
                } else if (step.kind === "deliver" && emitted.length) {
                  // Any emitted event, again or for the first time, signed up to 200 s after it was
                  // emitted (a retry): replays, duplicates, reordering and stale states all arise.
                  const chosen = emitted[step.pick % emitted.length];
                  if (chosen) {
                    const signedAt = Math.min(clock.now, chosen.at + step.lateBy * 1000);
                    const parsed = parseEvent(chosen.body, Math.floor(signedAt / 1000) * 1000);
                    if (!parsed.ok) throw new Error(parsed.reason);
                    sync.applyEvent(parsed.event);
                  }
                } else if (step.kind === "sync") {
                  await drain(sync);
                }
              }
              clock.now += 31_000;
              await drain(sync);
              clock.now += 31_000;
              await drain(sync);
              const samples = fc.sample(filtersFor(fake.runs), { numRuns: 8, seed: filterSeed });
              for (const filters of [{}, ...samples]) {
                // As /stats asks: a filter with letters waits for the index to find out how
                // Extend matches them, should it not know yet.
                const answer = await answerStats(sync, sql, filters as StatsFilters, {}, () => clock.now);
                if (answer.kind !== "ready") throw new Error(`the index answered ${answer.kind}`);
                expect(summary(answer.body), JSON.stringify(filters)).toEqual(
                  referenceStats(fake.runs, { ...filters, fileNameCase }),
                );
              }
            },
            settings,
          );
        },
      ),
      {
        numRuns: 30,
        // A run created and deleted between two reconciles.
        examples: [
          [
            0,
            0,
            [{ kind: "create", seed: 0, status: "PENDING" }, { kind: "sync" }, { kind: "delete", pick: 0 }],
            0,
            "insensitive",
          ],
        ],
      },
    );
  }, 60_000);

  it("maps the five run events to their statuses, and payload.status wins", () => {
    expect(EVENT_TYPE_BY_STATUS).toEqual({
      PROCESSED: "workflow_run.completed",
      FAILED: "workflow_run.failed",
      NEEDS_REVIEW: "workflow_run.needs_review",
      REJECTED: "workflow_run.rejected",
      CANCELLED: "workflow_run.cancelled",
    });
    for (const [status, eventType] of Object.entries(EVENT_TYPE_BY_STATUS)) {
      const parsed = parseEvent(JSON.stringify({ eventId: "e", eventType, payload: { id: "run_1" } }), 0);
      expect(parsed.ok && parsed.event.run?.status).toBe(status);
    }
    const winning = parseEvent(
      JSON.stringify({
        eventId: "e",
        eventType: "workflow_run.completed",
        payload: { id: "run_1", status: "NEEDS_REVIEW" },
      }),
      0,
    );
    expect(winning.ok && winning.event.run?.status).toBe("NEEDS_REVIEW");
    const unknown = parseEvent(
      JSON.stringify({ eventId: "e", eventType: "workflow.created", payload: { id: "w" } }),
      0,
    );
    expect(unknown.ok && unknown.event.run).toBeUndefined();
  });
});
