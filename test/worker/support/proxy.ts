import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import worker from "../../../src/index.ts";

export interface CallOptions {
  /** Settings that replace the test defaults for this call. */
  env?: Partial<Env>;
  headers?: Record<string, string>;
  method?: string;
  body?: BodyInit;
}

/** Calls the proxy's HTTP entry point inside workerd and waits for its background work. */
export async function callProxy(path: string, options: CallOptions = {}): Promise<Response> {
  const request = new Request(`https://proxy.test${path}`, {
    method: options.method ?? "GET",
    headers: options.headers ?? {},
    ...(options.body !== undefined ? { body: options.body } : {}),
  });
  const ctx = createExecutionContext();
  const response = await worker.fetch(request, { ...env, ...options.env }, ctx);
  await waitOnExecutionContext(ctx);
  return response;
}

/** Reads a JSON body whose type the test asserts on. */
export async function json<T = Record<string, unknown>>(response: Response): Promise<T> {
  return (await response.json()) as T;
}
