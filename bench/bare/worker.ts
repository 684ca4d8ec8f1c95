// The benchmark's anchor: what a team writes in an afternoon to cache Extend's list in KV, with
// Hono. The request URL is the key; no validation, no authentication, no rate limit, no log
// line, no security headers. `npm run bench` serves it under `wrangler dev` beside the proxy.
import { Hono } from "hono";

/** The two KV methods the anchor uses (this file is typechecked without the Workers types). */
interface PageStore {
  get(key: string): Promise<string | null>;
  put(key: string, value: string, options: { expirationTtl: number }): Promise<void>;
}

interface Bindings {
  PAGES: PageStore;
  UPSTREAM_URL: string;
  UPSTREAM_KEY: string;
}

const app = new Hono<{ Bindings: Bindings }>();

app.get("/healthz", (c) => c.json({ ok: true }));

app.get("/workflow_runs", async (c) => {
  const cached = await c.env.PAGES.get(c.req.url);
  if (cached !== null) return c.body(cached, 200, { "content-type": "application/json" });
  const upstream = await fetch(`${c.env.UPSTREAM_URL}/workflow_runs${new URL(c.req.url).search}`, {
    headers: { authorization: `Bearer ${c.env.UPSTREAM_KEY}`, "x-extend-api-version": "2026-02-09" },
  });
  const text = await upstream.text();
  if (upstream.status === 200)
    c.executionCtx.waitUntil(c.env.PAGES.put(c.req.url, text, { expirationTtl: 60 }));
  return c.body(text, upstream.status === 200 ? 200 : 502, { "content-type": "application/json" });
});

export default app;
