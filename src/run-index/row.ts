// What the index keeps of a run, mapped from Extend's list summary (sync) and from its full
// WorkflowRun (webhook payloads, GET /workflow_runs/{id}).
import { ApiError } from "../app/errors.ts";
import { WORKFLOW_RUN_STATUSES, type WorkflowRunStatus } from "../extend/schemas.ts";
import { addDecimal, type Decimal, MAX_CREDIT_SCALE, runUsage, ZERO } from "../stats/aggregate.ts";

/**
 * Credits are stored as twelve-decimal integers split here: value = hi / 10^3 + lo / 10^12. Each
 * part must be a safe integer to bind, so one run holds up to about 9 × 10^12 credits; SQLite's
 * 64-bit sums then hold a tenant's total up to about 9.2 × 10^15 credits, and the low parts of
 * 9 × 10^9 runs.
 */
const LOW_DIGITS = 9;
const LOW_BASE = 10n ** BigInt(LOW_DIGITS);
const SCALE = MAX_CREDIT_SCALE;
/** Joins a run's file names; the filter's validation refuses control characters, so no match spans two. */
export const FILE_NAME_SEPARATOR = "\n";
/**
 * Ends the lowercased names and starts the names as Extend has them, when the two differ (see
 * schema.ts): a case-sensitive match reads the part after it, a case-insensitive one the whole.
 */
export const EXACT_NAMES_MARK = "\u0001";
/** Control characters in a name: no filter can contain one, so each separates as a line break does. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: the point is to find them
const CONTROL_CHARS = /[\u0000-\u001f\u007f]/g;

/** One credit amount as the two exact integers the table stores. */
export interface SplitAmount {
  hi: number;
  lo: number;
}

export interface RowUsage {
  credits: SplitAmount;
  totalCredits: SplitAmount;
}

/** A run as one row of `runs` (see schema.ts). */
export interface RunRow {
  id: string;
  /** As Extend lists it: a status outside the eight is kept, so the run moves out of its old one, and never counted. */
  status: string;
  workflowId: string;
  batchId: string | null;
  /** The names as storedFileNames joins them. */
  fileNames: string;
  createdAt: number;
  /** Date.parse(updatedAt) for list rows. */
  version: number;
  /** null: Extend reported no usage for the run. */
  usage: RowUsage | null;
}

/** What a webhook payload or a GET tells about a run; undefined fields are unknown. */
export interface RunFacts {
  id: string;
  /** As for RunRow. */
  status?: string;
  workflowId?: string;
  batchId?: string | null;
  fileNames?: string;
  usage?: RowUsage | null;
}

const STATUSES: ReadonlySet<string> = new Set(WORKFLOW_RUN_STATUSES);

export function isStatus(value: unknown): value is WorkflowRunStatus {
  return typeof value === "string" && STATUSES.has(value);
}

function floorDiv(a: bigint, b: bigint): bigint {
  const q = a / b;
  return a % b !== 0n && a < 0n !== b < 0n ? q - 1n : q;
}

function safe(n: bigint): number {
  const value = Number(n);
  if (!Number.isSafeInteger(value)) {
    throw new ApiError("UPSTREAM_INVALID_RESPONSE", "Extend returned a credit amount out of range.");
  }
  return value;
}

/** Splits an exact decimal (scale at most 12) into the stored pair. */
export function splitAmount(value: Decimal): SplitAmount {
  const units = value.units * 10n ** BigInt(SCALE - value.scale);
  const hi = floorDiv(units, LOW_BASE);
  return { hi: safe(hi), lo: safe(units - hi * LOW_BASE) };
}

/** The exact decimal of summed pairs (SQLite returns the sums as text, so 64 bits survive). */
export function joinAmount(hiSum: string | number | bigint, loSum: string | number | bigint): Decimal {
  return addDecimal({ units: BigInt(hiSum) * LOW_BASE + BigInt(loSum), scale: SCALE }, ZERO);
}

function usageOf(run: Record<string, unknown>): RowUsage | null {
  const usage = runUsage(run);
  return usage && { credits: splitAmount(usage.credits), totalCredits: splitAmount(usage.totalCredits) };
}

/** A run's file names as listed ("" for a file without one), or undefined without a `files` array. */
export function fileNameList(files: unknown): string[] | undefined {
  if (!Array.isArray(files)) return undefined;
  return files.map((file: unknown) =>
    typeof file === "object" && file !== null && typeof (file as { name?: unknown }).name === "string"
      ? (file as { name: string }).name
      : "",
  );
}

function fileNamesOf(files: unknown): string | undefined {
  const names = fileNameList(files);
  return names && storedFileNames(names);
}

/**
 * A run's file names as the `file_names` column keeps them: lowercased and joined by
 * FILE_NAME_SEPARATOR, then, when that changed any of them, EXACT_NAMES_MARK and the names as
 * they are. A lowercase needle found anywhere in it is found in the lowercased part too.
 */
export function storedFileNames(names: readonly string[]): string {
  const exact = names
    .map((name) => name.replace(CONTROL_CHARS, FILE_NAME_SEPARATOR))
    .join(FILE_NAME_SEPARATOR);
  const folded = exact.toLowerCase();
  return folded === exact ? folded : `${folded}${EXACT_NAMES_MARK}${exact}`;
}

/** The names as Extend has them, from the `file_names` column. */
export function exactFileNames(stored: string): string {
  const mark = stored.indexOf(EXACT_NAMES_MARK);
  return mark === -1 ? stored : stored.slice(mark + 1);
}

function workflowIdOf(run: Record<string, unknown>): string | undefined {
  const workflow = run.workflow;
  if (typeof workflow !== "object" || workflow === null) return undefined;
  const id = (workflow as { id?: unknown }).id;
  return typeof id === "string" ? id : undefined;
}

function instant(value: unknown): number {
  return typeof value === "string" ? Date.parse(value) : Number.NaN;
}

/**
 * Whether `usage` is absent, null or an object. Inside one, credits that are not numbers count as
 * no usage, as the scan counts them; usage that is no object at all is a garbled page, not a run
 * without usage: counted as one, it would stay so after the fault, as the run's version does not
 * move.
 */
function usageShaped(usage: unknown): boolean {
  return usage === undefined || usage === null || (typeof usage === "object" && !Array.isArray(usage));
}

/**
 * Maps one run of a list page. A status that is none of the eight is stored as listed: /stats
 * never counts such a run (the scan does not either), and an older state of the run must not stay
 * counted. A run without id, status or valid timestamps, or with usage that is no object, is an
 * invalid response: a row taken from it would outlive the fault, as the same run listed whole
 * later has the same version.
 */
export function rowFromListRun(run: Record<string, unknown>): RunRow | undefined {
  const createdAt = instant(run.createdAt);
  const updatedAt = instant(run.updatedAt);
  if (typeof run.id !== "string" || run.id === "" || Number.isNaN(createdAt) || Number.isNaN(updatedAt)) {
    throw new ApiError(
      "UPSTREAM_INVALID_RESPONSE",
      "Extend returned a run without an id or valid createdAt/updatedAt.",
    );
  }
  if (typeof run.status !== "string" || run.status === "") {
    throw new ApiError("UPSTREAM_INVALID_RESPONSE", "Extend returned a run without a status.");
  }
  if (!usageShaped(run.usage)) {
    throw new ApiError("UPSTREAM_INVALID_RESPONSE", "Extend returned a run whose usage is not an object.");
  }
  return {
    id: run.id,
    status: run.status,
    workflowId: workflowIdOf(run) ?? "",
    batchId: typeof run.batchId === "string" ? run.batchId : null,
    fileNames: fileNamesOf(run.files) ?? "",
    createdAt,
    version: updatedAt,
    usage: usageOf(run),
  };
}

/**
 * What a full WorkflowRun (an inline webhook payload, or GET /workflow_runs/{id}) tells: it has
 * no createdAt or updatedAt, and a field it leaves out stays unknown rather than cleared.
 */
export function factsFromWorkflowRun(run: Record<string, unknown>, id: string): RunFacts {
  const facts: RunFacts = { id };
  if (typeof run.status === "string") facts.status = run.status;
  const workflowId = workflowIdOf(run);
  if (workflowId !== undefined) facts.workflowId = workflowId;
  if (typeof run.batchId === "string" || run.batchId === null) facts.batchId = run.batchId;
  const fileNames = fileNamesOf(run.files);
  if (fileNames !== undefined) facts.fileNames = fileNames;
  // Garbled usage tells nothing: the row keeps what it knew.
  if ("usage" in run && usageShaped(run.usage)) facts.usage = usageOf(run);
  return facts;
}
