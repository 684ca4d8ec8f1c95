/** The upstream key every worker test runs with: recognisable, so a leak is easy to spot. */
export const TEST_UPSTREAM_KEY = "sk_test_CANARY_upstream_key_7f3c9d";
/** Where the tests' fake Extend lives; msw answers for it inside workerd. */
export const FAKE_EXTEND_ORIGIN = "https://fake-extend.test";
