import { readAll } from "../lib/bytes.ts";
import { type Clock, systemClock } from "../lib/clock.ts";
/** A public signing key from a JWKS document. */
export type SigningKey = JsonWebKey & { kid: string };

/** Keys are refreshed this often, even when every kid is known (rotation with overlap). */
export const JWKS_TTL_MS = 10 * 60_000;
/** An unknown kid triggers a refetch at most this often per key set and isolate. */
export const JWKS_UNKNOWN_KID_REFETCH_MS = 30_000;
/** After a failed fetch, no new attempt for this long: an IdP outage must not cost a fetch per request. */
export const JWKS_FAILURE_BACKOFF_MS = 10_000;
/** Expired keys keep working this long while the key set cannot be fetched. */
export const JWKS_MAX_STALE_MS = 24 * 60 * 60_000;
export const JWKS_FETCH_TIMEOUT_MS = 3_000;
/** A key set is a few KB; anything far larger is not one. */
export const JWKS_MAX_BYTES = 256 * 1024;

/** The key set could not be fetched and no usable copy is cached. */
export class JwksUnavailableError extends Error {
  constructor() {
    super("The JWT key set could not be fetched.");
    this.name = "JwksUnavailableError";
  }
}

interface KeySetState {
  keys: SigningKey[];
  /** When the current keys were fetched; 0 before the first successful fetch. */
  fetchedAt: number;
  lastFailedAt: number;
  lastKidRefetchAt: number;
  pending: Promise<void> | undefined;
}

export interface KeyLookup {
  /** The signing key with this kid, or undefined when the set (after any allowed refetch) lacks it. */
  key(kid: string): Promise<SigningKey | undefined>;
}

const states = new Map<string, KeySetState>();

function usableKey(value: unknown): value is SigningKey {
  if (typeof value !== "object" || value === null) return false;
  const key = value as { kid?: unknown; kty?: unknown; use?: unknown };
  return (
    typeof key.kid === "string" &&
    key.kid !== "" &&
    typeof key.kty === "string" &&
    key.kty !== "oct" &&
    (key.use === undefined || key.use === "sig")
  );
}

async function fetchKeys(url: URL): Promise<SigningKey[]> {
  const response = await fetch(url.toString(), {
    headers: { accept: "application/json" },
    redirect: "manual",
    signal: AbortSignal.timeout(JWKS_FETCH_TIMEOUT_MS),
  });
  if (response.status !== 200) {
    await response.body?.cancel().catch(() => undefined);
    throw new JwksUnavailableError();
  }
  const declared = Number(response.headers.get("content-length") ?? "0");
  if (!response.body || declared > JWKS_MAX_BYTES) {
    await response.body?.cancel().catch(() => undefined);
    throw new JwksUnavailableError();
  }
  // Read up to the limit only: an endless or huge answer must not fill the isolate's memory.
  const bytes = await readAll(response.body, { sizeHint: 0, maxBytes: JWKS_MAX_BYTES }).catch(() => {
    throw new JwksUnavailableError();
  });
  const body: unknown = JSON.parse(new TextDecoder().decode(bytes));
  const keys = typeof body === "object" && body !== null ? (body as { keys?: unknown }).keys : undefined;
  if (!Array.isArray(keys)) throw new JwksUnavailableError();
  // Symmetric ("oct") keys are dropped: a public key set must never yield an HMAC secret.
  return keys.filter(usableKey);
}

function refresh(url: URL, state: KeySetState, clock: Clock): Promise<void> {
  if (state.pending) return state.pending;
  state.pending = fetchKeys(url)
    .then((keys) => {
      state.keys = keys;
      state.fetchedAt = clock.now();
    })
    .catch(() => {
      state.lastFailedAt = clock.now();
    })
    .finally(() => {
      state.pending = undefined;
    });
  return state.pending;
}

/**
 * The key set at `url`, cached per isolate: fetched on first use, refreshed after JWKS_TTL_MS,
 * refetched for an unknown kid at most once per JWKS_UNKNOWN_KID_REFETCH_MS, and never retried
 * sooner than JWKS_FAILURE_BACKOFF_MS after a failure. Concurrent requests share one fetch.
 * Throws JwksUnavailableError when no usable keys are cached and the fetch failed.
 */
export function jwksKeys(url: URL, clock: Clock = systemClock): KeyLookup {
  const id = url.toString();
  let state = states.get(id);
  if (!state) {
    state = {
      keys: [],
      fetchedAt: 0,
      lastFailedAt: 0,
      lastKidRefetchAt: 0,
      pending: undefined,
    };
    states.set(id, state);
  }
  const current = state;

  const inFailureBackoff = (now: number) =>
    current.lastFailedAt > current.fetchedAt && now - current.lastFailedAt < JWKS_FAILURE_BACKOFF_MS;

  return {
    async key(kid) {
      let now = clock.now();
      let fetchedNow = false;
      if (current.pending) {
        await current.pending;
        fetchedNow = true;
      } else if (now - current.fetchedAt >= JWKS_TTL_MS && !inFailureBackoff(now)) {
        await refresh(url, current, clock);
        fetchedNow = true;
      }
      now = clock.now();
      if (current.fetchedAt === 0 || now - current.fetchedAt >= JWKS_MAX_STALE_MS) {
        throw new JwksUnavailableError();
      }
      const known = current.keys.find((k) => k.kid === kid);
      if (known) return known;
      if (
        fetchedNow ||
        inFailureBackoff(now) ||
        now - current.lastKidRefetchAt < JWKS_UNKNOWN_KID_REFETCH_MS
      ) {
        return undefined;
      }
      current.lastKidRefetchAt = now;
      await refresh(url, current, clock);
      return current.keys.find((k) => k.kid === kid);
    },
  };
}
