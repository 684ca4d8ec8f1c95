// Extend's webhook signature and run events, as the extend-ai SDK's `webhooks.verifyAndParse`
// checks them: HMAC-SHA256 over `v0:{timestamp}:{raw body}` keyed with the endpoint's signing
// secret (`wss_…`, used as issued), hex in x-extend-request-signature, the timestamp in Unix
// seconds at most 300 s old and at most 60 s ahead. Unlike the SDK, the MAC covers the body's
// bytes exactly as they arrived (no decode and re-encode), and the timestamp must be all digits.
import { ApiError } from "../app/errors.ts";
import type { WorkflowRunStatus } from "../extend/schemas.ts";
import { factsFromWorkflowRun, isStatus } from "./row.ts";
import type { IndexEvent } from "./sync.ts";

export const TIMESTAMP_HEADER = "x-extend-request-timestamp";
export const SIGNATURE_HEADER = "x-extend-request-signature";
/** The SDK's `maxAgeSeconds` default, and its allowance for a clock running ahead. */
export const MAX_AGE_SECONDS = 300;
export const MAX_AHEAD_SECONDS = 60;

/** Run event types and the status each one means (Extend's webhook-event docs). */
export const RUN_EVENT_STATUS: Readonly<Record<string, WorkflowRunStatus>> = {
  "workflow_run.completed": "PROCESSED",
  "workflow_run.failed": "FAILED",
  "workflow_run.needs_review": "NEEDS_REVIEW",
  "workflow_run.rejected": "REJECTED",
  "workflow_run.cancelled": "CANCELLED",
};

const encoder = new TextEncoder();
const HEX_SIGNATURE = /^[0-9a-f]{64}$/i;
export const UNIX_SECONDS = /^\d{1,12}$/;

function hexBytes(hex: string): Uint8Array {
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = Number.parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return bytes;
}

export interface SignedRequest {
  timestamp: string | null;
  signature: string | null;
  body: Uint8Array;
  /**
   * `body` read straight after room for `signedPrefix(timestamp)` (its bytes may be anything): the
   * prefix is written there and the whole is what is verified, with no second copy of the body.
   */
  room?: Uint8Array;
}

/** What the signature covers before the raw body: `v0:{timestamp}:`. */
export function signedPrefix(timestamp: string): Uint8Array {
  return encoder.encode(`v0:${timestamp}:`);
}

/**
 * True when the request is signed by one of `secrets` (two during a rotation) within the time
 * window. Every secret is tried, so the time taken does not tell which one matched;
 * crypto.subtle.verify compares in constant time.
 */
export async function verifySignature(
  request: SignedRequest,
  secrets: readonly string[],
  nowMs: number,
): Promise<boolean> {
  const { timestamp, signature } = request;
  if (secrets.length === 0 || timestamp === null || signature === null) return false;
  if (!UNIX_SECONDS.test(timestamp) || !HEX_SIGNATURE.test(signature)) return false;
  const age = Math.floor(nowMs / 1000) - Number(timestamp);
  if (age > MAX_AGE_SECONDS || age < -MAX_AHEAD_SECONDS) return false;
  const prefix = signedPrefix(timestamp);
  const { room, body } = request;
  const laidOut =
    room !== undefined &&
    room.buffer === body.buffer &&
    room.byteLength === prefix.length + body.byteLength &&
    body.byteOffset === room.byteOffset + prefix.length;
  const message = laidOut ? room : new Uint8Array(prefix.length + body.length);
  message.set(prefix);
  if (!laidOut) message.set(body, prefix.length);
  const mac = hexBytes(signature);
  let valid = false;
  for (const secret of secrets) {
    const key = await crypto.subtle.importKey(
      "raw",
      encoder.encode(secret),
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["verify"],
    );
    if (await crypto.subtle.verify("HMAC", key, mac, message)) valid = true;
  }
  return valid;
}

export type ParsedEvent = { ok: true; event: IndexEvent; eventType: string } | { ok: false; reason: string };

const MAX_EVENT_ID_LENGTH = 255;
/**
 * What a run id may be: printable ASCII, as Extend's are. Not `.` or `..`: the index reads a run
 * it cannot confirm at /workflow_runs/{id}, and a dot segment there would be another path of the
 * API (the list, or the root), fetched with the proxy's key.
 */
const RUN_ID = /^(?!\.\.?$)[\x21-\x7e]{1,255}$/;

function object(value: unknown): Record<string, unknown> | undefined {
  return typeof value === "object" && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : undefined;
}

/**
 * Reads a verified body. Run events carry the run's new state: `payload.status` when the payload
 * is inline, else the status the event type means. A payload delivered as a signed URL
 * (`{object: "signed_data_url", id, data}`) is not fetched: its id and the event type are enough
 * to move the run, and the confirming head walk brings the rest. Other event types are accepted
 * and only hint that something changed.
 */
export function parseEvent(text: string, signedAtMs: number): ParsedEvent {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { ok: false, reason: "The body is not JSON." };
  }
  const body = object(json);
  if (!body) return { ok: false, reason: "The body is not a JSON object." };
  const { eventId, eventType } = body;
  if (typeof eventId !== "string" || eventId === "" || eventId.length > MAX_EVENT_ID_LENGTH) {
    return { ok: false, reason: "The event has no eventId." };
  }
  if (typeof eventType !== "string") return { ok: false, reason: "The event has no eventType." };
  const event: IndexEvent = { eventId, signedAt: signedAtMs };
  // Own keys only: `constructor` or `toString` is no run event.
  const mapped = Object.hasOwn(RUN_EVENT_STATUS, eventType) ? RUN_EVENT_STATUS[eventType] : undefined;
  const payload = object(body.payload);
  if (mapped === undefined || !payload || typeof payload.id !== "string" || payload.id === "") {
    return { ok: true, event, eventType };
  }
  const id = payload.id;
  if (!RUN_ID.test(id)) return { ok: false, reason: "The event's payload.id is not a run id." };
  if (payload.object === "signed_data_url") {
    event.run = { id, status: mapped };
    return { ok: true, event, eventType };
  }
  let facts: ReturnType<typeof factsFromWorkflowRun>;
  try {
    facts = factsFromWorkflowRun(payload, id);
  } catch (error) {
    // Credits past what the index stores exactly: a malformed event (401), not Extend failing.
    if (error instanceof ApiError) return { ok: false, reason: error.message };
    throw error;
  }
  event.run = { ...facts, status: isStatus(payload.status) ? payload.status : mapped };
  return { ok: true, event, eventType };
}
