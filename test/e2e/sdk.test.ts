// The official `extend-ai` SDK, pointed at the proxy served by `wrangler dev` on loopback, with the
// fake Extend as a real HTTP upstream: the proof that existing Extend code only changes `baseUrl`
// and `token`, and a record of how the SDK sees each of the proxy's errors.
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Extend, ExtendClient, ExtendError } from "extend-ai";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { FakeExtend, type Fault, type ListFilters, listAll } from "../../fake/extend.ts";
import { type RunningFakeServer, startFakeServer } from "../../fake/server.ts";
import { startWranglerDev, type WranglerDev } from "../../scripts/wrangler-dev.ts";

/** Recognisable, so any leak into what the SDK receives is easy to spot. */
const UPSTREAM_KEY = `sk_test_CANARY_e2e_${randomBytes(6).toString("hex")}`;
/** The proxy limits each caller to 120 requests a minute; every test gets its own caller. */
const CLIENT_TOKENS = Array.from(
  { length: 40 },
  (_, i) => `e2e_token_${i}_${randomBytes(16).toString("hex")}`,
);
const PAGE_SIZE = 25;
/** Headers a real upstream sends that must never reach a client through the proxy. */
const UPSTREAM_ONLY_HEADERS = ["set-cookie", "x-ratelimit-limit", "x-powered-by", "x-internal-trace"];

let fake: FakeExtend;
let upstream: RunningFakeServer;
let proxy: WranglerDev;
let stateDir: string;
let nextToken = 0;

interface Seen {
  url: string;
  status: number;
  headers: [string, string][];
  body: string;
}
/** Every response the SDK received, read through the SDK's own `fetch` option. */
let seen: Seen[] = [];

const recordingFetch: typeof fetch = async (input, init) => {
  const response = await fetch(input, init);
  const url = input instanceof Request ? input.url : String(input);
  const headers: [string, string][] = [];
  response.headers.forEach((value, name) => {
    headers.push([name, value]);
  });
  seen.push({ url, status: response.status, headers, body: await response.clone().text() });
  return response;
};

function takeToken(): string {
  const token = CLIENT_TOKENS[nextToken++];
  if (token === undefined) throw new Error("add more CLIENT_TOKENS for the e2e suite");
  return token;
}

function sdk(options: { maxRetries?: number; token?: string } = {}): ExtendClient {
  return new ExtendClient({
    token: options.token ?? takeToken(),
    baseUrl: proxy.url,
    fetch: recordingFetch,
    ...(options.maxRetries === undefined ? {} : { maxRetries: options.maxRetries }),
  });
}

type SdkQuery = Omit<Extend.WorkflowRunsListRequest, "nextPageToken" | "maxPageSize">;

/** What existing Extend code does: follow nextPageToken until it is gone. */
async function pageWithSdk(client: ExtendClient, query: SdkQuery): Promise<{ ids: string[]; pages: number }> {
  const ids: string[] = [];
  let pages = 0;
  let nextPageToken: string | undefined;
  do {
    const page = await client.workflowRuns.list({ ...query, maxPageSize: PAGE_SIZE, nextPageToken });
    pages += 1;
    ids.push(...page.data.map((run) => run.id));
    nextPageToken = page.nextPageToken ?? undefined;
    if (pages > 1_000) throw new Error("pagination does not end");
  } while (nextPageToken !== undefined);
  return { ids, pages };
}

/** The same walk straight against the fake, with its key: the reference the proxy must match. */
async function pageDirectly(query: SdkQuery): Promise<{ ids: string[]; pages: number }> {
  const ids: string[] = [];
  let pages = 0;
  let token: string | undefined;
  do {
    const params = new URLSearchParams({ maxPageSize: String(PAGE_SIZE) });
    for (const [name, value] of Object.entries(query))
      if (value !== undefined) params.set(name, String(value));
    if (token !== undefined) params.set("nextPageToken", token);
    const response = await fetch(`${upstream.url}/workflow_runs?${params}`, {
      headers: { authorization: `Bearer ${UPSTREAM_KEY}`, "x-extend-api-version": "2026-02-09" },
    });
    expect(response.status).toBe(200);
    const page = (await response.json()) as { data: { id: string }[]; nextPageToken?: string };
    pages += 1;
    ids.push(...page.data.map((run) => run.id));
    token = page.nextPageToken;
  } while (token !== undefined);
  return { ids, pages };
}

/** A query only one test uses, so its pages are never in the proxy's cache and faults hit only it. */
function uniqueQuery(): { query: SdkQuery; marker: string } {
  const marker = `e2e-${randomBytes(6).toString("hex")}`;
  return { query: { fileNameContains: marker }, marker };
}

const onlyMarker = (marker: string) => (url: URL) => url.searchParams.get("fileNameContains") === marker;

async function expectSdkError(promise: Promise<unknown>): Promise<ExtendError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ExtendError);
  return error as ExtendError;
}

function envelope(error: ExtendError): {
  code: string;
  message: string;
  retryable: boolean;
  requestId: string;
} {
  const body = error.body as { code: string; message: string; retryable: boolean; requestId: string };
  expect(body).toEqual(
    expect.objectContaining({
      code: expect.any(String),
      message: expect.any(String),
      retryable: expect.any(Boolean),
      requestId: expect.stringMatching(/^req_/),
    }),
  );
  expect(error.rawResponse?.headers.get("x-request-id")).toBe(body.requestId);
  return body;
}

beforeAll(async () => {
  fake = new FakeExtend({ apiKey: UPSTREAM_KEY, dataset: { size: 600, seed: 7 } });
  upstream = await startFakeServer({ fake });
  stateDir = await mkdtemp(join(tmpdir(), "extend-runs-proxy-e2e-"));
  proxy = await startWranglerDev({
    persistTo: stateDir,
    vars: {
      EXTEND_API_BASE_URL: upstream.url,
      EXTEND_API_KEY: UPSTREAM_KEY,
      CLIENT_TOKENS: CLIENT_TOKENS.join(","),
      ALLOW_ANONYMOUS: "false",
      // Short, so the hang case ends in seconds; the deadline still allows a retry.
      UPSTREAM_TIMEOUT_MS: "1000",
      UPSTREAM_DEADLINE_MS: "2500",
    },
  });
});

afterAll(async () => {
  await proxy?.stop();
  await upstream?.close();
  if (stateDir) await rm(stateDir, { recursive: true, force: true });
});

afterEach(() => {
  fake.clearFaults();
  for (const response of seen) {
    expect(`${JSON.stringify(response.headers)}\n${response.body}`).not.toContain(UPSTREAM_KEY);
    const names = response.headers.map(([name]) => name);
    for (const header of UPSTREAM_ONLY_HEADERS) expect(names).not.toContain(header);
  }
  seen = [];
});

describe("paging to the end with the SDK gives exactly the runs Extend gives", () => {
  const runs = () => fake.runs;
  const busiestBatch = () => {
    const counts = new Map<string, number>();
    for (const run of runs()) if (run.batchId) counts.set(run.batchId, (counts.get(run.batchId) ?? 0) + 1);
    return [...counts].sort((a, b) => b[1] - a[1])[0]?.[0] ?? "";
  };
  const workflow = () => runs()[0]?.workflow.id ?? "";

  const cases: [string, () => SdkQuery][] = [
    ["no filter (updatedAt, newest first)", () => ({})],
    ["status PROCESSED", () => ({ status: "PROCESSED" })],
    ["status CANCELLING", () => ({ status: "CANCELLING" })],
    ["workflowId", () => ({ workflowId: workflow() })],
    ["batchId", () => ({ batchId: busiestBatch() })],
    ["fileNameContains with spaces and &", () => ({ fileNameContains: "report & summary" })],
    ["fileNameContains with + and =", () => ({ fileNameContains: "a+b=c" })],
    ["fileNameContains non-ASCII", () => ({ fileNameContains: "請求書" })],
    ["sortBy createdAt, sortDir asc", () => ({ sortBy: "createdAt", sortDir: "asc" })],
    ["sortBy updatedAt, sortDir asc", () => ({ sortBy: "updatedAt", sortDir: "asc" })],
    [
      "every filter at once",
      () => ({
        workflowId: workflow(),
        status: "PROCESSED",
        fileNameContains: ".pdf",
        sortBy: "createdAt",
        sortDir: "desc",
      }),
    ],
  ];

  it.each(cases)("%s", async (_name, build) => {
    const query = build();
    const viaSdk = await pageWithSdk(sdk(), query);
    const direct = await pageDirectly(query);
    const reference = listAll(fake.runs, query as ListFilters).map((run) => run.id);

    expect(reference.length).toBeGreaterThan(0);
    expect(viaSdk.ids).toEqual(direct.ids);
    expect(viaSdk.ids).toEqual(reference);
    expect(viaSdk.pages).toBe(direct.pages);
    expect(new Set(viaSdk.ids).size).toBe(viaSdk.ids.length);
  });

  it("walks many pages, each a page the SDK parses as a typed list", async () => {
    const client = sdk();
    const first = await client.workflowRuns.list({ maxPageSize: PAGE_SIZE }).withRawResponse();
    expect(first.data.data).toHaveLength(PAGE_SIZE);
    expect(first.data.nextPageToken).toEqual(expect.any(String));
    expect(first.rawResponse.headers.get("content-type")).toMatch(/^application\/json/);
    const all = await pageWithSdk(client, {});
    expect(all.pages).toBe(Math.ceil(fake.runs.length / PAGE_SIZE));
    expect(all.pages).toBeGreaterThan(10);
  });
});

describe("how the SDK sees the proxy's errors", () => {
  it("a validation error is an Extend.BadRequestError carrying our envelope; Extend is not called", async () => {
    const calls = fake.listCalls.length;
    const error = await expectSdkError(sdk({ maxRetries: 0 }).workflowRuns.list({ maxPageSize: 5000 }));
    expect(error).toBeInstanceOf(Extend.BadRequestError);
    expect(error.statusCode).toBe(400);
    const body = envelope(error);
    expect(body).toMatchObject({ code: "INVALID_REQUEST", retryable: false });
    expect((error.body as { details?: { field: string }[] }).details).toEqual([
      expect.objectContaining({ field: "maxPageSize" }),
    ]);
    expect(fake.listCalls.length).toBe(calls);
    expect(seen).toHaveLength(1);
  });

  it("an unknown parameter slipped in through requestOptions is refused the same way", async () => {
    const calls = fake.listCalls.length;
    const error = await expectSdkError(
      sdk({ maxRetries: 0 }).workflowRuns.list({}, { queryParams: { apiKey: "x" } }),
    );
    expect(error).toBeInstanceOf(Extend.BadRequestError);
    expect(envelope(error).code).toBe("INVALID_REQUEST");
    expect(JSON.stringify(error.body)).toContain("apiKey");
    expect(fake.listCalls.length).toBe(calls);
  });

  it("a wrong client token is an Extend.UnauthorizedError; Extend is not called", async () => {
    const calls = fake.listCalls.length;
    const error = await expectSdkError(
      sdk({ maxRetries: 0, token: "not-a-client-token" }).workflowRuns.list({ maxPageSize: 1 }),
    );
    expect(error).toBeInstanceOf(Extend.UnauthorizedError);
    expect(envelope(error)).toMatchObject({ code: "UNAUTHORIZED", retryable: false });
    expect(error.rawResponse?.headers.get("www-authenticate")).toMatch(/^Bearer /);
    expect(fake.listCalls.length).toBe(calls);
  });

  interface FaultCase {
    name: string;
    fault: Fault;
    status: number;
    code: string;
    retryable: boolean;
  }
  const faults: FaultCase[] = [
    {
      name: "Extend answers 500",
      fault: { type: "status", status: 500 },
      status: 502,
      code: "UPSTREAM_ERROR",
      retryable: true,
    },
    {
      name: "Extend resets the connection",
      fault: { type: "reset" },
      status: 502,
      code: "UPSTREAM_ERROR",
      retryable: true,
    },
    {
      name: "Extend cuts the body off mid-way",
      fault: { type: "truncated" },
      status: 502,
      code: "UPSTREAM_INVALID_RESPONSE",
      retryable: true,
    },
    {
      name: "Extend answers HTML",
      fault: { type: "non-json" },
      status: 502,
      code: "UPSTREAM_INVALID_RESPONSE",
      retryable: true,
    },
    {
      name: "Extend redirects",
      fault: { type: "redirect" },
      status: 502,
      code: "UPSTREAM_ERROR",
      retryable: true,
    },
    {
      name: "Extend rejects the proxy's key",
      fault: { type: "status", status: 401 },
      status: 502,
      code: "UPSTREAM_AUTH_FAILED",
      retryable: false,
    },
    { name: "Extend hangs", fault: { type: "hang" }, status: 504, code: "UPSTREAM_TIMEOUT", retryable: true },
    {
      name: "Extend rate-limits with Retry-After: 3",
      fault: { type: "rate-limit", retryAfter: "3" },
      status: 503,
      code: "UPSTREAM_RATE_LIMITED",
      retryable: true,
    },
  ];

  it.each(faults)("$name: the SDK gets $status $code", async ({ fault, status, code, retryable }) => {
    const { query, marker } = uniqueQuery();
    fake.inject(fault, 100, onlyMarker(marker));
    const error = await expectSdkError(sdk({ maxRetries: 0 }).workflowRuns.list(query));
    expect(error.statusCode).toBe(status);
    const body = envelope(error);
    expect(body).toMatchObject({ code, retryable });
    // Upstream text (the fake's "boom", HTML, cookie values) never becomes our message.
    expect(body.message).not.toMatch(/boom|<html|s3cr3t|evil\.example/i);
    expect(seen).toHaveLength(1);
    expect(fake.listCalls.filter(onlyMarkerRequest(marker)).length).toBeGreaterThan(0);
    if (status === 503) {
      // A Retry-After longer than the proxy waits is passed on, not waited out inside the proxy.
      const retryAfter = Number(error.rawResponse?.headers.get("retry-after"));
      expect(retryAfter).toBeGreaterThanOrEqual(1);
      expect(retryAfter).toBeLessThanOrEqual(3);
      // It paused the whole tenant (one gateway for every caller): let it pass before the next test.
      await new Promise((resolve) => setTimeout(resolve, retryAfter * 1000 + 200));
    }
  });

  it("the SDK retries a 502 on its own (default policy), while the proxy retried upstream within each", async () => {
    const { query, marker } = uniqueQuery();
    fake.inject({ type: "status", status: 500 }, 100, onlyMarker(marker));
    const error = await expectSdkError(sdk({ maxRetries: 1 }).workflowRuns.list(query));
    expect(error.statusCode).toBe(502);
    expect(envelope(error).code).toBe("UPSTREAM_ERROR");
    const sdkAttempts = seen.filter((r) => r.url.includes(marker));
    expect(sdkAttempts).toHaveLength(2);
    const upstreamAttempts = fake.listCalls.filter(onlyMarkerRequest(marker));
    expect(upstreamAttempts.length).toBeGreaterThan(sdkAttempts.length);
  });

  it("a caller over the proxy's own limit gets Extend.TooManyRequestsError with Retry-After", async () => {
    const client = sdk({ maxRetries: 0 });
    await client.workflowRuns.list({ maxPageSize: 2 });
    const attempt = () =>
      client.workflowRuns.list({ maxPageSize: 2 }).then(
        () => undefined,
        (e: unknown) => e,
      );
    let error: unknown;
    // Batches of concurrent calls (a cached page) until the limiter refuses one.
    for (let batch = 0; batch < 10 && error === undefined; batch++) {
      const outcomes = await Promise.all(Array.from({ length: 25 }, attempt));
      error = outcomes.find((outcome) => outcome !== undefined);
    }
    expect(error).toBeInstanceOf(Extend.TooManyRequestsError);
    if (!(error instanceof ExtendError)) return;
    expect(envelope(error)).toMatchObject({ code: "RATE_LIMIT_EXCEEDED", retryable: true });
    expect(Number(error.rawResponse?.headers.get("retry-after"))).toBeGreaterThan(0);
  });
});

function onlyMarkerRequest(marker: string) {
  return (request: { url: URL }) => request.url.searchParams.get("fileNameContains") === marker;
}
