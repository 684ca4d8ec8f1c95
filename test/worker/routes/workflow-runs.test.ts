import { describe, expect, it } from "vitest";
import { type FakeExtend, listAll, STATUSES } from "../../../fake/extend.ts";
import { MAX_LISTED_QUERY_ISSUES } from "../../../src/app/errors.ts";
import { FAKE_EXTEND_ORIGIN, TEST_UPSTREAM_KEY, UPSTREAM_ONLY_HEADERS } from "../support/constants.ts";
import { expectErrorEnvelope, expectNoUpstreamKey, read } from "../support/envelope.ts";
import { LIST_DEFAULTS, LIST_PARAMS } from "../support/list-oracle.ts";
import { isolatedTenant } from "../support/tenant.ts";

const DEFAULTS: Record<string, string> = LIST_DEFAULTS;
/** A cursor in the shape Extend documents: base64 halves joined by ":", with + / = inside. */
const EXTEND_STYLE_TOKEN = "xK9mLPqRtN3vS8wF5hB2cQ==:zWvUxYjM4nKpL7aDgE9HbTcR2mAyX3/Q+CNkfBSw1dZ=";

function expectedUpstreamParams(explicit: Record<string, string>): [string, string][] {
  const merged = { ...DEFAULTS, ...explicit };
  return LIST_PARAMS.filter((name) => merged[name] !== undefined).map((name) => [name, merged[name] ?? ""]);
}

function onlyListCall(fake: FakeExtend) {
  expect(fake.requests).toHaveLength(1);
  const [call] = fake.listCalls;
  if (!call) throw new Error("no upstream list call");
  return call;
}

/** Asks the fake again for what it answered the proxy; its list answers are deterministic. */
async function replay(fake: FakeExtend, url: URL, headers: Record<string, string>): Promise<Response> {
  return fake.handle({
    url: url.toString(),
    method: "GET",
    headers: new Headers(headers),
    signal: new AbortController().signal,
  });
}

describe("GET /workflow_runs: accepted parameters", () => {
  const long = (n: number, ch = "a") => ch.repeat(n);
  const cases: { name: string; query: string; upstream: Record<string, string> }[] = [
    { name: "no parameters: defaults applied", query: "", upstream: {} },
    ...STATUSES.map((status) => ({
      name: `status=${status}`,
      query: `status=${status}`,
      upstream: { status },
    })),
    {
      name: "workflowId as Extend writes it",
      query: "workflowId=workflow_BMdfq_yWM3sT-ZzvCnA3f",
      upstream: { workflowId: "workflow_BMdfq_yWM3sT-ZzvCnA3f" },
    },
    {
      name: "workflowId of 255 characters",
      query: `workflowId=${long(255)}`,
      upstream: { workflowId: long(255) },
    },
    {
      name: "workflowId with an encoded & and = stays one value",
      query: "workflowId=wf%26maxPageSize%3D1000",
      upstream: { workflowId: "wf&maxPageSize=1000" },
    },
    { name: "workflowId with an encoded +", query: "workflowId=wf%2Bx", upstream: { workflowId: "wf+x" } },
    {
      name: "batchId as Extend writes it",
      query: "batchId=batch_7Ws31-F5",
      upstream: { batchId: "batch_7Ws31-F5" },
    },
    {
      name: "batchId of 255 characters",
      query: `batchId=${long(255, "b")}`,
      upstream: { batchId: long(255, "b") },
    },
    {
      name: "fileNameContains with a space as %20",
      query: "fileNameContains=my%20invoice",
      upstream: { fileNameContains: "my invoice" },
    },
    {
      name: "fileNameContains with a space as +",
      query: "fileNameContains=my+invoice",
      upstream: { fileNameContains: "my invoice" },
    },
    {
      name: "fileNameContains with an encoded & that looks like a parameter",
      query: "fileNameContains=a%26status%3DFAILED",
      upstream: { fileNameContains: "a&status=FAILED" },
    },
    {
      name: "fileNameContains with an encoded +",
      query: "fileNameContains=A%2BB",
      upstream: { fileNameContains: "A+B" },
    },
    {
      name: "fileNameContains with non-ASCII text",
      query: `fileNameContains=${encodeURIComponent("résumé 請求書 📄")}`,
      upstream: { fileNameContains: "résumé 請求書 📄" },
    },
    {
      name: "fileNameContains with % # ? and quotes",
      query: `fileNameContains=${encodeURIComponent(`100% "#1"?`)}`,
      upstream: { fileNameContains: `100% "#1"?` },
    },
    {
      name: "fileNameContains of 1024 characters",
      query: `fileNameContains=${long(1024, "é")}`,
      upstream: { fileNameContains: long(1024, "é") },
    },
    { name: "sortBy=createdAt", query: "sortBy=createdAt", upstream: { sortBy: "createdAt" } },
    { name: "sortBy=updatedAt", query: "sortBy=updatedAt", upstream: { sortBy: "updatedAt" } },
    { name: "sortDir=asc", query: "sortDir=asc", upstream: { sortDir: "asc" } },
    { name: "sortDir=desc", query: "sortDir=desc", upstream: { sortDir: "desc" } },
    { name: "maxPageSize=1", query: "maxPageSize=1", upstream: { maxPageSize: "1" } },
    { name: "maxPageSize=1000", query: "maxPageSize=1000", upstream: { maxPageSize: "1000" } },
    { name: "maxPageSize=999", query: "maxPageSize=999", upstream: { maxPageSize: "999" } },
    {
      name: "every parameter, in reverse order",
      query:
        "maxPageSize=3&sortDir=asc&sortBy=createdAt&fileNameContains=inv&batchId=batch_1&workflowId=workflow_1&status=FAILED",
      upstream: {
        status: "FAILED",
        workflowId: "workflow_1",
        batchId: "batch_1",
        fileNameContains: "inv",
        sortBy: "createdAt",
        sortDir: "asc",
        maxPageSize: "3",
      },
    },
  ];

  it.each(cases)("$name", async ({ query, upstream }) => {
    const tenant = isolatedTenant();
    const res = await read(await tenant.call(`/workflow_runs${query ? `?${query}` : ""}`));
    expect(res.status, res.text).toBe(200);
    const call = onlyListCall(tenant.fake);
    expect([...call.url.searchParams]).toEqual(expectedUpstreamParams(upstream));
    expect(call.url.search).toBe(`?${new URLSearchParams(expectedUpstreamParams(upstream)).toString()}`);
    expectNoUpstreamKey(res);
  });

  it("returns the runs Extend's filters select", async () => {
    const tenant = isolatedTenant();
    const res = await tenant.call(
      "/workflow_runs?status=PROCESSED&sortBy=createdAt&sortDir=asc&maxPageSize=4",
    );
    const body = (await res.json()) as { data: { id: string }[] };
    const expected = listAll(tenant.fake.runs, {
      status: "PROCESSED",
      sortBy: "createdAt",
      sortDir: "asc",
    }).slice(0, 4);
    expect(body.data.map((run) => run.id)).toEqual(expected.map((run) => run.id));
  });
});

describe("GET /workflow_runs: cursors", () => {
  it("walks every page with Extend's cursors, each forwarded byte-exact", async () => {
    const tenant = isolatedTenant();
    const seen: string[] = [];
    const tokens: string[] = [];
    let token: string | undefined;
    do {
      const query = new URLSearchParams({ status: "PROCESSED", maxPageSize: "3" });
      if (token) query.set("nextPageToken", token);
      const res = await tenant.call(`/workflow_runs?${query}`);
      expect(res.status).toBe(200);
      const page = (await res.json()) as { data: { id: string }[]; nextPageToken?: string };
      seen.push(...page.data.map((run) => run.id));
      token = page.nextPageToken;
      if (token) tokens.push(token);
    } while (token);
    expect(seen).toEqual(listAll(tenant.fake.runs, { status: "PROCESSED" }).map((run) => run.id));
    // The fake's cursors carry every character that a careless encoder would mangle.
    expect(tokens.join("")).toMatch(/\+/);
    expect(tokens.join("")).toMatch(/\//);
    expect(tokens.join("")).toMatch(/=/);
    expect(tokens.join("")).toMatch(/:/);
    const forwarded = tenant.fake.listCalls
      .slice(1)
      .map((call) => call.url.searchParams.getAll("nextPageToken"));
    expect(forwarded).toEqual(tokens.map((t) => [t]));
  });

  it.each([
    ["encodeURIComponent", encodeURIComponent(EXTEND_STYLE_TOKEN)],
    [
      "lower-case percent escapes",
      encodeURIComponent(EXTEND_STYLE_TOKEN).replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase()),
    ],
    ["only + and = escaped", EXTEND_STYLE_TOKEN.replaceAll("+", "%2B").replaceAll("=", "%3D")],
  ])("forwards an Extend-style cursor written with %s as one exact value", async (_name, written) => {
    const tenant = isolatedTenant();
    const res = await read(await tenant.call(`/workflow_runs?nextPageToken=${written}`));
    const call = onlyListCall(tenant.fake);
    expect(call.url.searchParams.getAll("nextPageToken")).toEqual([EXTEND_STYLE_TOKEN]);
    expect([...call.url.searchParams.keys()]).toEqual(["sortBy", "sortDir", "nextPageToken", "maxPageSize"]);
    // The fake did not issue this cursor, so it refuses it as Extend would; never with Extend's text.
    const body = expectErrorEnvelope(res, { status: 400, code: "INVALID_REQUEST", retryable: false });
    expect(body.message).not.toContain("Invalid nextPageToken for this query");
  });

  it("forwards a cursor of 2048 characters", async () => {
    const tenant = isolatedTenant();
    const token = `${"A".repeat(2000)}==:${"b/+".repeat(15)}`;
    expect(token).toHaveLength(2048);
    await tenant.call(`/workflow_runs?nextPageToken=${encodeURIComponent(token)}`);
    expect(onlyListCall(tenant.fake).url.searchParams.get("nextPageToken")).toBe(token);
  });
});

describe("GET /workflow_runs: rejected parameters (400, field named, no upstream call)", () => {
  const cases: { name: string; query: string; field: string }[] = [
    ...["processed", "Processed", "UNKNOWN", "", " PROCESSED", "PROCESSED%20", "PROCESSED,FAILED", "%00"].map(
      (value) => ({ name: `status=${JSON.stringify(value)}`, query: `status=${value}`, field: "status" }),
    ),
    { name: "status with no value", query: "status", field: "status" },
    ...(["workflowId", "batchId"] as const).flatMap((field) => [
      { name: `${field} empty`, query: `${field}=`, field },
      { name: `${field} with a space`, query: `${field}=wf%201`, field },
      { name: `${field} with a + (a space once decoded)`, query: `${field}=wf+1`, field },
      { name: `${field} non-ASCII`, query: `${field}=${encodeURIComponent("wörkflow")}`, field },
      { name: `${field} of 256 characters`, query: `${field}=${"a".repeat(256)}`, field },
      { name: `${field} with a newline`, query: `${field}=wf%0A1`, field },
      { name: `${field} with a NUL`, query: `${field}=wf%001`, field },
    ]),
    { name: "fileNameContains empty", query: "fileNameContains=", field: "fileNameContains" },
    {
      name: "fileNameContains of 1025 characters",
      query: `fileNameContains=${"a".repeat(1025)}`,
      field: "fileNameContains",
    },
    { name: "fileNameContains with a newline", query: "fileNameContains=a%0Ab", field: "fileNameContains" },
    { name: "fileNameContains with a NUL", query: "fileNameContains=a%00b", field: "fileNameContains" },
    { name: "fileNameContains with DEL", query: "fileNameContains=a%7Fb", field: "fileNameContains" },
    { name: "fileNameContains with a tab", query: "fileNameContains=a%09b", field: "fileNameContains" },
    ...["updated_at", "UPDATEDAT", "name", ""].map((value) => ({
      name: `sortBy=${JSON.stringify(value)}`,
      query: `sortBy=${value}`,
      field: "sortBy",
    })),
    ...["ASC", "descending", "1", ""].map((value) => ({
      name: `sortDir=${JSON.stringify(value)}`,
      query: `sortDir=${value}`,
      field: "sortDir",
    })),
    { name: "nextPageToken empty", query: "nextPageToken=", field: "nextPageToken" },
    { name: "nextPageToken with a space", query: "nextPageToken=abc%20def", field: "nextPageToken" },
    {
      name: "nextPageToken with a raw + (decodes to a space)",
      query: "nextPageToken=abc+def",
      field: "nextPageToken",
    },
    {
      name: "nextPageToken of 2049 characters",
      query: `nextPageToken=${"a".repeat(2049)}`,
      field: "nextPageToken",
    },
    {
      name: "nextPageToken of 100,000 characters",
      query: `nextPageToken=${"a".repeat(100_000)}`,
      field: "nextPageToken",
    },
    {
      name: "nextPageToken non-ASCII",
      query: `nextPageToken=${encodeURIComponent("tökén")}`,
      field: "nextPageToken",
    },
    { name: "nextPageToken with a control character", query: "nextPageToken=abc%01", field: "nextPageToken" },
    ...[
      "0",
      "1001",
      "05",
      "+5",
      "%2B5",
      "5.0",
      "1e2",
      "%205",
      "5%20",
      "-1",
      "abc",
      "",
      "0x10",
      "10000",
      "99999999999999999999",
      "٥",
    ].map((value) => ({
      name: `maxPageSize=${JSON.stringify(value)}`,
      query: `maxPageSize=${value}`,
      field: "maxPageSize",
    })),
    { name: "unknown parameter", query: "foo=1", field: "foo" },
    { name: "unknown parameter next to valid ones", query: "status=FAILED&pageSize=5", field: "pageSize" },
    { name: "parameter name in the wrong case", query: "Status=FAILED", field: "Status" },
    { name: "snake_case parameter name", query: "max_page_size=5", field: "max_page_size" },
    { name: "an attempt to pass an upstream key", query: "api_key=sk_live_x", field: "api_key" },
    { name: "unknown parameter without a value", query: "debug", field: "debug" },
    { name: "status repeated with one value", query: "status=FAILED&status=FAILED", field: "status" },
    { name: "status repeated with two values", query: "status=FAILED&status=PROCESSED", field: "status" },
    { name: "maxPageSize repeated", query: "maxPageSize=5&maxPageSize=6", field: "maxPageSize" },
    { name: "nextPageToken repeated", query: "nextPageToken=a&nextPageToken=b", field: "nextPageToken" },
    { name: "workflowId repeated, once empty", query: "workflowId=wf_1&workflowId=", field: "workflowId" },
    { name: "unknown parameter repeated", query: "x=1&x=2", field: "x" },
    { name: "status with broken percent-encoding", query: "status=%ZZ", field: "status" },
    {
      name: "fileNameContains that is not UTF-8",
      query: "fileNameContains=%ED%A0%80",
      field: "fileNameContains",
    },
    { name: "fileNameContains with a stray %", query: "fileNameContains=100%", field: "fileNameContains" },
    { name: "a parameter name with broken percent-encoding", query: "%ZZ=1", field: "%ZZ" },
    { name: "a parameter without a name", query: "=FAILED", field: "" },
    { name: "a parameter without a name or value", query: "maxPageSize=2&=", field: "" },
  ];

  it.each(cases)("$name", async ({ query, field }) => {
    const tenant = isolatedTenant();
    const res = await read(await tenant.call(`/workflow_runs?${query}`));
    const body = expectErrorEnvelope(res, { status: 400, code: "INVALID_REQUEST", retryable: false });
    expect(body.details?.map((d) => d.field)).toContain(field);
    for (const detail of body.details ?? []) expect(detail.message).toMatch(/\S/);
    expect(tenant.fake.requests).toHaveLength(0);
    expect(res.headers.get("cache-control")).toMatch(/no-store/);
  });

  it("names every offending field at once", async () => {
    const tenant = isolatedTenant();
    const res = await read(
      await tenant.call("/workflow_runs?status=nope&maxPageSize=0&extra=1&sortDir=up&sortDir=down"),
    );
    const body = expectErrorEnvelope(res, { status: 400, code: "INVALID_REQUEST" });
    expect(body.details?.map((d) => d.field).sort()).toEqual(["extra", "maxPageSize", "sortDir", "status"]);
    expect(tenant.fake.requests).toHaveLength(0);
  });

  it.each([
    ["unknown parameters", (i: number) => `p${i}=1`],
    ["parameters that are not UTF-8", (i: number) => `p${i}=%ZZ`],
  ])(
    "names the first few of thousands of %s: the 400 is not the query echoed many times over",
    async (_name, part) => {
      const tenant = isolatedTenant();
      const query = Array.from({ length: 2000 }, (_, i) => part(i)).join("&");
      const res = await read(await tenant.call(`/workflow_runs?${query}`));
      const body = expectErrorEnvelope(res, { status: 400, code: "INVALID_REQUEST" });
      expect(body.details?.[0]?.field).toBe("p0");
      expect(body.details?.length).toBeLessThanOrEqual(MAX_LISTED_QUERY_ISSUES);
      expect(body.message).toContain(`and ${2000 - (body.details?.length ?? 0)} more`);
      expect(res.text.length).toBeLessThan(query.length);
      expect(tenant.fake.requests).toHaveLength(0);
    },
  );
});

describe("GET /workflow_runs: what Extend receives", () => {
  const clientHeaders: Record<string, string> = {
    authorization: "Bearer client-token-should-stay-here",
    cookie: "session=client-cookie-value",
    "x-forwarded-for": "203.0.113.9",
    "x-forwarded-host": "evil.example",
    "x-real-ip": "203.0.113.10",
    forwarded: "for=203.0.113.11",
    "x-extend-api-version": "1999-01-01",
    "x-extend-workspace-id": "ws_client_chosen",
    "x-extend-anything": "client",
    "user-agent": "client-agent/1.0",
    accept: "text/html",
    "accept-encoding": "br",
    "x-request-id": "req_client_supplied",
    "cf-connecting-ip": "203.0.113.12",
    origin: "https://app.example.com",
    referer: "https://app.example.com/secret-page",
    "if-none-match": '"client-etag"',
  };

  function expectExactUpstreamHeaders(
    fake: FakeExtend,
    workspaceId: string | undefined,
    version = "2026-02-09",
  ) {
    const call = onlyListCall(fake);
    const expected: Record<string, string> = {
      accept: "application/json",
      authorization: `Bearer ${TEST_UPSTREAM_KEY}`,
      "x-extend-api-version": version,
      "user-agent": "extend-runs-proxy",
      ...(workspaceId ? { "x-extend-workspace-id": workspaceId } : {}),
    };
    expect(call.headers).toEqual(expected);
    expect(call.method).toBe("GET");
  }

  it("sends the key, version and workspace from configuration, and no client header", async () => {
    const tenant = isolatedTenant({ workspaceId: "ws_configured_1" });
    const res = await tenant.call("/workflow_runs?maxPageSize=2", { headers: clientHeaders });
    expect(res.status).toBe(200);
    expectExactUpstreamHeaders(tenant.fake, "ws_configured_1");
    const seen = JSON.stringify({
      ...onlyListCall(tenant.fake).headers,
      url: onlyListCall(tenant.fake).url.toString(),
    });
    for (const value of Object.values(clientHeaders)) expect(seen).not.toContain(value);
  });

  it("sends no workspace header when EXTEND_WORKSPACE_ID is unset", async () => {
    const tenant = isolatedTenant({ workspaceId: null });
    const res = await tenant.call("/workflow_runs?maxPageSize=3&fileNameContains=no-workspace", {
      headers: clientHeaders,
    });
    expect(res.status).toBe(200);
    expectExactUpstreamHeaders(tenant.fake, undefined);
  });

  it("treats an empty EXTEND_WORKSPACE_ID as unset", async () => {
    const tenant = isolatedTenant({ workspaceId: null });
    await tenant.call("/workflow_runs?maxPageSize=3&fileNameContains=empty-workspace", {
      env: { EXTEND_WORKSPACE_ID: "" },
    });
    expectExactUpstreamHeaders(tenant.fake, undefined);
  });

  it("sends the configured EXTEND_API_VERSION", async () => {
    const tenant = isolatedTenant({ apiVersion: "2025-04-21", env: { EXTEND_API_VERSION: "2025-04-21" } });
    const res = await tenant.call("/workflow_runs");
    expect(res.status).toBe(200);
    expectExactUpstreamHeaders(tenant.fake, tenant.env.EXTEND_WORKSPACE_ID, "2025-04-21");
  });

  it.each([
    ["a path prefix", `${FAKE_EXTEND_ORIGIN}/api/v1`, "/api/v1/workflow_runs"],
    ["a path prefix with a trailing slash", `${FAKE_EXTEND_ORIGIN}/api/v1/`, "/api/v1/workflow_runs"],
    ["a bare origin with a trailing slash", `${FAKE_EXTEND_ORIGIN}/`, "/workflow_runs"],
    ["a query string on the base URL (dropped)", `${FAKE_EXTEND_ORIGIN}/p?token=x`, "/p/workflow_runs"],
  ])("respects EXTEND_API_BASE_URL with %s", async (_name, base, path) => {
    const tenant = isolatedTenant();
    const res = await tenant.call("/workflow_runs?maxPageSize=2", { env: { EXTEND_API_BASE_URL: base } });
    expect(res.status).toBe(200);
    const call = onlyListCall(tenant.fake);
    expect(call.url.origin).toBe(FAKE_EXTEND_ORIGIN);
    expect(call.url.pathname).toBe(path);
    expect([...call.url.searchParams.keys()]).toEqual(["sortBy", "sortDir", "maxPageSize"]);
  });

  it("reaches another region's origin", async () => {
    const origin = "https://api.eu1.fake-extend.test";
    const tenant = isolatedTenant({ origin });
    const res = await tenant.call("/workflow_runs");
    expect(res.status).toBe(200);
    expect(onlyListCall(tenant.fake).url.origin).toBe(origin);
  });
});

describe("GET /workflow_runs: responses", () => {
  it.each([
    ["a first page", "maxPageSize=5"],
    ["a full page of 1000", "maxPageSize=1000"],
    ["an empty page", "fileNameContains=no-such-file-anywhere"],
    ["runs with non-ASCII file names", `fileNameContains=${encodeURIComponent("é")}`],
  ])("passes Extend's body through unchanged: %s", async (_name, query) => {
    const tenant = isolatedTenant();
    const res = await read(await tenant.call(`/workflow_runs?${query}`));
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    const call = onlyListCall(tenant.fake);
    const sent = await replay(tenant.fake, call.url, call.headers);
    expect(res.text).toBe(await sent.text());
    sent.headers.forEach((_value, name) => {
      if (["content-type", "content-length", "date"].includes(name)) return;
      expect(res.headers.get(name), `upstream header ${name}`).toBeNull();
    });
    for (const name of UPSTREAM_ONLY_HEADERS) expect(res.headers.get(name), name).toBeNull();
    expect(res.headers.get("x-request-id")).toMatch(/\S/);
    expectNoUpstreamKey(res);
  });

  it("passes runs through with null usage, absent totalCredits and fractional credits intact", async () => {
    const tenant = isolatedTenant({ dataset: { size: 300, seed: 11 } });
    const res = await tenant.call("/workflow_runs?maxPageSize=300");
    const body = (await res.json()) as {
      data: { usage: { credits: number; totalCredits?: number } | null }[];
    };
    expect(body.data).toHaveLength(300);
    expect(body.data.some((run) => run.usage === null)).toBe(true);
    expect(body.data.some((run) => run.usage !== null && run.usage.totalCredits === undefined)).toBe(true);
    expect(body.data.some((run) => run.usage !== null && !Number.isInteger(run.usage.credits))).toBe(true);
    expect(body).toEqual(
      JSON.parse(
        JSON.stringify({ object: "list", data: listAll(tenant.fake.runs), nextPageToken: undefined }),
      ),
    );
  });
});

describe("methods and paths", () => {
  it("answers HEAD like GET, without a body", async () => {
    const tenant = isolatedTenant();
    const res = await tenant.call("/workflow_runs?maxPageSize=2", { method: "HEAD" });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("");
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    expect(onlyListCall(tenant.fake).method).toBe("GET");
  });

  it("rejects a HEAD with a bad query like GET, without a body and without an upstream call", async () => {
    const tenant = isolatedTenant();
    const res = await tenant.call("/workflow_runs?maxPageSize=0", { method: "HEAD" });
    expect(res.status).toBe(400);
    expect(await res.text()).toBe("");
    expect(tenant.fake.requests).toHaveLength(0);
  });

  it("answers OPTIONS without calling Extend", async () => {
    const tenant = isolatedTenant();
    const res = await tenant.call("/workflow_runs", { method: "OPTIONS" });
    expect([200, 204]).toContain(res.status);
    expect(await res.text()).toBe("");
    const allow = res.headers.get("allow");
    if (allow !== null) {
      expect(allow).toMatch(/\bGET\b/);
      expect(allow).not.toMatch(/\bPOST\b/);
    }
    expect(tenant.fake.requests).toHaveLength(0);
  });

  it.each(["POST", "PUT", "DELETE", "PATCH"])("answers %s with a JSON 405 and Allow", async (method) => {
    const tenant = isolatedTenant();
    const res = await read(await tenant.call("/workflow_runs?maxPageSize=2", { method }));
    expectErrorEnvelope(res, { status: 405, code: "METHOD_NOT_ALLOWED", retryable: false });
    const allow = (res.headers.get("allow") ?? "").split(",").map((m) => m.trim());
    expect(allow).toContain("GET");
    expect(allow).toContain("HEAD");
    expect(allow).not.toContain(method);
    expect(tenant.fake.requests).toHaveLength(0);
  });

  it.each(["/", "/nope", "/workflow_runs/run_1", "/WORKFLOW_RUNS", "/v1/workflow_runs", "/workflow_runs%00"])(
    "answers an unknown path (%s) with a JSON 404",
    async (path) => {
      const tenant = isolatedTenant();
      const res = await read(await tenant.call(path));
      expectErrorEnvelope(res, { status: 404, code: "NOT_FOUND", retryable: false });
      expect(tenant.fake.requests).toHaveLength(0);
    },
  );

  it("keeps a caller's well-formed x-request-id and returns it", async () => {
    const tenant = isolatedTenant();
    const res = await read(
      await tenant.call("/workflow_runs?maxPageSize=0", {
        headers: { "x-request-id": "req_client-42" },
      }),
    );
    const body = expectErrorEnvelope(res, { status: 400, code: "INVALID_REQUEST" });
    expect(body.requestId).toBe("req_client-42");
  });

  it("replaces a malformed x-request-id with its own", async () => {
    const tenant = isolatedTenant();
    const res = await read(
      await tenant.call("/workflow_runs?maxPageSize=0", {
        headers: { "x-request-id": "bad id <script>" },
      }),
    );
    const body = expectErrorEnvelope(res, { status: 400, code: "INVALID_REQUEST" });
    expect(body.requestId).not.toContain("script");
  });
});
