// Reads and writes of the `runs` table and its totals. Every write is guarded by version, so a
// replayed page, a page fetched before a change, or an event delivered twice or out of order
// never moves a run back; the caller wraps writes that belong together in one transaction.
// Every write here also moves `run_totals` by exactly what it changed (no trigger does it: a
// trigger writes a totals row per run, the list path writes one per workflow and status).
import { WORKFLOW_RUN_STATUSES, type WorkflowRunStatus } from "../extend/schemas.ts";
import { addDecimal, emptyTotals, type Totals } from "../stats/aggregate.ts";
import {
  EXACT_NAMES_MARK,
  FILE_NAME_SEPARATOR,
  joinAmount,
  type RowUsage,
  type RunFacts,
  type RunRow,
} from "./row.ts";

/** /stats filters in the index's terms: instants as epoch milliseconds. */
export interface IndexFilters {
  status?: WorkflowRunStatus;
  workflowId?: string;
  batchId?: string;
  fileNameContains?: string;
  /** How Extend matches `fileNameContains`: ignoring case (the default) or as written. */
  fileNameMatch?: FileNameMatch;
  since?: number;
  until?: number;
}

/** How Extend matches `fileNameContains`, as the index found out by asking it (sync.ts). */
export type FileNameMatch = "folded" | "exact";

const NO_USAGE: RowUsage = { credits: { hi: 0, lo: 0 }, totalCredits: { hi: 0, lo: 0 } };

function usageColumns(usage: RowUsage | null): [number, number, number, number, number] {
  const u = usage ?? NO_USAGE;
  return [u.credits.hi, u.credits.lo, u.totalCredits.hi, u.totalCredits.lo, usage === null ? 1 : 0];
}

// A list row is the truth for its version: it replaces a state of a lower version, and also one
// of an equal version taken from a webhook (still pending), or that differs from it: Extend's
// updatedAt may be coarser than its changes (whole seconds, or two changes in one millisecond),
// and a state read between two such changes would otherwise stay until a reconcile. Pages are
// applied as they are read, so the later read wins; an identical replay writes nothing. Facts
// (createdAt, workflow, batch, files) never change in Extend, so they are written only where a
// webhook had to guess them, by a second statement: assigning indexed columns, even to their own
// values, rewrites their index entries.
const LIST_ROW_WINS = `(excluded.version > runs.version
  OR (runs.pending_since IS NOT NULL AND excluded.version >= runs.version)
  OR (excluded.version = runs.version AND (excluded.status IS NOT runs.status
    OR excluded.credits_hi IS NOT runs.credits_hi OR excluded.credits_lo IS NOT runs.credits_lo
    OR excluded.total_hi IS NOT runs.total_hi OR excluded.total_lo IS NOT runs.total_lo
    OR excluded.usage_null IS NOT runs.usage_null)))`;

// One statement for a whole batch: the rows travel as one JSON array of arrays, so SQLite makes
// the per-row calls rather than JavaScript (a statement per row was most of a page's write time).
// `WHERE true` lets SQLite parse the upsert clause after a SELECT.
const UPSERT_LIST_ROWS = `
  INSERT INTO runs (id, status, workflow_id, batch_id, file_names, created_at, version,
    credits_hi, credits_lo, total_hi, total_lo, usage_null, facts_known, pending_since)
  SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6,
    value ->> 7, value ->> 8, value ->> 9, value ->> 10, value ->> 11, 1, NULL
  FROM json_each(?) WHERE true
  ON CONFLICT (id) DO UPDATE SET
    status = excluded.status,
    version = excluded.version,
    credits_hi = excluded.credits_hi,
    credits_lo = excluded.credits_lo,
    total_hi = excluded.total_hi,
    total_lo = excluded.total_lo,
    usage_null = excluded.usage_null,
    pending_since = NULL
  WHERE ${LIST_ROW_WINS}`;

/** Characters of JSON per upsert statement: well below the 2 MB a bound string may hold. */
const UPSERT_CHUNK_CHARS = 500_000;

/** Runs UPSERT_LIST_ROWS over the rows, halving a batch whose JSON is too long for one statement. */
function upsertRows(sql: SqlStorage, rows: readonly (string | number | null)[][]): number {
  if (rows.length === 0) return 0;
  const json = JSON.stringify(rows);
  if (json.length <= UPSERT_CHUNK_CHARS || rows.length === 1) {
    return sql.exec(UPSERT_LIST_ROWS, json).rowsWritten;
  }
  const half = Math.ceil(rows.length / 2);
  return upsertRows(sql, rows.slice(0, half)) + upsertRows(sql, rows.slice(half));
}

// Every (workflow, status) a batch moves, in one statement like the rows' upsert. Sums travel as
// decimal text: exact past 2^53, and the INTEGER columns store them as integers.
const ADD_TO_TOTALS = `
  INSERT INTO run_totals (workflow_id, status, runs, credits_hi, credits_lo, total_hi, total_lo, usage_null)
  SELECT value ->> 0, value ->> 1, value ->> 2, CAST(value ->> 3 AS INTEGER), CAST(value ->> 4 AS INTEGER),
    CAST(value ->> 5 AS INTEGER), CAST(value ->> 6 AS INTEGER), CAST(value ->> 7 AS INTEGER)
  FROM json_each(?) WHERE true
  ON CONFLICT (workflow_id, status) DO UPDATE SET runs = runs + excluded.runs,
    credits_hi = credits_hi + excluded.credits_hi, credits_lo = credits_lo + excluded.credits_lo,
    total_hi = total_hi + excluded.total_hi, total_lo = total_lo + excluded.total_lo,
    usage_null = usage_null + excluded.usage_null`;

/** What a stored run contributes to the totals, and what decides whether a list row replaces it. */
interface StoredRun extends Record<string, SqlStorageValue> {
  id: string;
  workflow_id: string;
  status: string;
  version: number;
  pending_since: number | null;
  credits_hi: number;
  credits_lo: number;
  total_hi: number;
  total_lo: number;
  usage_null: number;
  facts_known: number;
}

const STORED_COLUMNS = `id, workflow_id, status, version, pending_since, credits_hi, credits_lo, total_hi,
  total_lo, usage_null, facts_known`;

/** Ids per lookup: one JSON array bound to one parameter (DO SQLite allows 100 per statement). */
const LOOKUP_CHUNK = 1000;

function storedRuns(sql: SqlStorage, ids: readonly string[]): Map<string, StoredRun> {
  const found = new Map<string, StoredRun>();
  for (let i = 0; i < ids.length; i += LOOKUP_CHUNK) {
    const chunk = JSON.stringify(ids.slice(i, i + LOOKUP_CHUNK));
    for (const row of sql.exec<StoredRun>(
      `SELECT ${STORED_COLUMNS} FROM runs WHERE id IN (SELECT value FROM json_each(?))`,
      chunk,
    )) {
      found.set(row.id, row);
    }
  }
  return found;
}

/** The same rule as LIST_ROW_WINS, so the totals move exactly for the rows the upsert writes. */
function listRowWins(row: RunRow, stored: StoredRun | undefined): boolean {
  if (stored === undefined) return true;
  if (row.version > stored.version || (stored.pending_since !== null && row.version >= stored.version)) {
    return true;
  }
  if (row.version !== stored.version) return false;
  const [creditsHi, creditsLo, totalHi, totalLo, usageNull] = usageColumns(row.usage);
  return (
    row.status !== stored.status ||
    creditsHi !== stored.credits_hi ||
    creditsLo !== stored.credits_lo ||
    totalHi !== stored.total_hi ||
    totalLo !== stored.total_lo ||
    usageNull !== stored.usage_null
  );
}

/** Exact sums to add to one (workflow, status) row of the totals (negative to take away). */
interface Delta {
  workflowId: string;
  status: string;
  runs: number;
  amounts: [bigint, bigint, bigint, bigint, bigint];
}

/** Per (workflow, status): the one write of the totals a batch of run changes makes. */
class TotalsDeltas {
  private readonly byKey = new Map<string, Delta>();

  add(workflowId: string, status: string, sign: 1 | -1, columns: readonly number[]): void {
    const key = `${workflowId}\n${status}`;
    let delta = this.byKey.get(key);
    if (!delta) {
      delta = { workflowId, status, runs: 0, amounts: [0n, 0n, 0n, 0n, 0n] };
      this.byKey.set(key, delta);
    }
    delta.runs += sign;
    for (let i = 0; i < 5; i++)
      delta.amounts[i] = (delta.amounts[i] ?? 0n) + BigInt(sign * (columns[i] ?? 0));
  }

  addStored(run: StoredRun, sign: 1 | -1): void {
    this.add(run.workflow_id, run.status, sign, [
      run.credits_hi,
      run.credits_lo,
      run.total_hi,
      run.total_lo,
      run.usage_null,
    ]);
  }

  /** Writes every delta that changes something; returns the rows written. */
  write(sql: SqlStorage): number {
    const moved: (string | number)[][] = [];
    for (const d of this.byKey.values()) {
      if (d.runs === 0 && d.amounts.every((a) => a === 0n)) continue;
      moved.push([d.workflowId, d.status, d.runs, ...d.amounts.map(String)]);
    }
    this.byKey.clear();
    if (moved.length === 0) return 0;
    return sql.exec(ADD_TO_TOTALS, JSON.stringify(moved)).rowsWritten;
  }
}

const SET_FACTS = `UPDATE runs SET workflow_id = ?2, batch_id = ?3, file_names = ?4, created_at = ?5,
  facts_known = 1 WHERE id = ?1 AND facts_known = 0`;

/** One row per id: the highest version, the first of equals (as writing them in turn would keep). */
function newestPerId(rows: readonly RunRow[]): RunRow[] {
  const byId = new Map<string, RunRow>();
  for (const row of rows) {
    const kept = byId.get(row.id);
    if (kept === undefined || row.version > kept.version) byId.set(row.id, row);
  }
  return [...byId.values()];
}

function storedRun(sql: SqlStorage, id: string): StoredRun | undefined {
  return sql.exec<StoredRun>(`SELECT ${STORED_COLUMNS} FROM runs WHERE id = ?`, id).toArray()[0];
}

/**
 * Runs one write to a single run and moves the totals by what it changed: the run's old state
 * out, its new state in, nothing when the write left the run as it was. Returns the rows
 * written, the write's own first.
 */
function withTotals(sql: SqlStorage, id: string, write: () => number): number {
  const before = storedRun(sql, id);
  const written = write();
  if (written === 0) return 0;
  const after = storedRun(sql, id);
  const deltas = new TotalsDeltas();
  if (before) deltas.addStored(before, -1);
  if (after) deltas.addStored(after, 1);
  return written + deltas.write(sql);
}

/**
 * Writes each list row that is newer than the stored run, and the facts of runs a webhook had
 * to guess, and moves the totals by one write per (workflow, status) the rows change. One
 * lookup reads the stored versions of the whole batch, so rows the guard keeps out are never
 * sent to SQLite. Returns the rows SQLite wrote (0 when the guard kept every
 * stored state).
 */
export function upsertListRows(sql: SqlStorage, rows: readonly RunRow[]): number {
  const unique = newestPerId(rows);
  const stored = storedRuns(
    sql,
    unique.map((row) => row.id),
  );
  const deltas = new TotalsDeltas();
  const winners: (string | number | null)[][] = [];
  for (const row of unique) {
    const old = stored.get(row.id);
    if (!listRowWins(row, old)) continue;
    const usage = usageColumns(row.usage);
    winners.push([
      row.id,
      row.status,
      row.workflowId,
      row.batchId,
      row.fileNames,
      row.createdAt,
      row.version,
      ...usage,
    ]);
    // A stored run keeps its workflow (facts are never rewritten by this statement).
    if (old) deltas.addStored(old, -1);
    deltas.add(old?.workflow_id ?? row.workflowId, row.status, 1, usage);
  }
  let written = upsertRows(sql, winners);
  written += deltas.write(sql);
  for (const row of unique) {
    if (stored.get(row.id)?.facts_known !== 0) continue;
    written += withTotals(
      sql,
      row.id,
      () =>
        sql.exec(SET_FACTS, row.id, row.workflowId, row.batchId, row.fileNames, row.createdAt).rowsWritten,
    );
  }
  return written;
}

/** One list row (see upsertListRows). */
export function upsertListRow(sql: SqlStorage, row: RunRow): number {
  return upsertListRows(sql, [row]);
}

/** A webhook's view of a run, applied before any list shows it. */
export interface Overlay {
  facts: RunFacts & { status: WorkflowRunStatus };
  /** Conservative version: any list row of the same change or a later one is at least this. */
  version: number;
  /** When it arrived (worker clock); a head walk that starts later must confirm it. */
  receivedAt: number;
  /** createdAt to assume for a run the index has never seen (the event's timestamp). */
  createdAtGuess: number;
  /**
   * The delivery's signing time (its Unix second, in ms). A state the list showed before that
   * second ended is older than the event, even inside the conservative version's window (a run
   * read while running that finished a moment later). Without it, only `version` decides.
   */
  signedAt?: number;
}

/** Where a webhook's status stands in a run's life: a run under review ends later, never the reverse. */
const LIFECYCLE_RANK = (column: string) =>
  `CASE ${column} WHEN 'NEEDS_REVIEW' THEN 1 WHEN 'PROCESSED' THEN 2 WHEN 'FAILED' THEN 2
    WHEN 'REJECTED' THEN 2 WHEN 'CANCELLED' THEN 2 ELSE 0 END`;

// Applied only over an older state: another webhook's of a lower version, or a list row's
// updated before ?18 (see Overlay.signedAt). Events of one run signed within the same few
// seconds (a review ended at once) cannot be told apart by version, least of all when the first
// was lifted above a list row: one later in the run's life wins over a webhook state of before
// ?18, whatever order they arrive in. Over a list row the version stays above the row's, so a
// replay of that row cannot undo the event, and at most the event's, so the list row of the same
// change still confirms it. Known fields replace, unknown ones stay; facts of a run the list has
// shown are never overwritten by a webhook.
const APPLY_OVERLAY = `
  INSERT INTO runs (id, status, workflow_id, batch_id, file_names, created_at, version,
    credits_hi, credits_lo, total_hi, total_lo, usage_null, facts_known, pending_since)
  VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 0, ?13)
  ON CONFLICT (id) DO UPDATE SET
    status = excluded.status,
    version = CASE WHEN runs.pending_since IS NULL THEN max(excluded.version, runs.version + 1)
      ELSE excluded.version END,
    pending_since = excluded.pending_since,
    credits_hi = CASE WHEN ?14 THEN excluded.credits_hi ELSE runs.credits_hi END,
    credits_lo = CASE WHEN ?14 THEN excluded.credits_lo ELSE runs.credits_lo END,
    total_hi = CASE WHEN ?14 THEN excluded.total_hi ELSE runs.total_hi END,
    total_lo = CASE WHEN ?14 THEN excluded.total_lo ELSE runs.total_lo END,
    usage_null = CASE WHEN ?14 THEN excluded.usage_null ELSE runs.usage_null END,
    workflow_id = CASE WHEN runs.facts_known = 0 AND ?15 THEN excluded.workflow_id ELSE runs.workflow_id END,
    batch_id = CASE WHEN runs.facts_known = 0 AND ?16 THEN excluded.batch_id ELSE runs.batch_id END,
    file_names = CASE WHEN runs.facts_known = 0 AND ?17 THEN excluded.file_names ELSE runs.file_names END
  WHERE CASE WHEN runs.pending_since IS NULL THEN runs.version < ?18
    ELSE excluded.version > runs.version
      OR (runs.version < ?18 AND ${LIFECYCLE_RANK("excluded.status")} > ${LIFECYCLE_RANK("runs.status")}) END`;

/** Applies a webhook's state if it is newer than the stored one; true when it changed the run. */
export function applyOverlay(sql: SqlStorage, overlay: Overlay): boolean {
  const { facts } = overlay;
  const write = () =>
    sql.exec(
      APPLY_OVERLAY,
      facts.id,
      facts.status,
      facts.workflowId ?? "",
      facts.batchId ?? null,
      facts.fileNames ?? "",
      overlay.createdAtGuess,
      overlay.version,
      ...usageColumns(facts.usage ?? null),
      overlay.receivedAt,
      facts.usage !== undefined ? 1 : 0,
      facts.workflowId !== undefined ? 1 : 0,
      facts.batchId !== undefined ? 1 : 0,
      facts.fileNames !== undefined ? 1 : 0,
      overlay.signedAt !== undefined ? overlay.signedAt + 1000 : overlay.version + 1,
    ).rowsWritten;
  return withTotals(sql, facts.id, write) > 0;
}

const CONFIRM_FROM_GET = `
  UPDATE runs SET
    status = CASE WHEN ?2 IS NOT NULL THEN ?2 ELSE status END,
    credits_hi = CASE WHEN ?8 THEN ?3 ELSE credits_hi END,
    credits_lo = CASE WHEN ?8 THEN ?4 ELSE credits_lo END,
    total_hi = CASE WHEN ?8 THEN ?5 ELSE total_hi END,
    total_lo = CASE WHEN ?8 THEN ?6 ELSE total_lo END,
    usage_null = CASE WHEN ?8 THEN ?7 ELSE usage_null END,
    workflow_id = CASE WHEN facts_known = 0 AND ?9 IS NOT NULL THEN ?9 ELSE workflow_id END,
    batch_id = CASE WHEN facts_known = 0 AND ?10 THEN ?11 ELSE batch_id END,
    file_names = CASE WHEN facts_known = 0 AND ?12 IS NOT NULL THEN ?12 ELSE file_names END,
    pending_since = NULL
  WHERE id = ?1`;

/**
 * Takes a run's current state from GET /workflow_runs/{id}: Extend's answer now, so it settles a
 * webhook's state that no list walk confirmed. The version stays (GET has no updatedAt): the
 * next list row that is newer still wins.
 */
export function confirmFromGet(sql: SqlStorage, facts: RunFacts): void {
  withTotals(
    sql,
    facts.id,
    () =>
      sql.exec(
        CONFIRM_FROM_GET,
        facts.id,
        facts.status ?? null,
        ...usageColumns(facts.usage ?? null),
        facts.usage !== undefined ? 1 : 0,
        facts.workflowId ?? null,
        facts.batchId !== undefined ? 1 : 0,
        facts.batchId ?? null,
        facts.fileNames ?? null,
      ).rowsWritten,
  );
}

export function deleteRun(sql: SqlStorage, id: string): void {
  withTotals(sql, id, () => sql.exec(`DELETE FROM runs WHERE id = ?`, id).rowsWritten);
}

/** Rebuilds the totals from the rows (the reconcile does it, so nothing can drift for long). */
export function recomputeTotals(sql: SqlStorage): void {
  sql.exec(`DELETE FROM run_totals`);
  sql.exec(`INSERT INTO run_totals
    SELECT workflow_id, status, count(*), sum(credits_hi), sum(credits_lo), sum(total_hi), sum(total_lo),
      sum(usage_null)
    FROM runs GROUP BY workflow_id, status`);
}

interface TotalsRow extends Record<string, SqlStorageValue> {
  status: string;
  runs: number;
  c_hi: string;
  c_lo: string;
  t_hi: string;
  t_lo: string;
  no_usage: number;
}

const SUMS = `status, sum(%runs%) AS runs, CAST(sum(credits_hi) AS TEXT) AS c_hi,
  CAST(sum(credits_lo) AS TEXT) AS c_lo, CAST(sum(total_hi) AS TEXT) AS t_hi,
  CAST(sum(total_lo) AS TEXT) AS t_lo, sum(usage_null) AS no_usage`;

/** Whether the filters can be answered from the totals alone (no row is read). */
export function usesTotalsOnly(filters: IndexFilters): boolean {
  return (
    filters.batchId === undefined &&
    filters.fileNameContains === undefined &&
    filters.since === undefined &&
    filters.until === undefined
  );
}

/** SQL conditions for the filters, with their bindings. */
export interface RunConditions {
  where: string[];
  bindings: (string | number)[];
}

/**
 * The WHERE clauses of `filters`: status and workflow only (columns of both `runs` and
 * `run_totals`) when usesTotalsOnly, else every filter over `runs`, each on an indexed column
 * where one exists.
 */
/** The `file_names` column's names as Extend has them (exactFileNames in SQL). */
const EXACT_NAMES_SQL = `CASE WHEN instr(file_names, char(1)) > 0 THEN substr(file_names, instr(file_names, char(1)) + 1) ELSE file_names END`;

export function runConditions(filters: IndexFilters): RunConditions {
  const where: string[] = [];
  const bindings: (string | number)[] = [];
  const add = (clause: string, value: string | number) => {
    where.push(clause);
    bindings.push(value);
  };
  if (filters.status !== undefined) add("status = ?", filters.status);
  if (filters.workflowId !== undefined) add("workflow_id = ?", filters.workflowId);
  if (usesTotalsOnly(filters)) return { where, bindings };
  if (filters.batchId !== undefined) add("batch_id = ?", filters.batchId);
  if (filters.since !== undefined) add("created_at >= ?", filters.since);
  if (filters.until !== undefined) add("created_at <= ?", filters.until);
  if (filters.fileNameContains !== undefined) {
    const exact = filters.fileNameMatch === "exact";
    const needle = exact ? filters.fileNameContains : filters.fileNameContains.toLowerCase();
    // instr(), not LIKE: no wildcard in the needle means anything, and no length limit applies.
    if (needle.includes(FILE_NAME_SEPARATOR) || needle.includes(EXACT_NAMES_MARK)) {
      throw new RangeError("fileNameContains holds a control character");
    }
    // A lowercase needle may search the whole column (see storedFileNames); one as written, only
    // the names as Extend has them: after the mark when there is one, else all of it.
    add(exact ? `instr(${EXACT_NAMES_SQL}, ?) > 0` : "instr(file_names, ?) > 0", needle);
  }
  return { where, bindings };
}

/**
 * Counts and exact sums per status for the filters. Status and workflow alone read the totals
 * (workflows × 8 rows); any other filter reads the matching rows through an index. Memory is
 * one row per status whatever the number of runs.
 */
export function queryTotals(sql: SqlStorage, filters: IndexFilters): Totals {
  const { where, bindings } = runConditions(filters);
  const table = usesTotalsOnly(filters) ? "run_totals" : "runs";
  let query = `SELECT ${SUMS.replace("%runs%", table === "runs" ? "1" : "runs")} FROM ${table}`;
  if (where.length > 0) query += ` WHERE ${where.join(" AND ")}`;
  query += " GROUP BY status";
  const totals = emptyTotals();
  const known = new Set<string>(WORKFLOW_RUN_STATUSES);
  for (const row of sql.exec<TotalsRow>(query, ...bindings)) {
    if (!known.has(row.status) || row.runs === 0) continue;
    totals.byStatus[row.status as WorkflowRunStatus] += row.runs;
    totals.credits = addDecimal(totals.credits, joinAmount(row.c_hi, row.c_lo));
    totals.totalCredits = addDecimal(totals.totalCredits, joinAmount(row.t_hi, row.t_lo));
    totals.runsWithoutUsage += row.no_usage;
  }
  return totals;
}

/** Number of runs in the index. */
export function countRuns(sql: SqlStorage): number {
  return sql.exec<{ n: number | null }>(`SELECT sum(runs) AS n FROM run_totals`).one().n ?? 0;
}
