// Extend's webhooks as the fake sends them: run events for a run's new status, signed like
// Extend signs them (HMAC-SHA256, hex, over `v0:{timestamp}:{body}` with the endpoint's signing
// secret), inline or in the signed-URL form Extend uses for large payloads. WebCrypto only, so
// the same code signs in workerd (tests) and in Node (npm start).
import { type FakeRun, type RunStatus, workflowRunOf } from "./extend.ts";

/** The event type Extend sends when a run reaches a status; the others send none. */
export const EVENT_TYPE_BY_STATUS: Partial<Record<RunStatus, string>> = {
  PROCESSED: "workflow_run.completed",
  FAILED: "workflow_run.failed",
  NEEDS_REVIEW: "workflow_run.needs_review",
  REJECTED: "workflow_run.rejected",
  CANCELLED: "workflow_run.cancelled",
};

export interface WebhookEvent {
  eventId: string;
  eventType: string;
  payload: Record<string, unknown>;
}

/**
 * The event for a run's current status, or undefined for a status Extend sends no event for.
 * `form: "url"` gives the signed-URL payload, which carries the run's id but not the run.
 */
export function runEvent(
  run: FakeRun,
  eventId: string,
  form: "inline" | "url" = "inline",
): WebhookEvent | undefined {
  const eventType = EVENT_TYPE_BY_STATUS[run.status];
  if (eventType === undefined) return undefined;
  const payload =
    form === "url"
      ? {
          object: "signed_data_url",
          id: run.id,
          data: `https://fake-extend.test/payloads/${eventId}`,
          metadata: {},
        }
      : workflowRunOf(run);
  return { eventId, eventType, payload };
}

const encoder = new TextEncoder();

/** Extend's signature of `body` at `timestamp` (Unix seconds, as text). */
export async function sign(secret: string, timestamp: string, body: string): Promise<string> {
  const key = await crypto.subtle.importKey(
    "raw",
    encoder.encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const mac = new Uint8Array(
    await crypto.subtle.sign("HMAC", key, encoder.encode(`v0:${timestamp}:${body}`)),
  );
  return [...mac].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}

export interface SignedDelivery {
  body: string;
  headers: Record<string, string>;
}

/** One delivery of `event` as Extend would POST it, signed at `nowMs`. */
export async function signedDelivery(
  secret: string,
  event: WebhookEvent,
  nowMs = Date.now(),
): Promise<SignedDelivery> {
  const body = JSON.stringify(event);
  const timestamp = String(Math.floor(nowMs / 1000));
  return {
    body,
    headers: {
      "content-type": "application/json",
      "x-extend-request-timestamp": timestamp,
      "x-extend-request-signature": await sign(secret, timestamp, body),
      "x-extend-api-version": "2026-02-09",
    },
  };
}

/** POSTs a signed delivery to `url`; resolves to the receiver's HTTP status. */
export async function deliver(url: string, secret: string, event: WebhookEvent): Promise<number> {
  const delivery = await signedDelivery(secret, event);
  const response = await fetch(url, { method: "POST", headers: delivery.headers, body: delivery.body });
  await response.body?.cancel();
  return response.status;
}
