import type { Context } from "hono";
import type { AppEnv } from "../app/env.ts";

/** Set by Cloudflare's edge, which overwrites any value a client sends; the only source of the client ip. */
const CLIENT_IP_HEADER = "cf-connecting-ip";
const CLIENT_IP = /^[0-9A-Fa-f:.]{2,45}$/;

/** The client ip for anonymous callers and for counting rejected credentials; `unknown` when absent. */
export function clientIp(c: Context<AppEnv>): string {
  const ip = c.req.header(CLIENT_IP_HEADER)?.trim() ?? "";
  return CLIENT_IP.test(ip) ? ip : "unknown";
}
