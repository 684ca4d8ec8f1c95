// POST /webhooks/extend through the Worker's HTTP entry point, into a built index in the tenant
// object. Every refused delivery changes nothing and reaches no upstream.
import { listDurableObjectIds, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import type { FakeRun } from "../../../fake/extend.ts";
import { runEvent, sign, signedDelivery, type WebhookEvent } from "../../../fake/webhooks.ts";
import { captureConsole } from "../support/console.ts";
import { expectErrorEnvelope, read } from "../support/envelope.ts";
import { callProxy, json } from "../support/proxy.ts";
import { type IndexFake, restingIndex, settle, stopAlarm, useIndexFake } from "../support/run-index.ts";
import { getStats, referenceStats, summary } from "../support/stats.ts";

const SECRET_A = "wss_CANARY_webhook_secret_A_5d0c2e9b";
const SECRET_B = "wss_CANARY_webhook_secret_B_a81f44c7";
const SECRETS = { EXTEND_WEBHOOK_SECRET: `${SECRET_A},${SECRET_B}` };
const PATH = "/webhooks/extend";

interface Delivery {
  body: BodyInit;
  headers: Record<string, string>;
}

function post(delivery: Delivery, indexEnv: Partial<Env>, extra: Record<string, string> = {}) {
  return callProxy(PATH, {
    method: "POST",
    body: delivery.body,
    headers: { ...delivery.headers, ...extra },
    env: indexEnv,
  });
}

/** A built index of a small fake, with webhooks on; the alarm is stopped so only the test drives it. */
function builtIndex(settings: Partial<Env> = SECRETS): Promise<IndexFake> {
  return restingIndex({ dataset: { size: 40, seed: 21 } }, settings);
}

/** The run the deliveries are about, moved to FAILED in Extend (the webhook tells the index first). */
function failRun(index: IndexFake): { run: FakeRun; event: WebhookEvent } {
  const target = index.fake.runs.find((r) => r.status === "PROCESSED") as FakeRun;
  const run = index.fake.updateRun(target.id, { status: "FAILED" }) as FakeRun;
  const event = runEvent(run, `evt_${crypto.randomUUID()}`) as WebhookEvent;
  return { run, event };
}

async function indexedStatus(index: IndexFake, id: string): Promise<string | undefined> {
  return runInDurableObject(index.stub, (_instance, state) => {
    const rows = state.storage.sql
      .exec<{ status: string }>(`SELECT status FROM runs WHERE id = ?`, id)
      .toArray();
    return rows[0]?.status;
  });
}

const nowSeconds = () => Math.floor(Date.now() / 1000);

/**
 * The Unix second `ahead` seconds from now, waiting for the next second first when less than half
 * of this one is left: a delivery stamped with it is then checked within the second it was
 * stamped in, not in the next one, where it would be a second less ahead.
 */
async function secondsAhead(ahead: number): Promise<number> {
  const left = 1000 - (Date.now() % 1000);
  if (left < 500) await new Promise((resolve) => setTimeout(resolve, left));
  return nowSeconds() + ahead;
}

async function withTimestamp(secret: string, event: WebhookEvent, timestamp: number): Promise<Delivery> {
  const body = JSON.stringify(event);
  return {
    body,
    headers: {
      "content-type": "application/json",
      "x-extend-request-timestamp": String(timestamp),
      "x-extend-request-signature": await sign(secret, String(timestamp), body),
    },
  };
}

const REFUSED: [string, (event: WebhookEvent) => Promise<Delivery>][] = [
  ["a wrong secret", (e) => signedDelivery("wss_not_the_secret", e)],
  ["a timestamp 301 s old", (e) => withTimestamp(SECRET_A, e, nowSeconds() - 301)],
  ["a timestamp 61 s ahead", async (e) => withTimestamp(SECRET_A, e, await secondsAhead(61))],
  [
    "an altered body",
    async (e) => {
      const delivery = await signedDelivery(SECRET_A, e);
      return { ...delivery, body: delivery.body.replace('"FAILED"', '"PROCESSED"') };
    },
  ],
  [
    "an altered timestamp",
    async (e) => {
      const delivery = await signedDelivery(SECRET_A, e);
      const later = String(Number(delivery.headers["x-extend-request-timestamp"]) + 1);
      return { ...delivery, headers: { ...delivery.headers, "x-extend-request-timestamp": later } };
    },
  ],
  [
    "no timestamp header",
    async (e) => {
      const { "x-extend-request-timestamp": _t, ...headers } = (await signedDelivery(SECRET_A, e)).headers;
      return { body: JSON.stringify(e), headers };
    },
  ],
  [
    "no signature header",
    async (e) => {
      const { "x-extend-request-signature": _s, ...headers } = (await signedDelivery(SECRET_A, e)).headers;
      return { body: JSON.stringify(e), headers };
    },
  ],
  [
    "a signature that is not hex",
    async (e) => {
      const delivery = await signedDelivery(SECRET_A, e);
      return { ...delivery, headers: { ...delivery.headers, "x-extend-request-signature": "z".repeat(64) } };
    },
  ],
  [
    "a signature one byte short",
    async (e) => {
      const delivery = await signedDelivery(SECRET_A, e);
      const short = (delivery.headers["x-extend-request-signature"] ?? "").slice(0, 62);
      return { ...delivery, headers: { ...delivery.headers, "x-extend-request-signature": short } };
    },
  ],
  [
    "a timestamp that is not a number",
    async (e) => {
      const body = JSON.stringify(e);
      const headers = {
        "x-extend-request-timestamp": `${nowSeconds()}abc`,
        "x-extend-request-signature": await sign(SECRET_A, `${nowSeconds()}abc`, body),
      };
      return { body, headers };
    },
  ],
];

describe("POST /webhooks/extend", () => {
  it("applies a signed event at once: the very next /stats shows it, and a head walk is due in seconds", async () => {
    const index = await builtIndex();
    const { run, event } = failRun(index);
    const response = await post(await signedDelivery(SECRET_A, event), index.env);
    expect(response.status).toBe(200);
    expect(await json(response)).toEqual({
      object: "webhook_receipt",
      eventId: event.eventId,
      duplicate: false,
      applied: true,
    });
    const calls = index.calls.length;
    const { body } = await getStats(index, {});
    expect(body.source).toBe("index");
    expect(summary(body)).toEqual(referenceStats(index.fake.runs));
    expect(index.calls.length).toBe(calls);
    const alarm = await runInDurableObject(index.stub, (_i, state) => state.storage.getAlarm());
    expect(alarm).not.toBeNull();
    expect(alarm ?? 0).toBeLessThanOrEqual(Date.now() + 2_000);
    // The confirming head walk agrees, and needs no GET.
    await settle(index.stub);
    expect(await indexedStatus(index, run.id)).toBe("FAILED");
    expect(index.calls.filter((url) => url.pathname.includes("/workflow_runs/"))).toEqual([]);
    await stopAlarm(index.stub);
  });

  it("shows at once the end of a run the index saw running seconds before", async () => {
    const index = await builtIndex();
    const target = index.fake.runs.find((r) => r.status === "PROCESSED") as FakeRun;
    index.fake.updateRun(target.id, { status: "PROCESSING" });
    // A sync reads the run while it runs; it finishes within the same few seconds.
    expect((await getStats(index, { maxLagSeconds: "0" })).body.byStatus?.PROCESSING).toBe(
      referenceStats(index.fake.runs).byStatus.PROCESSING,
    );
    await stopAlarm(index.stub);
    const run = index.fake.updateRun(target.id, { status: "PROCESSED" }) as FakeRun;
    const event = runEvent(run, `evt_${crypto.randomUUID()}`) as WebhookEvent;
    const response = await post(await signedDelivery(SECRET_A, event), index.env);
    expect(await json(response)).toMatchObject({ duplicate: false, applied: true });
    const { body } = await getStats(index, {});
    expect(summary(body)).toEqual(referenceStats(index.fake.runs));
    // A replay of the page read while it ran cannot take it back; the head walk confirms it.
    await settle(index.stub);
    expect(await indexedStatus(index, run.id)).toBe("PROCESSED");
    await stopAlarm(index.stub);
  });

  it("accepts the second secret during a rotation, upper-case hex, and the edges of the time window", async () => {
    const index = await builtIndex();
    for (const make of [
      (e: WebhookEvent) => signedDelivery(SECRET_B, e),
      async (e: WebhookEvent) => {
        const d = await signedDelivery(SECRET_A, e);
        const upper = (d.headers["x-extend-request-signature"] ?? "").toUpperCase();
        return { ...d, headers: { ...d.headers, "x-extend-request-signature": upper } };
      },
      (e: WebhookEvent) => withTimestamp(SECRET_A, e, nowSeconds() - 299),
      (e: WebhookEvent) => withTimestamp(SECRET_A, e, nowSeconds() + 59),
    ]) {
      const { event } = failRun(index);
      const response = await post(await make(event), index.env);
      expect(response.status).toBe(200);
    }
    await stopAlarm(index.stub);
  });

  it.each(REFUSED)("refuses %s with a 401 that changes nothing", async (_name, make) => {
    const index = await builtIndex();
    const { run, event } = failRun(index);
    const before = await indexedStatus(index, run.id);
    const calls = index.calls.length;
    const response = await read(await post(await make(event), index.env));
    expectErrorEnvelope(response, { status: 401, code: "UNAUTHORIZED", retryable: false });
    expect(await indexedStatus(index, run.id)).toBe(before);
    expect(before).toBe("PROCESSED");
    expect(index.calls.length).toBe(calls);
    expect(await runInDurableObject(index.stub, (_i, state) => state.storage.getAlarm())).toBeNull();
  });

  it("answers a signed body that is not a JSON event with a 401, and changes nothing", async () => {
    const index = await builtIndex();
    const calls = index.calls.length;
    for (const text of ["not json", '["an array"]', '{"eventType":"workflow_run.failed"}']) {
      const timestamp = String(nowSeconds());
      const delivery = {
        body: text,
        headers: {
          "x-extend-request-timestamp": timestamp,
          "x-extend-request-signature": await sign(SECRET_A, timestamp, text),
        },
      };
      const response = await read(await post(delivery, index.env));
      expectErrorEnvelope(response, { status: 401, code: "UNAUTHORIZED", retryable: false });
    }
    expect(index.calls.length).toBe(calls);
    expect(summary((await getStats(index, {})).body)).toEqual(referenceStats(index.fake.runs));
  });

  it("refuses a run event whose payload id is no run id (a dot segment would leave /workflow_runs/{id})", async () => {
    const index = await builtIndex();
    const calls = index.calls.length;
    const target = index.fake.runs.find((r) => r.status === "PROCESSED") as FakeRun;
    for (const id of [".", "..", "run with spaces", "x".repeat(256)]) {
      for (const format of ["inline", "url"] as const) {
        const event = runEvent({ ...target, id }, `evt_${crypto.randomUUID()}`, format) as WebhookEvent;
        const response = await read(await post(await signedDelivery(SECRET_A, event), index.env));
        expectErrorEnvelope(response, { status: 401, code: "UNAUTHORIZED", retryable: false });
        expect(await indexedStatus(index, id)).toBeUndefined();
      }
    }
    await settle(index.stub);
    expect(index.calls.slice(calls).map((url) => url.pathname)).not.toContain("/workflow_runs/");
    expect(index.calls.slice(calls).map((url) => url.pathname)).not.toContain("/");
    expect(summary((await getStats(index, {})).body)).toEqual(referenceStats(index.fake.runs));
  });

  it("refuses a run event with credits the index cannot hold with a 401, not a 502 Extend would retry", async () => {
    const index = await builtIndex();
    const { run, event } = failRun(index);
    const payload = { ...(event.payload as Record<string, unknown>), usage: { credits: 1e300 } };
    const response = await read(
      await post(await signedDelivery(SECRET_A, { ...event, payload } as WebhookEvent), index.env),
    );
    expectErrorEnvelope(response, { status: 401, code: "UNAUTHORIZED", retryable: false });
    expect(await indexedStatus(index, run.id)).toBe("PROCESSED");
  });

  it("refuses a body over 10 MiB with a 413, declared or streamed", async () => {
    const index = await builtIndex();
    const big = new Uint8Array(10 * 1024 * 1024 + 1).fill(0x20);
    const headers = {
      "x-extend-request-timestamp": String(nowSeconds()),
      "x-extend-request-signature": "0".repeat(64),
    };
    const declared = await read(await post({ body: big, headers }, index.env));
    expectErrorEnvelope(declared, { status: 413, code: "PAYLOAD_TOO_LARGE" });
    const chunk = new Uint8Array(1024 * 1024).fill(0x20);
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent > 11) return controller.close();
        sent += 1;
        controller.enqueue(chunk);
      },
    });
    const streamed = await read(await post({ body: stream, headers }, index.env));
    expectErrorEnvelope(streamed, { status: 413, code: "PAYLOAD_TOO_LARGE" });
    // Exactly 10 MiB is read, verified, and refused only for its signature.
    const limit = await read(await post({ body: big.subarray(0, 10 * 1024 * 1024), headers }, index.env));
    expect(limit.status).toBe(401);
  });

  it("answers a body cut off by its sender with a 401, not an unhandled 500", async () => {
    const index = await builtIndex();
    const { event } = failRun(index);
    const delivery = await signedDelivery(SECRET_A, event);
    const bytes = new TextEncoder().encode(delivery.body);
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(bytes.subarray(0, 10));
        controller.error(new Error("Network connection lost."));
      },
    });
    const { result, lines } = await captureConsole(async () =>
      read(await post({ body, headers: delivery.headers }, index.env)),
    );
    expectErrorEnvelope(result, { status: 401, code: "UNAUTHORIZED", retryable: false });
    expect(lines.join("\n")).not.toContain("unhandled error");
  });

  /** Senders that declare 10 MiB, send `sent` bytes of it and stall until released. */
  function stalledSenders(index: IndexFake, count: number, sent: number) {
    const headers = {
      "x-extend-request-timestamp": String(nowSeconds()),
      "x-extend-request-signature": "0".repeat(64),
      "content-length": String(10 * 1024 * 1024),
    };
    const stalled: (() => void)[] = [];
    const pending = Array.from({ length: count }, () => {
      let left = sent;
      const body = new ReadableStream<Uint8Array>({
        async pull(controller) {
          if (left > 0) {
            const chunk = Math.min(left, 1024 * 1024);
            left -= chunk;
            controller.enqueue(new Uint8Array(chunk).fill(0x20));
            return;
          }
          await new Promise<void>((resolve) => stalled.push(resolve));
          controller.close();
        },
      });
      return post({ body, headers }, index.env);
    });
    return {
      stalled: () => stalled.length,
      release: async () => {
        for (const release of stalled) release();
        for (const response of await Promise.all(pending)) expect([400, 401]).toContain(response.status);
      },
    };
  }

  it("holds at most 32 MiB of bodies at once: past it a 503 to retry, and the room comes back", async () => {
    const index = await builtIndex();
    // Three senders that have sent all but the last KiB of 10 MiB.
    const senders = stalledSenders(index, 3, 10 * 1024 * 1024 - 1024);
    await vi.waitFor(() => expect(senders.stalled()).toBe(3), { timeout: 20_000 });
    const refused = await read(
      await post(
        {
          body: " ".repeat(3 * 1024 * 1024),
          headers: {
            "x-extend-request-timestamp": String(nowSeconds()),
            "x-extend-request-signature": "0".repeat(64),
          },
        },
        index.env,
      ),
    );
    expectErrorEnvelope(refused, { status: 503, code: "WEBHOOKS_BUSY", retryable: true });
    expect(refused.headers.get("retry-after")).toBe("1");
    await senders.release();
    // Every byte held is given back: a delivery is read and verified again.
    const { event } = failRun(index);
    expect((await post(await signedDelivery(SECRET_A, event), index.env)).status).toBe(200);
  });

  it("takes room as a body arrives: senders that declare 10 MiB and send nothing block no delivery", async () => {
    const index = await builtIndex();
    const senders = stalledSenders(index, 8, 1024);
    await vi.waitFor(() => expect(senders.stalled()).toBe(8), { timeout: 5_000 });
    const { event } = failRun(index);
    expect((await post(await signedDelivery(SECRET_A, event), index.env)).status).toBe(200);
    await senders.release();
  });

  it("applies an eventId once: a replay of an older event cannot undo a later one", async () => {
    const index = await builtIndex();
    const { run, event: failed } = failRun(index);
    expect((await post(await signedDelivery(SECRET_A, failed), index.env)).status).toBe(200);
    const processed = runEvent(
      index.fake.updateRun(run.id, { status: "PROCESSED" }) as FakeRun,
      `evt_${crypto.randomUUID()}`,
    ) as WebhookEvent;
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    expect((await post(await signedDelivery(SECRET_A, processed), index.env)).status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    // The first event again, signed later (a retry): a duplicate, so it does not move the run back.
    const replay = await post(await signedDelivery(SECRET_A, failed), index.env);
    expect(await json(replay)).toMatchObject({ duplicate: true, applied: false });
    expect(await indexedStatus(index, run.id)).toBe("PROCESSED");
  });

  it("applies two events of one run signed in the same second in lifecycle order, however they arrive", async () => {
    const index = await builtIndex();
    const signedAt = Date.now();
    const [inOrder, outOfOrder] = index.fake.runs.filter((r) => r.status === "PROCESSING") as FakeRun[];
    for (const [target, order] of [
      [inOrder as FakeRun, ["review", "completed"]],
      [outOfOrder as FakeRun, ["completed", "review"]],
    ] as const) {
      const review = runEvent(
        index.fake.updateRun(target.id, { status: "NEEDS_REVIEW" }) as FakeRun,
        `evt_${crypto.randomUUID()}`,
      ) as WebhookEvent;
      const completed = runEvent(
        index.fake.updateRun(target.id, { status: "PROCESSED" }) as FakeRun,
        `evt_${crypto.randomUUID()}`,
      ) as WebhookEvent;
      for (const which of order) {
        const event = which === "review" ? review : completed;
        expect((await post(await signedDelivery(SECRET_A, event, signedAt), index.env)).status).toBe(200);
      }
      // At once, before any head walk.
      expect(await indexedStatus(index, target.id)).toBe("PROCESSED");
    }
    const { body } = await getStats(index, {});
    expect(summary(body)).toEqual(referenceStats(index.fake.runs));
  });

  it("takes a signed-URL payload by its id and event type, without fetching it", async () => {
    const index = await builtIndex();
    const target = index.fake.runs.find((r) => r.status === "PROCESSED") as FakeRun;
    const run = index.fake.updateRun(target.id, { status: "REJECTED" }) as FakeRun;
    const event = runEvent(run, "evt_url_1", "url") as WebhookEvent;
    expect(event.payload.object).toBe("signed_data_url");
    const response = await post(await signedDelivery(SECRET_A, event), index.env);
    expect(await json(response)).toMatchObject({ applied: true });
    expect(await indexedStatus(index, run.id)).toBe("REJECTED");
    expect(index.calls.some((url) => url.pathname.includes("payloads"))).toBe(false);
  });

  it("acknowledges event types it does not index, changing nothing", async () => {
    const index = await builtIndex();
    const event = { eventId: "evt_other", eventType: "workflow.deployed", payload: { id: "workflow_x" } };
    const response = await post(await signedDelivery(SECRET_A, event), index.env);
    expect(response.status).toBe(200);
    expect(await json(response)).toMatchObject({ duplicate: false, applied: false });
    expect(summary((await getStats(index, {})).body)).toEqual(referenceStats(index.fake.runs));
    await stopAlarm(index.stub);
  });

  it("takes no event type from Object.prototype for a run event", async () => {
    const index = await builtIndex();
    const target = index.fake.runs.find((r) => r.status === "PROCESSED") as FakeRun;
    for (const eventType of ["constructor", "toString", "__proto__", "hasOwnProperty", "valueOf"]) {
      for (const payload of [{ id: target.id }, { id: target.id, status: "FAILED" }]) {
        const event = { eventId: `evt_${crypto.randomUUID()}`, eventType, payload };
        const response = await post(await signedDelivery(SECRET_A, event), index.env);
        expect(response.status, eventType).toBe(200);
        expect(await json(response)).toMatchObject({ duplicate: false, applied: false });
      }
    }
    expect(await indexedStatus(index, target.id)).toBe("PROCESSED");
    expect(summary((await getStats(index, {})).body)).toEqual(referenceStats(index.fake.runs));
  });

  it("does not exist while EXTEND_WEBHOOK_SECRET is unset", async () => {
    const index = await useIndexFake({ dataset: { size: 5, seed: 1 } });
    for (const method of ["POST", "GET", "PUT"]) {
      const response = await read(
        await callProxy(PATH, { method, env: index.env, body: method === "GET" ? undefined : "{}" }),
      );
      const body = expectErrorEnvelope(response, { status: 404, code: "NOT_FOUND" });
      expect(body.message).toBe(`No route for ${method} ${PATH}.`);
    }
    expect(index.calls).toEqual([]);
  });

  it("serves POST only, without CORS or caller credentials", async () => {
    const index = await useIndexFake(
      { dataset: { size: 5, seed: 1 } },
      {
        ...SECRETS,
        ALLOW_ANONYMOUS: "false",
        ALLOWED_ORIGINS: "https://app.example.com",
      },
    );
    const get = await read(
      await callProxy(PATH, { env: index.env, headers: { origin: "https://app.example.com" } }),
    );
    expectErrorEnvelope(get, { status: 405, code: "METHOD_NOT_ALLOWED" });
    expect(get.headers.get("allow")).toBe("POST");
    const preflight = await callProxy(PATH, {
      method: "OPTIONS",
      env: index.env,
      headers: { origin: "https://app.example.com", "access-control-request-method": "POST" },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get("allow")).toBe("POST");
    expect(preflight.headers.get("access-control-allow-origin")).toBeNull();
    // No client token needed (ALLOW_ANONYMOUS is false): the signature is the credential.
    const event = { eventId: "evt_x", eventType: "workflow.deployed", payload: {} };
    const signed = await post(await signedDelivery(SECRET_A, event), index.env, {
      origin: "https://app.example.com",
    });
    expect(signed.status).toBe(200);
    expect(signed.headers.get("access-control-allow-origin")).toBeNull();
    // The other routes still refuse POST with their usual 405.
    const other = await read(
      await callProxy("/workflow_runs", { method: "POST", env: index.env, body: "{}" }),
    );
    expectErrorEnvelope(other, { status: 405, code: "METHOD_NOT_ALLOWED" });
    expect(other.headers.get("allow")).toBe("GET, HEAD, OPTIONS");
    await stopAlarm(index.stub);
  });

  it("with RUN_INDEX=off acknowledges verified events and stores nothing", async () => {
    const index = await useIndexFake({ dataset: { size: 5, seed: 1 } }, { ...SECRETS, RUN_INDEX: "off" });
    const event = runEvent(index.fake.runs[0] as FakeRun, "evt_off") ?? {
      eventId: "evt_off",
      eventType: "x",
      payload: {},
    };
    const response = await post(await signedDelivery(SECRET_A, event), index.env);
    expect(await json(response)).toMatchObject({ duplicate: false, applied: false });
    const ids = (await listDurableObjectIds(env.TENANT)).map((id) => id.toString());
    expect(ids).not.toContain(index.stub.id.toString());
  });

  it("never shows a signing secret in a response or a log line", async () => {
    const index = await builtIndex();
    const { event } = failRun(index);
    const { result, lines } = await captureConsole(async () => {
      const texts: string[] = [];
      for (const make of [...REFUSED.map(([, m]) => m), (e: WebhookEvent) => signedDelivery(SECRET_B, e)]) {
        const response = await post(await make(event), index.env);
        texts.push([...response.headers].join("\n"), await response.text());
      }
      return texts.join("\n");
    });
    for (const secret of [SECRET_A, SECRET_B]) {
      expect(result).not.toContain(secret);
      expect(lines.join("\n")).not.toContain(secret);
    }
    await stopAlarm(index.stub);
  });
});
