/**
 * What keeps serve a local-only, program-only service (SPEC §8): the Host must be the listener's
 * own loopback name (a DNS-rebound page sends its own name), any Origin header is refused, there
 * are no CORS headers, and size and time limits hold against slow or oversized clients. Also the
 * OpenAPI document: what serve answers at /v1/openapi.json is docs/openapi.json.
 */
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newHome, type TestHome } from '../helpers/cli.ts';
import {
  header,
  http,
  type HttpResult,
  json,
  raw,
  type Served,
  startServe,
} from '../helpers/serve.ts';

let t: TestHome;
let s: Served;
let port: number;
const responses: HttpResult[] = [];

const TEMPLATE = JSON.stringify({
  credential: 'k',
  url: 'https://api.allowed.test/',
  headers: { Authorization: 'Bearer {{CREDENTIAL}}' },
});

beforeAll(async () => {
  t = await newHome();
  s = await startServe(t, ['--listen', '127.0.0.1:0', '--socket', `${t.dir}/s.sock`]);
  port = s.port as number;
});
afterAll(async () => {
  const e = await s.stop();
  expect(e.code, e.stderr).toBe(0);
  for (const r of responses) {
    expect(r.headers.filter(([n]) => /^access-control-/i.test(n)), 'CORS headers').toEqual([]);
  }
});

async function _get(
  path: string,
  options: Parameters<typeof http>[2] = {},
  to: Served | { socket: string } = s,
) {
  const r = await http(to, path, options);
  responses.push(r);
  return r;
}

function _expectError(r: HttpResult, status: number, code: string): void {
  expect(r.status, r.body.toString()).toBe(status);
  expect(json(r)).toMatchObject({ error: { code, message: expect.any(String) } });
  expect(header(r, 'trust-protocol-error')).toBe(code);
}

describe.concurrent("Host header: only the listener's own loopback name", () => {
  for (const host of ['127.0.0.1:PORT', 'localhost:PORT', 'LOCALHOST:PORT', '[::1]:PORT']) {
    it(`accepts ${host}`, async () => {
      const r = await _get('/v1/health', { host: host.replace('PORT', String(port)) });
      expect(r.status).toBe(200);
    });
  }

  const refused = [
    'evil.test:PORT',
    'rebind.attacker.test:PORT',
    '127.0.0.1',
    'localhost',
    '127.0.0.1:1',
    'localhost:PORT.evil.test',
    '127.0.0.1:PORT@evil.test',
    '',
  ];
  for (const host of refused) {
    it(`refuses Host ${JSON.stringify(host)} with 403, on every endpoint`, async () => {
      const h = host.replaceAll('PORT', String(port));
      for (const path of ['/v1/health', '/v1/openapi.json', '/v1/gateway/k/x']) {
        _expectError(await _get(path, { host: h }), 403, 'bad_host');
      }
      _expectError(await _get('/v1/proxy', { host: h, body: TEMPLATE }), 403, 'bad_host');
    });
  }

  it('refuses a request without Host, and one with two', async () => {
    const none = await raw({ port }, 'GET /v1/health HTTP/1.0\r\n\r\n');
    expect(none.response).toMatch(/^HTTP\/1\.1 (400|403) /);
    const two = await raw(
      { port },
      `GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nHost: evil.test\r\nConnection: close\r\n\r\n`,
    );
    expect(two.response).toMatch(/^HTTP\/1\.1 (400|403) /);
    expect(two.response).not.toMatch(/"status": "ok"/);
  });

  it('on the unix socket: localhost only', async () => {
    const to = { socket: s.socket };
    expect((await _get('/v1/health', {}, to)).status).toBe(200);
    _expectError(await _get('/v1/health', { host: `127.0.0.1:${port}` }, to), 403, 'bad_host');
    _expectError(await _get('/v1/health', { host: 'evil.test' }, to), 403, 'bad_host');
  });

  it('refuses an absolute-form request target', async () => {
    const r = await raw(
      { port },
      `GET http://evil.test/v1/health HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`,
    );
    expect(r.response).toMatch(/^HTTP\/1\.1 400 /);
  });
});

describe.concurrent('web pages are refused; no CORS', () => {
  for (
    const origin of [`http://127.0.0.1:PORT`, 'http://localhost:PORT', 'null', 'https://evil.test']
  ) {
    it(`Origin: ${origin} is refused (403) on every endpoint`, async () => {
      const headers = { Origin: origin.replace('PORT', String(port)) };
      for (const path of ['/v1/health', '/v1/openapi.json', '/v1/gateway/k/v1/models']) {
        _expectError(await _get(path, { headers }), 403, 'origin_refused');
      }
      _expectError(await _get('/v1/proxy', { headers, body: TEMPLATE }), 403, 'origin_refused');
    });
  }

  it('a CORS preflight gets no Access-Control-* header', async () => {
    const r = await _get('/v1/proxy', {
      method: 'OPTIONS',
      headers: { Origin: 'https://evil.test', 'Access-Control-Request-Method': 'POST' },
    });
    expect(r.status).toBe(403);
  });
});

describe.concurrent('limits', () => {
  it('headers larger than 16 KiB: 431', async () => {
    const r = await raw(
      { port },
      `GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nX-Big: ${
        'a'.repeat(17 * 1024)
      }\r\n\r\n`,
    );
    expect(r.response).toMatch(/^HTTP\/1\.1 431 /);
  });

  it('a body over 10 MiB: 413, declared or streamed', async () => {
    // Declared far too large: refused at once, without waiting for the body.
    const declared = await _get('/v1/proxy', {
      method: 'POST',
      headers: { 'Content-Length': String(50 * 1024 * 1024) },
    });
    _expectError(declared, 413, 'body_too_large');
    expect(header(declared, 'connection')).toBe('close');
    const sent = await raw(
      { port },
      `POST /v1/gateway/k/v1/x HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Length: ${
        11 * 1024 * 1024
      }\r\n\r\n${' '.repeat(11 * 1024 * 1024)}`,
      { waitMs: 10_000 },
    );
    expect(sent.response).toMatch(/^HTTP\/1\.1 413 /);
    const streamed = await raw(
      { port },
      `POST /v1/proxy HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nTransfer-Encoding: chunked\r\n\r\n` +
        `${(11 * 1024 * 1024).toString(16)}\r\n${' '.repeat(11 * 1024 * 1024)}\r\n0\r\n\r\n`,
      { waitMs: 10_000 },
    );
    expect(streamed.response).toMatch(/^HTTP\/1\.1 413 /);
  });

  it('a slowloris client (headers never finished) is cut off after about 10 s', async () => {
    const [idle, dripping] = await Promise.all([
      raw({ port }, `GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n`, { waitMs: 20_000 }),
      raw({ port }, `GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n`, {
        waitMs: 20_000,
        drip: { bytes: 'X-Slow: 1\r\n', everyMs: 500 },
      }),
    ]);
    for (const r of [idle, dripping]) {
      expect(r.closed).toBe(true);
      expect(r.ms).toBeGreaterThanOrEqual(9_000);
      expect(r.ms).toBeLessThan(15_000);
      expect(r.response).toMatch(/^(HTTP\/1\.1 408 |$)/);
    }
  });
});

describe.concurrent('endpoints and the OpenAPI document', () => {
  it('unknown paths are 404, wrong methods 405, in the error JSON format', async () => {
    _expectError(await _get('/v1/nope'), 404, 'not_found');
    _expectError(await _get('/'), 404, 'not_found');
    _expectError(await _get('/v1/gateway/'), 404, 'not_found');
    _expectError(await _get('/v1/gateway/-bad-name/x'), 404, 'not_found');
    _expectError(await _get('/v1/proxy'), 405, 'method_not_allowed');
    _expectError(await _get('/v1/health', { method: 'POST', body: '' }), 405, 'method_not_allowed');
  });

  it('GET /v1/openapi.json is docs/openapi.json, an OpenAPI 3.1 document of every endpoint', async () => {
    const r = await _get('/v1/openapi.json');
    expect(r.status).toBe(200);
    const served = json(r);
    const committed = JSON.parse(
      readFileSync(new URL('../../docs/openapi.json', import.meta.url), 'utf8'),
    );
    expect(
      served,
      'docs/openapi.json is stale: regenerate it from src/serve/openapi.ts (see its header)',
    ).toEqual(committed);
    expect(served.openapi).toMatch(/^3\.1\./);
    expect(Object.keys(served.paths).sort()).toEqual([
      '/v1/admin/agents',
      '/v1/admin/agents/{id}/resume',
      '/v1/admin/agents/{id}/suspend',
      '/v1/admin/brake',
      '/v1/admin/whoami',
      '/v1/agent/renew',
      '/v1/agent/status',
      '/v1/check',
      '/v1/credentials',
      '/v1/emergency',
      '/v1/gateway/{credential}/{path}',
      '/v1/health',
      '/v1/mcp',
      '/v1/openapi.json',
      '/v1/proxy',
    ]);
    // Every documented operation exists (a 404 would mean the document describes nothing).
    type Operations = Record<string, { responses: Record<string, unknown> }>;
    for (const [path, item] of Object.entries(served.paths as Record<string, Operations>)) {
      for (const method of Object.keys(item)) {
        const concrete = path.replace('{credential}', 'k').replace('{path}', 'v1/x');
        const res = await _get(concrete, {
          method: method.toUpperCase(),
          ...(method === 'post' || method === 'put' || method === 'patch' ? { body: '{}' } : {}),
        });
        expect(res.status, `${method} ${path}`).not.toBe(404);
        expect(res.status, `${method} ${path}`).not.toBe(405);
        for (const code of Object.keys(item[method]?.responses ?? {})) {
          if (code !== 'default') expect(code).toMatch(/^[1-5]\d\d$/);
        }
      }
    }
    for (const status of [401, 403, 423, 429, 502, 503, 504]) {
      expect(served.paths['/v1/proxy'].post.responses[String(status)]).toBeDefined();
    }
  });
});

// Last and alone: holding every connection slot would turn the other tests away.
describe('connections', () => {
  it('at most 256 connections at once: past that the oldest idle ones are cut, and a newcomer is answered', async () => {
    const held: Socket[] = [];
    const closed = new Set<Socket>();
    for (let i = 0; i < 300; i++) {
      const c = connect(port, '127.0.0.1');
      c.on('error', () => {});
      c.on('close', () => closed.add(c));
      held.push(c);
      await new Promise((r) => c.once('connect', r));
    }
    for (let i = 0; i < 100 && closed.size < 300 - 256; i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(closed.size).toBeGreaterThanOrEqual(300 - 256);
    expect(closed.has(held[0] as Socket)).toBe(true);
    expect(closed.has(held.at(-1) as Socket)).toBe(false);
    expect((await _get('/v1/health')).status).toBe(200);
    for (const c of held) c.destroy();
  });
});
