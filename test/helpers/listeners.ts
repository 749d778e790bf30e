/**
 * Local HTTP(S) listeners that record every byte they receive, so security tests can assert that a
 * canary never arrived. The certificate (fixtures/tls/server.pem, signed by TEST_CA) covers
 * api.allowed.test, *.allowed.test, allowed.test, evil.test, *.evil.test, api.allowed.test.evil.test,
 * localhost and 127.0.0.1.
 *
 * Layout: a recording front (node:tls or node:net server) decrypts and pipes every connection to a
 * plain node:http server on another port. Recording at the front works the same on Node and Deno
 * (Deno's node:http server does not expose the connection's bytes).
 */
import { Buffer } from 'node:buffer';
import { readFileSync } from 'node:fs';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type ServerResponse,
} from 'node:http';
import { type AddressInfo, connect, createServer as createNetServer, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';

export interface Recorded {
  /** Every byte received on this request's connection up to the end of its body. */
  raw: Uint8Array;
  method: string;
  path: string;
  /** Lower-case names; a repeated header gives an array in the order received. */
  headers: Record<string, string | string[]>;
  body: Uint8Array;
}

export interface Listener {
  port: number;
  /** `https://127.0.0.1:PORT/path` (or http: for a plain listener). */
  url(path?: string): string;
  requests: Recorded[];
  /** Every byte received on every connection, in arrival order. */
  rawBytes(): Uint8Array;
  close(): Promise<void>;
}

/** Called once the request body has been read; `recorded` is already in `requests`. */
export type Handler = (req: IncomingMessage, res: ServerResponse, recorded: Recorded) => void;

export const TEST_CA: string = _fixture('ca.pem');
const SERVER_KEY = _fixture('server.key');
const SERVER_CERT = _fixture('server.pem');

export async function startHttpsListener(
  handler: Handler = echoHandler,
  options: { tls?: boolean } = {},
): Promise<Listener> {
  const requests: Recorded[] = [];
  const sockets = new Set<Socket>();
  const all: Buffer[] = [];
  // Keyed by the local port of the pipe to the backend, which the backend sees as remotePort.
  const connectionBytes = new Map<number, Buffer>();
  const backend = createHttpServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(Buffer.from(chunk)));
    req.on('end', () => {
      const recorded: Recorded = {
        raw: new Uint8Array(connectionBytes.get(req.socket.remotePort ?? -1) ?? []),
        method: req.method ?? '',
        path: req.url ?? '',
        headers: _headers(req.rawHeaders),
        body: new Uint8Array(Buffer.concat(chunks)),
      };
      requests.push(recorded);
      handler(req, res, recorded);
    });
  });
  await _listen(backend);
  const backendPort = (backend.address() as AddressInfo).port;

  const front = _raw(options.tls ?? true, (socket) => {
    const pipe = connect(backendPort, '127.0.0.1');
    let bytes = Buffer.alloc(0);
    _own(sockets, socket, pipe);
    pipe.on('connect', () => connectionBytes.set(pipe.localPort ?? -1, bytes));
    socket.on('data', (chunk: Buffer) => {
      all.push(Buffer.from(chunk));
      bytes = Buffer.concat([bytes, chunk]);
      if (pipe.localPort !== undefined) connectionBytes.set(pipe.localPort, bytes);
    });
    socket.pipe(pipe);
    pipe.pipe(socket);
  });
  await _listen(front);
  const port = (front.address() as AddressInfo).port;
  const scheme = options.tls === false ? 'http' : 'https';
  return {
    port,
    url: (path = '/') => `${scheme}://127.0.0.1:${port}${path}`,
    requests,
    rawBytes: () => new Uint8Array(Buffer.concat(all)),
    close: async () => {
      for (const socket of sockets) socket.destroy();
      backend.closeAllConnections();
      await Promise.all([_close(front), _close(backend)]);
    },
  };
}

/**
 * A listener that hands each connection's socket to `onConnection`, which writes whatever bytes it
 * likes (malformed responses, exact framing, silence). It records bytes like the HTTP listener;
 * `requests` stays empty.
 */
export async function startRawListener(
  onConnection: (socket: Socket) => void,
  options: { tls?: boolean } = {},
): Promise<Listener> {
  const sockets = new Set<Socket>();
  const all: Buffer[] = [];
  const server = _raw(options.tls ?? true, (socket) => {
    _own(sockets, socket);
    socket.on('data', (chunk: Buffer) => all.push(Buffer.from(chunk)));
    onConnection(socket);
  });
  await _listen(server);
  const port = (server.address() as AddressInfo).port;
  const scheme = options.tls === false ? 'http' : 'https';
  return {
    port,
    url: (path = '/') => `${scheme}://127.0.0.1:${port}${path}`,
    requests: [],
    rawBytes: () => new Uint8Array(Buffer.concat(all)),
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await _close(server);
    },
  };
}

/** The default handler: 200 with a JSON body echoing method, path and headers. */
export function echoHandler(_req: IncomingMessage, res: ServerResponse, recorded: Recorded): void {
  const { method, path, headers } = recorded;
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ method, path, headers }));
}

function _raw(tls: boolean, onSocket: (socket: Socket) => void) {
  return tls
    ? createTlsServer({ key: SERVER_KEY, cert: SERVER_CERT }, onSocket)
    : createNetServer(onSocket);
}

function _own(sockets: Set<Socket>, ...owned: Socket[]): void {
  for (const socket of owned) {
    sockets.add(socket);
    // A peer reset is normal in tests (clients that give up); destroy the pair, never crash.
    socket.on('error', () => owned.forEach((s) => s.destroy()));
    socket.on('close', () => {
      sockets.delete(socket);
      owned.forEach((s) => s.destroy());
    });
  }
}

function _headers(raw: readonly string[]): Record<string, string | string[]> {
  const headers: Record<string, string | string[]> = {};
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i].toLowerCase();
    const previous = headers[name];
    if (previous === undefined) headers[name] = raw[i + 1];
    else if (Array.isArray(previous)) previous.push(raw[i + 1]);
    else headers[name] = [previous, raw[i + 1]];
  }
  return headers;
}

function _listen(server: { listen(port: number, host: string, cb: () => void): unknown }) {
  return new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
}

function _close(server: { close(cb: () => void): unknown }) {
  return new Promise<void>((resolve) => server.close(() => resolve()));
}

function _fixture(name: string): string {
  return readFileSync(new URL(`../../fixtures/tls/${name}`, import.meta.url), 'utf8');
}
