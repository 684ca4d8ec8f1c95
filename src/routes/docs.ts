import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { Scalar } from "@scalar/hono-api-reference";
import type { Context } from "hono";
import scalarBundle from "../../node_modules/@scalar/api-reference/dist/browser/standalone.js";
import { version as scalarVersion } from "../../node_modules/@scalar/api-reference/package.json";
import { version } from "../../package.json";
import { loadConfig } from "../app/config.ts";
import type { AppEnv } from "../app/env.ts";
import { jsonText } from "../app/router.ts";
import { cspNonce, docsContentSecurityPolicy } from "../security/headers.ts";
import { PUBLIC_PATHS, type ROUTE_ACCESS } from "./access.ts";

export const OPENAPI_PATH = "/openapi.json" satisfies keyof typeof ROUTE_ACCESS;
export const DOCS_PATH = "/docs" satisfies keyof typeof ROUTE_ACCESS;
/**
 * The reference's renderer, served by this Worker so /docs loads nothing from another origin and
 * renders offline: the pinned npm package's self-contained browser bundle, imported as bytes (the
 * Data module rule is in wrangler.toml). The version in the path makes the file immutable; a test
 * holds it to the installed package's version.
 */
export const SCALAR_BUNDLE_PATH = "/docs/scalar-1.76.0.js" satisfies keyof typeof ROUTE_ACCESS;

/** How callers authenticate on data routes; any one of these is enough (see README "Security"). */
export const SECURITY_SCHEMES = {
  clientToken: {
    type: "http",
    scheme: "bearer",
    description:
      "A static client token from the `CLIENT_TOKENS` secret, sent as `Authorization: Bearer <token>`. " +
      "This is what the `extend-ai` SDK sends when its `token` option holds a client token.",
  },
  jwt: {
    type: "http",
    scheme: "bearer",
    bearerFormat: "JWT",
    description:
      "A JWT verified against `JWT_JWKS_URL`, with `iss` = `JWT_ISSUER` and `aud` in `JWT_AUDIENCE`, " +
      "sent as `Authorization: Bearer <jwt>`.",
  },
  cloudflareAccess: {
    type: "apiKey",
    in: "header",
    name: "Cf-Access-Jwt-Assertion",
    description: "A Cloudflare Access JWT, verified like `jwt`; Access adds this header itself.",
  },
} as const;

const REQUEST_ID_HEADER = {
  description: "Identifies the request in the proxy's logs; equals `requestId` in an error body.",
  schema: { type: "string" },
} as const;

const RETRY_AFTER_HEADER = {
  description: "Seconds to wait before retrying.",
  schema: { type: "integer", minimum: 0 },
} as const;

// Statuses whose error codes (RATE_LIMIT_EXCEEDED, UPSTREAM_RATE_LIMITED) carry Retry-After.
const RATE_LIMIT_STATUSES = new Set(["429", "503"]);

const DESCRIPTION = [
  "An edge gateway on Cloudflare Workers in front of Extend's `GET /workflow_runs`: it keeps the",
  "Extend API key server-side, validates every query, caches pages in Workers KV and aggregates",
  "`/stats`. Data routes take the same parameters and return the same shapes as Extend's API",
  "(version 2026-02-09), so the official `extend-ai` SDK works against it by changing `baseUrl`.",
  "",
  "Every error uses one envelope (`Error`): a machine `code`, a `message`, `retryable` and the",
  "`requestId` that is also sent as `x-request-id`.",
  "",
  "Data responses carry `x-cache`: `HIT` (served from a fresh cache entry), `STALE` (served from an",
  "entry past its freshness window while it is refreshed, or because Extend failed; `Age` tells how",
  "old), `MISS` (fetched from Extend just now) or `BYPASS` (the cache was unusable or skipped).",
].join("\n");

const ApiDocument = z
  .looseObject({ openapi: z.string(), info: z.looseObject({}), paths: z.looseObject({}) })
  .openapi("OpenApiDocument", { description: "This document (OpenAPI 3.1)." });

const openApiRoute = createRoute({
  method: "get",
  path: OPENAPI_PATH,
  summary: "OpenAPI document",
  description: "This API description, generated from the schemas that validate requests.",
  responses: {
    200: {
      description: "The OpenAPI 3.1 document.",
      content: { "application/json": { schema: ApiDocument } },
    },
  },
});

const docsRoute = createRoute({
  method: "get",
  path: DOCS_PATH,
  summary: "API reference",
  description:
    "An interactive reference (Scalar) that reads `/openapi.json`; its renderer is served by this Worker, so the page loads nothing from another origin.",
  responses: {
    200: { description: "An HTML page.", content: { "text/html": { schema: z.string() } } },
  },
});

type OpenApiDocument = ReturnType<OpenAPIHono<AppEnv>["getOpenAPI31Document"]>;

/**
 * Every operation as a line of the introduction. Scalar renders an operation's section only as it
 * scrolls near, so without this list a route's path is on the page only once someone scrolls to it.
 */
function routeList(document: OpenApiDocument): string {
  const lines = ["Routes:", ""];
  for (const [path, item] of Object.entries(document.paths ?? {})) {
    for (const method of ["get", "post"] as const) {
      const operation = item[method];
      if (operation) lines.push(`- \`${method.toUpperCase()} ${path}\`: ${operation.summary ?? ""}`);
    }
  }
  return lines.join("\n");
}

/**
 * The OpenAPI 3.1 document of everything registered on `app`, with this request's origin as the
 * server so "try it" and generated clients talk to the deployment that served it.
 */
export function buildOpenApiDocument(app: OpenAPIHono<AppEnv>, origin: string): OpenApiDocument {
  const document = app.getOpenAPI31Document({
    openapi: "3.1.0",
    info: { title: "extend-runs-proxy", version, description: DESCRIPTION },
    servers: [{ url: origin, description: "This deployment" }],
    security: Object.keys(SECURITY_SCHEMES).map((name) => ({ [name]: [] })),
    tags: [],
  });
  document.info.description = `${DESCRIPTION}\n\n${routeList(document)}`;
  const publicPaths: readonly string[] = PUBLIC_PATHS;
  for (const [path, item] of Object.entries(document.paths ?? {})) {
    for (const operation of [item.get, item.head, item.options, item.post]) {
      if (!operation) continue;
      if (publicPaths.includes(path)) operation.security = [];
      // Set by the request-id middleware on every response, errors included.
      for (const [status, response] of Object.entries(operation.responses ?? {})) {
        if (!("description" in response)) continue;
        response.headers = {
          ...response.headers,
          "x-request-id": { $ref: "#/components/headers/RequestId" },
          ...(RATE_LIMIT_STATUSES.has(status)
            ? { "retry-after": { $ref: "#/components/headers/RetryAfter" } }
            : {}),
        };
      }
    }
  }
  document.components = {
    ...document.components,
    headers: {
      ...document.components?.headers,
      RequestId: REQUEST_ID_HEADER,
      RetryAfter: RETRY_AFTER_HEADER,
    },
    securitySchemes: { ...document.components?.securitySchemes, ...SECURITY_SCHEMES },
  };
  return document;
}

interface SchemaNode {
  $ref?: string;
  properties?: Record<string, SchemaNode>;
  required?: string[];
  items?: SchemaNode;
  anyOf?: SchemaNode[];
  oneOf?: SchemaNode[];
}

/** The object schemas a value under `node` may be: through `$ref`s, unions and array items. */
function objectSchemas(node: SchemaNode, schemas: Record<string, SchemaNode>): SchemaNode[] {
  if (node.$ref !== undefined) {
    const target = schemas[node.$ref.slice(node.$ref.lastIndexOf("/") + 1)];
    return target ? objectSchemas(target, schemas) : [];
  }
  const found = [...(node.anyOf ?? []), ...(node.oneOf ?? [])].flatMap((branch) =>
    objectSchemas(branch, schemas),
  );
  if (node.items) found.push(...objectSchemas(node.items, schemas));
  if (node.properties) found.push(node);
  return found;
}

/**
 * The document as this deployment answers: every REDACT_FIELDS path is removed from the run
 * schema, so a page validates against it (a redacted field is never sent, required or not).
 */
function withoutRedactedFields(document: OpenApiDocument, paths: readonly string[]): OpenApiDocument {
  if (paths.length === 0) return document;
  const redacted = structuredClone(document);
  const schemas = (redacted.components?.schemas ?? {}) as Record<string, SchemaNode>;
  const run = schemas.WorkflowRunSummary;
  if (!run) return redacted;
  for (const path of paths) {
    const segments = path.split(".");
    const last = segments.pop() as string;
    let nodes = [run];
    for (const segment of segments) {
      nodes = nodes
        .flatMap((node) => objectSchemas(node, schemas))
        .flatMap((node) => (node.properties?.[segment] ? [node.properties[segment]] : []));
    }
    for (const node of nodes.flatMap((n) => objectSchemas(n, schemas))) {
      if (node.properties) delete node.properties[last];
      if (node.required) node.required = node.required.filter((name) => name !== last);
    }
  }
  return redacted;
}

/** The redacted fields when the configuration parses; the document answers even when it does not. */
function redactedFields(env: Env): readonly string[] {
  try {
    return loadConfig(env).redactFields;
  } catch {
    return [];
  }
}

/** Browsers and caches may keep the versioned bundle for a year (it never changes under its name). */
export const SCALAR_BUNDLE_CACHE_CONTROL = "public, max-age=31536000, immutable";
/**
 * Runs before the bundle. Scalar bundles zod, which probes once for `Function("")` to decide
 * whether to compile its validators; the page's CSP refuses eval, so the probe would be reported
 * as a violation. Zod reads its config from this global and, told to be jitless, skips the probe
 * and interprets, as it does after a failed probe.
 */
export const SCALAR_BUNDLE_PREAMBLE =
  "globalThis.__zod_globalConfig = Object.assign(globalThis.__zod_globalConfig ?? {}, { jitless: true });\n";
const SCALAR_PREAMBLE_BYTES = new TextEncoder().encode(SCALAR_BUNDLE_PREAMBLE);

const scalarBundleRoute = createRoute({
  method: "get",
  path: SCALAR_BUNDLE_PATH,
  summary: "API reference renderer",
  description: `The script \`/docs\` runs: Scalar's standalone bundle (@scalar/api-reference ${scalarVersion}), served from this Worker so the reference needs no CDN.`,
  responses: {
    200: { description: "JavaScript.", content: { "text/javascript": { schema: z.string() } } },
  },
});

/** The reference page's tab icon: none, stated, so the browser fetches none. */
const DOCS_ICON = "data:,";

async function renderDocs(c: Context<AppEnv>): Promise<Response> {
  const nonce = cspNonce();
  const render = Scalar<AppEnv>({
    url: OPENAPI_PATH,
    pageTitle: "extend-runs-proxy API reference",
    cdn: SCALAR_BUNDLE_PATH,
    nonce,
    // Nothing leaves this origin: no font CDN, no telemetry, no AI agent, no request proxy.
    withDefaultFonts: false,
    telemetry: false,
    agent: { disabled: true },
    persistAuth: false,
  });
  const rendered = await render(c, async () => {});
  if (!(rendered instanceof Response)) throw new Error("the API reference renderer returned no response");
  // A page that names no icon makes the browser ask for /favicon.ico, a 404 it reports as a
  // console error; an empty data: icon (img-src allows data:) asks for nothing.
  const page = (await rendered.text()).replace(
    "<head>",
    `<head>\n    <link rel="icon" href="${DOCS_ICON}" />`,
  );
  const response = new Response(page, rendered);
  response.headers.set("content-security-policy", docsContentSecurityPolicy(nonce));
  // A nonce must not outlive its response.
  response.headers.set("cache-control", "no-store");
  response.headers.set("x-content-type-options", "nosniff");
  response.headers.set("referrer-policy", "no-referrer");
  return response;
}

/**
 * Serves `/openapi.json` (everything registered on `app`, read at request time so routes added
 * after this call appear too), the `/docs` reference page and the renderer it runs.
 */
export function registerDocs(app: OpenAPIHono<AppEnv>): void {
  app.openapi(openApiRoute, (c) =>
    jsonText<z.infer<typeof ApiDocument>>(
      c,
      JSON.stringify(
        withoutRedactedFields(buildOpenApiDocument(app, new URL(c.req.url).origin), redactedFields(c.env)),
      ),
      {
        "cache-control": "public, max-age=300",
      },
    ),
  );
  app.openapi(docsRoute, renderDocs);
  app.openapi(scalarBundleRoute, (c) =>
    // The bundle is a Data module: its UTF-8 bytes sit outside the JavaScript heap, where as text
    // it was a 9 MB UTF-16 string on the heap of every isolate (docs/benchmarks.md "Scan memory").
    c.body(new Blob([SCALAR_PREAMBLE_BYTES, scalarBundle]).stream(), 200, {
      "content-type": "text/javascript; charset=utf-8",
      "cache-control": SCALAR_BUNDLE_CACHE_CONTROL,
    }),
  );
}
