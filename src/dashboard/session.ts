// The dashboard's browser session for static-token callers: the token is posted once to
// /dashboard/login and exchanged for a short-lived cookie the proxy signs (HMAC-SHA256 through
// hono's signed-cookie helpers) with a key derived from STATS_SIGNING_KEY, or from EXTEND_API_KEY
// when that is unset. The cookie names the caller by the token's keyed fingerprint (the caller id
// authenticate() gives it) and carries its expiry; it never holds the token, and a token removed
// from CLIENT_TOKENS ends its sessions.
import type { Context } from "hono";
import { deleteCookie, getCookie, getSignedCookie, setSignedCookie } from "hono/cookie";
import type { Config } from "../app/config.ts";
import type { AppEnv, Caller } from "../app/env.ts";
import { FINGERPRINT_CHARS, fingerprint } from "../security/fingerprint.ts";

/** Sent as `__Host-dashboard_session`: Secure, Path=/, no Domain, so no sibling host can set it. */
export const SESSION_COOKIE = "dashboard_session";
export const SESSION_COOKIE_HEADER_NAME = `__Host-${SESSION_COOKIE}`;
/** How long a sign-in lasts; then the token is asked for again. */
export const SESSION_MAX_AGE_SECONDS = 60 * 60;
/** Clock skew tolerated on a session's issue time. */
const MAX_CLOCK_SKEW_SECONDS = 60;
const FORMAT_VERSION = "1";
const VALUE = new RegExp(`^${FORMAT_VERSION}:([0-9a-f]{${FINGERPRINT_CHARS}}):(\\d{1,12}):(\\d{1,12})$`);

const HKDF_SALT = new TextEncoder().encode("extend-runs-proxy");
const HKDF_INFO = new TextEncoder().encode("dashboard session v1");

const keys = new WeakMap<Config, Promise<ArrayBuffer>>();
const tokenFingerprints = new WeakMap<Config, Promise<Set<string>>>();

/** The session key: HKDF-SHA256 of the signing secret, so it is never the secret itself. */
function sessionKey(config: Config): Promise<ArrayBuffer> {
  let key = keys.get(config);
  if (!key) {
    const secret = new TextEncoder().encode(config.statsSigningKey ?? config.extendApiKey);
    key = crypto.subtle
      .importKey("raw", secret, "HKDF", false, ["deriveBits"])
      .then((base) =>
        crypto.subtle.deriveBits(
          { name: "HKDF", hash: "SHA-256", salt: HKDF_SALT, info: HKDF_INFO },
          base,
          256,
        ),
      );
    keys.set(config, key);
  }
  return key;
}

function configuredFingerprints(config: Config): Promise<Set<string>> {
  let prints = tokenFingerprints.get(config);
  if (!prints) {
    prints = Promise.all(config.clientTokens.map((token) => fingerprint(config, token))).then(
      (list) => new Set(list),
    );
    tokenFingerprints.set(config, prints);
  }
  return prints;
}

const nowSeconds = () => Math.floor(Date.now() / 1000);

/** What the request's session cookie says, if it carries one. */
export type SessionState =
  | { kind: "none" }
  | { kind: "valid"; caller: Caller; expiresAt: number }
  /** Signed by someone else, altered, or not in our format. */
  | { kind: "forged" }
  /** Ours, but past its expiry, or for a token no longer in CLIENT_TOKENS. */
  | { kind: "ended" };

/** Whether the request carries a session cookie at all (valid or not). */
export function hasSessionCookie(c: Context<AppEnv>): boolean {
  return getCookie(c, SESSION_COOKIE, "host") !== undefined;
}

/** Reads and checks the session cookie: signature, format, expiry and that the token still exists. */
export async function readSession(c: Context<AppEnv>, now = nowSeconds()): Promise<SessionState> {
  const config = c.var.config;
  const value = await getSignedCookie(c, await sessionKey(config), SESSION_COOKIE, "host");
  if (value === undefined) return { kind: "none" };
  if (value === false) return { kind: "forged" };
  const match = VALUE.exec(value);
  if (!match) return { kind: "forged" };
  const [, print = "", issuedText = "", expiresText = ""] = match;
  const issuedAt = Number(issuedText);
  const expiresAt = Number(expiresText);
  if (issuedAt > now + MAX_CLOCK_SKEW_SECONDS || expiresAt - issuedAt > SESSION_MAX_AGE_SECONDS) {
    return { kind: "forged" };
  }
  if (expiresAt <= now) return { kind: "ended" };
  if (!(await configuredFingerprints(config)).has(print)) return { kind: "ended" };
  return { kind: "valid", caller: { id: `token:${print}`, method: "token" }, expiresAt };
}

/**
 * Starts a session for the client token `token` (already checked against CLIENT_TOKENS): sets
 * the signed cookie on the response. Only the token's keyed fingerprint goes into it.
 */
export async function startSession(c: Context<AppEnv>, token: string, now = nowSeconds()): Promise<void> {
  const print = await fingerprint(c.var.config, token);
  const value = `${FORMAT_VERSION}:${print}:${now}:${now + SESSION_MAX_AGE_SECONDS}`;
  await setSignedCookie(c, SESSION_COOKIE, value, await sessionKey(c.var.config), {
    prefix: "host",
    httpOnly: true,
    secure: true,
    sameSite: "Strict",
    maxAge: SESSION_MAX_AGE_SECONDS,
  });
}

/** Tells the browser to drop the session cookie. */
export function endSession(c: Context<AppEnv>): void {
  deleteCookie(c, SESSION_COOKIE, { prefix: "host", httpOnly: true, secure: true, sameSite: "Strict" });
}
