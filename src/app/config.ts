import { z } from "zod";
import { RATE_LIMITER_DEFAULTS } from "../security/limits.ts";
import { normaliseRedactPaths } from "../security/redact.ts";
import { ApiError } from "./errors.ts";

/** Default upstream origin (Extend US). EU: https://api.eu1.extend.ai, US2: https://api.us2.extend.app. */
export const DEFAULT_EXTEND_API_BASE_URL = "https://api.extend.ai";
/** The API version whose shapes this proxy speaks (Extend docs 2026-02-09). */
export const DEFAULT_EXTEND_API_VERSION = "2026-02-09";

/**
 * Secrets the operator makes up (client tokens, the stats signing key) are at least this long:
 * 32 random characters cannot be guessed online or offline. `openssl rand -base64 32` makes one.
 */
export const MIN_OPERATOR_SECRET_LENGTH = 32;
/** Every secret, the ones Extend issues included, is at least this long, so the log scrubber covers it. */
export const MIN_SECRET_LENGTH = 8;
const GENERATE_HINT = "generate one with: openssl rand -base64 32";

const optionalString = z
  .string()
  .trim()
  .transform((s) => (s === "" ? undefined : s))
  .optional();

/** A whole number given as a var (wrangler passes strings; toml may give numbers). */
function intSetting(defaultValue: number, min: number, max: number) {
  return z
    .union([z.string(), z.number()])
    .optional()
    .transform((value, ctx) => {
      if (value === undefined || value === "") return defaultValue;
      const text = String(value).trim();
      const n = /^(0|[1-9]\d*)$/.test(text) ? Number(text) : Number.NaN;
      if (!Number.isSafeInteger(n) || n < min || n > max) {
        ctx.addIssue({ code: "custom", message: `must be a whole number from ${min} to ${max}` });
        return z.NEVER;
      }
      return n;
    });
}

const booleanSetting = z
  .union([z.string(), z.boolean()])
  .optional()
  .transform((value, ctx) => {
    if (value === undefined || value === "") return false;
    if (value === true || value === "true") return true;
    if (value === false || value === "false") return false;
    ctx.addIssue({ code: "custom", message: 'must be "true" or "false"' });
    return z.NEVER;
  });

const listSetting = z
  .string()
  .optional()
  .transform((value) =>
    (value ?? "")
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s !== ""),
  );

/** Hosts that never leave the machine; only they may be reached without TLS. */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.toLowerCase();
  return host === "localhost" || host === "[::1]" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** Whether a parsed URL is https, or http to a loopback host (local development and the fakes). */
function secureTransport(url: URL): boolean {
  return url.protocol === "https:" || (url.protocol === "http:" && isLoopbackHost(url.hostname));
}

const HTTPS_MESSAGE =
  "must be an https URL without credentials (plain http only for a loopback host: 127.0.0.0/8, ::1 or localhost)";

const httpsUrl = z
  .string()
  .trim()
  .optional()
  .transform((value, ctx) => {
    if (value === undefined || value === "") return undefined;
    try {
      const url = new URL(value);
      if (secureTransport(url) && !url.username && !url.password) return url;
    } catch {
      // reported below
    }
    ctx.addIssue({ code: "custom", message: HTTPS_MESSAGE });
    return z.NEVER;
  });

const originList = listSetting.transform((origins, ctx) => {
  for (const origin of origins) {
    let ok = false;
    try {
      const url = new URL(origin);
      // A page served over plain http can be rewritten on the way; it gets no data unless local.
      ok = url.origin === origin && secureTransport(url);
    } catch {
      ok = false;
    }
    if (!ok) {
      ctx.addIssue({
        code: "custom",
        message:
          "must list exact https origins such as https://app.example.com (http only for localhost, 127.0.0.0/8 or ::1)",
      });
      return z.NEVER;
    }
  }
  return origins;
});

/** Where the tenant's gateway object may be placed (Durable Object location hints), or "none". */
const LOCATION_HINTS = [
  "wnam",
  "enam",
  "sam",
  "weur",
  "eeur",
  "apac",
  "apac-ne",
  "apac-se",
  "oc",
  "afr",
  "me",
  "none",
] as const satisfies readonly (DurableObjectLocationHint | "none")[];

// A union with "" would report its own "Invalid input" instead of naming the accepted hints.
const locationHint = optionalString.transform((value, ctx) => {
  if (value === undefined) return undefined;
  const hint = LOCATION_HINTS.find((known) => known === value);
  if (hint === undefined) {
    ctx.addIssue({ code: "custom", message: `must be one of ${LOCATION_HINTS.join(", ")}` });
    return z.NEVER;
  }
  return hint;
});

const clientTokens = listSetting.superRefine((tokens, ctx) => {
  if (tokens.some((token) => !/^[\x21-\x7e]+$/.test(token))) {
    // A token with a space or non-ASCII character could never arrive in an Authorization header.
    ctx.addIssue({ code: "custom", message: "must list tokens of printable ASCII without spaces" });
  } else if (tokens.some((token) => token.length < MIN_OPERATOR_SECRET_LENGTH)) {
    ctx.addIssue({
      code: "custom",
      message: `must list tokens of at least ${MIN_OPERATOR_SECRET_LENGTH} characters each (${GENERATE_HINT})`,
    });
  }
});

const signingKey = optionalString.refine(
  (value) => value === undefined || value.length >= MIN_OPERATOR_SECRET_LENGTH,
  { message: `must be at least ${MIN_OPERATOR_SECRET_LENGTH} characters (${GENERATE_HINT})` },
);

const redactPaths = listSetting.transform((paths, ctx) => {
  const normalised = normaliseRedactPaths(paths);
  if (normalised === undefined) {
    ctx.addIssue({
      code: "custom",
      message:
        "must list run fields or dotted paths into them, such as reviewedByUser, workflow.createdBy or files.name",
    });
    return z.NEVER;
  }
  return normalised;
});

const onOffSetting = z
  .union([z.string(), z.boolean()])
  .optional()
  .transform((value, ctx) => {
    if (value === undefined || value === "" || value === "on" || value === true) return true;
    if (value === "off" || value === false) return false;
    ctx.addIssue({ code: "custom", message: 'must be "on" or "off"' });
    return z.NEVER;
  });

// Each signing secret is used as issued (`wss_…`, prefix included), as the SDK does.
const webhookSecrets = listSetting.superRefine((secrets, ctx) => {
  if (!secrets.every((s) => /^[\x21-\x7e]+$/.test(s))) {
    ctx.addIssue({
      code: "custom",
      message: "must list printable ASCII secrets without spaces, comma-separated",
    });
  } else if (secrets.some((s) => s.length < MIN_SECRET_LENGTH)) {
    // Extend's own are far longer; a shorter one could not be scrubbed from logs.
    ctx.addIssue({
      code: "custom",
      message: `must list secrets of at least ${MIN_SECRET_LENGTH} characters each (Extend's wss_… signing secrets)`,
    });
  }
});

const RawConfig = z.object({
  EXTEND_API_KEY: z
    .string({ error: "is required (a secret: wrangler secret put EXTEND_API_KEY)" })
    .trim()
    .min(1, { error: "is required (a secret: wrangler secret put EXTEND_API_KEY)" })
    .min(MIN_SECRET_LENGTH, { error: `must be at least ${MIN_SECRET_LENGTH} characters (an Extend API key)` })
    // Anything else cannot travel in an Authorization header; fail here, not on every upstream call.
    .regex(/^[\x21-\x7e]+$/, { error: "must be printable ASCII without spaces" }),
  EXTEND_API_BASE_URL: httpsUrl,
  EXTEND_API_VERSION: z
    .string()
    .trim()
    .optional()
    .refine((v) => v === undefined || v === "" || /^\d{4}-\d{2}-\d{2}$/.test(v), {
      message: "must be a date such as 2026-02-09",
    }),
  EXTEND_WORKSPACE_ID: optionalString.refine((v) => v === undefined || /^[\x21-\x7e]{1,255}$/.test(v), {
    message: "must be a workspace id such as ws_123",
  }),
  UPSTREAM_TIMEOUT_MS: intSetting(8_000, 100, 120_000),
  UPSTREAM_DEADLINE_MS: intSetting(20_000, 100, 300_000),
  UPSTREAM_MAX_RPS: intSetting(8, 1, 1_000),
  CACHE_TTL_SECONDS: intSetting(60, 60, 86_400),
  CACHE_STALE_SECONDS: intSetting(300, 0, 604_800),
  STATS_MAX_PAGES: intSetting(40, 1, 10_000),
  STATS_TTL_SECONDS: intSetting(60, 60, 86_400),
  STATS_SIGNING_KEY: signingKey,
  CLIENT_TOKENS: clientTokens,
  JWT_JWKS_URL: httpsUrl,
  JWT_ISSUER: optionalString,
  JWT_AUDIENCE: listSetting,
  ALLOW_ANONYMOUS: booleanSetting,
  ALLOWED_ORIGINS: originList,
  REDACT_FIELDS: redactPaths,
  GATEWAY_LOCATION_HINT: locationHint,
  RUN_INDEX: onOffSetting,
  INDEX_SYNC_SECONDS: intSetting(30, 5, 3_600),
  INDEX_RECONCILE_SECONDS: intSetting(86_400, 30, 2_592_000),
  INDEX_LOOKBACK_SECONDS: intSetting(180, 0, 3_600),
  EXTEND_WEBHOOK_SECRET: webhookSecrets,
  RATE_LIMITER_LIMIT: intSetting(RATE_LIMITER_DEFAULTS.RATE_LIMITER, 0, 10_000_000),
  STATS_RATE_LIMITER_LIMIT: intSetting(RATE_LIMITER_DEFAULTS.STATS_RATE_LIMITER, 0, 10_000_000),
  AUTH_RATE_LIMITER_LIMIT: intSetting(RATE_LIMITER_DEFAULTS.AUTH_RATE_LIMITER, 0, 10_000_000),
});

/** Every setting, parsed and defaulted. Built once per isolate from the Worker's env. */
export interface Config {
  readonly extendApiKey: string;
  readonly extendApiBaseUrl: URL;
  readonly extendApiVersion: string;
  readonly extendWorkspaceId: string | undefined;
  readonly upstreamTimeoutMs: number;
  readonly upstreamDeadlineMs: number;
  readonly upstreamMaxRps: number;
  readonly cacheTtlSeconds: number;
  readonly cacheStaleSeconds: number;
  readonly statsMaxPages: number;
  readonly statsTtlSeconds: number;
  readonly statsSigningKey: string | undefined;
  readonly clientTokens: readonly string[];
  readonly jwt:
    | { readonly jwksUrl: URL; readonly issuer: string; readonly audience: readonly string[] }
    | undefined;
  readonly allowAnonymous: boolean;
  readonly allowedOrigins: readonly string[];
  /** Normalised REDACT_FIELDS: distinct dotted paths, sorted, none inside another. */
  readonly redactFields: readonly string[];
  /** Placement of the tenant's gateway object; undefined: guessed from the base URL's region. */
  readonly gatewayLocationHint: DurableObjectLocationHint | "none" | undefined;
  /** The run index in the tenant's Durable Object (RUN_INDEX=on). */
  readonly runIndex: boolean;
  readonly indexSyncSeconds: number;
  readonly indexReconcileSeconds: number;
  readonly indexLookbackSeconds: number;
  /** Signing secrets accepted on POST /webhooks/extend; none means the route does not exist. */
  readonly webhookSecrets: readonly string[];
  /**
   * Each Rate Limiting binding's limit a period, as the *_LIMIT settings give it: below it, an
   * isolate that has seen no refusal admits without waiting for the binding (0: always wait).
   */
  readonly limiterLimits: { readonly [binding in keyof typeof RATE_LIMITER_DEFAULTS]: number };
}

const parsed = new WeakMap<object, Config>();

/**
 * Parses the Worker's settings once per env object. A missing or malformed setting throws an
 * ApiError (500, CONFIG_INVALID) naming the setting; the value itself is never echoed.
 */
export function loadConfig(env: Env): Config {
  const cached = parsed.get(env);
  if (cached) return cached;
  const result = RawConfig.safeParse({ ...env });
  if (!result.success) {
    const issue = result.error.issues[0];
    const setting = String(issue?.path[0] ?? "configuration");
    throw new ApiError(
      "CONFIG_INVALID",
      `The proxy is misconfigured: setting ${setting} ${issue?.message ?? "is invalid"}.`,
      {
        details: [{ field: setting, message: issue?.message ?? "is invalid" }],
      },
    );
  }
  const raw = result.data;
  const jwtParts = [
    raw.JWT_JWKS_URL,
    raw.JWT_ISSUER,
    raw.JWT_AUDIENCE.length > 0 ? raw.JWT_AUDIENCE : undefined,
  ];
  const jwtSet = jwtParts.filter((p) => p !== undefined).length;
  if (jwtSet > 0 && jwtSet < 3) {
    const missing = ["JWT_JWKS_URL", "JWT_ISSUER", "JWT_AUDIENCE"].filter(
      (_, i) => jwtParts[i] === undefined,
    );
    throw new ApiError(
      "CONFIG_INVALID",
      `The proxy is misconfigured: JWT authentication needs ${missing.join(" and ")} as well.`,
      { details: missing.map((field) => ({ field, message: "is required when any JWT_* setting is set" })) },
    );
  }
  const baseUrl = raw.EXTEND_API_BASE_URL ?? new URL(DEFAULT_EXTEND_API_BASE_URL);
  const config: Config = {
    extendApiKey: raw.EXTEND_API_KEY,
    extendApiBaseUrl: baseUrl,
    extendApiVersion: raw.EXTEND_API_VERSION || DEFAULT_EXTEND_API_VERSION,
    extendWorkspaceId: raw.EXTEND_WORKSPACE_ID,
    upstreamTimeoutMs: raw.UPSTREAM_TIMEOUT_MS,
    upstreamDeadlineMs: Math.max(raw.UPSTREAM_DEADLINE_MS, raw.UPSTREAM_TIMEOUT_MS),
    upstreamMaxRps: raw.UPSTREAM_MAX_RPS,
    cacheTtlSeconds: raw.CACHE_TTL_SECONDS,
    cacheStaleSeconds: raw.CACHE_STALE_SECONDS,
    statsMaxPages: raw.STATS_MAX_PAGES,
    statsTtlSeconds: raw.STATS_TTL_SECONDS,
    statsSigningKey: raw.STATS_SIGNING_KEY,
    clientTokens: raw.CLIENT_TOKENS,
    jwt:
      raw.JWT_JWKS_URL && raw.JWT_ISSUER
        ? { jwksUrl: raw.JWT_JWKS_URL, issuer: raw.JWT_ISSUER, audience: raw.JWT_AUDIENCE }
        : undefined,
    allowAnonymous: raw.ALLOW_ANONYMOUS,
    allowedOrigins: raw.ALLOWED_ORIGINS,
    redactFields: raw.REDACT_FIELDS,
    gatewayLocationHint: raw.GATEWAY_LOCATION_HINT,
    runIndex: raw.RUN_INDEX,
    indexSyncSeconds: raw.INDEX_SYNC_SECONDS,
    indexReconcileSeconds: raw.INDEX_RECONCILE_SECONDS,
    indexLookbackSeconds: raw.INDEX_LOOKBACK_SECONDS,
    webhookSecrets: raw.EXTEND_WEBHOOK_SECRET,
    limiterLimits: {
      RATE_LIMITER: raw.RATE_LIMITER_LIMIT,
      STATS_RATE_LIMITER: raw.STATS_RATE_LIMITER_LIMIT,
      AUTH_RATE_LIMITER: raw.AUTH_RATE_LIMITER_LIMIT,
    },
  };
  parsed.set(env, config);
  return config;
}
