import { type Clock, settledWithin, systemClock } from "../lib/clock.ts";
import { sha256Hex } from "../lib/digest.ts";
import { utf16Length } from "../lib/utf8.ts";

/** How a read was served, sent as `x-cache` (see README "Caching"). */
export type CacheState = "HIT" | "STALE" | "MISS" | "BYPASS";

/** A KV read slower than this is abandoned and the request is served from upstream (BYPASS). */
export const KV_READ_TIMEOUT_MS = 500;
/** KV rejects `expirationTtl` below 60 s; expiry is only garbage collection here, never freshness. */
export const KV_MIN_EXPIRATION_TTL_SECONDS = 60;
/**
 * How long a request waits for another request's in-flight load of the same key before it loads
 * on its own. A bound is needed: workerd may cancel the leader's I/O when the leader's request
 * ends early, and a waiter must never hang on a promise that will not settle.
 */
export const DEFAULT_MAX_COALESCE_WAIT_MS = 30_000;
/** Hex characters of SHA-256 kept as an entry's validator (128 bits). */
const ENTRY_TAG_CHARS = 32;
const METADATA_VERSION = 1;

/** What the cache stores beside each value; read back with the value in one `getWithMetadata`. */
interface EntryMetadata {
  /** Format version of this metadata. */
  v: typeof METADATA_VERSION;
  /** When the value was loaded (ms since epoch): the only source of freshness and `Age`. */
  at: number;
  /** Validator of the stored text, computed once at write time. */
  tag: string;
  /**
   * Length of the stored text in UTF-16 code units (as a string's `length`; for a value stored as
   * bytes, that of their UTF-8 decoding): a truncated or swapped value is caught without hashing it.
   */
  n: number;
}

/**
 * What is stored for a value: text, or UTF-8 bytes (a page, which then never becomes a string).
 * KV holds both as the same bytes, so either reads back as the other.
 */
export type StoredValue = string | Uint8Array<ArrayBuffer>;

/** The capabilities a cache needs from the request that uses it. */
export interface KvCacheDeps {
  /** The namespace; `undefined` (binding missing) makes every read a BYPASS. */
  kv: KVNamespace | undefined;
  /** The request's `ctx.waitUntil`: writes and background refreshes run there, off the response. */
  waitUntil: (promise: Promise<unknown>) => void;
  /** One structured line per cache incident; never given a secret, a value or a raw key input. */
  log: (record: Record<string, unknown>) => void;
  clock?: Clock;
}

/** How long a stored value is served: fresh for `ttlSeconds`, then stale for `staleSeconds`. */
export interface CacheWindow {
  ttlSeconds: number;
  staleSeconds: number;
}

export interface CacheReadOptions<T> extends CacheWindow {
  /**
   * Produces the value on a miss, or in the background (`background: true`) to refresh a stale
   * one. Only a resolved value is stored; a rejection never is.
   */
  load: (context: { background: boolean }) => Promise<T>;
  /**
   * Whether a loaded value may be stored (default: every value). A value it refuses is still
   * given to every concurrent reader of the load, and never written.
   */
  store?: (value: T) => boolean;
  /**
   * When a loaded value's oldest part was loaded (default: now). It is what the stored entry's
   * age counts from, so a value built from older parts is never stored as fresh.
   */
  loadedAt?: (value: T) => number;
  /** What to store for a loaded value. */
  serialize: (value: T) => StoredValue;
  /**
   * Rebuilds a value from the stored UTF-8 bytes (read as bytes: a large value never becomes a
   * string here); `undefined` or a throw marks the entry corrupt (BYPASS). It runs on every hit,
   * so it should be cheap (check, don't re-validate deeply).
   */
  parse: (stored: Uint8Array<ArrayBuffer>) => T | undefined;
  /**
   * Errors that belong to the request that started a shared load (its own budget or wait), not
   * to the key: a request that joined that load and sees one loads on its own instead.
   */
  retryAlone?: (error: unknown) => boolean;
  /** False: a stale entry is not served to this caller; it waits for the load (shared) instead. */
  acceptStale?: boolean;
  /**
   * A stored value older than this is not served to this caller, fresh or stale: it is loaded
   * again as on a miss (the `/stats` parameter `maxLagSeconds` on a scan).
   */
  maxAgeSeconds?: number;
  /** The caller's abort signal: aborting stops this caller's wait, never a load others share. */
  signal?: AbortSignal;
  /** Upper bound on waiting for another request's load of the same key. */
  maxCoalesceWaitMs?: number;
  /**
   * Frees what a value holds (a page's bytes) once no reader will use it: called when every
   * reader that got this value, from KV or from one shared load, has called its `release`, and
   * the value's write has been issued. A reader that never calls `release` keeps it for V8's
   * collector, as without this.
   */
  release?: (value: T) => void;
  /**
   * Settles with the caller's admission (its rate limit), which runs while KV is read: nothing is
   * served, loaded or refreshed for a caller until it resolves, and its rejection is the read's.
   */
  admission?: Promise<unknown>;
}

export interface CacheRead<T> {
  value: T;
  /** HIT fresh, STALE served past fresh, MISS loaded now, BYPASS loaded now because KV was unusable. */
  cache: CacheState;
  /** Whole seconds since the value was loaded (HIT and STALE only). */
  ageSeconds?: number;
  /** Validator of the value's stored text (hex); equal text gives an equal tag. Use for ETags. */
  entryTag: string;
  /** When the value was loaded (ms since epoch), as stored beside it (HIT only). */
  storedAt?: number;
  /**
   * Says this reader is done with the value and will not touch it again (call it at most once):
   * the value's memory is freed (`release` of the options) as soon as no other reader holds it.
   */
  release: () => void;
}

export interface CacheOffer<T> extends CacheWindow {
  serialize: (value: T) => StoredValue;
  /** When the value's oldest part was loaded (ms since epoch): its age, not the offer's. */
  loadedAt: number;
}

/** A generic stale-while-revalidate cache over one KV namespace. */
export interface KvCache {
  read<T>(key: string, options: CacheReadOptions<T>): Promise<CacheRead<T>>;
  /**
   * Stores a value produced outside `read` (a scan completed over several requests) with its
   * real age, unless it is already past the stale window or a newer entry is stored.
   */
  offer<T>(key: string, value: T, options: CacheOffer<T>): Promise<void>;
}

interface Loaded<T> {
  value: T;
  stored: StoredValue;
  tag: string;
  at: number;
}

interface InFlight {
  promise: Promise<Loaded<unknown>>;
  startedAt: number;
  /** Readers that joined this load and may still use its value. */
  claims: number;
  /** The value, once loaded and its write issued; then freed when no claim is left. */
  ready?: Loaded<unknown>;
  free?: (value: unknown) => void;
}

/** A value as one reader holds it, and how that reader says it is done with it. */
interface Held<T> {
  loaded: Loaded<T>;
  release: () => void;
}

function once(action: () => void): () => void {
  let done = false;
  return () => {
    if (done) return;
    done = true;
    action();
  };
}

function freeIfUnclaimed(entry: InFlight): void {
  if (entry.claims > 0 || !entry.ready || !entry.free) return;
  const free = entry.free;
  entry.free = undefined;
  free(entry.ready.value);
}

/** A claim on a shared load, given back once. */
function claim(entry: InFlight): () => void {
  entry.claims += 1;
  return once(() => {
    entry.claims -= 1;
    freeIfUnclaimed(entry);
  });
}

/** The release of a value only this reader holds (its own KV read or load). */
function releaseAlone<T>(value: T, options: { release?: (value: T) => void }): () => void {
  return once(() => options.release?.(value));
}

// Per isolate: concurrent requests for one key share one load (RFC 5861 §5: refreshes are tied
// to requests, and one at a time).
const inFlight = new Map<string, InFlight>();

/** The isolate's running load of `key`, unless it has run so long that its leader must be gone. */
function liveLoad(key: string, maxWaitMs: number, now: number): InFlight | undefined {
  const running = inFlight.get(key);
  return running && now - running.startedAt < maxWaitMs ? running : undefined;
}

type Lookup<T> =
  | { kind: "found"; value: T; meta: EntryMetadata }
  | { kind: "absent" }
  | { kind: "unusable"; reason: "kv-error" | "kv-timeout" | "corrupt" | "no-binding" };

/** The validator: SHA-256 of the stored UTF-8, so text and its bytes get the same tag. */
async function entryTag(stored: StoredValue): Promise<string> {
  return (await sha256Hex(stored)).slice(0, ENTRY_TAG_CHARS);
}

/** The metadata's `n` for a stored value. */
function storedLength(stored: StoredValue): number {
  return typeof stored === "string" ? stored.length : utf16Length(stored);
}

function isMetadata(value: unknown): value is EntryMetadata {
  if (typeof value !== "object" || value === null) return false;
  const m = value as Record<string, unknown>;
  return (
    m.v === METADATA_VERSION &&
    typeof m.at === "number" &&
    Number.isFinite(m.at) &&
    typeof m.tag === "string" &&
    /^[0-9a-f]{32}$/.test(m.tag) &&
    typeof m.n === "number" &&
    Number.isSafeInteger(m.n)
  );
}

/** What a cache log line may say about an error: its class and machine code, never its message. */
function errorName(error: unknown): string {
  if (!(error instanceof Error)) return typeof error;
  const code = (error as { code?: unknown }).code;
  return typeof code === "string" ? `${error.name}:${code}` : error.name;
}

/** Settles with nothing when `promise` settles, so whoever holds it holds no value. */
function settled(promise: Promise<unknown>): Promise<void> {
  return promise.then(
    () => undefined,
    () => undefined,
  );
}

/** Rejects with `signal.reason` when the caller gives up; never settles otherwise. */
function abandoned(signal: AbortSignal | undefined): Promise<never> | undefined {
  if (!signal) return undefined;
  return new Promise<never>((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    else signal.addEventListener("abort", () => reject(signal.reason), { once: true });
  });
}

/** Whether a value `ageMs` old may be served to the reader of `options` at all. */
export function withinMaxAge(options: { maxAgeSeconds?: number }, ageMs: number): boolean {
  return options.maxAgeSeconds === undefined || ageMs <= options.maxAgeSeconds * 1000;
}

/**
 * A stale-while-revalidate cache in Workers KV: values are fresh for `ttlSeconds` after they were
 * loaded, then served stale for `staleSeconds` while one background load (in `waitUntil`)
 * replaces them; past that they are loaded again. Freshness comes from the load time stored in
 * the entry's metadata, not from KV expiry (which only collects garbage). KV never fails a
 * read: a throwing, slow (> KV_READ_TIMEOUT_MS) or corrupt read loads the value instead (BYPASS),
 * and a failing write is logged and dropped. Concurrent loads of one key in an isolate are
 * coalesced; waiters get the same value or the same error.
 *
 * A hit costs one `getWithMetadata` and `parse`: the validator was computed at write time.
 */
export function createKvCache(deps: KvCacheDeps): KvCache {
  const { kv, waitUntil, log } = deps;
  const clock = deps.clock ?? systemClock;

  async function lookup<T>(
    key: string,
    parse: (stored: Uint8Array<ArrayBuffer>) => T | undefined,
  ): Promise<Lookup<T>> {
    if (!kv) return { kind: "unusable", reason: "no-binding" };
    let read: Promise<KVNamespaceGetWithMetadataResult<ArrayBuffer, unknown>>;
    try {
      read = kv.getWithMetadata<unknown>(key, { type: "arrayBuffer" });
    } catch (error) {
      read = Promise.reject(error);
    }
    // A read that loses the race may still reject later: settledWithin has handled it.
    const settled = await settledWithin(read, KV_READ_TIMEOUT_MS);
    if (settled.kind === "failed") {
      log({ level: "warn", msg: "cache read failed", key, error: errorName(settled.error) });
      return { kind: "unusable", reason: "kv-error" };
    }
    if (settled.kind === "late") {
      log({ level: "warn", msg: "cache read timed out", key, timeoutMs: KV_READ_TIMEOUT_MS });
      return { kind: "unusable", reason: "kv-timeout" };
    }
    const raw = settled.value;
    if (typeof raw !== "object" || raw === null) return corrupt(key);
    if (raw.value === null || raw.value === undefined) return { kind: "absent" };
    const { value: buffer, metadata } = raw;
    if (!(buffer instanceof ArrayBuffer) || !isMetadata(metadata)) return corrupt(key);
    const stored = new Uint8Array(buffer);
    if (utf16Length(stored) !== metadata.n) return corrupt(key);
    let value: T | undefined;
    try {
      value = parse(stored);
    } catch {
      value = undefined;
    }
    if (value === undefined) return corrupt(key);
    return { kind: "found", value, meta: metadata };
  }

  function corrupt(key: string): Lookup<never> {
    log({ level: "warn", msg: "cache entry corrupt", key });
    return { kind: "unusable", reason: "corrupt" };
  }

  /**
   * Stores the value once the response that loaded it has gone out: the put runs in `waitUntil`
   * after a timer turn, so no caller waits for its own write (locally a put is KV's work on the
   * same cores; in production an I/O no reader needs). Resolves when KV has taken its copy.
   */
  function write(key: string, loaded: Loaded<unknown>, window: CacheWindow): Promise<void> {
    if (!kv) return Promise.resolve();
    const namespace = kv;
    let issued: () => void = () => undefined;
    const taken = new Promise<void>((resolve) => {
      issued = resolve;
    });
    const later = new Promise((resolve) => setTimeout(resolve, 0)).then(() => {
      const metadata: EntryMetadata = {
        v: METADATA_VERSION,
        at: loaded.at,
        tag: loaded.tag,
        n: storedLength(loaded.stored),
      };
      const expirationTtl = Math.max(KV_MIN_EXPIRATION_TTL_SECONDS, window.ttlSeconds + window.staleSeconds);
      let put: Promise<void>;
      try {
        put = namespace.put(key, loaded.stored, { expirationTtl, metadata });
      } catch (error) {
        put = Promise.reject(error);
      } finally {
        issued();
      }
      // KV allows one write per second per key; a lost write only costs a later miss.
      return put.catch((error: unknown) => {
        log({ level: "warn", msg: "cache write failed", key, error: errorName(error) });
      });
    });
    waitUntil(later);
    return taken;
  }

  /**
   * Starts (or joins) the isolate's one load of `key`; the stored entry is replaced only on
   * success. Each caller holds a claim on the shared value until it releases it.
   */
  function loadShared<T>(
    key: string,
    options: CacheReadOptions<T>,
    store: boolean,
    background: boolean,
  ): Promise<Held<T>> {
    const maxWait = options.maxCoalesceWaitMs ?? DEFAULT_MAX_COALESCE_WAIT_MS;
    const running = liveLoad(key, maxWait, clock.now());
    const ownLoad = async (): Promise<Held<T>> => {
      const loaded = await loadAlone(options, background);
      return { loaded, release: releaseAlone(loaded.value, options) };
    };
    if (running) {
      const release = claim(running);
      const shared = (running.promise as Promise<Loaded<T>>).then((loaded) => ({ loaded, release }));
      const joined = withWaitBound(shared, maxWait, () => {
        release();
        return ownLoad();
      });
      const retryAlone = options.retryAlone;
      return joined.catch((error: unknown) => {
        release();
        if (retryAlone?.(error)) return ownLoad();
        throw error;
      });
    }
    const promise = loadAlone(options, background);
    const entry: InFlight = {
      promise,
      startedAt: clock.now(),
      claims: 0,
      ...(options.release ? { free: options.release as (value: unknown) => void } : {}),
    };
    const release = claim(entry);
    inFlight.set(key, entry);
    // Others may be waiting on this load: it must outlive its leader when the leader's client
    // goes away, and workerd keeps a request's I/O running after that only for waitUntil work.
    // waitUntil holds what it is given until the request ends, so it gets a promise of nothing
    // (a scan's pages must not stay reachable until its request ends).
    waitUntil(settled(promise));
    promise.then(
      async (loaded) => {
        if (store && (options.store?.(loaded.value) ?? true)) await write(key, loaded, options);
        // KV has taken its copy at `put`; from here only the readers' claims keep the value.
        entry.ready = loaded;
        freeIfUnclaimed(entry);
      },
      () => undefined,
    );
    // Settled either way: the next request for this key reads KV (or loads) afresh.
    promise
      .finally(() => {
        if (inFlight.get(key) === entry) inFlight.delete(key);
      })
      .catch(() => undefined);
    return promise.then(
      (loaded) => ({ loaded, release }),
      (error: unknown) => {
        release();
        throw error;
      },
    );
  }

  async function loadAlone<T>(options: CacheReadOptions<T>, background: boolean): Promise<Loaded<T>> {
    const value = await options.load({ background });
    const stored = options.serialize(value);
    const now = clock.now();
    return {
      value,
      stored,
      tag: await entryTag(stored),
      at: Math.min(now, options.loadedAt?.(value) ?? now),
    };
  }

  async function withWaitBound<T>(
    shared: Promise<Held<T>>,
    maxWait: number,
    fallback: () => Promise<Held<T>>,
  ): Promise<Held<T>> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<"late">((resolve) => {
      timer = setTimeout(() => resolve("late"), maxWait);
    });
    try {
      const first = await Promise.race([shared, late]);
      return first === "late" ? await fallback() : first;
    } finally {
      clearTimeout(timer);
    }
  }

  async function waitFor<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
    const gaveUp = abandoned(signal);
    return gaveUp ? Promise.race([promise, gaveUp]) : promise;
  }

  return {
    async offer<T>(key: string, value: T, options: CacheOffer<T>): Promise<void> {
      const now = clock.now();
      if (now - options.loadedAt >= (options.ttlSeconds + options.staleSeconds) * 1000) return;
      const current = await lookup(key, () => true);
      if (current.kind === "unusable" && current.reason !== "corrupt") return;
      if (current.kind === "found" && current.meta.at >= options.loadedAt) return;
      const stored = options.serialize(value);
      await write(
        key,
        { value, stored, tag: await entryTag(stored), at: Math.min(options.loadedAt, now) },
        options,
      );
    },

    async read<T>(key: string, options: CacheReadOptions<T>): Promise<CacheRead<T>> {
      options.signal?.throwIfAborted();
      const reading = lookup(key, options.parse);
      const found = options.admission ? (await Promise.all([reading, options.admission]))[0] : await reading;
      if (found.kind === "found") {
        const ageMs = Math.max(0, clock.now() - found.meta.at);
        const ageSeconds = Math.floor(ageMs / 1000);
        // Read from KV for this reader alone: it is the value's only holder.
        const release = releaseAlone(found.value, options);
        const servable = withinMaxAge(options, ageMs);
        if (servable && ageMs < options.ttlSeconds * 1000) {
          return {
            value: found.value,
            cache: "HIT",
            ageSeconds,
            entryTag: found.meta.tag,
            storedAt: found.meta.at,
            release,
          };
        }
        if (
          servable &&
          options.acceptStale !== false &&
          ageMs < (options.ttlSeconds + options.staleSeconds) * 1000
        ) {
          if (!liveLoad(key, options.maxCoalesceWaitMs ?? DEFAULT_MAX_COALESCE_WAIT_MS, clock.now())) {
            // A refresh is for no reader: its value goes to KV and is let go.
            const refresh = loadShared(key, options, true, true).then(
              (held) => held.release(),
              (error: unknown) => {
                log({ level: "warn", msg: "cache refresh failed", key, error: errorName(error) });
              },
            );
            waitUntil(refresh);
          }
          return { value: found.value, cache: "STALE", ageSeconds, entryTag: found.meta.tag, release };
        }
        release();
      }
      // Write on a plain miss, and to repair a corrupt entry; a failing or slow KV gets no write.
      const store = found.kind !== "unusable" || found.reason === "corrupt";
      const holding = loadShared(key, options, store, false);
      let held: Held<T>;
      try {
        held = await waitFor(holding, options.signal);
      } catch (error) {
        // The caller gave up waiting: its claim goes back whenever the value comes.
        holding.then(
          (late) => late.release(),
          () => undefined,
        );
        throw error;
      }
      return {
        value: held.loaded.value,
        cache: found.kind === "unusable" ? "BYPASS" : "MISS",
        entryTag: held.loaded.tag,
        release: held.release,
      };
    },
  };
}
