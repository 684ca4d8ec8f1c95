import { ApiError, type FieldIssue, invalidQuery } from "../app/errors.ts";
import { BACKSLASH, DOT, isDigit, LOWER_E, MINUS, QUOTE, UPPER_E, ZERO } from "../lib/json-chars.ts";

/** One field name of a run (or of an object inside it): what Extend's camelCase names look like. */
const SEGMENT = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Deeper than any run field nests. */
export const MAX_REDACT_PATH_SEGMENTS = 8;

const segmentsOf = (path: string): string[] => path.split(".");

/** Whether one path is the other or lies inside it, segment by segment (`files` and `files.name`). */
function overlaps(a: readonly string[], b: readonly string[]): boolean {
  const shorter = Math.min(a.length, b.length);
  for (let i = 0; i < shorter; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * REDACT_FIELDS as the proxy applies it: each entry a run field or a dotted path into nested
 * objects and arrays of objects (`workflow.createdBy`, `files.name`); duplicates and paths inside
 * another listed path dropped, sorted so that equal settings give equal ETags. Undefined when an
 * entry is malformed (an empty segment, a bracket, a wildcard, more than MAX_REDACT_PATH_SEGMENTS).
 */
export function normaliseRedactPaths(entries: readonly string[]): string[] | undefined {
  const paths: string[][] = [];
  for (const entry of entries) {
    const segments = segmentsOf(entry);
    if (segments.length > MAX_REDACT_PATH_SEGMENTS || !segments.every((s) => SEGMENT.test(s))) {
      return undefined;
    }
    paths.push(segments);
  }
  const kept = paths.filter(
    (path) => !paths.some((other) => other.length < path.length && overlaps(other, path)),
  );
  return [...new Set(kept.map((path) => path.join(".")))].sort();
}

interface RedactNode {
  remove: boolean;
  children: Map<string, RedactNode>;
}

const trees = new WeakMap<readonly string[], Map<string, RedactNode>>();

function treeOf(fields: readonly string[]): Map<string, RedactNode> {
  let root = trees.get(fields);
  if (!root) {
    root = new Map();
    for (const field of fields) {
      let level = root;
      const segments = segmentsOf(field);
      segments.forEach((segment, i) => {
        let node = level.get(segment);
        if (!node) {
          node = { remove: false, children: new Map() };
          level.set(segment, node);
        }
        if (i === segments.length - 1) node.remove = true;
        level = node.children;
      });
    }
    trees.set(fields, root);
  }
  return root;
}

/**
 * JSON source text access (TC39 stage 4; V8, hence workerd): a parsed number can be serialised
 * again as the very text it was read from. Not yet in TypeScript's lib.
 */
const sourceText = JSON as unknown as {
  rawJSON(text: string): object;
  isRawJSON(value: unknown): boolean;
};

const keepNumberText = (_key: string, value: unknown, context?: { source?: string }): unknown =>
  typeof value === "number" && context?.source !== undefined ? sourceText.rawJSON(context.source) : value;

/**
 * Whether some number in the JSON text would not come back with its value from JSON.parse and
 * JSON.stringify: one with an exponent (it may overflow to Infinity, which becomes `null`), more
 * than 15 digits (beyond a double's precision), or a negative zero. Any other decimal round-trips.
 * Strings are skipped whole, so digits inside ids, dates or cursors never count.
 */
function hasFragileNumber(text: string): boolean {
  const length = text.length;
  for (let i = 0; i < length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      for (;;) {
        const end = text.indexOf('"', i + 1);
        if (end === -1) return false;
        let backslashes = 0;
        while (text.charCodeAt(end - 1 - backslashes) === BACKSLASH) backslashes++;
        i = end;
        if (backslashes % 2 === 0) break;
      }
      continue;
    }
    if (c !== MINUS && !isDigit(c)) continue;
    let digits = 0;
    let nonZero = false;
    let j = c === MINUS ? i + 1 : i;
    for (; j < length; j++) {
      const d = text.charCodeAt(j);
      if (isDigit(d)) {
        digits++;
        if (d !== ZERO) nonZero = true;
      } else if (d !== DOT) {
        if (d === LOWER_E || d === UPPER_E) return true;
        break;
      }
    }
    if (digits > 15 || (c === MINUS && !nonZero)) return true;
    i = j - 1;
  }
  return false;
}

/** Removes the paths of `level` from `value`: an object's own fields, or those of every object in an array. */
function removePaths(value: unknown, level: Map<string, RedactNode>): void {
  if (Array.isArray(value)) {
    for (const item of value) removePaths(item, level);
    return;
  }
  if (typeof value !== "object" || value === null || sourceText.isRawJSON(value)) return;
  const record = value as Record<string, unknown>;
  for (const [name, node] of level) {
    // Own fields only: a path never walks into a prototype.
    if (!Object.hasOwn(record, name)) continue;
    if (node.remove) delete record[name];
    else removePaths(record[name], node.children);
  }
}

function tooDeep(): ApiError {
  return new ApiError("UPSTREAM_INVALID_RESPONSE", "Extend answered with a run nested too deeply to redact.");
}

function notAList(): ApiError {
  return new ApiError("UPSTREAM_INVALID_RESPONSE", "Extend answered with a body that is not a list of runs.");
}

/**
 * Removes the REDACT_FIELDS (normalised paths) from every run of a list body on its way out.
 * Without fields the text passes through untouched (no parse, no re-serialisation). A body that
 * cannot be parsed is refused rather than served unredacted. Every value that is kept keeps its
 * value: a number a double cannot hold exactly is written back as Extend wrote it.
 */
export function redactRuns(body: string, fields: readonly string[]): string {
  if (fields.length === 0) return body;
  let list: unknown;
  try {
    // Reading every number's source text costs a few times a plain parse: only when it matters.
    list = hasFragileNumber(body) ? JSON.parse(body, keepNumberText) : JSON.parse(body);
  } catch {
    throw notAList();
  }
  const data = typeof list === "object" && list !== null ? (list as { data?: unknown }).data : undefined;
  if (!Array.isArray(data)) throw notAList();
  const tree = treeOf(fields);
  try {
    for (const run of data) if (typeof run === "object" && run !== null) removePaths(run, tree);
    return JSON.stringify(list);
  } catch (error) {
    // Both walks recurse: a body nested past the stack is refused, never served unredacted.
    if (error instanceof RangeError) throw tooDeep();
    throw error;
  }
}

/**
 * The run field each filter parameter selects on: filtering on a redacted field would let a caller
 * recover it one guess (or one character) at a time, so such a filter is refused.
 */
export const FILTERED_FIELDS = {
  status: "status",
  workflowId: "workflow.id",
  batchId: "batchId",
  fileNameContains: "files.name",
  since: "createdAt",
  until: "createdAt",
} as const;

/** A query of /workflow_runs or /stats, as far as its filters go. */
export type FilterQuery = { readonly [parameter in keyof typeof FILTERED_FIELDS]?: unknown };

const hides = (fields: readonly string[], path: string) =>
  fields.some((field) => overlaps(segmentsOf(field), segmentsOf(path)));

/** The filter parameters of `query` that select on a redacted field, as 400 details. */
export function redactedFilterIssues(query: FilterQuery, fields: readonly string[]): FieldIssue[] {
  const issues: FieldIssue[] = [];
  if (fields.length === 0) return issues;
  for (const [parameter, path] of Object.entries(FILTERED_FIELDS)) {
    if (query[parameter as keyof FilterQuery] !== undefined && hides(fields, path)) {
      issues.push({ field: parameter, message: "is not available: the field it filters on is redacted" });
    }
  }
  return issues;
}

/** Throws the one 400 when `query` filters on a redacted field; called before anything goes upstream. */
export function refuseRedactedFilters(query: FilterQuery, fields: readonly string[]): void {
  const issues = redactedFilterIssues(query, fields);
  if (issues.length > 0) throw invalidQuery(issues);
}

/**
 * A /stats answer without what redaction hides: no `usage` block when `usage` or a path inside it
 * is redacted (credit sums over a narrow `since`/`until` are one run's credits), no `byStatus`
 * when `status` is. Applied on the way out, so a cached result serves every setting.
 */
export function redactStats<T extends { usage?: unknown; byStatus?: unknown }>(
  body: T,
  fields: readonly string[],
): T {
  if (fields.length === 0) return body;
  const hideUsage = hides(fields, "usage");
  const hideStatus = hides(fields, "status");
  if (!hideUsage && !hideStatus) return body;
  const copy = { ...body };
  if (hideUsage) delete copy.usage;
  if (hideStatus) delete copy.byStatus;
  return copy;
}
