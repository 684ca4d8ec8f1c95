// Runs that change over time, as a busy organisation's do: new runs, status changes (with new
// credits when a run finishes) and deletions. Used by `npm start` to let a person watch the run
// index converge, and by the property tests.
import { type FakeExtend, type FakeRun, generateRuns, type RunStatus, STATUSES } from "./extend.ts";
import { deliver, runEvent } from "./webhooks.ts";

export type Mutation =
  | { kind: "create"; run: FakeRun }
  | { kind: "update"; run: FakeRun; from: RunStatus }
  | { kind: "delete"; run: FakeRun };

const FINISHED: readonly RunStatus[] = ["PROCESSED", "FAILED", "NEEDS_REVIEW", "REJECTED", "CANCELLED"];

function pick<T>(random: () => number, items: readonly T[]): T | undefined {
  return items[Math.floor(random() * items.length)];
}

let created = 0;

/** A fresh run unlike any other: a generated run with a new id. */
export function newRun(random: () => number): FakeRun {
  created += 1;
  const template = generateRuns({ size: 1, seed: Math.floor(random() * 2 ** 31) })[0];
  if (!template) throw new Error("no template run");
  const id = `workflow_run_new${created.toString(36)}${Math.floor(random() * 1e9).toString(36)}`;
  return { ...template, id, dashboardUrl: `https://dashboard.extend.ai/workflows/${id}` };
}

/** One random change to the fake's runs at `at` (ms); undefined when there was nothing to change. */
export function randomMutation(fake: FakeExtend, random: () => number, at: number): Mutation | undefined {
  const roll = random();
  if (roll < 0.2 || fake.runs.length === 0) {
    const run = fake.addRun(
      { ...newRun(random), status: pick(random, ["PENDING", "PROCESSING"]) ?? "PENDING" },
      at,
    );
    return { kind: "create", run };
  }
  const target = pick(random, fake.runs);
  if (!target) return undefined;
  if (roll < 0.3) {
    fake.deleteRun(target.id);
    return { kind: "delete", run: target };
  }
  const status = pick(
    random,
    STATUSES.filter((s) => s !== target.status),
  );
  if (!status) return undefined;
  const finishing = FINISHED.includes(status);
  const credits = Math.round(random() * 2000) / 100;
  const run = fake.updateRun(
    target.id,
    finishing ? { status, usage: { credits, totalCredits: Math.round(credits * 110) / 100 } } : { status },
    at,
  );
  return run ? { kind: "update", run, from: target.status } : undefined;
}

export interface MutatorOptions {
  /** One change every this many ms. */
  everyMs: number;
  /** Where to POST the signed webhook of each change that has one (Extend's run events). */
  webhookUrl?: string;
  webhookSecret?: string;
  /** Told about every change, with the webhook's HTTP status when one was sent. */
  onChange?: (mutation: Mutation, webhookStatus: number | "failed" | undefined) => void;
  random?: () => number;
}

/** Changes the fake's runs on a timer and sends their webhooks; stop() ends it. */
export function startMutator(fake: FakeExtend, options: MutatorOptions): { stop(): void } {
  const random = options.random ?? Math.random;
  let events = 0;
  const timer = setInterval(() => {
    const mutation = randomMutation(fake, random, Date.now());
    if (!mutation) return;
    const event =
      mutation.kind !== "delete" && options.webhookUrl && options.webhookSecret
        ? runEvent(mutation.run, `evt_local_${Date.now().toString(36)}_${++events}`)
        : undefined;
    if (!event || !options.webhookUrl || !options.webhookSecret) {
      options.onChange?.(mutation, undefined);
      return;
    }
    deliver(options.webhookUrl, options.webhookSecret, event).then(
      (status) => options.onChange?.(mutation, status),
      () => options.onChange?.(mutation, "failed"),
    );
  }, options.everyMs);
  return { stop: () => clearInterval(timer) };
}
