// The page source lets go of a page once every reader of it is done: its bytes, and the fold the
// tenant object sent with it (tens of kilobytes outside the heap, which V8 would let pile up).
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../../src/app/config.ts";
import { createKvCache } from "../../../src/cache/kv-cache.ts";
import { cachedPages } from "../../../src/cache/pages.ts";
import { pageFromBytes, type UpstreamPage } from "../../../src/extend/client.ts";
import { listQuery } from "../../../src/extend/schemas.ts";
import { foldPageBytes, type PrunedPage, VALUES_PER_RUN } from "../../../src/stats/fold-bytes.ts";
import { freshWorkspaceId } from "../support/tenant.ts";

const text = JSON.stringify({
  object: "list",
  data: [{ id: "r1", createdAt: "2024-05-01T00:00:00.000Z", usage: { credits: 2 } }],
  nextPageToken: null,
});

describe("cachedPages", () => {
  it("frees a page's bytes and its fold once the last of the readers sharing its load is done", async () => {
    const config = loadConfig({ ...env, EXTEND_WORKSPACE_ID: freshWorkspaceId() });
    let gate: () => void = () => undefined;
    const held = new Promise<void>((resolve) => {
      gate = resolve;
    });
    const loaded: UpstreamPage[] = [];
    // The KV write of a loaded page runs after its response, and holds the page until it is done.
    const background: Promise<unknown>[] = [];
    const pages = cachedPages({
      config,
      cache: createKvCache({
        kv: env.PAGE_CACHE,
        waitUntil: (promise) => background.push(promise),
        log: () => undefined,
      }),
      upstream: {
        async list() {
          await held;
          const body = new Uint8Array(new TextEncoder().encode(text));
          const page = pageFromBytes(body, { pruned: foldPageBytes(body) as PrunedPage });
          if (!page) throw new Error("not a page");
          loaded.push(page);
          return page;
        },
      },
    });
    const query = listQuery({}, { maxPageSize: 1000 });
    const readers = [pages.get(query), pages.get(query)];
    // Both readers' KV lookups miss, and the second joins the first one's load.
    await new Promise((resolve) => setTimeout(resolve, 200));
    gate();
    const [first, second] = await Promise.all(readers);
    expect(loaded).toHaveLength(1);
    const page = loaded[0] as UpstreamPage;
    first?.release();
    // The other reader still holds the page.
    expect(page.body.byteLength).toBe(text.length);
    expect(page.pruned?.values.length).toBe(VALUES_PER_RUN);
    second?.release();
    await Promise.all(background);
    expect(page.body.byteLength).toBe(0);
    expect(page.pruned?.values.length).toBe(0);
  });
});
