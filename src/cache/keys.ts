import type { Config } from "../app/config.ts";
import { type CanonicalListQuery, UPSTREAM_PARAM_ORDER } from "../extend/schemas.ts";
import { sha256Hex } from "../lib/digest.ts";
import type { StatsFilters } from "../stats/filters.ts";

/** Bumped when the key layout or the stored format changes, so old entries are simply never read. */
export const CACHE_KEY_VERSION = "v1";
/** KV's limit on key length, in bytes. */
export const MAX_KV_KEY_BYTES = 512;

// Domain separation: these digests are never comparable with another use of SHA-256 of the key.
const UPSTREAM_KEY_LABEL = "extend-runs-proxy/cache/upstream-key/v1\u0000";
const TENANT_LABEL = "extend-runs-proxy/cache/tenant/v1\u0000";
const CURSOR_LABEL = "extend-runs-proxy/cache/cursor/v1\u0000";
const QUERY_LABEL = "extend-runs-proxy/cache/query/v1\u0000";
const STATS_LABEL = "extend-runs-proxy/cache/stats/v1\u0000";

const scopes = new WeakMap<Config, Promise<string>>();

/**
 * The part of every cache key that names whose data it is: the API version in clear, then a
 * SHA-256 fingerprint (128 bits) of the upstream origin, the workspace id and a labelled digest of
 * the upstream key. A new key, workspace, region or API version never reads another's entries;
 * the key itself is not recoverable from it. Computed once per parsed configuration.
 */
export function tenantScope(config: Config): Promise<string> {
  let scope = scopes.get(config);
  if (!scope) {
    scope = (async () => {
      const keyDigest = await sha256Hex(UPSTREAM_KEY_LABEL + config.extendApiKey);
      const tenant = JSON.stringify([
        config.extendApiBaseUrl.origin + config.extendApiBaseUrl.pathname,
        config.extendWorkspaceId ?? null,
        keyDigest,
      ]);
      return `${config.extendApiVersion}:${(await sha256Hex(TENANT_LABEL + tenant)).slice(0, 32)}`;
    })();
    scopes.set(config, scope);
  }
  return scope;
}

/**
 * The canonical text of a validated query: parameters in one fixed order, defaults already
 * applied by canonicalListQuery, the cursor replaced by its SHA-256. Equal queries give equal
 * text whatever order or defaults the caller used; distinct ones give distinct text.
 */
export async function canonicalQueryText(query: CanonicalListQuery): Promise<string> {
  const pairs: [string, string | number][] = [];
  for (const name of UPSTREAM_PARAM_ORDER) {
    const value = query[name];
    if (value === undefined) continue;
    pairs.push(
      name === "nextPageToken" ? [name, `sha256:${await sha256Hex(CURSOR_LABEL + value)}`] : [name, value],
    );
  }
  return JSON.stringify(pairs);
}

/**
 * The KV key of one list page: `v1:page:<api version>:<tenant>:<query digest>`, about 120 bytes
 * whatever the query, and free of the upstream key and of raw cursors and filter values.
 */
export async function pageCacheKey(config: Config, query: CanonicalListQuery): Promise<string> {
  const [scope, text] = await Promise.all([tenantScope(config), canonicalQueryText(query)]);
  return `${CACHE_KEY_VERSION}:page:${scope}:${await sha256Hex(QUERY_LABEL + text)}`;
}

/** `v1:stats:<api version>:<tenant>:<filters digest>`: the page cache's tenant scope, no filter text. */
export async function statsCacheKey(config: Config, filters: StatsFilters): Promise<string> {
  const digest = await sha256Hex(STATS_LABEL + JSON.stringify(filters));
  return `${CACHE_KEY_VERSION}:stats:${await tenantScope(config)}:${digest.slice(0, 32)}`;
}
