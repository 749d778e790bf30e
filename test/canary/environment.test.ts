/**
 * The agent controls its environment (SPEC §6): proxy variables are ignored (the request goes
 * straight to the allowed host and the attacker's proxy receives nothing), variables that widen TLS
 * trust make the run refuse before anything is sent, and without --cacert the test CA is not trusted.
 */
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, type Canary, requestsWith, setupCanary } from '../helpers/canary.ts';

let f: Canary;
let proxy: string;
let tlsProxy: string;

beforeAll(async () => {
  f = await setupCanary();
  // The attacker's listeners double as proxies: whatever a client sends a proxy is recorded.
  proxy = `http://127.0.0.1:${f.plainAttacker.port}`;
  tlsProxy = `https://127.0.0.1:${f.attacker.port}`;
});
afterAll(() => f.close());

describe.concurrent('proxy variables are ignored', () => {
  const cases: Array<[string, () => Record<string, string>]> = [
    ['HTTPS_PROXY', () => ({ HTTPS_PROXY: proxy })],
    ['https_proxy', () => ({ https_proxy: proxy })],
    ['HTTP_PROXY', () => ({ HTTP_PROXY: proxy })],
    ['http_proxy', () => ({ http_proxy: proxy })],
    ['ALL_PROXY', () => ({ ALL_PROXY: proxy })],
    ['all_proxy', () => ({ all_proxy: proxy })],
    ['HTTPS_PROXY over TLS', () => ({ HTTPS_PROXY: tlsProxy })],
    [
      'HTTPS_PROXY with NODE_USE_ENV_PROXY=1',
      () => ({ HTTPS_PROXY: proxy, NODE_USE_ENV_PROXY: '1' }),
    ],
    ['HTTPS_PROXY with NODE_OPTIONS=--use-env-proxy', () => ({
      HTTPS_PROXY: proxy,
      NODE_OPTIONS: '--use-env-proxy',
    })],
    [
      'NO_PROXY naming the attacker',
      () => ({ HTTPS_PROXY: proxy, NO_PROXY: 'evil.test,127.0.0.1' }),
    ],
    ['no_proxy naming the attacker', () => ({ https_proxy: proxy, no_proxy: 'evil.test' })],
    ['every variable at once', () => ({
      HTTPS_PROXY: proxy,
      https_proxy: proxy,
      HTTP_PROXY: proxy,
      http_proxy: proxy,
      ALL_PROXY: proxy,
      all_proxy: proxy,
      NO_PROXY: 'evil.test',
      NODE_USE_ENV_PROXY: '1',
    })],
  ];
  for (const [name, env] of cases) {
    it(name, async () => {
      const m = f.marker();
      const r = await f.exec(bearer('https://api.allowed.test/direct', m), { env: env() });
      expect(r.code, r.stderr).toBe(0);
      expect(f.receivedBy(m)).toEqual(['allowed']);
      expect(f.plainAttacker.rawBytes().length, 'the proxy received bytes').toBe(0);
      expect(f.attacker.rawBytes().length, 'the TLS proxy received bytes').toBe(0);
      const [req] = requestsWith(f.allowed, m);
      expect(req.headers.authorization).toBe(`Bearer ${f.canary}`);
      f.expectClean(r);
    });
  }
});

describe.concurrent('variables that widen TLS trust: exit 4, nothing sent', () => {
  const cases: Array<[string, () => Record<string, string>]> = [
    ['NODE_TLS_REJECT_UNAUTHORIZED=0', () => ({ NODE_TLS_REJECT_UNAUTHORIZED: '0' })],
    ['NODE_EXTRA_CA_CERTS', () => ({ NODE_EXTRA_CA_CERTS: f.caFile })],
    ['SSL_CERT_FILE', () => ({ SSL_CERT_FILE: f.caFile })],
    ['SSL_CERT_DIR', () => ({ SSL_CERT_DIR: path.dirname(f.caFile) })],
    ['DENO_CERT', () => ({ DENO_CERT: f.caFile })],
  ];
  for (const [name, env] of cases) {
    for (const cacert of [true, false]) {
      it(`${name}, ${cacert ? 'with' : 'without'} --cacert`, async () => {
        const m = f.marker();
        const r = await f.exec(bearer('https://api.allowed.test/', m), { env: env(), cacert });
        expect(r.code, r.stderr).toBe(4);
        expect(r.stderr).toContain(name.split('=')[0]);
        expect(f.receivedBy(m)).toEqual([]);
        f.expectClean(r);
      });
    }
  }

  it('refuses before asking for the password', async () => {
    const m = f.marker();
    const r = await f.exec(bearer('https://api.allowed.test/', m), {
      env: { NODE_TLS_REJECT_UNAUTHORIZED: '0' },
      password: false,
    });
    expect(r.code, r.stderr).toBe(4);
    expect(f.receivedBy(m)).toEqual([]);
  });
});

describe.concurrent('trust comes only from --cacert', () => {
  it('without --cacert the test CA is not trusted: exit 7, nothing reaches HTTP', async () => {
    const m = f.marker();
    const r = await f.exec(bearer('https://api.allowed.test/', m), { cacert: false });
    expect(r.code, r.stderr).toBe(7);
    expect(requestsWith(f.allowed, m)).toEqual([]);
    expect(f.receivedBy(m)).toEqual([]);
    f.expectClean(r);
  });
});
