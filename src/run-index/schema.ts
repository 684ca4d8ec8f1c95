// The run index's tables in the tenant object's SQLite database. Every statement is idempotent
// (`IF NOT EXISTS`), so the constructor runs them on every start; a change of layout bumps
// SCHEMA_VERSION, and an index built under another version is dropped and rebuilt (it is a cache
// of Extend, never the only copy of anything).

/** Bumped whenever a table, column, index or trigger below changes meaning. */
export const SCHEMA_VERSION = 3;

/** Every table the index owns, for `dropIndex` (the gateway's tables are not among them). */
export const INDEX_TABLES = [
  "run_meta",
  "runs",
  "run_totals",
  "run_sync",
  "run_walks",
  "run_walk_tail",
  "run_candidates",
  "run_events",
] as const;

/**
 * Triggers that kept `run_totals` before the writes in store.ts did it themselves (one delta
 * per page rather than a totals write per run). The totals they kept are exact, so an index
 * built with them stays: only the triggers go, or every write would be counted twice.
 */
const RETIRED_TRIGGERS = ["runs_totals_insert", "runs_totals_delete", "runs_totals_update"] as const;

/**
 * One row per run, holding only what /stats filters and sums:
 * - times as epoch milliseconds (INTEGER), never ISO text;
 * - credits as exact integers split at the sixth decimal: value = hi / 10^6 + lo / 10^12 with
 *   0 <= lo < 10^6, so sums of millions of rows stay exact to twelve decimals and fit 64 bits;
 * - file names lowercased and joined by "\n" (a character a filter can never contain), then, when
 *   that changed any, "\u0001" and the names as they are (row.ts, storedFileNames): searched with
 *   instr(), which has none of LIKE's wildcards or its 50-byte pattern limit, ignoring case or
 *   not as Extend does (`file_name_match` in run_meta, found out by asking it: sync.ts);
 * - `version` guards every write: a row only moves forward (list rows carry `updatedAt`, webhook
 *   rows a conservative stamp); `pending_since` marks state taken from a webhook that a list
 *   walk has not confirmed yet; `facts_known = 0` marks a run known only from a webhook, whose
 *   createdAt (and maybe workflow, batch and files) are guesses until the list shows it.
 */
const TABLES = [
  `CREATE TABLE IF NOT EXISTS run_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID`,
  `CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    workflow_id TEXT NOT NULL,
    batch_id TEXT,
    file_names TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    version INTEGER NOT NULL,
    credits_hi INTEGER NOT NULL,
    credits_lo INTEGER NOT NULL,
    total_hi INTEGER NOT NULL,
    total_lo INTEGER NOT NULL,
    usage_null INTEGER NOT NULL,
    facts_known INTEGER NOT NULL,
    pending_since INTEGER
  ) WITHOUT ROWID`,
  `CREATE INDEX IF NOT EXISTS runs_pending ON runs (pending_since) WHERE pending_since IS NOT NULL`,
  `CREATE INDEX IF NOT EXISTS runs_guessed ON runs (id) WHERE facts_known = 0`,
  // Per (workflow, status): what unfiltered and per-workflow /stats read instead of the rows,
  // moved by every write of store.ts in the same statement group, rebuilt by the reconcile.
  `CREATE TABLE IF NOT EXISTS run_totals (
    workflow_id TEXT NOT NULL,
    status TEXT NOT NULL,
    runs INTEGER NOT NULL,
    credits_hi INTEGER NOT NULL,
    credits_lo INTEGER NOT NULL,
    total_hi INTEGER NOT NULL,
    total_lo INTEGER NOT NULL,
    usage_null INTEGER NOT NULL,
    PRIMARY KEY (workflow_id, status)
  ) WITHOUT ROWID`,
  // The sync state machine: one row (see sync.ts for what each column means).
  `CREATE TABLE IF NOT EXISTS run_sync (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    phase TEXT NOT NULL,
    settings TEXT,
    backfill_started_at INTEGER,
    watermark INTEGER,
    as_of INTEGER,
    head_started_at INTEGER,
    head_floor INTEGER,
    head_top INTEGER,
    head_cursor TEXT,
    head_pages INTEGER NOT NULL DEFAULT 0,
    last_head_pages INTEGER NOT NULL DEFAULT 0,
    head_requested_at INTEGER,
    reconcile_started_at INTEGER,
    last_reconcile_at INTEGER,
    last_used_at INTEGER,
    last_webhook_at INTEGER,
    error_count INTEGER NOT NULL DEFAULT 0,
    error_at INTEGER,
    error_code TEXT,
    retry_at INTEGER
  )`,
  // One cursor per (purpose, partition, direction); a partition is a status or a workflow.
  `CREATE TABLE IF NOT EXISTS run_walks (
    name TEXT PRIMARY KEY,
    purpose TEXT NOT NULL,
    status TEXT,
    workflow_id TEXT,
    direction TEXT NOT NULL,
    cursor TEXT,
    edge INTEGER,
    done INTEGER NOT NULL DEFAULT 0,
    pages INTEGER NOT NULL DEFAULT 0,
    runs INTEGER NOT NULL DEFAULT 0
  ) WITHOUT ROWID`,
  // Runs a reconcile walk saw at its current edge instant, which the next page may continue.
  `CREATE TABLE IF NOT EXISTS run_walk_tail (walk TEXT NOT NULL, id TEXT NOT NULL, PRIMARY KEY (walk, id)) WITHOUT ROWID`,
  // Runs to look up one by one with GET /workflow_runs/{id}: 404 deletes, anything else confirms.
  `CREATE TABLE IF NOT EXISTS run_candidates (id TEXT PRIMARY KEY, reason TEXT NOT NULL) WITHOUT ROWID`,
  // Webhook event ids already applied (Extend may deliver one event more than once).
  `CREATE TABLE IF NOT EXISTS run_events (event_id TEXT PRIMARY KEY, at INTEGER NOT NULL) WITHOUT ROWID`,
  `CREATE INDEX IF NOT EXISTS run_events_by_at ON run_events (at)`,
];

/**
 * The indexes /stats filters and the reconcile read the rows through. They are built once the
 * backfill has written every row, in the transaction that makes the index ready: kept up to
 * date page by page they were about a quarter of its write time, and nothing reads the rows
 * by them before the index answers (while it builds, /stats scans Extend). The indexes the
 * sync itself needs meanwhile (pending and guessed runs) are in TABLES; both stay small then.
 */
const FILTER_INDEXES = [
  `CREATE INDEX IF NOT EXISTS runs_by_created ON runs (created_at)`,
  `CREATE INDEX IF NOT EXISTS runs_by_workflow_created ON runs (workflow_id, created_at)`,
  `CREATE INDEX IF NOT EXISTS runs_by_batch ON runs (batch_id, created_at) WHERE batch_id IS NOT NULL`,
];

/** Builds the filter indexes (a no-op where they exist). */
export function buildFilterIndexes(sql: SqlStorage): void {
  for (const statement of FILTER_INDEXES) sql.exec(statement);
}

/** Drops every table of the index (its rows, cursors and state). */
export function dropIndex(sql: SqlStorage): void {
  for (const table of INDEX_TABLES) sql.exec(`DROP TABLE IF EXISTS ${table}`);
}

function storedVersion(sql: SqlStorage): number | undefined {
  const exists = sql
    .exec<{ n: number }>(`SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'run_meta'`)
    .one().n;
  if (exists === 0) return undefined;
  const row = sql
    .exec<{ value: string }>(`SELECT value FROM run_meta WHERE key = 'schema_version'`)
    .toArray()[0];
  return row ? Number(row.value) : undefined;
}

/**
 * Creates the index's tables if they are missing. An index written under another schema
 * version is dropped first: the next use rebuilds it from Extend.
 */
export function migrate(sql: SqlStorage): void {
  const version = storedVersion(sql);
  if (version !== undefined && version !== SCHEMA_VERSION) dropIndex(sql);
  for (const trigger of RETIRED_TRIGGERS) sql.exec(`DROP TRIGGER IF EXISTS ${trigger}`);
  for (const statement of TABLES) sql.exec(statement);
  sql.exec(
    `INSERT INTO run_meta (key, value) VALUES ('schema_version', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value WHERE value <> excluded.value`,
    String(SCHEMA_VERSION),
  );
  sql.exec(`INSERT INTO run_sync (id, phase) VALUES (1, 'empty') ON CONFLICT (id) DO NOTHING`);
  // An index that answers has them; one built before they were deferred has them already.
  const ready =
    sql.exec<{ phase: string }>(`SELECT phase FROM run_sync WHERE id = 1`).one().phase === "ready";
  if (ready) buildFilterIndexes(sql);
}

/** Whether the index's tables exist (false after `dropIndex`, or with RUN_INDEX=off from the start). */
export function hasIndex(sql: SqlStorage): boolean {
  return (
    sql
      .exec<{ n: number }>(
        `SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'run_sync'`,
      )
      .one().n > 0
  );
}
