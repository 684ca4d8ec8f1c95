// Resume tokens: the whole scan state (partial totals, every walk's cursor and open group),
// encrypted and authenticated with AES-256-GCM so a client can neither read Extend's cursors nor
// alter the totals. The key is derived with HKDF from STATS_SIGNING_KEY, or from EXTEND_API_KEY
// when that is unset, so rotating either invalidates every outstanding token.
import { z } from "zod";
import { ApiError, invalidQuery } from "../app/errors.ts";
import { WORKFLOW_RUN_STATUSES, WorkflowRunStatus } from "../extend/schemas.ts";
import { fromBase64Url, toBase64Url } from "../lib/base64url.ts";
import { type Decimal, formatDecimal, parseDecimal, type Tally, type Totals } from "./aggregate.ts";
import { MAX_CARRIED_IDS, type PartitionState, type ScanState, type WalkState } from "./scan.ts";

/** Longest token accepted; Workers cap the whole URL at 16 KB. */
export const MAX_RESUME_TOKEN_LENGTH = 12_000;
/**
 * A scan is refused this long after it started, however often it was resumed: Extend's cursors
 * may expire, and totals grow stale.
 */
export const RESUME_TOKEN_MAX_AGE_MS = 60 * 60 * 1000;

const FORMAT_VERSION = 2;
const IV_BYTES = 12;
const HKDF_SALT = new TextEncoder().encode("extend-runs-proxy");
const HKDF_INFO = new TextEncoder().encode("stats resume token v1");
const AAD = new TextEncoder().encode("extend-runs-proxy/stats-resume-token/v2");

const DecimalText = z.string().transform((text, ctx) => {
  const value = parseDecimal(text);
  if (!value) {
    ctx.addIssue({ code: "custom", message: "not a decimal" });
    return z.NEVER;
  }
  return value;
});

const Count = z.number().int().min(0);
const Instant = z.number().int().nullable();

const WireTally = z.object({ r: Count, c: DecimalText, t: DecimalText, w: Count });

const WireWalk = z.object({
  phase: z.enum(["waiting", "active", "done"]),
  cursor: z.string().min(1).optional(),
  open: z
    .object({
      at: z.number().int(),
      tally: WireTally,
      ids: z.array(z.number().int().min(0).max(Number.MAX_SAFE_INTEGER)).max(MAX_CARRIED_IDS).optional(),
    })
    .optional(),
});

const WirePartition = z.object({
  status: WorkflowRunStatus,
  asc: WireWalk.optional(),
  desc: WireWalk.optional(),
  ascClaimed: Instant,
  descClaimed: Instant,
  done: z.boolean(),
});

const WireToken = z.object({
  v: z.literal(FORMAT_VERSION),
  binding: z.string(),
  issuedAt: z.number().int(),
  startedAt: z.number().int(),
  oldestPageAt: z.number().int(),
  pagesFetched: Count,
  byStatus: z.array(Count).length(WORKFLOW_RUN_STATUSES.length),
  credits: DecimalText,
  totalCredits: DecimalText,
  runsWithoutUsage: Count,
  partitions: z.array(WirePartition).min(1).max(WORKFLOW_RUN_STATUSES.length),
});

type WireTally = z.input<typeof WireTally>;
type WireWalk = z.input<typeof WireWalk>;

function tallyToWire(tally: Tally): WireTally {
  return {
    r: tally.runs,
    c: formatDecimal(tally.credits),
    t: formatDecimal(tally.totalCredits),
    w: tally.runsWithoutUsage,
  };
}

function walkToWire(walk: WalkState): WireWalk {
  // A finished walk needs nothing to continue: its cursor and open group would only grow the token.
  if (walk.phase === "done") return { phase: "done" };
  return {
    phase: walk.phase,
    ...(walk.cursor ? { cursor: walk.cursor } : {}),
    ...(walk.open
      ? {
          open: {
            at: walk.open.at,
            tally: tallyToWire(walk.open.tally),
            ...(walk.open.ids?.length ? { ids: walk.open.ids } : {}),
          },
        }
      : {}),
  };
}

function walkFromWire(walk: z.output<typeof WireWalk>): WalkState {
  return {
    phase: walk.phase,
    ...(walk.cursor ? { cursor: walk.cursor } : {}),
    ...(walk.open
      ? {
          open: {
            at: walk.open.at,
            tally: {
              runs: walk.open.tally.r,
              credits: walk.open.tally.c,
              totalCredits: walk.open.tally.t,
              runsWithoutUsage: walk.open.tally.w,
            },
            ...(walk.open.ids?.length ? { ids: walk.open.ids } : {}),
          },
        }
      : {}),
  };
}

async function tokenKey(secret: string): Promise<CryptoKey> {
  const material = await crypto.subtle.importKey("raw", new TextEncoder().encode(secret), "HKDF", false, [
    "deriveKey",
  ]);
  return crypto.subtle.deriveKey(
    { name: "HKDF", hash: "SHA-256", salt: HKDF_SALT, info: HKDF_INFO },
    material,
    { name: "AES-GCM", length: 256 },
    false,
    ["encrypt", "decrypt"],
  );
}

function invalidToken(message: string): ApiError {
  return invalidQuery([{ field: "resumeToken", message }]);
}

export interface TokenContext {
  /** The secret the key is derived from. */
  secret: string;
  /** Filters and upstream account the scan belongs to; a token only continues the same scan. */
  binding: string;
  now: number;
}

/** Seals the scan state into an opaque, tamper-evident token. */
export async function sealResumeToken(state: ScanState, context: TokenContext): Promise<string> {
  const totals: Totals = state.totals;
  const wire: z.input<typeof WireToken> = {
    v: FORMAT_VERSION,
    binding: context.binding,
    issuedAt: context.now,
    startedAt: state.startedAt,
    oldestPageAt: state.oldestPageAt,
    pagesFetched: state.pagesFetched,
    byStatus: WORKFLOW_RUN_STATUSES.map((status) => totals.byStatus[status]),
    credits: formatDecimal(totals.credits),
    totalCredits: formatDecimal(totals.totalCredits),
    runsWithoutUsage: totals.runsWithoutUsage,
    partitions: state.partitions.map((p) => ({
      status: p.status,
      ...(p.asc ? { asc: walkToWire(p.asc) } : {}),
      ...(p.desc ? { desc: walkToWire(p.desc) } : {}),
      ascClaimed: p.ascClaimed,
      descClaimed: p.descClaimed,
      done: p.done,
    })),
  };
  const iv = crypto.getRandomValues(new Uint8Array(IV_BYTES));
  const plaintext = new TextEncoder().encode(JSON.stringify(wire));
  const sealed = new Uint8Array(
    await crypto.subtle.encrypt(
      { name: "AES-GCM", iv, additionalData: AAD },
      await tokenKey(context.secret),
      plaintext,
    ),
  );
  const bytes = new Uint8Array(1 + IV_BYTES + sealed.length);
  bytes[0] = FORMAT_VERSION;
  bytes.set(iv, 1);
  bytes.set(sealed, 1 + IV_BYTES);
  const token = toBase64Url(bytes);
  if (token.length > MAX_RESUME_TOKEN_LENGTH) {
    // Only Extend's cursors can grow a token this far; a token the route would refuse helps nobody.
    throw new ApiError(
      "UPSTREAM_INVALID_RESPONSE",
      "Extend's cursors are too long to carry in a resume token; narrow the filters (a status or a time window).",
    );
  }
  return token;
}

/** Opens a token; any forgery, alteration, other filters or old age is a 400 naming resumeToken. */
export async function openResumeToken(token: string, context: TokenContext): Promise<ScanState> {
  const bytes = fromBase64Url(token);
  if (!bytes || bytes.length < 1 + IV_BYTES + 16 || bytes[0] !== FORMAT_VERSION) {
    throw invalidToken("is not a token this proxy issued");
  }
  let plaintext: ArrayBuffer;
  try {
    plaintext = await crypto.subtle.decrypt(
      { name: "AES-GCM", iv: bytes.subarray(1, 1 + IV_BYTES), additionalData: AAD },
      await tokenKey(context.secret),
      bytes.subarray(1 + IV_BYTES),
    );
  } catch {
    throw invalidToken("was altered, or was not issued by this proxy");
  }
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(plaintext));
  } catch {
    throw invalidToken("is not a token this proxy issued");
  }
  const parsed = WireToken.safeParse(json);
  if (!parsed.success) throw invalidToken("is not a token this proxy issued");
  const wire = parsed.data;
  if (wire.binding !== context.binding) {
    throw invalidToken("belongs to a scan with other filters; repeat the filters it was issued with");
  }
  if (
    context.now - wire.startedAt > RESUME_TOKEN_MAX_AGE_MS ||
    wire.issuedAt - context.now > 60_000 ||
    wire.startedAt > wire.issuedAt
  ) {
    throw invalidToken("has expired; start a new scan without it");
  }
  const byStatus = Object.fromEntries(
    WORKFLOW_RUN_STATUSES.map((status, i) => [status, wire.byStatus[i] ?? 0]),
  ) as Totals["byStatus"];
  const credits: Decimal = wire.credits;
  return {
    pagesFetched: wire.pagesFetched,
    startedAt: wire.startedAt,
    oldestPageAt: wire.oldestPageAt,
    totals: {
      byStatus,
      credits,
      totalCredits: wire.totalCredits,
      runsWithoutUsage: wire.runsWithoutUsage,
    },
    partitions: wire.partitions.map(
      (p): PartitionState => ({
        status: p.status,
        ascClaimed: p.ascClaimed,
        descClaimed: p.descClaimed,
        done: p.done,
        ...(p.asc ? { asc: walkFromWire(p.asc) } : {}),
        ...(p.desc ? { desc: walkFromWire(p.desc) } : {}),
      }),
    ),
  };
}
