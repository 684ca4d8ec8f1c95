import { Jwt } from "hono/utils/jwt";
import type { Config } from "../app/config.ts";
import { shortHash } from "../lib/digest.ts";
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
const LOGGABLE_SUBJECT = /^[\x21-\x7e]{1,128}$/;

export type JwtResult = { ok: true; subject: string } | { ok: false; reason: string; unavailable?: boolean };

const isAlgorithm = (alg: unknown): alg is JwtAlgorithm =>
  typeof alg === "string" && (JWT_ALGORITHMS as readonly string[]).includes(alg);

/** Maps hono's JWT errors (by name: their messages embed the token) to what a caller may read. */
function reasonFor(error: unknown): string {
  const name = error instanceof Error ? error.name : "";
  switch (name) {
    case "JwtTokenExpired":
      return "the token has expired";
    case "JwtTokenNotBefore":
      return "the token is not valid yet";
    case "JwtTokenIssuedAt":
      return "the token was issued in the future";
    case "JwtTokenIssuer":
      return "the token's issuer is not accepted";
    case "JwtTokenAudience":
    case "JwtPayloadRequiresAud":
      return "the token's audience is not accepted";
    case "JwtHeaderInvalid":
      return "the token's header is not accepted";
    default:
      return "the token's signature does not verify";
  }
}

/** Whether a bearer credential has the shape of a JWS compact token. */
export function looksLikeJwt(token: string): boolean {
  return /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(token);
}

/**
 * Verifies a caller JWT against the configured key set: an allowed asymmetric algorithm, a kid
 * found in the (cached) JWKS, the signature, `exp` (required), `nbf`, `iat`, `iss` and `aud`.
 */
export async function verifyCallerJwt(token: string, jwt: NonNullable<Config["jwt"]>): Promise<JwtResult> {
  if (token.length > MAX_JWT_CHARS || !looksLikeJwt(token)) {
    return { ok: false, reason: "the token is not a well-formed JWT" };
  }
  let header: { alg?: unknown; kid?: unknown; typ?: unknown };
  try {
    header = Jwt.decode(token).header;
  } catch {
    return { ok: false, reason: "the token is not a well-formed JWT" };
  }
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
  let payload: Record<string, unknown>;
  try {
    payload = await Jwt.verify(token, key, {
      alg,
      iss: jwt.issuer,
      aud: [...jwt.audience],
      exp: true,
      nbf: true,
      iat: true,
      ...(header.typ === undefined ? {} : { typ: ACCEPTED_TYPES }),
    });
  } catch (error) {
    return { ok: false, reason: reasonFor(error) };
  }
  if (typeof payload.exp !== "number") return { ok: false, reason: "the token has no exp claim" };
  // Cloudflare Access service tokens carry their identity in common_name and an empty sub.
  const subject =
    typeof payload.sub === "string" && payload.sub !== ""
      ? payload.sub
      : typeof payload.common_name === "string" && payload.common_name !== ""
        ? payload.common_name
        : undefined;
  if (subject === undefined) return { ok: false, reason: "the token has no sub claim" };
  return {
    ok: true,
    subject: LOGGABLE_SUBJECT.test(subject) ? subject : `sha256:${await shortHash(subject)}`,
  };
}
