import { Jwt } from "hono/utils/jwt";
import type { Config } from "../app/config.ts";
import { JwksUnavailableError, jwksKeys } from "./jwks.ts";

/**
 * Signature algorithms a caller JWT may use. Asymmetric only: an HMAC algorithm would let anyone
 * holding the public key (it is public) sign tokens, and `none` signs nothing.
 */
export const JWT_ALGORITHMS = [
  "RS256",
  "RS384",
  "RS512",
  "PS256",
  "PS384",
  "PS512",
  "ES256",
  "ES384",
] as const;
type JwtAlgorithm = (typeof JWT_ALGORITHMS)[number];

/** Longer than any real token; refuse before decoding. */
export const MAX_JWT_CHARS = 16 * 1024;
/** `typ` values accepted when the header has one (RFC 7519 and RFC 9068 access tokens). */
const ACCEPTED_TYPES = ["JWT", "at+jwt"];

export type JwtResult = { ok: true; subject: string } | { ok: false; reason: string; unavailable?: boolean };

const isAlgorithm = (alg: unknown): alg is JwtAlgorithm =>
  typeof alg === "string" && (JWT_ALGORITHMS as readonly string[]).includes(alg);

/** Whether a bearer credential has the shape of a JWS compact token. */
export function looksLikeJwt(token: string): boolean {
  return /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(token);
}

/**
 * Seconds of clock difference tolerated between the identity provider and the proxy, for `exp`,
 * `nbf` and `iat` alike (RFC 7519 §4.1.4 allows "some small leeway").
 */
export const JWT_CLOCK_SKEW_SECONDS = 60;

const SIGNATURE_REJECTED = "the token's signature does not verify";

const finiteNumber = (value: unknown): value is number => typeof value === "number" && Number.isFinite(value);

/** The claims of a token whose signature verified; the first problem found, or the subject. */
function checkClaims(claims: unknown, jwt: NonNullable<Config["jwt"]>): JwtResult {
  if (typeof claims !== "object" || claims === null || Array.isArray(claims)) {
    return { ok: false, reason: "the token's claims are not an object" };
  }
  const payload = claims as Record<string, unknown>;
  const now = Math.floor(Date.now() / 1000);
  if (payload.exp === undefined) return { ok: false, reason: "the token has no exp claim" };
  if (!finiteNumber(payload.exp) || payload.exp + JWT_CLOCK_SKEW_SECONDS <= now) {
    return { ok: false, reason: "the token has expired" };
  }
  if (
    payload.nbf !== undefined &&
    (!finiteNumber(payload.nbf) || payload.nbf > now + JWT_CLOCK_SKEW_SECONDS)
  ) {
    return { ok: false, reason: "the token is not valid yet" };
  }
  if (
    payload.iat !== undefined &&
    (!finiteNumber(payload.iat) || payload.iat > now + JWT_CLOCK_SKEW_SECONDS)
  ) {
    return { ok: false, reason: "the token was issued in the future" };
  }
  if (payload.iss !== jwt.issuer) return { ok: false, reason: "the token's issuer is not accepted" };
  const audiences = Array.isArray(payload.aud) ? payload.aud : [payload.aud];
  if (!audiences.some((aud) => typeof aud === "string" && jwt.audience.includes(aud))) {
    return { ok: false, reason: "the token's audience is not accepted" };
  }
  // Cloudflare Access service tokens carry their identity in common_name and an empty sub.
  const subject =
    typeof payload.sub === "string" && payload.sub !== ""
      ? payload.sub
      : typeof payload.common_name === "string" && payload.common_name !== ""
        ? payload.common_name
        : undefined;
  if (subject === undefined) return { ok: false, reason: "the token has no sub claim" };
  return { ok: true, subject };
}

/**
 * Verifies a caller JWT against the configured key set: an allowed asymmetric algorithm, a kid
 * found in the (cached) JWKS, then the signature, and only then the claims (`exp` required, `nbf`,
 * `iat`, `iss`, `aud`, a subject), with JWT_CLOCK_SKEW_SECONDS of leeway on the times. Until the
 * signature verifies nothing depends on the claims, so a forged token learns nothing about the
 * accepted issuer or audience. `subject` is the caller's raw identity: not yet fit for a log line.
 */
export async function verifyCallerJwt(token: string, jwt: NonNullable<Config["jwt"]>): Promise<JwtResult> {
  if (token.length > MAX_JWT_CHARS || !looksLikeJwt(token)) {
    return { ok: false, reason: "the token is not a well-formed JWT" };
  }
  let decoded: unknown;
  try {
    decoded = Jwt.decode(token).header;
  } catch {
    decoded = undefined;
  }
  // A header is a JSON object (RFC 7515 §4); `null`, an array or a scalar decodes without error.
  if (typeof decoded !== "object" || decoded === null || Array.isArray(decoded)) {
    return { ok: false, reason: "the token is not a well-formed JWT" };
  }
  const header = decoded as { alg?: unknown; kid?: unknown; typ?: unknown };
  const alg = header.alg;
  if (!isAlgorithm(alg)) {
    return {
      ok: false,
      reason: `the token's algorithm is not accepted (use one of ${JWT_ALGORITHMS.join(", ")})`,
    };
  }
  if (typeof header.kid !== "string" || header.kid === "") {
    return { ok: false, reason: "the token's header has no kid" };
  }
  let key: Awaited<ReturnType<ReturnType<typeof jwksKeys>["key"]>>;
  try {
    key = await jwksKeys(jwt.jwksUrl).key(header.kid);
  } catch (error) {
    if (error instanceof JwksUnavailableError) {
      return { ok: false, reason: "the signing keys could not be fetched; retry later", unavailable: true };
    }
    throw error;
  }
  if (!key) return { ok: false, reason: "the token's signing key is not known" };
  if (key.alg !== undefined && key.alg !== alg) {
    return { ok: false, reason: "the token's algorithm does not match its key" };
  }
  let claims: unknown;
  try {
    // Signature and header only: every claim check is off here and done below, after it.
    claims = await Jwt.verify(token, key, {
      alg,
      exp: false,
      nbf: false,
      iat: false,
      ...(header.typ === undefined ? {} : { typ: ACCEPTED_TYPES }),
    });
  } catch (error) {
    const name = error instanceof Error ? error.name : "";
    return {
      ok: false,
      reason: name === "JwtHeaderInvalid" ? "the token's header is not accepted" : SIGNATURE_REJECTED,
    };
  }
  return checkClaims(claims, jwt);
}
