/**
 * `ANY /v1/gateway/CRED/PATH` (SPEC §8) against the canary fixture: the agent token is taken from
 * whichever auth header the client used and never forwarded, routing and hop-by-hop headers are
 * dropped, the body goes through as opaque bytes, path tricks cannot leave the base URL's host,
 * redirects come back unfollowed, reflections are redacted, and credentials that cannot be used
 * through the gateway get a clear refusal (after the token and grant checks).
 */
import { Buffer } from 'node:buffer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Canary, newCanary, setupCanary } from '../helpers/canary.ts';
import {
  asRun,
  header,
  http,
  type HttpOptions,
  type HttpResult,
  json,
  scriptedUpstream,
  type Served,
  startServe,
} from '../helpers/serve.ts';

const up = scriptedUpstream();
const BASE = ['--allowed-domains', 'api.allowed.test', '--base-url', 'https://api.allowed.test'];
let f: Canary;
let s: Served;

beforeAll(async () => {
  f = await setupCanary({
    canary: newCanary({ special: true }),
    allowedRaw: up.onConnection,
    credentials: [
      {
        name: 'g',
        value: newCanary({ special: true }),
        flags: [...BASE, '--inject', 'Authorization: Bearer {{CREDENTIAL}}'],
      },
      {
        name: 'gk',
        value: newCanary(),
        flags: [...BASE, '--inject', 'x-api-key: {{CREDENTIAL}}'],
      },
      { name: 'nobase', value: newCanary(), flags: ['--allowed-domains', 'api.allowed.test'] },
      {
        name: 'ungranted',
        value: newCanary(),
        flags: [...BASE, '--inject', 'Authorization: Bearer {{CREDENTIAL}}'],
        grant: false,
      },
    ],
  });
  s = await startServe(f.t, [
    '--listen',
    '127.0.0.1:0',
    '--cacert',
    f.caFile,
    ...f.routes.flatMap((r) => ['--connect-to', r]),
  ]);
});
afterAll(async () => {
  const e = await s.stop();
  expect(e.code, e.stderr).toBe(0);
  await f.close();
  expect(Buffer.from(f.allowed.rawBytes()).includes(f.agent.token), 'token forwarded').toBe(false);
});

/** A gateway request carrying the marker in X-Case and the token in Authorization: Bearer. */
function _gw(
  path: string,
  marker: string,
  options: HttpOptions & { auth?: [string, string] | null } = {},
) {
  const auth = options.auth === undefined
    ? ['Authorization', `Bearer ${f.agent.token}`] as [string, string]
    : options.auth;
  const extra = Array.isArray(options.headers)
    ? options.headers
    : Object.entries(options.headers ?? {});
  return http(s, path, {
    ...options,
    headers: [...(auth === null ? [] : [auth]), ['X-Case', marker], ...extra],
  });
}

function _received(marker: string) {
  return up.requests.filter((r) => r.headers['x-case'] === marker);
}

function _value(name: string): string {
  return f.canaries[['g', 'gk'].indexOf(name) + 1] as string;
}

describe.concurrent('forwarding', () => {
  it('GET with a query: base URL + path + query, the inject header, a redacted echo', async () => {
    const m = f.marker();
    const r = await _gw('/v1/gateway/g/v1/models?limit=2&q=a%20b', m);
    expect(r.status, r.body.toString()).toBe(200);
    const [got] = _received(m);
    expect(got?.path).toBe('/v1/models?limit=2&q=a%20b');
    expect(got?.headers.host).toBe('api.allowed.test');
    expect(got?.headers.authorization).toBe(`Bearer ${_value('g')}`);
    expect(json(r).headers.authorization).toBe('Bearer [REDACTED:g]');
    expect(f.receivedBy(m)).toEqual(['allowed']);
    f.expectClean(asRun(r));
  });

  for (
    const [name, value] of [['x-api-key', 'TOKEN'], ['api-key', 'TOKEN'], [
      'x-goog-api-key',
      'TOKEN',
    ], ['Authorization', 'bearer TOKEN']]
  ) {
    it(`takes the token from ${name}, and forwards none of the auth headers`, async () => {
      const m = f.marker();
      const r = await _gw('/v1/gateway/gk/v1/x', m, {
        auth: [name, value.replace('TOKEN', f.agent.token)],
      });
      expect(r.status, r.body.toString()).toBe(200);
      const [got] = _received(m);
      expect(got?.headers['x-api-key']).toBe(_value('gk'));
      expect(got?.headers['api-key']).toBeUndefined();
      expect(got?.headers['x-goog-api-key']).toBeUndefined();
      expect(got?.headers.authorization).toBeUndefined();
      f.expectClean(asRun(r));
    });
  }

  it('several auth headers: Authorization wins, and none of them is forwarded', async () => {
    const m = f.marker();
    const r = await _gw('/v1/gateway/g/x', m, {
      headers: [['X-Api-Key', 'junk-1'], ['Api-Key', 'junk-2'], ['X-Goog-Api-Key', 'junk-3']],
    });
    expect(r.status, r.body.toString()).toBe(200);
    const got = _received(m)[0]?.headers ?? {};
    expect(got.authorization).toBe(`Bearer ${_value('g')}`);
    expect([got['x-api-key'], got['api-key'], got['x-goog-api-key']]).toEqual([
      undefined,
      undefined,
      undefined,
    ]);
  });

  it('drops hop-by-hop, routing, proxy and serve headers; keeps the rest, repeated ones joined', async () => {
    const m = f.marker();
    const r = await _gw('/v1/gateway/g/h', m, {
      headers: [
        ['Connection', 'X-Hop'],
        ['X-Hop', 'dropped'],
        ['X-Forwarded-For', '10.0.0.1'],
        ['Forwarded', 'for=10.0.0.1'],
        ['Proxy-Authorization', 'Basic eA=='],
        ['Via', '1.1 someone'],
        ['Trust-Protocol-Timeout', '30'],
        ['Accept-Encoding', 'gzip, br'],
        ['X-Keep', 'one'],
        ['X-Keep', 'two'],
        ['Accept', 'application/json'],
      ],
    });
    expect(r.status, r.body.toString()).toBe(200);
    const got = _received(m)[0]?.headers ?? {};
    for (
      const dropped of [
        'x-hop',
        'x-forwarded-for',
        'forwarded',
        'proxy-authorization',
        'via',
        'trust-protocol-timeout',
      ]
    ) {
      expect(got[dropped], dropped).toBeUndefined();
    }
    expect(got['accept-encoding']).toBe('identity');
    expect(got['x-keep']).toBe('one, two');
    expect(got.accept).toBe('application/json');
  });

  it('the body goes through as opaque bytes: placeholders are not touched, binary is fine', async () => {
    const m = f.marker();
    const body = Buffer.concat([
      Buffer.from('{"prompt": "{{CREDENTIAL}} and {{ credential }} and {{CREDENTIAL:g}}"}'),
      Buffer.from([0, 0xff, 0xfe, 0x80, 0x0a]),
    ]);
    const r = await _gw('/v1/gateway/g/upload', m, {
      method: 'PUT',
      body,
      headers: { 'Content-Type': 'application/octet-stream' },
    });
    expect(r.status, r.body.toString()).toBe(200);
    const [got] = _received(m);
    expect(got?.method).toBe('PUT');
    expect(Buffer.compare(got?.body ?? Buffer.alloc(0), body)).toBe(0);
    expect(got?.headers['content-type']).toBe('application/octet-stream');
    f.expectClean(asRun(r));
  });

  it('every method is forwarded as received (POST, PATCH, DELETE, HEAD, OPTIONS)', async () => {
    for (const method of ['POST', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS']) {
      const m = f.marker();
      const r = await _gw('/v1/gateway/g/m', m, {
        method,
        ...(method === 'POST' ? { body: 'x=1' } : {}),
      });
      expect(r.status, `${method}: ${r.body}`).toBe(200);
      expect(_received(m)[0]?.method).toBe(method);
    }
  });
});

// Only the credential's own --inject rule is a template: whatever the client sends is data (#14).
describe.concurrent("the client's headers, path and query are data, never templates", () => {
  it("a placeholder in a client header is sent as text, never another credential's value", async () => {
    const m = f.marker();
    const r = await _gw('/v1/gateway/g/x', m, {
      headers: [
        ['X-Other', '{{CREDENTIAL:gk}}'],
        ['X-Other-B64', 'Basic {{CREDENTIAL:gk|base64}}'],
        ['X-Self', '{{CREDENTIAL}}'],
      ],
    });
    expect(r.status, r.body.toString()).toBe(200);
    const [got] = _received(m);
    const seen = JSON.stringify(got);
    for (const value of [_value('gk'), Buffer.from(_value('gk')).toString('base64')]) {
      expect(seen).not.toContain(value);
    }
    expect(got?.headers['x-other']).toBe('{{CREDENTIAL:gk}}');
    expect(got?.headers['x-other-b64']).toBe('Basic {{CREDENTIAL:gk|base64}}');
    expect(got?.headers['x-self']).toBe('{{CREDENTIAL}}');
    expect(got?.headers.authorization).toBe(`Bearer ${_value('g')}`);
    const withG = Object.entries(got?.headers ?? {}).filter(([, v]) => v.includes(_value('g')));
    expect(withG.map(([name]) => name)).toEqual(['authorization']);
    f.expectClean(asRun(r));
  });

  it('a placeholder in the path or query is sent as text too', async () => {
    const m = f.marker();
    const r = await _gw('/v1/gateway/g/{{CREDENTIAL:gk}}/x?q={{CREDENTIAL:gk}}', m);
    expect(r.status, r.body.toString()).toBe(200);
    const [got] = _received(m);
    expect(got?.path).toBe('/%7B%7BCREDENTIAL:gk%7D%7D/x?q={{CREDENTIAL:gk}}');
    expect(JSON.stringify(got)).not.toContain(_value('gk'));
    f.expectClean(asRun(r));
  });

  it('a header that merely mentions {{credential is forwarded as is (no 400)', async () => {
    const m = f.marker();
    const r = await _gw('/v1/gateway/g/x?doc={{%20credential', m, {
      headers: [['X-Note', 'see {{credential in the docs'], ['X-Prompt', '{{ CREDENTIAL }}']],
    });
    expect(r.status, r.body.toString()).toBe(200);
    const [got] = _received(m);
    expect(got?.headers['x-note']).toBe('see {{credential in the docs');
    expect(got?.headers['x-prompt']).toBe('{{ CREDENTIAL }}');
    expect(got?.path).toBe('/x?doc={{%20credential');
    f.expectClean(asRun(r));
  });
});

describe.concurrent('what cannot get out', () => {
  const TRICKS = [
    '/v1/gateway/g/@evil.test/x',
    '/v1/gateway/g//evil.test/x',
    '/v1/gateway/g/..',
    '/v1/gateway/g/a/../../x',
    '/v1/gateway/g/%2e%2e/x',
    '/v1/gateway/g/.%2E/x',
    '/v1/gateway/g/a\\..\\x',
    '/v1/gateway/g\\@evil.test/x',
    '/v1/gateway/g@evil.test/x',
    '/v1/gateway/g:443@evil.test/x',
    '/v1/gateway/g/%40evil.test',
    '/v1/gateway/g?@evil.test/',
    '/v1/gateway/g#@evil.test/',
  ];
  for (const path of TRICKS) {
    it(`path trick ${JSON.stringify(path)}: refused, or sent to the allowed host only`, async () => {
      const m = f.marker();
      const r = await _gw(path, m).catch(() => null);
      if (r !== null) f.expectClean(asRun(r));
      expect(['allowed', undefined]).toContain(f.receivedBy(m)[0]);
      expect(f.receivedBy(m).length).toBeLessThanOrEqual(1);
      if (r !== null && r.status === 200) {
        expect(_received(m)[0]?.headers.host).toBe('api.allowed.test');
        expect(_received(m)[0]?.path).not.toMatch(/(^|\/)\.\.?(\/|$)/);
      }
    });
  }

  it('dot segments and backslashes are refused with 400', async () => {
    for (const path of ['/v1/gateway/g/a/../x', '/v1/gateway/g/%2E%2e/x', '/v1/gateway/g/a\\b']) {
      const m = f.marker();
      const r = await _gw(path, m);
      expect(r.status, path).toBe(400);
      expect(json(r).error.code).toBe('bad_gateway_path');
      expect(f.receivedBy(m)).toEqual([]);
    }
  });

  it('a redirect comes back unfollowed', async () => {
    const m = f.marker();
    const r = await _gw('/v1/gateway/g/r/307/absolute', m, { method: 'POST', body: '{}' });
    expect(r.status).toBe(307);
    expect(header(r, 'location')).toBe('https://evil.test/steal');
    expect(f.receivedBy(m)).toEqual(['allowed']);
    expect(up.requests.some((q) => q.path === '/steal')).toBe(false);
  });

  for (
    const [name, match] of [
      ['raw', /^before \[REDACTED:g\] after$/],
      ['sse-half', /^data: \[REDACTED:g\]\n\n$/],
      ['sse-bytes', /^data: \[REDACTED:g\]\n\ndata: done\n\n$/],
      ['json', /^\{"echo":"\[REDACTED:g\]"\}$/],
    ] as const
  ) {
    it(`a reflection (${name}) is redacted`, async () => {
      const r = await _gw(`/v1/gateway/g/reflect/${name}`, f.marker());
      expect(r.status).toBe(200);
      expect(r.body.toString('latin1')).toMatch(match);
      f.expectClean(asRun(r));
    });
  }
});

describe.concurrent('refusals', () => {
  async function _refused(r: Promise<HttpResult>, marker: string, status: number, code: string) {
    const res = await r;
    expect(res.status, res.body.toString()).toBe(status);
    expect(json(res).error.code).toBe(code);
    expect(f.receivedBy(marker)).toEqual([]);
    f.expectClean(asRun(res));
  }

  it('no token or a bad one: 401, whatever the credential', async () => {
    for (const cred of ['g', 'nobase', 'no-such']) {
      const m = f.marker();
      await _refused(_gw(`/v1/gateway/${cred}/x`, m, { auth: null }), m, 401, 'no_token');
      const n = f.marker();
      await _refused(
        _gw(`/v1/gateway/${cred}/x`, n, { auth: ['x-api-key', 'tpat_bad'] }),
        n,
        401,
        'bad_token',
      );
    }
  });

  it('an ungranted or unknown credential: 403 not_granted (no hint of how it is set up)', async () => {
    for (const cred of ['ungranted', 'no-such']) {
      const m = f.marker();
      await _refused(_gw(`/v1/gateway/${cred}/x`, m), m, 403, 'not_granted');
    }
  });

  it('a granted credential without a base URL: 400 naming what is missing', async () => {
    const m = f.marker();
    const r = await _gw('/v1/gateway/nobase/x', m);
    await _refused(Promise.resolve(r), m, 400, 'no_base_url');
    expect(json(r).error.message).toContain('no base URL');
    expect(json(r).error.hint).toContain('--base-url');
  });

  it('each refusal names its request.denied entry in Trust-Protocol-Audit-Seq', async () => {
    const { readFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    for (
      const [cred, code] of [['ungranted', 'not_granted'], ['no-such', 'not_granted'], [
        'nobase',
        'no_base_url',
      ]]
    ) {
      const r = await _gw(`/v1/gateway/${cred}/seq`, f.marker());
      expect(json(r).error.code).toBe(code);
      const seq = header(r, 'trust-protocol-audit-seq');
      expect(seq, `${cred}: no audit seq`).toMatch(/^\d+$/);
      const entry = readFileSync(join(f.t.home, 'audit', 'audit.log'), 'utf8').trim().split('\n')
        .map((l) => JSON.parse(l)).find((l) => l.seq === Number(seq));
      expect(entry).toMatchObject({
        event: 'request.denied',
        data: { reason: code, credentials: [cred] },
      });
    }
  });

  it('a GET with a body: 400', async () => {
    const m = f.marker();
    await _refused(_gw('/v1/gateway/g/x', m, { method: 'GET', body: 'x' }), m, 400, 'bad_template');
  });

  it('a brake on the credential: 423; lifted: 200', async () => {
    const on = await f.t.tp([
      'emergency',
      'activate',
      '--scope',
      'credential',
      '--credential-name',
      'gk',
      '--reason',
      't',
    ]);
    expect(on.code, on.stderr).toBe(0);
    const m = f.marker();
    await _refused(_gw('/v1/gateway/gk/x', m), m, 423, 'brake_credential');
    const off = await f.t.tp([
      'emergency',
      'clear',
      '--scope',
      'credential',
      '--credential-name',
      'gk',
      '--password-file',
      f.t.passwordFile,
    ]);
    expect(off.code, off.stderr).toBe(0);
    expect((await _gw('/v1/gateway/gk/x', f.marker())).status).toBe(200);
  });
});
