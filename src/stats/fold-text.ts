// Reads a list page's JSON text down to what the /stats fold needs, without building the page's
// object tree: a 1000-run page is 1–2 MB of text and several times that once parsed, most of it
// fields the fold never reads. The whole text is still checked as JSON and as Extend's list
// shape, exactly as `parseListBody` would (JSON.parse, then the list-shape check), so a page this
// accepts is one that would have parsed, and the fold sees the same values.

/** A run reduced to what the fold reads: createdAt when it is a string, and usage's numbers. */
export type PrunedRun = {
  readonly createdAt: string | undefined;
  /** null when usage is absent or not an object; a non-number credit is left out. */
  readonly usage: { readonly credits?: number; readonly totalCredits?: number } | null;
};

export interface PrunedPage {
  readonly data: readonly PrunedRun[];
  /** Extend's cursor: a non-empty string, or undefined at the end of the list. */
  readonly nextPageToken: string | undefined;
}

const WHITESPACE = /[ \t\n\r]*/y;
/** A string's body up to its closing quote, or to the first escape or control character. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: JSON forbids raw control characters in strings.
const PLAIN_CHARS = /[^"\\\u0000-\u001f]*/y;
const ESCAPE = /\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})/y;
const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;

class Invalid extends Error {}

const NO_KEYS: readonly string[] = [];
const PAGE_KEYS = ["object", "data", "nextPageToken"] as const;
const RUN_KEYS = ["createdAt", "usage"] as const;
const USAGE_KEYS = ["credits", "totalCredits"] as const;

const QUOTE = 0x22;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;

/**
 * A copy of `text[start, end)` that does not keep `text` alive. V8 represents a substring of 13 or
 * more characters as a view into its parent, so a createdAt or a cursor sliced from a page would
 * hold the page's whole text for as long as the fold (or the scan's state) keeps it.
 */
function detached(text: string, start: number, end: number): string {
  let copy = "";
  for (let from = start; from < end; from += DETACH_CHUNK) {
    const to = Math.min(end, from + DETACH_CHUNK);
    const codes = new Array<number>(to - from);
    for (let i = from; i < to; i++) codes[i - from] = text.charCodeAt(i);
    copy += String.fromCharCode(...codes);
  }
  return copy;
}

/** Characters copied per call of String.fromCharCode (its arguments go on the stack). */
const DETACH_CHUNK = 4_096;

/** What a member's value turned out to be, for the fields whose type decides the outcome. */
type Kind = "string" | "number" | "object" | "array" | "null" | "other";

/** A cursor over the text; every method either advances past a valid token or throws Invalid. */
class Reader {
  position = 0;
  readonly text: string;

  constructor(text: string) {
    this.text = text;
  }

  private match(pattern: RegExp): number {
    pattern.lastIndex = this.position;
    if (!pattern.test(this.text)) return -1;
    const end = pattern.lastIndex;
    this.position = end;
    return end;
  }

  skipWhitespace(): void {
    // Most pages have no whitespace between tokens: a character above space ends it at once.
    if (this.text.charCodeAt(this.position) > 0x20) return;
    this.match(WHITESPACE);
  }

  peek(): number {
    return this.text.charCodeAt(this.position);
  }

  expect(code: number): void {
    if (this.text.charCodeAt(this.position) !== code) throw new Invalid();
    this.position += 1;
  }

  /** Past a string (position at its opening quote); whether it holds an escape. */
  skipString(): boolean {
    this.expect(QUOTE);
    let escaped = false;
    for (;;) {
      this.match(PLAIN_CHARS);
      const code = this.text.charCodeAt(this.position);
      if (code === QUOTE) break;
      if (code !== 0x5c || this.match(ESCAPE) === -1) throw new Invalid();
      escaped = true;
    }
    this.position += 1;
    return escaped;
  }

  /** Past a string (position at its opening quote), and its value. */
  string(): string {
    const start = this.position;
    const escaped = this.skipString();
    return escaped
      ? (JSON.parse(this.text.slice(start, this.position)) as string)
      : detached(this.text, start + 1, this.position - 1);
  }

  number(): number {
    const start = this.position;
    if (this.match(NUMBER) === -1 || this.position === start) throw new Invalid();
    return Number(this.text.slice(start, this.position));
  }

  /** A string value (decoded), or undefined for any other kind; past the value either way. */
  stringValue(): string | undefined {
    if (this.kind() === "string") return this.string();
    this.skipValue();
    return undefined;
  }

  /** A number value, or undefined for any other kind; past the value either way. */
  numberValue(): number | undefined {
    if (this.kind() === "number") return this.number();
    this.skipValue();
    return undefined;
  }

  literal(word: "true" | "false" | "null"): void {
    if (!this.text.startsWith(word, this.position)) throw new Invalid();
    this.position += word.length;
  }

  kind(): Kind {
    const code = this.peek();
    if (code === QUOTE) return "string";
    if (code === OPEN_BRACE) return "object";
    if (code === OPEN_BRACKET) return "array";
    if (code === 0x6e) return "null";
    if (code === 0x2d || (code >= 0x30 && code <= 0x39)) return "number";
    return "other";
  }

  /**
   * Past one value of any kind, checked but not kept. Iterative, so nesting depth costs an array
   * slot per level rather than a stack frame.
   */
  skipValue(): void {
    const open: number[] = [];
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
          open.push(close);
          if (close === CLOSE_BRACE) this.memberKey(NO_KEYS);
          closedScalar = false;
        }
      } else if (code === QUOTE) {
        this.skipString();
      } else if (code === 0x74) {
        this.literal("true");
      } else if (code === 0x66) {
        this.literal("false");
      } else if (code === 0x6e) {
        this.literal("null");
      } else {
        this.number();
      }
      if (!closedScalar) continue;
      // A value ended: close every container it completes, or go on to the next element.
      for (;;) {
        const close = open.at(-1);
        if (close === undefined) return;
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
        if (next !== close) throw new Invalid();
        this.position += 1;
        open.pop();
      }
    }
  }

  /**
   * Past a member's key and its colon (position at the key's quote): which of `known` the key is,
   * if any. Keys are compared where they lie in the text; only an escaped key is decoded.
   */
  memberKey(known: readonly string[]): string | undefined {
    const start = this.position + 1;
    const escaped = this.skipString();
    const end = this.position - 1;
    let key: string | undefined;
    if (known.length > 0) {
      if (escaped) {
        const decoded = JSON.parse(this.text.slice(start - 1, end + 1)) as string;
        key = known.find((k) => k === decoded);
      } else {
        key = known.find((k) => k.length === end - start && this.text.startsWith(k, start));
      }
    }
    this.skipWhitespace();
    this.expect(COLON);
    this.skipWhitespace();
    return key;
  }

  /**
   * Walks an object's members (position at its `{`), calling `member` with each key while the
   * position is at the value; `member` must leave the position past the value.
   */
  object(known: readonly string[], member: (key: string | undefined) => void): void {
    this.expect(OPEN_BRACE);
    this.skipWhitespace();
    if (this.peek() === CLOSE_BRACE) {
      this.position += 1;
      return;
    }
    for (;;) {
      this.skipWhitespace();
      member(this.memberKey(known));
      this.skipWhitespace();
      const next = this.peek();
      this.position += 1;
      if (next === CLOSE_BRACE) return;
      if (next !== COMMA) throw new Invalid();
    }
  }

  /** Walks an array's elements (position at its `[`), as `object` does its members. */
  array(element: () => void): void {
    this.expect(OPEN_BRACKET);
    this.skipWhitespace();
    if (this.peek() === CLOSE_BRACKET) {
      this.position += 1;
      return;
    }
    for (;;) {
      this.skipWhitespace();
      element();
      this.skipWhitespace();
      const next = this.peek();
      this.position += 1;
      if (next === CLOSE_BRACKET) return;
      if (next !== COMMA) throw new Invalid();
    }
  }
}

function readUsage(reader: Reader): PrunedRun["usage"] {
  if (reader.kind() !== "object") {
    reader.skipValue();
    return null;
  }
  let credits: number | undefined;
  let totalCredits: number | undefined;
  reader.object(USAGE_KEYS, (key) => {
    // Later duplicates win, as in JSON.parse.
    if (key === "credits" || key === "totalCredits") {
      const value = reader.numberValue();
      if (key === "credits") credits = value;
      else totalCredits = value;
    } else {
      reader.skipValue();
    }
  });
  return {
    ...(credits !== undefined ? { credits } : {}),
    ...(totalCredits !== undefined ? { totalCredits } : {}),
  };
}

function readRun(reader: Reader): PrunedRun | undefined {
  // Any other value is a fault of the list's shape; it is still read through to check the JSON.
  if (reader.kind() !== "object") {
    reader.skipValue();
    return undefined;
  }
  let createdAt: string | undefined;
  let usage: PrunedRun["usage"] = null;
  reader.object(RUN_KEYS, (key) => {
    if (key === "createdAt") {
      createdAt = reader.stringValue();
    } else if (key === "usage") {
      usage = readUsage(reader);
    } else {
      reader.skipValue();
    }
  });
  return { createdAt, usage };
}

/**
 * The fold's view of a list page's text: undefined when the text is not JSON, or not Extend's list
 * shape (a top-level object whose `object` is "list" or absent, `data` an array of objects, and
 * `nextPageToken` absent, null or a string): the cases where `parseListBody` gives undefined.
 * Where a key repeats, the last one counts, as in JSON.parse.
 */
export function foldPageText(text: string): PrunedPage | undefined {
  const reader = new Reader(text);
  let isList = true;
  let data: PrunedRun[] | undefined;
  let dataOk = false;
  let tokenOk = true;
  let token: string | undefined;
  try {
    reader.skipWhitespace();
    if (reader.kind() !== "object") return undefined;
    reader.object(PAGE_KEYS, (key) => {
      const kind = reader.kind();
      if (key === "object") {
        isList = reader.stringValue() === "list";
      } else if (key === "data") {
        data = undefined;
        dataOk = kind === "array";
        if (!dataOk) return reader.skipValue();
        const runs: PrunedRun[] = [];
        reader.array(() => {
          const run = readRun(reader);
          if (run) runs.push(run);
          else dataOk = false;
        });
        data = runs;
      } else if (key === "nextPageToken") {
        tokenOk = kind === "string" || kind === "null";
        token = reader.stringValue();
      } else {
        reader.skipValue();
      }
    });
    reader.skipWhitespace();
    if (reader.position !== text.length) return undefined;
  } catch (error) {
    if (error instanceof Invalid) return undefined;
    throw error;
  }
  if (!isList || !dataOk || !tokenOk || !data) return undefined;
  return { data, nextPageToken: token === "" ? undefined : token };
}
