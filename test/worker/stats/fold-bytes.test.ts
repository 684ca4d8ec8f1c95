// The byte-level pruning fold against its oracle: a fatal UTF-8 decoder, then JSON.parse with the
// list-shape check (parseListText), then what the fold reads of each run (createdAt, and usage
// through runUsage). Pages are rendered by hand so the text varies where JSON allows it:
// whitespace, escapes in keys and values, unicode and lone surrogates, numbers in exponent form,
// key order and repeated keys; then their bytes are broken where UTF-8 and JSON do not allow it.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseListText } from "../../../src/extend/client.ts";
import { isUtf8, utf16Length } from "../../../src/lib/utf8.ts";
import { runUsage, usageOf } from "../../../src/stats/aggregate.ts";
import { foldPageBytes, VALUES_PER_RUN } from "../../../src/stats/fold-bytes.ts";
import { foldPage } from "../../../src/stats/scan.ts";

const encoder = new TextEncoder();
const fatal = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const bytesOf = (text: string) => encoder.encode(text);

/** What a fatal decoder makes of the bytes, or undefined when it refuses them. */
function decoded(bytes: Uint8Array): string | undefined {
  try {
    return fatal.decode(bytes);
  } catch {
    return undefined;
  }
}

/** What the fold takes from a page, computed from the decoded text and its full parse. */
function oracle(bytes: Uint8Array) {
  const text = decoded(bytes);
  const page = text === undefined ? undefined : parseListText(text);
  if (!page) return undefined;
  return {
    runs: page.data.map((run) => ({
      at: typeof run.createdAt === "string" ? Date.parse(run.createdAt) : Number.NaN,
      usage: runUsage(run),
    })),
    nextPageToken: page.nextPageToken,
  };
}

function folded(bytes: Uint8Array) {
  const page = foldPageBytes(bytes);
  if (!page) return undefined;
  return {
    runs: Array.from({ length: page.runs }, (_, i) => ({
      at: page.values[i * VALUES_PER_RUN],
      usage: usageOf(
        page.values[i * VALUES_PER_RUN + 1] as number,
        page.values[i * VALUES_PER_RUN + 2] as number,
      ),
    })),
    nextPageToken: page.nextPageToken,
  };
}

/** Byte sequences a fatal decoder refuses: overlong, surrogate, past U+10FFFF, stray, cut off. */
const badUtf8 = fc.constantFrom(
  [0xc0, 0x80],
  [0xc1, 0xbf],
  [0xe0, 0x80, 0x80],
  [0xed, 0xa0, 0x80],
  [0xed, 0xbf, 0xbf],
  [0xf0, 0x80, 0x80, 0x80],
  [0xf4, 0x90, 0x80, 0x80],
  [0xf5, 0x80, 0x80, 0x80],
  [0x80],
  [0xbf],
  [0xff],
  [0xe2, 0x82],
  [0xf0, 0x9f, 0x98],
  [0xc3],
);

const ws = fc.string({ unit: fc.constantFrom(" ", "\t", "\n", "\r"), maxLength: 2 });

/** Any UTF-16 code unit, lone surrogates and control characters included. */
const codeUnit = fc.integer({ min: 0, max: 0xffff }).map((n) => String.fromCharCode(n));

function escapeUnit(unit: string, style: number): string {
  const hex = unit.charCodeAt(0).toString(16).padStart(4, "0");
  return `\\u${style % 2 === 0 ? hex : hex.toUpperCase()}`;
}

/** A string literal for `value`, escaping what must be and, at random, what need not be. */
function stringText(value: string): fc.Arbitrary<string> {
  return fc.array(fc.nat(5), { minLength: value.length, maxLength: value.length }).map((styles) => {
    let out = '"';
    for (let i = 0; i < value.length; i++) {
      const unit = value.charAt(i);
      const style = styles[i] ?? 0;
      const plain = JSON.stringify(unit).slice(1, -1);
      if (style === 0) out += escapeUnit(unit, style + i);
      else if (style === 1 && unit === "/") out += "\\/";
      else out += plain;
    }
    return `${out}"`;
  });
}

const stringValue = fc.oneof(
  fc.string({ unit: codeUnit, maxLength: 8 }),
  fc.string({ unit: "grapheme", maxLength: 8 }),
  fc.constantFrom("list", "createdAt", "usage", "credits", "totalCredits", "", "é€😀"),
  // Keys that a careless comparison would take for the ones the fold reads.
  fc.constantFrom("createdAt_", "usages", "creditsX", "totalCredit", "dataset", "object2", "nextPageTokens"),
);

/** JSON number text in every form the grammar allows, e.g. `-0`, `12.50`, `1E+2`, `5e-324`, `1e400`. */
const numberText = fc
  .record({
    sign: fc.boolean(),
    whole: fc.oneof(fc.constant("0"), fc.stringMatching(/^[1-9][0-9]{0,17}$/)),
    fraction: fc.option(fc.stringMatching(/^[0-9]{1,14}$/), { nil: undefined }),
    exponent: fc.option(
      fc.tuple(fc.constantFrom("e", "E"), fc.constantFrom("", "+", "-"), fc.integer({ min: 0, max: 400 })),
      { nil: undefined },
    ),
  })
  .map(
    ({ sign, whole, fraction, exponent }) =>
      `${sign ? "-" : ""}${whole}${fraction === undefined ? "" : `.${fraction}`}${
        exponent === undefined ? "" : `${exponent[0]}${exponent[1]}${exponent[2]}`
      }`,
  );

function objectText(members: readonly (readonly [string, string])[]): fc.Arbitrary<string> {
  return fc
    .array(ws, { minLength: members.length * 4 + 2, maxLength: members.length * 4 + 2 })
    .map((gaps) => {
      const at = (i: number) => gaps[i] ?? "";
      if (members.length === 0) return `{${at(0)}}`;
      const body = members
        .map(
          ([key, value], i) => `${at(4 * i)}${key}${at(4 * i + 1)}:${at(4 * i + 2)}${value}${at(4 * i + 3)}`,
        )
        .join(",");
      return `{${body}}`;
    });
}

function arrayText(elements: readonly string[]): fc.Arbitrary<string> {
  return fc.array(ws, { minLength: elements.length + 1, maxLength: elements.length + 1 }).map((gaps) => {
    if (elements.length === 0) return `[${gaps[0] ?? ""}]`;
    return `[${elements.map((element, i) => `${gaps[i] ?? ""}${element}`).join(",")}${gaps.at(-1) ?? ""}]`;
  });
}

/** A key literal, sometimes with escapes (`"\u0063reatedAt"` is still createdAt). */
const keyText = (key: string) => stringText(key);

function membersText(members: fc.Arbitrary<(readonly [string, string])[]>): fc.Arbitrary<string> {
  return members.chain((list) => objectText(list));
}

const { value: anyValue } = fc.letrec<{ value: string }>((tie) => ({
  value: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    stringValue.chain(stringText),
    numberText,
    fc.constantFrom("true", "false", "null"),
    fc.array(tie("value"), { maxLength: 3 }).chain(arrayText),
    membersText(
      fc.array(
        fc.tuple(stringValue.chain(keyText), tie("value")).map(([k, v]) => [k, v] as const),
        { maxLength: 3 },
      ),
    ),
  ),
}));

/** A member whose key is `key`, its literal rendered at random. */
const member = (key: string, value: fc.Arbitrary<string>) =>
  fc.tuple(keyText(key), value).map(([k, v]) => [k, v] as const);

const creditValue = fc.oneof(
  numberText,
  numberText.map((n) => JSON.stringify(n)),
  fc.constant("null"),
  anyValue,
);

const usageValue = fc.oneof(
  fc.constant("null"),
  anyValue,
  membersText(
    fc
      .tuple(
        fc.option(member("credits", creditValue), { nil: undefined }),
        fc.option(member("totalCredits", creditValue), { nil: undefined }),
        fc.array(
          fc.tuple(stringValue.chain(keyText), anyValue).map(([k, v]) => [k, v] as const),
          {
            maxLength: 2,
          },
        ),
        fc.option(member("credits", creditValue), { nil: undefined }),
      )
      .chain(([credits, total, extra, repeated]) =>
        fc.shuffledSubarray(
          [credits, total, ...extra, repeated].filter((m) => m !== undefined),
          { minLength: 0 },
        ),
      ),
  ),
);

const isoValue = fc
  .date({ min: new Date("2000-01-01T00:00:00Z"), max: new Date("2100-01-01T00:00:00Z"), noInvalidDate: true })
  .map((d) => d.toISOString());

/** ISO-like instants around the form the fold reads from bytes: fields at and past their ranges. */
const edge = (min: number, max: number, past: number) =>
  fc.oneof(
    { weight: 3, arbitrary: fc.integer({ min, max }) },
    { weight: 2, arbitrary: fc.constantFrom(min, max, max + 1, Math.max(0, min - 1)) },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: past }) },
  );
const isoLike = fc
  .tuple(
    edge(1000, 9999, 10_999),
    edge(1, 12, 99),
    edge(1, 31, 99),
    edge(0, 23, 99),
    edge(0, 59, 99),
    edge(0, 59, 99),
    fc.oneof(
      { weight: 4, arbitrary: fc.stringMatching(/^[0-9]{3}$/) },
      { weight: 1, arbitrary: fc.option(fc.stringMatching(/^[0-9]{0,4}$/), { nil: undefined }) },
    ),
    fc.oneof({ weight: 6, arbitrary: fc.constant("Z") }, fc.constantFrom("", "z", "+01:00", "-00:00")),
    fc.oneof({ weight: 6, arbitrary: fc.constant("T") }, fc.constantFrom(" ", "t")),
  )
  .map(([year, month, day, hour, minute, second, fraction, zone, t]) => {
    const two = (n: number) => String(n).padStart(2, "0");
    const ms = fraction === undefined ? "" : `.${fraction}`;
    return `${String(year).padStart(4, "0")}-${two(month)}-${two(day)}${t}${two(hour)}:${two(minute)}:${two(second)}${ms}${zone}`;
  });

const runValue = fc
  .oneof({ weight: 12, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: anyValue })
  .chain((other) =>
    other !== undefined
      ? fc.constant(other)
      : membersText(
          fc
            .tuple(
              member("id", stringValue.chain(stringText)),
              fc.option(
                member(
                  "createdAt",
                  fc.oneof(isoValue.chain(stringText), isoLike.chain(stringText), anyValue),
                ),
                {
                  nil: undefined,
                },
              ),
              fc.option(member("usage", usageValue), { nil: undefined }),
              fc.array(
                fc.tuple(stringValue.chain(keyText), anyValue).map(([k, v]) => [k, v] as const),
                {
                  maxLength: 3,
                },
              ),
            )
            .chain(([id, createdAt, usage, extra]) =>
              fc.shuffledSubarray(
                [id, createdAt, usage, ...extra].filter((m) => m !== undefined),
                { minLength: 0 },
              ),
            ),
        ),
  );

const pageText = fc
  .tuple(
    fc.option(member("object", fc.oneof({ weight: 8, arbitrary: fc.constant('"list"') }, anyValue)), {
      nil: undefined,
    }),
    member(
      "data",
      fc.oneof({ weight: 12, arbitrary: fc.array(runValue, { maxLength: 6 }).chain(arrayText) }, anyValue),
    ),
    fc.option(
      member(
        "nextPageToken",
        fc.oneof(stringValue.chain(stringText), fc.constantFrom('""', "null"), anyValue),
      ),
      { nil: undefined },
    ),
    fc.array(
      fc.tuple(stringValue.chain(keyText), anyValue).map(([k, v]) => [k, v] as const),
      { maxLength: 2 },
    ),
  )
  .chain(([object, data, token, extra]) =>
    fc.shuffledSubarray(
      [object, data, token, ...extra].filter((m) => m !== undefined),
      { minLength: 0 },
    ),
  )
  .chain((members) => fc.tuple(ws, objectText(members), ws))
  .map(([before, body, after]) => `${before}${body}${after}`);

describe("foldPageBytes", () => {
  it("reads createdAt as Date.parse does, at and past the ranges of the ISO form's fields", () => {
    fc.assert(
      fc.property(isoLike, (iso) => {
        const bytes = bytesOf(JSON.stringify({ data: [{ createdAt: iso }] }));
        expect(folded(bytes)).toEqual(oracle(bytes));
      }),
      { numRuns: 5_000 },
    );
  });

  it("reads exactly what decoding, JSON.parse and the fold would, on hand-rendered pages", () => {
    fc.assert(
      fc.property(pageText, (text) => {
        const bytes = bytesOf(text);
        expect(folded(bytes)).toEqual(oracle(bytes));
      }),
      { numRuns: 2_000 },
    );
  });

  it("accepts a page exactly when decoding, JSON.parse and the list-shape check do", () => {
    fc.assert(
      fc.property(
        pageText,
        fc.nat(),
        fc.nat(),
        fc.oneof(
          fc.integer({ min: 0, max: 255 }).map((b) => [b]),
          badUtf8,
          codeUnit.map((u) => [...bytesOf(u)]),
        ),
        (text, at, mode, inserted) => {
          const bytes = bytesOf(text);
          const i = at % (bytes.length + 1);
          const broken = Uint8Array.from(
            [
              [...bytes.subarray(0, i)],
              [...bytes.subarray(0, i), ...inserted, ...bytes.subarray(i)],
              [...bytes.subarray(0, i), ...bytes.subarray(i + 1)],
            ][mode % 3] as number[],
          );
          expect(folded(broken)).toEqual(oracle(broken));
        },
      ),
      { numRuns: 3_000 },
    );
  });

  it("refuses invalid UTF-8 inside any string a page holds, as a fatal decoder does", () => {
    fc.assert(
      fc.property(pageText, fc.nat(), badUtf8, (text, pick, bad) => {
        const bytes = bytesOf(text);
        // Just after an opening or closing quote of some string: inside a string or between tokens.
        const quotes = [...bytes.keys()].filter((i) => bytes[i] === 0x22);
        if (quotes.length === 0) return;
        const i = (quotes[pick % quotes.length] as number) + 1;
        const broken = Uint8Array.from([...bytes.subarray(0, i), ...bad, ...bytes.subarray(i)]);
        expect(oracle(broken)).toBeUndefined();
        expect(folded(broken)).toBeUndefined();
      }),
      { numRuns: 1_000 },
    );
  });

  it("reads any JSON value as the oracle does", () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const text = bytesOf(JSON.stringify(value));
        expect(folded(text)).toEqual(oracle(text));
        const list = bytesOf(JSON.stringify({ object: "list", data: [value], nextPageToken: null }));
        expect(folded(list)).toEqual(oracle(list));
      }),
    );
  });

  it.each([
    [
      "escaped keys and values",
      '{"d\\u0061ta":[{"cre\\u0061tedAt":"2026-10-01T00:00:00.000\\u005a","usage":{"credits":1.5E1}}]}',
    ],
    ["credits as a string", '{"data":[{"createdAt":"2026-10-01T00:00:00Z","usage":{"credits":"3"}}]}'],
    [
      "repeated keys: the last wins",
      '{"data":[],"data":[{"usage":{"credits":1},"usage":{"credits":2,"credits":7}}]}',
    ],
    ["an empty cursor is the end", '{"object":"list","data":[],"nextPageToken":""}'],
    ["deep nesting", `{"data":[{"x":${"[".repeat(5_000)}${"]".repeat(5_000)}}]}`],
    ["a long cursor", `{"data":[],"nextPageToken":"${"é0".repeat(6_000)}"}`],
    ["a long ASCII cursor", `{"data":[],"nextPageToken":"${"a+/=".repeat(5_000)}"}`],
    ["a lone surrogate", '{"data":[{"createdAt":"\\ud800"}],"nextPageToken":"\\udc00"}'],
    [
      "non-ASCII values and keys",
      '{"data":[{"créé":"ü","createdAt":"2026-10-01T00:00:00Z😀","usage":{"crédits":1}}],"nextPageToken":"€"}',
    ],
    ["a four-byte character in a cursor", '{"data":[],"nextPageToken":"😀\\u00e9😀"}'],
    [
      "a U+FEFF inside a string",
      '{"data":[{"createdAt":"\ufeff2026-10-01T00:00:00Z"}],"nextPageToken":"\ufeff"}',
    ],
    ["an escaped key that is not ASCII", '{"\\u00e9":1,"data":[{"us\\u0061ge":{"totalCredits":-0}}]}'],
    [
      "numbers at their edges",
      '{"data":[{"usage":{"credits":-0,"totalCredits":1e400}},{"usage":{"credits":5e-324,"totalCredits":-1E+2}},' +
        '{"usage":{"credits":123456789012345678901234567890,"totalCredits":0.1}},{"usage":{"credits":1e-400}}]}',
    ],
    ["object as an escaped list", '{"object":"l\\u0069st","data":[]}'],
  ])("%s", (_name, text) => {
    const bytes = bytesOf(text);
    expect(folded(bytes)).toEqual(oracle(bytes));
    expect(oracle(bytes)).toBeDefined();
  });

  it.each([
    ["trailing garbage", '{"data":[]} x'],
    ["a trailing comma", '{"data":[1,],}'],
    ["a run that is not an object", '{"data":[null]}'],
    ["another object kind", '{"object":"workflow_run","data":[]}'],
    ["an object kind that is not ASCII", '{"object":"lïst","data":[]}'],
    ["a numeric cursor", '{"data":[],"nextPageToken":5}'],
    ["a raw control character", '{"data":[{"createdAt":"a\nb"}]}'],
    ["a bad escape", '{"data":[{"createdAt":"\\x41"}]}'],
    ["a short unicode escape", '{"data":[{"createdAt":"\\u12"}]}'],
    ["a leading zero", '{"data":[{"usage":{"credits":01}}]}'],
    ["a bare minus", '{"data":[{"usage":{"credits":-}}]}'],
    ["a plus sign", '{"data":[{"usage":{"credits":+1}}]}'],
    ["a bare fraction", '{"data":[{"usage":{"credits":.5}}]}'],
    ["a dot without digits", '{"data":[{"usage":{"credits":1.}}]}'],
    ["an exponent without digits", '{"data":[{"usage":{"credits":1e+}}]}'],
    ["a non-ASCII character outside strings", '{"data":[] é}'],
    ["a byte order mark before the page", '\ufeff{"data":[]}'],
    ["no data", '{"object":"list"}'],
  ])("refuses %s, as the oracle does", (_name, text) => {
    const bytes = bytesOf(text);
    expect(oracle(bytes)).toBeUndefined();
    expect(foldPageBytes(bytes)).toBeUndefined();
    expect(() => foldPage(bytes)).toThrow(expect.objectContaining({ code: "UPSTREAM_INVALID_RESPONSE" }));
  });
});

describe("UTF-8 helpers", () => {
  const anyBytes = fc.oneof(
    fc.uint8Array({ maxLength: 40 }),
    fc
      .array(
        fc.oneof(
          fc.string({ unit: "grapheme", maxLength: 4 }).map((t) => [...bytesOf(t)]),
          badUtf8,
        ),
        {
          maxLength: 8,
        },
      )
      .map((parts) => Uint8Array.from(parts.flat())),
  );

  it("isUtf8 agrees with a fatal decoder on any bytes", () => {
    fc.assert(
      fc.property(anyBytes, (bytes) => {
        expect(isUtf8(bytes)).toBe(decoded(bytes) !== undefined);
      }),
      { numRuns: 3_000 },
    );
  });

  it("utf16Length is the decoded string's length, at any alignment", () => {
    fc.assert(
      fc.property(
        fc.string({ unit: fc.oneof(codeUnit, fc.constant("😀")), maxLength: 64 }),
        fc.nat(3),
        (text, shift) => {
          const encoded = bytesOf(text);
          const shifted = new Uint8Array(encoded.length + shift);
          shifted.set(encoded, shift);
          const view = shifted.subarray(shift);
          // A leading U+FEFF is text here, as in a page's stored bytes (the client drops one BOM).
          expect(utf16Length(view)).toBe(
            new TextDecoder("utf-8", { fatal: false, ignoreBOM: true }).decode(view).length,
          );
        },
      ),
      { numRuns: 2_000 },
    );
  });
});
