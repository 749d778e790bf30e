/**
 * `admin login` (issue #19): an admin gets an ID token from an OpenID provider, either with the
 * authorization code flow and PKCE (S256) on a loopback redirect (RFC 8252: a one-shot listener on
 * http://127.0.0.1:PORT/callback, random port, state and nonce checked), or with the device
 * authorization grant (RFC 8628) for a terminal without a browser. The URL to open is printed,
 * never opened. All requests go through this project's HTTP client, with the operator's --cacert
 * and no environment (no proxy variables, no extra CAs). serve verifies the token's signature when
 * it is used; here the answer is checked for the issuer, audience and nonce asked for.
 */
import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { decodeJwt } from 'jose';
import { randomBytes } from '../crypto/aead.ts';
import { TpError } from '../errors.ts';
import { send as httpSend, type SendOptions } from '../http/client.ts';
import { checkIssuer } from './config.ts';

export const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
const MAX_BYTES = 256 * 1024;

export interface LoginOptions {
  issuer: string;
  clientId: string;
  scope: string;
  sendOptions: SendOptions;
  /** Tells the user where to go (stderr): the URL, and for the device flow the code. */
  show: (lines: string) => void;
  /** Gives up after this long without the user finishing (default 10 minutes). */
  timeoutMs?: number;
  send?: typeof httpSend;
}

export interface LoginResult {
  issuer: string;
  client_id: string;
  id_token: string;
  subject: string;
  expires_at: string | null;
}

interface Endpoints {
  authorization_endpoint?: string;
  token_endpoint: string;
  device_authorization_endpoint?: string;
}

function _b64url(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64url');
}

function _loginError(message: string, hint?: string): TpError {
  return new TpError('denied', 'oidc_login', message, hint === undefined ? {} : { hint });
}

async function _request(
  o: LoginOptions,
  url: string,
  form: Record<string, string> | null,
): Promise<{ status: number; json: Record<string, unknown> }> {
  const target = new URL(url);
  if (target.protocol !== 'https:') throw _loginError(`${target.origin} is not https`);
  const body = form === null ? null : Buffer.from(new URLSearchParams(form).toString(), 'utf8');
  const res = await (o.send ?? httpSend)({
    method: form === null ? 'GET' : 'POST',
    url: target,
    headers: [
      ['Accept', 'application/json'],
      ...(body === null
        ? []
        : [['Content-Type', 'application/x-www-form-urlencoded'] as [string, string]]),
    ],
    body: body === null ? null : new Uint8Array(body),
  }, { ...o.sendOptions, maxResponseBytes: MAX_BYTES, timeoutMs: 30_000 });
  const chunks: Uint8Array[] = [];
  for await (const c of res.body) chunks.push(c);
  let json: unknown = null;
  try {
    json = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch { /* below */ }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw _loginError(`${target.origin}${target.pathname} did not answer JSON (${res.status})`);
  }
  return { status: res.status, json: json as Record<string, unknown> };
}

async function _discover(o: LoginOptions): Promise<Endpoints> {
  const issuer = checkIssuer(o.issuer);
  const { status, json } = await _request(
    o,
    `${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`,
    null,
  );
  if (status !== 200 || json.issuer !== issuer || typeof json.token_endpoint !== 'string') {
    throw _loginError(`${issuer} has no usable discovery document`);
  }
  return json as unknown as Endpoints;
}

/** Checks the token answer and the ID token's iss, aud and nonce (its signature is serve's). */
function _result(
  o: LoginOptions,
  json: Record<string, unknown>,
  nonce: string | null,
): LoginResult {
  const idToken = json.id_token;
  if (typeof idToken !== 'string') throw _loginError('the provider answered without an ID token');
  let claims: Record<string, unknown>;
  try {
    claims = decodeJwt(idToken);
  } catch {
    throw _loginError('the provider answered with an ID token that is not a JWT');
  }
  const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  if (claims.iss !== o.issuer || !aud.includes(o.clientId) || typeof claims.sub !== 'string') {
    throw _loginError('the ID token is for another issuer or client');
  }
  if (nonce !== null && claims.nonce !== nonce) {
    throw _loginError('the ID token does not carry the nonce this login sent (a replayed token?)');
  }
  return {
    issuer: o.issuer,
    client_id: o.clientId,
    id_token: idToken,
    subject: claims.sub,
    expires_at: typeof claims.exp === 'number' ? new Date(claims.exp * 1000).toISOString() : null,
  };
}

/** The device authorization grant (RFC 8628): show the code, poll the token endpoint. */
export async function deviceLogin(o: LoginOptions): Promise<LoginResult> {
  const endpoints = await _discover(o);
  if (endpoints.device_authorization_endpoint === undefined) {
    throw _loginError(`${o.issuer} does not offer the device flow`, 'sign in without --device');
  }
  const start = await _request(o, endpoints.device_authorization_endpoint, {
    client_id: o.clientId,
    scope: o.scope,
  });
  const { device_code, user_code, verification_uri } = start.json;
  if (
    start.status !== 200 || typeof device_code !== 'string' || typeof user_code !== 'string' ||
    typeof verification_uri !== 'string'
  ) {
    throw _loginError(`the provider refused the device authorization (${start.status})`);
  }
  const complete = start.json.verification_uri_complete;
  o.show(
    `To sign in, open ${verification_uri} and enter the code ${user_code}\n` +
      (typeof complete === 'string' ? `(or open ${complete})\n` : ''),
  );
  let interval = typeof start.json.interval === 'number' ? start.json.interval : 5;
  const deadline = Date.now() + Math.min(
    o.timeoutMs ?? 600_000,
    typeof start.json.expires_in === 'number' ? start.json.expires_in * 1000 : 600_000,
  );
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, interval * 1000));
    const polled = await _request(o, endpoints.token_endpoint, {
      grant_type: DEVICE_GRANT,
      device_code,
      client_id: o.clientId,
    });
    if (polled.status === 200) return _result(o, polled.json, null);
    const error = polled.json.error;
    if (error === 'authorization_pending') continue;
    if (error === 'slow_down') {
      interval += 5;
      continue;
    }
    throw _loginError(`the provider refused the sign-in: ${String(error ?? polled.status)}`);
  }
  throw _loginError('the sign-in was not completed in time', 'run `admin login` again');
}

/**
 * Authorization code with PKCE on a loopback redirect: a listener on 127.0.0.1, a random port,
 * for one callback whose state matches; anything else there is answered 400 and fails the login.
 */
export async function pkceLogin(o: LoginOptions): Promise<LoginResult> {
  const endpoints = await _discover(o);
  if (endpoints.authorization_endpoint === undefined) {
    throw _loginError(`${o.issuer} has no authorization endpoint`, 'try --device');
  }
  const verifier = _b64url(randomBytes(32));
  const challenge = _b64url(createHash('sha256').update(verifier).digest());
  const state = _b64url(randomBytes(16));
  const nonce = _b64url(randomBytes(16));
  let settle!: (r: { code: string } | { error: string }) => void;
  const callback = new Promise<{ code: string } | { error: string }>((r) => (settle = r));
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const page = (status: number, text: string) => {
      res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', Connection: 'close' });
      res.end(text + '\n');
    };
    if (url.pathname !== '/callback') return page(404, 'not found');
    if (url.searchParams.get('state') !== state) {
      page(400, 'sign-in refused: this answer is not for the login that is waiting');
      return settle({ error: 'the callback carried the wrong state (not this login)' });
    }
    const code = url.searchParams.get('code');
    if (code === null) {
      page(400, 'sign-in refused by the provider');
      return settle({ error: `the provider refused: ${url.searchParams.get('error') ?? '?'}` });
    }
    page(200, 'Signed in: you may close this window and go back to the terminal.');
    settle({ code });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const redirect = `http://127.0.0.1:${(server.address() as AddressInfo).port}/callback`;
  const timer = setTimeout(
    () => settle({ error: 'the sign-in was not completed in time' }),
    o.timeoutMs ?? 600_000,
  );
  try {
    const authorize = new URL(endpoints.authorization_endpoint);
    for (
      const [k, v] of Object.entries({
        response_type: 'code',
        client_id: o.clientId,
        redirect_uri: redirect,
        scope: o.scope,
        state,
        nonce,
        code_challenge: challenge,
        code_challenge_method: 'S256',
      })
    ) authorize.searchParams.set(k, v);
    o.show(`To sign in, open this URL in a browser on this machine:\n${authorize.href}\n`);
    const answer = await callback;
    if ('error' in answer) throw _loginError(answer.error);
    const token = await _request(o, endpoints.token_endpoint, {
      grant_type: 'authorization_code',
      code: answer.code,
      redirect_uri: redirect,
      client_id: o.clientId,
      code_verifier: verifier,
    });
    if (token.status !== 200) {
      throw _loginError(
        `the provider refused the code: ${String(token.json.error ?? token.status)}`,
      );
    }
    return _result(o, token.json, nonce);
  } finally {
    clearTimeout(timer);
    server.closeAllConnections();
    server.close();
  }
}
