import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ERRORS, type ErrorCode } from "../../../src/app/errors.ts";
import {
  classify,
  MAX_RETRY_AFTER_SECONDS,
  MAX_RETRY_AFTER_WAIT_MS,
  parseRetryAfter,
} from "../../../src/extend/client.ts";

const SECOND = 1000;
const HOUR_MS = 3_600_000;
/** Thursday, 1 October 2026, 00:00:00 UTC: the instant the dates below are read at. */
const NOW = Date.UTC(2026, 9, 1, 0, 0, 0);

describe("parseRetryAfter: delay-seconds", () => {
  it.each<[string, string, number]>([
    ["0", "0", 0],
    ["1", "1", SECOND],
    ["120", "120", 120 * SECOND],
    ["surrounding spaces", "  7 ", 7 * SECOND],
    ["leading zeros", "007", 7 * SECOND],
    ["3600, the longest passed on", "3600", HOUR_MS],
    ["3601, clamped to an hour", "3601", HOUR_MS],
    ["a day, clamped to an hour", "86400", HOUR_MS],
    ["400 nines, beyond any number, clamped", "9".repeat(400), HOUR_MS],
  ])("reads %s", (_name, value, expected) => {
    expect(parseRetryAfter(value, NOW)).toBe(expected);
  });

  it("reads every whole number of seconds, clamped to MAX_RETRY_AFTER_SECONDS", () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 10n ** 30n }), (seconds) => {
        const expected = seconds > BigInt(MAX_RETRY_AFTER_SECONDS) ? HOUR_MS : Number(seconds) * SECOND;
        expect(parseRetryAfter(seconds.toString(), NOW)).toBe(expected);
      }),
    );
  });
});

describe("parseRetryAfter: the three HTTP-date forms of RFC 9110", () => {
  it.each([
    ["IMF-fixdate", "Thu, 01 Oct 2026 00:00:30 GMT", 30 * SECOND],
    ["RFC 850", "Thursday, 01-Oct-26 00:00:30 GMT", 30 * SECOND],
    ["asctime", "Thu Oct  1 00:00:30 2026", 30 * SECOND],
    ["asctime with a two-digit day (clamped to an hour)", "Sat Oct 10 00:00:00 2026", HOUR_MS],
    ["IMF-fixdate now", "Thu, 01 Oct 2026 00:00:00 GMT", 0],
    ["IMF-fixdate in the past (no wait)", "Sun, 06 Nov 1994 08:49:37 GMT", 0],
    ["RFC 850 in the past (no wait)", "Sunday, 06-Nov-94 08:49:37 GMT", 0],
    ["asctime in the past (no wait)", "Sun Nov  6 08:49:37 1994", 0],
    ["IMF-fixdate an hour ahead", "Thu, 01 Oct 2026 01:00:00 GMT", HOUR_MS],
    ["IMF-fixdate a day ahead (clamped to an hour)", "Fri, 02 Oct 2026 00:00:00 GMT", HOUR_MS],
  ])("reads %s", (_name, text, expected) => {
    expect(parseRetryAfter(text, NOW)).toBe(expected);
  });

  it("reads any IMF-fixdate as the wait until it, never negative, at most an hour", () => {
    fc.assert(
      fc.property(fc.integer({ min: -10 * HOUR_MS, max: 10 * HOUR_MS }), (offset) => {
        const at = NOW + offset;
        const whole = Math.floor(at / SECOND) * SECOND;
        const expected = Math.min(Math.max(0, whole - NOW), HOUR_MS);
        expect(parseRetryAfter(new Date(at).toUTCString(), NOW)).toBe(expected);
      }),
    );
  });
});

describe("parseRetryAfter: anything else is ignored", () => {
  it.each([
    ["absent", null],
    ["empty", ""],
    ["blank", "   "],
    ["a word", "soon"],
    ["a fraction", "1.5"],
    ["a negative number", "-1"],
    ["a sign", "+5"],
    ["an exponent", "1e3"],
    ["hexadecimal", "0x10"],
    ["a unit", "5s"],
    ["non-ASCII digits", "٣٠"],
    ["two numbers", "1 2"],
    ["an ISO 8601 instant", "2026-10-01T00:00:30Z"],
    ["a one-digit day", "Thu, 1 Oct 2026 00:00:30 GMT"],
    ["another zone", "Thu, 01 Oct 2026 00:00:30 UTC"],
    ["a lower-case zone", "Thu, 01 Oct 2026 00:00:30 gmt"],
    ["an offset", "Thu, 01 Oct 2026 00:00:30 +0000"],
    ["no weekday", "01 Oct 2026 00:00:30 GMT"],
    ["a full weekday in IMF-fixdate", "Thursday, 01 Oct 2026 00:00:30 GMT"],
    ["an abbreviated weekday in RFC 850", "Thu, 01-Oct-26 00:00:30 GMT"],
    ["asctime with a zone", "Thu Oct  1 00:00:30 2026 GMT"],
    ["an impossible time", "Thu, 01 Oct 2026 99:99:99 GMT"],
  ])("ignores %s", (_name, text) => {
    expect(parseRetryAfter(text, NOW)).toBeUndefined();
  });

  it("never answers outside [0, an hour], whatever the text", () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.string(), fc.stringMatching(/^[\d ,:A-Za-z-]{0,40}$/)),
        fc.integer({ min: 0, max: 4_000_000_000_000 }),
        (text, now) => {
          const ms = parseRetryAfter(text, now);
          if (ms !== undefined) {
            expect(ms).toBeGreaterThanOrEqual(0);
            expect(ms).toBeLessThanOrEqual(HOUR_MS);
          }
        },
      ),
    );
  });
});

type Expected = { kind: "fail" | "retry"; code: ErrorCode };

/** The classification as README "How Extend's answers map to the proxy's" states it, written apart from the code. */
function expectedFor(status: number): Expected {
  if (status === 401 || status === 403) return { kind: "fail", code: "UPSTREAM_AUTH_FAILED" };
  if (status === 402) return { kind: "fail", code: "UPSTREAM_USAGE_BLOCKED" };
  if (status === 400 || status === 410 || status === 422) return { kind: "fail", code: "INVALID_REQUEST" };
  if (status === 404) return { kind: "fail", code: "NOT_FOUND" };
  if (status === 429) return { kind: "retry", code: "UPSTREAM_RATE_LIMITED" };
  if (status >= 500) return { kind: "retry", code: "UPSTREAM_ERROR" };
  return { kind: "fail", code: "UPSTREAM_ERROR" };
}

describe("classify: every upstream status but 200", () => {
  it.each<[string, number, Expected]>([
    ["401: our key rejected", 401, { kind: "fail", code: "UPSTREAM_AUTH_FAILED" }],
    ["403: our key lacks access", 403, { kind: "fail", code: "UPSTREAM_AUTH_FAILED" }],
    ["402: billing", 402, { kind: "fail", code: "UPSTREAM_USAGE_BLOCKED" }],
    ["400: query refused", 400, { kind: "fail", code: "INVALID_REQUEST" }],
    ["410: an expired cursor", 410, { kind: "fail", code: "INVALID_REQUEST" }],
    ["422: query refused", 422, { kind: "fail", code: "INVALID_REQUEST" }],
    ["404: not found", 404, { kind: "fail", code: "NOT_FOUND" }],
    ["429 without Retry-After: retried", 429, { kind: "retry", code: "UPSTREAM_RATE_LIMITED" }],
    ["500", 500, { kind: "retry", code: "UPSTREAM_ERROR" }],
    ["502", 502, { kind: "retry", code: "UPSTREAM_ERROR" }],
    ["503", 503, { kind: "retry", code: "UPSTREAM_ERROR" }],
    ["504", 504, { kind: "retry", code: "UPSTREAM_ERROR" }],
    ["599", 599, { kind: "retry", code: "UPSTREAM_ERROR" }],
    ["301: a redirect is never followed", 301, { kind: "fail", code: "UPSTREAM_ERROR" }],
    ["302", 302, { kind: "fail", code: "UPSTREAM_ERROR" }],
    ["304", 304, { kind: "fail", code: "UPSTREAM_ERROR" }],
    ["307", 307, { kind: "fail", code: "UPSTREAM_ERROR" }],
    ["308", 308, { kind: "fail", code: "UPSTREAM_ERROR" }],
    ["201: unexpected", 201, { kind: "fail", code: "UPSTREAM_ERROR" }],
    ["204: unexpected", 204, { kind: "fail", code: "UPSTREAM_ERROR" }],
    ["206: unexpected", 206, { kind: "fail", code: "UPSTREAM_ERROR" }],
    ["100: unexpected", 100, { kind: "fail", code: "UPSTREAM_ERROR" }],
    ["405: unexpected", 405, { kind: "fail", code: "UPSTREAM_ERROR" }],
    ["408: unexpected", 408, { kind: "fail", code: "UPSTREAM_ERROR" }],
    ["409: unexpected", 409, { kind: "fail", code: "UPSTREAM_ERROR" }],
    ["418: unexpected", 418, { kind: "fail", code: "UPSTREAM_ERROR" }],
    ["451: unexpected", 451, { kind: "fail", code: "UPSTREAM_ERROR" }],
  ])("%s", (_name, status, expected) => {
    const outcome = classify(status, undefined);
    expect(outcome.kind).toBe(expected.kind);
    if (outcome.kind === "ok") throw new Error("a status is never an answer");
    expect(outcome.error.code).toBe(expected.code);
    expect(outcome.error.status).toBe(ERRORS[expected.code].status);
    expect(outcome.error.message).not.toMatch(/Bearer|sk_/);
  });

  it("puts every status from 100 to 599 in the class the table gives", () => {
    for (let status = 100; status <= 599; status++) {
      if (status === 200) continue;
      const outcome = classify(status, undefined);
      const expected = expectedFor(status);
      expect(outcome.kind, `HTTP ${status}`).toBe(expected.kind);
      if (outcome.kind !== "ok") expect(outcome.error.code, `HTTP ${status}`).toBe(expected.code);
    }
  });

  it("sends no Retry-After with anything but a 429 or a 5xx", () => {
    for (const status of [400, 401, 402, 403, 404, 418, 302]) {
      const outcome = classify(status, 5 * SECOND);
      if (outcome.kind === "ok") throw new Error("a status is never an answer");
      expect(outcome.error.retryAfter, `HTTP ${status}`).toBeUndefined();
      expect("waitMs" in outcome && outcome.waitMs !== undefined, `HTTP ${status}`).toBe(false);
    }
  });
});

describe("classify: a 5xx and its Retry-After", () => {
  it.each([
    ["absent: retried, callers told nothing", undefined, "retry", undefined, undefined],
    ["1.5 s: waited, callers told 2 s", 1_500, "retry", 1_500, 2],
    ["5 s: not retried, callers told 5 s", 5 * SECOND, "fail", undefined, 5],
  ] as const)("%s", (_, retryAfterMs, kind, waitMs, seconds) => {
    for (const status of [500, 503]) {
      const outcome = classify(status, retryAfterMs);
      expect(outcome.kind, `HTTP ${status}`).toBe(kind);
      if (outcome.kind === "ok") throw new Error("a status is never an answer");
      expect(outcome.error.code).toBe("UPSTREAM_ERROR");
      expect(outcome.error.retryAfter, `HTTP ${status}`).toBe(seconds);
      expect("waitMs" in outcome ? outcome.waitMs : undefined, `HTTP ${status}`).toBe(waitMs);
    }
  });
});

describe("classify: a 429 and its Retry-After", () => {
  it.each([
    ["absent: retried at once, callers told 1 s", undefined, "retry", undefined, 1],
    ["0 s: retried at once, callers told 1 s", 0, "retry", 0, 1],
    ["0.5 s: waited, callers told 1 s", 500, "retry", 500, 1],
    ["1.5 s: waited, callers told 2 s", 1_500, "retry", 1_500, 2],
    ["exactly the longest wait", MAX_RETRY_AFTER_WAIT_MS, "retry", MAX_RETRY_AFTER_WAIT_MS, 2],
    ["a millisecond past the longest wait: not retried", MAX_RETRY_AFTER_WAIT_MS + 1, "fail", undefined, 3],
    ["two minutes: not retried", 120 * SECOND, "fail", undefined, 120],
    ["an hour: not retried", HOUR_MS, "fail", undefined, 3_600],
  ] as const)("%s", (_name, retryAfterMs, kind, waitMs, seconds) => {
    const outcome = classify(429, retryAfterMs);
    expect(outcome.kind).toBe(kind);
    if (outcome.kind === "ok") throw new Error("a status is never an answer");
    expect(outcome.error.code).toBe("UPSTREAM_RATE_LIMITED");
    expect(outcome.error.retryAfter).toBe(seconds);
    expect(outcome.kind === "retry" ? outcome.waitMs : undefined).toBe(waitMs);
  });

  it("tells callers a whole number of seconds, never less than the wait nor less than one", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: HOUR_MS }), (ms) => {
        const outcome = classify(429, ms);
        if (outcome.kind === "ok") throw new Error("a status is never an answer");
        const seconds = outcome.error.retryAfter ?? 0;
        expect(Number.isInteger(seconds)).toBe(true);
        expect(seconds).toBeGreaterThanOrEqual(1);
        expect(seconds * SECOND).toBeGreaterThanOrEqual(ms);
        expect((seconds - 1) * SECOND).toBeLessThan(Math.max(ms, 1));
        expect(outcome.kind).toBe(ms <= MAX_RETRY_AFTER_WAIT_MS ? "retry" : "fail");
      }),
    );
  });
});
