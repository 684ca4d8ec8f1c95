const encoder = new TextEncoder();

/** Hex characters of a SHA-256 digest used to name a secret without revealing it (48 bits). */
export const SHORT_HASH_CHARS = 12;

export async function sha256(text: string): Promise<ArrayBuffer> {
  return crypto.subtle.digest("SHA-256", encoder.encode(text));
}

/** SHA-256 of the text's UTF-8 (or of UTF-8 bytes as they are), as 64 lowercase hex characters. */
export async function sha256Hex(input: string | Uint8Array): Promise<string> {
  const digest =
    typeof input === "string" ? await sha256(input) : await crypto.subtle.digest("SHA-256", input);
  let hex = "";
  for (const byte of new Uint8Array(digest)) hex += byte.toString(16).padStart(2, "0");
  return hex;
}

/** A short, stable fingerprint of a value for logs and rate-limit keys. */
export async function shortHash(text: string): Promise<string> {
  return (await sha256Hex(text)).slice(0, SHORT_HASH_CHARS);
}

/**
 * Whether `candidate` equals one of `secrets`, in time independent of where they differ:
 * digests have equal lengths (timingSafeEqual needs that), and every secret is compared.
 * Returns the matching secret.
 */
export async function findSecret(candidate: string, secrets: readonly string[]): Promise<string | undefined> {
  const candidateDigest = await sha256(candidate);
  let match: string | undefined;
  for (const secret of secrets) {
    const equal = crypto.subtle.timingSafeEqual(candidateDigest, await sha256(secret));
    if (equal && match === undefined) match = secret;
  }
  return match;
}
