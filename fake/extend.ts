// A fake of Extend's GET /workflow_runs (API version 2026-02-09), written against web-standard
// Request/Response so the same code runs in workerd (tests, through msw) and in Node (npm start,
// benchmarks, end-to-end tests, through fake/server.ts).
import { type DatasetOptions, type FakeRun, generateRuns, type RunStatus, STATUSES } from "./dataset.ts";

export type { FakeRun, RunStatus };
export { generateRuns, STATUSES };

/** Something the fake does instead of (or before) answering normally. */
export type Fault =
  | { type: "status"; status: number; body?: string; headers?: Record<string, string> }
  | { type: "rate-limit"; retryAfter?: string | null }
  | { type: "hang" }
  | { type: "reset" }
  | { type: "truncated" }
  | { type: "non-json" }
  | { type: "bad-shape" }
  | { type: "redirect"; location?: string }
  | { type: "delay"; ms: number };

/** The parts of a Request the fake reads, so workerd's, Node's and msw's Request types all fit. */
export interface FakeRequest {
  readonly url: string;
  readonly method: string;
  readonly headers: {
    get(name: string): string | null;
    forEach(fn: (value: string, name: string) => void): void;
  };
  readonly signal: AbortSignal;
}

export interface RecordedRequest {
  method: string;
  url: URL;
  headers: Record<string, string>;
  /** Value of `now()` when the request arrived. */
  at: number;
}

export interface FakeExtendOptions {
  /** The key the fake accepts as `Authorization: Bearer …`. */
  apiKey: string;
  apiVersion?: string;
  /** When set, `x-extend-workspace-id` must equal it. */
  workspaceId?: string;
  /** The dataset: given runs, or generated ones. */
  runs?: FakeRun[];
  dataset?: DatasetOptions;
  /** Per-call latency: baseMs plus perRunMs for every run returned. */
  latency?: { baseMs: number; perRunMs: number };
  /** Requests per second beyond which the fake answers 429 with Retry-After. */
  rateLimitPerSecond?: number;
  /**
   * Keep each query's sorted list between calls, until a run changes through updateRun, addRun
   * or deleteRun (benchmarks over 100,000 runs, where sorting on every page would swamp the
   * latency model). Assigning `runs` directly does not clear it.
   */
  memoizeLists?: boolean;
  now?: () => number;
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  /** false: no GET /workflows (404), as an Extend without it would answer. */
  listWorkflows?: boolean;
  /**
   * How `fileNameContains` matches: ignoring case (the default) or as written. Extend's reference
   * says "substring match" only, so the proxy must follow whichever it meets.
   */
  fileNameCase?: "insensitive" | "sensitive";
}

interface PendingFault {
  fault: Fault;
  remaining: number;
  when: ((url: URL) => boolean) | undefined;
}

export interface ListFilters {
  status?: string;
  workflowId?: string;
  batchId?: string;
  fileNameContains?: string;
  /** "sensitive": `fileNameContains` matches as written (see FakeExtendOptions.fileNameCase). */
  fileNameCase?: "insensitive" | "sensitive";
  sortBy?: "updatedAt" | "createdAt";
  sortDir?: "asc" | "desc";
}

const KNOWN_PARAMS = new Set([
  "status",
  "workflowId",
  "batchId",
  "fileNameContains",
  "sortBy",
  "sortDir",
  "nextPageToken",
  "maxPageSize",
]);

/** Headers a real API sends that a proxy must not pass on. */
const NOISY_HEADERS: Record<string, string> = {
  server: "fake-extend/1.0",
  "set-cookie": "extend_session=s3cr3t-session; Path=/; HttpOnly",
  "x-ratelimit-limit": "10",
  "x-ratelimit-remaining": "9",
  "x-powered-by": "fake",
  "x-internal-trace": "do-not-leak",
};

const CURSOR_MARKER = new Uint8Array([0xfb, 0xff, 0xbf]); // encodes as "+/+/" in base64
const RUN_PATH = /\/workflow_runs\/([^/]+)$/;
const WORKFLOWS_PATH = /\/workflows$/;

function toBase64(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

function fromBase64(text: string): Uint8Array {
  const binary = atob(text);
  return Uint8Array.from(binary, (ch) => ch.charCodeAt(0));
}

/** 16 bytes of FNV-1a over the query, so a cursor is bound to the query that produced it. */
function queryFingerprint(text: string): Uint8Array {
  const out = new Uint8Array(16);
  for (let round = 0; round < 4; round++) {
    let hash = 0x811c9dc5 ^ round;
    for (let i = 0; i < text.length; i++) {
      hash ^= text.charCodeAt(i);
      hash = Math.imul(hash, 0x01000193) >>> 0;
    }
    new DataView(out.buffer).setUint32(round * 4, hash);
  }
  return out;
}

function sleepFor(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(resolve, ms);
    signal.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        reject(signal.reason);
      },
      { once: true },
    );
  });
}

function extendError(status: number, code: string, message: string, retryable = false): Response {
  return Response.json(
    { code, message, retryable, requestId: `req_fake_${Math.floor(Math.random() * 1e9)}` },
    { status, headers: NOISY_HEADERS },
  );
}

/** Matches a run against list filters the way Extend's list endpoint does. */
export function matches(run: FakeRun, filters: ListFilters): boolean {
  if (filters.status && run.status !== filters.status) return false;
  if (filters.workflowId && run.workflow.id !== filters.workflowId) return false;
  if (filters.batchId && run.batchId !== filters.batchId) return false;
  if (filters.fileNameContains) {
    if (filters.fileNameCase === "sensitive") {
      const needle = filters.fileNameContains;
      if (!run.files.some((file) => file.name.includes(needle))) return false;
    } else {
      const needle = filters.fileNameContains.toLowerCase();
      if (!run.files.some((file) => file.name.toLowerCase().includes(needle))) return false;
    }
  }
  return true;
}

/** A run's place in a sorted list: the instant (ms, never the ISO text) and the id breaking ties. */
type SortKey = { value: number; id: string };

function compareKeys(a: SortKey, b: SortKey, dir: 1 | -1): number {
  const byField = a.value < b.value ? -1 : a.value > b.value ? 1 : 0;
  if (byField !== 0) return byField * dir;
  return (a.id < b.id ? -1 : a.id > b.id ? 1 : 0) * dir;
}

const keyOf = (run: FakeRun, sortBy: "updatedAt" | "createdAt"): SortKey => ({
  value: Date.parse(run[sortBy]),
  id: run.id,
});

/** What can change about a run after it was created. */
export interface RunChange {
  status?: RunStatus;
  usage?: FakeRun["usage"];
}

/**
 * The run as GET /workflow_runs/{id} returns it (Extend's WorkflowRun): the summary's fields
 * without createdAt and updatedAt, plus the ones only the full run has.
 */
export function workflowRunOf(run: FakeRun): Record<string, unknown> {
  const { createdAt: _created, updatedAt: _updated, ...rest } = run;
  return {
    ...rest,
    metadata: {},
    failureReason: run.status === "FAILED" ? "EXTRACTION_FAILED" : null,
    failureMessage: run.status === "FAILED" ? "The document could not be read." : null,
    reviewed: run.reviewedAt !== null,
    stepRuns: [],
  };
}

/** A sorted list and each run's sort key, parsed once (a million runs sort in seconds). */
interface SortedList {
  runs: FakeRun[];
  keys: SortKey[];
}

function sortList(runs: readonly FakeRun[], filters: ListFilters): SortedList {
  const sortBy = filters.sortBy ?? "updatedAt";
  const dir = filters.sortDir === "asc" ? 1 : -1;
  const entries = runs
    .filter((run) => matches(run, filters))
    .map((run) => ({ run, key: keyOf(run, sortBy) }))
    .sort((a, b) => compareKeys(a.key, b.key, dir));
  return { runs: entries.map((e) => e.run), keys: entries.map((e) => e.key) };
}

/** Every matching run in list order; the reference the tests compare the proxy with. */
export function listAll(runs: readonly FakeRun[], filters: ListFilters = {}): FakeRun[] {
  return sortList(runs, filters).runs;
}

export class FakeExtend {
  runs: FakeRun[];
  readonly requests: RecordedRequest[] = [];
  readonly options: FakeExtendOptions;
  private faults: PendingFault[] = [];
  private served: number[] = [];
  private readonly sortedLists = new Map<string, SortedList>();
  private readonly now: () => number;
  private readonly sleep: (ms: number, signal: AbortSignal) => Promise<void>;

  constructor(options: FakeExtendOptions) {
    this.options = options;
    this.runs = options.runs ?? generateRuns(options.dataset ?? { size: 250 });
    this.now = options.now ?? Date.now;
    this.sleep = options.sleep ?? sleepFor;
  }

  /** Makes the next `times` list requests (matching `when`, if given) misbehave. */
  inject(fault: Fault, times = 1, when?: (url: URL) => boolean): this {
    this.faults.push({ fault, remaining: times, when });
    return this;
  }

  clearFaults(): void {
    this.faults = [];
  }

  /** Requests that reached the list endpoint. */
  get listCalls(): RecordedRequest[] {
    return this.requests.filter((r) => r.url.pathname.endsWith("/workflow_runs"));
  }

  /** Requests for one run (GET /workflow_runs/{id}). */
  get getCalls(): RecordedRequest[] {
    return this.requests.filter((r) => RUN_PATH.test(r.url.pathname));
  }

  /** Changes a run as Extend would: its updatedAt moves to `at` (and never backwards). */
  updateRun(id: string, change: RunChange, at = this.now()): FakeRun | undefined {
    return this.updateRuns([id], change, at)[0];
  }

  /** Changes several runs in one pass over the list (what a bulk update in Extend looks like). */
  updateRuns(ids: readonly string[], change: RunChange, at = this.now()): FakeRun[] {
    const wanted = new Set(ids);
    const changed: FakeRun[] = [];
    this.runs = this.runs.map((run) => {
      if (!wanted.has(run.id)) return run;
      const updatedMs = Math.max(at, Date.parse(run.updatedAt) + 1);
      const next: FakeRun = { ...run, ...change, updatedAt: new Date(updatedMs).toISOString() };
      changed.push(next);
      return next;
    });
    this.sortedLists.clear();
    return changed;
  }

  /** A new run, created (and last updated) at `at`. */
  addRun(run: FakeRun, at = this.now()): FakeRun {
    const iso = new Date(at).toISOString();
    const created: FakeRun = { ...run, createdAt: iso, updatedAt: iso };
    this.runs = [...this.runs, created];
    this.sortedLists.clear();
    return created;
  }

  /** DELETE /workflow_runs/{id}: the run disappears from the list and GET answers 404. */
  deleteRun(id: string): boolean {
    const before = this.runs.length;
    this.runs = this.runs.filter((run) => run.id !== id);
    this.sortedLists.clear();
    return this.runs.length < before;
  }

  async handle(request: FakeRequest): Promise<Response> {
    const url = new URL(request.url);
    const headers: Record<string, string> = {};
    request.headers.forEach((value, name) => {
      headers[name] = value;
    });
    this.requests.push({ method: request.method, url, headers, at: this.now() });

    const runPath = RUN_PATH.exec(url.pathname);
    const workflows = WORKFLOWS_PATH.test(url.pathname) && this.options.listWorkflows !== false;
    if (!runPath && !workflows && !url.pathname.endsWith("/workflow_runs"))
      return extendError(404, "NOT_FOUND", "Not found.");
    if (request.method !== "GET") return extendError(405, "INVALID_REQUEST", "Method not allowed.");

    const fault = this.takeFault(url);
    if (fault?.type === "delay") await this.sleep(fault.ms, request.signal);
    else if (fault) return this.misbehave(fault, request, url);

    if (this.options.rateLimitPerSecond !== undefined) {
      const now = this.now();
      this.served = this.served.filter((t) => now - t < 1000);
      if (this.served.length >= this.options.rateLimitPerSecond) {
        const response = extendError(
          429,
          "RATE_LIMIT_EXCEEDED",
          "Too many requests. Back off and retry.",
          true,
        );
        response.headers.set("retry-after", "1");
        return response;
      }
      this.served.push(now);
    }

    if (runPath) return this.getRun(request, decodeURIComponent(runPath[1] ?? ""));
    if (workflows) {
      if (this.options.latency) await this.sleep(this.options.latency.baseMs, request.signal);
      return this.listWorkflows(request, url);
    }
    const answer = this.list(request, url);
    if (answer instanceof Response) return answer;
    const latency = this.options.latency;
    if (latency) await this.sleep(latency.baseMs + latency.perRunMs * answer.data.length, request.signal);
    return Response.json(answer, { headers: { ...NOISY_HEADERS, "x-extend-request-id": "req_fake_ok" } });
  }

  private takeFault(url: URL): Fault | undefined {
    const pending = this.faults.find((f) => f.remaining > 0 && (!f.when || f.when(url)));
    if (!pending) return undefined;
    pending.remaining -= 1;
    if (pending.remaining === 0) this.faults = this.faults.filter((f) => f !== pending);
    return pending.fault;
  }

  private async misbehave(fault: Fault, request: FakeRequest, url: URL): Promise<Response> {
    switch (fault.type) {
      case "status":
        return new Response(
          fault.body ?? JSON.stringify({ code: "INTERNAL_ERROR", message: "boom", retryable: true }),
          {
            status: fault.status,
            headers: { "content-type": "application/json", ...NOISY_HEADERS, ...fault.headers },
          },
        );
      case "rate-limit": {
        const response = extendError(
          429,
          "RATE_LIMIT_EXCEEDED",
          "Too many requests. Back off and retry.",
          true,
        );
        if (fault.retryAfter !== null) response.headers.set("retry-after", fault.retryAfter ?? "1");
        return response;
      }
      case "hang":
        await this.sleep(10 * 60_000, request.signal);
        return extendError(504, "INTERNAL_ERROR", "Gave up.");
      case "reset":
        return Response.error();
      case "truncated": {
        const answer = this.list(request, url);
        const text = JSON.stringify(answer instanceof Response ? { object: "list", data: [] } : answer);
        const bytes = new TextEncoder().encode(text);
        const half = bytes.slice(0, Math.max(1, Math.floor(bytes.length / 2)));
        // The error comes on the second read: erroring in start() would discard the queued half.
        const body = new ReadableStream<Uint8Array>({
          start(controller) {
            controller.enqueue(half);
          },
          pull(controller) {
            controller.error(new Error("connection lost mid-body"));
          },
        });
        return new Response(body, {
          status: 200,
          headers: { "content-type": "application/json", ...NOISY_HEADERS },
        });
      }
      case "non-json":
        return new Response("<html><body>502 Bad Gateway</body></html>", {
          status: 200,
          headers: { "content-type": "text/html", ...NOISY_HEADERS },
        });
      case "bad-shape":
        return Response.json({ workflowRuns: [], success: true }, { headers: NOISY_HEADERS });
      case "redirect":
        return new Response(null, {
          status: 302,
          headers: { location: fault.location ?? "https://evil.example/steal", ...NOISY_HEADERS },
        });
      case "delay":
        return this.handle(request);
    }
  }

  /** Auth, API version and workspace, as every endpoint checks them; undefined when all is well. */
  private refuse(request: FakeRequest): Response | undefined {
    if (request.headers.get("authorization") !== `Bearer ${this.options.apiKey}`) {
      return extendError(401, "UNAUTHORIZED", "Invalid API key.");
    }
    const version = this.options.apiVersion ?? "2026-02-09";
    if (request.headers.get("x-extend-api-version") !== version) {
      return extendError(400, "INVALID_REQUEST", `x-extend-api-version must be ${version}.`);
    }
    const workspace = request.headers.get("x-extend-workspace-id");
    if (this.options.workspaceId !== undefined && workspace !== this.options.workspaceId) {
      return extendError(403, "FORBIDDEN", "This key needs x-extend-workspace-id for its workspace.");
    }
    return undefined;
  }

  /** GET /workflows: the workflows the runs belong to, by id, paged by offset. */
  private listWorkflows(request: FakeRequest, url: URL): Response {
    const refused = this.refuse(request);
    if (refused) return refused;
    const byId = new Map<string, FakeRun["workflow"]>();
    for (const run of this.runs) byId.set(run.workflow.id, run.workflow);
    const all = [...byId.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
    const size = Math.min(1000, Math.max(1, Number(url.searchParams.get("maxPageSize") ?? "10") || 10));
    const token = url.searchParams.get("nextPageToken");
    const start = token?.startsWith("wf:") ? Number(token.slice(3)) || 0 : 0;
    const data = all.slice(start, start + size);
    const more = start + size < all.length;
    return Response.json(
      { object: "list", data, ...(more ? { nextPageToken: `wf:${start + size}` } : {}) },
      { headers: NOISY_HEADERS },
    );
  }

  /** GET /workflow_runs/{id}: the full run, or 404 once it is deleted. */
  private getRun(request: FakeRequest, id: string): Response {
    const refused = this.refuse(request);
    if (refused) return refused;
    const run = this.runs.find((r) => r.id === id);
    if (!run) return extendError(404, "NOT_FOUND", `Workflow run ${id} not found.`);
    return Response.json(workflowRunOf(run), {
      headers: { ...NOISY_HEADERS, "x-extend-request-id": "req_fake_ok" },
    });
  }

  /** The list endpoint proper: auth, version, workspace, validation, filters, keyset cursor. */
  private list(
    request: FakeRequest,
    url: URL,
  ): Response | { object: "list"; data: FakeRun[]; nextPageToken?: string } {
    const refused = this.refuse(request);
    if (refused) return refused;
    const workspace = request.headers.get("x-extend-workspace-id");

    const params = url.searchParams;
    for (const name of new Set(params.keys())) {
      if (!KNOWN_PARAMS.has(name)) return extendError(400, "INVALID_REQUEST", `Unknown parameter ${name}.`);
      if (params.getAll(name).length > 1)
        return extendError(400, "INVALID_REQUEST", `Repeated parameter ${name}.`);
    }
    const status = params.get("status");
    if (status !== null && !(STATUSES as readonly string[]).includes(status)) {
      return extendError(400, "INVALID_REQUEST", "Invalid status.");
    }
    const sortBy = params.get("sortBy") ?? "updatedAt";
    const sortDir = params.get("sortDir") ?? "desc";
    if (sortBy !== "updatedAt" && sortBy !== "createdAt")
      return extendError(400, "INVALID_REQUEST", "Invalid sortBy.");
    if (sortDir !== "asc" && sortDir !== "desc")
      return extendError(400, "INVALID_REQUEST", "Invalid sortDir.");
    const sizeText = params.get("maxPageSize") ?? "10";
    const pageSize = /^\d+$/.test(sizeText) ? Number(sizeText) : Number.NaN;
    if (!(pageSize >= 1 && pageSize <= 1000)) {
      return extendError(400, "INVALID_REQUEST", "maxPageSize must be between 1 and 1000.");
    }

    const filters: ListFilters = {
      ...(status ? { status } : {}),
      ...(params.get("workflowId") ? { workflowId: params.get("workflowId") ?? "" } : {}),
      ...(params.get("batchId") ? { batchId: params.get("batchId") ?? "" } : {}),
      ...(params.get("fileNameContains") ? { fileNameContains: params.get("fileNameContains") ?? "" } : {}),
      ...(this.options.fileNameCase === "sensitive" ? { fileNameCase: "sensitive" as const } : {}),
      sortBy,
      sortDir,
    };
    const fingerprint = toBase64(queryFingerprint(JSON.stringify({ ...filters, pageSize, ws: workspace })));
    const sorted = this.sortedList(filters);
    const all = sorted.runs;

    let start = 0;
    const token = params.get("nextPageToken");
    if (token !== null) {
      const after = this.decodeCursor(token, fingerprint);
      if (!after) return extendError(400, "INVALID_REQUEST", "Invalid nextPageToken for this query.");
      const dir = sortDir === "asc" ? 1 : -1;
      // The first run after the cursor's key: keyset paging, found by binary search.
      let low = 0;
      let high = all.length;
      while (low < high) {
        const middle = (low + high) >>> 1;
        const key = sorted.keys[middle];
        if (key && compareKeys(key, after, dir) > 0) high = middle;
        else low = middle + 1;
      }
      start = low;
    }
    const data = all.slice(start, start + pageSize);
    const last = data[data.length - 1];
    const more = start + pageSize < all.length && last !== undefined;
    return {
      object: "list",
      data,
      ...(more ? { nextPageToken: this.encodeCursor(fingerprint, Date.parse(last[sortBy]), last.id) } : {}),
    };
  }

  private sortedList(filters: ListFilters): SortedList {
    if (!this.options.memoizeLists) return sortList(this.runs, filters);
    const key = JSON.stringify(filters);
    const cached = this.sortedLists.get(key);
    if (cached) return cached;
    const order = { sortBy: filters.sortBy, sortDir: filters.sortDir };
    const unfiltered = JSON.stringify(order);
    let sorted: SortedList;
    if (key === unfiltered) {
      sorted = sortList(this.runs, filters);
    } else {
      // A filtered list keeps the order of the whole one: filtering it is linear, where sorting
      // each partition again (a backfill asks for ten of them over a million runs) is not.
      const all = this.sortedList(order);
      sorted = { runs: [], keys: [] };
      all.runs.forEach((run, i) => {
        const runKey = all.keys[i];
        if (runKey && matches(run, filters)) {
          sorted.runs.push(run);
          sorted.keys.push(runKey);
        }
      });
    }
    this.sortedLists.set(key, sorted);
    return sorted;
  }

  private encodeCursor(fingerprint: string, value: number, runId: string): string {
    const payload = new TextEncoder().encode(JSON.stringify({ v: value, id: runId }));
    const bytes = new Uint8Array(CURSOR_MARKER.length + payload.length);
    bytes.set(CURSOR_MARKER);
    bytes.set(payload, CURSOR_MARKER.length);
    return `${fingerprint}:${toBase64(bytes)}`;
  }

  private decodeCursor(token: string, fingerprint: string): SortKey | undefined {
    const [head, tail, ...rest] = token.split(":");
    if (head !== fingerprint || tail === undefined || rest.length > 0) return undefined;
    try {
      const bytes = fromBase64(tail).slice(CURSOR_MARKER.length);
      const parsed: unknown = JSON.parse(new TextDecoder().decode(bytes));
      if (typeof parsed === "object" && parsed !== null && "v" in parsed && "id" in parsed) {
        const { v, id } = parsed as { v: unknown; id: unknown };
        if (typeof v === "number" && typeof id === "string") return { value: v, id };
      }
    } catch {
      return undefined;
    }
    return undefined;
  }
}
