import type { Context } from "hono";
import { createMiddleware } from "hono/factory";
import type { Config } from "../app/config.ts";
import { type AppEnv, addWarning, type Caller } from "../app/env.ts";
import { ApiError } from "../app/errors.ts";
import { errorResponse, isRead } from "../app/router.ts";
import { sha256 } from "../lib/digest.ts";
import { clientIp } from "./client-ip.ts";
import { fingerprint } from "./fingerprint.ts";
import { looksLikeJwt, verifyCallerJwt } from "./jwt.ts";
import {
  admitCaller,
  chargeRejectedCredentials,
  confirmCredentialAttempt,
  isSuspect,
  type LimiterBinding,
  spendCredentialAttempt,
} from "./rate-limit.ts";

export const AUTH_REALM = "extend-runs-proxy";
/** Cloudflare Access puts the user's JWT in this header on requests it lets through. */
export const CF_ACCESS_JWT_HEADER = "cf-access-jwt-assertion";
/** Retry-After for a 503 caused by an unreachable key set (see JWKS_FAILURE_BACKOFF_MS). */
const KEYS_UNAVAILABLE_RETRY_SECONDS = 10;
/** A JWT subject goes into the caller id as itself only when it is short printable ASCII. */
const LOGGABLE_SUBJECT = /^[\x21-\x7e]{1,128}$/;

export const DEFAULT_DENY_MESSAGE =
  "This proxy has no caller authentication configured, so it refuses every data request. " +
  "Configure access with CLIENT_TOKENS (a secret: comma-separated bearer tokens), " +
  "JWT_JWKS_URL + JWT_ISSUER + JWT_AUDIENCE (JWTs, e.g. Cloudflare Access), " +
  "or ALLOW_ANONYMOUS=true to serve unauthenticated callers.";

type Attempt = { ok: true; caller: Caller } | { ok: false; reason: string; unavailable?: boolean };

interface TokenEntry {
  readonly digest: ArrayBuffer;
  readonly caller: Caller;
}

const tokenTables = new WeakMap<Config, Promise<TokenEntry[]>>();

/** Each client token's SHA-256 and caller id, computed once per parsed configuration. */
function tokenTable(config: Config): Promise<TokenEntry[]> {
  let table = tokenTables.get(config);
  if (!table) {
    table = Promise.all(
      config.clientTokens.map(async (token) => ({
        digest: await sha256(token),
        caller: { id: `token:${await fingerprint(config, token)}`, method: "token" as const },
      })),
    );
    tokenTables.set(config, table);
  }
  return table;
}

/**
 * The caller a static token names, or undefined when it is none of CLIENT_TOKENS. Compared as
 * `findSecret` does: digests of equal length, every token compared, in time independent of
 * where they differ.
 */
async function callerOfToken(token: string, config: Config): Promise<Caller | undefined> {
  const [digest, table] = await Promise.all([sha256(token), tokenTable(config)]);
  let match: Caller | undefined;
  for (const entry of table) {
    const equal = crypto.subtle.timingSafeEqual(digest, entry.digest);
    if (equal && match === undefined) match = entry.caller;
  }
  return match;
}

async function tryJwt(token: string, config: Config): Promise<Attempt> {
  if (!config.jwt) return { ok: false, reason: "JWT authentication is not configured" };
  const result = await verifyCallerJwt(token, config.jwt);
  if (!result.ok) return result;
  const subject = LOGGABLE_SUBJECT.test(result.subject)
    ? result.subject
    : `hmac:${await fingerprint(config, result.subject)}`;
  return { ok: true, caller: { id: `jwt:${subject}`, method: "jwt" } };
}

/** RFC 6750 §3 challenge; `error` is left out when the request carried no credentials. */
function challenge(error?: { code: "invalid_request" | "invalid_token"; description: string }): string {
  const parts = [`realm="${AUTH_REALM}"`];
  if (error) {
    parts.push(`error="${error.code}"`, `error_description="${error.description.replace(/["\\]/g, "")}"`);
  }
  return `Bearer ${parts.join(", ")}`;
}

function unauthorized(
  c: Context<AppEnv>,
  message: string,
  options: { error?: { code: "invalid_request" | "invalid_token"; description: string } } = {},
): Response {
  const response = errorResponse(c, new ApiError("UNAUTHORIZED", message));
  response.headers.set("www-authenticate", challenge(options.error));
  return response;
}

/** What `authenticate()` does beyond identifying the caller. */
export interface AuthenticateOptions {
  /** The per-caller limiter the route spends (keyed by the caller id), asked beside the lockout check. */
  limiter?: LimiterBinding;
  /**
   * Hand the per-caller verdict to the handler as `c.var.admission` rather than waiting for it
   * first. The handler must await it before it serves, loads or writes anything (the page source
   * hands it to the cache); whatever the handler answered, a refused caller gets the 429, and an
   * error (a 400, say) is answered only once the caller is known to be within its limit.
   */
  alongside?: boolean;
}

/**
 * Caller authentication for data routes (GET and HEAD; other methods fall through to the 405).
 * Accepts, in order: a static token from CLIENT_TOKENS or a JWT in `Authorization: Bearer`, then
 * a JWT in `Cf-Access-Jwt-Assertion`. With ALLOW_ANONYMOUS, a request without credentials is
 * served as `anon:<ip>`; when no method is configured at all, every request is refused (default
 * deny). A request with credentials spends a unit of its address's credential budget, and a
 * rejected credential costs more (see rate-limit.ts): once the budget is spent, credentials from
 * that address are refused, right or wrong, with one answer. Sets `caller` and the telemetry's
 * caller id; credentials go nowhere else.
 *
 * With `limiter`, it also spends the caller's own budget, and the two Rate Limiting round trips
 * overlap instead of following each other: a static token is compared (a local digest) while the
 * lockout verdict is on its way, the caller's budget is asked as soon as the token is known, and
 * the lockout verdict is awaited before anything else is decided. A locked-out address therefore
 * gets its 429 when its lockout verdict arrives, whatever its credentials, and without waiting for
 * the caller's verdict. A JWT is verified only once the address is known not to be locked out (its
 * check may fetch the key set), and an address this isolate recently saw locked out or rejected
 * (rate-limit.ts `isSuspect`) waits for its lockout verdict before its caller's budget is asked.
 */
export function authenticate(options: AuthenticateOptions = {}) {
  const { limiter, alongside = false } = options;
  return createMiddleware<AppEnv>(async (c, next) => {
    if (!isRead(c)) return next();
    const config = c.var.config;
    const hasTokens = config.clientTokens.length > 0;
    const hasJwt = config.jwt !== undefined;

    const accept = async (caller: Caller, asked?: Promise<void>) => {
      c.set("caller", caller);
      c.var.telemetry.callerId = caller.id;
      if (!limiter) return next();
      const admission = asked ?? admitCaller(c, limiter, caller.id);
      if (!alongside) {
        await admission;
        return next();
      }
      admission.catch(() => undefined);
      c.set("admission", admission);
      await next();
      await admission;
    };

    if (!hasTokens && !hasJwt) {
      if (!config.allowAnonymous) return unauthorized(c, DEFAULT_DENY_MESSAGE);
      // Anonymous-only: credentials mean nothing here (an SDK always sends one), so none is checked.
      return accept({ id: `anon:${clientIp(c)}`, method: "anonymous" });
    }

    const authorization = c.req.header("authorization");
    const accessJwt = hasJwt ? c.req.header(CF_ACCESS_JWT_HEADER) : undefined;
    if (authorization === undefined && accessJwt === undefined) {
      if (config.allowAnonymous) return accept({ id: `anon:${clientIp(c)}`, method: "anonymous" });
      const how = hasJwt
        ? "send Authorization: Bearer <token or JWT>, or come through Cloudflare Access"
        : "send Authorization: Bearer <token>";
      return unauthorized(c, `Credentials are required: ${how}.`);
    }

    c.var.telemetry.callerId = `rejected:${clientIp(c)}`;
    const suspect = isSuspect(c);
    const lockout = spendCredentialAttempt(c);
    lockout.catch(() => undefined);
    if (suspect) await lockout;

    const attempts: Attempt[] = [];
    if (authorization !== undefined) {
      const bearer = /^Bearer +(\S+) *$/i.exec(authorization)?.[1];
      if (bearer === undefined) {
        attempts.push({ ok: false, reason: "the Authorization header must use the Bearer scheme" });
      } else {
        const tokenCaller = hasTokens ? await callerOfToken(bearer, config) : undefined;
        if (tokenCaller) {
          const asked = limiter && !suspect ? admitCaller(c, limiter, tokenCaller.id) : undefined;
          asked?.catch(() => undefined);
          await lockout;
          return accept(tokenCaller, asked);
        }
        if (hasJwt && looksLikeJwt(bearer)) {
          await lockout;
          attempts.push(await tryJwt(bearer, config));
        } else {
          attempts.push({ ok: false, reason: "the bearer token is not valid" });
        }
      }
    }
    await lockout;
    const first = attempts[0];
    if (first?.ok) return accept(first.caller);
    if (accessJwt !== undefined) {
      const attempt = await tryJwt(accessJwt.trim(), config);
      if (attempt.ok) return accept(attempt.caller);
      attempts.push(attempt);
    }

    const failures = attempts.filter((a): a is Extract<Attempt, { ok: false }> => !a.ok);
    const reasons = failures.map((f) => f.reason).join("; ");
    if (failures.some((f) => f.unavailable)) {
      await confirmCredentialAttempt(c);
      addWarning(c.var.telemetry, "JWT key set unavailable");
      // Not the caller's fault: the credentials could not be checked at all, so a 401 would be wrong
      // (clients would drop a valid token) and the failure is not counted against the caller.
      return errorResponse(
        c,
        new ApiError("AUTH_UNAVAILABLE", `The credentials could not be checked: ${reasons}.`, {
          retryAfter: KEYS_UNAVAILABLE_RETRY_SECONDS,
        }),
      );
    }
    await chargeRejectedCredentials(c);
    return unauthorized(c, `The credentials were rejected: ${reasons}.`, {
      error: {
        code:
          authorization !== undefined && !/^Bearer /i.test(authorization)
            ? "invalid_request"
            : "invalid_token",
        description: reasons,
      },
    });
  });
}
