import { describe, expect, it } from "vitest";
import { readAll, readExactly, StreamTooLong } from "../../../src/lib/bytes.ts";

const bytesOf = (n: number, seed = 7) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);

/** A native byte stream (as fetch bodies and RPC streams are) fed `chunks`, then closed. */
function byteStream(chunks: Uint8Array[]): ReadableStream<Uint8Array> {
  const { readable, writable } = new IdentityTransformStream();
  const writer = writable.getWriter();
  void (async () => {
    for (const chunk of chunks) await writer.write(chunk);
    await writer.close();
  })().catch(() => undefined);
  return readable;
}

/** A stream of chunks built in JavaScript (no BYOB reader), as a test's fake body is. */
function chunkStream(chunks: Uint8Array[]): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(chunk);
      controller.close();
    },
  });
}

/** Byte for byte (expect's deep equality walks a large array far too slowly). */
function same(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function split(bytes: Uint8Array, size: number): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  for (let at = 0; at < bytes.length; at += size) chunks.push(bytes.slice(at, at + size));
  return chunks;
}

describe.each([
  ["a byte stream", byteStream],
  ["a stream of chunks", chunkStream],
])("reading %s", (_, stream) => {
  const page = bytesOf(1_300_000);

  it("readExactly gives every byte, in order, in one buffer", async () => {
    const read = await readExactly(stream(split(page, 4_096)), page.length);
    expect(same(read, page)).toBe(true);
    expect(read.byteOffset).toBe(0);
  });

  it("readExactly refuses a stream longer or shorter than announced", async () => {
    await expect(readExactly(stream(split(page, 10_000)), page.length - 1)).rejects.toThrow(/more bytes/);
    await expect(readExactly(stream(split(page, 10_000)), page.length + 1)).rejects.toThrow(/ended before/);
  });

  it("readAll gives every byte whatever the hint, growing past a small one", async () => {
    for (const hint of [0, 1_000, page.length - 1, page.length, page.length + 5]) {
      const read = await readAll(stream(split(page, 65_536)), { sizeHint: hint, maxBytes: 1 << 21 });
      expect(same(read, page)).toBe(true);
    }
    expect(await readAll(stream([]), { sizeHint: 10, maxBytes: 100 })).toEqual(new Uint8Array(0));
  });

  it("readAll does not keep a buffer far larger than the stream", async () => {
    const small = bytesOf(10_000);
    const read = await readAll(stream([small]), { sizeHint: 2_000_000, maxBytes: 1 << 22 });
    expect(read).toEqual(small);
    expect(read.buffer.byteLength).toBeLessThan(100_000);
  });

  it("readAll refuses a stream over maxBytes, exactly at the bound", async () => {
    const bound = 300_000;
    expect(
      await readAll(stream(split(bytesOf(bound), 50_000)), { sizeHint: 0, maxBytes: bound }),
    ).toHaveLength(bound);
    for (const hint of [0, bound, bound * 2]) {
      await expect(
        readAll(stream(split(bytesOf(bound + 1), 50_000)), { sizeHint: hint, maxBytes: bound }),
      ).rejects.toBeInstanceOf(StreamTooLong);
    }
  });
});

describe("readAll and its signal", () => {
  it("rejects with the signal's reason when a stalled stream is aborted", async () => {
    const { readable, writable } = new IdentityTransformStream();
    const writer = writable.getWriter();
    void writer.write(bytesOf(1_000)).catch(() => undefined);
    const abort = new AbortController();
    const reading = readAll(readable, { sizeHint: 0, maxBytes: 1 << 20, signal: abort.signal });
    setTimeout(() => abort.abort(new Error("stalled")), 20);
    await expect(reading).rejects.toThrow("stalled");
  });
});
