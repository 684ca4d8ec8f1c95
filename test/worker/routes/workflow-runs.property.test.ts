import fc from "fast-check";
import { HttpResponse, http } from "msw";
import { describe, expect, it } from "vitest";
import { STATUSES } from "../../../fake/extend.ts";
import { FAKE_EXTEND_ORIGIN, TEST_UPSTREAM_KEY } from "../support/constants.ts";
import type { ErrorEnvelope } from "../support/envelope.ts";
import {
  LIST_DEFAULTS,
  LIST_PARAMS,
  type ListParam as Param,
  type ListQuery as Query,
} from "../support/list-oracle.ts";
import { network } from "../support/setup.ts";
import { isolatedTenant } from "../support/tenant.ts";

// The oracle below is written from Extend's documentation, independently of src/extend/schemas.ts.

/** Generous: a property makes a hundred or more calls, and the suite shares two cores with others. */
const PROPERTY_TIMEOUT_MS = 120_000;
const DEFAULTS: Query = LIST_DEFAULTS;

// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it detects
const CONTROL = /[\u0000-\u001f\u007f]/;
const PRINTABLE_ASCII = /^[\x21-\x7e]+$/;

function isValid(name: Param, value: string): boolean {
  switch (name) {
    case "status":
      return (STATUSES as readonly string[]).includes(value);
    case "workflowId":
    case "batchId":
      return value.length <= 255 && PRINTABLE_ASCII.test(value);
    case "fileNameContains":
      return value.length >= 1 && value.length <= 1024 && !CONTROL.test(value);
    case "sortBy":
      return value === "updatedAt" || value === "createdAt";
    case "sortDir":
      return value === "asc" || value === "desc";
    case "nextPageToken":
      return value.length <= 2048 && PRINTABLE_ASCII.test(value);
    case "maxPageSize":
      return /^(?:[1-9]\d{0,2}|1000)$/.test(value);
  }
}

/** Printable ASCII, biased towards the characters that break naive query building. */
const asciiUnit = fc.oneof(
  fc.constantFrom("+", "/", "=", ":", "&", "?", "#", "%", ";", ",", '"', "'", "<", "\\"),
  fc.integer({ min: 0x21, max: 0x7e }).map((code) => String.fromCharCode(code)),
);
const idArb = fc.string({ unit: asciiUnit, minLength: 1, maxLength: 80 });
const cursorArb = fc.oneof(
  fc.string({ unit: asciiUnit, minLength: 1, maxLength: 200 }),
  fc
    .tuple(
      fc.base64String({ minLength: 4, maxLength: 40 }),
      fc.base64String({ minLength: 4, maxLength: 120 }),
    )
    .filter(([a, b]) => a.length > 0 && b.length > 0)
    .map(([a, b]) => `${a}:${b}`),
  fc.constant(`${"Q".repeat(2040)}+/=:abcd`),
);
const fileNameArb = fc
  .string({
    unit: fc.oneof(
      fc.constantFrom(" ", "&", "+", "=", "%", "#", "é", "請", "📄", "\u00a0"),
      fc.string({ unit: "grapheme", minLength: 1, maxLength: 1 }),
    ),
    minLength: 1,
    maxLength: 60,
  })
  .filter((s) => s.length >= 1 && s.length <= 1024 && !CONTROL.test(s));

const validQueryArb: fc.Arbitrary<Query> = fc.record(
  {
    status: fc.constantFrom(...STATUSES),
    workflowId: idArb,
    batchId: idArb,
    fileNameContains: fileNameArb,
    sortBy: fc.constantFrom("updatedAt", "createdAt"),
    sortDir: fc.constantFrom("asc", "desc"),
    nextPageToken: cursorArb,
    maxPageSize: fc.integer({ min: 1, max: 1000 }).map(String),
  },
  { requiredKeys: [] },
);

/** How a client may write the same query: order and percent-encoding style vary, meaning does not. */
type Entries = [string, string][];
const encodings: Record<string, (entries: Entries) => string> = {
  urlSearchParams: (entries) => new URLSearchParams(entries).toString(),
  encodeURIComponent: (entries) =>
    entries.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join("&"),
};

function writtenQueryArb(query: Query): fc.Arbitrary<string> {
  const entries = Object.entries(query) as Entries;
  return fc
    .tuple(
      fc.shuffledSubarray(entries, { minLength: entries.length, maxLength: entries.length }),
      fc.constantFrom(...Object.keys(encodings)),
    )
    .map(([shuffled, encoding]) => (encodings[encoding] ?? encodings.urlSearchParams)?.(shuffled) ?? "");
}

function canonical(query: Query): Entries {
  const merged: Query = { ...DEFAULTS, ...query };
  return LIST_PARAMS.flatMap((name) => {
    const value = merged[name];
    return value === undefined ? [] : [[name, value] as [string, string]];
  });
}

interface Received {
  url: URL;
  headers: Record<string, string>;
}

/**
 * An upstream that records what reached it and answers every call with an empty page. Registered
 * after the run's tenant, it answers in the place of the tenant's fake.
 */
function recordingUpstream(): Received[] {
  const received: Received[] = [];
  network.use(
    http.all(`${FAKE_EXTEND_ORIGIN}/*`, ({ request }) => {
      const headers: Record<string, string> = {};
      request.headers.forEach((value, name) => {
        headers[name] = value;
      });
      received.push({ url: new URL(request.url), headers });
      return HttpResponse.json({ object: "list", data: [] });
    }),
  );
  return received;
}

describe("query parsing properties", () => {
  it(
    "any accepted query reaches Extend once, canonically, with the cursor byte-exact",
    async () => {
      await fc.assert(
        fc.asyncProperty(
          validQueryArb.chain((query) => fc.tuple(fc.constant(query), writtenQueryArb(query))),
          async ([query, written]) => {
            const tenant = isolatedTenant();
            const received = recordingUpstream();
            const res = await tenant.call(`/workflow_runs?${written}`);
            expect(res.status, await res.clone().text()).toBe(200);
            expect(received).toHaveLength(1);
            const [upstream] = received;
            if (!upstream) return;
            const expected = canonical(query);
            expect(upstream.url.pathname).toBe("/workflow_runs");
            expect([...upstream.url.searchParams]).toEqual(expected);
            expect(upstream.url.search).toBe(`?${new URLSearchParams(expected).toString()}`);
            expect(upstream.url.searchParams.getAll("nextPageToken")).toEqual(
              query.nextPageToken === undefined ? [] : [query.nextPageToken],
            );
            expect(await res.json()).toEqual({ object: "list", data: [] });
          },
        ),
        { numRuns: 150 },
      );
    },
    PROPERTY_TIMEOUT_MS,
  );

  const unknownNameArb = fc
    .string({ unit: fc.oneof(asciiUnit, fc.constantFrom(" ", "é")), minLength: 1, maxLength: 20 })
    .filter((name) => !(LIST_PARAMS as readonly string[]).includes(name));

  const invalidValueArb: Record<Param, fc.Arbitrary<string>> = {
    status: fc.oneof(
      fc.constantFrom("", "processed", "Processed", "DONE", " FAILED", "FAILED ", "PROCESSED,FAILED"),
      fc.string({ maxLength: 12 }),
    ),
    workflowId: fc.oneof(
      fc.constantFrom("", "a b", "wörk", "wf\u0000", "wf\n1"),
      fc.string({ unit: asciiUnit, minLength: 256, maxLength: 300 }),
      fc.string({ unit: "grapheme", maxLength: 10 }),
    ),
    batchId: fc.oneof(
      fc.constantFrom("", "b 1", "bätch", "b\t"),
      fc.string({ unit: asciiUnit, minLength: 256, maxLength: 300 }),
    ),
    fileNameContains: fc.oneof(
      fc.constantFrom("", "a\u0000", "a\nb", "\u007f", "tab\there"),
      fc.string({ unit: "grapheme-ascii", minLength: 1025, maxLength: 1100 }),
    ),
    sortBy: fc.oneof(fc.constantFrom("", "updated_at", "CREATEDAT", "id"), fc.string({ maxLength: 12 })),
    sortDir: fc.oneof(fc.constantFrom("", "ASC", "Desc", "up"), fc.string({ maxLength: 6 })),
    nextPageToken: fc.oneof(
      fc.constantFrom("", "a b", "tök", "x\u0001"),
      fc.string({ unit: asciiUnit, minLength: 2049, maxLength: 2100 }),
    ),
    maxPageSize: fc.oneof(
      fc.constantFrom("", "0", "1001", "05", "+5", "5.0", "1e2", " 5", "5 ", "-1", "abc", "0x10", "٥", "１"),
      fc.integer({ min: 1001, max: 2 ** 40 }).map(String),
      fc.string({ maxLength: 6 }),
    ),
  };
  const paramArb = fc.constantFrom(...LIST_PARAMS);

  type Mutation =
    | { kind: "unknown"; name: string; value: string }
    | { kind: "repeated"; name: Param; value: string }
    | { kind: "invalid"; name: Param; value: string };

  const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
    fc.record({
      kind: fc.constant("unknown" as const),
      name: unknownNameArb,
      value: fc.string({ maxLength: 10 }),
    }),
    paramArb.chain((name) =>
      fc.record({
        kind: fc.constant("repeated" as const),
        name: fc.constant(name),
        value: fc.oneof(invalidValueArb[name], fc.string({ maxLength: 10 })),
      }),
    ),
    paramArb.chain((name) =>
      fc.record({
        kind: fc.constant("invalid" as const),
        name: fc.constant(name),
        value: invalidValueArb[name].filter((value) => !isValid(name, value)),
      }),
    ),
  );

  it(
    "any query with an unknown, repeated or invalid parameter is a 400 naming it, with no upstream call",
    async () => {
      await fc.assert(
        fc.asyncProperty(validQueryArb, mutationArb, fc.boolean(), async (query, mutation, first) => {
          const tenant = isolatedTenant();
          const received = recordingUpstream();
          const entries = Object.entries(query) as Entries;
          if (mutation.kind === "invalid") {
            const index = entries.findIndex(([name]) => name === mutation.name);
            if (index >= 0) entries.splice(index, 1);
            entries.splice(first ? 0 : entries.length, 0, [mutation.name, mutation.value]);
          } else if (mutation.kind === "repeated") {
            const existing = query[mutation.name];
            if (existing === undefined) entries.push([mutation.name, mutation.value]);
            entries.splice(first ? 0 : entries.length, 0, [mutation.name, existing ?? mutation.value]);
          } else {
            entries.splice(first ? 0 : entries.length, 0, [mutation.name, mutation.value]);
          }
          const res = await tenant.call(`/workflow_runs?${new URLSearchParams(entries)}`);
          const text = await res.text();
          expect(res.status, text).toBe(400);
          const body = JSON.parse(text) as ErrorEnvelope;
          expect(body.code).toBe("INVALID_REQUEST");
          expect(body.details?.map((d) => d.field)).toContain(mutation.name);
          expect(res.headers.get("x-request-id")).toBe(body.requestId);
          expect(received).toHaveLength(0);
        }),
        { numRuns: 200 },
      );
    },
    PROPERTY_TIMEOUT_MS,
  );

  const clientHeaderNameArb = fc.oneof(
    fc.constantFrom(
      "authorization",
      "proxy-authorization",
      "cookie",
      "x-api-key",
      "x-forwarded-for",
      "x-forwarded-host",
      "x-forwarded-proto",
      "forwarded",
      "x-real-ip",
      "true-client-ip",
      "x-extend-api-version",
      "x-extend-workspace-id",
      "user-agent",
      "accept",
      "accept-language",
      "x-request-id",
      "origin",
      "referer",
      "traceparent",
      "x-http-method-override",
      "x-original-url",
      "x-rewrite-url",
    ),
    fc.stringMatching(/^[a-z][a-z0-9-]{0,15}$/).map((suffix) => `x-extend-${suffix}`),
    fc.stringMatching(/^x-[a-z][a-z0-9-]{0,15}$/),
  );
  const headerValueArb = fc.oneof(
    fc.constantFrom(
      "Bearer sk_client_value",
      "session=abc",
      "203.0.113.7",
      "1999-01-01",
      "ws_client",
      "evil.example",
    ),
    fc.stringMatching(/^[\x21-\x7e][\x20-\x7e]{0,40}[\x21-\x7e]$/),
  );

  it(
    "no client header changes what Extend receives",
    async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.dictionary(clientHeaderNameArb, headerValueArb, { maxKeys: 8 }),
          fc.boolean(),
          async (headers, withWorkspace) => {
            // Without a workspace of its own, a query of its own keeps the cache out of the way.
            const tenant = isolatedTenant(withWorkspace ? {} : { workspaceId: null });
            const received = recordingUpstream();
            const res = await tenant.call(
              `/workflow_runs?maxPageSize=7&fileNameContains=${encodeURIComponent(crypto.randomUUID())}`,
              { headers },
            );
            expect(res.status, await res.clone().text()).toBe(200);
            expect(received).toHaveLength(1);
            const [upstream] = received;
            if (!upstream) return;
            expect(upstream.headers).toEqual({
              accept: "application/json",
              authorization: `Bearer ${TEST_UPSTREAM_KEY}`,
              "x-extend-api-version": "2026-02-09",
              "user-agent": "extend-runs-proxy",
              ...(withWorkspace ? { "x-extend-workspace-id": tenant.env.EXTEND_WORKSPACE_ID } : {}),
            });
            expect([...upstream.url.searchParams.keys()]).toEqual([
              "fileNameContains",
              "sortBy",
              "sortDir",
              "maxPageSize",
            ]);
          },
        ),
        { numRuns: 80 },
      );
    },
    PROPERTY_TIMEOUT_MS,
  );
});
