import { type CallOptions, callProxy } from "./proxy.ts";

let counter = 0;

/** A workspace id no other test uses, so a page cache in front can never answer for upstream. */
export function isolatedEnv(): Partial<Env> {
  return { EXTEND_WORKSPACE_ID: `ws_${crypto.randomUUID().replaceAll("-", "")}` };
}

/**
 * A client ip no other call uses, so the per-caller rate limit never refuses a test's request.
 * Distinct in its first 64 bits: the proxy counts an IPv6 caller by its /64.
 */
export function freshClientIp(): string {
  counter += 1;
  return `2001:db8:${(counter >>> 16).toString(16)}:${(counter & 0xffff).toString(16)}::1`;
}

/**
 * Calls the proxy as a caller of its own (fresh client ip) unless the test names one. Tests of
 * the core use it so that rate limits and caches meant for many callers stay out of their way.
 */
export function callAsFreshCaller(path: string, options: CallOptions = {}): Promise<Response> {
  return callProxy(path, {
    ...options,
    headers: { "cf-connecting-ip": freshClientIp(), ...options.headers },
  });
}
