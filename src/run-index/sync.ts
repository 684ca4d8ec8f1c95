// The sync state machine of the run index. Extend's list has no time filter, so:
// - the backfill walks every run once, by createdAt (stable positions), each partition (a
//   workflow, or a status when the tenant has too few or too many workflows) from both ends at
//   once, meeting in the middle, each page and its cursor written in one transaction, so an
//   interrupted walk resumes where it stopped;
// - the head walk reads `sortBy=updatedAt&sortDir=desc` from the newest run down to the
//   watermark minus a lookback: O(changes) pages, run every INDEX_SYNC_SECONDS;
// - the reconcile re-walks everything by status and diffs each page's createdAt range
//   against the rows, so a run missing upstream is found without marking every row (a write per
//   run per day); each one is confirmed with GET /workflow_runs/{id} before it is removed;
// - webhooks apply at once with a conservative version, and the next head walk that starts after
//   one confirms it (or a GET settles it).
// Everything here is idempotent: alarms are delivered at least once and may overlap a request.
import { ApiError } from "../app/errors.ts";
import {
  type CanonicalListQuery,
  MAX_PAGE_SIZE,
  WORKFLOW_RUN_STATUSES,
  type WorkflowRunStatus,
} from "../extend/schemas.ts";
import { SlotRefused } from "../gateway/scheduler.ts";
import { settledWithin } from "../lib/clock.ts";
import {
  listsAsWritten,
  listsOtherCase,
  type NameSample,
  nameSample,
  probeQuery,
  storedFileNameMatch,
  storeFileNameMatch,
  swapAsciiCase,
} from "./name-match.ts";
import { factsFromWorkflowRun, type RunFacts, type RunRow, rowFromListRun } from "./row.ts";
import { buildFilterIndexes } from "./schema.ts";
import {
  applyOverlay,
  confirmFromGet,
  countRuns,
  deleteRun,
  type FileNameMatch,
  recomputeTotals,
  upsertListRows,
} from "./store.ts";
import type { IndexSettings, RunLookup, SyncPage, SyncUpstream, WorkflowPage } from "./upstream.ts";

/** An index nobody has read for this long stops syncing; the next read wakes it up. */
export const IDLE_AFTER_MS = 86_400_000;
/** A webhook asks for a confirming head walk this soon (later ones in the meantime share it). */
export const WEBHOOK_DEBOUNCE_MS = 2_000;
/** Webhook rows are stamped this far before the event's signing time (a list row of the same change wins). */
export const WEBHOOK_SKEW_MS = 5_000;
/** Event ids are remembered this long (Extend refuses signatures older than 300 s anyway). */
export const EVENT_MEMORY_MS = 86_400_000;
/** Work one alarm or request may do: below the Free plan's 50 subrequests, and well within an alarm's time. */
export const MAX_CALLS_PER_RUN = 40;
export const MAX_MS_PER_RUN = 20_000;
/**
 * Calls under way at once, counting those waiting for their slot in the budget and those whose
 * page is being written; the connections they hold open are capped apart (upstream.ts).
 */
export const MAX_CONCURRENT_CALLS = 10;
/**
 * The backfill splits by workflow when the tenant has this many: fewer leave too few cursors
 * (sixteen status walks spread better), more cost a partly filled page each.
 */
export const MIN_WORKFLOW_PARTITIONS = 4;
export const MAX_WORKFLOW_PARTITIONS = 64;
/**
 * A run whose GET fails (a run Extend cannot serve, one too large to answer in time) is tried
 * again after 30 s, doubling, and given up after this many tries: its row stays as the index has
 * it, a deletion it would have confirmed waits for the next reconcile. Until then it holds back
 * neither the head walks nor the alarm.
 */
export const CANDIDATE_MAX_FAILURES = 5;
const CANDIDATE_RETRY_BASE_MS = 30_000;
/** Failures that say nothing about one run: they back off the whole sync instead. */
const TENANT_WIDE_FAILURES: ReadonlySet<string> = new Set([
  "UPSTREAM_AUTH_FAILED",
  "UPSTREAM_USAGE_BLOCKED",
  "UPSTREAM_RATE_LIMITED",
]);
/**
 * After a failed run: 30 s, doubling to at most 2 minutes. A failing run costs one call, so a
 * longer wait would save nothing worth an index left behind for minutes after Extend recovers.
 */
const RETRY_BASE_MS = 30_000;
export const SYNC_RETRY_CAP_MS = 120_000;
/**
 * The first reconcile follows a whole build this soon, whatever INDEX_RECONCILE_SECONDS says: with
 * an offset-style cursor (Extend does not say which kind it has), a run deleted during the
 * backfill moves every later run of its walk up one place, and the walk steps over one that
 * nothing updated, so no head walk brings it.
 */
export const RECONCILE_AFTER_BUILD_MS = 60_000;
/** A probe of how Extend matches file names that failed or told nothing is tried again after this. */
const PROBE_RETRY_MS = 30_000;
/** An index with no name to probe with looks for one again after this (it is a scan of the rows). */
const SAMPLE_RECHECK_MS = 600_000;
/** last_used_at is written at most this often: a /stats read must not cost a row write each. */
const USE_WRITE_INTERVAL_MS = 3_600_000;

export type Phase = "empty" | "backfill" | "ready";
export type Purpose = "backfill" | "reconcile";
type Direction = "asc" | "desc";

/** The one row of `run_sync`, as the code uses it. */
export interface SyncState {
  phase: Phase;
  settings: IndexSettings | null;
  backfillStartedAt: number | null;
  /** Head walks read down to watermark − lookback (Extend's updatedAt clock, ms). */
  watermark: number | null;
  /** Start of the last completed head walk: every change made before it is counted. */
  asOf: number | null;
  headStartedAt: number | null;
  headFloor: number | null;
  headTop: number | null;
  headCursor: string | null;
  headPages: number;
  lastHeadPages: number;
  headRequestedAt: number | null;
  reconcileStartedAt: number | null;
  lastReconcileAt: number | null;
  lastUsedAt: number | null;
  lastWebhookAt: number | null;
  errorCount: number;
  errorAt: number | null;
  errorCode: string | null;
  retryAt: number | null;
}

const COLUMNS: Record<keyof SyncState, string> = {
  phase: "phase",
  settings: "settings",
  backfillStartedAt: "backfill_started_at",
  watermark: "watermark",
  asOf: "as_of",
  headStartedAt: "head_started_at",
  headFloor: "head_floor",
  headTop: "head_top",
  headCursor: "head_cursor",
  headPages: "head_pages",
  lastHeadPages: "last_head_pages",
  headRequestedAt: "head_requested_at",
  reconcileStartedAt: "reconcile_started_at",
  lastReconcileAt: "last_reconcile_at",
  lastUsedAt: "last_used_at",
  lastWebhookAt: "last_webhook_at",
  errorCount: "error_count",
  errorAt: "error_at",
  errorCode: "error_code",
  retryAt: "retry_at",
};

export function readState(sql: SqlStorage): SyncState {
  const row = sql.exec(`SELECT * FROM run_sync WHERE id = 1`).one();
  const state = {} as Record<keyof SyncState, unknown>;
  for (const [key, column] of Object.entries(COLUMNS) as [keyof SyncState, string][]) {
    state[key] = row[column] ?? null;
  }
  const settings = row.settings;
  state.settings = typeof settings === "string" ? (JSON.parse(settings) as IndexSettings) : null;
  return state as unknown as SyncState;
}

function writeState(sql: SqlStorage, patch: Partial<SyncState>): void {
  const entries = Object.entries(patch) as [keyof SyncState, unknown][];
  if (entries.length === 0) return;
  const sets = entries.map(([key]) => `${COLUMNS[key]} = ?`).join(", ");
  const values = entries.map(([key, value]) =>
    key === "settings" ? (value === null ? null : JSON.stringify(value)) : (value as SqlStorageValue),
  );
  sql.exec(`UPDATE run_sync SET ${sets} WHERE id = 1`, ...values);
}

/** What a walk pages through: the runs of one status, or of one workflow. */
type Partition =
  | { status: WorkflowRunStatus; workflowId?: undefined }
  | { status?: undefined; workflowId: string };

type Walk = Partition & {
  name: string;
  purpose: Purpose;
  direction: Direction;
  cursor: string | null;
  /** createdAt of the last run the walk read (ms), null before its first page. */
  edge: number | null;
  done: boolean;
  pages: number;
  runs: number;
};

interface WalkRow extends Record<string, SqlStorageValue> {
  name: string;
  purpose: string;
  status: string | null;
  workflow_id: string | null;
  direction: string;
  cursor: string | null;
  edge: number | null;
  done: number;
  pages: number;
  runs: number;
}

function toWalk(row: WalkRow): Walk {
  const partition: Partition =
    row.workflow_id !== null ? { workflowId: row.workflow_id } : { status: row.status as WorkflowRunStatus };
  return {
    ...partition,
    name: row.name,
    purpose: row.purpose as Purpose,
    direction: row.direction as Direction,
    cursor: row.cursor,
    edge: row.edge,
    done: row.done === 1,
    pages: row.pages,
    runs: row.runs,
  };
}

function readWalks(sql: SqlStorage, purpose: Purpose): Walk[] {
  return sql
    .exec<WalkRow>(`SELECT * FROM run_walks WHERE purpose = ? ORDER BY name`, purpose)
    .toArray()
    .map(toWalk);
}

function walkName(purpose: Purpose, partition: Partition, direction: Direction): string {
  const key =
    partition.workflowId !== undefined ? `workflow:${partition.workflowId}` : `status:${partition.status}`;
  return `${purpose}:${key}:${direction}`;
}

/** Two walks (both ends) per partition: the statuses, unless workflow ids are given. */
function createWalks(sql: SqlStorage, purpose: Purpose, workflowIds?: readonly string[]): void {
  sql.exec(`DELETE FROM run_walk_tail WHERE walk IN (SELECT name FROM run_walks WHERE purpose = ?)`, purpose);
  sql.exec(`DELETE FROM run_walks WHERE purpose = ?`, purpose);
  const partitions: Partition[] = workflowIds
    ? workflowIds.map((workflowId) => ({ workflowId }))
    : WORKFLOW_RUN_STATUSES.map((status) => ({ status }));
  for (const partition of partitions) {
    for (const direction of ["asc", "desc"] as const) {
      sql.exec(
        `INSERT INTO run_walks (name, purpose, status, workflow_id, direction) VALUES (?, ?, ?, ?, ?)`,
        walkName(purpose, partition, direction),
        purpose,
        partition.status ?? null,
        partition.workflowId ?? null,
        direction,
      );
    }
  }
}

function walkQuery(walk: Walk): CanonicalListQuery {
  return {
    ...(walk.status !== undefined ? { status: walk.status } : {}),
    ...(walk.workflowId !== undefined ? { workflowId: walk.workflowId } : {}),
    sortBy: "createdAt",
    sortDir: walk.direction,
    ...(walk.cursor ? { nextPageToken: walk.cursor } : {}),
    maxPageSize: MAX_PAGE_SIZE,
  };
}

function headQuery(cursor: string | null): CanonicalListQuery {
  return {
    sortBy: "updatedAt",
    sortDir: "desc",
    ...(cursor ? { nextPageToken: cursor } : {}),
    maxPageSize: MAX_PAGE_SIZE,
  };
}

function rowsOf(page: SyncPage): RunRow[] {
  const rows: RunRow[] = [];
  for (const run of page.data) {
    const row = rowFromListRun(run);
    if (row) rows.push(row);
  }
  return rows;
}

function createdAtOf(run: Record<string, unknown>): number {
  return typeof run.createdAt === "string" ? Date.parse(run.createdAt) : Number.NaN;
}

/** How a page closes part of a reconcile walk's range (see `diffPage`). */
interface Closed {
  /** Rows with created_at in [from, to) (asc) or (to, from] (desc) must have been on the walk's pages. */
  from: number | null;
  to: number | null;
}

/**
 * A reconcile walk's page, compared with the rows of its status: every run upstream whose
 * createdAt lies strictly between the page's first and last instants is on this page, and the
 * instant where the previous page ended is covered by that page's tail plus this one. Rows in
 * the range that neither shows are candidates for deletion. The instant the page ends at is left
 * open (the next page may continue it) and remembered in the walk's tail.
 */
function diffPage(
  sql: SqlStorage,
  walk: Walk & { status: WorkflowRunStatus },
  page: SyncPage,
  cap: number,
): void {
  const data = page.data;
  const last = data[data.length - 1];
  const end = page.nextPageToken === undefined;
  const newEdge = last === undefined ? null : createdAtOf(last);
  const tail = new Set(
    sql
      .exec<{ id: string }>(`SELECT id FROM run_walk_tail WHERE walk = ?`, walk.name)
      .toArray()
      .map((r) => r.id),
  );
  const seen = new Set<string>(tail);
  for (const run of data) if (typeof run.id === "string") seen.add(run.id);
  sql.exec(`DELETE FROM run_walk_tail WHERE walk = ?`, walk.name);
  if (!end && (newEdge === null || newEdge === walk.edge)) {
    // The whole page sits at the instant the last one ended at, or is empty (Extend promises no
    // page size, not even one run while more follow): nothing closes yet.
    for (const id of seen) sql.exec(`INSERT INTO run_walk_tail (walk, id) VALUES (?, ?)`, walk.name, id);
    return;
  }
  const closed: Closed = { from: walk.edge, to: end ? null : newEdge };
  const asc = walk.direction === "asc";
  const where = ["status = ?", "created_at < ?"];
  const bindings: (string | number)[] = [walk.status, cap];
  const bound = (clause: string, value: number | null) => {
    if (value === null) return;
    where.push(clause);
    bindings.push(value);
  };
  bound(asc ? "created_at >= ?" : "created_at <= ?", closed.from);
  bound(asc ? "created_at < ?" : "created_at > ?", closed.to);
  for (const row of sql.exec<{ id: string }>(
    `SELECT id FROM runs WHERE ${where.join(" AND ")}`,
    ...bindings,
  )) {
    if (!seen.has(row.id)) {
      sql.exec(
        `INSERT INTO run_candidates (id, reason) VALUES (?, 'reconcile') ON CONFLICT (id) DO NOTHING`,
        row.id,
      );
    }
  }
  if (!end && newEdge !== null) {
    for (const run of data) {
      if (typeof run.id === "string" && createdAtOf(run) === newEdge) {
        sql.exec(
          `INSERT INTO run_walk_tail (walk, id) VALUES (?, ?) ON CONFLICT DO NOTHING`,
          walk.name,
          run.id,
        );
      }
    }
  }
}

/** What a verified webhook tells the index. */
export interface IndexEvent {
  eventId: string;
  /** x-extend-request-timestamp, in ms. */
  signedAt: number;
  /** A run's new state, or nothing (an event the index only takes as a hint to sync soon). */
  run?: RunFacts & { status: WorkflowRunStatus };
}

export interface EventOutcome {
  duplicate: boolean;
  /** The event changed a run the index holds (or added one). */
  applied: boolean;
}

/** How far the backfill is, for /stats answers served by scan meanwhile. */
export interface BuildProgress {
  state: "building";
  startedAt: string | null;
  runsIndexed: number;
  pagesFetched: number;
  walksDone: number;
  walks: number;
}

export interface SyncDeps {
  sql: SqlStorage;
  /** ctx.storage.transactionSync: the callback's writes commit together or not at all. */
  transaction<T>(fn: () => T): T;
  upstream: SyncUpstream;
  now(): number;
}

export interface RunLimits {
  /** Calls one run may start. */
  maxCalls: number;
  /** After this long, a run starts no more calls. */
  maxMs: number;
  /** Calls in flight at once, counting those an earlier run left running. */
  concurrency: number;
  /**
   * Once the run has started all it may, it returns without waiting for its last calls: they
   * finish (each page committed with its cursor, as ever) while the next run, the next alarm,
   * starts its own, so the budget is not left idle while one alarm drains and the next is
   * scheduled. Without it, a run returns when its calls have finished.
   */
  overlap?: boolean;
}

export const DEFAULT_LIMITS: RunLimits = {
  maxCalls: MAX_CALLS_PER_RUN,
  maxMs: MAX_MS_PER_RUN,
  concurrency: MAX_CONCURRENT_CALLS,
  overlap: true,
};

export interface RunResult {
  /** Calls the run started. */
  calls: number;
  /** Code of the error that ended the run early (or an earlier run's call that failed after it returned). */
  error?: string;
}

interface Task {
  key: string;
  run(signal: AbortSignal): Promise<void>;
}

function isRejectedCursor(error: unknown): boolean {
  return error instanceof ApiError && error.code === "INVALID_REQUEST";
}

/**
 * When the next reconcile is due: INDEX_RECONCILE_SECONDS after the last one began (or the
 * anchor a whole build set, see RECONCILE_AFTER_BUILD_MS), and at once if none ever ran.
 */
function reconcileDueAt(state: SyncState, now: number): number {
  if (state.lastReconcileAt === null || state.settings === null) return now;
  return state.lastReconcileAt + state.settings.reconcileSeconds * 1000;
}

/**
 * The index's sync over one SQLite database. Storage is the truth; the sync keeps a copy of the
 * state row and the walks in memory, because it consults them on every task it picks and every
 * page it applies (reading them each time was a fifth of the object's time per backfill page).
 * Every write goes through to storage and the copy at once; both copies are dropped when a
 * transaction fails. The state row is also re-read at each call from outside (`tick`,
 * `configure`, `use`, `applyEvent`), so a change made to it meanwhile is seen; the walks change
 * only through the sync itself.
 */
export class RunIndexSync {
  private readonly deps: SyncDeps;
  private readonly inFlight = new Map<string, Promise<void>>();
  private cachedState: SyncState | undefined;
  /** The backfill's head walk has read its pages; the last walk page to land completes it. */
  private headAwaitsWalks = false;
  /** Code of a failure of a call that outlived its run (see RunLimits.overlap). */
  private lateFailure: string | undefined;
  private readonly cachedWalks = new Map<Purpose, Walk[]>();
  /** Candidates whose GET failed: how often, and when to try again (an object restart tries anew). */
  private readonly failedChecks = new Map<string, { failures: number; retryAt: number }>();
  /** A probe of how Extend matches file names that told nothing is not tried again before this. */
  private probeRetryAt = 0;
  /** When the index last found no name to probe with: it looks again only SAMPLE_RECHECK_MS later. */
  private noSampleAt: number | undefined;
  /** How Extend matches file names, once known (knownFileNameMatch). */
  private fileNameMatchKnown: FileNameMatch | undefined;

  constructor(deps: SyncDeps) {
    this.deps = deps;
  }

  private get sql(): SqlStorage {
    return this.deps.sql;
  }

  state(): SyncState {
    this.cachedState ??= readState(this.sql);
    return this.cachedState;
  }

  /** Forgets the copies: the next read takes them from storage. */
  private reload(): void {
    this.reloadState();
    this.cachedWalks.clear();
  }

  private reloadState(): void {
    this.cachedState = undefined;
    this.fileNameMatchKnown = undefined;
  }

  private setState(patch: Partial<SyncState>): void {
    writeState(this.sql, patch);
    // A new object, not an update in place: a caller holding the state it read keeps that view.
    if (this.cachedState) this.cachedState = { ...this.cachedState, ...patch };
  }

  private walks(purpose: Purpose): readonly Walk[] {
    let list = this.cachedWalks.get(purpose);
    if (!list) {
      list = readWalks(this.sql, purpose);
      this.cachedWalks.set(purpose, list);
    }
    return list;
  }

  private walk(purpose: Purpose, name: string): Walk | undefined {
    return this.walks(purpose).find((w) => w.name === name);
  }

  private setWalk(walk: Walk): void {
    const list = this.cachedWalks.get(walk.purpose);
    if (!list) return;
    const index = list.findIndex((w) => w.name === walk.name);
    if (index !== -1) list[index] = walk;
  }

  /** deps.transaction, dropping the copies when it fails (its writes were rolled back). */
  private transaction<T>(fn: () => T): T {
    try {
      return this.deps.transaction(fn);
    } catch (error) {
      this.reload();
      throw error;
    }
  }

  /** Stores the settings the alarm will use, when they changed. */
  configure(settings: IndexSettings): void {
    this.reloadState();
    const current = this.state().settings;
    if (JSON.stringify(current) !== JSON.stringify(settings)) this.setState({ settings });
  }

  private settings(): IndexSettings {
    const settings = this.state().settings;
    if (!settings) throw new Error("the run index has no settings yet");
    return settings;
  }

  private lookbackMs(): number {
    return this.settings().lookbackSeconds * 1000;
  }

  /** Records a read of the index; starts the backfill on first use. */
  use(): void {
    this.reloadState();
    const now = this.deps.now();
    const state = this.state();
    this.transaction(() => {
      if (state.lastUsedAt === null || now - state.lastUsedAt >= USE_WRITE_INTERVAL_MS) {
        this.setState({ lastUsedAt: now });
      }
      if (state.phase === "empty") {
        // The walks are created once the workflows are known (the first task of the backfill).
        // Set before the first page: every run updated while the backfill runs is newer than
        // this, so the head walk that ends the backfill reads it again.
        this.setState({ phase: "backfill", backfillStartedAt: now, watermark: now });
      }
    });
  }

  inUse(now = this.deps.now()): boolean {
    const used = this.state().lastUsedAt;
    return used !== null && now - used < IDLE_AFTER_MS;
  }

  progress(): BuildProgress {
    const state = this.state();
    const list = this.walks("backfill");
    return {
      state: "building",
      startedAt: state.backfillStartedAt === null ? null : new Date(state.backfillStartedAt).toISOString(),
      runsIndexed: countRuns(this.sql),
      pagesFetched: list.reduce((sum, w) => sum + w.pages, 0),
      walksDone: list.filter((w) => w.done).length,
      walks: list.length,
    };
  }

  /** Applies a verified webhook event once: at once to the run, then a head walk confirms it. */
  applyEvent(event: IndexEvent): EventOutcome {
    this.reloadState();
    const now = this.deps.now();
    return this.transaction(() => {
      this.sql.exec(
        `DELETE FROM run_events WHERE event_id IN (SELECT event_id FROM run_events WHERE at < ? LIMIT 100)`,
        now - EVENT_MEMORY_MS,
      );
      const seen = this.sql.exec(`SELECT 1 FROM run_events WHERE event_id = ?`, event.eventId).toArray();
      if (seen.length > 0) return { duplicate: true, applied: false };
      this.sql.exec(`INSERT INTO run_events (event_id, at) VALUES (?, ?)`, event.eventId, now);
      const applied = event.run
        ? applyOverlay(this.sql, {
            facts: event.run,
            version: event.signedAt - WEBHOOK_SKEW_MS,
            receivedAt: now,
            createdAtGuess: event.signedAt,
            signedAt: event.signedAt,
          })
        : false;
      const state = this.state();
      this.setState({
        lastWebhookAt: now,
        ...(state.headRequestedAt === null ? { headRequestedAt: now } : {}),
      });
      return { duplicate: false, applied };
    });
  }

  /**
   * When the object should next wake up, or null when nothing is due (an idle index, an empty
   * one, or one without settings).
   */
  nextWakeAt(now = this.deps.now()): number | null {
    const state = this.state();
    if (state.phase === "empty" || state.settings === null || !this.inUse(now)) return null;
    const earliest = state.retryAt !== null && state.retryAt > now ? state.retryAt : now;
    if (state.phase === "backfill") return earliest;
    const check = this.nextCheckAt(now);
    if (state.headStartedAt !== null || (check !== null && check <= now)) return earliest;
    if (this.probeTaskIfDue(now)) return earliest;
    // A reconcile whose walks are done waits on its checks alone.
    if (
      state.reconcileStartedAt !== null &&
      (check === null || !this.walks("reconcile").every((w) => w.done))
    ) {
      return earliest;
    }
    const due = [(state.asOf ?? now) + state.settings.syncSeconds * 1000, reconcileDueAt(state, now)];
    if (state.headRequestedAt !== null) due.push(state.headRequestedAt + WEBHOOK_DEBOUNCE_MS);
    if (check !== null) due.push(check);
    return Math.max(earliest, Math.min(...due));
  }

  /** When the next candidate may be checked with GET (now, unless every one failed lately), or null. */
  private nextCheckAt(now: number): number | null {
    let soonest: number | null = null;
    for (const row of this.sql.exec<{ id: string }>(`SELECT id FROM run_candidates`)) {
      const failed = this.failedChecks.get(row.id);
      if (failed === undefined || failed.retryAt <= now) return now;
      soonest = Math.min(soonest ?? failed.retryAt, failed.retryAt);
    }
    return soonest;
  }

  private candidateCount(): number {
    return this.sql.exec<{ n: number }>(`SELECT count(*) AS n FROM run_candidates`).one().n;
  }

  /** One bounded unit of whatever is due: backfill pages, a head walk, GET checks, reconcile pages. */
  tick(limits: RunLimits = DEFAULT_LIMITS): Promise<RunResult> {
    this.reloadState();
    return this.runTasks(() => this.nextTask(), limits);
  }

  /**
   * Runs head walks until one that began at most `maxLagMs` before this call has completed, so
   * every change made before that instant is counted; within the limits. True when it got there.
   * Only for a built index.
   */
  async catchUp(maxLagMs: number, limits: RunLimits = DEFAULT_LIMITS): Promise<boolean> {
    const started = this.deps.now();
    const deadline = started + limits.maxMs;
    const fresh = () => (this.state().asOf ?? Number.NEGATIVE_INFINITY) >= started - maxLagMs;
    let calls = 0;
    while (!fresh()) {
      const left = deadline - this.deps.now();
      if (left <= 0 || calls >= limits.maxCalls) return false;
      const running = this.inFlight.get("head");
      if (running) {
        if ((await settledWithin(running, left)).kind === "late") return false;
        continue;
      }
      const task = this.headTask(true);
      if (!task) return false;
      calls += 1;
      // A page still on its way when the budget ends goes on in the object (committed as ever);
      // the caller gets its answer now rather than after the upstream timeout.
      const page = this.launch(task, new AbortController().signal).catch((error: unknown) => {
        this.recordFailure(error);
        throw error;
      });
      if ((await settledWithin(page, left)).kind !== "done") return false;
    }
    return true;
  }

  private async runTasks(next: () => Task | undefined, limits: RunLimits): Promise<RunResult> {
    const stopAt = this.deps.now() + limits.maxMs;
    const abort = new AbortController();
    const running = new Set<Promise<void>>();
    let calls = 0;
    let failure: unknown;
    let failed = false;
    let returned = false;
    const spent = () => calls >= limits.maxCalls || this.deps.now() >= stopAt;
    for (;;) {
      while (!failed && this.inFlight.size < limits.concurrency && !spent()) {
        const task = next();
        if (!task) break;
        calls += 1;
        const promise: Promise<void> = this.launch(task, abort.signal)
          .catch((error: unknown) => {
            if (returned) {
              // The run is over: its back-off is stored now, and the next run reports the code.
              this.recordLateFailure(error);
            } else if (!failed) {
              failed = true;
              failure = error;
              // A call the budget put off says nothing about the ones it let start: they land,
              // or a budget below the run's concurrency would cut every run off before a page.
              if (!(error instanceof SlotRefused)) abort.abort(error);
            }
          })
          .finally(() => running.delete(promise));
        running.add(promise);
      }
      if (limits.overlap && !failed && spent() && running.size > 0) break;
      if (running.size > 0) {
        await Promise.race(running);
        continue;
      }
      // Calls an earlier run left running: what they bring may give this run work.
      if (failed || this.inFlight.size === 0) break;
      await Promise.race([...this.inFlight.values()].map((p) => p.catch(() => undefined)));
    }
    returned = true;
    const late = this.lateFailure;
    this.lateFailure = undefined;
    if (failed) return { calls, error: this.recordFailure(failure) };
    if (late !== undefined) return { calls, error: late };
    if (calls > 0) this.recordSuccess();
    return { calls };
  }

  private launch(task: Task, signal: AbortSignal): Promise<void> {
    const promise = task.run(signal).finally(() => this.inFlight.delete(task.key));
    this.inFlight.set(task.key, promise);
    return promise;
  }

  private recordLateFailure(error: unknown): void {
    try {
      const code = this.recordFailure(error);
      this.lateFailure ??= code;
    } catch {
      // The index's tables are gone (RUN_INDEX=off dropped them meanwhile): nothing to record.
    }
  }

  private recordFailure(error: unknown): string {
    const now = this.deps.now();
    const state = this.state();
    const count = state.errorCount + 1;
    const code =
      error instanceof ApiError
        ? error.code
        : error instanceof SlotRefused
          ? "UPSTREAM_RATE_LIMITED"
          : "INTERNAL_ERROR";
    // The budget's or Extend's own Retry-After, when there is one; else an exponential back-off.
    const told =
      error instanceof SlotRefused
        ? error.retryAfterMs
        : error instanceof ApiError && error.retryAfter !== undefined
          ? error.retryAfter * 1000
          : undefined;
    const wait = told ?? Math.min(SYNC_RETRY_CAP_MS, RETRY_BASE_MS * 2 ** Math.min(count - 1, 10));
    this.setState({ errorCount: count, errorAt: now, errorCode: code, retryAt: now + wait });
    return code;
  }

  private recordSuccess(): void {
    if (this.state().errorCount > 0) this.setState({ errorCount: 0, errorCode: null, retryAt: null });
  }

  /** The next thing worth an upstream call, freshness first: head walk, GET checks, walk pages. */
  private nextTask(): Task | undefined {
    const state = this.state();
    if (state.phase === "empty" || state.settings === null) return undefined;
    const now = this.deps.now();
    if (state.retryAt !== null && state.retryAt > now) return undefined;
    if (state.phase === "backfill") {
      if (this.walks("backfill").length === 0) return this.planTask();
      const walk = this.nextWalk("backfill");
      if (walk) return walk;
      // Every walk is done or has its page on the way: the head walk that ends the backfill reads
      // beside those last pages, and the last of them to land completes it.
      if (this.headAwaitsWalks) return undefined;
      return this.headTask(true);
    }
    const head = this.headTask(this.headDue(state, now));
    if (head) return head;
    // Right after the backfill (or once a name to ask with turns up): the index answers a file
    // name filter as Extend would from its first answer, with no upstream call then.
    const probe = this.probeTaskIfDue(now);
    if (probe) return probe;
    const check = this.nextCandidate();
    if (check) return check;
    return this.nextReconcile(state, now);
  }

  private headDue(state: SyncState, now: number): boolean {
    if (state.headStartedAt !== null) return true;
    const settings = state.settings;
    if (settings === null) return false;
    if (state.headRequestedAt !== null && now >= state.headRequestedAt + WEBHOOK_DEBOUNCE_MS) return true;
    return state.asOf === null || now >= state.asOf + settings.syncSeconds * 1000;
  }

  /** The head walk's next page, starting a walk if `start` and none is running. */
  private headTask(start: boolean): Task | undefined {
    if (this.inFlight.has("head")) return undefined;
    const state = this.state();
    if (state.headStartedAt === null) {
      if (!start) return undefined;
      const now = this.deps.now();
      const floor = (state.watermark ?? now) - this.lookbackMs();
      this.setState({
        headStartedAt: now,
        headFloor: floor,
        headTop: null,
        headCursor: null,
        headPages: 0,
      });
    }
    return {
      key: "head",
      run: async (signal) => {
        const cursor = this.state().headCursor;
        let page: SyncPage;
        try {
          page = await this.deps.upstream.list(headQuery(cursor), signal);
        } catch (error) {
          if (cursor !== null && isRejectedCursor(error)) {
            // An expired cursor: start the walk again from the newest run (upserts are idempotent).
            this.setState({ headCursor: null, headPages: 0, headTop: null });
            return;
          }
          throw error;
        }
        this.transaction(() => this.applyHeadPage(page));
      },
    };
  }

  private applyHeadPage(page: SyncPage): void {
    const state = this.state();
    const floor = state.headFloor ?? 0;
    let top = state.headTop;
    let lowest = Number.POSITIVE_INFINITY;
    const fresh: RunRow[] = [];
    for (const row of rowsOf(page)) {
      top = top === null ? row.version : Math.max(top, row.version);
      lowest = Math.min(lowest, row.version);
      // Older rows were read by an earlier walk; skipping them keeps an idle sync free of row reads.
      if (row.version >= floor) fresh.push(row);
    }
    upsertListRows(this.sql, fresh);
    const pages = state.headPages + 1;
    // An empty page with a cursor is not the end: Extend promises no page size.
    if (page.nextPageToken !== undefined && lowest >= floor) {
      this.setState({ headCursor: page.nextPageToken, headTop: top, headPages: pages });
      return;
    }
    if (state.phase === "backfill" && !this.backfillSettled()) {
      // Walk pages are still on their way. Should the object restart before they land, the head
      // walk reads again from the newest run (its cursor is cleared), which only re-reads rows.
      this.setState({ headCursor: null, headTop: top, headPages: pages });
      this.headAwaitsWalks = true;
      return;
    }
    this.completeHead(state, top, pages);
  }

  /** Every backfill walk is done and none has a page on the way (but `landing`, being applied). */
  private backfillSettled(landing?: string): boolean {
    if (!this.walks("backfill").every((w) => w.done)) return false;
    for (const key of this.inFlight.keys()) {
      if (key !== landing && key.startsWith("backfill:")) return false;
    }
    return true;
  }

  private completeHead(state: SyncState, top: number | null, pages: number): void {
    const startedAt = state.headStartedAt ?? this.deps.now();
    // A webhook's state that this walk (begun after it arrived) did not replace with a list row
    // is either stale or not yet listed: GET settles it.
    this.sql.exec(
      `INSERT INTO run_candidates (id, reason) SELECT id, 'pending' FROM runs WHERE pending_since < ?
       ON CONFLICT (id) DO NOTHING`,
      startedAt,
    );
    // Extend's clock sets the watermark, but never past this walk's start: one run listed as
    // updated ahead of it (skew, bad data) would lift every later walk's floor above the changes
    // made meanwhile, and asOf would claim them counted. Nor past the newest run this walk read
    // by more than the lookback: the first watermark is the Worker's clock, and should Extend's
    // run behind it, or nothing have changed since, the next walk still reads down to that run,
    // so a change Extend stamps before the Worker's time is not left below every floor.
    const seen = top === null ? state.watermark : Math.max(state.watermark ?? top, top);
    const cap = top === null ? startedAt : Math.min(startedAt, top + this.lookbackMs());
    const patch: Partial<SyncState> = {
      asOf: startedAt,
      watermark: seen === null ? null : Math.min(seen, cap),
      headStartedAt: null,
      headFloor: null,
      headTop: null,
      headCursor: null,
      headPages: 0,
      lastHeadPages: pages,
    };
    if (state.headRequestedAt !== null && state.headRequestedAt <= startedAt) patch.headRequestedAt = null;
    if (state.phase === "backfill") {
      patch.phase = "ready";
      buildFilterIndexes(this.sql);
      // The backfill read every run that existed when it started: deletions are known as of then.
      // Unless it walked the workflows Extend listed and a run of another one has come in since
      // (through this head walk or a webhook): the list was not the whole tenant. Or unless it
      // walked by status and a run changed while it did: a run leaving a status moves every later
      // run of it one place up, and an offset-style cursor (Extend does not say which kind it
      // has) then steps over one that nothing updated, so no head walk brings it. Either way the
      // reconcile, which re-reads every status, runs now rather than after INDEX_RECONCILE_SECONDS.
      // After a whole build it runs RECONCILE_AFTER_BUILD_MS later: a deletion during the walks
      // leaves no trace to tell by.
      const whole = !this.unlistedWorkflowSeen() && !this.changedUnderStatusWalks(state);
      patch.lastReconcileAt = whole
        ? this.deps.now() + RECONCILE_AFTER_BUILD_MS - (state.settings?.reconcileSeconds ?? 0) * 1000
        : null;
    }
    this.setState(patch);
  }

  /** Whether the backfill walked by status and the index holds a run listed as updated since it began. */
  private changedUnderStatusWalks(state: SyncState): boolean {
    const started = state.backfillStartedAt;
    if (started === null || this.walks("backfill").some((w) => w.workflowId !== undefined)) return false;
    return this.sql.exec(`SELECT 1 FROM runs WHERE version >= ? LIMIT 1`, started).toArray().length > 0;
  }

  /** Whether the backfill walked by workflow and the index holds a run of a workflow it did not walk. */
  private unlistedWorkflowSeen(): boolean {
    const walked = this.walks("backfill").flatMap((w) => (w.workflowId === undefined ? [] : [w.workflowId]));
    if (walked.length === 0) return false;
    return (
      this.sql
        .exec(
          `SELECT 1 FROM run_totals WHERE runs > 0 AND workflow_id NOT IN (SELECT value FROM json_each(?)) LIMIT 1`,
          JSON.stringify(walked),
        )
        .toArray().length > 0
    );
  }

  /**
   * The backfill's first task: lists the tenant's workflows and creates the walks, by workflow
   * when there are between MIN_ and MAX_WORKFLOW_PARTITIONS of them, else by status. An Extend
   * that cannot list workflows for this key gets the status walks.
   */
  private planTask(): Task | undefined {
    if (this.inFlight.has("plan")) return undefined;
    return {
      key: "plan",
      run: async (signal) => {
        const ids: string[] = [];
        let token: string | undefined;
        let usable = true;
        do {
          let page: WorkflowPage;
          try {
            page = await this.deps.upstream.listWorkflows(token, signal);
          } catch (error) {
            if (error instanceof ApiError && !error.retryable) {
              usable = false;
              break;
            }
            throw error;
          }
          if ("unsupported" in page) {
            usable = false;
            break;
          }
          ids.push(...page.ids);
          token = page.nextPageToken;
        } while (token !== undefined && ids.length <= MAX_WORKFLOW_PARTITIONS);
        const byWorkflow =
          usable && ids.length >= MIN_WORKFLOW_PARTITIONS && ids.length <= MAX_WORKFLOW_PARTITIONS;
        this.transaction(() => {
          if (this.walks("backfill").length === 0) {
            this.createWalks("backfill", byWorkflow ? [...new Set(ids)].sort() : undefined);
          }
        });
      },
    };
  }

  private nextWalk(purpose: Purpose): Task | undefined {
    const walk = this.walks(purpose).find((w) => !w.done && !this.inFlight.has(w.name));
    if (!walk) return undefined;
    return {
      key: walk.name,
      run: async (signal) => {
        let page: SyncPage;
        try {
          page = await this.deps.upstream.list(walkQuery(walk), signal);
        } catch (error) {
          if (walk.cursor !== null && isRejectedCursor(error)) {
            this.transaction(() => {
              this.sql.exec(`UPDATE run_walks SET cursor = NULL, edge = NULL WHERE name = ?`, walk.name);
              this.sql.exec(`DELETE FROM run_walk_tail WHERE walk = ?`, walk.name);
              const current = this.walk(walk.purpose, walk.name);
              if (current) this.setWalk({ ...current, cursor: null, edge: null });
            });
            return;
          }
          throw error;
        }
        this.transaction(() => this.applyWalkPage(walk.purpose, walk.name, page));
      },
    };
  }

  private createWalks(purpose: Purpose, workflowIds?: readonly string[]): void {
    createWalks(this.sql, purpose, workflowIds);
    this.cachedWalks.delete(purpose);
  }

  private applyWalkPage(purpose: Purpose, name: string, page: SyncPage): void {
    this.advanceWalk(purpose, name, page);
    if (purpose === "backfill" && this.headAwaitsWalks && this.backfillSettled(name)) {
      const state = this.state();
      this.completeHead(state, state.headTop, state.headPages);
      this.headAwaitsWalks = false;
    }
  }

  private advanceWalk(purpose: Purpose, name: string, page: SyncPage): void {
    const walk = this.walk(purpose, name);
    if (!walk) return;
    const rows = rowsOf(page);
    upsertListRows(this.sql, rows);
    // A page that lands after its partition was finished by the other end adds rows, nothing else.
    if (walk.done) return;
    if (walk.purpose === "reconcile" && walk.status !== undefined) {
      // Runs created since the reconcile began may be missing from pages read earlier; they are
      // not candidates (a later reconcile covers them), so deletions are known as of its start.
      diffPage(
        this.sql,
        { ...walk, status: walk.status },
        page,
        this.state().reconcileStartedAt ?? this.deps.now(),
      );
    }
    const last = page.data[page.data.length - 1];
    const edge = last === undefined ? walk.edge : createdAtOf(last);
    const end = page.nextPageToken === undefined;
    const advanced: Walk = {
      ...walk,
      cursor: end ? null : (page.nextPageToken ?? null),
      edge,
      done: end,
      pages: walk.pages + 1,
      runs: walk.runs + rows.length,
    };
    this.sql.exec(
      `UPDATE run_walks SET cursor = ?, edge = ?, done = ?, pages = ?, runs = ? WHERE name = ?`,
      advanced.cursor,
      advanced.edge,
      advanced.done ? 1 : 0,
      advanced.pages,
      advanced.runs,
      name,
    );
    this.setWalk(advanced);
    const partnerName = walkName(walk.purpose, walk, walk.direction === "asc" ? "desc" : "asc");
    const partner = this.walk(purpose, partnerName);
    if (!partner || partner.done) return;
    const asc = walk.direction === "asc" ? edge : partner.edge;
    const desc = walk.direction === "desc" ? edge : partner.edge;
    // One end reached the other end of the list, or the two walks passed each other: every run
    // of the status lies before one walk's edge or after the other's. Equal edges are not enough
    // (the runs at that one instant may continue on both walks' next pages).
    const crossed = asc !== null && desc !== null && asc > desc;
    if (end || crossed) {
      this.sql.exec(`UPDATE run_walks SET done = 1 WHERE name IN (?, ?)`, walk.name, partnerName);
      this.setWalk({ ...advanced, done: true });
      this.setWalk({ ...partner, done: true });
    }
  }

  /** How the index matches `fileNameContains`: as Extend does once it has asked, else ignoring case. */
  fileNameMatch(): FileNameMatch {
    return this.knownFileNameMatch() ?? "folded";
  }

  /**
   * Asks Extend how it matches `fileNameContains` (name-match.ts), unless the index knows, within
   * `maxMs`. Undefined when it could not tell in time; the caller scans then. An index holding no
   * name with an ASCII letter has nothing to ask with: no ASCII letter of a filter can match one
   * of its names either way, and it matches ignoring case.
   */
  async settleFileNameMatch(maxMs: number): Promise<FileNameMatch | undefined> {
    const known = this.knownFileNameMatch();
    if (known) return known;
    let running = this.inFlight.get("probe");
    if (!running) {
      // Looked for afresh (a filter over file names reads every row anyway): a name may have
      // come in since the alarm last found none.
      const sample = nameSample(this.sql);
      if (!sample) return "folded";
      if (this.deps.now() < this.probeRetryAt) return undefined;
      running = this.launch(this.probeTask(sample), new AbortController().signal);
    }
    // A probe still under way when the wait ends goes on in the object; the next answer uses it.
    await settledWithin(running, maxMs);
    return this.knownFileNameMatch();
  }

  /** What the index found out, read from storage once per entry point, as the state is. */
  private knownFileNameMatch(): FileNameMatch | undefined {
    this.fileNameMatchKnown ??= storedFileNameMatch(this.sql);
    return this.fileNameMatchKnown;
  }

  /** A name to probe with (name-match.ts); a search that found none is not repeated for a while. */
  private sampleToAsk(now: number): NameSample | undefined {
    if (this.noSampleAt !== undefined && now - this.noSampleAt < SAMPLE_RECHECK_MS) return undefined;
    const sample = nameSample(this.sql);
    this.noSampleAt = sample ? undefined : now;
    return sample;
  }

  /** The probe, when the index does not know how Extend matches file names and may ask now. */
  private probeTaskIfDue(now: number): Task | undefined {
    if (this.inFlight.has("probe") || now < this.probeRetryAt) return undefined;
    if (this.knownFileNameMatch() !== undefined) return undefined;
    const sample = this.sampleToAsk(now);
    return sample && this.probeTask(sample);
  }

  private probeTask(sample: NameSample): Task {
    return {
      key: "probe",
      run: async (signal) => {
        try {
          const match = await this.askFileNameMatch(sample, signal);
          if (match) {
            storeFileNameMatch(this.sql, match);
            this.fileNameMatchKnown = match;
            return;
          }
        } catch (error) {
          if (signal.aborted) throw error;
          // Not the sync's failure: the head walks and their back-off go on as they were.
        }
        this.probeRetryAt = this.deps.now() + PROBE_RETRY_MS;
      },
    };
  }

  /** What Extend's lists tell of how it matches file names; undefined when they tell nothing. */
  private async askFileNameMatch(
    sample: NameSample,
    signal: AbortSignal,
  ): Promise<FileNameMatch | undefined> {
    const swapped = swapAsciiCase(sample.fragment);
    if (listsOtherCase(await this.deps.upstream.list(probeQuery(sample, swapped), signal), swapped)) {
      return "folded";
    }
    const written = await this.deps.upstream.list(probeQuery(sample, sample.fragment), signal);
    // Nothing listed for a name the index holds (its run is gone): ask again later.
    return listsAsWritten(written, sample.fragment) ? "exact" : undefined;
  }

  private nextCandidate(): Task | undefined {
    const busy = [...this.inFlight.keys()].filter((k) => k.startsWith("get:")).map((k) => k.slice(4));
    const now = this.deps.now();
    const waiting = (id: string) => (this.failedChecks.get(id)?.retryAt ?? 0) > now;
    const rows = this.sql
      .exec<{ id: string }>(
        `SELECT id FROM run_candidates ORDER BY reason, id LIMIT ?`,
        busy.length + this.failedChecks.size + 1,
      )
      .toArray();
    const candidate = rows.find((r) => !busy.includes(r.id) && !waiting(r.id));
    if (!candidate) return undefined;
    const id = candidate.id;
    return {
      key: `get:${id}`,
      run: async (signal) => {
        let lookup: RunLookup;
        try {
          lookup = await this.deps.upstream.getRun(id, signal);
        } catch (error) {
          if (signal.aborted || !(error instanceof ApiError) || TENANT_WIDE_FAILURES.has(error.code)) {
            throw error;
          }
          this.checkFailed(id);
          return;
        }
        this.failedChecks.delete(id);
        this.transaction(() => {
          if ("gone" in lookup) deleteRun(this.sql, id);
          else confirmFromGet(this.sql, factsFromWorkflowRun(lookup.found, id));
          this.sql.exec(`DELETE FROM run_candidates WHERE id = ?`, id);
        });
      },
    };
  }

  /** A GET of one candidate failed: try it again later, or give it up (see CANDIDATE_MAX_FAILURES). */
  private checkFailed(id: string): void {
    const failures = (this.failedChecks.get(id)?.failures ?? 0) + 1;
    if (failures < CANDIDATE_MAX_FAILURES) {
      const wait = CANDIDATE_RETRY_BASE_MS * 2 ** (failures - 1);
      this.failedChecks.set(id, { failures, retryAt: this.deps.now() + wait });
      return;
    }
    this.failedChecks.delete(id);
    this.transaction(() => {
      this.sql.exec(`DELETE FROM run_candidates WHERE id = ?`, id);
      // A webhook's state no list or GET confirmed stays as delivered; no head walk asks again.
      this.sql.exec(`UPDATE runs SET pending_since = NULL WHERE id = ?`, id);
    });
  }

  private nextReconcile(state: SyncState, now: number): Task | undefined {
    const settings = state.settings;
    if (settings === null) return undefined;
    if (state.reconcileStartedAt === null) {
      if (now < reconcileDueAt(state, now)) return undefined;
      this.transaction(() => {
        this.createWalks("reconcile");
        this.setState({ reconcileStartedAt: now });
      });
    }
    const walk = this.nextWalk("reconcile");
    if (walk) return walk;
    const list = this.walks("reconcile");
    if (list.every((w) => w.done) && this.candidateCount() === 0 && this.inFlight.size === 0) {
      this.finishReconcile();
    }
    return undefined;
  }

  private finishReconcile(): void {
    this.transaction(() => {
      const startedAt = this.state().reconcileStartedAt;
      recomputeTotals(this.sql);
      this.sql.exec(
        `DELETE FROM run_walk_tail WHERE walk IN (SELECT name FROM run_walks WHERE purpose = 'reconcile')`,
      );
      this.sql.exec(`DELETE FROM run_walks WHERE purpose = 'reconcile'`);
      this.cachedWalks.delete("reconcile");
      this.setState({ reconcileStartedAt: null, lastReconcileAt: startedAt });
    });
  }
}
