// Page bytes outside the JavaScript heap: megabytes each, and freed on purpose, not left to V8.

/**
 * Frees the memory behind `bytes` now, not at V8's next collection: their ArrayBuffer is detached
 * (every view of it then reads as empty). Pages are megabytes outside the heap, and a folded
 * page's numbers tens of kilobytes, and V8 collects such buffers only once tens of MB of them
 * have piled up; so whoever is the last to need them lets them go. Only for bytes no one else
 * will read.
 */
export function releaseBytes(bytes: ArrayBufferView): void {
  releaseBuffer(bytes.buffer as ArrayBuffer);
}

function releaseBuffer(buffer: ArrayBuffer): void {
  try {
    buffer.transfer(0);
  } catch {
    // Already detached, or a buffer that cannot be (shared memory): left to the collector.
  }
}

/** Thrown by `readAll` when the stream carries more than its `maxBytes`. */
export class StreamTooLong extends RangeError {
  constructor() {
    super("the stream carried more bytes than allowed");
    this.name = "StreamTooLong";
  }
}

/**
 * Bytes a read waits for (fewer only at the stream's end). A network stream delivers a page in
 * hundreds of small chunks, each a buffer, a view, a result and a promise on the heap; read into
 * the caller's buffer in large steps, a page costs a handful of reads.
 */
const MIN_READ_BYTES = 512 * 1024;

/** Where a stream's bytes go: `buffer`, filled up to `at`. */
interface Fill {
  buffer: ArrayBuffer;
  at: number;
  done: boolean;
}

/** A reader that fills the caller's buffer (a byte stream), or undefined for a stream of chunks. */
function byobReader(stream: ReadableStream<Uint8Array>): ReadableStreamBYOBReader | undefined {
  try {
    return stream.getReader({ mode: "byob" }) as ReadableStreamBYOBReader;
  } catch {
    return undefined;
  }
}

/**
 * One read into `buffer` from `at` to its end, of at least MIN_READ_BYTES unless the stream ends.
 * The buffer is transferred by the read: what comes back is the one to go on with.
 */
async function fillOnce(reader: ReadableStreamBYOBReader, buffer: ArrayBuffer, at: number): Promise<Fill> {
  const room = buffer.byteLength - at;
  const view = new Uint8Array(buffer, at, room);
  const min = Math.min(room, MIN_READ_BYTES);
  const result =
    typeof reader.readAtLeast === "function" ? await reader.readAtLeast(min, view) : await reader.read(view);
  const value = result.value;
  if (!value) throw new TypeError("the stream was cancelled");
  return { buffer: value.buffer as ArrayBuffer, at: at + value.byteLength, done: result.done };
}

/**
 * A chunk stream's next chunk copied into `buffer` (grown by `grow` when it does not fit). The
 * chunk is not freed: a stream built in JavaScript may hand out one buffer more than once.
 */
async function copyOnce(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  buffer: ArrayBuffer,
  at: number,
  grow: (buffer: ArrayBuffer, needed: number) => ArrayBuffer,
): Promise<Fill> {
  const chunk = await reader.read();
  if (chunk.done) return { buffer, at, done: true };
  const bytes = chunk.value;
  const target = at + bytes.byteLength > buffer.byteLength ? grow(buffer, at + bytes.byteLength) : buffer;
  new Uint8Array(target).set(bytes, at);
  return { buffer: target, at: at + bytes.byteLength, done: false };
}

/**
 * A stream's contents in one buffer, read straight into it: `length` bytes exactly, rejecting
 * when the stream fails or carries more or fewer bytes. Nothing of the stream is kept beside it.
 */
export async function readExactly(
  stream: ReadableStream<Uint8Array>,
  length: number,
): Promise<Uint8Array<ArrayBuffer>> {
  const longer = () => {
    throw new RangeError("the stream carried more bytes than announced");
  };
  // One byte of room past the length, so a longer stream shows itself in the same read.
  const fill = await readInto(stream, new ArrayBuffer(length + 1), 0, longer, { leaveUnread: false });
  if (fill.at > length) longer();
  if (fill.at !== length) throw new RangeError("the stream ended before the announced length");
  return new Uint8Array(fill.buffer, 0, length);
}

export interface ReadAllOptions {
  /** Bytes expected (a Content-Length), or the size of a similar stream read before: the first buffer's size. */
  sizeHint: number;
  /** More than this is refused with StreamTooLong, the stream cancelled (see `leaveUnread`). */
  maxBytes: number;
  /** Cancels the read; it then rejects with the signal's reason. */
  signal?: AbortSignal;
  /**
   * Bytes kept free before the stream's, for the caller to write (what a signature covers before
   * a body): the view returned starts with them. Not counted in `maxBytes`.
   */
  reserve?: number;
  /** Told of each buffer before it is made: its size, and that of the one it replaces (0 at first). May refuse by throwing. */
  onBuffer?: (size: number, replaces: number) => void;
  /** On failure the stream's lock is released and the rest left unread, not cancelled. */
  leaveUnread?: boolean;
}

/**
 * A stream's contents of unknown length in one buffer, read straight into it. The view returned
 * may not span the whole buffer: one sized from the hint is copied to fit only when far too large.
 */
export async function readAll(
  stream: ReadableStream<Uint8Array>,
  options: ReadAllOptions,
): Promise<Uint8Array<ArrayBuffer>> {
  const { signal, onBuffer } = options;
  const reserve = options.reserve ?? 0;
  const limit = reserve + options.maxBytes;
  const sized = (size: number, replaced?: ArrayBuffer) => {
    onBuffer?.(size, replaced?.byteLength ?? 0);
    return replaced ? replaced.transfer(size) : new ArrayBuffer(size);
  };
  const grow = (buffer: ArrayBuffer, needed: number) => {
    if (needed > limit) throw new StreamTooLong();
    return sized(Math.min(limit + 1, Math.max(needed, Math.ceil(buffer.byteLength * 1.5))), buffer);
  };
  const first = Math.min(limit + 1, Math.max(64 * 1024, reserve + Math.ceil(options.sizeHint) + 1));
  const fill = await readInto(stream, sized(first), reserve, grow, {
    ...(signal ? { signal } : {}),
    leaveUnread: options.leaveUnread === true,
  });
  if (fill.at > limit) throw new StreamTooLong();
  // A hint much larger than the stream (a small page after a large one) is not held for its life.
  const spare = fill.buffer.byteLength - fill.at;
  const buffer = spare > Math.max(64 * 1024, fill.at / 8) ? sized(fill.at, fill.buffer) : fill.buffer;
  return new Uint8Array(buffer, 0, fill.at);
}

/**
 * Reads the whole stream into `buffer` from `at`, calling `grow` when the buffer is full and the
 * stream goes on. The reader is cancelled on any failure (unless `leaveUnread`), and on the signal.
 */
async function readInto(
  stream: ReadableStream<Uint8Array>,
  buffer: ArrayBuffer,
  at: number,
  grow: (buffer: ArrayBuffer, needed: number) => ArrayBuffer,
  options: { signal?: AbortSignal; leaveUnread: boolean },
): Promise<Fill> {
  const { signal } = options;
  const byob = byobReader(stream);
  const reader = byob ?? stream.getReader();
  const onAbort = () => {
    reader.cancel(signal?.reason).catch(() => undefined);
  };
  signal?.throwIfAborted();
  signal?.addEventListener("abort", onAbort, { once: true });
  let fill: Fill = { buffer, at, done: false };
  try {
    while (!fill.done) {
      if (byob) {
        if (fill.at === fill.buffer.byteLength) {
          // Full: one byte more tells whether the stream goes on.
          const probe = await fillOnce(byob, new ArrayBuffer(1), 0);
          if (probe.done && probe.at === 0) break;
          const grown = grow(fill.buffer, fill.at + probe.at);
          new Uint8Array(grown).set(new Uint8Array(probe.buffer, 0, probe.at), fill.at);
          fill = { buffer: grown, at: fill.at + probe.at, done: probe.done };
          continue;
        }
        fill = await fillOnce(byob, fill.buffer, fill.at);
      } else {
        fill = await copyOnce(reader as ReadableStreamDefaultReader<Uint8Array>, fill.buffer, fill.at, grow);
      }
      signal?.throwIfAborted();
    }
  } catch (error) {
    if (options.leaveUnread) reader.releaseLock();
    else await reader.cancel(error).catch(() => undefined);
    releaseBuffer(fill.buffer);
    throw signal?.aborted ? signal.reason : error;
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
  return fill;
}
