import { HttpResponse, http } from "msw";
import { describe, expect, it } from "vitest";
import type { FakeRequest, Fault } from "../../../fake/extend.ts";
import { captureConsole, requestLines } from "../support/console.ts";
import { FAKE_EXTEND_ORIGIN, TEST_UPSTREAM_KEY, UPSTREAM_ONLY_HEADERS } from "../support/constants.ts";
import { expectErrorEnvelope, expectNoUpstreamKey, type ReadResponse, read } from "../support/envelope.ts";
import { network } from "../support/setup.ts";
import { isolatedTenant, type Tenant } from "../support/tenant.ts";

/** Small per-attempt timeout, generous deadline: three timed-out attempts fit with room to spare. */
const FAST: Partial<Env> = { UPSTREAM_TIMEOUT_MS: "100", UPSTREAM_DEADLINE_MS: "5000" };
/** More than the proxy will ever attempt, so "every time" really means every attempt. */
const ALWAYS = 10;

/** Text and headers of the fake's own answers that must never reach a client. */
const UPSTREAM_TEXT = [
  "boom",
  "Back off and retry",
  "Invalid API key",
  "502 Bad Gateway",
  "evil.example",
  "s3cr3t",
  "do-not-leak",
  "req_fake",
  "workflowRuns",
];

function call(tenant: Tenant, path = "/workflow_runs", env: Partial<Env> = {}): Promise<ReadResponse> {
  return tenant.call(path, { env: { ...FAST, ...env } }).then(read);
}

function expectNothingFromUpstream(res: ReadResponse): void {
  for (const text of UPSTREAM_TEXT) expect(res.text, text).not.toContain(text);
  for (const name of UPSTREAM_ONLY_HEADERS) expect(res.headers.get(name), name).toBeNull();
}

interface FaultCase {
  name: string;
  fault: Fault;
  times: number;
  status: number;
  code: string;
  retryable: boolean;
  calls: number;
  retryAfter?: (value: number) => boolean;
}

const statusFault = (status: number, headers?: Record<string, string>): Fault => ({
  type: "status",
  status,
  ...(headers ? { headers } : {}),
});

const FAULTS: FaultCase[] = [
  ...[500, 501, 502, 503, 504].map((status) => ({
    name: `HTTP ${status} on every attempt`,
    fault: statusFault(status),
    times: ALWAYS,
    status: 502,
    code: "UPSTREAM_ERROR",
    retryable: true,
    calls: 3,
  })),
  {
    name: "HTTP 503 with a long Retry-After (30 s)",
    fault: statusFault(503, { "retry-after": "30" }),
    times: ALWAYS,
    status: 502,
    code: "UPSTREAM_ERROR",
    retryable: true,
    calls: 1,
    retryAfter: (s) => s === 30,
  },
  {
    name: "HTTP 503 with a short Retry-After (1 s) on every attempt",
    fault: statusFault(503, { "retry-after": "1" }),
    times: ALWAYS,
    status: 502,
    code: "UPSTREAM_ERROR",
    retryable: true,
    calls: 3,
    retryAfter: (s) => s === 1,
  },
  ...[401, 403].map((status) => ({
    name: `HTTP ${status} (our key rejected)`,
    fault: statusFault(status),
    times: ALWAYS,
    status: 502,
    code: "UPSTREAM_AUTH_FAILED",
    retryable: false,
    calls: 1,
  })),
  {
    name: "HTTP 402 (billing)",
    fault: statusFault(402),
    times: ALWAYS,
    status: 502,
    code: "UPSTREAM_USAGE_BLOCKED",
    retryable: false,
    calls: 1,
  },
  ...[400, 410, 422].map((status) => ({
    name: `HTTP ${status} (query refused)`,
    fault: statusFault(status),
    times: ALWAYS,
    status: 400,
    code: "INVALID_REQUEST",
    retryable: false,
    calls: 1,
  })),
  {
    name: "HTTP 404",
    fault: statusFault(404),
    times: ALWAYS,
    status: 404,
    code: "NOT_FOUND",
    retryable: false,
    calls: 1,
  },
  {
    name: "HTTP 418 (unexpected)",
    fault: statusFault(418),
    times: ALWAYS,
    status: 502,
    code: "UPSTREAM_ERROR",
    retryable: true,
    calls: 1,
  },
  {
    name: "429 with a long Retry-After (120 s)",
    fault: { type: "rate-limit", retryAfter: "120" },
    times: ALWAYS,
    status: 503,
    code: "UPSTREAM_RATE_LIMITED",
    retryable: true,
    calls: 1,
    retryAfter: (s) => s === 120,
  },
  {
    name: "429 with a Retry-After HTTP-date an hour ahead",
    fault: { type: "rate-limit", retryAfter: new Date(Date.now() + 3_600_000).toUTCString() },
    times: ALWAYS,
    status: 503,
    code: "UPSTREAM_RATE_LIMITED",
    retryable: true,
    calls: 1,
    retryAfter: (s) => s > 3_000 && s <= 3_600,
  },
  {
    name: "429 with an absurd Retry-After (clamped to an hour)",
    fault: { type: "rate-limit", retryAfter: "9".repeat(400) },
    times: ALWAYS,
    status: 503,
    code: "UPSTREAM_RATE_LIMITED",
    retryable: true,
    calls: 1,
    retryAfter: (s) => s === 3_600,
  },
  {
    name: "429 with a short Retry-After (0 s) on every attempt",
    fault: { type: "rate-limit", retryAfter: "0" },
    times: ALWAYS,
    status: 503,
    code: "UPSTREAM_RATE_LIMITED",
    retryable: true,
    calls: 3,
    retryAfter: (s) => s === 1,
  },
  {
    name: "429 with a Retry-After HTTP-date in the past on every attempt",
    fault: { type: "rate-limit", retryAfter: "Sun, 06 Nov 1994 08:49:37 GMT" },
    times: ALWAYS,
    status: 503,
    code: "UPSTREAM_RATE_LIMITED",
    retryable: true,
    calls: 3,
    retryAfter: (s) => s === 1,
  },
  ...[null, "soon", "1.5", "-1", ""].map((retryAfter) => ({
    name: `429 with Retry-After ${JSON.stringify(retryAfter)} (treated as absent) on every attempt`,
    fault: { type: "rate-limit", retryAfter } as Fault,
    times: ALWAYS,
    status: 503,
    code: "UPSTREAM_RATE_LIMITED",
    retryable: true,
    calls: 3,
    retryAfter: (s: number) => s === 1,
  })),
  {
    name: "a hang on every attempt",
    fault: { type: "hang" },
    times: ALWAYS,
    status: 504,
    code: "UPSTREAM_TIMEOUT",
    retryable: true,
    calls: 3,
  },
  {
    name: "a connection reset on every attempt",
    fault: { type: "reset" },
    times: ALWAYS,
    status: 502,
    code: "UPSTREAM_ERROR",
    retryable: true,
    calls: 3,
  },
  {
    name: "a truncated body on every attempt",
    fault: { type: "truncated" },
    times: ALWAYS,
    status: 502,
    code: "UPSTREAM_INVALID_RESPONSE",
    retryable: true,
    calls: 3,
  },
  {
    name: "a 200 with an HTML body",
    fault: { type: "non-json" },
    times: ALWAYS,
    status: 502,
    code: "UPSTREAM_INVALID_RESPONSE",
    retryable: true,
    calls: 1,
  },
  {
    name: "a 200 with JSON of another shape",
    fault: { type: "bad-shape" },
    times: ALWAYS,
    status: 502,
    code: "UPSTREAM_INVALID_RESPONSE",
    retryable: true,
    calls: 1,
  },
  ...[
    "[]",
    "null",
    '{"object":"list","data":{}}',
    '{"object":"page","data":[]}',
    '{"object":"list","data":[],"nextPageToken":5}',
    '{"object":"list","data":[1]}',
  ].map((body) => ({
    name: `a 200 with ${body}`,
    fault: { type: "status", status: 200, body } as Fault,
    times: ALWAYS,
    status: 502,
    code: "UPSTREAM_INVALID_RESPONSE",
    retryable: true,
    calls: 1,
  })),
  {
    name: "a 302 redirect",
    fault: { type: "redirect" },
    times: ALWAYS,
    status: 502,
    code: "UPSTREAM_ERROR",
    retryable: true,
    calls: 1,
  },
  ...[301, 303, 307, 308].map((status) => ({
    name: `a ${status} redirect back to the fake`,
    fault: statusFault(status, { location: `${FAKE_EXTEND_ORIGIN}/workflow_runs` }),
    times: ALWAYS,
    status: 502,
    code: "UPSTREAM_ERROR",
    retryable: true,
    calls: 1,
  })),
];

describe("a compatible upstream that leaves out `object`", () => {
  it("still has its list passed through unchanged", async () => {
    const tenant = isolatedTenant();
    const body = '{"data":[{"id":"workflow_run_1","status":"PROCESSED"}]}';
    tenant.fake.inject({ type: "status", status: 200, body }, ALWAYS);
    const res = await call(tenant);
    expect(res.status).toBe(200);
    expect(res.text).toBe(body);
  });
});

describe("upstream faults map to one clear error", () => {
  it.each(FAULTS)("$name", async ({ fault, times, status, code, retryable, calls, retryAfter }) => {
    const tenant = isolatedTenant();
    tenant.fake.inject(fault, times);
    const res = await call(tenant);
    const body = expectErrorEnvelope(res, { status, code, retryable });
    expect(body.details).toBeUndefined();
    expect(tenant.fake.requests).toHaveLength(calls);
    expect(tenant.fake.requests.every((r) => r.url.origin === FAKE_EXTEND_ORIGIN)).toBe(true);
    const header = res.headers.get("retry-after");
    if (retryAfter) {
      expect(header).toMatch(/^\d+$/);
      expect(retryAfter(Number(header)), `Retry-After: ${header}`).toBe(true);
    } else {
      expect(header).toBeNull();
    }
    expect(res.headers.get("cache-control")).toMatch(/no-store/);
    expectNothingFromUpstream(res);
  });

  it("never repeats an upstream error body, even one that carries a key", async () => {
    const tenant = isolatedTenant();
    const leaky = JSON.stringify({
      code: "X",
      message: `bad key ${TEST_UPSTREAM_KEY}`,
      stack: "Error: at x.ts:1",
    });
    tenant.fake.inject(
      { type: "status", status: 500, body: leaky, headers: { "x-echo": TEST_UPSTREAM_KEY } },
      ALWAYS,
    );
    const res = await call(tenant);
    expectErrorEnvelope(res, { status: 502, code: "UPSTREAM_ERROR" });
    expect(res.headers.get("x-echo")).toBeNull();
  });

  it("does not follow a redirect to a URL carrying the key", async () => {
    const tenant = isolatedTenant();
    tenant.fake.inject(
      { type: "redirect", location: `https://evil.example/?k=${TEST_UPSTREAM_KEY}` },
      ALWAYS,
    );
    const res = await call(tenant);
    expectErrorEnvelope(res, { status: 502, code: "UPSTREAM_ERROR", retryable: true });
    expect(tenant.fake.requests).toHaveLength(1);
    expectNothingFromUpstream(res);
  });
});

describe("retries recover from transient faults", () => {
  const cases: { name: string; faults: [Fault, number][]; calls: number }[] = [
    { name: "one 500", faults: [[statusFault(500), 1]], calls: 2 },
    { name: "two 503s", faults: [[statusFault(503), 2]], calls: 3 },
    {
      name: "a 502 then a 504",
      faults: [
        [statusFault(502), 1],
        [statusFault(504), 1],
      ],
      calls: 3,
    },
    { name: "one connection reset", faults: [[{ type: "reset" }, 1]], calls: 2 },
    { name: "one truncated body", faults: [[{ type: "truncated" }, 1]], calls: 2 },
    {
      name: "a reset then a truncated body",
      faults: [
        [{ type: "reset" }, 1],
        [{ type: "truncated" }, 1],
      ],
      calls: 3,
    },
    { name: "one hang (per-attempt timeout)", faults: [[{ type: "hang" }, 1]], calls: 2 },
    { name: "a 429 with Retry-After 0", faults: [[{ type: "rate-limit", retryAfter: "0" }, 1]], calls: 2 },
    { name: "a 429 with Retry-After 1", faults: [[{ type: "rate-limit", retryAfter: "1" }, 1]], calls: 2 },
    { name: "a 429 without Retry-After", faults: [[{ type: "rate-limit", retryAfter: null }, 1]], calls: 2 },
    { name: "a short delay (no retry needed)", faults: [[{ type: "delay", ms: 20 }, 1]], calls: 1 },
  ];

  it.each(cases)("$name", async ({ faults, calls }) => {
    const tenant = isolatedTenant();
    for (const [fault, times] of faults) tenant.fake.inject(fault, times);
    const res = await call(tenant, "/workflow_runs?maxPageSize=4");
    expect(res.status, res.text).toBe(200);
    const body = JSON.parse(res.text) as { object: string; data: unknown[] };
    expect(body.object).toBe("list");
    expect(body.data).toHaveLength(4);
    expect(tenant.fake.listCalls).toHaveLength(calls);
    // Every retry asks for exactly the same page.
    expect(new Set(tenant.fake.listCalls.map((r) => r.url.toString())).size).toBe(1);
    expectNoUpstreamKey(res);
  });
});

describe("the overall deadline bounds every attempt and back-off", () => {
  it("makes one attempt when the deadline equals the per-attempt timeout", async () => {
    const tenant = isolatedTenant();
    tenant.fake.inject({ type: "hang" }, ALWAYS);
    const res = await call(tenant, "/workflow_runs", {
      UPSTREAM_TIMEOUT_MS: "100",
      UPSTREAM_DEADLINE_MS: "100",
    });
    expectErrorEnvelope(res, { status: 504, code: "UPSTREAM_TIMEOUT", retryable: true });
    expect(tenant.fake.requests).toHaveLength(1);
  });

  it("never makes more than three attempts however long the deadline", async () => {
    const tenant = isolatedTenant();
    tenant.fake.inject({ type: "hang" }, ALWAYS);
    const res = await call(tenant, "/workflow_runs", {
      UPSTREAM_TIMEOUT_MS: "100",
      UPSTREAM_DEADLINE_MS: "300000",
    });
    expectErrorEnvelope(res, { status: 504, code: "UPSTREAM_TIMEOUT" });
    expect(tenant.fake.requests).toHaveLength(3);
  });

  it("times out a slow answer that outlasts the deadline", async () => {
    const tenant = isolatedTenant();
    tenant.fake.inject({ type: "delay", ms: 2_000 }, ALWAYS);
    const res = await call(tenant, "/workflow_runs", {
      UPSTREAM_TIMEOUT_MS: "150",
      UPSTREAM_DEADLINE_MS: "150",
    });
    expectErrorEnvelope(res, { status: 504, code: "UPSTREAM_TIMEOUT" });
    expect(tenant.fake.requests).toHaveLength(1);
  });

  it("does not wait out a Retry-After that the deadline cannot fit", async () => {
    const tenant = isolatedTenant();
    tenant.fake.inject({ type: "rate-limit", retryAfter: "2" }, ALWAYS);
    const res = await call(tenant, "/workflow_runs", {
      UPSTREAM_TIMEOUT_MS: "100",
      UPSTREAM_DEADLINE_MS: "1000",
    });
    expectErrorEnvelope(res, { status: 503, code: "UPSTREAM_RATE_LIMITED" });
    expect(res.headers.get("retry-after")).toBe("2");
    expect(tenant.fake.requests).toHaveLength(1);
  });

  it("times out a body that stops arriving after the headers", async () => {
    const tenant = isolatedTenant();
    const stalls = stallingUpstream();
    const res = await call(tenant, "/workflow_runs", {
      UPSTREAM_TIMEOUT_MS: "100",
      UPSTREAM_DEADLINE_MS: "100",
    });
    expectErrorEnvelope(res, { status: 504, code: "UPSTREAM_TIMEOUT", retryable: true });
    expect(stalls.calls).toBe(1);
    expect(res.text).not.toContain("data");
  });

  it("retries a stalled body within the deadline and then succeeds", async () => {
    const tenant = isolatedTenant();
    const stalls = stallingUpstream(1, (request) => tenant.fake.handle(request));
    const res = await call(tenant, "/workflow_runs?maxPageSize=2");
    expect(res.status, res.text).toBe(200);
    expect(stalls.calls).toBe(2);
    expect(tenant.fake.listCalls).toHaveLength(1);
  });
});

/**
 * An upstream that sends 200 headers and the start of a list, then goes silent. Registered after
 * the test's tenant, it answers in the place of the tenant's fake.
 */
function stallingUpstream(
  times = Number.POSITIVE_INFINITY,
  after?: (request: FakeRequest) => Promise<Response>,
): { calls: number } {
  const state = { calls: 0 };
  network.use(
    http.get(`${FAKE_EXTEND_ORIGIN}/workflow_runs`, ({ request }) => {
      state.calls += 1;
      if (state.calls > times && after) {
        return after({
          url: request.url,
          method: request.method,
          headers: request.headers,
          signal: request.signal,
        });
      }
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(new TextEncoder().encode('{"object":"list","data":['));
        },
      });
      return new HttpResponse(body, { status: 200, headers: { "content-type": "application/json" } });
    }),
  );
  return state;
}

describe("bodies the proxy refuses to pass on", () => {
  function serve(body: () => BodyInit, headers: Record<string, string> = {}): { calls: number } {
    const state = { calls: 0 };
    network.use(
      http.get(`${FAKE_EXTEND_ORIGIN}/workflow_runs`, () => {
        state.calls += 1;
        return new HttpResponse(body(), {
          status: 200,
          headers: { "content-type": "application/json", ...headers },
        });
      }),
    );
    return state;
  }

  it("refuses a body larger than 16 MiB without retrying", async () => {
    const chunk = new Uint8Array(1024 * 1024).fill(0x20);
    const tenant = isolatedTenant();
    const upstream = serve(
      () =>
        new ReadableStream<Uint8Array>({
          start(controller) {
            controller.enqueue(new TextEncoder().encode('{"object":"list","data":[]'));
            for (let i = 0; i < 17; i++) controller.enqueue(chunk);
            controller.enqueue(new TextEncoder().encode("}"));
            controller.close();
          },
        }),
    );
    const res = await call(tenant);
    expectErrorEnvelope(res, { status: 502, code: "UPSTREAM_INVALID_RESPONSE" });
    expect(upstream.calls).toBe(1);
  });

  it("refuses a body that is not UTF-8", async () => {
    const tenant = isolatedTenant();
    const upstream = serve(() => new Uint8Array([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]));
    const res = await call(tenant);
    expectErrorEnvelope(res, { status: 502, code: "UPSTREAM_INVALID_RESPONSE" });
    expect(upstream.calls).toBe(1);
  });

  it("refuses a body that ends inside a UTF-8 sequence", async () => {
    // Valid JSON up to the last bytes, so only a decoder that flushes at the end can notice.
    const head = new TextEncoder().encode('{"object":"list","data":[]}');
    const tenant = isolatedTenant();
    const upstream = serve(() => new Uint8Array([...head, 0xe8, 0xab]));
    const res = await call(tenant);
    expectErrorEnvelope(res, { status: 502, code: "UPSTREAM_INVALID_RESPONSE" });
    expect(upstream.calls).toBe(1);
  });

  it("refuses a page whose nextPageToken is the cursor it was asked with, and does not store it", async () => {
    // Followed as given, such a cursor would page a client forever.
    const token = "xK9+mL/Pq==:zW";
    const tenant = isolatedTenant();
    const page = (next?: string) => ({
      type: "status" as const,
      status: 200,
      body: JSON.stringify({ object: "list", data: [], ...(next ? { nextPageToken: next } : {}) }),
    });
    const path = `/workflow_runs?${new URLSearchParams({ nextPageToken: token })}`;
    tenant.fake.inject(page(token), 1);
    const res = await call(tenant, path);
    expectErrorEnvelope(res, { status: 502, code: "UPSTREAM_INVALID_RESPONSE" });
    expect(tenant.fake.listCalls).toHaveLength(1);
    tenant.fake.inject(page(), 1);
    const next = await call(tenant, path);
    expect(next.status).toBe(200);
    expect(next.headers.get("x-cache")).toBe("MISS");
    expect(tenant.fake.listCalls).toHaveLength(2);
  });

  it.each([
    ["a trailing newline", (text: string) => `${text}\n`],
    ["blank lines and spaces around it", (text: string) => `\r\n  ${text}  \r\n\t`],
  ])("serves and stores a list body with %s, which JSON allows", async (_, wrap) => {
    const text = '{"object":"list","data":[{"object":"workflow_run","id":"workflow_run_1"}]}';
    const tenant = isolatedTenant();
    const upstream = serve(() => wrap(text));
    const first = await call(tenant);
    expect(first.status, first.text).toBe(200);
    expect(first.text).toBe(text);
    const again = await call(tenant);
    expect(again.headers.get("x-cache")).toBe("HIT");
    expect(again.text).toBe(text);
    expect(upstream.calls).toBe(1);
  });

  it("passes a list body through byte for byte, whitespace and key order included", async () => {
    const text = '{ "nextPageToken" : "a+b/c=:d",\n  "data": [], "object": "list", "extra": {"é": 1.50} }';
    const tenant = isolatedTenant();
    serve(() => text);
    const res = await call(tenant);
    expect(res.status).toBe(200);
    expect(res.text).toBe(text);
  });
});

describe("the upstream key never reaches a client", () => {
  const scenarios: {
    name: string;
    path: string;
    method?: string;
    env?: Partial<Env>;
    faults?: [Fault, number][];
  }[] = [
    { name: "a page", path: "/workflow_runs?maxPageSize=50" },
    { name: "a HEAD", path: "/workflow_runs", method: "HEAD" },
    { name: "an OPTIONS", path: "/workflow_runs", method: "OPTIONS" },
    { name: "a POST", path: "/workflow_runs", method: "POST" },
    { name: "a 400", path: "/workflow_runs?maxPageSize=0&x=1" },
    { name: "a 404", path: "/nope" },
    { name: "health", path: "/healthz" },
    { name: "a broken setting", path: "/workflow_runs", env: { UPSTREAM_TIMEOUT_MS: "soon" } },
    {
      name: "a key Extend refuses",
      path: "/workflow_runs",
      env: { EXTEND_API_KEY: `${TEST_UPSTREAM_KEY}_old` },
    },
    ...FAULTS.map((f) => ({
      name: f.name,
      path: "/workflow_runs",
      faults: [[f.fault, f.times]] as [Fault, number][],
    })),
    {
      name: "an error body and header echoing the key",
      path: "/workflow_runs",
      faults: [
        [
          { type: "status", status: 503, body: TEST_UPSTREAM_KEY, headers: { "x-key": TEST_UPSTREAM_KEY } },
          ALWAYS,
        ],
      ],
    },
    {
      name: "a 401 body echoing the key",
      path: "/workflow_runs",
      faults: [[{ type: "status", status: 401, body: `{"message":"${TEST_UPSTREAM_KEY} revoked"}` }, ALWAYS]],
    },
  ];

  it.each(scenarios)("$name", async ({ path, method, env, faults }) => {
    const tenant = isolatedTenant();
    for (const [fault, times] of faults ?? []) tenant.fake.inject(fault, times);
    const res = await read(await tenant.call(path, { method: method ?? "GET", env: { ...FAST, ...env } }));
    expect(res.status).toBeGreaterThanOrEqual(200);
    expectNoUpstreamKey(res);
    expect(res.text).not.toContain("Bearer");
  });
});

describe("the cause of an upstream error", () => {
  it("is named in the request's log line and never sent to the caller", async () => {
    const tenant = isolatedTenant();
    tenant.fake.inject({ type: "reset" }, ALWAYS);
    const { result, lines } = await captureConsole(() => call(tenant, "/workflow_runs?maxPageSize=3"));
    expect(result.status).toBe(502);
    const body = JSON.parse(result.text) as Record<string, unknown>;
    expect(Object.keys(body).sort()).toEqual(["code", "message", "requestId", "retryable"]);
    expect(result.text).not.toMatch(/TypeError|cause/);
    const [record] = requestLines(lines);
    expect(record?.status).toBe(502);
    expect(record?.cause).toEqual(expect.stringMatching(/^\w*Error/));
  });
});
