import { createExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import scalarStandalone from "../../../node_modules/@scalar/api-reference/dist/browser/standalone.js?raw";
import scalarPackage from "../../../node_modules/@scalar/api-reference/package.json";
import packageJson from "../../../package.json";
import readme from "../../../README.md?raw";
import configSource from "../../../src/app/config.ts?raw";
import { ERROR_CODES, ERRORS, type ErrorCode } from "../../../src/app/errors.ts";
import { ListWorkflowRunsQuery, WORKFLOW_RUN_STATUSES } from "../../../src/extend/schemas.ts";
import { app as worker } from "../../../src/index.ts";
import { sha256Hex } from "../../../src/lib/digest.ts";
import { PUBLIC_PATHS, ROUTE_ACCESS } from "../../../src/routes/access.ts";
import {
  DOCS_PATH,
  OPENAPI_PATH,
  SCALAR_BUNDLE_PATH,
  SCALAR_BUNDLE_PREAMBLE,
  SECURITY_SCHEMES,
} from "../../../src/routes/docs.ts";
import { StatsQuery } from "../../../src/stats/schemas.ts";
import { callProxy, json } from "../support/proxy.ts";
import { isolatedTenant } from "../support/tenant.ts";

/** The slice of JSON Schema the proxy's parameters use. */
interface ParamSchema {
  $ref?: string;
  type?: string;
  enum?: string[];
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  minimum?: number;
  maximum?: number;
  default?: unknown;
}

interface Parameter {
  name: string;
  in: string;
  required?: boolean;
  description?: string;
  schema: ParamSchema;
}

interface Response {
  $ref?: string;
  description: string;
  content?: Record<string, { schema: { $ref?: string } }>;
  headers?: Record<string, { $ref: string }>;
}

interface Operation {
  summary?: string;
  description?: string;
  parameters?: Parameter[];
  security?: Record<string, string[]>[];
  responses: Record<string, Response>;
}

interface OpenApiDocument {
  openapi: string;
  info: { title: string; version: string; description: string };
  servers: { url: string }[];
  security: Record<string, string[]>[];
  paths: Record<string, Record<string, Operation>>;
  components: {
    schemas: Record<string, { type?: string; properties?: Record<string, ParamSchema>; required?: string[] }>;
    securitySchemes: Record<string, unknown>;
    headers: Record<string, unknown>;
  };
}

const DATA_PATHS = ["/workflow_runs", "/stats"] as const;

async function fetchDocument(origin?: string): Promise<OpenApiDocument> {
  const res = origin
    ? await worker.fetch(new Request(`${origin}${OPENAPI_PATH}`), env, createExecutionContext())
    : await callProxy(OPENAPI_PATH);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toMatch(/^application\/json/);
  return json<OpenApiDocument>(res);
}

function operation(doc: OpenApiDocument, path: string): Operation {
  const op = doc.paths[path]?.get;
  if (!op) throw new Error(`the document has no GET ${path}`);
  return op;
}

function resolve(doc: OpenApiDocument, schema: ParamSchema): ParamSchema {
  if (!schema.$ref) return schema;
  const name = schema.$ref.replace("#/components/schemas/", "");
  const target = doc.components.schemas[name];
  if (!target) throw new Error(`dangling $ref ${schema.$ref}`);
  return target as ParamSchema;
}

/** Whether a query value satisfies what the document says about the parameter. */
function documentAccepts(schema: ParamSchema, value: string): boolean {
  if (schema.enum) return schema.enum.includes(value);
  if (schema.type === "integer") {
    if (!/^-?\d+$/.test(value)) return false;
    const n = Number(value);
    return (schema.minimum ?? -Infinity) <= n && n <= (schema.maximum ?? Infinity);
  }
  const length = [...value].length;
  if (schema.minLength !== undefined && length < schema.minLength) return false;
  if (schema.maxLength !== undefined && length > schema.maxLength) return false;
  // JSON Schema patterns are ECMA-262 regular expressions with Unicode semantics.
  if (schema.pattern !== undefined && !new RegExp(schema.pattern, "u").test(value)) return false;
  return true;
}

/** The schema that validates each data route's query, as the route module declares it. */
const QUERY_VALIDATORS = { "/workflow_runs": ListWorkflowRunsQuery, "/stats": StatsQuery } as const;

function validatorAccepts(path: keyof typeof QUERY_VALIDATORS, name: string, value: string): boolean {
  return QUERY_VALIDATORS[path].safeParse({ [name]: value }).success;
}

/** GET routes the app actually serves, in the document's path syntax. */
function servedGetPaths(): string[] {
  const paths = worker.routes
    .filter((route) => route.method === "GET" && !route.path.includes("*"))
    .map((route) => route.path.replace(/:(\w+)/g, "{$1}"));
  return [...new Set(paths)].sort();
}

function codesNamedIn(response: Response): ErrorCode[] {
  return ERROR_CODES.filter((code) => response.description.includes(`\`${code}\``));
}

describe("GET /openapi.json", () => {
  it("matches the reviewed snapshot (update with `vitest -u` when the API changes on purpose)", async () => {
    const doc = await fetchDocument();
    await expect(`${JSON.stringify(doc, null, 2)}\n`).toMatchFileSnapshot("./__snapshots__/openapi.json");
  });

  it("is OpenAPI 3.1 with this deployment as its server", async () => {
    const doc = await fetchDocument("https://runs.example.com");
    expect(doc.openapi).toBe("3.1.0");
    expect(doc.info.title).toBe("extend-runs-proxy");
    expect(doc.info.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(doc.servers.map((s) => s.url)).toEqual(["https://runs.example.com"]);
  });

  it("describes every GET route the app serves, and only those", async () => {
    const doc = await fetchDocument();
    const documented = Object.entries(doc.paths)
      .filter(([, item]) => item.get)
      .map(([path]) => path)
      .sort();
    expect(documented).toEqual(servedGetPaths());
    expect(documented).toEqual(expect.arrayContaining([...PUBLIC_PATHS, ...DATA_PATHS]));
  });

  it("lists every operation in its introduction, which renders before any operation does", async () => {
    const doc = await fetchDocument();
    const operations = Object.entries(doc.paths).flatMap(([path, item]) =>
      Object.entries(item).map(
        ([method, operation]) => `- \`${method.toUpperCase()} ${path}\`: ${operation.summary}`,
      ),
    );
    expect(operations.length).toBeGreaterThanOrEqual(8);
    for (const line of operations) expect(doc.info.description).toContain(line);
  });

  it("declares who may use every route it serves", () => {
    expect(servedGetPaths()).toEqual(Object.keys(ROUTE_ACCESS).sort());
  });

  it("requires credentials on data routes and none on public ones", async () => {
    const doc = await fetchDocument();
    expect(doc.components.securitySchemes).toEqual(SECURITY_SCHEMES);
    expect(doc.security).toEqual(Object.keys(SECURITY_SCHEMES).map((name) => ({ [name]: [] })));
    for (const path of PUBLIC_PATHS) expect(operation(doc, path).security, path).toEqual([]);
    for (const path of DATA_PATHS) expect(operation(doc, path).security, path).toBeUndefined();
  });

  it("documents the error envelope with exactly the codes of the error table", async () => {
    const doc = await fetchDocument();
    const envelope = doc.components.schemas.Error;
    expect(envelope?.required).toEqual(["code", "message", "retryable", "requestId"]);
    expect(envelope?.properties?.code?.enum).toEqual(ERROR_CODES);
    expect(Object.keys(envelope?.properties ?? {})).toEqual([
      "code",
      "message",
      "retryable",
      "requestId",
      "details",
    ]);
  });

  it.each(DATA_PATHS)("lists every error code of %s under its own status", async (path) => {
    const doc = await fetchDocument();
    const responses = operation(doc, path).responses;
    const named: ErrorCode[] = [];
    for (const [status, response] of Object.entries(responses)) {
      if (Number(status) < 400) continue;
      expect(response.content?.["application/json"]?.schema.$ref, `${path} ${status}`).toBe(
        "#/components/schemas/Error",
      );
      const codes = codesNamedIn(response);
      expect(codes.length, `${path} ${status} names no error code`).toBeGreaterThan(0);
      for (const code of codes) expect(String(ERRORS[code].status), `${code} under ${status}`).toBe(status);
      named.push(...codes);
    }
    expect(named.sort()).toEqual([...ERROR_CODES].sort());
  });

  it("announces x-request-id on every response and Retry-After on rate-limit errors", async () => {
    const doc = await fetchDocument();
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const [status, response] of Object.entries(item.get?.responses ?? {})) {
        expect(response.headers?.["x-request-id"], `${path} ${status}`).toEqual({
          $ref: "#/components/headers/RequestId",
        });
        if (status === "429" || status === "503") {
          expect(response.headers?.["retry-after"], `${path} ${status}`).toEqual({
            $ref: "#/components/headers/RetryAfter",
          });
        }
      }
    }
  });

  it("describes every query parameter of every route with a schema and a description", async () => {
    const doc = await fetchDocument();
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const param of item.get?.parameters ?? []) {
        expect(param.in, `${path} ${param.name}`).toBe("query");
        expect(param.description, `${path} ${param.name}`).toMatch(/\S/);
        const schema = resolve(doc, param.schema);
        expect(schema.type ?? (schema.enum ? "string" : undefined), `${path} ${param.name}`).toBeDefined();
        if (schema.pattern !== undefined) {
          expect(() => new RegExp(schema.pattern ?? "", "u"), `${path} ${param.name}`).not.toThrow();
        }
      }
    }
  });

  it("states each /workflow_runs parameter with its constraints", async () => {
    const doc = await fetchDocument();
    const params = Object.fromEntries(
      (operation(doc, "/workflow_runs").parameters ?? []).map((p) => [
        p.name,
        { ...p, schema: resolve(doc, p.schema) },
      ]),
    );
    const printable = "^[\\x21-\\x7e]+$";
    expect(Object.keys(params).sort()).toEqual(
      [
        "batchId",
        "fileNameContains",
        "maxPageSize",
        "nextPageToken",
        "sortBy",
        "sortDir",
        "status",
        "workflowId",
      ].sort(),
    );
    expect(Object.values(params).every((p) => p.required === false)).toBe(true);
    expect(params.status?.schema).toMatchObject({ type: "string", enum: [...WORKFLOW_RUN_STATUSES] });
    expect(params.workflowId?.schema).toEqual({
      type: "string",
      minLength: 1,
      maxLength: 255,
      pattern: printable,
    });
    expect(params.batchId?.schema).toEqual({
      type: "string",
      minLength: 1,
      maxLength: 255,
      pattern: printable,
    });
    expect(params.fileNameContains?.schema).toMatchObject({ type: "string", minLength: 1, maxLength: 1024 });
    expect(params.sortBy?.schema).toEqual({ type: "string", enum: ["updatedAt", "createdAt"] });
    expect(params.sortDir?.schema).toEqual({ type: "string", enum: ["asc", "desc"] });
    expect(params.nextPageToken?.schema).toEqual({
      type: "string",
      minLength: 1,
      maxLength: 2048,
      pattern: printable,
    });
    expect(params.maxPageSize?.schema).toEqual({ type: "integer", minimum: 1, maximum: 1000, default: 10 });
  });

  // The document must not promise more or less than the validator enforces: a client generated
  // from it would otherwise reject good values or send values the proxy refuses.
  describe("agrees with the validators", () => {
    const awkward = fc.oneof(
      fc.string({ unit: "binary", maxLength: 40 }),
      fc.string({
        unit: fc.constantFrom(
          "a",
          " ",
          "+",
          "/",
          "=",
          ":",
          "_",
          "-",
          "\u0000",
          "\u001f",
          "\u007f",
          "é",
          "😀",
        ),
      }),
      fc.string({ unit: "grapheme-ascii", minLength: 1, maxLength: 60 }),
      fc.constantFrom(
        "",
        "x".repeat(255),
        "x".repeat(256),
        "x".repeat(1024),
        "x".repeat(1025),
        "y".repeat(2049),
        "z".repeat(12_001),
      ),
    );

    // String parameters whose whole contract the document can state (`since`/`until` are
    // `format: date-time`, which JSON Schema leaves to the reader; the stats tests cover them).
    it.each<[keyof typeof QUERY_VALIDATORS, string]>([
      ["/workflow_runs", "workflowId"],
      ["/workflow_runs", "batchId"],
      ["/workflow_runs", "fileNameContains"],
      ["/workflow_runs", "nextPageToken"],
      ["/workflow_runs", "status"],
      ["/workflow_runs", "sortBy"],
      ["/workflow_runs", "sortDir"],
      ["/stats", "status"],
      ["/stats", "workflowId"],
      ["/stats", "batchId"],
      ["/stats", "fileNameContains"],
      ["/stats", "resumeToken"],
    ])("%s %s", async (path, name) => {
      const doc = await fetchDocument();
      const param = operation(doc, path).parameters?.find((p) => p.name === name);
      if (!param) throw new Error(`${path} ${name} is not documented`);
      const schema = resolve(doc, param.schema);
      const values = schema.enum ? fc.oneof(fc.constantFrom(...schema.enum), awkward) : awkward;
      fc.assert(
        fc.property(
          values,
          (value) => documentAccepts(schema, value) === validatorAccepts(path, name, value),
        ),
        { numRuns: 300 },
      );
    });

    it("maxPageSize, over every canonical whole number it could be sent as", async () => {
      const doc = await fetchDocument();
      const param = operation(doc, "/workflow_runs").parameters?.find((p) => p.name === "maxPageSize");
      if (!param) throw new Error("maxPageSize is not documented");
      fc.assert(
        fc.property(fc.integer({ min: -5, max: 10_005 }), (n) => {
          const value = String(n);
          return (
            documentAccepts(param.schema, value) === validatorAccepts("/workflow_runs", "maxPageSize", value)
          );
        }),
        { numRuns: 500 },
      );
    });
  });

  it("matches what the proxy really answers: an error body fits the documented envelope", async () => {
    const doc = await fetchDocument();
    const res = await callProxy("/workflow_runs?maxPageSize=0&bogus=1");
    const body = await json(res);
    expect(res.status).toBe(400);
    const envelope = doc.components.schemas.Error;
    for (const key of envelope?.required ?? []) expect(body).toHaveProperty(key);
    expect(Object.keys(body).every((key) => key in (envelope?.properties ?? {}))).toBe(true);
    expect(ERROR_CODES).toContain(body.code);
    expect(codesNamedIn(operation(doc, "/workflow_runs").responses["400"] as Response)).toContain(body.code);
    expect(body.requestId).toBe(res.headers.get("x-request-id"));
  });
});

describe("GET /docs", () => {
  async function fetchDocs() {
    const res = await callProxy(DOCS_PATH);
    const html = await res.text();
    const csp = res.headers.get("content-security-policy") ?? "";
    const nonce = /'nonce-([^']+)'/.exec(csp)?.[1] ?? "";
    return { res, html, csp, nonce };
  }

  it("serves the Scalar reference pointed at /openapi.json", async () => {
    const { res, html } = await fetchDocs();
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/html/);
    expect(html).toContain('"url": "/openapi.json"');
    expect(html).toContain('"telemetry": false');
  });

  it("sends a CSP that allows exactly its own scripts, inline styles and same-origin calls", async () => {
    const { csp, nonce } = await fetchDocs();
    expect(nonce).toMatch(/^[A-Za-z0-9+/]{22}==$/);
    expect(csp.split("; ")).toEqual([
      "default-src 'none'",
      `script-src 'nonce-${nonce}'`,
      "style-src 'unsafe-inline'",
      "img-src 'self' data:",
      "font-src data:",
      "connect-src 'self'",
      "base-uri 'none'",
      "form-action 'none'",
      "frame-ancestors 'none'",
    ]);
  });

  it("puts the CSP nonce on every script, and loads only the renderer this Worker serves", async () => {
    const { html, nonce } = await fetchDocs();
    const scripts = [...html.matchAll(/<script\b([^>]*)>/g)].map((m) => m[1] ?? "");
    expect(scripts.length).toBeGreaterThan(0);
    for (const attributes of scripts) expect(attributes).toContain(`nonce="${nonce}"`);
    const sources = scripts.flatMap((a) => /\bsrc="([^"]+)"/.exec(a)?.[1] ?? []);
    // One exact version, on this origin: nothing for a CDN or a blocked network to withhold.
    expect(sources).toEqual([`/docs/scalar-${scalarPackage.version}.js`]);
    expect(SCALAR_BUNDLE_PATH).toBe(sources[0]);
    expect(html).not.toMatch(/https?:\/\//);
    expect(html).not.toMatch(/\son[a-z]+=/i);
  });

  it("names an icon the CSP allows, so the browser asks for no /favicon.ico", async () => {
    const { html } = await fetchDocs();
    const icons = [...html.matchAll(/<link\b[^>]*\brel="icon"[^>]*>/g)].map((m) => m[0]);
    expect(icons).toEqual([expect.stringContaining('href="data:,"')]);
  });

  it("serves the pinned npm package's standalone bundle, byte for byte, as an immutable script", async () => {
    expect(packageJson.dependencies["@scalar/api-reference"]).toBe(scalarPackage.version);
    const res = await callProxy(SCALAR_BUNDLE_PATH);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/javascript; charset=utf-8");
    expect(res.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
    expect(res.headers.get("x-content-type-options")).toBe("nosniff");
    const served = await res.text();
    // One line that keeps zod (inside the bundle) from probing for eval, then the file itself.
    expect(served.startsWith(SCALAR_BUNDLE_PREAMBLE)).toBe(true);
    expect(SCALAR_BUNDLE_PREAMBLE).toMatch(/^globalThis\.__zod_globalConfig = .*\{ jitless: true \}\);\n$/);
    const bundle = served.slice(SCALAR_BUNDLE_PREAMBLE.length);
    expect(bundle.length).toBe(scalarStandalone.length);
    expect(await sha256Hex(bundle)).toBe(await sha256Hex(scalarStandalone));
    // The bundle reads zod's config from that global (so the preamble is not a no-op).
    expect(bundle).toContain("globalThis.__zod_globalConfig");
    // The UMD build that defines window.Scalar, not the ESM build that would fetch its chunks.
    expect(served).toContain("Scalar");
    expect(served).not.toMatch(/\bimport\s*\(\s*["'`]\.\//);
  });

  it("serves the renderer without credentials, like the page itself", async () => {
    const res = await callProxy(SCALAR_BUNDLE_PATH, {
      env: { ALLOW_ANONYMOUS: "false", CLIENT_TOKENS: "a-client-token-for-the-docs-test-5c1e9a" },
    });
    expect(res.status).toBe(200);
    await res.arrayBuffer();
  });

  it("uses a fresh nonce for every response and lets no cache keep it", async () => {
    const first = await fetchDocs();
    const second = await fetchDocs();
    expect(first.nonce).not.toBe(second.nonce);
    expect(first.res.headers.get("cache-control")).toBe("no-store");
  });

  it("cannot be framed", async () => {
    const { res, csp } = await fetchDocs();
    expect(csp).toContain("frame-ancestors 'none'");
    expect(res.headers.get("x-content-type-options")).toBe("nosniff");
  });
});

describe("GET /openapi.json under REDACT_FIELDS", () => {
  type Node = {
    $ref?: string;
    properties?: Record<string, Node>;
    required?: string[];
    items?: Node;
    anyOf?: Node[];
  };
  const object = (doc: OpenApiDocument, node: Node | undefined): Node | undefined => {
    const target = node?.$ref ? (resolve(doc, node as ParamSchema) as Node) : node;
    return target?.items ?? target?.anyOf?.find((branch) => branch.properties) ?? target;
  };

  it("describes the runs this deployment sends: a redacted field is neither required nor listed", async () => {
    const env = { REDACT_FIELDS: "usage,status,files.name,workflow.createdBy" };
    const tenant = isolatedTenant();
    const doc = await json<OpenApiDocument>(await tenant.call(OPENAPI_PATH, { env }));
    const page = await json<{ data: Record<string, unknown>[] }>(
      await tenant.call("/workflow_runs?maxPageSize=5", { env }),
    );
    const run = doc.components.schemas.WorkflowRunSummary as Node;
    const files = object(doc, run.properties?.files);
    const workflow = object(doc, run.properties?.workflow);
    for (const [schema, name] of [
      [run, "usage"],
      [run, "status"],
      [files, "name"],
      [workflow, "createdBy"],
    ] as const) {
      expect(schema?.required, name).not.toContain(name);
      expect(Object.keys(schema?.properties ?? {}), name).not.toContain(name);
    }
    expect(run.required).toContain("id");
    expect(files?.required).toContain("id");
    expect(page.data.length).toBeGreaterThan(0);
    for (const sent of page.data) {
      for (const name of run.required ?? []) expect(sent, name).toHaveProperty(name);
      for (const file of sent.files as Record<string, unknown>[])
        for (const name of files?.required ?? []) expect(file, `files.${name}`).toHaveProperty(name);
      for (const name of workflow?.required ?? [])
        expect(sent.workflow, `workflow.${name}`).toHaveProperty(name);
    }
  });

  it("still answers, unredacted, when the configuration is broken", async () => {
    const res = await isolatedTenant().call(OPENAPI_PATH, {
      env: { REDACT_FIELDS: "usage", UPSTREAM_MAX_RPS: "0" },
    });
    expect(res.status).toBe(200);
    const doc = await json<OpenApiDocument>(res);
    expect(doc.components.schemas.WorkflowRunSummary?.required).toContain("usage");
  });
});

describe("README", () => {
  it("lists every error code with the status and retryability of the error table", () => {
    const rows = new Map(
      [...readme.matchAll(/^\| `([A-Z_]+)` +\| (\d{3}) +\| (yes|no) +\|/gm)].map((m) => [
        m[1],
        { status: Number(m[2]), retryable: m[3] === "yes" },
      ]),
    );
    expect([...rows.keys()]).toEqual(ERROR_CODES);
    for (const code of ERROR_CODES) {
      expect(rows.get(code), code).toEqual({
        status: ERRORS[code].status,
        retryable: ERRORS[code].retryable,
      });
    }
  });

  it("documents every setting that src/app/config.ts parses", () => {
    const settings = [...configSource.matchAll(/^ {2}([A-Z][A-Z0-9_]+): /gm)].map((m) => m[1]);
    const documented = [...readme.matchAll(/^\| `([A-Z][A-Z0-9_]+)` +\| (secret|var) +\|/gm)].map(
      (m) => m[1],
    );
    expect(settings.length).toBeGreaterThan(10);
    expect(documented).toEqual(settings);
  });
});
