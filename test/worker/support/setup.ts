import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll } from "vitest";

/** Every outbound fetch of the worker under test goes through this; unexpected ones fail the test. */
export const network = setupServer();

beforeAll(() => network.listen({ onUnhandledRequest: "error" }));
afterEach(() => network.resetHandlers());
afterAll(() => network.close());
