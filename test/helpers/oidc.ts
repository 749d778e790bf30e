/**
 * A real OpenID provider for the tests (npm `oidc-provider`, a certified implementation), over
 * local TLS on 127.0.0.1 with the test certificate (fixtures/tls, signed by TEST_CA). One public
 * client, `tp-admin`, for the authorization code flow with PKCE on a loopback redirect and for the
 * device flow. Interactions are approved automatically as `account` (set it before a sign-in),
 * and `browse()` plays the browser: it follows redirects with cookies and submits the provider's
 * forms, so the flows run headless. The signing key is the test's (`key`), so a test can also make
 * tokens the provider would have made, expired or for another audience.
 */
import { Buffer } from 'node:buffer';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { request } from 'node:https';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose';
// @ts-expect-error: oidc-provider ships no type declarations (tests only)
import Provider from 'oidc-provider';
import { TEST_CA } from './listeners.ts';

const TLS = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../fixtures/tls');

export const CLIENT_ID = 'tp-admin';

export interface TestProvider {
  issuer: string;
  /** The account the next interaction signs in as (its `sub`). */
  account: string;
  /** `tp_role` claims by account. */
  roles: Record<string, string>;
  /** The provider's signing key (RS256), kid `test-key`. */
  key: CryptoKey;
  /** A token as the provider signs them: `claims` over iss, aud, sub, iat, exp defaults. */
  sign(claims: Record<string, unknown>, key?: CryptoKey, kid?: string): Promise<string>;
  /** Fetches `url` like a browser that approves everything; returns the last response's body. */
  browse(url: string): Promise<{ status: number; url: string; body: string }>;
  close(): Promise<void>;
}

export async function startProvider(): Promise<TestProvider> {
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const jwk: JWK = { ...(await exportJWK(privateKey)), kid: 'test-key', alg: 'RS256', use: 'sig' };
  const server: Server = createServer({
    key: readFileSync(path.join(TLS, 'server.key')),
    cert: readFileSync(path.join(TLS, 'server.pem')),
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const issuer = `https://127.0.0.1:${port}`;
  const state: { account: string; roles: Record<string, string> } = { account: 'alice', roles: {} };
  const provider = new Provider(issuer, {
    clients: [{
      client_id: CLIENT_ID,
      application_type: 'native',
      token_endpoint_auth_method: 'none',
      redirect_uris: ['http://127.0.0.1/callback'],
      grant_types: ['authorization_code', 'urn:ietf:params:oauth:grant-type:device_code'],
      response_types: ['code'],
    }],
    jwks: { keys: [jwk] },
    cookies: { keys: ['test-cookie-key'] },
    features: { devInteractions: { enabled: false }, deviceFlow: { enabled: true } },
    claims: { openid: ['sub'], tp: ['tp_role'] },
    scopes: ['openid', 'tp'],
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    interactions: { url: (_ctx: unknown, i: { uid: string }) => `/interaction/${i.uid}` },
    findAccount: (_ctx: unknown, id: string) => ({
      accountId: id,
      claims: () => ({
        sub: id,
        ...(state.roles[id] === undefined ? {} : { tp_role: state.roles[id] }),
      }),
    }),
  });
  const callback = provider.callback();
  server.on('request', async (req, res) => {
    const m = /^\/interaction\/([^/?]+)$/.exec(req.url ?? '');
    if (m === null) return callback(req, res);
    try {
      // Approve as the account the test chose: login and consent to everything asked.
      const details = await provider.interactionDetails(req, res);
      const grant = new provider.Grant({
        accountId: state.account,
        clientId: details.params.client_id as string,
      });
      grant.addOIDCScope(String(details.params.scope ?? 'openid'));
      const grantId = await grant.save();
      await provider.interactionFinished(req, res, {
        login: { accountId: state.account },
        consent: { grantId },
      }, { mergeWithLastSubmission: false });
    } catch (e) {
      res.statusCode = 500;
      res.end(String(e));
    }
  });

  const t: TestProvider = {
    issuer,
    get account() {
      return state.account;
    },
    set account(v: string) {
      state.account = v;
    },
    roles: state.roles,
    key: privateKey,
    async sign(claims, key = privateKey, kid = 'test-key') {
      const now = Math.floor(Date.now() / 1000);
      return await new SignJWT({
        iss: issuer,
        aud: CLIENT_ID,
        sub: state.account,
        iat: now,
        exp: now + 600,
        ...claims,
      }).setProtectedHeader({ alg: 'RS256', kid }).sign(key);
    },
    browse: (url) => _browse(url),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return t;
}

interface _Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function _fetch(
  url: URL,
  jar: Map<string, string>,
  method = 'GET',
  form?: URLSearchParams,
): Promise<_Answer> {
  const body = form === undefined ? undefined : Buffer.from(form.toString());
  return new Promise((resolve, reject) => {
    const req = request(url, {
      method,
      ca: TEST_CA,
      agent: false,
      headers: {
        ...(jar.size === 0 ? {} : { cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; ') }),
        ...(body === undefined ? {} : {
          'content-type': 'application/x-www-form-urlencoded',
          'content-length': String(body.length),
        }),
      },
    }, (res) => {
      for (const c of res.headers['set-cookie'] ?? []) {
        const [pair] = c.split(';');
        const i = (pair as string).indexOf('=');
        jar.set((pair as string).slice(0, i), (pair as string).slice(i + 1));
      }
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(Buffer.from(d)));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks).toString('utf8'),
        }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * Follows redirects on the provider's origin and submits its forms (the device flow's code
 * confirmation) until a page without a form, or a redirect elsewhere (the loopback callback,
 * which is then fetched as a browser would, over plain HTTP).
 */
async function _browse(start: string): Promise<{ status: number; url: string; body: string }> {
  const jar = new Map<string, string>();
  let url = new URL(start);
  let method = 'GET';
  let form: URLSearchParams | undefined;
  for (let hops = 0; hops < 20; hops++) {
    if (url.protocol === 'http:') {
      const r = await fetch(url, { redirect: 'manual' });
      return { status: r.status, url: url.href, body: await r.text() };
    }
    const r = await _fetch(url, jar, method, form);
    const location = r.headers.location;
    if (r.status >= 300 && r.status < 400 && typeof location === 'string') {
      url = new URL(location, url);
      method = 'GET';
      form = undefined;
      continue;
    }
    const f = /<form[^>]*action="([^"]*)"[^>]*>([\s\S]*?)<\/form>/.exec(r.body) ??
      /<form[^>]*>([\s\S]*?)<\/form>/.exec(r.body);
    if (f === null || r.status !== 200) return { status: r.status, url: url.href, body: r.body };
    const inner = f.length === 3 ? f[2] as string : f[1] as string;
    const action = f.length === 3 ? f[1] as string : url.pathname;
    form = new URLSearchParams();
    for (const input of inner.matchAll(/<input[^>]*>/g)) {
      const name = /name="([^"]*)"/.exec(input[0])?.[1];
      const value = /value="([^"]*)"/.exec(input[0])?.[1] ?? '';
      if (name !== undefined) form.set(name, value);
    }
    if (r.body.includes('op.deviceConfirmForm')) form.set('confirm', 'yes');
    url = new URL(action, url);
    method = 'POST';
  }
  throw new Error(`browse: too many steps from ${start}`);
}
