import { createRoute, z } from "@hono/zod-openapi";
import { createRouter } from "../app/router.ts";

const healthRoute = createRoute({
  method: "get",
  path: "/healthz",
  summary: "Liveness",
  description: "Answers without touching Extend or KV; needs no credentials and is not rate limited.",
  responses: {
    200: {
      description: "The Worker is up.",
      content: { "application/json": { schema: z.object({ ok: z.literal(true) }).openapi("Health") } },
    },
  },
});

export const health = createRouter().openapi(healthRoute, (c) => c.json({ ok: true as const }, 200));
