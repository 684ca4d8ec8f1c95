/**
 * A weak ETag for a stored entry served through a transformation (redaction, say): the same
 * entry under a different `variant` gets a different tag, so two outputs never share one.
 */
export function weakEtag(entryTagHex: string, variant: readonly string[] = []): string {
  if (variant.length === 0) return `W/"${entryTagHex}"`;
  // FNV-1a: the variant is short configuration, and a hit must not wait for a digest.
  let hash = 0x811c9dc5;
  for (const char of JSON.stringify(variant)) {
    hash ^= char.charCodeAt(0);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return `W/"${entryTagHex}-${hash.toString(16).padStart(8, "0")}"`;
}

/**
 * Whether an `If-None-Match` header matches `etag` under the weak comparison RFC 9110 §13.1.2
 * requires for it (`W/"x"` matches `"x"`); `*` matches any current representation.
 */
export function ifNoneMatchHits(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  const opaque = (tag: string) => tag.trim().replace(/^W\//, "");
  const wanted = opaque(etag);
  return header.split(",").some((candidate) => {
    const tag = candidate.trim();
    return tag === "*" || opaque(tag) === wanted;
  });
}
