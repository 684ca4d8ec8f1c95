import { createRoute, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { loadConfig } from "../app/config.ts";
import type { AppEnv } from "../app/env.ts";
import { ApiError } from "../app/errors.ts";
import { createRouter, errorResponse } from "../app/router.ts";
import { readAll, StreamTooLong } from "../lib/bytes.ts";
import { deliverEvent } from "../run-index/client.ts";
import {
  parseEvent,
  SIGNATURE_HEADER,
  signedPrefix,
  TIMESTAMP_HEADER,
  UNIX_SECONDS,
  verifySignature,
} from "../run-index/webhook.ts";
import { errorResponses } from "./responses.ts";

export const WEBHOOK_PATH = "/webhooks/extend";
/** Largest body accepted; Extend sends big payloads as a signed URL instead (README "Run index"). */
export const MAX_WEBHOOK_BODY_BYTES = 10 * 1024 * 1024;

const WebhookReceipt = z
  .object({
    object: z.literal("webhook_receipt"),
    eventId: z.string(),
    duplicate: z.boolean().openapi({ description: "This eventId was applied before; nothing changed now." }),
    applied: z.boolean().openapi({ description: "The event changed the run index." }),
  })
  .openapi("WebhookReceipt");

const webhookRoute = createRoute({
  method: "post",
  path: WEBHOOK_PATH,
  summary: "Extend webhook receiver",
  description:
    "Takes Extend's workflow run events (`workflow_run.completed`, `.failed`, `.needs_review`, " +
    "`.rejected`, `.cancelled`) into the run index at once. Signed by Extend " +
    "(`x-extend-request-timestamp`, `x-extend-request-signature`) with `EXTEND_WEBHOOK_SECRET`; no " +
    "caller credentials, no CORS. Does not exist (404) while `EXTEND_WEBHOOK_SECRET` is unset.",
  security: [],
  responses: {
    200: {
      description: "Verified and applied (or a duplicate of an event already applied).",
      content: { "application/json": { schema: WebhookReceipt } },
    },
    ...errorResponses([
      "UNAUTHORIZED",
      "NOT_FOUND",
      "PAYLOAD_TOO_LARGE",
      "WEBHOOKS_BUSY",
      "CONFIG_INVALID",
      "INTERNAL_ERROR",
    ]),
  },
});

function tooLarge(): ApiError {
  return new ApiError("PAYLOAD_TOO_LARGE", `The body is larger than ${MAX_WEBHOOK_BODY_BYTES} bytes.`);
}

/** Webhook bodies one isolate holds at once: three of the largest, not most of its 128 MB. */
export const MAX_WEBHOOK_BYTES_IN_FLIGHT = 32 * 1024 * 1024;
/**
 * The first buffer of a body, whatever its Content-Length says: room is taken as bytes arrive,
 * so a sender that declares 10 MiB and sends nothing holds this much of the share, not 10 MiB.
 */
export const FIRST_WEBHOOK_BUFFER_BYTES = 64 * 1024;
let bytesInFlight = 0;

const busy = () =>
  new ApiError("WEBHOOKS_BUSY", "Too many webhook bodies are being read at once; retry shortly.", {
    retryAfter: 1,
  });

/** This request's share of the isolate's webhook bytes, given back once it is answered. */
class Held {
  #bytes = 0;
  take(bytes: number): void {
    if (bytesInFlight + bytes > MAX_WEBHOOK_BYTES_IN_FLIGHT) throw busy();
    bytesInFlight += bytes;
    this.#bytes += bytes;
  }
  give(bytes = this.#bytes): void {
    bytesInFlight -= bytes;
    this.#bytes -= bytes;
  }
}

/**
 * Reads the body once, straight into one buffer after `reserve` bytes of room (where the
 * signature's prefix goes), refusing it as soon as it is known to be too large (declared or
 * counted), and every buffer it takes counted against the isolate's webhook share: an unsigned
 * sender cannot make the isolate hold more than MAX_WEBHOOK_BYTES_IN_FLIGHT of bodies, and holds
 * about as much of it as it has sent (the buffer grows by half as the body comes). The rest
 * of a refused body is left unread, not cancelled: the runtime discards it after the answer,
 * where a cancel can cut the connection before it is sent (wrangler dev answers a 500 instead).
 */
async function readBody(
  request: Request,
  reserve: number,
  held: Held,
): Promise<{ room: Uint8Array; body: Uint8Array }> {
  const header = request.headers.get("content-length")?.trim();
  const declared = header !== undefined && /^\d+$/.test(header) ? Number(header) : undefined;
  if (declared !== undefined && declared > MAX_WEBHOOK_BODY_BYTES) throw tooLarge();
  let room = new Uint8Array(reserve);
  if (request.body) {
    room = await readAll(request.body, {
      sizeHint: Math.min(declared ?? 0, FIRST_WEBHOOK_BUFFER_BYTES),
      maxBytes: MAX_WEBHOOK_BODY_BYTES,
      reserve,
      leaveUnread: true,
      // A buffer replaced as the body grows is let go in the same synchronous step that makes the
      // new one (no other request runs meanwhile), so the share counts what stays held.
      onBuffer: (size, replaces) => {
        held.give(replaces);
        held.take(size);
      },
    }).catch((error: unknown) => {
      if (error instanceof StreamTooLong) throw tooLarge();
      if (error instanceof ApiError) throw error;
      // The sender cut the body off (a dropped connection, a body shorter than it declared): a
      // delivery that fails like any other, not an error of the proxy's.
      throw new ApiError("UNAUTHORIZED", "The webhook body could not be read to its end.", { cause: error });
    });
  }
  return { room, body: room.subarray(reserve) };
}

/** While no secret is set the route does not exist: the same 404 as any unknown path. */
const routeMissing = (c: Context<AppEnv>) =>
  new ApiError("NOT_FOUND", `No route for ${c.req.method} ${c.req.path}.`);

const unauthorized = () =>
  new ApiError(
    "UNAUTHORIZED",
    "The webhook signature is missing, invalid or outside the accepted time window.",
  );

async function receive(c: Context<AppEnv>) {
  const config = loadConfig(c.env);
  if (config.webhookSecrets.length === 0) throw routeMissing(c);
  const timestamp = c.req.header(TIMESTAMP_HEADER) ?? null;
  // Room for the signed prefix only for a timestamp that could verify: nothing else is trusted.
  const reserve = timestamp !== null && UNIX_SECONDS.test(timestamp) ? signedPrefix(timestamp).length : 0;
  const held = new Held();
  try {
    const { room, body } = await readBody(c.req.raw, reserve, held);
    const signed = await verifySignature(
      { timestamp, signature: c.req.header(SIGNATURE_HEADER) ?? null, body, room },
      config.webhookSecrets,
      Date.now(),
    );
    // Nothing of the body is looked at before this point.
    if (!signed || timestamp === null) throw unauthorized();
    let text: string;
    try {
      text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(body);
    } catch {
      throw new ApiError("UNAUTHORIZED", "The webhook body is not UTF-8.");
    }
    const parsed = parseEvent(text, Number(timestamp) * 1000);
    // A failure after the signature is a 401 too, as every failure is (Extend retries it): only
    // an oversized body is told apart.
    if (!parsed.ok) throw new ApiError("UNAUTHORIZED", `The webhook body is malformed: ${parsed.reason}`);
    const outcome = await deliverEvent(c.env, config, parsed.event);
    return c.json(
      {
        object: "webhook_receipt" as const,
        eventId: parsed.event.eventId,
        duplicate: outcome?.duplicate ?? false,
        applied: outcome?.applied ?? false,
      },
      200,
      { "cache-control": "no-store" },
    );
  } finally {
    held.give();
  }
}

/**
 * POST /webhooks/extend, outside caller authentication and CORS (Extend calls it server to
 * server). Every other method gets its own 405 naming POST, so the app's GET-only 405s elsewhere
 * stay as they are.
 */
export const webhooks = createRouter()
  .openapi(webhookRoute, (c) => receive(c))
  .all(WEBHOOK_PATH, (c) => {
    if (loadConfig(c.env).webhookSecrets.length === 0) throw routeMissing(c);
    if (c.req.method === "OPTIONS") return c.body(null, 204, { allow: "POST", "cache-control": "no-store" });
    const response = errorResponse(
      c,
      new ApiError("METHOD_NOT_ALLOWED", `${c.req.method} is not allowed; use POST.`),
    );
    response.headers.set("allow", "POST");
    return response;
  });
