const encoder = new TextEncoder();

/** Hex characters of a SHA-256 digest used to name a secret without revealing it (48 bits). */
export const SHORT_HASH_CHARS = 12;

export async function sha256(text: string): Promise<ArrayBuffer> {
  return crypto.subtle.digest("SHA-256", encoder.encode(text));
}

function hex(buffer: ArrayBuffer): string {
  return [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** A short, stable fingerprint of a value for logs and rate-limit keys. */
export async function shortHash(text: string): Promise<string> {
  return hex(await sha256(text)).slice(0, SHORT_HASH_CHARS);
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
