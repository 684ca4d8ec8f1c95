// The gateway as it runs inside the tenant's Durable Object: every upstream call of the proxy
// for this tenant, from any isolate or location, starts here. It owns the tenant's one budget
// (Scheduler) and its in-flight loads, and makes the upstream call itself, so concurrent
// identical loads share one call wherever they came from.
import { ApiError, describeError, type ErrorCode } from "../app/errors.ts";
import {
  type AttemptReport,
  createExtendUpstream,
  pageFromBytes,
  type UpstreamConfig,
  type UpstreamPage,
  type WorkflowRunsUpstream,
} from "../extend/client.ts";
import { type CanonicalListQuery, toSearchParams } from "../extend/schemas.ts";
import { releaseBytes } from "../lib/bytes.ts";
import type { Clock } from "../lib/clock.ts";
import { foldPageBytes, type PrunedPage } from "../stats/fold-bytes.ts";
import { type Priority, Scheduler, type Slot, SlotRefused, type Ticket } from "./scheduler.ts";

/** Below this much time left, a call would only time out: it is not started. */
export const MIN_ATTEMPT_MS = 250;

/** What the Worker tells the object about the upstream (structured-clone safe: no URL objects). */
export interface GatewaySettings {
  baseUrl: string;
  apiVersion: string;
  workspaceId: string | undefined;
  apiKey: string;
  timeoutMs: number;
  deadlineMs: number;
  maxRps: number;
}

export interface GatewayListRequest {
  settings: GatewaySettings;
  query: CanonicalListQuery;
  priority: Priority;
  caller: string;
  /** Longest this request waits for the call to start. */
  maxWaitMs: number;
  /** Time left for this request's call, waiting included. */
  deadlineMs: number;
}

export type GatewayOutcome =
  | {
      ok: true;
      /**
       * The page's bytes, streamed (never a string): the object writes its one copy into each
       * participant's stream and frees it once every participant's stream has taken it, which a
       * returned buffer would not tell it.
       */
      body: ReadableStream<Uint8Array>;
      /** The body's length in bytes. */
      length: number;
      /** What the /stats fold reads of the page, from the object's own check: the Worker need not read it again. */
      pruned: PrunedPage;
      shared: boolean;
      attempts: AttemptReport[];
    }
  | {
      ok: false;
      code: ErrorCode;
      message: string;
      retryAfter?: number;
      /** Set when the tenant's budget, not Extend, refused the call (it never left). */
      refused?: "paused" | "busy";
      /** What lay under the error, for the request's log line (class and bounded message). */
      cause?: string;
      shared: boolean;
      attempts: AttemptReport[];
    };

type LoadResult =
  | { ok: true; body: Uint8Array<ArrayBuffer>; pruned: PrunedPage }
  | {
      ok: false;
      code: ErrorCode;
      message: string;
      retryAfter?: number;
      refused?: "paused" | "busy";
      cause?: string;
    };

interface Load {
  ticket: Ticket;
  started: boolean;
  whenStarted: Promise<void>;
  result: Promise<LoadResult>;
  attempts: AttemptReport[];
  /** Whether a participant already took the body to store it; the others get `shared: true`. */
  claimed: boolean;
  /** Participants not yet done with the load (delivered, refused or failed). */
  holders: number;
  /** The outcome, once the upstream call settled. */
  settled?: LoadResult;
  /** Whether the load has left the map of loads in flight: no one can join it any more. */
  closed: boolean;
  /** The start granted for the load's next attempt, until that attempt's request is sent. */
  granted: Slot | undefined;
}

type LoadFailure = Extract<LoadResult, { ok: false }>;

function refusal(error: SlotRefused): LoadFailure {
  return {
    ok: false,
    code: "UPSTREAM_RATE_LIMITED",
    message:
      error.reason === "paused"
        ? "Extend's rate limit for this organisation is exhausted; the proxy is backing off, retry later."
        : "The proxy's upstream budget for this organisation is fully booked; retry later.",
    retryAfter: Math.max(1, Math.ceil(error.retryAfterMs / 1000)),
    refused: error.reason,
  };
}

function failure(error: unknown): LoadFailure {
  if (error instanceof SlotRefused) return refusal(error);
  if (error instanceof ApiError) {
    return {
      ok: false,
      code: error.code,
      message: error.message,
      ...(error.retryAfter !== undefined ? { retryAfter: error.retryAfter } : {}),
      ...(error.cause !== undefined ? { cause: describeError(error.cause) } : {}),
    };
  }
  return {
    ok: false,
    code: "UPSTREAM_ERROR",
    message: "The upstream call failed.",
    cause: describeError(error),
  };
}

/** The Extend client's settings from what travelled with the call (the gateway's and the sync's). */
export function upstreamConfig(settings: GatewaySettings): UpstreamConfig {
  return {
    extendApiKey: settings.apiKey,
    extendApiBaseUrl: new URL(settings.baseUrl),
    extendApiVersion: settings.apiVersion,
    extendWorkspaceId: settings.workspaceId,
    upstreamTimeoutMs: settings.timeoutMs,
    upstreamDeadlineMs: settings.deadlineMs,
  };
}

/**
 * The object passes a page's bytes on and never parses its runs: it checks that the bytes are a
 * list as decoding and JSON.parse would, without a string or an object tree (several times the
 * page's size, once per call in flight for the whole tenant), and keeps what the fold reads.
 */
function checkedListPage(body: Uint8Array<ArrayBuffer>): UpstreamPage | undefined {
  const pruned = foldPageBytes(body);
  return pruned ? pageFromBytes(body, { pruned }) : undefined;
}

/**
 * Sends a request under a tracked start and tells the start when the call left and when it was
 * answered (or failed to be sent). Extend counts arrivals, and a request leaves only once this
 * isolate gets back to its event loop: the first timer turn after fetch() is when the isolate
 * could see it gone. An isolate busy with other work (locally the object shares it with the
 * Worker) runs that turn late, and then only the answer bounds when Extend saw the call.
 */
export function sendTracked(slot: Slot, clock: Clock, send: () => Promise<Response>): Promise<Response> {
  const ended = () => slot.ended(clock.now());
  let response: Promise<Response>;
  try {
    response = send();
  } catch (error) {
    ended();
    throw error;
  }
  void clock.sleep(0).then(() => slot.left(clock.now()));
  response.then(ended, ended);
  return response;
}

export interface TenantGatewayDeps {
  clock: Clock;
  fetch?: typeof fetch;
}

/** One per tenant object. In memory only: a reset object loses its window, which only costs a burst. */
export class TenantGateway {
  readonly scheduler: Scheduler;
  private readonly clock: Clock;
  private readonly fetchImpl: typeof fetch | undefined;
  private readonly loads = new Map<string, Load>();

  constructor(deps: TenantGatewayDeps) {
    this.clock = deps.clock;
    this.fetchImpl = deps.fetch;
    this.scheduler = new Scheduler(8, deps.clock);
  }

  /** Loads in flight (for tests and the health of the object). */
  get inFlight(): number {
    return this.loads.size;
  }

  async list(request: GatewayListRequest): Promise<GatewayOutcome> {
    this.scheduler.configure(request.settings.maxRps);
    const key = toSearchParams(request.query).toString();
    // The wait counts toward the deadline, leaving the call some time of its own.
    const leftForCall = Math.min(MIN_ATTEMPT_MS, request.deadlineMs / 2);
    const maxWaitMs = Math.max(0, Math.min(request.maxWaitMs, request.deadlineMs - leftForCall));
    const running = this.loads.get(key);
    if (running) {
      running.ticket.promote(request.priority, maxWaitMs);
      running.holders += 1;
      return this.participate(running, request, maxWaitMs, false);
    }
    // Refused up front, the request leaves nothing queued behind it: no call starts for nobody.
    const refused = this.scheduler.check(request.priority, request.caller, maxWaitMs);
    if (refused) return { ...refusal(refused), shared: false, attempts: [] };
    const load = this.start(key, request, maxWaitMs);
    load.holders += 1;
    return this.participate(load, request, maxWaitMs, true);
  }

  /** One participant is done with the load; the last one, once no one can join, frees the page. */
  private letGo(load: Load): void {
    load.holders -= 1;
    this.freeIfDone(load);
  }

  private freeIfDone(load: Load): void {
    if (load.holders > 0 || !load.closed || !load.settled?.ok) return;
    // Every participant's outcome went out (its fold copied with it) and its stream took the body.
    releaseBytes(load.settled.body);
    releaseBytes(load.settled.pruned.values);
  }

  /** The participant's own stream of the page's bytes; the page is let go once it has taken them. */
  private deliver(load: Load, body: Uint8Array<ArrayBuffer>): ReadableStream<Uint8Array> {
    const { readable, writable } = new FixedLengthStream(body.byteLength);
    const writer = writable.getWriter();
    writer
      .write(body)
      .then(() => writer.close())
      .catch(() => writer.abort().catch(() => undefined))
      .finally(() => this.letGo(load));
    return readable;
  }

  /** The load's own client: each request it sends is the one its latest granted start was for. */
  private upstream(settings: GatewaySettings, load: Load): WorkflowRunsUpstream {
    return createExtendUpstream(upstreamConfig(settings), {
      clock: this.clock,
      parseList: checkedListPage,
      fetch: (input, init) => this.send(load, input, init),
    });
  }

  /** Sends an attempt's request under the start granted for it (see `sendTracked`). */
  private send(load: Load, input: RequestInfo | URL, init?: RequestInit): Promise<Response> {
    const slot = load.granted;
    load.granted = undefined;
    const fetchImpl =
      this.fetchImpl ?? ((request: RequestInfo | URL, options?: RequestInit) => fetch(request, options));
    return slot ? sendTracked(slot, this.clock, () => fetchImpl(input, init)) : fetchImpl(input, init);
  }

  /** A start granted for an attempt that was never sent (deadline, abort): its slot is let go. */
  private release(load: Load): void {
    load.granted?.ended(this.clock.now());
    load.granted = undefined;
  }

  private start(key: string, request: GatewayListRequest, maxWaitMs: number): Load {
    const ticket = this.scheduler.enqueue({
      priority: request.priority,
      caller: request.caller,
      maxWaitMs,
      tracked: true,
    });
    const attempts: AttemptReport[] = [];
    const deadline = this.clock.now() + request.deadlineMs;
    const load: Load = {
      ticket,
      started: false,
      whenStarted: ticket.started.then((slot) => {
        load.started = true;
        load.granted = slot;
      }),
      attempts,
      claimed: false,
      holders: 0,
      closed: false,
      granted: undefined,
      result: Promise.resolve({ ok: false, code: "UPSTREAM_ERROR", message: "" }),
    };
    load.whenStarted.catch(() => undefined);
    load.result = this.upstream(request.settings, load)
      .list(request.query, {
        deadline,
        beforeAttempt: async (attempt) => {
          if (attempt === 1) {
            await load.whenStarted;
            return;
          }
          this.release(load);
          // A retry takes a slot like any call; it belongs to this load, whoever joined it. With no
          // room for it in time, the load ends with what Extend last said, not a budget refusal.
          try {
            load.granted = await this.scheduler.enqueue({
              priority: request.priority,
              caller: request.caller,
              maxWaitMs: Math.max(0, deadline - this.clock.now() - MIN_ATTEMPT_MS),
              tracked: true,
            }).started;
          } catch (error) {
            if (error instanceof SlotRefused) return "skip";
            throw error;
          }
          return undefined;
        },
        onAttempt: (report) => {
          attempts.push(report);
          this.scheduler.observe(report.status, report.retryAfterMs);
        },
      })
      .then((page): LoadResult => {
        if (!page.pruned) throw new Error("the object's pages are checked by its own parser");
        return { ok: true, body: page.body, pruned: page.pruned };
      })
      .catch(failure)
      .then((result) => {
        load.settled = result;
        return result;
      });
    this.loads.set(key, load);
    load.result.finally(() => {
      this.release(load);
      if (this.loads.get(key) === load) this.loads.delete(key);
      load.closed = true;
      this.freeIfDone(load);
    });
    return load;
  }

  /**
   * Waits for the load's outcome, but only `maxWaitMs` for it to start: a participant whose wait
   * runs out is refused at once while the load goes on for the others. Every participant lets go
   * of the load exactly once: when its stream has taken the page, or when it answers otherwise.
   */
  private async participate(
    load: Load,
    request: GatewayListRequest,
    maxWaitMs: number,
    leader: boolean,
  ): Promise<GatewayOutcome> {
    let outcome: GatewayOutcome;
    try {
      outcome = await this.outcomeFor(load, request, maxWaitMs, leader);
    } catch (error) {
      this.letGo(load);
      throw error;
    }
    if (!outcome.ok) this.letGo(load);
    return outcome;
  }

  private async outcomeFor(
    load: Load,
    request: GatewayListRequest,
    maxWaitMs: number,
    leader: boolean,
  ): Promise<GatewayOutcome> {
    if (!load.started) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const turn = await Promise.race([
        load.result.then(() => "settled" as const),
        new Promise<"late" | "started">((resolve) => {
          timer = setTimeout(() => resolve("late"), maxWaitMs + 1);
          load.whenStarted.then(
            () => resolve("started"),
            () => undefined,
          );
        }),
      ]);
      clearTimeout(timer);
      if (turn === "late" && !load.started) {
        const waitMs = this.scheduler.estimateMs(request.priority, request.caller);
        const paused = this.scheduler.stats().pausedForMs > 0;
        return {
          ...refusal(new SlotRefused(paused ? "paused" : "busy", waitMs)),
          shared: !leader,
          attempts: [],
        };
      }
    }
    const result = await load.result;
    const attempts = leader ? load.attempts : [];
    if (!result.ok) return { ...result, shared: !leader, attempts };
    const shared = load.claimed;
    load.claimed = true;
    const length = result.body.byteLength;
    return {
      ok: true,
      body: this.deliver(load, result.body),
      length,
      pruned: result.pruned,
      shared,
      attempts,
    };
  }
}
