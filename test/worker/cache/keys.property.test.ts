import { env } from "cloudflare:workers";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { STATUSES } from "../../../fake/extend.ts";
import { loadConfig } from "../../../src/app/config.ts";
import { pageCacheKey } from "../../../src/cache/keys.ts";
import { canonicalListQuery, ListWorkflowRunsQuery } from "../../../src/extend/schemas.ts";
import { TEST_UPSTREAM_KEY } from "../support/constants.ts";
import {
  LIST_DEFAULTS,
  LIST_PARAMS,
  type ListParam as Param,
  type ListQuery as Query,
} from "../support/list-oracle.ts";
import { freshWorkspaceId, isolatedTenant } from "../support/tenant.ts";

// The oracle for "same query" is written here from Extend's documented defaults, not taken from
// src/extend/schemas.ts: two queries are the same when they agree once the defaults are filled in.
const DEFAULTS: Query = LIST_DEFAULTS;
const KEY_SHAPE = /^v1:page:\d{4}-\d{2}-\d{2}:[0-9a-f]{32}:[0-9a-f]{64}$/;

const asciiUnit = fc.oneof(
  fc.constantFrom("+", "/", "=", ":", "&", "%", '"', "\\", "a", "b"),
  fc.integer({ min: 0x21, max: 0x7e }).map((code) => String.fromCharCode(code)),
);
// Small alphabets on purpose: they make near-identical queries (one character apart) common.
const idArb = fc.oneof(
  fc.string({ unit: fc.constantFrom("a", "b", "_"), minLength: 1, maxLength: 4 }),
  fc.string({ unit: asciiUnit, minLength: 1, maxLength: 255 }),
);
const cursorArb = fc.oneof(
  fc.string({ unit: fc.constantFrom("A", "B", "+", "/", "=", ":"), minLength: 1, maxLength: 6 }),
  fc.string({ unit: asciiUnit, minLength: 1, maxLength: 2048 }),
);
const fileNameArb = fc.oneof(
  fc.string({ unit: fc.constantFrom("a", " ", "é", "📄"), minLength: 1, maxLength: 4 }),
  fc
    .string({ unit: "grapheme", minLength: 1, maxLength: 300 })
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are refused by validation
    .filter((s) => !/[\u0000-\u001f\u007f]/.test(s) && s.length <= 1024),
);

const queryArb: fc.Arbitrary<Query> = fc.record(
  {
    status: fc.constantFrom(...STATUSES),
    workflowId: idArb,
    batchId: idArb,
    fileNameContains: fileNameArb,
    sortBy: fc.constantFrom("updatedAt", "createdAt"),
    sortDir: fc.constantFrom("asc", "desc"),
    nextPageToken: cursorArb,
    maxPageSize: fc.oneof(
      fc.constantFrom("1", "10", "11", "100"),
      fc.integer({ min: 1, max: 1000 }).map(String),
    ),
  },
  { requiredKeys: [] },
);

/** A query and a second one that is often equal, or equal but for one parameter. */
const queryPairArb = queryArb.chain((a) =>
  fc.oneof(
    fc.constant<[Query, Query]>([a, { ...a }]),
    queryArb.map((b): [Query, Query] => [a, b]),
    fc.tuple(fc.constantFrom(...LIST_PARAMS), queryArb).map(([param, other]): [Query, Query] => {
      const b: Query = { ...a };
      // An absent parameter is left out, never written as undefined.
      if (other[param] === undefined) delete b[param];
      else b[param] = other[param];
      return [a, b];
    }),
  ),
);

function sameQuery(a: Query, b: Query): boolean {
  const fa: Query = { ...DEFAULTS, ...a };
  const fb: Query = { ...DEFAULTS, ...b };
  return LIST_PARAMS.every((p) => fa[p] === fb[p]);
}

const config = loadConfig({ ...env, EXTEND_WORKSPACE_ID: freshWorkspaceId() });

function keyOf(query: Query, settings = config): Promise<string> {
  return pageCacheKey(settings, canonicalListQuery(ListWorkflowRunsQuery.parse(query)));
}

describe("page cache keys (property)", () => {
  it("are the same for any order of the parameters and with defaults written out", async () => {
    await fc.assert(
      fc.asyncProperty(
        queryArb.chain((query) => {
          const entries = Object.entries(query) as [Param, string][];
          return fc.tuple(
            fc.constant(query),
            fc.shuffledSubarray(entries, { minLength: entries.length, maxLength: entries.length }),
            fc.subarray(Object.entries(DEFAULTS) as [Param, string][]),
          );
        }),
        async ([query, shuffled, explicitDefaults]) => {
          const written = Object.fromEntries([
            ...explicitDefaults.filter(([name]) => query[name] === undefined),
            ...shuffled,
          ]);
          expect(await keyOf(written)).toBe(await keyOf(query));
        },
      ),
      { numRuns: 300 },
    );
  });

  it("differ exactly when the validated queries differ", async () => {
    await fc.assert(
      fc.asyncProperty(queryPairArb, async ([a, b]) => {
        const [ka, kb] = await Promise.all([keyOf(a), keyOf(b)]);
        expect(ka === kb, JSON.stringify([a, b])).toBe(sameQuery(a, b));
      }),
      { numRuns: 400 },
    );
  });

  it("fit KV's 512 bytes and hold neither the upstream key, a cursor nor a filter value", async () => {
    await fc.assert(
      fc.asyncProperty(queryArb, async (query) => {
        const key = await keyOf(query);
        expect(key).toMatch(KEY_SHAPE);
        expect(new TextEncoder().encode(key).byteLength).toBeLessThanOrEqual(512);
        expect(key).not.toContain(TEST_UPSTREAM_KEY);
        for (const value of [query.nextPageToken, query.workflowId, query.batchId, query.fileNameContains]) {
          // Values of 6+ characters: shorter ones may occur in 96 hex digits by chance.
          if (value !== undefined && value.length >= 6) expect(key).not.toContain(value);
        }
      }),
      { numRuns: 200 },
    );
  });

  it("differ for every change of upstream key, workspace, API version or origin", async () => {
    const tenantArb = fc.record({
      EXTEND_API_KEY: fc.constantFrom(TEST_UPSTREAM_KEY, "sk_live_other_key_1", "sk_live_other_key_2"),
      EXTEND_WORKSPACE_ID: fc.constantFrom(undefined, "ws_1", "ws_2", "ws_10"),
      EXTEND_API_VERSION: fc.constantFrom("2026-02-09", "2025-04-21"),
      EXTEND_API_BASE_URL: fc.constantFrom("https://api.extend.ai", "https://api.eu1.extend.ai"),
    });
    await fc.assert(
      fc.asyncProperty(queryArb, tenantArb, tenantArb, async (query, t1, t2) => {
        const [k1, k2] = await Promise.all([
          keyOf(query, loadConfig({ ...env, ...t1 })),
          keyOf(query, loadConfig({ ...env, ...t2 })),
        ]);
        const sameTenant = (Object.keys(t1) as (keyof typeof t1)[]).every((name) => t1[name] === t2[name]);
        expect(k1 === k2).toBe(sameTenant);
        expect(k1).not.toContain("sk_live_other_key");
      }),
      { numRuns: 200 },
    );
  });

  it("over HTTP: a query written in another order is a hit on the first one's entry", async () => {
    const httpQueryArb = queryArb.map(({ nextPageToken: _cursor, ...rest }) => rest);
    await fc.assert(
      fc.asyncProperty(
        httpQueryArb.chain((query) => {
          const entries = Object.entries(query) as [string, string][];
          return fc.tuple(
            fc.constant(entries),
            fc.shuffledSubarray(entries, { minLength: entries.length, maxLength: entries.length }),
          );
        }),
        async ([entries, shuffled]) => {
          const tenant = isolatedTenant();
          const first = await tenant.call(`/workflow_runs?${new URLSearchParams(entries)}`);
          const again = await tenant.call(`/workflow_runs?${new URLSearchParams(shuffled)}`);
          expect(first.status).toBe(200);
          expect(again.headers.get("x-cache")).toBe("HIT");
          expect(await again.text()).toBe(await first.text());
          expect(tenant.fake.listCalls).toHaveLength(1);
        },
      ),
      { numRuns: 15 },
    );
    // Thirty calls through workerd on shared cores: generous, never a timing assertion.
  }, 60_000);
});
