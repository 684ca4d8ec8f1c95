// Reads a list page's UTF-8 bytes down to what the /stats fold needs, without decoding the page
// into a string or building its object tree: a 1000-run page is 2–3 MB, and as a JavaScript string
// (and again as a parse) it would sit on the isolate's heap until V8 collects it. The whole page is
// still checked as UTF-8 (as a fatal TextDecoder would), as JSON and as Extend's list shape
// (as JSON.parse and the list-shape check would), so a page this accepts is one that would have
// decoded and parsed, and the fold sees the same values.

import {
  BACKSLASH,
  CLOSE_BRACE,
  CLOSE_BRACKET,
  COLON,
  COMMA,
  DOT,
  isDigit,
  isJsonWhitespace,
  LOWER_E,
  MINUS,
  NINE,
  OPEN_BRACE,
  OPEN_BRACKET,
  PLUS,
  QUOTE,
  UPPER_E,
  ZERO,
} from "../lib/json-chars.ts";
import { pastUtf8Sequence } from "../lib/utf8.ts";

/**
 * A page reduced to what the fold reads, in numbers: no object or string per run, so a folded
 * page is a few bytes a run in one buffer (outside the heap), and crosses RPC as such.
 */
export interface PrunedPage {
  /** Runs on the page. */
  readonly runs: number;
  /**
   * Four numbers a run, in page order: `Date.parse(createdAt)` (NaN when createdAt is not a
   * string), then `usage.credits` and `usage.totalCredits` (NaN when not a number, or when usage
   * is not an object), then a 53-bit hash of the run's `id` (NaN when id is not a string), by
   * which the scan tells a run Extend listed twice from two runs of one instant.
   */
  readonly values: Float64Array<ArrayBuffer>;
  /** Extend's cursor: a non-empty string, or undefined at the end of the list. */
  readonly nextPageToken: string | undefined;
}

/** Numbers a run takes in `PrunedPage.values`. */
export const VALUES_PER_RUN = 4;

class Invalid extends Error {}

const INVALID = new Invalid();

const NO_KEYS: readonly Uint8Array[] = [];
const ascii = (key: string) => Uint8Array.from(key, (c) => c.charCodeAt(0));
const OBJECT = ascii("object");
const DATA = ascii("data");
const NEXT_PAGE_TOKEN = ascii("nextPageToken");
const CREATED_AT = ascii("createdAt");
const ID = ascii("id");
const USAGE = ascii("usage");
const CREDITS = ascii("credits");
const TOTAL_CREDITS = ascii("totalCredits");
const PAGE_KEYS = [OBJECT, DATA, NEXT_PAGE_TOKEN];
const RUN_KEYS = [CREATED_AT, USAGE, ID];
const USAGE_KEYS = [CREDITS, TOTAL_CREDITS];
const LIST = ascii("list");

const TRUE = ascii("true");
const FALSE = ascii("false");
const NULL = ascii("null");

/** For each byte: 1 where it ends a run of plain string bytes (quote, backslash, control, non-ASCII). */
const STRING_STOP = new Uint8Array(256);
for (let b = 0; b < 256; b++)
  STRING_STOP[b] = b < 0x20 || b === QUOTE || b === BACKSLASH || b >= 0x80 ? 1 : 0;
/** For each byte after a backslash: 1 for the single-character escapes JSON allows. */
const SIMPLE_ESCAPE = new Uint8Array(256);
for (const c of '"\\/bfnrt') SIMPLE_ESCAPE[c.charCodeAt(0)] = 1;

const isHex = (b: number) => (b >= ZERO && b <= NINE) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66);

/** Decodes strings the reader has already checked as UTF-8; a leading U+FEFF is text here. */
const utf8 = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });

/** Characters per call of String.fromCharCode (its arguments go on the stack). */
const ASCII_CHUNK = 4_096;

/** `bytes[start, end)`, all ASCII, as a fresh string (nothing of it refers to the page). */
function asciiText(bytes: Uint8Array, start: number, end: number): string {
  let text = "";
  for (let from = start; from < end; from += ASCII_CHUNK) {
    const chunk = bytes.subarray(from, Math.min(end, from + ASCII_CHUNK));
    text += String.fromCharCode.apply(null, chunk as unknown as number[]);
  }
  return text;
}

/** A 53-bit hash (cyrb53) of `bytes[start, end)`: exact as a double, so it crosses RPC as one. */
function hash53(bytes: Uint8Array, start: number, end: number): number {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = start; i < end; i++) {
    const b = bytes[i] as number;
    h1 = Math.imul(h1 ^ b, 2654435761);
    h2 = Math.imul(h2 ^ b, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0);
}

const encoder = new TextEncoder();

/** Decimal digits the fast number path takes at most: their integer is exact in a double. */
const MAX_EXACT_DIGITS = 15;
/** Powers of ten exact in a double (10^22 is the largest). */
const EXACT_POWERS = Array.from({ length: 23 }, (_, k) => 10 ** k);

/**
 * Writes the value of the JSON number `bytes[start, end)` (already checked against the grammar)
 * at `into[slot]` when it is a plain decimal of at most 15 digits; false for any other. Its digits
 * form an integer exact in a double, and dividing it by an exact power of ten rounds once,
 * correctly, as `Number` does.
 */
function exactDecimal(
  bytes: Uint8Array,
  start: number,
  end: number,
  into: Float64Array,
  slot: number,
): boolean {
  let i = start;
  const negative = bytes[i] === MINUS;
  if (negative) i++;
  let digits = 0;
  let fraction = -1;
  let units = 0;
  for (; i < end; i++) {
    const b = bytes[i] as number;
    if (b === DOT) {
      fraction = 0;
      continue;
    }
    if (!isDigit(b)) return false;
    units = units * 10 + (b - ZERO);
    digits += 1;
    if (fraction >= 0) fraction += 1;
  }
  if (digits > MAX_EXACT_DIGITS) return false;
  const value = fraction > 0 ? units / (EXACT_POWERS[fraction] as number) : units;
  into[slot] = negative ? -value : value;
  return true;
}

/** `count` ASCII digits at `at` as a number, or -1 when one of them is not a digit. */
function digitsAt(bytes: Uint8Array, at: number, count: number): number {
  let value = 0;
  for (let i = at; i < at + count; i++) {
    const b = bytes[i] as number;
    if (!isDigit(b)) return -1;
    value = value * 10 + (b - ZERO);
  }
  return value;
}

/**
 * Writes `Date.parse` of `bytes[start, end)` at `into[slot]` when they are `YYYY-MM-DDTHH:MM:SSZ`
 * or `YYYY-MM-DDTHH:MM:SS.sssZ` with every field in the range where `Date.parse` and `Date.UTC`
 * agree (year 1000–9999, month 1–12, day 1–31 normalised into the next month as both do, hour
 * 0–23, minute and second 0–59); false for anything else, which the caller parses as text.
 */
function isoInstant(
  bytes: Uint8Array,
  start: number,
  end: number,
  into: Float64Array,
  slot: number,
): boolean {
  const length = end - start;
  if (length !== 20 && length !== 24) return false;
  if (
    bytes[start + 4] !== MINUS ||
    bytes[start + 7] !== MINUS ||
    bytes[start + 10] !== 0x54 ||
    bytes[start + 13] !== COLON ||
    bytes[start + 16] !== COLON ||
    bytes[end - 1] !== 0x5a
  )
    return false;
  let ms = 0;
  if (length === 24) {
    if (bytes[start + 19] !== DOT) return false;
    ms = digitsAt(bytes, start + 20, 3);
    if (ms < 0) return false;
  }
  const year = digitsAt(bytes, start, 4);
  const month = digitsAt(bytes, start + 5, 2);
  const day = digitsAt(bytes, start + 8, 2);
  const hour = digitsAt(bytes, start + 11, 2);
  const minute = digitsAt(bytes, start + 14, 2);
  const second = digitsAt(bytes, start + 17, 2);
  if (year < 1000 || month < 1 || month > 12 || day < 1 || day > 31) return false;
  if (hour < 0 || hour > 23 || minute < 0 || minute > 59 || second < 0 || second > 59) return false;
  into[slot] = Date.UTC(year, month - 1, day, hour, minute, second, ms);
  return true;
}

/** What a member's value turned out to be, for the fields whose type decides the outcome. */
type Kind = "string" | "number" | "object" | "array" | "null" | "other";

/** A cursor over the bytes; every method either advances past a valid token or throws Invalid. */
class Reader {
  position = 0;
  readonly bytes: Uint8Array;
  readonly length: number;
  /** skipValue's stack of closing brackets. */
  private open = new Uint8Array(32);

  constructor(bytes: Uint8Array) {
    this.bytes = bytes;
    this.length = bytes.length;
  }

  /** The byte at the position, or -1 past the end. */
  peek(): number {
    return this.position < this.length ? (this.bytes[this.position] as number) : -1;
  }

  skipWhitespace(): void {
    const bytes = this.bytes;
    let i = this.position;
    for (; i < this.length; i++) {
      const b = bytes[i] as number;
      if (!isJsonWhitespace(b)) break;
    }
    this.position = i;
  }

  expect(code: number): void {
    if (this.peek() !== code) throw INVALID;
    this.position += 1;
  }

  /**
   * Past a string (position at its opening quote). 0: plain ASCII; 1: non-ASCII but no escape;
   * 2: an escape (decode it with JSON.parse).
   */
  skipString(): 0 | 1 | 2 {
    this.expect(QUOTE);
    const bytes = this.bytes;
    const length = this.length;
    let i = this.position;
    let form: 0 | 1 | 2 = 0;
    for (;;) {
      while (i < length && STRING_STOP[bytes[i] as number] === 0) i++;
      if (i >= length) throw INVALID;
      const b = bytes[i] as number;
      if (b === QUOTE) break;
      if (b === BACKSLASH) {
        const next = bytes[i + 1];
        if (next === undefined) throw INVALID;
        if (SIMPLE_ESCAPE[next] === 1) {
          i += 2;
        } else if (next === 0x75) {
          for (let k = i + 2; k < i + 6; k++) if (!isHex(bytes[k] ?? -1)) throw INVALID;
          i += 6;
        } else {
          throw INVALID;
        }
        form = 2;
      } else if (b >= 0x80) {
        i = pastUtf8Sequence(bytes, i);
        if (i === -1) throw INVALID;
        if (form === 0) form = 1;
      } else {
        throw INVALID;
      }
    }
    this.position = i + 1;
    return form;
  }

  /** Past a string (position at its opening quote), and its value: a fresh string of its own. */
  string(): string {
    const start = this.position;
    const form = this.skipString();
    const end = this.position;
    if (form === 2) return JSON.parse(utf8.decode(this.bytes.subarray(start, end))) as string;
    if (form === 1) return utf8.decode(this.bytes.subarray(start + 1, end - 1));
    return asciiText(this.bytes, start + 1, end - 1);
  }

  /** Past a number, checked against JSON's grammar but not read. */
  skipNumber(): void {
    const bytes = this.bytes;
    let i = this.position;
    if (bytes[i] === MINUS) i++;
    if (bytes[i] === ZERO) i++;
    else if (isDigit(bytes[i] ?? -1)) while (isDigit(bytes[i] ?? -1)) i++;
    else throw INVALID;
    if (bytes[i] === DOT) {
      i++;
      if (!isDigit(bytes[i] ?? -1)) throw INVALID;
      while (isDigit(bytes[i] ?? -1)) i++;
    }
    if (bytes[i] === LOWER_E || bytes[i] === UPPER_E) {
      i++;
      if (bytes[i] === PLUS || bytes[i] === MINUS) i++;
      if (!isDigit(bytes[i] ?? -1)) throw INVALID;
      while (isDigit(bytes[i] ?? -1)) i++;
    }
    this.position = i;
  }

  /**
   * Writes a string value as `Date.parse` reads it (NaN for any other kind) at `into[slot]`, past
   * the value. The usual form (`2024-05-01T12:30:00.123Z`) is read from the bytes; any other
   * becomes a string first. (Written, not returned: a returned double is boxed on the heap.)
   */
  timeInto(into: Float64Array, slot: number): void {
    if (!this.isKindElseNaN("string", into, slot)) return;
    const start = this.position;
    const form = this.skipString();
    if (form === 0 && isoInstant(this.bytes, start + 1, this.position - 1, into, slot)) return;
    this.position = start;
    into[slot] = Date.parse(this.string());
  }

  /**
   * Writes a hash of a string value's text (NaN for any other kind) at `into[slot]`, past the
   * value: of its UTF-8 bytes as they stand, or, with an escape, as decoded.
   */
  hashInto(into: Float64Array, slot: number): void {
    if (!this.isKindElseNaN("string", into, slot)) return;
    const start = this.position;
    const form = this.skipString();
    if (form !== 2) {
      into[slot] = hash53(this.bytes, start + 1, this.position - 1);
      return;
    }
    this.position = start;
    const text = encoder.encode(this.string());
    into[slot] = hash53(text, 0, text.length);
  }

  /** Whether the value here is of `kind`; if not, writes NaN at `into[slot]` and moves past it. */
  private isKindElseNaN(kind: Kind, into: Float64Array, slot: number): boolean {
    if (this.kind() === kind) return true;
    this.skipValue();
    into[slot] = Number.NaN;
    return false;
  }

  /** A string value (decoded), or undefined for any other kind; past the value either way. */
  stringValue(): string | undefined {
    if (this.kind() === "string") return this.string();
    this.skipValue();
    return undefined;
  }

  /** Writes a number value (NaN for any other kind) at `into[slot]`, as `timeInto`; past the value. */
  numberInto(into: Float64Array, slot: number): void {
    if (!this.isKindElseNaN("number", into, slot)) return;
    const start = this.position;
    this.skipNumber();
    if (exactDecimal(this.bytes, start, this.position, into, slot)) return;
    into[slot] = Number(asciiText(this.bytes, start, this.position));
  }

  /** Whether the value here is the string `word` (ASCII, compared as JSON.parse would decode it); past it. */
  isString(word: Uint8Array): boolean {
    if (this.kind() !== "string") {
      this.skipValue();
      return false;
    }
    const start = this.position;
    const form = this.skipString();
    if (form === 0) return this.equalsAt(word, start + 1, this.position - 1);
    if (form === 1) return false;
    const decoded = JSON.parse(utf8.decode(this.bytes.subarray(start, this.position))) as string;
    return decoded.length === word.length && [...word].every((c, i) => decoded.charCodeAt(i) === c);
  }

  private equalsAt(word: Uint8Array, start: number, end: number): boolean {
    if (end - start !== word.length) return false;
    for (let k = 0; k < word.length; k++) if (this.bytes[start + k] !== word[k]) return false;
    return true;
  }

  literal(word: Uint8Array): void {
    if (!this.equalsAt(word, this.position, Math.min(this.length, this.position + word.length)))
      throw INVALID;
    this.position += word.length;
  }

  kind(): Kind {
    const code = this.peek();
    if (code === QUOTE) return "string";
    if (code === OPEN_BRACE) return "object";
    if (code === OPEN_BRACKET) return "array";
    if (code === 0x6e) return "null";
    if (code === MINUS || isDigit(code)) return "number";
    return "other";
  }

  /**
   * Past one value of any kind, checked but not kept. Iterative, so nesting depth costs an array
   * slot per level rather than a stack frame.
   */
  skipValue(): void {
    // The containers still open, innermost last: one buffer for the reader, not an array a call.
    let depth = 0;
    for (;;) {
      this.skipWhitespace();
      const code = this.peek();
      let closedScalar = true;
      if (code === OPEN_BRACE || code === OPEN_BRACKET) {
        this.position += 1;
        this.skipWhitespace();
        const close = code === OPEN_BRACE ? CLOSE_BRACE : CLOSE_BRACKET;
        if (this.peek() === close) {
          this.position += 1;
        } else {
          if (depth === this.open.length) {
            const grown = new Uint8Array(this.open.length * 2);
            grown.set(this.open);
            this.open = grown;
          }
          this.open[depth++] = close;
          if (close === CLOSE_BRACE) this.memberKey(NO_KEYS);
          closedScalar = false;
        }
      } else if (code === QUOTE) {
        this.skipString();
      } else if (code === 0x74) {
        this.literal(TRUE);
      } else if (code === 0x66) {
        this.literal(FALSE);
      } else if (code === 0x6e) {
        this.literal(NULL);
      } else {
        this.skipNumber();
      }
      if (!closedScalar) continue;
      // A value ended: close every container it completes, or go on to the next element.
      for (;;) {
        if (depth === 0) return;
        const close = this.open[depth - 1];
        this.skipWhitespace();
        const next = this.peek();
        if (next === COMMA) {
          this.position += 1;
          if (close === CLOSE_BRACE) {
            this.skipWhitespace();
            this.memberKey(NO_KEYS);
          }
          break;
        }
        if (next !== close) throw INVALID;
        this.position += 1;
        depth -= 1;
      }
    }
  }

  /**
   * Past a member's key and its colon (position at the key's quote): which of `known` the key is
   * (its index), or -1. Keys are compared where they lie in the bytes; only an escaped key is decoded.
   */
  memberKey(known: readonly Uint8Array[]): number {
    const start = this.position;
    const form = this.skipString();
    let index = -1;
    if (known.length > 0) {
      if (form === 0) {
        for (let k = 0; k < known.length && index === -1; k++) {
          if (this.equalsAt(known[k] as Uint8Array, start + 1, this.position - 1)) index = k;
        }
      } else if (form === 2) {
        const decoded = JSON.parse(utf8.decode(this.bytes.subarray(start, this.position))) as string;
        index = known.findIndex(
          (k) => k.length === decoded.length && k.every((c, i) => decoded.charCodeAt(i) === c),
        );
      }
    }
    this.skipWhitespace();
    this.expect(COLON);
    this.skipWhitespace();
    return index;
  }

  /**
   * Into an object (position at its `{`): true with the position at its first key, or false, past
   * the `}`, when it is empty. Walked without a callback a member, so the fold allocates nothing per run.
   */
  openObject(): boolean {
    return this.openContainer(OPEN_BRACE, CLOSE_BRACE);
  }

  /** After a member's value: true past the `,` (at the next key), or false past the closing `}`. */
  nextMember(): boolean {
    return this.next(CLOSE_BRACE);
  }

  /** Into an array (position at its `[`), as `openObject`. */
  openArray(): boolean {
    return this.openContainer(OPEN_BRACKET, CLOSE_BRACKET);
  }

  /** After an element, as `nextMember`. */
  nextElement(): boolean {
    return this.next(CLOSE_BRACKET);
  }

  private openContainer(open: number, close: number): boolean {
    this.expect(open);
    this.skipWhitespace();
    if (this.peek() !== close) return true;
    this.position += 1;
    return false;
  }

  private next(close: number): boolean {
    this.skipWhitespace();
    const next = this.peek();
    this.position += 1;
    if (next === close) return false;
    if (next !== COMMA) throw INVALID;
    this.skipWhitespace();
    return true;
  }
}

/** Where the fold writes runs' numbers; folds are synchronous, so one buffer serves them all. */
let scratch = new Float64Array(VALUES_PER_RUN * 1024);

/** Writes usage's credits and totalCredits at `at` (NaN for a non-number, or all of it when usage is no object). */
function readUsage(reader: Reader, at: number): void {
  scratch[at] = Number.NaN;
  scratch[at + 1] = Number.NaN;
  if (reader.kind() !== "object") {
    reader.skipValue();
    return;
  }
  if (!reader.openObject()) return;
  do {
    const key = reader.memberKey(USAGE_KEYS);
    // Later duplicates win, as in JSON.parse.
    if (key === 0) reader.numberInto(scratch, at);
    else if (key === 1) reader.numberInto(scratch, at + 1);
    else reader.skipValue();
  } while (reader.nextMember());
}

/** Writes the run's numbers at slot `index`; false when the run is not an object. */
function readRun(reader: Reader, index: number): boolean {
  // Any other value is a fault of the list's shape; it is still read through to check the JSON.
  if (reader.kind() !== "object") {
    reader.skipValue();
    return false;
  }
  const at = index * VALUES_PER_RUN;
  if (scratch.length < at + VALUES_PER_RUN) {
    const grown = new Float64Array(scratch.length * 2);
    grown.set(scratch);
    scratch = grown;
  }
  scratch[at] = Number.NaN;
  scratch[at + 1] = Number.NaN;
  scratch[at + 2] = Number.NaN;
  scratch[at + 3] = Number.NaN;
  if (!reader.openObject()) return true;
  do {
    const key = reader.memberKey(RUN_KEYS);
    if (key === 0) {
      reader.timeInto(scratch, at);
    } else if (key === 1) {
      readUsage(reader, at + 1);
    } else if (key === 2) {
      reader.hashInto(scratch, at + 3);
    } else {
      reader.skipValue();
    }
  } while (reader.nextMember());
  return true;
}

/**
 * The fold's view of a list page's UTF-8 bytes (no byte order mark: the Extend client strips one):
 * undefined when the bytes are not UTF-8, not JSON, or not Extend's list shape (a top-level object
 * whose `object` is "list" or absent, `data` an array of objects, and `nextPageToken` absent, null
 * or a string): the cases where decoding and `parseListBody` give undefined. Where a key repeats,
 * the last one counts, as in JSON.parse.
 */
export function foldPageBytes(bytes: Uint8Array): PrunedPage | undefined {
  const reader = new Reader(bytes);
  let isList = true;
  let runs: number | undefined;
  let dataOk = false;
  let tokenOk = true;
  let token: string | undefined;
  try {
    reader.skipWhitespace();
    if (reader.kind() !== "object") return undefined;
    if (reader.openObject()) {
      do {
        const key = reader.memberKey(PAGE_KEYS);
        const kind = reader.kind();
        if (key === 0) {
          isList = reader.isString(LIST);
        } else if (key === 1) {
          runs = undefined;
          dataOk = kind === "array";
          if (!dataOk) {
            reader.skipValue();
            continue;
          }
          // A repeated `data` starts over: the last one counts.
          let count = 0;
          if (reader.openArray()) {
            do {
              if (readRun(reader, count)) count += 1;
              else dataOk = false;
            } while (reader.nextElement());
          }
          runs = count;
        } else if (key === 2) {
          tokenOk = kind === "string" || kind === "null";
          token = reader.stringValue();
        } else {
          reader.skipValue();
        }
      } while (reader.nextMember());
    }
    reader.skipWhitespace();
    if (reader.position !== bytes.length) return undefined;
  } catch (error) {
    if (error instanceof Invalid) return undefined;
    throw error;
  }
  if (!isList || !dataOk || !tokenOk || runs === undefined) return undefined;
  return {
    runs,
    values: scratch.slice(0, runs * VALUES_PER_RUN),
    nextPageToken: token === "" ? undefined : token,
  };
}
