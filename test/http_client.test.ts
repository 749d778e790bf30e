import { Buffer } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import { createServer, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { brotliCompressSync, deflateRawSync, deflateSync, gzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { TpError } from '../src/errors.ts';
import { type OutboundRequest, send, type UpstreamResponse } from '../src/http/client.ts';
import { parseConnectTo, resolveConnectTo } from '../src/http/connect_to.ts';
import {
  type Listener,
  startHttpsListener,
  startRawListener,
  TEST_CA,
} from './helpers/listeners.ts';

const CANARY = 'tp-canary-7d1f0c2e9b';
const open: Listener[] = [];

afterEach(async () => {
  await Promise.all(open.splice(0).map((l) => l.close()));
});

async function listen(
  handler?: Parameters<typeof startHttpsListener>[0],
  options?: { tls?: boolean },
) {
  const listener = await startHttpsListener(handler, options);
  open.push(listener);
  return listener;
}

/** A raw listener that waits for the request head, then writes `pieces` one by one. */
async function respond(
  pieces: Array<string | Uint8Array>,
  options: { tls?: boolean; end?: boolean; onSocket?: (s: Socket) => void } = {},
) {
  const listener = await startRawListener((socket) => {
    options.onSocket?.(socket);
    let head = '';
    const onData = async (chunk: Buffer) => {
      head += chunk.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      socket.off('data', onData);
      for (const piece of pieces) {
        if (socket.destroyed) return;
        socket.write(typeof piece === 'string' ? Buffer.from(piece, 'latin1') : piece);
        await new Promise((r) => setTimeout(r, 2));
      }
      if (options.end !== false) socket.end();
    };
    socket.on('data', onData);
  }, { tls: options.tls ?? false });
  open.push(listener);
  return listener;
}

function get(url: string, extra: Partial<OutboundRequest> = {}): OutboundRequest {
  return { method: 'GET', url: new URL(url), headers: [], body: null, ...extra };
}

async function bytes(response: UpstreamResponse): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of response.body) chunks.push(chunk);
  return Buffer.concat(chunks);
}

async function text(response: UpstreamResponse): Promise<string> {
  return (await bytes(response)).toString('utf8');
}

async function rejection(promise: Promise<unknown>, what = 'the promise'): Promise<TpError> {
  try {
    await promise;
  } catch (error) {
    expect(error, what).toBeInstanceOf(TpError);
    return error as TpError;
  }
  throw new Error(`expected ${what} to reject`);
}

function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

describe('request bytes', () => {
  it('sends a GET exactly: request line, Host, headers in order and untouched, no fragment', async () => {
    const listener = await listen();
    const response = await send(
      get(listener.url('/v1/items?q=a%20b&x=1#frag'), {
        headers: [['X-B', '  spaced\tvalue  '], ['x-a', '1'], ['X-A', '2'], [
          'Authorization',
          CANARY,
        ]],
      }),
      { ca: TEST_CA },
    );
    expect(response.status).toBe(200);
    const echoed = JSON.parse(await text(response));
    expect(echoed.path).toBe('/v1/items?q=a%20b&x=1');
    expect(Buffer.from(listener.rawBytes()).toString('latin1')).toBe(
      'GET /v1/items?q=a%20b&x=1 HTTP/1.1\r\n' +
        `Host: 127.0.0.1:${listener.port}\r\n` +
        'X-B:   spaced\tvalue  \r\n' +
        'x-a: 1\r\n' +
        'X-A: 2\r\n' +
        `Authorization: ${CANARY}\r\n` +
        'Connection: close\r\n' +
        'Accept-Encoding: identity\r\n\r\n',
    );
    expect(listener.requests[0].headers['x-a']).toEqual(['1', '2']);
  });

  it('sends a POST body with its Content-Length, and Content-Length: 0 for an empty POST', async () => {
    const listener = await listen();
    const body = new TextEncoder().encode(`{"key":"${CANARY}","é":1}`);
    await bytes(
      await send(
        get(listener.url('/post'), {
          method: 'POST',
          headers: [['Content-Type', 'application/json'], ['Accept-Encoding', 'gzip']],
          body,
        }),
        { ca: TEST_CA },
      ),
    );
    await bytes(await send(get(listener.url('/empty'), { method: 'PUT' }), { ca: TEST_CA }));
    const raw = Buffer.from(listener.rawBytes()).toString('latin1');
    const expected = 'POST /post HTTP/1.1\r\n' +
      `Host: 127.0.0.1:${listener.port}\r\n` +
      'Content-Type: application/json\r\n' +
      'Accept-Encoding: gzip\r\n' +
      `Content-Length: ${body.length}\r\n` +
      'Connection: close\r\n\r\n' +
      Buffer.from(body).toString('latin1');
    expect(raw.startsWith(expected)).toBe(true);
    expect(raw.slice(expected.length)).toBe(
      'PUT /empty HTTP/1.1\r\n' +
        `Host: 127.0.0.1:${listener.port}\r\n` +
        'Content-Length: 0\r\n' +
        'Connection: close\r\n' +
        'Accept-Encoding: identity\r\n\r\n',
    );
    expect(Buffer.from(listener.requests[0].body)).toEqual(Buffer.from(body));
  });

  it('refuses framing headers, CR/LF and bad methods before connecting', async () => {
    const listener = await listen(undefined, { tls: false });
    const cases: Array<Partial<OutboundRequest>> = [
      { headers: [['Host', 'evil.test']] },
      { headers: [['content-length', '0']] },
      { headers: [['Transfer-Encoding', 'chunked']] },
      { headers: [['Connection', 'keep-alive']] },
      { headers: [['X-Key', `${CANARY}\r\nX-Injected: 1`]] },
      { headers: [['X-Key', `${CANARY}\n`]] },
      { headers: [['X-Key', `a\u0000b`]] },
      { headers: [['X-Key', 'snowman \u2603']] },
      { headers: [['Bad Name', 'v']] },
      { headers: [['X-Key\r\nX-Other', 'v']] },
      { method: 'GET /x HTTP/1.1\r\nX:' },
      { method: '' },
    ];
    for (const extra of cases) {
      const error = await rejection(send(get(listener.url('/'), extra)));
      expect(error.kind).toBe('usage');
      expect(error.message).not.toContain(CANARY);
    }
    const ftp = await rejection(send(get('ftp://127.0.0.1/')));
    expect(ftp.code).toBe('unsupported_scheme');
    expect(listener.rawBytes().length).toBe(0);
  });
});

describe('TLS and routing', () => {
  it('routes with --connect-to while sending and verifying the URL host', async () => {
    let servername: string | false | null = null;
    const raw = await respond(['HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'], {
      tls: true,
      onSocket: (s) => (servername = (s as TLSSocket).servername),
    });
    const connectTo = [parseConnectTo(`api.allowed.test:443:127.0.0.1:${raw.port}`)];
    const response = await send(get('https://api.allowed.test/v1?x=1'), { ca: TEST_CA, connectTo });
    expect(await text(response)).toBe('ok');
    expect(servername).toBe('api.allowed.test');
    expect(Buffer.from(raw.rawBytes()).toString('latin1')).toMatch(
      /^GET \/v1\?x=1 HTTP\/1\.1\r\nHost: api\.allowed\.test\r\n/,
    );
  });

  it('refuses a certificate that does not cover the URL host, even when routed', async () => {
    const listener = await listen();
    const connectTo = [parseConnectTo(`other.example:443:127.0.0.1:${listener.port}`)];
    const error = await rejection(
      send(get('https://other.example/', { headers: [['X-Key', CANARY]] }), {
        ca: TEST_CA,
        connectTo,
      }),
    );
    expect(error).toMatchObject({ kind: 'upstream', code: 'tls' });
    expect(error.message).toContain('other.example');
    expect(error.message).toContain('name mismatch');
    expect(listener.rawBytes().length).toBe(0);
  });

  it('verifies an IP literal against the URL address, not the routed one', async () => {
    const listener = await listen();
    // The certificate covers 127.0.0.1 (where we connect) but not 127.0.0.2 (the URL).
    const connectTo = [parseConnectTo(`127.0.0.2:${listener.port}:127.0.0.1:${listener.port}`)];
    const error = await rejection(
      send(get(`https://127.0.0.2:${listener.port}/`, { headers: [['X-Key', CANARY]] }), {
        ca: TEST_CA,
        connectTo,
      }),
    );
    expect(error.code).toBe('tls');
    expect(listener.rawBytes().length).toBe(0);
  });

  it('refuses a certificate from an unknown CA when no --cacert is given', async () => {
    const listener = await listen();
    const error = await rejection(send(get(listener.url('/'), { headers: [['X-Key', CANARY]] })));
    expect(error).toMatchObject({ kind: 'upstream', code: 'tls' });
    expect(error.message).toContain('127.0.0.1');
    expect(listener.rawBytes().length).toBe(0);
  });

  it('ignores HTTP_PROXY, HTTPS_PROXY, ALL_PROXY and NO_PROXY', async () => {
    const proxy = await listen(undefined, { tls: false });
    const target = await listen();
    const plain = await listen(undefined, { tls: false });
    const names = [
      'HTTP_PROXY',
      'HTTPS_PROXY',
      'ALL_PROXY',
      'http_proxy',
      'https_proxy',
      'all_proxy',
    ];
    const saved = new Map(names.map((n) => [n, process.env[n]] as const));
    for (const name of names) process.env[name] = proxy.url('/');
    process.env.NO_PROXY = 'none.invalid';
    try {
      const headers: Array<[string, string]> = [['X-Key', CANARY]];
      await bytes(await send(get(target.url('/'), { headers }), { ca: TEST_CA }));
      await bytes(await send(get(plain.url('/'), { headers })));
    } finally {
      for (const [name, value] of saved) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
      delete process.env.NO_PROXY;
    }
    // The variables are process-wide: under Deno, another test file's fetch (which honours them)
    // may reach the proxy meanwhile. Ours carry the canary; none of them may have gone there.
    const atProxy = Buffer.from(proxy.rawBytes());
    expect(atProxy.includes(CANARY)).toBe(false);
    expect(atProxy.includes(`127.0.0.1:${target.port}`)).toBe(false);
    expect(atProxy.includes(`127.0.0.1:${plain.port}`)).toBe(false);
    expect(target.requests).toHaveLength(1);
    expect(plain.requests).toHaveLength(1);
  });
});

describe('redirects', () => {
  for (const status of [301, 302, 303, 307, 308]) {
    it(`returns a ${status} as is and never follows it`, async () => {
      const elsewhere = await listen();
      const origin = await listen((_req, res) => {
        res.writeHead(status, { location: elsewhere.url('/steal') });
        res.end('moved');
      });
      const response = await send(
        get(origin.url('/'), { method: 'POST', headers: [['X-Api-Key', CANARY]], body: null }),
        { ca: TEST_CA },
      );
      expect(response.status).toBe(status);
      expect(response.headers).toContainEqual(['location', elsewhere.url('/steal')]);
      expect(await text(response)).toBe('moved');
      expect(origin.requests).toHaveLength(1);
      expect(elsewhere.rawBytes().length).toBe(0);
    });
  }
});

describe('response framing', () => {
  it('decodes a chunked body with extensions and trailers, split anywhere', async () => {
    const raw = await respond([
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n5;ext=1\r\nhel',
      'lo\r\n',
      '6\r\n wor',
      'ld\r\n0\r\nX-Trailer: t\r\n\r\n',
    ]);
    const response = await send(get(raw.url('/')));
    expect(await text(response)).toBe('hello world');
    expect(response.headers).toEqual([]);
  });

  it('reads exactly Content-Length bytes and ignores anything after them', async () => {
    const raw = await respond([
      'HTTP/1.1 200 OK\r\nContent-Length: 10\r\nX-A: 1\r\n\r\n01234',
      '56789EXTRA',
    ]);
    const response = await send(get(raw.url('/')));
    expect(response.headers).toEqual([['Content-Length', '10'], ['X-A', '1']]);
    expect(await text(response)).toBe('0123456789');
  });

  it('reads a close-delimited body to the end, with an empty reason phrase', async () => {
    const raw = await respond(['HTTP/1.0 200 \r\nX-A: 1\r\n\r\nfirst ', 'second']);
    const response = await send(get(raw.url('/')));
    expect(response.statusText).toBe('');
    expect(await text(response)).toBe('first second');
  });

  it('keeps any visible reason phrase and drops hop-by-hop headers', async () => {
    const raw = await respond([
      "HTTP/1.1 418 I'm a teapot: (yes) \xe9\r\nProxy-Authenticate: x\r\nTE: trailers\r\nUpgrade: h2\r\n" +
      'Trailer: x\r\nConnection: close\r\nset-cookie: a=1\r\nset-cookie: b=2\r\nContent-Length: 0\r\n\r\n',
    ]);
    const response = await send(get(raw.url('/')));
    expect(response.status).toBe(418);
    expect(response.statusText).toBe("I'm a teapot: (yes) \xe9");
    expect(response.headers).toEqual([
      ['set-cookie', 'a=1'],
      ['set-cookie', 'b=2'],
      ['Content-Length', '0'],
    ]);
    expect(await text(response)).toBe('');
  });

  it('skips 100 Continue', async () => {
    const raw = await respond([
      'HTTP/1.1 100 Continue\r\n\r\n',
      'HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok',
    ]);
    const response = await send(get(raw.url('/'), { method: 'POST', body: new Uint8Array([1]) }));
    expect(response.status).toBe(201);
    expect(await text(response)).toBe('ok');
  });

  it('reads no body for HEAD, 204 and 304 even with a Content-Length', async () => {
    for (const [method, status] of [['HEAD', 200], ['GET', 204], ['GET', 304]] as const) {
      // The server keeps the connection open: waiting for a body would hang until the timeout.
      const raw = await respond([`HTTP/1.1 ${status} X\r\nContent-Length: 1000\r\n\r\n`], {
        end: false,
      });
      const response = await send(get(raw.url('/'), { method }), { timeoutMs: 2000 });
      expect(response.status).toBe(status);
      expect((await bytes(response)).length).toBe(0);
    }
  });

  it('rejects malformed responses as protocol errors without quoting them', async () => {
    const heads = [
      `HTTP/1.1 20 ${CANARY}\r\n\r\n`,
      `HTTP/2 200 OK\r\n\r\n`,
      `${CANARY}\r\n\r\n`,
      `HTTP/1.1 200 OK\r\nX-A: 1\r\n folded ${CANARY}\r\n\r\n`,
      `HTTP/1.1 200 OK\r\nX-A : ${CANARY}\r\n\r\n`,
      `HTTP/1.1 200 OK\r\nX-A: ${CANARY}\x01\r\n\r\n`,
      `HTTP/1.1 200 OK\r\nX-A: 1\nX-B: ${CANARY}\r\n\r\n`,
      'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!',
      'HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello!',
      'HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n',
      'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n',
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n',
      `HTTP/1.1 200 OK\r\nX: ${'a'.repeat(70_000)}\r\n\r\n`,
      'HTTP/1.1 200 OK\r\n',
      '',
    ];
    for (const [index, head] of heads.entries()) {
      const raw = await respond([head]);
      const error = await rejection(send(get(raw.url('/'))), `case ${index}`);
      expect(error).toMatchObject({ kind: 'upstream', code: 'protocol' });
      expect(error.message).not.toContain(CANARY);
    }
  });

  it('rejects a truncated or malformed body while iterating it', async () => {
    const bodies = [
      'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n',
    ];
    for (const response of bodies) {
      const raw = await respond([response]);
      const error = await rejection(send(get(raw.url('/'))).then(bytes));
      expect(error).toMatchObject({ kind: 'upstream', code: 'protocol' });
    }
  });
});

describe('content encodings', () => {
  const payload = Buffer.from(`${'{"data":"'}${'x'.repeat(100_000)}${CANARY}"}`);
  const encoded: Array<[string, Buffer]> = [
    ['gzip', gzipSync(payload)],
    ['x-gzip', gzipSync(payload)],
    ['deflate', deflateSync(payload)],
    ['deflate', deflateRawSync(payload)],
    ['br', brotliCompressSync(payload)],
    ['gzip, br', brotliCompressSync(gzipSync(payload))],
  ];
  for (const [coding, body] of encoded) {
    it(`decodes ${coding} (${body[0].toString(16)}...) and drops the encoding headers`, async () => {
      const raw = await respond([
        `HTTP/1.1 200 OK\r\nContent-Encoding: ${coding}\r\nContent-Length: ${body.length}\r\nX-A: 1\r\n\r\n`,
        body.subarray(0, 7),
        body.subarray(7),
      ]);
      const response = await send(get(raw.url('/'), { headers: [['Accept-Encoding', coding]] }));
      expect(response.headers).toEqual([['X-A', '1']]);
      expect((await bytes(response)).equals(payload)).toBe(true);
    });
  }

  it('refuses an unknown content encoding', async () => {
    const raw = await respond(['HTTP/1.1 200 OK\r\nContent-Encoding: zstd\r\n\r\nxxxx']);
    const error = await rejection(send(get(raw.url('/'))));
    expect(error).toMatchObject({ kind: 'upstream', code: 'unsupported_encoding' });
  });

  it('rejects a truncated or corrupt gzip body', async () => {
    const gzipped = gzipSync(randomBytes(10_000));
    for (const body of [gzipped.subarray(0, 5000), Buffer.from(`not gzip ${CANARY}`)]) {
      const raw = await respond(['HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n', body]);
      const error = await rejection(send(get(raw.url('/'))).then(bytes));
      expect(error).toMatchObject({ kind: 'upstream', code: 'protocol' });
      expect(error.message).not.toContain(CANARY);
    }
  });
});

describe('limits', () => {
  it('refuses a declared Content-Length above the cap before reading the body', async () => {
    const raw = await respond(['HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n'], { end: false });
    const error = await rejection(send(get(raw.url('/')), { maxResponseBytes: 1000 }));
    expect(error).toMatchObject({ kind: 'upstream', code: 'response_too_large' });
  });

  it('stops a streamed body at the cap and closes the connection', async () => {
    let closed: Promise<unknown> | undefined;
    const listener = await startRawListener((socket) => {
      closed = new Promise((resolve) => socket.on('close', resolve));
      socket.once('data', () => {
        socket.write('HTTP/1.1 200 OK\r\n\r\n');
        const timer = setInterval(() => socket.write(Buffer.alloc(4096, 97)), 1);
        socket.on('close', () => clearInterval(timer));
      });
    }, { tls: false });
    open.push(listener);
    const response = await send(get(listener.url('/')), { maxResponseBytes: 50_000 });
    let received = 0;
    const error = await rejection((async () => {
      for await (const chunk of response.body) received += chunk.length;
    })());
    expect(error).toMatchObject({ kind: 'upstream', code: 'response_too_large' });
    expect(received).toBeLessThanOrEqual(50_000);
    await closed;
  });

  it('caps the decoded size of a compressed body (decompression bomb)', async () => {
    const bomb = gzipSync(Buffer.alloc(20 * 1024 * 1024));
    const raw = await respond([`HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n`, bomb]);
    const response = await send(get(raw.url('/')), { maxResponseBytes: 1024 * 1024 });
    const error = await rejection(bytes(response));
    expect(error.code).toBe('response_too_large');
  });

  it('times out when the server never answers', async () => {
    const raw = await respond([], { end: false });
    const started = Date.now();
    const error = await rejection(send(get(raw.url('/')), { timeoutMs: 150 }));
    expect(error).toMatchObject({ kind: 'upstream', code: 'timeout' });
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('times out while the body is still arriving', async () => {
    const raw = await respond(['HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial'], {
      end: false,
    });
    const response = await send(get(raw.url('/')), { timeoutMs: 200 });
    const error = await rejection(bytes(response));
    expect(error).toMatchObject({ kind: 'upstream', code: 'timeout' });
  });

  it('times out a TLS handshake that never completes', async () => {
    const silent = await startRawListener(() => {}, { tls: false });
    open.push(silent);
    const error = await rejection(
      send(get(`https://127.0.0.1:${silent.port}/`), { connectTimeoutMs: 150, ca: TEST_CA }),
    );
    expect(error).toMatchObject({ kind: 'upstream', code: 'timeout' });
  });

  it('stops on abort', async () => {
    const raw = await respond([], { end: false });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    const error = await rejection(send(get(raw.url('/')), { signal: controller.signal }));
    expect(error).toMatchObject({ kind: 'upstream', code: 'aborted' });
  });

  it('closes the connection when the caller stops reading the body', async () => {
    let serverSide: Socket | undefined;
    const raw = await respond(['HTTP/1.1 200 OK\r\n\r\nsome'], {
      end: false,
      onSocket: (s) => (serverSide = s),
    });
    const response = await send(get(raw.url('/')));
    await response.body[Symbol.asyncIterator]().return?.();
    // The server side sees the connection close (the bound only turns a hang into a failure).
    const closed = await new Promise<boolean>((resolve) => {
      if (serverSide?.destroyed) return resolve(true);
      const timer = setTimeout(() => resolve(false), 5_000);
      serverSide?.once('close', () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
    expect(closed).toBe(true);
  });
});

describe('connection failures', () => {
  it('reports a refused connection as connect', async () => {
    const port = await closedPort();
    const error = await rejection(send(get(`http://127.0.0.1:${port}/`)));
    expect(error).toMatchObject({ kind: 'upstream', code: 'connect' });
    expect(error.message).toContain(`127.0.0.1:${port}`);
  });

  it('reports a name that does not resolve as dns', async () => {
    const error = await rejection(
      send(get('https://api.allowed.test/'), {
        connectTo: [parseConnectTo('api.allowed.test:443:no-such-host.invalid:443')],
        connectTimeoutMs: 3000,
      }),
    );
    expect(error).toMatchObject({ kind: 'upstream', code: 'dns' });
  });
});

describe('connect-to', () => {
  it('parses HOST:PORT:ADDRESS:PORT with IPv6 in brackets', () => {
    expect(parseConnectTo('API.Allowed.test:443:127.0.0.1:8443')).toEqual({
      host: 'api.allowed.test',
      port: 443,
      address: '127.0.0.1',
      addressPort: 8443,
    });
    expect(parseConnectTo('[0:0::1]:443:[::1]:1')).toEqual({
      host: '::1',
      port: 443,
      address: '::1',
      addressPort: 1,
    });
  });

  it('refuses anything else', () => {
    const bad = [
      '',
      'a:443:b',
      'a:443:b:1:2',
      ':443:b:1',
      'a::b:1',
      'a:0:b:1',
      'a:65536:b:1',
      'a:443:b:x',
      'a:443:b:+1',
      '::1:443:b:1',
      '[::1:443:b:1',
      '[not-ip]:443:b:1',
      '[::1]x:443:b:1',
      'a b:443:b:1',
      'a/b:443:b:1',
      'a:443:b@c:1',
    ];
    for (const text of bad) {
      expect(() => parseConnectTo(text), text).toThrow(
        expect.objectContaining({ kind: 'usage', code: 'bad_connect_to' }),
      );
    }
  });

  it('resolves by exact host and port, first entry wins', () => {
    const list = [
      parseConnectTo('a.test:443:10.0.0.1:1'),
      parseConnectTo('a.test:443:10.0.0.2:2'),
      parseConnectTo('[::1]:80:10.0.0.3:3'),
    ];
    expect(resolveConnectTo(list, 'A.test', 443)).toEqual({ address: '10.0.0.1', port: 1 });
    expect(resolveConnectTo(list, 'a.test', 80)).toBeNull();
    expect(resolveConnectTo(list, 'b.a.test', 443)).toBeNull();
    expect(resolveConnectTo(list, 'a.test.', 443)).toBeNull();
    expect(resolveConnectTo(list, '[::1]', 80)).toEqual({ address: '10.0.0.3', port: 3 });
  });
});
