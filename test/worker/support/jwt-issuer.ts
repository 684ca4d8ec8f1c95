import { HttpResponse, http } from "msw";
import { network } from "./setup.ts";

/** A client token as recognisable as the upstream key: a leak of either is easy to spot. */
export const TEST_CLIENT_TOKEN = "ct_CANARY_client_token_4b1e8a90c7d2f5";

export type TestAlg = "RS256" | "ES256";

interface KeyPair {
  alg: TestAlg;
  privateKey: CryptoKey;
  publicJwk: JsonWebKey;
}

const ALGORITHMS: Record<TestAlg, SubtleCryptoGenerateKeyAlgorithm> = {
  RS256: {
    name: "RSASSA-PKCS1-v1_5",
    modulusLength: 2048,
    publicExponent: new Uint8Array([1, 0, 1]),
    hash: "SHA-256",
  },
  ES256: { name: "ECDSA", namedCurve: "P-256" },
};

const SIGN_PARAMS: Record<TestAlg, SubtleCryptoSignAlgorithm> = {
  RS256: { name: "RSASSA-PKCS1-v1_5" },
  ES256: { name: "ECDSA", hash: "SHA-256" },
};

async function generate(alg: TestAlg): Promise<KeyPair> {
  const pair = (await crypto.subtle.generateKey(ALGORITHMS[alg], true, ["sign", "verify"])) as CryptoKeyPair;
  const publicJwk = (await crypto.subtle.exportKey("jwk", pair.publicKey)) as JsonWebKey;
  return { alg, privateKey: pair.privateKey, publicJwk };
}

const encoder = new TextEncoder();

function base64url(bytes: Uint8Array | string): string {
  const data = typeof bytes === "string" ? encoder.encode(bytes) : bytes;
  let binary = "";
  for (const byte of data) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export interface SignOptions {
  /** Which of the issuer's keys signs, and the header's kid (default rsa-1, or ec-1 for ES256). */
  kid?: string;
  alg?: TestAlg;
  /** Overrides of the JWT header (alg, kid, typ); `undefined` values remove a field. */
  header?: Record<string, unknown>;
  /** Signs with a different key than the one the header names. */
  signingKey?: CryptoKey;
}

let nextIssuer = 0;

/** An identity provider for one test: its own JWKS URL (so the proxy's key cache starts cold). */
export class TestIssuer {
  readonly jwksUrl: string;
  readonly issuer: string;
  readonly audience = "extend-runs-proxy-tests";
  /** How often the proxy fetched the key set. */
  fetches = 0;
  /** Answer key set fetches with this status instead of the keys (0: a network error). */
  failStatus: number | undefined;
  private keys = new Map<string, KeyPair>();

  private constructor(id: number) {
    this.issuer = `https://idp${id}.test/`;
    this.jwksUrl = `https://idp${id}.test/.well-known/jwks.json`;
  }

  static async start(): Promise<TestIssuer> {
    const issuer = new TestIssuer(++nextIssuer);
    await issuer.addKey("rsa-1", "RS256");
    await issuer.addKey("ec-1", "ES256");
    network.use(
      http.get(issuer.jwksUrl, () => {
        issuer.fetches += 1;
        if (issuer.failStatus === 0) return HttpResponse.error();
        if (issuer.failStatus !== undefined)
          return new HttpResponse("unavailable", { status: issuer.failStatus });
        return HttpResponse.json({
          keys: [...issuer.keys].map(([kid, pair]) => ({
            ...pair.publicJwk,
            kid,
            alg: pair.alg,
            use: "sig",
          })),
        });
      }),
    );
    return issuer;
  }

  /** Settings that make the proxy accept this issuer's tokens. */
  get env(): Partial<Env> {
    return {
      JWT_JWKS_URL: this.jwksUrl,
      JWT_ISSUER: this.issuer,
      JWT_AUDIENCE: this.audience,
      ALLOW_ANONYMOUS: "false",
    };
  }

  async addKey(kid: string, alg: TestAlg): Promise<void> {
    this.keys.set(kid, await generate(alg));
  }

  publicJwk(kid: string): JsonWebKey {
    const pair = this.keys.get(kid);
    if (!pair) throw new Error(`no key ${kid}`);
    return pair.publicJwk;
  }

  /** A valid token for `sub`, unless claims or options say otherwise. */
  async sign(claims: Record<string, unknown> = {}, options: SignOptions = {}): Promise<string> {
    const kid = options.kid ?? (options.alg === "ES256" ? "ec-1" : "rsa-1");
    const pair = this.keys.get(kid);
    if (!pair) throw new Error(`no key ${kid}`);
    const alg = pair.alg;
    const now = Math.floor(Date.now() / 1000);
    const payload = {
      iss: this.issuer,
      aud: this.audience,
      sub: "user-123",
      iat: now - 10,
      nbf: now - 10,
      exp: now + 300,
      ...claims,
    };
    const header: Record<string, unknown> = { alg, typ: "JWT", kid, ...options.header };
    for (const [name, value] of Object.entries(header)) if (value === undefined) delete header[name];
    const input = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(payload))}`;
    const signature = await crypto.subtle.sign(
      SIGN_PARAMS[alg],
      options.signingKey ?? pair.privateKey,
      encoder.encode(input),
    );
    return `${input}.${base64url(new Uint8Array(signature))}`;
  }

  /** A token whose header says HS256 and whose HMAC key is this issuer's public RSA key (key confusion). */
  async signHs256WithPublicKey(): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    const header = { alg: "HS256", typ: "JWT", kid: "rsa-1" };
    const payload = { iss: this.issuer, aud: this.audience, sub: "attacker", exp: now + 300 };
    const input = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(payload))}`;
    const secret = encoder.encode(JSON.stringify(this.publicJwk("rsa-1")));
    const key = await crypto.subtle.importKey("raw", secret, { name: "HMAC", hash: "SHA-256" }, false, [
      "sign",
    ]);
    const signature = await crypto.subtle.sign("HMAC", key, encoder.encode(input));
    return `${input}.${base64url(new Uint8Array(signature))}`;
  }

  /** An unsigned token (`alg: none`). */
  unsigned(): string {
    const now = Math.floor(Date.now() / 1000);
    const header = { alg: "none", typ: "JWT", kid: "rsa-1" };
    const payload = { iss: this.issuer, aud: this.audience, sub: "attacker", exp: now + 300 };
    return `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(payload))}.`;
  }
}

/** Generates a key pair outside any issuer (for "signed by someone else"). */
export async function foreignKey(alg: TestAlg = "RS256"): Promise<CryptoKey> {
  return (await generate(alg)).privateKey;
}
