import { type DefaultBodyType, HttpResponse, http, type StrictRequest } from "msw";
import { FakeExtend, type FakeExtendOptions } from "../../../fake/extend.ts";
import { FAKE_EXTEND_ORIGIN, TEST_UPSTREAM_KEY } from "./constants.ts";
import { network } from "./setup.ts";

/**
 * Answers one intercepted request with the fake (at `url`, the request's own unless a test
 * rewrote it). A reset becomes a network error, and so does a hanging call the proxy gave up on.
 */
export async function answerWithFake(
  fake: FakeExtend,
  request: StrictRequest<DefaultBodyType>,
  url = request.url,
): Promise<Response> {
  try {
    const response = await fake.handle({
      url,
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
}

/** Starts a fresh fake Extend for one test and routes the worker's upstream calls to it. */
export function useFakeExtend(
  options: Partial<FakeExtendOptions> = {},
  origin = FAKE_EXTEND_ORIGIN,
): FakeExtend {
  const fake = new FakeExtend({ apiKey: TEST_UPSTREAM_KEY, dataset: { size: 120, seed: 7 }, ...options });
  network.use(http.all(`${origin}/*`, ({ request }) => answerWithFake(fake, request)));
  return fake;
}
