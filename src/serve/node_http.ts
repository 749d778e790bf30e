/**
 * The node:http adapter for the serve handler (node:http behaves the same on Node 24 and Deno 2,
 * limits included). Hardening lives here: header size, time to send the headers and the body
 * (slowloris), a cap on connections that makes room for a newcomer by cutting the oldest
 * connection no agent has proven its token on (see `_Connections`); and a unix socket that is
 * 0600 from its first moment (it is bound inside a fresh 0700 directory, then renamed into place).
 */
import { Buffer } from 'node:buffer';
import * as fs from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import * as path from 'node:path';
import { TpError, usage } from '../errors.ts';
import { ioErrorCode } from '../home.ts';
import { type TcpAddress, tcpHosts, tcpUrl, UNIX_HOSTS } from './address.ts';
import {
  errorResponse,
  type ServeHandler,
  type ServeRequest,
  type ServeResponse,
} from './handler.ts';
import { asServeError } from './http_error.ts';

/**
 * A unix socket is 0600; with `group` (a gid, the dedicated-user deployment's agents group) it is
 * 0660 and owned by that group, so its members can connect and nobody else can.
 */
export type Endpoint =
  | { kind: 'tcp'; address: TcpAddress }
  | { kind: 'unix'; path: string; group?: number };

export interface HttpListener {
  /** `http://127.0.0.1:PORT` (the bound port), or `unix:PATH`. */
  url: string;
  endpoint: Endpoint;
  /** Stops listening, cuts every connection, and waits (bounded) for in-flight requests. */
  close(): Promise<void>;
}

export interface AdapterOptions {
  /** Called as each request arrives; the function it returns is called once its response is done. */
  onRequest?: (target: string) => () => void;
}

export const LIMITS = {
  maxHeaderSize: 16 * 1024,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 5_000,
  maxConnections: 256,
  /** Of those, connections on which no request has yet shown a valid agent token (strangers)... */
  maxStrangers: 64,
  /** ...beyond which the oldest idle one is cut for a newcomer, once it has had this long. */
  strangerGraceMs: 1_000,
  closeGraceMs: 5_000,
  lingerMs: 5_000,
} as const;

export async function listenHttp(
  handler: ServeHandler,
  endpoint: Endpoint,
  options: AdapterOptions = {},
): Promise<HttpListener> {
  const inFlight = new Set<Promise<void>>();
  const connections = new _Connections();
  let hosts: ReadonlySet<string> = UNIX_HOSTS;
  const server = createServer({
    maxHeaderSize: LIMITS.maxHeaderSize,
    headersTimeout: LIMITS.headersTimeoutMs,
    requestTimeout: LIMITS.requestTimeoutMs,
    keepAliveTimeout: LIMITS.keepAliveTimeoutMs,
    // How often the two timeouts above are enforced (Node's default is every 30 s).
    connectionsCheckingInterval: 1_000,
  }, (req, res) => {
    connections.busy(req.socket, true);
    const done = _serve(handler, req, res, {
      hosts,
      via: endpoint.kind,
      onRequest: options.onRequest,
      agent: connections.agent(req.socket),
    });
    inFlight.add(done);
    done.finally(() => {
      inFlight.delete(done);
      connections.busy(req.socket, false);
    });
  });
  // Not server.maxConnections: it turns the newcomer away, so whoever holds the slots (a slow
  // client needs no token) would lock everyone out.
  server.on('connection', (socket: Socket) => connections.admit(socket));
  let bound: Endpoint;
  let cleanup = () => {};
  if (endpoint.kind === 'tcp') {
    await _listen(server, { port: endpoint.address.port, host: endpoint.address.bind }, endpoint);
    const port = (server.address() as { port: number }).port;
    bound = { kind: 'tcp', address: { bind: endpoint.address.bind, port } };
    hosts = tcpHosts(bound.address);
  } else {
    cleanup = await _listenUnix(server, endpoint.path, endpoint.group);
    bound = endpoint;
  }
  return {
    url: bound.kind === 'tcp' ? tcpUrl(bound.address) : `unix:${bound.path}`,
    endpoint: bound,
    async close() {
      // New connections and idle ones first; requests being answered get the grace to finish
      // writing (a 503 from a front whose keeper died, a response the keeper is ending), then
      // whatever is left (a slow client still sending its headers) is cut.
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      cleanup();
      const grace = new Promise((resolve) => setTimeout(resolve, LIMITS.closeGraceMs).unref());
      await Promise.race([Promise.allSettled([...inFlight]), grace]);
      server.closeAllConnections();
      await Promise.race([closed, grace]);
    },
  };
}

function _listen(
  server: Server,
  at: { port: number; host: string } | { path: string },
  endpoint: Endpoint,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (e: unknown) => {
      const code = ioErrorCode(e) ?? 'error';
      const where = endpoint.kind === 'tcp' ? tcpUrl(endpoint.address) : endpoint.path;
      reject(
        new TpError('usage', 'cannot_listen', `serve cannot listen on ${where} (${code})`, {
          hint: code === 'EADDRINUSE'
            ? 'something else uses that address: pick another port, or stop it'
            : 'check the address or the socket path',
          cause: e,
        }),
      );
    };
    server.once('error', onError);
    server.listen(at, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

/**
 * Binds inside a private directory, tightens the socket to 0600 (0660 and `group`), then renames
 * it into place: no moment where anyone else could connect. Returns what removes the socket at
 * close.
 */
async function _listenUnix(
  server: Server,
  target: string,
  group: number | undefined,
): Promise<() => void> {
  let dir: string;
  try {
    dir = fs.mkdtempSync(path.join(path.dirname(target), '.serve-'));
  } catch (e) {
    throw usage(
      'cannot_listen',
      `serve cannot create its socket next to ${target} (${ioErrorCode(e) ?? 'error'})`,
    );
  }
  try {
    const temporary = path.join(dir, 's');
    await _listen(server, { path: temporary }, { kind: 'unix', path: target });
    fs.chmodSync(temporary, 0o600);
    if (group !== undefined) {
      fs.chownSync(temporary, -1, group);
      fs.chmodSync(temporary, 0o660);
    }
    fs.renameSync(temporary, target);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const inode = fs.lstatSync(target).ino;
  return () => {
    try {
      if (fs.lstatSync(target).ino === inode) fs.unlinkSync(target);
    } catch { /* already gone */ }
  };
}

async function _serve(
  handler: ServeHandler,
  req: IncomingMessage,
  res: ServerResponse,
  options: {
    hosts: ReadonlySet<string>;
    via: 'unix' | 'tcp';
    onRequest: AdapterOptions['onRequest'];
    agent: (() => void) | undefined;
  },
): Promise<void> {
  const ended = options.onRequest?.(req.url ?? '') ?? (() => {});
  const controller = new AbortController();
  res.on('close', () => {
    if (!res.writableFinished) controller.abort();
  });
  const request: ServeRequest = {
    method: req.method ?? 'GET',
    target: req.url ?? '',
    headers: _pairs(req.rawHeaders),
    body: (limit) => _readBody(req, limit),
    signal: controller.signal,
    hosts: options.hosts,
    via: options.via,
    ...(options.agent === undefined ? {} : { agent: options.agent }),
  };
  try {
    let response: ServeResponse;
    try {
      response = await handler(request);
    } catch (e) {
      response = errorResponse(asServeError(e));
    }
    await _write(req, res, response);
  } catch {
    res.destroy();
  } finally {
    ended();
  }
}

interface _Connection {
  socket: Socket;
  /** A request on it showed a valid agent token. */
  agent: boolean;
  /** A request on it is being answered. */
  busy: boolean;
  /** When it was opened, or last became idle (ms, monotonic). */
  since: number;
}

/**
 * The connections of one listener, and who is cut to make room (docs/decisions.md, issue #14).
 * A stranger (no request on it has shown a valid agent token yet) costs nothing to open and can
 * hold its connection by trickling bytes, so strangers never lock others out:
 * - past `maxStrangers`, a newcomer displaces the oldest idle stranger (still sending its headers,
 *   or kept alive between requests), but only one that has had `strangerGraceMs`: a newcomer
 *   always has that long to send its headers, however fast others reconnect;
 * - past `maxConnections`, the oldest idle stranger, else the oldest idle connection, else the
 *   oldest stranger is cut; only when all are agents' requests in progress is the newcomer cut.
 */
class _Connections {
  #all = new Map<Socket, _Connection>();

  admit(socket: Socket): void {
    const now = performance.now();
    const c: _Connection = { socket, agent: false, busy: false, since: now };
    const others = [...this.#all.values()];
    this.#all.set(socket, c);
    socket.once('close', () => this.#all.delete(socket));
    const idleStrangers = others.filter((x) => !x.agent && !x.busy);
    if (others.filter((x) => !x.agent).length >= LIMITS.maxStrangers) {
      const oldest = _oldest(idleStrangers);
      if (oldest !== undefined && now - oldest.since >= LIMITS.strangerGraceMs) this.#cut(oldest);
    }
    if (this.#all.size > LIMITS.maxConnections) {
      const rest = [...this.#all.values()].filter((x) => x !== c);
      this.#cut(
        _oldest(rest.filter((x) => !x.agent && !x.busy)) ?? _oldest(rest.filter((x) => !x.busy)) ??
          _oldest(rest.filter((x) => !x.agent)) ?? c,
      );
    }
  }

  busy(socket: Socket, busy: boolean): void {
    const c = this.#all.get(socket);
    if (c === undefined) return;
    c.busy = busy;
    if (!busy) c.since = performance.now();
  }

  /** What the handler calls once a request's token names an active agent; undefined once done. */
  agent(socket: Socket): (() => void) | undefined {
    const c = this.#all.get(socket);
    if (c === undefined || c.agent) return undefined;
    return () => (c.agent = true);
  }

  #cut(c: _Connection): void {
    this.#all.delete(c.socket);
    c.socket.destroy();
  }
}

function _oldest(cs: readonly _Connection[]): _Connection | undefined {
  let oldest: _Connection | undefined;
  for (const c of cs) if (oldest === undefined || c.since < oldest.since) oldest = c;
  return oldest;
}

/**
 * Reads the body up to `limit` bytes. A larger one is refused (413), but only once the client has
 * sent it (up to four times the limit, or 5 s): answering early and closing would make the kernel
 * reset the connection, and the client would see a reset instead of the 413.
 */
function _readBody(req: IncomingMessage, limit: number): Promise<Uint8Array> {
  const tooLarge = () =>
    new TpError('usage', 'body_too_large', `the request body is larger than ${limit} bytes`);
  const lingerBytes = 4 * limit;
  if (Number(req.headers['content-length'] ?? 0) > lingerBytes) return Promise.reject(tooLarge());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const finish = () => {
      clearTimeout(timer);
      req.off('data', onData).off('end', finish).off('error', finish).off('close', finish);
      if (!req.complete) req.pause();
      if (size > limit) reject(tooLarge());
      else if (!req.complete) {
        reject(new TpError('usage', 'body_incomplete', 'the request body was cut off'));
      } else resolve(new Uint8Array(Buffer.concat(chunks)));
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) {
        chunks.push(chunk);
        return;
      }
      if (timer === undefined) {
        chunks.length = 0;
        timer = setTimeout(finish, LIMITS.lingerMs);
      }
      if (size > lingerBytes) finish();
    };
    req.on('data', onData).on('end', finish).on('error', finish).on('close', finish);
  });
}

async function _write(
  req: IncomingMessage,
  res: ServerResponse,
  response: ServeResponse,
): Promise<void> {
  // Only the upstream's own Date (if any) is passed on, as exec would print it.
  res.sendDate = false;
  const headers = [...response.headers];
  // An unread request body would otherwise be taken for the next request on this connection.
  if (!req.complete) headers.push(['Connection', 'close']);
  const body = response.body;
  if (body === null || body instanceof Uint8Array) {
    headers.push(['Content-Length', String(body?.length ?? 0)]);
    res.writeHead(response.status, response.statusText, headers);
    await _end(res, body ?? undefined);
    return;
  }
  res.writeHead(response.status, response.statusText, headers);
  try {
    // Iterated to its end even when the client has gone: the client's abort reaches the upstream
    // through the request's signal, and the broker then records how the request ended.
    for await (const chunk of body) {
      if (res.destroyed) continue;
      if (!res.write(chunk)) await _drained(res);
    }
  } catch {
    res.destroy();
    return;
  }
  const trailers = response.trailers?.() ?? [];
  if (trailers.length > 0) res.addTrailers(trailers);
  await _end(res);
}

/** Resolves once the response is sent or its connection is gone (never waits on a dead socket). */
function _end(res: ServerResponse, body?: Uint8Array): Promise<void> {
  return new Promise((resolve) => {
    if (res.destroyed) return resolve();
    res.once('finish', resolve);
    res.once('close', resolve);
    res.end(body);
  });
}

function _drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    if (res.destroyed) return resolve();
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

function _pairs(raw: readonly string[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i + 1 < raw.length; i += 2) out.push([raw[i] as string, raw[i + 1] as string]);
  return out;
}
