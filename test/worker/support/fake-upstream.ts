import { HttpResponse, http } from "msw";
import { FakeExtend, type FakeExtendOptions } from "../../../fake/extend.ts";
import { FAKE_EXTEND_ORIGIN, TEST_UPSTREAM_KEY } from "./constants.ts";
import { network } from "./setup.ts";

/** Starts a fresh fake Extend for one test and routes the worker's upstream calls to it. */
export function useFakeExtend(
  options: Partial<FakeExtendOptions> = {},
  origin = FAKE_EXTEND_ORIGIN,
): FakeExtend {
  const fake = new FakeExtend({ apiKey: TEST_UPSTREAM_KEY, dataset: { size: 120, seed: 7 }, ...options });
  network.use(
    http.all(`${origin}/*`, async ({ request }) => {
      try {
        const response = await fake.handle({
          url: request.url,
          method: request.method,
          headers: request.headers,
          signal: request.signal as AbortSignal,
        });
        return response.type === "error" ? HttpResponse.error() : response;
      } catch (error) {
        // The proxy gave up on a hanging call (its timeout aborted the request): nothing to answer.
        if (request.signal.aborted) return HttpResponse.error();
        throw error;
      }
    }),
  );
  return fake;
}
