import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll } from "vitest";

/** Every outbound fetch of the worker under test goes through this; unexpected ones fail the test. */
export const network = setupServer();

const unexpected: string[] = [];

/** Fails the running test once it ends: a request reached a handler that had no one to answer it. */
export function unexpectedRequest(description: string): void {
  unexpected.push(description);
}

beforeAll(() => network.listen({ onUnhandledRequest: "error" }));
afterEach(() => {
  network.resetHandlers();
  const seen = unexpected.splice(0);
  if (seen.length > 0) throw new Error(`unexpected upstream requests:\n${seen.join("\n")}`);
});
afterAll(() => network.close());
