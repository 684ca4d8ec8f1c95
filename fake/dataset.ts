// Deterministic, realistic workflow run summaries for the fake Extend (API version 2026-02-09).

export const STATUSES = [
  "PENDING",
  "PROCESSING",
  "NEEDS_REVIEW",
  "REJECTED",
  "PROCESSED",
  "FAILED",
  "CANCELLED",
  "CANCELLING",
] as const;

export type RunStatus = (typeof STATUSES)[number];

export interface FakeFile {
  object: "file";
  id: string;
  name: string;
  type: string | null;
  parentFileId: string | null;
  metadata: { pageCount?: number };
  createdAt: string;
  updatedAt: string;
}

export interface FakeRun {
  object: "workflow_run";
  id: string;
  status: RunStatus;
  workflow: {
    object: "workflow";
    id: string;
    name: string;
    createdAt: string;
    updatedAt: string;
    createdBy: { type: "user"; email: string } | { type: "api_key"; name: string } | null;
  };
  workflowVersion: {
    object: "workflow_version";
    id: string;
    version: string;
    name: string | null;
    createdAt: string;
    createdBy: { type: "user"; email: string } | null;
  };
  dashboardUrl: string;
  reviewedByUser: string | null;
  reviewedAt: string | null;
  initialRunAt: string | null;
  startTime: string | null;
  endTime: string | null;
  batchId: string | null;
  rejectionNote: string | null;
  files: FakeFile[];
  createdAt: string;
  updatedAt: string;
  usage: { credits: number; totalCredits?: number } | null;
}

export interface DatasetOptions {
  /** Number of runs. */
  size: number;
  /** Same seed, same runs. */
  seed?: number;
  /** The newest run is created shortly before this instant. */
  end?: string;
}

/** mulberry32: small, fast, good enough for test data. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";

const WORKFLOWS = [
  { id: "workflow_BMdfq_yWM3sT-ZzvCnA3f", name: "Invoice Processing" },
  { id: "workflow_Kx82-pLmQ4rT9vWyZ1aBc", name: "Bank Statements" },
  { id: "workflow_7hGf_2sDqP0oLkJi9uYtR", name: "Purchase Orders & Receipts" },
  { id: "workflow_Zz0-aa11BB22cc33DD44e", name: "Contracts (EU)" },
  { id: "workflow_q1W2e3R4t5Y6u7I8o9P0a", name: "Medical Claims" },
];

const FILE_NAMES = [
  "Invoice 2026-{n}.pdf",
  "Q3 report & summary {n}.pdf",
  "a+b=c statement {n}.pdf",
  "Rechnung März {n}.pdf",
  "請求書 {n}.pdf",
  "résumé final v{n}.docx",
  "scan_{n}.png",
  "PO #{n} (signed).pdf",
  "bank statement {n}.csv",
  "contract 100% final {n}.pdf",
];

const FILE_TYPES: Record<string, string> = { pdf: "PDF", docx: "DOCX", png: "IMG", csv: "CSV" };

// Weights sum to 100; roughly what a busy organisation's run list looks like.
const STATUS_WEIGHTS: [RunStatus, number][] = [
  ["PROCESSED", 62],
  ["FAILED", 8],
  ["NEEDS_REVIEW", 7],
  ["PENDING", 5],
  ["PROCESSING", 4],
  ["REJECTED", 3],
  ["CANCELLED", 7],
  ["CANCELLING", 4],
];

function pick<T>(random: () => number, items: readonly T[]): T {
  const item = items[Math.floor(random() * items.length)];
  if (item === undefined) throw new Error("pick from an empty list");
  return item;
}

function id(random: () => number, prefix: string, length = 21): string {
  let out = prefix;
  for (let i = 0; i < length; i++) out += ALPHABET[Math.floor(random() * ALPHABET.length)];
  return out;
}

function weightedStatus(random: () => number): RunStatus {
  let roll = random() * 100;
  for (const [status, weight] of STATUS_WEIGHTS) {
    roll -= weight;
    if (roll < 0) return status;
  }
  return "PROCESSED";
}

/** Credits with at most two decimals, the kind that drifts when summed as floats (0.1 + 0.2). */
function credits(random: () => number): number {
  return Math.round(random() * 2000) / 100;
}

const iso = (ms: number) => new Date(ms).toISOString();

/** Generates `size` runs, oldest first. Some runs of one batch share a createdAt instant. */
export function generateRuns({
  size,
  seed = 1,
  end = "2026-11-01T00:00:00.000Z",
}: DatasetOptions): FakeRun[] {
  const random = prng(seed);
  const endMs = Date.parse(end);
  const batches = Array.from({ length: Math.max(1, Math.ceil(size / 40)) }, () => id(random, "batch_", 8));
  const runs: FakeRun[] = [];
  let createdMs = endMs - size * 60_000;
  for (let i = 0; i < size; i++) {
    const sameInstant = i > 0 && random() < 0.05;
    if (!sameInstant) createdMs += 1 + Math.floor(random() * 119_000);
    const workflow = pick(random, WORKFLOWS);
    const status = weightedStatus(random);
    const updatedMs = createdMs + Math.floor(random() * 3 * 86_400_000);
    const started = status === "PENDING" ? null : createdMs + Math.floor(random() * 5_000);
    const finished = ["PROCESSED", "FAILED", "REJECTED", "CANCELLED", "NEEDS_REVIEW"].includes(status)
      ? (started ?? createdMs) + Math.floor(random() * 90_000)
      : null;
    const reviewed = status === "PROCESSED" && random() < 0.3;
    const runId = id(random, "workflow_run_");
    const fileCount = random() < 0.15 ? 2 : 1;
    const files: FakeFile[] = Array.from({ length: fileCount }, () => {
      const name = pick(random, FILE_NAMES).replace("{n}", String(Math.floor(random() * 1000)));
      const extension = name.slice(name.lastIndexOf(".") + 1);
      return {
        object: "file",
        id: id(random, "file_"),
        name,
        type: FILE_TYPES[extension] ?? null,
        parentFileId: null,
        metadata: extension === "pdf" ? { pageCount: 1 + Math.floor(random() * 40) } : {},
        createdAt: iso(createdMs),
        updatedAt: iso(createdMs),
      };
    });
    const usageRoll = random();
    const runCredits = credits(random);
    const usage =
      usageRoll < 0.1
        ? null
        : usageRoll < 0.4
          ? { credits: runCredits }
          : { credits: runCredits, totalCredits: Math.round((runCredits + credits(random) / 4) * 100) / 100 };
    runs.push({
      object: "workflow_run",
      id: runId,
      status,
      workflow: {
        object: "workflow",
        id: workflow.id,
        name: workflow.name,
        createdAt: "2025-06-01T12:00:00.000Z",
        updatedAt: "2026-01-15T08:30:00.000Z",
        createdBy: { type: "user", email: "ops@example.com" },
      },
      workflowVersion: {
        object: "workflow_version",
        id: `workflow_version_${workflow.id.slice(9, 21)}`,
        version: String(1 + (i % 3)),
        name: `Production v${1 + (i % 3)}`,
        createdAt: "2025-06-01T12:00:00.000Z",
        createdBy: null,
      },
      dashboardUrl: `https://dashboard.extend.ai/workflows/${runId}`,
      reviewedByUser: reviewed ? "reviewer@example.com" : null,
      reviewedAt: reviewed ? iso(updatedMs) : null,
      initialRunAt: started === null ? null : iso(started),
      startTime: started === null ? null : iso(started),
      endTime: finished === null ? null : iso(finished),
      batchId: random() < 0.4 ? pick(random, batches) : null,
      rejectionNote: status === "REJECTED" ? "Totals do not match the line items." : null,
      files,
      createdAt: iso(createdMs),
      updatedAt: iso(updatedMs),
      usage,
    });
  }
  return runs;
}
