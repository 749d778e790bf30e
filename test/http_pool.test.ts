/**
 * Kept-alive upstream connections (src/http/pool.ts): reused only after a response read exactly
 * to its end, never after a server asked to close, sent bytes beyond the response, or was not
 * read to the end; never across host names or trusted CAs; a stale connection is retried once
 * for an idempotent request only.
 */
import { Buffer } from 'node:buffer';
import type { Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { type OutboundRequest, send, type UpstreamResponse } from '../src/http/client.ts';
import { ConnectionPool } from '../src/http/pool.ts';
import { parseConnectTo } from '../src/http/connect_to.ts';
import { type Listener, startRawListener, TEST_CA } from './helpers/listeners.ts';

const open: Listener[] = [];
const pools: ConnectionPool[] = [];
afterEach(async () => {
  pools.splice(0).forEach((p) => p.close());
  await Promise.all(open.splice(0).map((l) => l.close()));
});

/**
 * A TLS server that answers each request on a connection with `answer(n)` (n counts requests on
 * that connection) and records how many connections it accepted.
 */
async function server(answer: (n: number, socket: Socket) => string | null) {
  const stats = { connections: 0, requests: 0, closed: 0 };
  const listener = await startRawListener((socket) => {
    stats.connections += 1;
    socket.on('close', () => (stats.closed += 1));
    let buffered = '';
    let n = 0;
    socket.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('latin1');
      for (let end = buffered.indexOf('\r\n\r\n'); end >= 0; end = buffered.indexOf('\r\n\r\n')) {
        const head = buffered.slice(0, end);
        const length = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? 0);
        if (buffered.length < end + 4 + length) return;
        buffered = buffered.slice(end + 4 + length);
        stats.requests += 1;
        const reply = answer(++n, socket);
        if (reply !== null) socket.write(Buffer.from(reply, 'latin1'));
      }
    });
  });
  open.push(listener);
  return { listener, stats };
}

function pool(): ConnectionPool {
  const p = new ConnectionPool();
  pools.push(p);
  return p;
}

function req(method = 'GET', host = 'api.allowed.test'): OutboundRequest {
  return { method, url: new URL(`https://${host}/x`), headers: [], body: null };
}

function options(port: number, p?: ConnectionPool) {
  return {
    ca: TEST_CA,
    connectTo: ['api.allowed.test', 'other.allowed.test'].map((h) =>
      parseConnectTo(`${h}:443:127.0.0.1:${port}`)
    ),
    ...(p ? { pool: p } : {}),
  };
}

async function text(r: UpstreamResponse): Promise<string> {
  const chunks: Uint8Array[] = [];
  for await (const c of r.body) chunks.push(c);
  return Buffer.concat(chunks).toString('latin1');
}

const ok = (body: string, extra = '') =>
  `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n${extra}\r\n${body}`;

describe('connection pool', () => {
  it('reuses one connection for sequential requests, and sends no Connection: close', async () => {
    const { listener, stats } = await server((n) => ok(`reply ${n}`));
    const p = pool();
    for (let i = 1; i <= 3; i++) {
      expect(await text(await send(req(), options(listener.port, p)))).toBe(`reply ${i}`);
    }
    expect(stats).toEqual({ connections: 1, requests: 3, closed: 0 });
    expect(Buffer.from(listener.rawBytes()).toString('latin1')).not.toMatch(/connection:/i);
    // Without a pool: one connection per request, each asking to close.
    const other = await server(() => ok('x'));
    await text(await send(req(), options(other.listener.port)));
    await text(await send(req(), options(other.listener.port)));
    expect(other.stats.connections).toBe(2);
    expect(Buffer.from(other.listener.rawBytes()).toString('latin1')).toMatch(/Connection: close/);
  });

  it('chunked and empty responses are reusable too', async () => {
    const { listener, stats } = await server((n) =>
      n === 1
        ? 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n'
        : n === 2
        ? 'HTTP/1.1 204 No Content\r\n\r\n'
        : ok('third')
    );
    const p = pool();
    expect(await text(await send(req(), options(listener.port, p)))).toBe('abc');
    expect((await send(req(), options(listener.port, p))).status).toBe(204);
    expect(await text(await send(req(), options(listener.port, p)))).toBe('third');
    expect(stats.connections).toBe(1);
  });

  it('never reuses after Connection: close, HTTP/1.0, or a body read to the close', async () => {
    for (
      const reply of [
        ok('a', 'Connection: close\r\n'),
        'HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\na',
        'HTTP/1.1 200 OK\r\n\r\na',
      ]
    ) {
      const { listener, stats } = await server((_n, socket) => {
        if (!reply.includes('Content-Length')) {
          socket.end(reply);
          return null;
        }
        return reply;
      });
      const p = pool();
      expect(await text(await send(req(), options(listener.port, p)))).toBe('a');
      expect(await text(await send(req(), options(listener.port, p)))).toBe('a');
      expect(stats.connections, reply).toBe(2);
    }
  });

  it('bytes beyond the response are never served to the next request (no smuggled response)', async () => {
    const smuggled = ok('SMUGGLED');
    let answered = 0;
    const { listener, stats } = await server(() =>
      ++answered === 1 ? ok('first') + smuggled : ok('real')
    );
    const p = pool();
    expect(await text(await send(req(), options(listener.port, p)))).toBe('first');
    expect(await text(await send(req(), options(listener.port, p)))).toBe('real');
    expect(stats.connections).toBe(2);
  });

  it('unprompted bytes while idle, or a response not read to its end, discard the connection', async () => {
    const { listener, stats } = await server((n, socket) => {
      if (n === 1) setTimeout(() => socket.write('HTTP/1.1 200 OK\r\n\r\nlate'), 30);
      return ok(n === 2 ? 'x'.repeat(100_000) : `reply ${n}`);
    });
    const p = pool();
    expect(await text(await send(req(), options(listener.port, p)))).toBe('reply 1');
    // The pool drops the connection that spoke unprompted (the bound only turns a hang into a
    // failure): no sleep that a loaded machine could outlast.
    for (const end = Date.now() + 5_000; stats.closed === 0 && Date.now() < end;) {
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(stats.closed).toBe(1);
    const partial = await send(req(), options(listener.port, p));
    const it = partial.body[Symbol.asyncIterator]();
    await it.next();
    await it.return?.();
    expect(await text(await send(req(), options(listener.port, p)))).toBe('reply 1');
    expect(stats.connections).toBe(3);
  });

  it('separates host names and trusted CAs', async () => {
    const { listener, stats } = await server(() => ok('x'));
    const p = pool();
    await text(await send(req('GET', 'api.allowed.test'), options(listener.port, p)));
    await text(await send(req('GET', 'other.allowed.test'), options(listener.port, p)));
    await text(
      await send(req(), { ...options(listener.port, p), ca: TEST_CA + '\n' }),
    );
    expect(stats.connections).toBe(3);
  });

  it('a connection the server closed while idle: GET goes out again on a fresh one, POST does not', async () => {
    const { listener, stats } = await server((n, socket) => {
      // The server forgets connections without telling: the next request on it finds it dead.
      if (n === 2) {
        socket.destroy();
        return null;
      }
      return ok(`reply ${n}`);
    });
    const p = pool();
    expect(await text(await send(req(), options(listener.port, p)))).toBe('reply 1');
    expect(await text(await send(req(), options(listener.port, p)))).toBe('reply 1');
    expect(stats.connections).toBe(2);
    // The POST finds the pooled connection dead too, but is not sent a second time.
    await expect(send(req('POST'), options(listener.port, p))).rejects.toMatchObject({
      kind: 'upstream',
    });
    expect(stats.requests).toBe(4);
    expect(await text(await send(req('POST'), options(listener.port, p)))).toBe('reply 1');
    expect(stats.connections).toBe(3);
  });
});
