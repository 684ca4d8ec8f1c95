import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ByteLru, entryBytes, L1_MAX_BYTES, L1_MAX_ENTRY_BYTES } from "../../../src/cache/l1.ts";

describe("ByteLru", () => {
  it("evicts the least recently used entry first, a read counting as a use", () => {
    const lru = new ByteLru<string>(30);
    lru.set("a", "A", 10);
    lru.set("b", "B", 10);
    lru.set("c", "C", 10);
    expect(lru.get("a")).toBe("A");
    lru.set("d", "D", 10);
    expect(lru.has("b")).toBe(false);
    expect([lru.has("a"), lru.has("c"), lru.has("d")]).toEqual([true, true, true]);
    expect(lru.bytes).toBe(30);
  });

  it("evicts as many entries as a large one needs", () => {
    const lru = new ByteLru<string>(100);
    for (const key of ["a", "b", "c", "d"]) lru.set(key, key, 25);
    lru.set("big", "x", 70);
    expect(lru.size).toBe(2);
    expect(lru.has("d")).toBe(true);
    expect(lru.has("big")).toBe(true);
    expect(lru.bytes).toBe(95);
  });

  it("refuses an entry above the per-entry bound, and keeps what it held", () => {
    const lru = new ByteLru<string>(100, 40);
    lru.set("a", "A", 30);
    expect(lru.set("a", "huge", 41)).toBe(false);
    expect(lru.get("a")).toBe("A");
    expect(lru.bytes).toBe(30);
  });

  it("refuses sizes that are not sizes", () => {
    const lru = new ByteLru<string>(100);
    for (const bytes of [-1, Number.NaN]) expect(lru.set("a", "A", bytes)).toBe(false);
    expect(lru.size).toBe(0);
  });

  it("replacing an entry charges its new size only", () => {
    const lru = new ByteLru<string>(100);
    lru.set("a", "A", 60);
    lru.set("a", "A2", 20);
    expect(lru.bytes).toBe(20);
    expect(lru.get("a")).toBe("A2");
  });

  it("delete and clear give the bytes back", () => {
    const lru = new ByteLru<string>(100);
    lru.set("a", "A", 60);
    lru.set("b", "B", 30);
    lru.delete("a");
    lru.delete("missing");
    expect(lru.bytes).toBe(30);
    lru.clear();
    expect([lru.size, lru.bytes]).toEqual([0, 0]);
  });

  it("charges the stored bytes, two bytes a key character, and a fixed overhead", () => {
    const none = new Uint8Array(0);
    expect(entryBytes("ab", new TextEncoder().encode("cdé")) - entryBytes("", none)).toBe(8);
    expect(entryBytes("", none)).toBeGreaterThan(0);
  });

  it("keeps the isolate's bound small beside a 128 MB isolate, and a page under it", () => {
    expect(L1_MAX_BYTES).toBeLessThanOrEqual(16 * 2 ** 20);
    expect(L1_MAX_ENTRY_BYTES).toBeLessThan(L1_MAX_BYTES);
  });

  type Op = { kind: "set"; key: number; bytes: number } | { kind: "get" | "delete"; key: number };
  const op: fc.Arbitrary<Op> = fc.oneof(
    fc.record({ kind: fc.constant("set" as const), key: fc.nat(9), bytes: fc.nat(60) }),
    fc.record({ kind: fc.constantFrom("get" as const, "delete" as const), key: fc.nat(9) }),
  );

  it("behaves like a model LRU and never holds more than its bound", () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 200 }), (ops) => {
        const max = 100;
        const maxEntry = 50;
        const lru = new ByteLru<number>(max, maxEntry);
        // The model: keys in order of last use, each with its size and value.
        let model: { key: number; bytes: number; value: number }[] = [];
        ops.forEach((o, step) => {
          const key = `k${o.key}`;
          if (o.kind === "set") {
            const stored = lru.set(key, step, o.bytes);
            expect(stored).toBe(o.bytes <= maxEntry);
            if (stored) {
              model = [...model.filter((e) => e.key !== o.key), { key: o.key, bytes: o.bytes, value: step }];
              while (model.reduce((sum, e) => sum + e.bytes, 0) > max) model.shift();
            }
          } else if (o.kind === "get") {
            const found = model.find((e) => e.key === o.key);
            expect(lru.get(key)).toBe(found?.value);
            if (found) model = [...model.filter((e) => e !== found), found];
          } else {
            lru.delete(key);
            model = model.filter((e) => e.key !== o.key);
          }
          expect(lru.bytes).toBe(model.reduce((sum, e) => sum + e.bytes, 0));
          expect(lru.bytes).toBeLessThanOrEqual(max);
          expect(lru.size).toBe(model.length);
        });
      }),
    );
  });
});
