import { createRoute, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { loadConfig } from "../app/config.ts";
import type { AppEnv } from "../app/env.ts";
import { ApiError } from "../app/errors.ts";
import { createRouter, errorResponse } from "../app/router.ts";
import { deliverEvent } from "../run-index/client.ts";
import { parseEvent, SIGNATURE_HEADER, TIMESTAMP_HEADER, verifySignature } from "../run-index/webhook.ts";
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
    ...errorResponses(["UNAUTHORIZED", "NOT_FOUND", "PAYLOAD_TOO_LARGE", "INTERNAL_ERROR"]),
  },
});

function tooLarge(): ApiError {
  return new ApiError("PAYLOAD_TOO_LARGE", `The body is larger than ${MAX_WEBHOOK_BODY_BYTES} bytes.`);
}

/**
 * Reads the body once, refusing it as soon as it is known to be too large (declared or counted).
 * The rest is left unread, not cancelled: the runtime discards it after the 413, where a cancel
 * can cut the connection before the 413 is sent (wrangler dev answers a 500 instead).
 */
async function readBody(request: Request): Promise<Uint8Array> {
  const declared = request.headers.get("content-length");
  if (declared !== null && /^\d+$/.test(declared.trim()) && Number(declared) > MAX_WEBHOOK_BODY_BYTES) {
    throw tooLarge();
  }
  if (!request.body) return new Uint8Array(0);
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > MAX_WEBHOOK_BODY_BYTES) {
      reader.releaseLock();
      throw tooLarge();
    }
    chunks.push(value);
  }
  const body = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    body.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return body;
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
  const body = await readBody(c.req.raw);
  const timestamp = c.req.header(TIMESTAMP_HEADER) ?? null;
  const signed = await verifySignature(
    { timestamp, signature: c.req.header(SIGNATURE_HEADER) ?? null, body },
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
