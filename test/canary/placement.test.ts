/**
 * Placement and template validity (SPEC §5): where a placeholder may go, which headers a template
 * may set, the exact placeholder grammar, and that every credential a template names is checked on
 * its own. Refusals happen before anything is sent; allowed placements deliver the value exactly.
 */
import { Buffer } from 'node:buffer';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunResult } from '../helpers/cli.ts';
import type { Recorded } from '../helpers/listeners.ts';
import {
  bearer,
  type Canary,
  expectNoCanary,
  newCanary,
  requestsWith,
  setupCanary,
} from '../helpers/canary.ts';

const ALLOWED = ['--allowed-domains', 'api.allowed.test'];
const PATH_VALUE = newCanary({ special: true });
const QUERY_VALUE = newCanary({ special: true });
const BODY_VALUE = newCanary({ special: true });
const ALL_VALUE = newCanary({ special: true });
const ANY_VALUE = newCanary({ special: true });
const SECOND_VALUE = newCanary();
const UNGRANTED_VALUE = newCanary();
const OTHER_VALUE = 'other-value-allowed-on-evil-test';

let f: Canary;

/**
 * Echoes what it received, so redaction of the echo is tested: method, path and headers as a JSON
 * line, then the body as received (not JSON-escaped a second time: nested encodings are not among
 * the forms SPEC §6 redacts).
 */
function _echo(_req: IncomingMessage, res: ServerResponse, recorded: Recorded): void {
  const { method, path, headers } = recorded;
  res.writeHead(200, { 'content-type': 'text/plain' });
  const head = JSON.stringify({ method, path, headers });
  // Twice: as JSON.stringify writes it, and with `/` escaped as PHP's json_encode writes it.
  res.end(
    Buffer.concat([Buffer.from(`${head}\n${head.replaceAll('/', '\\/')}\n`), recorded.body]),
  );
}

beforeAll(async () => {
  f = await setupCanary({
    tier: 'PARTNER',
    allowedHandler: _echo,
    credentials: [
      { name: 'kp', value: PATH_VALUE, flags: [...ALLOWED, '--placement', 'path'] },
      { name: 'kq', value: QUERY_VALUE, flags: [...ALLOWED, '--placement', 'query'] },
      { name: 'kb', value: BODY_VALUE, flags: [...ALLOWED, '--placement', 'body'] },
      {
        name: 'kall',
        value: ALL_VALUE,
        flags: [...ALLOWED, '--placement', 'header,path,query,body'],
      },
      { name: 'second', value: SECOND_VALUE, flags: ALLOWED },
      { name: 'ungranted', value: UNGRANTED_VALUE, flags: ALLOWED, grant: false },
      // Any https host passes the early domain check, so only placement stops a host trick.
      { name: 'kany', value: ANY_VALUE, flags: ['--any-domain', '--placement', 'path'] },
      {
        name: 'other',
        value: OTHER_VALUE,
        flags: ['--allowed-domains', 'evil.test'],
        canary: false,
      },
    ],
  });
});
afterAll(() => f.close());

function _expectNothingSent(r: RunResult, marker: string, code: number): void {
  expect(r.code, r.stderr).toBe(code);
  expect(f.receivedBy(marker)).toEqual([]);
  f.expectClean(r);
  expectNoCanary(r.stdout + r.stderr, OTHER_VALUE, "the agent's output");
}

function _received(marker: string): Recorded {
  const found = requestsWith(f.allowed, marker);
  expect(found).toHaveLength(1);
  expect(f.receivedBy(marker)).toEqual(['allowed']);
  return found[0];
}

// Characters that would change a URL's structure if a value carried them unencoded.
const PATH_SEGMENT = /^(?:[A-Za-z0-9\-._~!$'()*,;:@]|%[0-9A-Fa-f]{2})*$/;
const QUERY_VALUE_TEXT = /^(?:[A-Za-z0-9\-._~!$'()*,;:@/?]|%[0-9A-Fa-f]{2})*$/;

describe.concurrent('placeholders in the scheme, host, port, userinfo or fragment: exit 2', () => {
  const urls = [
    'https://{{CREDENTIAL}}.allowed.test/',
    'https://{{CREDENTIAL}}/',
    'https://api.allowed.test.{{CREDENTIAL}}/',
    'https://{{CREDENTIAL}}@api.allowed.test/',
    'https://user:{{CREDENTIAL}}@api.allowed.test/',
    'https://api.allowed.test:{{CREDENTIAL}}/',
    '{{CREDENTIAL}}://api.allowed.test/',
    'https{{CREDENTIAL}}://api.allowed.test/',
    'https://api.allowed.test/x#{{CREDENTIAL}}',
    'https://api.allowed.test/x?q=1#frag{{CREDENTIAL}}',
    'https://{{CREDENTIAL:kall}}.allowed.test/',
    'https://api.allowed.test/x#{{CREDENTIAL:kall|base64}}',
  ];
  for (const url of urls) {
    it(JSON.stringify(url), async () => {
      const m = f.marker();
      const r = await f.exec({ credential: 'kall', url, headers: { 'X-Case': m } });
      _expectNothingSent(r, m, 2);
    });
  }

  it('in the method or a header name', async () => {
    for (
      const extra of [
        { method: '{{CREDENTIAL}}' },
        { headers: { '{{CREDENTIAL}}': 'x', Authorization: 'Bearer {{CREDENTIAL}}' } },
      ]
    ) {
      const m = f.marker();
      const t = { credential: 'kall', url: 'https://api.allowed.test/', headers: {}, ...extra };
      t.headers = { ...t.headers, 'X-Case': m };
      _expectNothingSent(await f.exec(t), m, 2);
    }
  });
});

// The text reads as a path, the URL parser (as fetch will) reads a host: placement is decided on
// the parsed URL, so these are refused before the password is asked or anything decrypted (#14).
describe.concurrent('placeholders the URL parser puts in the host: exit 2, no password asked', () => {
  const urls = [
    'https:///{{CREDENTIAL}}.allowed.test/',
    'https:////{{CREDENTIAL}}.allowed.test/x',
    'https://\\/{{CREDENTIAL}}.allowed.test/',
    'https:\\\\{{CREDENTIAL}}.allowed.test/',
    'https:{{CREDENTIAL}}.allowed.test/',
    'https://\t/{{CREDENTIAL}}.allowed.test/',
    'https://\n/{{CREDENTIAL}}.allowed.test/',
    'https:/\t/{{CREDENTIAL}}.allowed.test/',
    'https:///{{CREDENTIAL:kany}}/',
  ];
  for (const url of urls) {
    it(JSON.stringify(url), async () => {
      const m = f.marker();
      const r = await f.exec({ credential: 'kany', url, headers: { 'X-Case': m } }, {
        password: false,
      });
      _expectNothingSent(r, m, 2);
      expectNoCanary(r.stdout + r.stderr, ANY_VALUE, "the agent's output");
    });
  }

  it('with the password too: refused before any request.allowed entry', async () => {
    const m = f.marker();
    const url = 'https:///{{CREDENTIAL}}.allowed.test/';
    const r = await f.exec({ credential: 'kany', url, headers: { 'X-Case': m } });
    _expectNothingSent(r, m, 2);
    const audit = await f.t.tp(['audit', 'show', '--json', '--event', 'request']);
    expect(audit.code, audit.stderr).toBe(0);
    const allowed = audit.stdout.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l))
      .filter((e) => e.event === 'request.allowed' && e.data.credentials.includes('kany'));
    expect(allowed).toEqual([]);
  });
});

describe.concurrent('placements the credential does not allow: exit 4', () => {
  const cases: Array<[string, string, Record<string, unknown>]> = [
    ['header-only k in the path', 'k', { url: 'https://api.allowed.test/{{CREDENTIAL}}' }],
    ['header-only k in the query', 'k', { url: 'https://api.allowed.test/?key={{CREDENTIAL}}' }],
    ['header-only k in a JSON body', 'k', {
      method: 'POST',
      url: 'https://api.allowed.test/',
      body: { key: '{{CREDENTIAL}}' },
    }],
    ['header-only k in a text body', 'k', {
      method: 'POST',
      url: 'https://api.allowed.test/',
      body: 'key={{CREDENTIAL}}',
    }],
    ['path-only kp in the query', 'kp', { url: 'https://api.allowed.test/?key={{CREDENTIAL}}' }],
    ['query-only kq in the path', 'kq', { url: 'https://api.allowed.test/{{CREDENTIAL}}/x' }],
    ['body-only kb in a header', 'kb', {
      url: 'https://api.allowed.test/',
      headers: { Authorization: 'Bearer {{CREDENTIAL}}' },
    }],
    ['path-only kp base64-encoded in a header', 'kp', {
      url: 'https://api.allowed.test/',
      headers: { Authorization: 'Basic {{CREDENTIAL|base64}}' },
    }],
    ['kall in the path next to header-only k in the path', 'kall', {
      url: 'https://api.allowed.test/{{CREDENTIAL}}/{{CREDENTIAL:k}}',
    }],
  ];
  for (const [name, credential, template] of cases) {
    it(name, async () => {
      const m = f.marker();
      const headers = { ...(template.headers as Record<string, string> | undefined), 'X-Case': m };
      _expectNothingSent(await f.exec({ credential, ...template, headers }), m, 4);
    });
  }
});

describe.concurrent('allowed placements deliver the value exactly, and the echo is redacted', () => {
  it('path: percent-encoded into one segment', async () => {
    const m = f.marker();
    const r = await f.exec({
      credential: 'kp',
      url: 'https://api.allowed.test/v1/{{CREDENTIAL}}/x',
      headers: { 'X-Case': m },
    });
    expect(r.code, r.stderr).toBe(0);
    const { path } = _received(m);
    expect(path.startsWith('/v1/') && path.endsWith('/x')).toBe(true);
    const segment = path.slice('/v1/'.length, -'/x'.length);
    expect(segment).toMatch(PATH_SEGMENT);
    expect(decodeURIComponent(segment)).toBe(PATH_VALUE);
    expect(r.stdout).toContain('[REDACTED:kp]');
    f.expectClean(r);
  });

  it('query: percent-encoded into one parameter', async () => {
    const m = f.marker();
    const r = await f.exec({
      credential: 'kq',
      url: 'https://api.allowed.test/q?a=1&key={{CREDENTIAL}}&b=2',
      headers: { 'X-Case': m },
    });
    expect(r.code, r.stderr).toBe(0);
    const { path } = _received(m);
    const [route, query] = path.split('?', 2) as [string, string];
    expect(route).toBe('/q');
    const params = query.split('&');
    expect(params).toHaveLength(3);
    expect([params[0], params[2]]).toEqual(['a=1', 'b=2']);
    expect(params[1].startsWith('key=')).toBe(true);
    const value = params[1].slice('key='.length);
    expect(value).toMatch(QUERY_VALUE_TEXT);
    expect(decodeURIComponent(value)).toBe(QUERY_VALUE);
    expect(r.stdout).toContain('[REDACTED:kq]');
    f.expectClean(r);
  });

  it('JSON body: JSON-escaped inside the string', async () => {
    const m = f.marker();
    const r = await f.exec({
      credential: 'kb',
      method: 'POST',
      url: 'https://api.allowed.test/json',
      headers: { 'X-Case': m },
      body: { key: '{{CREDENTIAL}}', n: 1, nested: ['{{CREDENTIAL}}'] },
    });
    expect(r.code, r.stderr).toBe(0);
    const req = _received(m);
    expect(JSON.parse(Buffer.from(req.body).toString('utf8'))).toEqual({
      key: BODY_VALUE,
      n: 1,
      nested: [BODY_VALUE],
    });
    expect(r.stdout).toContain('[REDACTED:kb]');
    f.expectClean(r);
  });

  it('text body: sent as is', async () => {
    const m = f.marker();
    const r = await f.exec({
      credential: 'kb',
      method: 'POST',
      url: 'https://api.allowed.test/text',
      headers: { 'X-Case': m, 'Content-Type': 'text/plain' },
      body: 'token={{CREDENTIAL}};end',
    });
    expect(r.code, r.stderr).toBe(0);
    expect(Buffer.from(_received(m).body).toString('utf8')).toBe(`token=${BODY_VALUE};end`);
    expect(r.stdout).toContain('[REDACTED:kb]');
    f.expectClean(r);
  });

  it('header with |base64 (Basic auth) and a path with |base64', async () => {
    const m = f.marker();
    const r = await f.exec({
      credential: 'kall',
      url: 'https://api.allowed.test/b/{{CREDENTIAL|base64}}',
      headers: { Authorization: 'Basic {{CREDENTIAL|base64}}', 'X-Case': m },
    });
    expect(r.code, r.stderr).toBe(0);
    const req = _received(m);
    const b64 = Buffer.from(ALL_VALUE).toString('base64');
    // The `?` of a special canary always becomes a `/`, which the path percent-encodes and the
    // echo's second line escapes as `\/`: both break the base64 the raw value's forms know.
    expect(b64).toContain('/');
    expect(req.headers.authorization).toBe(`Basic ${b64}`);
    expect(decodeURIComponent(req.path.slice('/b/'.length))).toBe(b64);
    expect(r.stdout).toContain('[REDACTED:kall]');
    f.expectClean(r);
  });

  it('one pass: a value that looks like a placeholder is not re-scanned', async () => {
    const m = f.marker();
    const r = await f.exec({
      credential: 'kb',
      method: 'POST',
      url: 'https://api.allowed.test/once',
      headers: { 'X-Case': m, 'Content-Type': 'text/plain' },
      body: '{{CREDENTIAL}}{{CREDENTIAL}}',
    });
    expect(r.code, r.stderr).toBe(0);
    expect(Buffer.from(_received(m).body).toString('utf8')).toBe(BODY_VALUE + BODY_VALUE);
    f.expectClean(r);
  });
});

describe.concurrent('headers a template may not set: exit 2, nothing sent', () => {
  const forbidden: Array<[string, string]> = [
    ['Host', 'evil.test'],
    ['host', 'api.allowed.test'],
    ['X-Forwarded-Host', 'evil.test'],
    ['X-Forwarded-For', '127.0.0.1'],
    ['X-Forwarded-Proto', 'http'],
    ['Forwarded', 'host=evil.test'],
    ['Content-Length', '0'],
    ['Transfer-Encoding', 'chunked'],
    ['Connection', 'keep-alive'],
    ['Upgrade', 'websocket'],
    ['TE', 'trailers'],
    ['Trailer', 'X-Secret'],
    ['Expect', '100-continue'],
    ['Keep-Alive', 'timeout=5'],
    ['Proxy-Authorization', 'Bearer {{CREDENTIAL}}'],
    ['Proxy-Connection', 'keep-alive'],
  ];
  for (const [name, value] of forbidden) {
    it(`${name}: ${value}`, async () => {
      const m = f.marker();
      const t = bearer('https://api.allowed.test/', m);
      _expectNothingSent(await f.exec({ ...t, headers: { ...t.headers, [name]: value } }), m, 2);
    });
  }

  const malformed: Array<[string, Record<string, string>]> = [
    ['duplicate names in different case', { authorization: 'Bearer x' }],
    ['duplicate X-Case in different case', { 'x-case': 'again' }],
    ['CR LF in a value (header injection)', { 'X-Note': 'a\r\nX-Forwarded-Host: evil.test' }],
    ['LF in a value', { 'X-Note': 'a\nb' }],
    ['CR in a value', { 'X-Note': 'a\rb' }],
    ['NUL in a value', { 'X-Note': 'a\u0000b' }],
    ['CR LF in a name', { 'X-A\r\nX-B': '1' }],
    ['a space in a name', { 'X A': '1' }],
  ];
  for (const [name, extra] of malformed) {
    it(name, async () => {
      const m = f.marker();
      const t = bearer('https://api.allowed.test/', m);
      _expectNothingSent(await f.exec({ ...t, headers: { ...t.headers, ...extra } }), m, 2);
    });
  }

  it('CR LF after the placeholder in the secret header', async () => {
    const m = f.marker();
    const r = await f.exec({
      credential: 'k',
      url: 'https://api.allowed.test/',
      headers: { Authorization: 'Bearer {{CREDENTIAL}}\r\nHost: evil.test', 'X-Case': m },
    });
    _expectNothingSent(r, m, 2);
  });

  it('curl form: -H Host, -H X-Forwarded-Host, a CR LF in -H', async () => {
    for (
      const header of [
        'Host: evil.test',
        'X-Forwarded-Host: evil.test',
        'X-A: 1\r\nHost: evil.test',
      ]
    ) {
      const m = f.marker();
      const r = await f.exec([
        '-H',
        'Authorization: Bearer {{CREDENTIAL}}',
        '-H',
        `X-Case: ${m}`,
        '-H',
        header,
        '--credential',
        'k',
        'https://api.allowed.test/',
      ]);
      _expectNothingSent(r, m, 2);
    }
  });
});

describe.concurrent('malformed placeholders: exit 2, never sent literally', () => {
  const bad = [
    '{{ CREDENTIAL }}',
    '{{CREDENTIAL }}',
    '{{ CREDENTIAL}}',
    '{{\tCREDENTIAL}}',
    '{{credential}}',
    '{{Credential}}',
    '{{CREDENTIAL',
    '{{CREDENTIAL}',
    '{{CREDENTIAL:}}',
    '{{CREDENTIAL:k',
    '{{CREDENTIAL:{{CREDENTIAL}}}}',
    '{{CREDENTIAL|hex}}',
    '{{CREDENTIAL|base64|base64}}',
    '{{CREDENTIAL:k|hex}}',
    '{{CREDENTIAL:bad name}}',
    '{{CREDENTIAL:-k}}',
  ];
  for (const text of bad) {
    it(`${JSON.stringify(text)} in a header, the path and the body`, async () => {
      const templates = [
        { url: 'https://api.allowed.test/', headers: { Authorization: `Bearer ${text}` } },
        { url: `https://api.allowed.test/p/${text}`, headers: {} },
        { method: 'POST', url: 'https://api.allowed.test/', headers: {}, body: { key: text } },
      ];
      for (const t of templates) {
        const m = f.marker();
        const r = await f.exec({
          credential: 'kall',
          ...t,
          headers: { ...t.headers, 'X-Case': m },
        });
        _expectNothingSent(r, m, 2);
      }
    });
  }

  it('a valid placeholder next to a malformed one: nothing half-substituted is sent', async () => {
    const m = f.marker();
    const t = bearer('https://api.allowed.test/', m);
    const r = await f.exec({ ...t, headers: { ...t.headers, 'X-Other': '{{credential}}' } });
    _expectNothingSent(r, m, 2);
  });
});

describe.concurrent('every credential named is checked on its own', () => {
  it('a credential that is not granted: exit 4', async () => {
    const m = f.marker();
    const r = await f.exec({ ...bearer('https://api.allowed.test/', m), credential: 'ungranted' });
    _expectNothingSent(r, m, 4);
  });

  it('an unknown credential name: exit 4', async () => {
    const m = f.marker();
    const r = await f.exec({ ...bearer('https://api.allowed.test/', m), credential: 'nosuch' });
    _expectNothingSent(r, m, 4);
  });

  it('an ungranted one named with {{CREDENTIAL:ungranted}} beside a granted one: exit 4', async () => {
    const m = f.marker();
    const t = bearer('https://api.allowed.test/', m);
    const r = await f.exec({
      ...t,
      headers: { ...t.headers, 'X-Extra': '{{CREDENTIAL:ungranted}}' },
    });
    _expectNothingSent(r, m, 4);
  });

  it('{{CREDENTIAL:other}} (allowed on evil.test) sent to api.allowed.test: exit 4', async () => {
    for (const credential of ['k', undefined]) {
      const m = f.marker();
      const r = await f.exec({
        ...(credential === undefined ? {} : { credential }),
        url: 'https://api.allowed.test/',
        headers: {
          ...(credential === undefined ? {} : { Authorization: 'Bearer {{CREDENTIAL}}' }),
          'X-Other': '{{CREDENTIAL:other}}',
          'X-Case': m,
        },
      });
      _expectNothingSent(r, m, 4);
    }
  });

  it('k named by the template, only {{CREDENTIAL:other}} used, to evil.test: exit 4', async () => {
    const m = f.marker();
    const r = await f.exec({
      credential: 'k',
      url: 'https://evil.test/',
      headers: { 'X-Other': '{{CREDENTIAL:other}}', 'X-Case': m },
    });
    _expectNothingSent(r, m, 4);
  });

  it('control: {{CREDENTIAL:other}} alone to evil.test is allowed, and carries no canary', async () => {
    const m = f.marker();
    const r = await f.exec({
      url: 'https://evil.test/',
      headers: { 'X-Other': '{{CREDENTIAL:other}}', 'X-Case': m },
    });
    expect(r.code, r.stderr).toBe(0);
    expect(f.receivedBy(m)).toEqual(['attacker']);
    expect(r.stdout).toContain('[REDACTED:other]');
    expectNoCanary(r.stdout, OTHER_VALUE, "the agent's stdout");
    f.expectClean(r);
  });

  it('two credentials both allowed on api.allowed.test: both delivered, both redacted', async () => {
    const m = f.marker();
    const r = await f.exec({
      credential: 'k',
      url: 'https://api.allowed.test/two',
      headers: {
        Authorization: 'Bearer {{CREDENTIAL}}',
        'X-Second': '{{CREDENTIAL:second}}',
        'X-Case': m,
      },
    });
    expect(r.code, r.stderr).toBe(0);
    const req = _received(m);
    expect(req.headers.authorization).toBe(`Bearer ${f.canary}`);
    expect(req.headers['x-second']).toBe(SECOND_VALUE);
    expect(r.stdout).toContain('[REDACTED:k]');
    expect(r.stdout).toContain('[REDACTED:second]');
    f.expectClean(r);
  });
});
