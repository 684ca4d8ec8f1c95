// Settings that wrangler.toml cannot declare (secrets) or leaves unset (optional vars).
// `wrangler types` generates the rest into worker-configuration.d.ts. Every value is parsed
// once by src/app/config.ts; the README's configuration table documents each one.
interface Env {
  /** Extend API key (secret); sent upstream as `Authorization: Bearer …`, never to callers. */
  EXTEND_API_KEY?: string;
  /** Extend workspace id, sent as `x-extend-workspace-id` when set. */
  EXTEND_WORKSPACE_ID?: string;
  /** Per-attempt upstream timeout in milliseconds. */
  UPSTREAM_TIMEOUT_MS?: string;
  /** Overall deadline for one upstream page, all attempts and back-off included. */
  UPSTREAM_DEADLINE_MS?: string;
  /** Upstream calls per second one /stats scan may make. */
  UPSTREAM_MAX_RPS?: string;
  /** Seconds a cached page is fresh. */
  CACHE_TTL_SECONDS?: string;
  /** Seconds past fresh a cached page may still be served (stale-while-revalidate, stale-if-error). */
  CACHE_STALE_SECONDS?: string;
  /** Upstream pages one /stats request may fetch before it returns a resume token. */
  STATS_MAX_PAGES?: string;
  /** Seconds a /stats result is fresh. */
  STATS_TTL_SECONDS?: string;
  /** Secret (at least 32 characters) that signs /stats resume tokens and keys caller ids in logs; EXTEND_API_KEY serves when unset. */
  STATS_SIGNING_KEY?: string;
  /** Comma-separated static bearer tokens for server-to-server callers (secret), each at least 32 characters. */
  CLIENT_TOKENS?: string;
  /** JWKS URL for caller JWTs (an IdP or Cloudflare Access certs endpoint); https unless loopback. */
  JWT_JWKS_URL?: string;
  /** Required `iss` of caller JWTs. */
  JWT_ISSUER?: string;
  /** Required `aud` of caller JWTs (comma-separated to accept several). */
  JWT_AUDIENCE?: string;
  /** "true" serves unauthenticated callers. */
  ALLOW_ANONYMOUS?: string;
  /** Comma-separated exact origins allowed by CORS; https unless loopback. */
  ALLOWED_ORIGINS?: string;
  /** Comma-separated run fields or dotted paths (`workflow.createdBy`, `files.name`) removed from list responses. */
  REDACT_FIELDS?: string;
  /** Durable Object location hint for the tenant gateway (wnam, enam, weur, …, or none); guessed from EXTEND_API_BASE_URL when unset. */
  GATEWAY_LOCATION_HINT?: string;
  /** "on" (default) keeps a run index in the tenant's Durable Object for /stats; "off" scans. */
  RUN_INDEX?: string;
  /** Seconds between head walks of the run index while it is in use. */
  INDEX_SYNC_SECONDS?: string;
  /** Seconds between reconciles of the run index (deleted runs). */
  INDEX_RECONCILE_SECONDS?: string;
  /** Seconds each head walk reads below the last one (clock skew, late commits). */
  INDEX_LOOKBACK_SECONDS?: string;
  /** Extend webhook signing secrets (`wss_…`), comma-separated during a rotation (secret). */
  EXTEND_WEBHOOK_SECRET?: string;
  /** RATE_LIMITER's `simple.limit` in wrangler.toml (120); 0 makes every request wait for its verdict. */
  RATE_LIMITER_LIMIT?: string;
  /** STATS_RATE_LIMITER's `simple.limit` in wrangler.toml (10); 0 makes every request wait for its verdict. */
  STATS_RATE_LIMITER_LIMIT?: string;
  /** AUTH_RATE_LIMITER's `simple.limit` in wrangler.toml (1200); 0 makes every request wait for its verdict. */
  AUTH_RATE_LIMITER_LIMIT?: string;
}
