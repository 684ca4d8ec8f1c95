// Page bytes outside the JavaScript heap: megabytes each, and freed on purpose, not left to V8.

/**
 * Frees the memory behind `bytes` now, not at V8's next collection: their ArrayBuffer is detached
 * (every view of it then reads as empty). Pages are megabytes outside the heap, and V8 collects
 * such buffers only once tens of MB of them have piled up; so whoever is the last to need a
 * page's bytes lets them go. Only for bytes no one else will read.
 */
export function releaseBytes(bytes: Uint8Array): void {
  try {
    (bytes.buffer as ArrayBuffer).transfer(0);
  } catch {
    // Already detached, or a buffer that cannot be (shared memory): left to the collector.
  }
}

/**
 * A byte stream's contents, joined into one buffer of exactly `length` bytes; each chunk is let go
 * as soon as it is copied. Rejects when the stream fails or carries more or fewer bytes.
 */
export async function readExactly(
  stream: ReadableStream<Uint8Array>,
  length: number,
): Promise<Uint8Array<ArrayBuffer>> {
  const body = new Uint8Array(length);
  const reader = stream.getReader();
  let at = 0;
  try {
    for (;;) {
      const chunk = await reader.read();
      if (chunk.done) break;
      const bytes = chunk.value;
      if (at + bytes.byteLength > length)
        throw new RangeError("the stream carried more bytes than announced");
      body.set(bytes, at);
      at += bytes.byteLength;
      releaseBytes(bytes);
    }
  } catch (error) {
    await reader.cancel(error).catch(() => undefined);
    throw error;
  }
  if (at !== length) throw new RangeError("the stream ended before the announced length");
  return body;
}
