import type { Config } from "../app/config.ts";

const encoder = new TextEncoder();
const HKDF_SALT = encoder.encode("extend-runs-proxy");
// Its own HKDF info: this key is never the resume-token key, though both come from one secret.
const HKDF_INFO = encoder.encode("caller fingerprint v1");
/** Hex characters of the HMAC kept in a caller id: 64 bits, so distinct tokens never share a rate limit. */
export const FINGERPRINT_CHARS = 16;

const keys = new WeakMap<Config, Promise<CryptoKey>>();

/**
 * The HMAC key for caller fingerprints, derived with HKDF from STATS_SIGNING_KEY or, when that is
 * unset, from EXTEND_API_KEY: a fingerprint in a log line says nothing to someone without the
 * secret, not even for a low-entropy token tried offline. Derived once per parsed configuration.
 */
function fingerprintKey(config: Config): Promise<CryptoKey> {
  let key = keys.get(config);
  if (!key) {
    key = (async () => {
      const secret = config.statsSigningKey ?? config.extendApiKey;
      const base = await crypto.subtle.importKey("raw", encoder.encode(secret), "HKDF", false, ["deriveKey"]);
      return crypto.subtle.deriveKey(
        { name: "HKDF", hash: "SHA-256", salt: HKDF_SALT, info: HKDF_INFO },
        base,
        { name: "HMAC", hash: "SHA-256", length: 256 },
        false,
        ["sign"],
      );
    })();
    keys.set(config, key);
  }
  return key;
}

/** A stable, keyed fingerprint of `value` (a client token, an unloggable JWT subject) for logs and rate-limit keys. */
export async function fingerprint(config: Config, value: string): Promise<string> {
  const mac = new Uint8Array(
    await crypto.subtle.sign("HMAC", await fingerprintKey(config), encoder.encode(value)),
  );
  let hex = "";
  for (const byte of mac.subarray(0, FINGERPRINT_CHARS / 2)) hex += byte.toString(16).padStart(2, "0");
  return hex;
}
