// The pruning fold against its oracle: JSON.parse with the list-shape check (parseListBody), then
// what the fold reads of each run (createdAt, and usage through runUsage). Pages are rendered by
// hand so the text varies where JSON allows it: whitespace, escapes in keys and values, unicode
// and lone surrogates, numbers in exponent form, key order and repeated keys.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseListBody } from "../../../src/extend/client.ts";
import { runUsage } from "../../../src/stats/aggregate.ts";
import { foldPageText } from "../../../src/stats/fold-text.ts";
import { foldPage } from "../../../src/stats/scan.ts";

/** What the fold takes from a page, computed from the full parse. */
function oracle(text: string) {
  const page = parseListBody(text);
  if (!page) return undefined;
  return {
    runs: page.data.map((run) => ({
      createdAt: typeof run.createdAt === "string" ? run.createdAt : undefined,
      usage: runUsage(run),
    })),
    nextPageToken: page.nextPageToken,
  };
}

function folded(text: string) {
  const page = foldPageText(text);
  if (!page) return undefined;
  return {
    runs: page.data.map((run) => ({ createdAt: run.createdAt, usage: runUsage(run) })),
    nextPageToken: page.nextPageToken,
  };
}

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

const runValue = fc
  .oneof({ weight: 12, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: anyValue })
  .chain((other) =>
    other !== undefined
      ? fc.constant(other)
      : membersText(
          fc
            .tuple(
              member("id", stringValue.chain(stringText)),
              fc.option(member("createdAt", fc.oneof(isoValue.chain(stringText), anyValue)), {
                nil: undefined,
              }),
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

describe("foldPageText", () => {
  it("reads exactly what JSON.parse and the fold would, on hand-rendered pages", () => {
    fc.assert(
      fc.property(pageText, (text) => {
        expect(folded(text)).toEqual(oracle(text));
      }),
      { numRuns: 2_000 },
    );
  });

  it("accepts a page exactly when JSON.parse and the list-shape check do", () => {
    fc.assert(
      fc.property(pageText, fc.nat(), fc.nat(), codeUnit, (text, at, mode, unit) => {
        const i = at % (text.length + 1);
        const broken = [
          text.slice(0, i),
          text.slice(0, i) + unit + text.slice(i),
          text.slice(0, i) + text.slice(i + 1),
        ][mode % 3] as string;
        expect(folded(broken)).toEqual(oracle(broken));
      }),
      { numRuns: 2_000 },
    );
  });

  it("reads any JSON value as the oracle does", () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const text = JSON.stringify(value);
        expect(folded(text)).toEqual(oracle(text));
        const list = JSON.stringify({ object: "list", data: [value], nextPageToken: null });
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
    ["a lone surrogate", '{"data":[{"createdAt":"\\ud800"}],"nextPageToken":"\\udc00"}'],
  ])("%s", (_name, text) => {
    expect(folded(text)).toEqual(oracle(text));
    expect(oracle(text)).toBeDefined();
  });

  it.each([
    ["trailing garbage", '{"data":[]} x'],
    ["a trailing comma", '{"data":[1,],}'],
    ["a run that is not an object", '{"data":[null]}'],
    ["another object kind", '{"object":"workflow_run","data":[]}'],
    ["a numeric cursor", '{"data":[],"nextPageToken":5}'],
    ["a raw control character", '{"data":[{"createdAt":"a\nb"}]}'],
    ["a bad escape", '{"data":[{"createdAt":"\\x41"}]}'],
    ["a leading zero", '{"data":[{"usage":{"credits":01}}]}'],
    ["no data", '{"object":"list"}'],
  ])("refuses %s, as the oracle does", (_name, text) => {
    expect(oracle(text)).toBeUndefined();
    expect(foldPageText(text)).toBeUndefined();
    expect(() => foldPage(text)).toThrow(expect.objectContaining({ code: "UPSTREAM_INVALID_RESPONSE" }));
  });
});
