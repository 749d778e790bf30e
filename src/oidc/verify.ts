/**
 * Verifies an admin's bearer token (an ID token, or a JWT access token) from a configured issuer
 * (issue #19, docs/decisions.md "OIDC sign-in"). The signature is checked with `jose` against the
 * issuer's JWKS, found through its discovery document; both are fetched with serve's own HTTP
 * client and trust (its --cacert), never the environment's, and cached. Then `iss` (exactly the
 * configured issuer), `aud` (the configured audience, else the client id), `exp`, `nbf` and `iat`
 * with a minute's leeway, and an allow-list of asymmetric algorithms: no `none`, no HS* (a public
 * key used as an HMAC secret).
 */
import {
  createLocalJWKSet,
  decodeJwt,
  errors as joseErrors,
  type JWTPayload,
  jwtVerify,
} from 'jose';
import { Buffer } from 'node:buffer';
import { TpError } from '../errors.ts';
import { send as httpSend, type SendOptions } from '../http/client.ts';
import type { OidcIssuer } from './config.ts';
import { oidcOf } from './config.ts';
import type { VerifiedVault } from '../vault.ts';

export const ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
];
/** Clock skew allowed on exp, nbf and iat. */
const LEEWAY_S = 60;
/** How long a JWKS is used before it is fetched again. */
const JWKS_TTL_MS = 10 * 60_000;
/** An unknown key id refetches the JWKS (key rotation), at most this often. */
const REFETCH_MS = 30_000;
const MAX_DOCUMENT_BYTES = 256 * 1024;

type KeySet = ReturnType<typeof createLocalJWKSet>;

export interface Verified {
  issuer: OidcIssuer;
  claims: JWTPayload;
}

export class OidcVerifier {
  #sendOptions: SendOptions;
  #send: typeof httpSend;
  #now: () => Date;
  #keys = new Map<string, { set: KeySet; fetchedAt: number }>();

  constructor(
    sendOptions: SendOptions,
    options: { now?: () => Date; send?: typeof httpSend } = {},
  ) {
    this.#sendOptions = sendOptions;
    this.#send = options.send ?? httpSend;
    this.#now = options.now ?? (() => new Date());
  }

  /** The token's issuer (configured in the MAC-checked `file`) and verified claims; else 401. */
  async verify(token: string, file: VerifiedVault): Promise<Verified> {
    let unverified: JWTPayload;
    try {
      unverified = decodeJwt(token);
    } catch {
      throw invalidToken('the bearer token is not a JWT from an identity provider');
    }
    const issuer = oidcOf(file.body).issuers.find((i) => i.issuer === unverified.iss);
    if (issuer === undefined) {
      throw new TpError('denied', 'unknown_issuer', "the token's issuer is not configured", {
        hint: 'an owner adds it: trust-protocol admin oidc add --issuer URL --client-id ID',
      });
    }
    let set = await this.#keySet(issuer.issuer, false);
    for (let attempt = 0;; attempt++) {
      try {
        const { payload } = await jwtVerify(token, set, {
          issuer: issuer.issuer,
          audience: issuer.audience ?? issuer.client_id,
          algorithms: ALGORITHMS,
          clockTolerance: LEEWAY_S,
          maxTokenAge: '1d',
          requiredClaims: ['sub', 'exp', 'iat'],
          currentDate: this.#now(),
        });
        // An ID token (no separate audience configured) made for several clients, or for
        // another one, must name this client as its authorised party (OIDC Core 3.1.3.7).
        if (issuer.audience === null || issuer.audience === undefined) {
          const several = Array.isArray(payload.aud) && payload.aud.length > 1;
          if ((several || payload.azp !== undefined) && payload.azp !== issuer.client_id) {
            throw invalidToken('the token was issued to another client (azp)');
          }
        }
        return { issuer, claims: payload };
      } catch (e) {
        if (e instanceof joseErrors.JWKSNoMatchingKey && attempt === 0) {
          const again = await this.#keySet(issuer.issuer, true);
          if (again !== set) {
            set = again;
            continue;
          }
        }
        throw _refusal(e);
      }
    }
  }

  async #keySet(issuer: string, stale: boolean): Promise<KeySet> {
    const now = Date.now();
    const cached = this.#keys.get(issuer);
    if (
      cached !== undefined && now - cached.fetchedAt < JWKS_TTL_MS &&
      (!stale || now - cached.fetchedAt < REFETCH_MS)
    ) {
      return cached.set;
    }
    const discovery = await this.#getJson(
      new URL(`${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`),
    );
    if (discovery.issuer !== issuer || typeof discovery.jwks_uri !== 'string') {
      throw _discoveryError(`${issuer} published a discovery document for another issuer`);
    }
    const jwksUri = new URL(discovery.jwks_uri);
    if (jwksUri.protocol !== 'https:') throw _discoveryError('the jwks_uri is not https');
    const jwks = await this.#getJson(jwksUri);
    let set: KeySet;
    try {
      set = createLocalJWKSet(jwks as unknown as Parameters<typeof createLocalJWKSet>[0]);
    } catch {
      throw _discoveryError(`${issuer} published no usable key set`);
    }
    this.#keys.set(issuer, { set, fetchedAt: now });
    return set;
  }

  async #getJson(url: URL): Promise<Record<string, unknown>> {
    let text: string;
    try {
      const res = await this.#send(
        { method: 'GET', url, headers: [['Accept', 'application/json']], body: null },
        { ...this.#sendOptions, maxResponseBytes: MAX_DOCUMENT_BYTES, timeoutMs: 10_000 },
      );
      const chunks: Uint8Array[] = [];
      for await (const c of res.body) chunks.push(c);
      if (res.status !== 200) throw _discoveryError(`${url.origin} answered ${res.status}`);
      text = new TextDecoder().decode(Buffer.concat(chunks));
    } catch (e) {
      if (e instanceof TpError && e.code === 'oidc_discovery') throw e;
      throw _discoveryError(
        `could not fetch ${url.origin}${url.pathname}: ${e instanceof Error ? e.message : e}`,
      );
    }
    try {
      const json = JSON.parse(text);
      if (typeof json === 'object' && json !== null && !Array.isArray(json)) return json;
    } catch { /* below */ }
    throw _discoveryError(`${url.origin}${url.pathname} is not a JSON object`);
  }
}

export function invalidToken(message: string): TpError {
  return new TpError('denied', 'admin_token_invalid', message, {
    hint: 'sign in again: trust-protocol admin login --issuer URL --client-id ID',
  });
}

function _refusal(e: unknown): TpError {
  if (e instanceof TpError) return e;
  if (e instanceof joseErrors.JWTExpired) {
    return new TpError('denied', 'admin_token_expired', 'the admin token has expired', {
      hint: 'sign in again: trust-protocol admin login --issuer URL --client-id ID',
    });
  }
  if (e instanceof joseErrors.JWTClaimValidationFailed) {
    return invalidToken(`the admin token was refused: its "${e.claim}" claim is not acceptable`);
  }
  if (e instanceof joseErrors.JOSEAlgNotAllowed) {
    return invalidToken('the admin token was refused: its algorithm is not allowed');
  }
  if (
    e instanceof joseErrors.JWSSignatureVerificationFailed ||
    e instanceof joseErrors.JWKSNoMatchingKey || e instanceof joseErrors.JWKSMultipleMatchingKeys
  ) {
    return invalidToken('the admin token was refused: its signature does not verify');
  }
  return invalidToken('the admin token was refused');
}

function _discoveryError(message: string): TpError {
  return new TpError('upstream', 'oidc_discovery', message, {
    hint: "check the issuer's URL, and serve's --cacert if the provider uses a private CA",
  });
}
