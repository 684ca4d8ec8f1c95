// UTF-8 facts about bytes, read without decoding them into a string (a page of runs is megabytes,
// and a string of it would sit on the heap until V8 collects it).

const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * The index just past the UTF-8 sequence whose lead byte (≥ 0x80) is at `at`, or -1 when the
 * sequence is one a fatal decoder refuses (WHATWG Encoding: an overlong form, a surrogate, a code
 * point past U+10FFFF, a stray continuation byte, or a sequence cut off).
 */
export function pastUtf8Sequence(bytes: Uint8Array, at: number): number {
  const lead = bytes[at] as number;
  let lower = 0x80;
  let upper = 0xbf;
  let needed: number;
  if (lead >= 0xc2 && lead <= 0xdf) {
    needed = 1;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    needed = 2;
    if (lead === 0xe0) lower = 0xa0;
    else if (lead === 0xed) upper = 0x9f;
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    needed = 3;
    if (lead === 0xf0) lower = 0x90;
    else if (lead === 0xf4) upper = 0x8f;
  } else {
    return -1;
  }
  const second = bytes[at + 1];
  if (second === undefined || second < lower || second > upper) return -1;
  for (let i = at + 2; i <= at + needed; i++) {
    const next = bytes[i];
    if (next === undefined || next < 0x80 || next > 0xbf) return -1;
  }
  return at + 1 + needed;
}

/** Whether a fatal UTF-8 decoder accepts the bytes. */
export function isUtf8(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; ) {
    if ((bytes[i] as number) < 0x80) {
      i += 1;
      continue;
    }
    i = pastUtf8Sequence(bytes, i);
    if (i === -1) return false;
  }
  return true;
}

/**
 * The length in UTF-16 code units (a JavaScript string's `length`) of what UTF-8 `bytes` decode
 * to: one per sequence, two for a four-byte one. Counted four bytes at a time where they are ASCII.
 */
export function utf16Length(bytes: Uint8Array): number {
  let units = 0;
  let i = 0;
  if (bytes.byteOffset % 4 === 0) {
    const words = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length >>> 2);
    for (let w = 0; w < words.length; w++) {
      const word = words[w] as number;
      if ((word & 0x80808080) === 0) {
        units += 4;
        continue;
      }
      for (let k = w * 4; k < w * 4 + 4; k++) units += unitsOf(bytes[k] as number);
    }
    i = words.length * 4;
  }
  for (; i < bytes.length; i++) units += unitsOf(bytes[i] as number);
  return units;
}

/** What one byte adds: a lead byte starts a code unit, a four-byte lead two; continuations none. */
function unitsOf(byte: number): number {
  if (byte < 0x80) return 1;
  if (byte < 0xc0) return 0;
  return byte >= 0xf0 ? 2 : 1;
}

/** The bytes' text, or undefined when they are not UTF-8 (a byte order mark is kept as text). */
export function decodeUtf8(bytes: Uint8Array): string | undefined {
  try {
    return decoder.decode(bytes);
  } catch {
    return undefined;
  }
}
