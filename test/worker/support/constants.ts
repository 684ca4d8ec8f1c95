/** The upstream key every worker test runs with: recognisable, so a leak is easy to spot. */
export const TEST_UPSTREAM_KEY = "sk_test_CANARY_upstream_key_7f3c9d";
/** Where the tests' fake Extend lives; msw answers for it inside workerd. */
export const FAKE_EXTEND_ORIGIN = "https://fake-extend.test";
/**
 * Headers the fake Extend sends (as Extend and its infrastructure might) that the proxy must never
 * pass on to a caller: cookies, server and rate-limit details, traces, Extend's request id and a
 * redirect's target.
 */
export const UPSTREAM_ONLY_HEADERS = [
  "set-cookie",
  "server",
  "x-ratelimit-limit",
  "x-ratelimit-remaining",
  "x-powered-by",
  "x-internal-trace",
  "x-extend-request-id",
  "location",
] as const;
