import { expect } from "vitest";
import { TEST_UPSTREAM_KEY } from "./constants.ts";

/** The proxy's error body (src/app/errors.ts), as a client sees it. */
export interface ErrorEnvelope {
  code: string;
  message: string;
  retryable: boolean;
  requestId: string;
  details?: { field: string; message: string }[];
}

/** A response read once, so a test can assert on its text and headers together. */
export interface ReadResponse {
  status: number;
  headers: Headers;
  text: string;
}

export async function read(response: Response): Promise<ReadResponse> {
  return { status: response.status, headers: response.headers, text: await response.text() };
}

/** Fails when the upstream key (or its Bearer form) shows up anywhere a client could read it. */
export function expectNoUpstreamKey(response: ReadResponse): void {
  expect(response.text).not.toContain(TEST_UPSTREAM_KEY);
  response.headers.forEach((value, name) => {
    expect(value, `header ${name}`).not.toContain(TEST_UPSTREAM_KEY);
  });
}

/**
 * Checks the one error envelope: JSON with code, message, retryable and a request id that matches
 * the `x-request-id` header; no stack trace; never the upstream key. Returns the parsed body.
 */
export function expectErrorEnvelope(
  response: ReadResponse,
  expected: { status: number; code: string; retryable?: boolean },
): ErrorEnvelope {
  expect(response.status, response.text).toBe(expected.status);
  expect(response.headers.get("content-type")).toMatch(/^application\/json/);
  const body = JSON.parse(response.text) as ErrorEnvelope;
  expect(body.code).toBe(expected.code);
  if (expected.retryable !== undefined) expect(body.retryable).toBe(expected.retryable);
  expect(typeof body.message).toBe("string");
  expect(body.requestId).toMatch(/\S/);
  expect(response.headers.get("x-request-id")).toBe(body.requestId);
  expect(response.text).not.toMatch(/\bat \S+ \(|\.ts:\d+|Error:/);
  expectNoUpstreamKey(response);
  return body;
}
