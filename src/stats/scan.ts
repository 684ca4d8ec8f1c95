// The /stats scan: which walks to make over Extend's list, and how to run them within the
// platform's limits. A walk pages through one status partition in createdAt order; without
// since/until each partition is walked from both ends at once and the two walks stop where
// they meet. See README "GET /stats" for the guarantees this gives.
import { ApiError } from "../app/errors.ts";
import type { PageOptions, PageResult, PageSource } from "../cache/pages.ts";
import {
  type CanonicalListQuery,
  listQuery,
  MAX_PAGE_SIZE,
  WORKFLOW_RUN_STATUSES,
  type WorkflowRunStatus,
} from "../extend/schemas.ts";
import { BudgetPaused } from "../gateway/isolate-budget.ts";
import { releaseBytes } from "../lib/bytes.ts";
import { type Clock, systemClock } from "../lib/clock.ts";
import { Semaphore, SemaphoreTimeout } from "../lib/semaphore.ts";
import { addTally, emptyTotals, type Tally, type Totals, UsageSum } from "./aggregate.ts";
import type { StatsFilters } from "./filters.ts";
import { foldPageBytes, type PrunedPage, VALUES_PER_RUN } from "./fold-bytes.ts";

/**
 * After this long a request starts no further page and answers with a resume token, so a slow
 * or throttled upstream never holds a client past common 30-second HTTP timeouts.
 */
export const SCAN_TIME_BUDGET_MS = 20_000;
/**
 * Longest one page waits for its turn in the tenant's budget (a 429 pause, or slots booked by
 * others). Past that the scan stops launching and answers with what it has: a resume token, or
 * a 503 with Retry-After when it read nothing, instead of holding the connection doing nothing.
 */
export const MAX_PAUSE_WAIT_MS = 5_000;
/** Upstream connections one /stats request keeps open at once (the Workers per-request cap). */
export const MAX_CONCURRENT_PAGES = 6;
/**
 * Scan pages in flight in this isolate, whatever the number of scans or requests: at most this
 * many, and at most MAX_SCAN_BYTES_PER_ISOLATE of them. A page is held as its bytes only until it
 * is folded, and then freed, so these bound what scans hold per isolate, not per request.
 */
export const MAX_SCAN_PAGES_PER_ISOLATE = 4;
/**
 * Bytes of scan pages in flight in this isolate: two 1000-run pages of 2–3 MB at once, four small
 * ones. A page is charged the size of the last page this isolate read (pages of one walk are
 * alike), and at least a quarter of this, so the count bound holds too.
 */
export const MAX_SCAN_BYTES_PER_ISOLATE = 6 * 1024 * 1024;
const MIN_PAGE_CHARGE = MAX_SCAN_BYTES_PER_ISOLATE / MAX_SCAN_PAGES_PER_ISOLATE;

const isolatePages = new Semaphore(MAX_SCAN_BYTES_PER_ISOLATE);
/** What the next page is charged: until a page is seen, half the budget (a large page is likely). */
let pageCharge = MAX_SCAN_BYTES_PER_ISOLATE / 2;
/** Retry-After for a request that read nothing because other scans held the isolate's places. */
const ISOLATE_BUSY_RETRY_MS = 1_000;

export type Direction = "asc" | "desc";

/** Runs seen at the walk's current createdAt instant, not yet known to be complete. */
export interface OpenGroup {
  at: number;
  tally: Tally;
  /**
   * Id hashes (fold-bytes) of the group's last runs, at most MAX_CARRIED_IDS: a run the next page
   * lists again at this instant (an offset cursor after a run was created) is not counted twice.
   */
  ids?: number[];
}

/** Id hashes an open group carries to the walk's next page (and into a resume token). */
export const MAX_CARRIED_IDS = 8;

export interface WalkState {
  /** `waiting`: the ascending end opens only once the first descending page shows more runs. */
  phase: "waiting" | "active" | "done";
  cursor?: string;
  open?: OpenGroup;
}

/**
 * One status partition. Each walk claims whole createdAt instants as it leaves them behind:
 * the ascending walk everything up to `ascClaimed`, the descending walk everything from
 * `descClaimed` up. An instant is claimed once, by whichever walk completes it first, so the
 * meeting point is counted exactly once whatever order Extend uses among equal createdAt values.
 */
export interface PartitionState {
  status: WorkflowRunStatus;
  ascClaimed: number | null;
  descClaimed: number | null;
  asc?: WalkState;
  desc?: WalkState;
  done: boolean;
}

/** Everything a scan needs to continue; what a resume token carries. */
export interface ScanState {
  partitions: PartitionState[];
  totals: Totals;
  pagesFetched: number;
  /** When the scan began (ms since epoch): resume tokens expire an hour after it. */
  startedAt: number;
  /** When the oldest page it counted was read from Extend (a cached page may be older than the scan). */
  oldestPageAt: number;
}

/** A page reduced to what the fold needs (see fold-bytes.ts), so its bytes need not be kept. */
export type FoldPage = PrunedPage;

export interface ScanDeps {
  pages: PageSource;
  /** Who the scan is for: its pages share the tenant's budget fairly with that caller's other calls. */
  caller?: string;
  /** Pages this request may read (STATS_MAX_PAGES). */
  maxPages: number;
  concurrency?: number;
  timeBudgetMs?: number;
  clock?: Clock;
  /** Wraps the per-page upstream options (the request's telemetry). */
  listOptions?: (options: PageOptions) => PageOptions;
  /** Pages stored longer ago than this are read again (`maxLagSeconds`). */
  maxPageAgeSeconds?: number;
}

export interface ScanProgress {
  state: ScanState;
  complete: boolean;
  /** Pages read by this request alone. */
  pagesThisRequest: number;
}

/**
 * Reads a page's bytes down to what the fold needs, without a string or the page's object tree
 * (see fold-bytes.ts): what a page costs in memory is its bytes and one small record per run.
 */
export function foldPage(body: Uint8Array): FoldPage {
  const page = foldPageBytes(body);
  if (!page) throw new ApiError("UPSTREAM_INVALID_RESPONSE", "A page could not be read as a list of runs.");
  return page;
}

/**
 * The page's fold, or why the scan cannot count it: a page the tenant object just checked comes
 * with its fold; one from KV is read here. A run without a valid createdAt has no place in a walk.
 */
function countable(result: PageResult): FoldPage | ApiError {
  const pruned = result.page.pruned;
  let page: FoldPage;
  try {
    page = pruned ?? foldPage(result.page.body);
  } catch (error) {
    if (error instanceof ApiError) return error;
    throw error;
  }
  for (let i = 0; i < page.runs * VALUES_PER_RUN; i += VALUES_PER_RUN) {
    if (Number.isNaN(page.values[i])) {
      if (!pruned) releaseBytes(page.values);
      return invalidCreatedAt();
    }
  }
  return page;
}

function instant(iso: string | undefined): number | undefined {
  return iso === undefined ? undefined : Date.parse(iso);
}

/** The walks a fresh scan starts with. */
export function planScan(filters: StatsFilters, startedAt = systemClock.now()): ScanState {
  const statuses = filters.status ? [filters.status] : [...WORKFLOW_RUN_STATUSES];
  const partitions = statuses.map((status): PartitionState => {
    const base = { status, ascClaimed: null, descClaimed: null, done: false };
    // `since` bounds the newest end: walk down from it and stop at the first older run.
    if (filters.since !== undefined) return { ...base, desc: { phase: "active" } };
    if (filters.until !== undefined) return { ...base, asc: { phase: "active" } };
    return { ...base, desc: { phase: "active" }, asc: { phase: "waiting" } };
  });
  return { partitions, totals: emptyTotals(), pagesFetched: 0, startedAt, oldestPageAt: startedAt };
}

export function isComplete(state: ScanState): boolean {
  return state.partitions.every((p) => p.done);
}

function invalidCreatedAt(): ApiError {
  return new ApiError("UPSTREAM_INVALID_RESPONSE", "Extend returned a run without a valid createdAt.");
}

function checkedCreatedAt(at: number): number {
  if (Number.isNaN(at)) throw invalidCreatedAt();
  return at;
}

function walkOf(partition: PartitionState, direction: Direction): WalkState {
  const walk = partition[direction];
  if (!walk) throw new Error(`partition ${partition.status} has no ${direction} walk`);
  return walk;
}

/** Closes the walk's open group: counted if the other walk has not claimed that instant. */
function closeGroup(partition: PartitionState, direction: Direction, totals: Totals): void {
  const walk = walkOf(partition, direction);
  const open = walk.open;
  if (!open) return;
  walk.open = undefined;
  if (direction === "desc") {
    if (partition.ascClaimed !== null && open.at <= partition.ascClaimed) return;
    partition.descClaimed = open.at;
  } else {
    if (partition.descClaimed !== null && open.at >= partition.descClaimed) return;
    partition.ascClaimed = open.at;
  }
  addTally(totals, partition.status, open.tally);
}

/**
 * Ends the partition. Either the walk saw the end of the list or its bound, or it reached an
 * instant the other walk claimed; in every case the two walks' claims now cover all of it.
 */
function finish(partition: PartitionState, direction: Direction, totals: Totals): void {
  closeGroup(partition, direction, totals);
  walkOf(partition, direction).phase = "done";
  partition.done = true;
}

type Step = "count" | "skip" | "stop";

/**
 * What a walk does with a run at `at`, given its bounds, the instant of its open group (NaN when
 * none), and where the other walk has got to.
 */
function stepFor(
  partition: PartitionState,
  direction: Direction,
  at: number,
  openAt: number,
  bounds: { since: number | undefined; until: number | undefined },
): Step {
  if (direction === "desc") {
    if (bounds.until !== undefined && at > bounds.until) return "skip";
    if (bounds.since !== undefined && at < bounds.since) return "stop";
    if (partition.ascClaimed !== null && at <= partition.ascClaimed) return "stop";
    // An instant already left behind: a run created after the walk passed it, or a repeat.
    return at > openAt ? "skip" : "count";
  }
  if (bounds.since !== undefined && at < bounds.since) return "skip";
  if (bounds.until !== undefined && at > bounds.until) return "stop";
  if (partition.descClaimed !== null && at >= partition.descClaimed) return "stop";
  return at < openAt ? "skip" : "count";
}

/**
 * One page's fold in progress: the groups it closed and counted, and the group still open. One
 * object serves every page (folds are synchronous), its numbers kept in its fields, so nothing is
 * allocated per run.
 */
class PageFold {
  readonly counted = new UsageSum();
  readonly group = new UsageSum();
  /** The open group's instant, NaN when there is none. */
  openAt = Number.NaN;
  /** The group carried in from the walk's previous page, counted with the runs added to it here. */
  carried: Tally | undefined;
  /** Id hashes of the open group's runs, in page order. */
  readonly ids = new Set<number>();

  begin(open: OpenGroup | undefined): void {
    this.counted.reset();
    this.group.reset();
    this.ids.clear();
    this.openAt = open ? open.at : Number.NaN;
    this.carried = open?.tally;
    for (const id of open?.ids ?? []) this.ids.add(id);
  }

  /** Adds a run to the open group; false when the group has it already (Extend listed it twice). */
  join(credits: number, totalCredits: number, id: number): boolean {
    if (!Number.isNaN(id)) {
      if (this.ids.has(id)) return false;
      this.ids.add(id);
    }
    this.group.add(credits, totalCredits);
    return true;
  }

  /** Closes the open group: counted if the other walk has not claimed its instant. */
  closeOpen(partition: PartitionState, direction: Direction, totals: Totals): void {
    const at = this.openAt;
    if (Number.isNaN(at)) return;
    const claimed =
      direction === "desc"
        ? partition.ascClaimed !== null && at <= partition.ascClaimed
        : partition.descClaimed !== null && at >= partition.descClaimed;
    if (!claimed) {
      if (direction === "desc") partition.descClaimed = at;
      else partition.ascClaimed = at;
      this.counted.merge(this.group);
      if (this.carried) addTally(totals, partition.status, this.carried);
    }
    this.carried = undefined;
    this.group.reset();
    this.ids.clear();
  }

  /** Writes what the page counted into the totals, and its open group back into the walk. */
  settle(partition: PartitionState, walk: WalkState, totals: Totals): void {
    addTally(totals, partition.status, this.counted.tally());
    if (!Number.isNaN(this.openAt)) {
      const ids = [...this.ids].slice(-MAX_CARRIED_IDS);
      walk.open = { at: this.openAt, tally: this.group.tally(this.carried), ...(ids.length ? { ids } : {}) };
    }
    this.carried = undefined;
  }
}

const pageFold = new PageFold();

/**
 * Folds one page of a walk into the scan. Memory: the page itself and one tally per walk. The
 * page's runs are summed in place (see UsageSum); the totals and the walk's open group are
 * written once, at the page's end or where the walk stops, exactly as a run at a time would.
 */
export function applyPage(
  filters: StatsFilters,
  partition: PartitionState,
  direction: Direction,
  page: FoldPage,
  totals: Totals,
): void {
  if (partition.done) return;
  const walk = walkOf(partition, direction);
  const bounds = { since: instant(filters.since), until: instant(filters.until) };
  const fold = pageFold;
  fold.begin(walk.open);
  walk.open = undefined;
  const values = page.values;
  for (let i = 0; i < page.runs * VALUES_PER_RUN; i += VALUES_PER_RUN) {
    const at = checkedCreatedAt(values[i] as number);
    const step = stepFor(partition, direction, at, fold.openAt, bounds);
    if (step === "skip") continue;
    if (step === "stop") {
      fold.settle(partition, walk, totals);
      finish(partition, direction, totals);
      return;
    }
    if (fold.openAt !== at) {
      fold.closeOpen(partition, direction, totals);
      fold.openAt = at;
    }
    fold.join(values[i + 1] as number, values[i + 2] as number, values[i + 3] as number);
  }
  fold.settle(partition, walk, totals);
  // The end of the list is the absence of a cursor, never a short page.
  if (page.nextPageToken === undefined) {
    finish(partition, direction, totals);
    return;
  }
  if (page.nextPageToken === walk.cursor) {
    throw new ApiError("UPSTREAM_INVALID_RESPONSE", "Extend's nextPageToken did not advance.");
  }
  walk.cursor = page.nextPageToken;
  if (direction === "desc" && partition.asc?.phase === "waiting") partition.asc.phase = "active";
}

export function walkQuery(
  filters: StatsFilters,
  partition: PartitionState,
  direction: Direction,
): CanonicalListQuery {
  const cursor = walkOf(partition, direction).cursor;
  return listQuery(
    { ...filters, status: partition.status },
    {
      sortBy: "createdAt",
      sortDir: direction,
      maxPageSize: MAX_PAGE_SIZE,
      ...(cursor ? { nextPageToken: cursor } : {}),
    },
  );
}

interface Runnable {
  partition: PartitionState;
  direction: Direction;
  key: string;
}

/**
 * Advances the scan by at most `maxPages` pages, at most `concurrency` at a time, each behind
 * the shared rate budget. Resolves once nothing more may start and every started page is
 * folded in; rejects with the first page's error (after the client's own retries), aborting the
 * others. When the shared budget is paused by Extend's 429s for longer than this request may
 * wait, it stops launching: the pages read so far are the progress, and with none a 503
 * UPSTREAM_RATE_LIMITED tells the caller when to come back.
 */
export async function advanceScan(
  filters: StatsFilters,
  state: ScanState,
  deps: ScanDeps,
): Promise<ScanProgress> {
  const clock = deps.clock ?? systemClock;
  const concurrency = deps.concurrency ?? MAX_CONCURRENT_PAGES;
  const stopLaunchingAt = clock.now() + (deps.timeBudgetMs ?? SCAN_TIME_BUDGET_MS);
  const abort = new AbortController();
  const busy = new Set<string>();
  const lastLaunch = new Map<string, number>();
  const inflight = new Set<Promise<void>>();
  let launched = 0;
  // Counts pages read and folded in, so a page refused by the budget simply never counts.
  const fetchedBefore = state.pagesFetched;
  let failure: { error: unknown } | undefined;
  let paused: BudgetPaused | undefined;

  const runnable = (): Runnable | undefined => {
    let best: (Runnable & { last: number }) | undefined;
    state.partitions.forEach((partition, index) => {
      if (partition.done) return;
      for (const direction of ["desc", "asc"] as const) {
        const key = `${index}:${direction}`;
        if (partition[direction]?.phase !== "active" || busy.has(key)) continue;
        // Least recently served first, so both ends of every partition advance evenly.
        const last = lastLaunch.get(key) ?? -1;
        if (!best || last < best.last) best = { partition, direction, key, last };
      }
    });
    return best;
  };

  // A 429 pause longer than this request may still wait for ends it instead (BudgetPaused).
  const mayWait = () => Math.min(MAX_PAUSE_WAIT_MS, Math.max(0, stopLaunchingAt - clock.now()));

  /** Reads a page and folds it in with `fold`, then lets it go: its bytes and its numbers. */
  const fetchPage = async (query: CanonicalListQuery, fold: (page: FoldPage) => void): Promise<void> => {
    const own: PageOptions = {
      // Totals are as fresh as their pages: a stale page is read again, not counted.
      acceptStale: false,
      ...(deps.maxPageAgeSeconds !== undefined ? { maxAgeSeconds: deps.maxPageAgeSeconds } : {}),
      signal: abort.signal,
      // Bulk work: the tenant's budget serves interactive list misses first, and this page's wait
      // counts toward the scan's own time budget.
      priority: "bulk",
      maxWaitMs: mayWait(),
      ...(deps.caller ? { caller: deps.caller } : {}),
    };
    const options = deps.listOptions ? deps.listOptions(own) : own;
    // Room held by another request's scan may not come free before this one stops launching.
    await isolatePages.run(
      async () => {
        let result = await deps.pages.get(query, options);
        pageCharge = Math.max(MIN_PAGE_CHARGE, result.page.body.byteLength);
        let page = countable(result);
        if (page instanceof ApiError && result.cache === "HIT") {
          // The list route stores pages as Extend sent them: one stored while Extend misbehaved
          // would fail every scan until it expired, though Extend may answer well by now.
          result.release();
          result = await deps.pages.get(query, { ...options, maxAgeSeconds: 0 });
          page = countable(result);
        }
        try {
          if (page instanceof ApiError) throw page;
          const readAt = clock.now() - (result.ageSeconds ?? 0) * 1000;
          state.oldestPageAt = Math.min(state.oldestPageAt, readAt);
          try {
            fold(page);
          } finally {
            // A fold made here is this request's alone; one that came with the page goes with it.
            if (!result.page.pruned) releaseBytes(page.values);
          }
        } finally {
          result.release();
        }
      },
      Math.max(0, stopLaunchingAt - clock.now()),
      pageCharge,
    );
  };

  const run = async (next: Runnable): Promise<void> => {
    try {
      await fetchPage(walkQuery(filters, next.partition, next.direction), (page) => {
        if (failure) return;
        applyPage(filters, next.partition, next.direction, page, state.totals);
        state.pagesFetched += 1;
      });
    } catch (error) {
      if (error instanceof BudgetPaused) {
        // Refused before its first attempt or a retry: not read, so the walk stays where it was.
        paused ??= error;
      } else if (error instanceof SemaphoreTimeout) {
        // The isolate's other scans held every place until this request's time ran out.
        paused ??= new BudgetPaused(
          ISOLATE_BUSY_RETRY_MS,
          "The proxy is busy with other statistics scans; retry later.",
        );
      } else if (!failure) {
        failure = { error };
        abort.abort(error);
      }
    } finally {
      busy.delete(next.key);
    }
  };

  for (;;) {
    while (!failure && !paused && inflight.size < concurrency && launched < deps.maxPages) {
      if (clock.now() >= stopLaunchingAt) break;
      const next = runnable();
      if (!next) break;
      busy.add(next.key);
      lastLaunch.set(next.key, launched);
      launched += 1;
      const task: Promise<void> = run(next).finally(() => inflight.delete(task));
      inflight.add(task);
    }
    if (inflight.size === 0) break;
    await Promise.race(inflight);
  }
  if (failure) throw failure.error;
  const pagesThisRequest = state.pagesFetched - fetchedBefore;
  if (paused && pagesThisRequest === 0) throw paused;
  return { state, complete: isComplete(state), pagesThisRequest };
}
