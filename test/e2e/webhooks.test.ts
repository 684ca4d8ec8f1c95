// POST /webhooks/extend through `wrangler dev` (what `npm start` runs), where a body the Worker
// refuses unread still travels through wrangler's own proxy in front of it.
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningFakeServer, startFakeServer } from "../../fake/server.ts";
import { sign } from "../../fake/webhooks.ts";
import { startWranglerDev, type WranglerDev } from "../../scripts/wrangler-dev.ts";

const UPSTREAM_KEY = `sk_test_e2e_${randomBytes(6).toString("hex")}`;
const SECRET = `wss_e2e_${randomBytes(16).toString("hex")}`;
const MAX_BODY = 10 * 1024 * 1024;

let upstream: RunningFakeServer;
let proxy: WranglerDev;
let stateDir: string;

beforeAll(async () => {
  upstream = await startFakeServer({ fake: { apiKey: UPSTREAM_KEY, dataset: { size: 20, seed: 3 } } });
  stateDir = await mkdtemp(join(tmpdir(), "extend-runs-proxy-e2e-webhooks-"));
  proxy = await startWranglerDev({
    persistTo: stateDir,
    vars: {
      EXTEND_API_BASE_URL: upstream.url,
      EXTEND_API_KEY: UPSTREAM_KEY,
      EXTEND_WEBHOOK_SECRET: SECRET,
    },
  });
});

afterAll(async () => {
  await proxy?.stop();
  await upstream?.close();
  if (stateDir) await rm(stateDir, { recursive: true, force: true });
});

/** A signed event padded to `size` bytes. */
async function signedEvent(size: number): Promise<{ body: Buffer; headers: Record<string, string> }> {
  const head = `{"eventId":"evt_e2e_${size}_${Date.now()}","eventType":"workflow.created","payload":{"pad":"`;
  const tail = `"}}`;
  const body = Buffer.concat([
    Buffer.from(head),
    Buffer.alloc(size - head.length - tail.length, "a"),
    Buffer.from(tail),
  ]);
  const timestamp = String(Math.floor(Date.now() / 1000));
  return {
    body,
    headers: {
      "content-type": "application/json",
      "x-extend-request-timestamp": timestamp,
      "x-extend-request-signature": await sign(SECRET, timestamp, body.toString()),
    },
  };
}

/** POSTs with a Content-Length, as Extend does; resolves to the status and body it got back. */
function post(body: Buffer, headers: Record<string, string>): Promise<{ status: number; text: string }> {
  const url = new URL("/webhooks/extend", proxy.url);
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method: "POST", headers: { ...headers, "content-length": String(body.length) } },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          text += chunk;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

describe("POST /webhooks/extend under wrangler dev", () => {
  it("answers a declared body over 10 MiB with its 413, not a dropped connection", async () => {
    for (let attempt = 0; attempt < 3; attempt++) {
      const { body, headers } = await signedEvent(MAX_BODY + 1);
      const response = await post(body, headers);
      expect(response.status).toBe(413);
      expect(JSON.parse(response.text)).toMatchObject({ code: "PAYLOAD_TOO_LARGE" });
    }
    const { body, headers } = await signedEvent(MAX_BODY);
    expect((await post(body, headers)).status).toBe(200);
  });
});
