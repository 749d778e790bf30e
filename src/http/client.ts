/**
 * A small HTTP/1.1 client written directly over node:net and node:tls sockets, so that the bytes sent
 * are exactly the request that policy checked, to exactly the host it checked, on Node and Deno alike:
 * no redirects are followed, no environment variable is consulted (proxies, CA bundles: the roots are
 * always passed explicitly), headers are neither trimmed nor merged. The certificate is always
 * verified against the URL's host name, also when `connectTo` routes the connection elsewhere.
 *
 * One connection per request (`Connection: close`), unless the caller passes a `ConnectionPool`
 * (serve does): then a connection whose response was read exactly to its end goes back to the
 * pool for the same host, address, port and CAs (src/http/pool.ts). The socket is opened by
 * `_open` and owned by a `_Conn` that reads from it for one exchange.
 *
 * Error messages never quote response bytes: an upstream may echo an injected secret anywhere.
 */
import { FIELD_VALUE_RE, FRAMING_HEADERS, HOP_BY_HOP_HEADERS, TOKEN_RE } from '../grammar.ts';
import { Buffer } from 'node:buffer';
import { connect as netConnect, isIP, type Socket } from 'node:net';
import { pipeline, Readable, type Transform } from 'node:stream';
import {
  checkServerIdentity,
  connect as tlsConnect,
  createSecureContext,
  rootCertificates,
  type SecureContext,
} from 'node:tls';
import { createBrotliDecompress, createGunzip, createInflate, createInflateRaw } from 'node:zlib';
import { TpError, usage } from '../errors.ts';
import { type ConnectTo, resolveConnectTo } from './connect_to.ts';
import { ConnectionPool } from './pool.ts';

export interface OutboundRequest {
  method: string;
  url: URL;
  /** Sent in this order, byte for byte; never `Host` or framing headers (the client sets those). */
  headers: ReadonlyArray<readonly [string, string]>;
  body: Uint8Array | null;
}

export interface SendOptions {
  connectTo?: readonly ConnectTo[];
  /** PEM text; when set it replaces the bundled roots (the operator's --cacert). */
  ca?: string;
  /** TCP connect plus TLS handshake; default 10 s. */
  connectTimeoutMs?: number;
  /** The whole request, connect and body included; default 60 s. */
  timeoutMs?: number;
  /** Cap on the decoded body; default 100 MiB. */
  maxResponseBytes?: number;
  signal?: AbortSignal;
  /** Keep connections alive and reuse them (serve); without it, one connection per request. */
  pool?: ConnectionPool;
}

export interface UpstreamResponse {
  status: number;
  statusText: string;
  /** In the order received, names as received, hop-by-hop headers removed. */
  headers: Array<[string, string]>;
  /**
   * Streams the decoded body once. Iterate it to the end or call `return()` on its iterator: the
   * connection stays open (at most until the timeout) until then.
   */
  body: AsyncIterable<Uint8Array>;
}

const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
export const DEFAULT_TIMEOUT_MS = 60_000;
export const DEFAULT_MAX_RESPONSE_BYTES = 100 * 1024 * 1024;
const MAX_HEAD_BYTES = 64 * 1024;
const MAX_HEADERS = 256;
const MAX_INFORMATIONAL = 16;
const MAX_CHUNK_LINE = 4096;
/** Socket bytes buffered ahead of the consumer before reading pauses. */
const READ_AHEAD = 256 * 1024;

const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH']);
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']);
const DNS_ERRORS = new Set(['ENOTFOUND', 'EAI_AGAIN', 'EAI_FAIL', 'EAI_NONAME', 'EAI_NODATA']);

export async function send(
  req: OutboundRequest,
  options: SendOptions = {},
): Promise<UpstreamResponse> {
  const started = Date.now();
  const target = _target(req.url, options.connectTo ?? []);
  const pool = options.pool;
  const key = pool === undefined ? null : ConnectionPool.key(target, options.ca);
  const head = _requestHead(req, key !== null);
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const signal = options.signal;
  if (signal?.aborted) throw _aborted(target.label, signal);
  let reused = key === null ? null : (pool as ConnectionPool).take(key);
  for (;;) {
    const socket = reused ?? await _open(target, {
      ca: options.ca,
      timeoutMs: Math.min(options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS, timeoutMs),
      signal,
    });
    const conn = _track(socket, {
      label: target.label,
      limitMs: timeoutMs,
      remainingMs: Math.max(0, timeoutMs - (Date.now() - started)),
      signal,
      release: key === null ? null : (s) => (pool as ConnectionPool).put(key, s),
    });
    try {
      return await _exchange(conn, {
        head,
        body: req.body,
        method: req.method,
        maxResponseBytes: options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES,
        keepAlive: key !== null,
      });
    } catch (error) {
      conn.close();
      // A kept-alive connection the server closed meanwhile fails before any answer: an
      // idempotent request is sent once more on a fresh connection.
      const ours = error instanceof TpError &&
        (error.code === 'timeout' || error.code === 'aborted');
      const retry = reused !== null && conn.received() === 0 && !ours &&
        IDEMPOTENT.has(req.method.toUpperCase()) && signal?.aborted !== true;
      if (!retry) throw _asTpError(error, target.label);
      reused = null;
    }
  }
}

interface _Target {
  tls: boolean;
  /** The URL's host name: SNI and certificate verification always use it. */
  hostname: string;
  address: string;
  port: number;
  label: string;
}

function _target(url: URL, connectTo: readonly ConnectTo[]): _Target {
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw usage(
      'unsupported_scheme',
      `cannot send to a ${url.protocol} URL: only http: and https: are supported`,
    );
  }
  const tls = url.protocol === 'https:';
  const hostname = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  const port = url.port === '' ? (tls ? 443 : 80) : Number(url.port);
  const route = resolveConnectTo(connectTo, hostname, port) ?? { address: hostname, port };
  return { tls, hostname, address: route.address, port: route.port, label: url.host };
}

function _requestHead(req: OutboundRequest, keepAlive: boolean): Buffer {
  if (!TOKEN_RE.test(req.method)) {
    throw usage('bad_method', 'the request method is not a valid HTTP token');
  }
  const target = `${req.url.pathname}${req.url.search}`;
  if (!/^\/[\x21-\x7e]*$/.test(target)) {
    throw usage('bad_url', 'the request path contains characters that cannot be sent');
  }
  const lines = [`${req.method} ${target} HTTP/1.1`, `Host: ${req.url.host}`];
  let acceptEncoding = false;
  req.headers.forEach(([name, value], index) => {
    if (!TOKEN_RE.test(name)) {
      throw usage('bad_header', `request header #${index + 1} has an invalid name`);
    }
    const lower = name.toLowerCase();
    if (FRAMING_HEADERS.has(lower)) {
      throw usage(
        'bad_header',
        `request header "${name}" is set by the HTTP client itself and cannot be given`,
      );
    }
    if (!FIELD_VALUE_RE.test(value)) {
      throw usage(
        'bad_header',
        `the value of request header "${name}" contains a control character or a character above U+00FF`,
      );
    }
    if (lower === 'accept-encoding') acceptEncoding = true;
    lines.push(`${name}: ${value}`);
  });
  if (req.body !== null || BODY_METHODS.has(req.method.toUpperCase())) {
    lines.push(`Content-Length: ${req.body?.length ?? 0}`);
  }
  if (!keepAlive) lines.push('Connection: close');
  if (!acceptEncoding) lines.push('Accept-Encoding: identity');
  return Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
}

/** Opens the TCP connection, then TLS on top of it, so each failure is named by its phase. */
function _open(
  target: _Target,
  options: {
    ca: string | undefined;
    timeoutMs: number;
    signal: AbortSignal | undefined;
  },
): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const raw = netConnect({ host: target.address, port: target.port });
    let socket: Socket = raw;
    let phase: 'connect' | 'tls' = 'connect';
    let settled = false;
    const settle = (error?: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      if (error === undefined) return resolve(socket);
      socket.destroy();
      raw.destroy();
      reject(_connectError(error, phase, target));
    };
    const onAbort = () => settle(_aborted(target.label, options.signal));
    const timer = setTimeout(() => {
      settle(
        new TpError(
          'upstream',
          'timeout',
          `connecting to ${target.label} timed out after ${options.timeoutMs} ms`,
          { hint: 'check that the host is reachable, or raise --timeout' },
        ),
      );
    }, options.timeoutMs);
    options.signal?.addEventListener('abort', onAbort, { once: true });
    raw.on('error', settle);
    raw.once('connect', () => {
      if (!target.tls) return settle();
      phase = 'tls';
      let secureContext: SecureContext;
      try {
        secureContext = _secureContext(options.ca);
      } catch (e) {
        return settle(e);
      }
      const tlsSocket = tlsConnect({
        socket: raw,
        // RFC 6066: SNI carries no IP literal and no trailing dot.
        servername: isIP(target.hostname) === 0 ? target.hostname.replace(/\.$/, '') : undefined,
        secureContext,
        ALPNProtocols: ['http/1.1'],
        rejectUnauthorized: true,
        // Without this, an IP literal would be checked against "localhost" (no `host` is known
        // for an already connected socket), and a routed connection against the routed address.
        checkServerIdentity: (_name, cert) => checkServerIdentity(target.hostname, cert),
      });
      socket = tlsSocket;
      tlsSocket.on('error', settle);
      tlsSocket.once('secureConnect', () => settle());
    });
  });
}

/**
 * One TLS context per trusted-roots choice (the runtime's bundled roots, or an operator's --cacert), reused
 * by every connection: building one per request cost serve more CPU than the handshake's
 * verification, and native memory the garbage collector does not see.
 */
const secureContexts = new Map<string, SecureContext>();

function _secureContext(ca: string | undefined): SecureContext {
  const key = ca ?? '';
  let context = secureContexts.get(key);
  if (context === undefined) {
    // Always an explicit `ca`: the runtime's default store also takes NODE_EXTRA_CA_CERTS, and
    // with NODE_OPTIONS or NODE_USE_SYSTEM_CA the system store (SSL_CERT_FILE, SSL_CERT_DIR) on
    // Node, DENO_CERT and DENO_TLS_CA_STORE on Deno: all set by whoever starts the process.
    // `rootCertificates` is the bundled Mozilla list, whatever the environment says.
    context = createSecureContext({ ca: ca ?? [...rootCertificates], minVersion: 'TLSv1.2' });
    secureContexts.set(key, context);
  }
  return context;
}

function _connectError(error: unknown, phase: 'connect' | 'tls', target: _Target): TpError {
  if (error instanceof TpError) return error;
  const code = _errorCode(error);
  const where = `${target.label}${
    target.address === target.hostname ? '' : ` (via ${target.address}:${target.port})`
  }`;
  if (phase === 'tls') {
    const reason = _tlsReason(code, error);
    return new TpError('upstream', 'tls', `TLS with ${target.hostname} failed: ${reason}`, {
      cause: error,
      hint: code === 'ERR_TLS_CERT_ALTNAME_INVALID'
        ? 'the server is not who the URL names; check the URL and any --connect-to'
        : 'if the server uses a private CA, pass it with --cacert FILE',
    });
  }
  if (DNS_ERRORS.has(code)) {
    return new TpError('upstream', 'dns', `cannot resolve ${target.address} (${code})`, {
      cause: error,
      hint: 'check the host name, or route it with --connect-to HOST:PORT:ADDRESS:PORT',
    });
  }
  return new TpError(
    'upstream',
    'connect',
    `cannot connect to ${where}: ${code || _message(error)}`,
    { cause: error, hint: 'check that the server is running and reachable' },
  );
}

function _tlsReason(code: string, error: unknown): string {
  switch (code) {
    case 'ERR_TLS_CERT_ALTNAME_INVALID':
      return 'certificate name mismatch: the certificate does not cover this host name';
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'UNABLE_TO_GET_ISSUER_CERT':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
      return `the certificate is not signed by a trusted authority (${code})`;
    case 'CERT_HAS_EXPIRED':
      return 'the certificate has expired';
    case 'CERT_NOT_YET_VALID':
      return 'the certificate is not valid yet';
    default:
      return code === '' ? _message(error) : `${_message(error)} (${code})`;
  }
}

interface _Conn {
  label: string;
  write(bytes: Uint8Array): void;
  /** Next bytes, or null at end of stream; rejects once the connection failed. */
  read(): Promise<Buffer | null>;
  unread(bytes: Buffer): void;
  /** Bytes received from the server so far. */
  received(): number;
  /** Set once the response allows the connection to be reused after it. */
  reusable: boolean;
  /** The response was read to the end of its framing: reuse the connection if allowed. */
  done(): void;
  close(): void;
}

/**
 * Owns an open socket for one exchange: buffered reads with back-pressure, the overall timer, the
 * abort signal. `done()` hands the socket to `release` (the pool) when the exchange allows it,
 * with every listener of this exchange removed; otherwise the socket is destroyed.
 */
function _track(
  socket: Socket,
  options: {
    label: string;
    limitMs: number;
    remainingMs: number;
    signal: AbortSignal | undefined;
    release: ((socket: Socket) => void) | null;
  },
): _Conn {
  const queue: Buffer[] = [];
  let queued = 0;
  let received = 0;
  let ended = false;
  let failure: unknown = null;
  let closed = false;
  let wake: (() => void) | null = null;
  const notify = () => {
    const w = wake;
    wake = null;
    w?.();
  };
  const fail = (error: unknown) => {
    failure ??= error;
    close();
  };
  const onAbort = () => fail(_aborted(options.label, options.signal));
  const timer = setTimeout(() => {
    fail(
      new TpError(
        'upstream',
        'timeout',
        `the request to ${options.label} timed out after ${options.limitMs} ms`,
        { hint: 'raise --timeout, or check that the server answers' },
      ),
    );
  }, options.remainingMs);
  const onData = (chunk: Buffer) => {
    queue.push(chunk);
    queued += chunk.length;
    received += chunk.length;
    if (queued > READ_AHEAD) socket.pause();
    notify();
  };
  const onEnd = () => {
    ended = true;
    notify();
  };
  const onError = (error: Error) => {
    failure ??= error;
    notify();
  };
  const detach = () => {
    closed = true;
    clearTimeout(timer);
    options.signal?.removeEventListener('abort', onAbort);
    socket.off('data', onData);
    socket.off('end', onEnd);
    socket.off('close', onEnd);
    socket.off('error', onError);
  };
  function close() {
    if (closed) return;
    detach();
    socket.destroy();
    notify();
  }
  options.signal?.addEventListener('abort', onAbort, { once: true });
  // The signal may have fired between the end of the handshake and this point.
  if (options.signal?.aborted) onAbort();
  socket.on('data', onData);
  socket.on('end', onEnd);
  socket.on('close', onEnd);
  socket.on('error', onError);
  socket.resume();
  const conn: _Conn = {
    label: options.label,
    reusable: false,
    write(bytes) {
      socket.write(bytes);
    },
    async read() {
      for (;;) {
        // Our own verdicts (timeout, abort) stop at once; a socket error (a reset after the server
        // answered early) comes after the bytes that arrived before it.
        if (failure instanceof TpError) throw failure;
        const chunk = queue.shift();
        if (chunk !== undefined) {
          queued -= chunk.length;
          if (queued <= READ_AHEAD && !closed) socket.resume();
          return chunk;
        }
        if (failure !== null) throw failure;
        if (ended || closed) return null;
        await new Promise<void>((resolve) => (wake = resolve));
      }
    },
    unread(bytes) {
      if (bytes.length === 0) return;
      queue.unshift(bytes);
      queued += bytes.length;
    },
    received: () => received,
    done() {
      if (closed) return;
      // Bytes beyond the response are not a response to anything: never reuse after them.
      if (!conn.reusable || options.release === null || queued > 0 || ended || failure !== null) {
        close();
        return;
      }
      detach();
      options.release(socket);
    },
    close,
  };
  return conn;
}

interface _Head {
  status: number;
  statusText: string;
  headers: Array<[string, string]>;
  /** The minor version of the status line: 1 for HTTP/1.1. */
  minor: number;
}

type _Framing =
  | { kind: 'none' }
  | { kind: 'length'; length: number }
  | { kind: 'chunked' }
  | { kind: 'close' };

async function _exchange(
  conn: _Conn,
  options: {
    head: Buffer;
    body: Uint8Array | null;
    method: string;
    maxResponseBytes: number;
    keepAlive: boolean;
  },
): Promise<UpstreamResponse> {
  conn.write(
    options.body === null || options.body.length === 0
      ? options.head
      : Buffer.concat([options.head, options.body]),
  );
  let head = await _readHead(conn);
  for (let informational = 0; head.status < 200; informational++) {
    if (head.status === 101) throw _protocol('the server switched protocols unasked (101)');
    if (informational === MAX_INFORMATIONAL) {
      throw _protocol('the server sent too many informational (1xx) responses');
    }
    head = await _readHead(conn);
  }
  const framing = _framing(options.method, head);
  const codings = _contentCodings(head.headers);
  if (
    codings.length === 0 && framing.kind === 'length' && framing.length > options.maxResponseBytes
  ) {
    throw _tooLarge(options.maxResponseBytes);
  }
  conn.reusable = options.keepAlive && head.minor === 1 && framing.kind !== 'close' &&
    !_listValues(head.headers, 'connection').includes('close');
  if (framing.kind === 'none') conn.done();
  const drop = new Set(HOP_BY_HOP_HEADERS);
  if (codings.length > 0) drop.add('content-encoding').add('content-length');
  const headers = head.headers.filter(([name]) => {
    const lower = name.toLowerCase();
    return !drop.has(lower) && !lower.startsWith('proxy-');
  });
  const body = _body(conn, { framing, codings, maxResponseBytes: options.maxResponseBytes });
  return { status: head.status, statusText: head.statusText, headers, body };
}

async function _readHead(conn: _Conn): Promise<_Head> {
  let buffered = Buffer.alloc(0);
  for (;;) {
    const end = buffered.indexOf('\r\n\r\n');
    if (end !== -1 && end <= MAX_HEAD_BYTES) {
      conn.unread(buffered.subarray(end + 4));
      return _parseHead(buffered.subarray(0, end).toString('latin1'));
    }
    if (end !== -1 || buffered.length > MAX_HEAD_BYTES) {
      throw _protocol(`the response headers exceed ${MAX_HEAD_BYTES} bytes`);
    }
    const chunk = await conn.read();
    if (chunk === null) throw _protocol('the connection closed before a complete response head');
    buffered = Buffer.concat([buffered, chunk]);
  }
}

function _parseHead(text: string): _Head {
  const lines = text.split('\r\n');
  const statusLine = /^HTTP\/1\.([01]) ([1-5][0-9]{2})(?: ([\t\x20-\x7e\x80-\xff]*))?$/.exec(
    lines[0],
  );
  if (statusLine === null) throw _protocol('the response status line is malformed');
  if (lines.length - 1 > MAX_HEADERS) {
    throw _protocol(`the response has more than ${MAX_HEADERS} header fields`);
  }
  const headers: Array<[string, string]> = [];
  for (const line of lines.slice(1)) {
    if (line.startsWith(' ') || line.startsWith('\t')) {
      throw _protocol('the response uses obsolete header line folding');
    }
    const field = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[\t ]*(.*?)[\t ]*$/s.exec(line);
    if (field === null || !FIELD_VALUE_RE.test(field[2])) {
      throw _protocol('the response has a malformed header field');
    }
    headers.push([field[1], field[2]]);
  }
  return {
    status: Number(statusLine[2]),
    statusText: statusLine[3] ?? '',
    headers,
    minor: Number(statusLine[1]),
  };
}

function _framing(method: string, head: _Head): _Framing {
  if (method.toUpperCase() === 'HEAD' || head.status === 204 || head.status === 304) {
    return { kind: 'none' };
  }
  const transfer = _listValues(head.headers, 'transfer-encoding');
  const lengths = _listValues(head.headers, 'content-length');
  if (transfer.length > 0) {
    if (lengths.length > 0) {
      throw _protocol('the response has both Transfer-Encoding and Content-Length');
    }
    if (transfer.length !== 1 || transfer[0] !== 'chunked') {
      throw _protocol('the response uses a transfer coding other than chunked');
    }
    return { kind: 'chunked' };
  }
  if (lengths.length > 0) {
    if (!lengths.every((v) => v === lengths[0]) || !/^[0-9]{1,15}$/.test(lengths[0])) {
      throw _protocol('the response has an invalid or conflicting Content-Length');
    }
    const length = Number(lengths[0]);
    return length === 0 ? { kind: 'none' } : { kind: 'length', length };
  }
  return { kind: 'close' };
}

function _contentCodings(headers: ReadonlyArray<[string, string]>): string[] {
  const codings = _listValues(headers, 'content-encoding').filter((c) => c !== 'identity');
  for (const coding of codings) {
    if (!['gzip', 'x-gzip', 'deflate', 'br'].includes(coding)) {
      throw new TpError(
        'upstream',
        'unsupported_encoding',
        'the response uses a content encoding this client cannot decode',
        { hint: 'supported encodings are gzip, deflate and br' },
      );
    }
  }
  return codings;
}

/** Comma-separated values of every field with this name, trimmed and lower-cased. */
function _listValues(headers: ReadonlyArray<[string, string]>, name: string): string[] {
  return headers
    .filter(([n]) => n.toLowerCase() === name)
    .flatMap(([, v]) => v.split(','))
    .map((v) => v.trim().toLowerCase())
    .filter((v) => v !== '');
}

/**
 * The response body as an iterable whose `return()` closes the connection even when iteration
 * never started (an async generator's `finally` would not run then).
 */
function _body(
  conn: _Conn,
  options: { framing: _Framing; codings: string[]; maxResponseBytes: number },
): AsyncIterable<Uint8Array> {
  const generator = _decodedBody(conn, options);
  const iterator: AsyncIterableIterator<Uint8Array> = {
    next: () => generator.next(),
    return: () => {
      conn.close();
      return generator.return(undefined);
    },
    [Symbol.asyncIterator]: () => iterator,
  };
  return iterator;
}

async function* _decodedBody(
  conn: _Conn,
  options: { framing: _Framing; codings: string[]; maxResponseBytes: number },
): AsyncGenerator<Uint8Array, undefined> {
  let total = 0;
  try {
    let stream: AsyncIterable<Buffer> = _framedBody(conn, options.framing);
    for (const coding of [...options.codings].reverse()) stream = _decode(stream, coding);
    for await (const chunk of stream) {
      total += chunk.length;
      if (total > options.maxResponseBytes) throw _tooLarge(options.maxResponseBytes);
      if (chunk.length > 0) yield new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length);
    }
  } catch (error) {
    throw _asTpError(error, conn.label);
  } finally {
    conn.close();
  }
  return undefined;
}

async function* _framedBody(conn: _Conn, framing: _Framing): AsyncGenerator<Buffer> {
  if (framing.kind === 'length') {
    let remaining = framing.length;
    while (remaining > 0) {
      const chunk = await conn.read();
      if (chunk === null) throw _protocol('the connection closed before the end of the body');
      if (chunk.length > remaining) conn.unread(chunk.subarray(remaining));
      const part = chunk.length > remaining ? chunk.subarray(0, remaining) : chunk;
      remaining -= part.length;
      yield part;
    }
  } else if (framing.kind === 'chunked') {
    yield* _chunkedBody(conn);
  } else if (framing.kind === 'close') {
    for (let chunk = await conn.read(); chunk !== null; chunk = await conn.read()) yield chunk;
  }
  conn.done();
}

async function* _chunkedBody(conn: _Conn): AsyncGenerator<Buffer> {
  for (;;) {
    const sizeLine = /^([0-9a-fA-F]{1,13})[\t ]*(;[\t\x20-\x7e\x80-\xff]*)?$/.exec(
      await _readLine(conn, MAX_CHUNK_LINE),
    );
    if (sizeLine === null) throw _protocol('the response has a malformed chunk size line');
    let remaining = parseInt(sizeLine[1], 16);
    if (remaining === 0) break;
    while (remaining > 0) {
      const chunk = await conn.read();
      if (chunk === null) throw _protocol('the connection closed inside a chunk');
      if (chunk.length > remaining) conn.unread(chunk.subarray(remaining));
      const part = chunk.subarray(0, remaining);
      remaining -= part.length;
      yield part;
    }
    if ((await _readLine(conn, 0)) !== '') throw _protocol('a chunk is not followed by CRLF');
  }
  let trailerBytes = 0;
  for (;;) {
    const line = await _readLine(conn, MAX_HEAD_BYTES - trailerBytes);
    if (line === '') return;
    trailerBytes += line.length + 2;
  }
}

/** One CRLF-terminated line (without the CRLF), at most `max` bytes long. */
async function _readLine(conn: _Conn, max: number): Promise<string> {
  let buffered = Buffer.alloc(0);
  for (;;) {
    const end = buffered.indexOf('\r\n');
    if (end !== -1) {
      conn.unread(buffered.subarray(end + 2));
      const line = buffered.subarray(0, end).toString('latin1');
      if (line.length > max) throw _protocol('the response has an overlong chunk line');
      if (/[\r\n]/.test(line)) throw _protocol('the response has a bare CR or LF');
      return line;
    }
    if (buffered.length > max + 1) throw _protocol('the response has an overlong chunk line');
    const chunk = await conn.read();
    if (chunk === null) throw _protocol('the connection closed inside the chunked body');
    buffered = Buffer.concat([buffered, chunk]);
  }
}

/** Streams `source` through a zlib decoder with back-pressure. */
async function* _decode(source: AsyncIterable<Buffer>, coding: string): AsyncGenerator<Buffer> {
  const iterator = source[Symbol.asyncIterator]();
  const first = await iterator.next();
  if (first.done) return;
  const decoder = _decoder(coding, first.value);
  const input = Readable.from(_prepend(first.value, iterator), { objectMode: false });
  pipeline(input, decoder, () => {});
  try {
    for await (const chunk of decoder) yield chunk as Buffer;
  } catch (error) {
    if (error instanceof TpError) throw error;
    throw _protocol(`the ${coding} response body cannot be decoded`);
  } finally {
    decoder.destroy();
    input.destroy();
  }
}

async function* _prepend(first: Buffer, rest: AsyncIterator<Buffer>): AsyncGenerator<Buffer> {
  try {
    yield first;
    for (let r = await rest.next(); !r.done; r = await rest.next()) yield r.value;
  } finally {
    await rest.return?.();
  }
}

function _decoder(coding: string, first: Buffer): Transform {
  if (coding === 'br') return createBrotliDecompress();
  if (coding === 'deflate') {
    // "deflate" should be zlib-wrapped (RFC 9110), but some servers send raw deflate: a zlib
    // stream starts with a CMF byte whose low nibble is 8.
    return (first[0] & 0x0f) === 0x08 ? createInflate() : createInflateRaw();
  }
  return createGunzip();
}

function _asTpError(error: unknown, label: string): TpError {
  if (error instanceof TpError) return error;
  const code = _errorCode(error);
  return new TpError(
    'upstream',
    'protocol',
    `the connection to ${label} failed: ${code || _message(error)}`,
    { cause: error },
  );
}

function _protocol(message: string): TpError {
  return new TpError('upstream', 'protocol', message, {
    hint: 'the server did not answer with valid HTTP/1.1',
  });
}

function _tooLarge(max: number): TpError {
  return new TpError('upstream', 'response_too_large', `the response is larger than ${max} bytes`, {
    hint: 'raise --max-response-bytes if this response is expected',
  });
}

function _aborted(label: string, signal: AbortSignal | undefined): TpError {
  return new TpError('upstream', 'aborted', `the request to ${label} was aborted`, {
    cause: signal?.reason,
  });
}

function _errorCode(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : '';
}

function _message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
