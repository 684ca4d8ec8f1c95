import { type Clock, systemClock } from "../lib/clock.ts";
import {
  type CacheRead,
  type CacheReadOptions,
  type KvCache,
  type StoredValue,
  withinMaxAge,
} from "./kv-cache.ts";

/**
 * Bytes the isolate's L1 may hold. An isolate has 128 MB, shared with every request it serves and
 * with the pages /stats scans hold in flight (docs/benchmarks.md "Scan memory"), so the L1 keeps to a small
 * slice of it.
 */
export const L1_MAX_BYTES = 8 * 1024 * 1024;
/** Larger entries (pages of several hundred runs) stay in KV only: one must not flush the rest. */
export const L1_MAX_ENTRY_BYTES = 1024 * 1024;
/** What a Map entry and its record cost beyond their key and bytes, charged to every entry. */
const ENTRY_OVERHEAD_BYTES = 160;

/** Bytes charged for an entry: its stored bytes, and the key at two bytes a character (V8 may hold it as UTF-16). */
export function entryBytes(key: string, stored: Uint8Array): number {
  return 2 * key.length + stored.byteLength + ENTRY_OVERHEAD_BYTES;
}

const encoder = new TextEncoder();

/** An entry's value as KV holds it and `parse` reads it: UTF-8 bytes. */
function storedBytes(stored: StoredValue): Uint8Array<ArrayBuffer> {
  return typeof stored === "string" ? (encoder.encode(stored) as Uint8Array<ArrayBuffer>) : stored;
}

interface Sized<V> {
  value: V;
  bytes: number;
}

/**
 * A least-recently-used map bounded by the bytes its entries are charged, not by their number.
 * A Map iterates in insertion order, so re-inserting on use keeps the oldest use first.
 */
export class ByteLru<V> {
  readonly #entries = new Map<string, Sized<V>>();
  readonly #maxBytes: number;
  readonly #maxEntryBytes: number;
  #bytes = 0;

  constructor(maxBytes: number, maxEntryBytes = maxBytes) {
    this.#maxBytes = maxBytes;
    this.#maxEntryBytes = Math.min(maxEntryBytes, maxBytes);
  }

  get bytes(): number {
    return this.#bytes;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** The value, now the most recently used. */
  get(key: string): V | undefined {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    this.#entries.delete(key);
    this.#entries.set(key, entry);
    return entry.value;
  }

  has(key: string): boolean {
    return this.#entries.has(key);
  }

  /**
   * Stores the value as the most recently used, evicting the least recently used until the
   * total fits. An entry above the per-entry bound is not stored (and replaces nothing).
   */
  set(key: string, value: V, bytes: number): boolean {
    if (!(bytes >= 0) || bytes > this.#maxEntryBytes) return false;
    this.delete(key);
    this.#entries.set(key, { value, bytes });
    this.#bytes += bytes;
    for (const [oldest, entry] of this.#entries) {
      if (this.#bytes <= this.#maxBytes) break;
      this.#entries.delete(oldest);
      this.#bytes -= entry.bytes;
    }
    return true;
  }

  delete(key: string): void {
    const entry = this.#entries.get(key);
    if (!entry) return;
    this.#entries.delete(key);
    this.#bytes -= entry.bytes;
  }

  clear(): void {
    this.#entries.clear();
    this.#bytes = 0;
  }
}

/** An entry as KV held it when it was read: the stored bytes, their validator and the load time. */
export interface L1Entry {
  stored: Uint8Array<ArrayBuffer>;
  tag: string;
  at: number;
}

/** The isolate's L1: every KV namespace's entries share one byte budget. */
const l1 = new ByteLru<L1Entry>(L1_MAX_BYTES, L1_MAX_ENTRY_BYTES);
const namespaceIds = new WeakMap<object, number>();
let lastNamespaceId = 0;

/** Entries of another binding (a test's wrapped namespace, say) are never this one's. */
function namespaceOf(kv: object): number {
  let id = namespaceIds.get(kv);
  if (id === undefined) {
    lastNamespaceId += 1;
    id = lastNamespaceId;
    namespaceIds.set(kv, id);
  }
  return id;
}

export interface L1Deps {
  /** The namespace behind `cache`; without one there is nothing to mirror. */
  kv: object | undefined;
  clock?: Clock;
  /** The isolate's L1 unless a test gives its own. */
  store?: ByteLru<L1Entry>;
}

/**
 * An in-isolate first level in front of a KV cache: entries KV served fresh (HIT) are kept here,
 * under exactly their KV key, and served from memory while they are still fresh by the reader's
 * own `ttlSeconds`, with the age, validator and parse KV would give. Past freshness the read goes
 * to KV, which decides about stale serving and refreshes. Only what KV returned is ever kept, so
 * the L1 never knows a value KV did not hold; it may keep one KV has since replaced (from
 * another isolate), but never past the freshness that value had, like KV's own edge caching.
 * A reader's `admission` is awaited before anything is served from here, as KV would.
 */
export function withL1(cache: KvCache, deps: L1Deps): KvCache {
  const { kv } = deps;
  if (!kv) return cache;
  const clock = deps.clock ?? systemClock;
  const store = deps.store ?? l1;
  const prefix = `${namespaceOf(kv)}|`;
  return {
    offer: (key, value, options) => cache.offer(key, value, options),
    async read<T>(key: string, options: CacheReadOptions<T>): Promise<CacheRead<T>> {
      const slot = prefix + key;
      const entry = store.get(slot);
      if (entry) {
        const ageMs = Math.max(0, clock.now() - entry.at);
        if (ageMs < options.ttlSeconds * 1000 && withinMaxAge(options, ageMs)) {
          const value = parsed(options, entry.stored);
          if (value !== undefined) {
            await options.admission;
            // The value shares the L1's bytes: nothing of it may be freed.
            return {
              value,
              cache: "HIT",
              ageSeconds: Math.floor(ageMs / 1000),
              entryTag: entry.tag,
              release: keep,
            };
          }
        }
        store.delete(slot);
      }
      const result = await cache.read(key, options);
      if (result.cache === "HIT" && result.storedAt !== undefined) {
        const stored = storedBytes(options.serialize(result.value));
        if (
          store.set(slot, { stored, tag: result.entryTag, at: result.storedAt }, entryBytes(slot, stored))
        ) {
          return { ...result, release: keep };
        }
      }
      return result;
    },
  };
}

/** The release of a value whose bytes the L1 keeps. */
function keep(): void {}

function parsed<T>(options: CacheReadOptions<T>, stored: Uint8Array<ArrayBuffer>): T | undefined {
  try {
    return options.parse(stored);
  } catch {
    return undefined;
  }
}
