/**
 * The agent controls its environment (SPEC §6): proxy variables are ignored (the request goes
 * straight to the allowed host and the attacker's proxy receives nothing), so are resolver variables
 * (the name resolves as the system's own configuration says) and CA variables (one note says so;
 * the test CA is trusted only through --cacert); NODE_TLS_REJECT_UNAUTHORIZED=0 makes the run
 * refuse before anything is sent.
 */
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { bearer, type Canary, newCanary, requestsWith, setupCanary } from '../helpers/canary.ts';
import { run } from '../helpers/cli.ts';
import { echoHandler, type Listener, startHttpsListener } from '../helpers/listeners.ts';
import { type Served, startServe } from '../helpers/serve.ts';

let f: Canary;
let proxy: string;
let tlsProxy: string;
/** A plain listener reached as http://localhost:PORT, a name /etc/hosts resolves. */
let local: Listener;
/** A single-label name that neither /etc/hosts nor DNS knows: only DNS is asked about it. */
const DNS_ONLY = 'tp-resolver-test-none';

beforeAll(async () => {
  local = await startHttpsListener(echoHandler, { tls: false });
  f = await setupCanary({
    credentials: [{
      name: 'local',
      value: newCanary(),
      flags: ['--allowed-domains', `http://localhost:${local.port},http://${DNS_ONLY}`],
    }],
  });
  // The attacker's listeners double as proxies: whatever a client sends a proxy is recorded.
  proxy = `http://127.0.0.1:${f.plainAttacker.port}`;
  tlsProxy = `https://127.0.0.1:${f.attacker.port}`;
});
afterAll(async () => {
  await local.close();
  await f.close();
});

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

/**
 * glibc's getaddrinfo, which Node and Deno both use, reads these from the process environment:
 * HOSTALIASES maps a single-label name to another name before DNS is asked, LOCALDOMAIN replaces
 * the search domains and RES_OPTIONS sets ndots (which names get a search domain appended first);
 * RESOLV_HOST_CONF names another host.conf. A FIFO that nobody writes to stands for the file: a
 * run that opened it would block until the helper kills it (exit 137).
 */
describe.concurrent('resolver variables are ignored', () => {
  function _fifo(): string {
    const fifo = path.join(f.t.dir, `${f.marker()}.fifo`);
    expect(spawnSync('mkfifo', ['-m', '600', fifo]).status).toBe(0);
    return fifo;
  }

  function _local(url: string, marker: string) {
    return {
      credential: 'local',
      method: 'GET',
      url,
      headers: { Authorization: 'Bearer {{CREDENTIAL}}', 'X-Case': marker },
    };
  }

  it('HOSTALIASES is never read for a single-label name only DNS could resolve: exit 7', async () => {
    const m = f.marker();
    const r = await f.exec(_local(`http://${DNS_ONLY}/`, m), { env: { HOSTALIASES: _fifo() } });
    expect(r.code, r.stderr).toBe(7);
    expect(r.stderr).toContain(`cannot resolve ${DNS_ONLY}`);
    expect(f.receivedBy(m)).toEqual([]);
    expect(requestsWith(local, m)).toEqual([]);
    f.expectClean(r);
  });

  it('RESOLV_HOST_CONF is never read: localhost resolves as /etc/hosts says', async () => {
    const m = f.marker();
    const r = await f.exec(_local(`http://localhost:${local.port}/`, m), {
      env: { RESOLV_HOST_CONF: _fifo() },
    });
    expect(r.code, r.stderr).toBe(0);
    expect(requestsWith(local, m)).toHaveLength(1);
    expect(f.receivedBy(m)).toEqual([]);
    f.expectClean(r);
  });

  it('HOSTALIASES, LOCALDOMAIN and RES_OPTIONS pointing elsewhere: the request goes where /etc/hosts says', async () => {
    const aliases = path.join(f.t.dir, `${f.marker()}.aliases`);
    writeFileSync(aliases, 'localhost evil.test\n');
    const m = f.marker();
    const r = await f.exec(_local(`http://localhost:${local.port}/`, m), {
      env: { HOSTALIASES: aliases, LOCALDOMAIN: 'evil.test', RES_OPTIONS: 'ndots:15 attempts:1' },
    });
    expect(r.code, r.stderr).toBe(0);
    const [req] = requestsWith(local, m);
    expect(req?.headers.authorization).toBe(`Bearer ${f.canaries[1]}`);
    expect(f.receivedBy(m)).toEqual([]);
    f.expectClean(r);
  });
});

describe.concurrent('variables that switch verification off: exit 4, nothing sent', () => {
  for (const cacert of [true, false]) {
    it(`NODE_TLS_REJECT_UNAUTHORIZED=0, ${cacert ? 'with' : 'without'} --cacert`, async () => {
      const m = f.marker();
      const r = await f.exec(bearer('https://api.allowed.test/', m), {
        env: { NODE_TLS_REJECT_UNAUTHORIZED: '0' },
        cacert,
      });
      expect(r.code, r.stderr).toBe(4);
      expect(r.stderr).toContain('NODE_TLS_REJECT_UNAUTHORIZED');
      expect(f.receivedBy(m)).toEqual([]);
      f.expectClean(r);
    });
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

/** Each way the agent's environment could name a CA for the runtime to trust. */
const CA_VARIABLES: Array<[string, (ca: string) => Record<string, string>]> = [
  ['NODE_EXTRA_CA_CERTS', (ca) => ({ NODE_EXTRA_CA_CERTS: ca })],
  ['SSL_CERT_FILE', (ca) => ({ SSL_CERT_FILE: ca })],
  ['SSL_CERT_DIR', (ca) => ({ SSL_CERT_DIR: path.dirname(ca) })],
  ['DENO_CERT', (ca) => ({ DENO_CERT: ca })],
  ['DENO_TLS_CA_STORE', (ca) => ({ DENO_TLS_CA_STORE: 'system', SSL_CERT_FILE: ca })],
  ['SSL_CERT_FILE', (ca) => ({ NODE_OPTIONS: '--use-openssl-ca', SSL_CERT_FILE: ca })],
  ['SSL_CERT_FILE', (ca) => ({ NODE_USE_SYSTEM_CA: '1', SSL_CERT_FILE: ca })],
  ['NODE_EXTRA_CA_CERTS', (ca) => ({
    NODE_EXTRA_CA_CERTS: ca,
    SSL_CERT_FILE: ca,
    SSL_CERT_DIR: path.dirname(ca),
    DENO_CERT: ca,
    DENO_TLS_CA_STORE: 'mozilla,system',
  })],
];

/** The one note: it names the variables, never a certificate. */
function _notes(stderr: string): string[] {
  return stderr.split('\n').filter((l) => l.startsWith('trust-protocol: note: ignoring'));
}

describe.concurrent('CA variables are ignored, with one note', () => {
  for (const [name, env] of CA_VARIABLES) {
    const vars = Object.keys(env('')).join(' ');
    it(`${vars} naming the test CA, no --cacert: not trusted, exit 7, nothing sent`, async () => {
      const m = f.marker();
      const r = await f.exec(bearer('https://api.allowed.test/', m), {
        env: env(f.caFile),
        cacert: false,
      });
      expect(r.code, r.stderr).toBe(7);
      expect(r.stderr).toContain('TLS with api.allowed.test failed');
      expect(_notes(r.stderr)).toHaveLength(1);
      expect(_notes(r.stderr)[0]).toContain(name);
      expect(f.receivedBy(m)).toEqual([]);
      f.expectClean(r);
    });
  }

  it('set to the system bundle as many machines do, with --cacert: exit 0 and one note', async () => {
    const m = f.marker();
    const r = await f.exec(bearer('https://api.allowed.test/', m), {
      env: {
        NODE_EXTRA_CA_CERTS: '/etc/ssl/certs/ca-certificates.crt',
        SSL_CERT_FILE: '/etc/ssl/certs/ca-certificates.crt',
        SSL_CERT_DIR: '/etc/ssl/certs',
      },
    });
    expect(r.code, r.stderr).toBe(0);
    expect(f.receivedBy(m)).toEqual(['allowed']);
    expect(_notes(r.stderr)).toEqual([
      'trust-protocol: note: ignoring NODE_EXTRA_CA_CERTS, SSL_CERT_FILE, SSL_CERT_DIR: ' +
      'TLS trusts only the bundled roots, or --cacert',
    ]);
    expect(r.stderr).not.toContain('/etc/ssl');
    f.expectClean(r);
  });

  it('--quiet leaves the note out', async () => {
    const m = f.marker();
    const r = await f.exec(bearer('https://api.allowed.test/', m), {
      env: { SSL_CERT_FILE: '/etc/ssl/certs/ca-certificates.crt' },
      args: ['--quiet'],
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
  });

  it('serve started with them ignores them too: the test CA only through --cacert', async () => {
    const env = (CA_VARIABLES[CA_VARIABLES.length - 1] as (typeof CA_VARIABLES)[0])[1](f.caFile);
    const routes = f.routes.flatMap((r) => ['--connect-to', r]);
    const socket = (name: string) => ['--socket', path.join(f.t.dir, `${name}.sock`)];
    const [bare, trusting] = await Promise.all([
      startServe(f.t, [...socket('ca-env-bare'), ...routes], { env }),
      startServe(f.t, [...socket('ca-env-cacert'), '--cacert', f.caFile, ...routes], { env }),
    ]);
    try {
      const viaServe = (s: Served, m: string) =>
        run([
          'exec',
          '--template',
          f.t.file(
            `${m}.json`,
            JSON.stringify(bearer(
              'https://api.allowed.test/',
              m,
            )),
          ),
          '--server',
          `unix:${s.socket}`,
        ], { env: { TRUST_PROTOCOL_TOKEN: f.agent.token } });
      const [m1, m2] = [f.marker(), f.marker()];
      const [refused, served] = await Promise.all([viaServe(bare, m1), viaServe(trusting, m2)]);
      expect(refused.code, refused.stderr).toBe(7);
      expect(f.receivedBy(m1)).toEqual([]);
      expect(served.code, served.stderr).toBe(0);
      expect(f.receivedBy(m2)).toEqual(['allowed']);
      f.expectClean(refused);
      f.expectClean(served);
    } finally {
      await Promise.all([bare.stop(), trusting.stop()]);
    }
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
