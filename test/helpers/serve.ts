/**
 * Runs `trust-protocol serve` as a user would (through command() in test/helpers/cli.ts, so on
 * Node, Deno or the binary), reads where it listens from its --json line, and talks HTTP to it
 * over TCP or its unix socket, byte-exactly where a test needs that.
 */
import { Buffer } from 'node:buffer';
import { type ChildProcess, spawn } from 'node:child_process';
import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { gzipSync } from 'node:zlib';
import {
  addCredential,
  baseEnv,
  command,
  newAgent,
  newHome,
  type RunResult,
  storeEnv,
  type TestHome,
} from './cli.ts';
import { type Listener, startHttpsListener, TEST_CA } from './listeners.ts';

export interface ServeInfo {
  pid: number;
  listen: string[];
  socket: string;
  started_at: string;
  expires_at: string;
  ttl_seconds: number;
  idle_seconds: number;
  agent_rate: string | null;
}

export interface Exited {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

export interface Served {
  info: ServeInfo;
  /** The TCP port, when started with --listen. */
  port: number | null;
  socket: string;
  /** Where `exec --server` and TRUST_PROTOCOL_SERVER point: the TCP URL, else `unix:PATH`. */
  url: string;
  proc: ChildProcess;
  stderr(): string;
  /** Settles when the process exits (by itself: TTL, idle; or after stop()). */
  exited: Promise<Exited>;
  /** SIGTERM, then waits for the exit. */
  stop(): Promise<Exited>;
}

export interface ServeOptions {
  env?: Record<string, string | undefined>;
  /** Pass the home's password file (default true). */
  password?: boolean;
  /** Node flags on serve's own command line (from the sources on Node only; `command`). */
  nodeFlags?: readonly string[];
}

/** serve's arguments for a loopback port, the test CA, and `hosts` sent to a local upstream. */
export function upstreamArgs(t: TestHome, port: number, hosts = ['api.allowed.test']): string[] {
  return [
    '--listen',
    '127.0.0.1:0',
    '--cacert',
    t.file('ca.pem', TEST_CA),
    ...hosts.flatMap((h) => ['--connect-to', `${h}:443:127.0.0.1:${port}`]),
  ];
}

/** Starts serve in `t` with `args`; rejects with its stderr if it exits before listening. */
/**
 * A new home with one credential `k` (value `value`, for api.allowed.test) granted to one agent, a
 * local HTTPS upstream that echoes, and a serve in front of it. `stop()` ends both.
 */
export async function servedCredential(value: string): Promise<{
  t: TestHome;
  upstream: Listener;
  s: Served;
  agent: { id: string; token: string };
  stop(): Promise<void>;
}> {
  const t = await newHome();
  const upstream = await startHttpsListener();
  const added = await addCredential(t, 'k', value, ['--allowed-domains', 'api.allowed.test']);
  if (added.code !== 0) throw new Error(`credential add failed: ${added.stderr}`);
  const agent = await newAgent(t, { name: 'worker', grants: ['k'] });
  const s = await startServe(t, upstreamArgs(t, upstream.port));
  return {
    t,
    upstream,
    s,
    agent,
    async stop() {
      await s.stop();
      await upstream.close();
    },
  };
}

export function startServe(
  t: TestHome,
  args: readonly string[],
  options: ServeOptions = {},
): Promise<Served> {
  const { file, argv } = command([
    '--home',
    t.home,
    '--json',
    'serve',
    ...args,
    ...(options.password === false ? [] : ['--password-file', t.passwordFile]),
  ], { nodeFlags: options.nodeFlags });
  const proc = spawn(file, argv, {
    env: baseEnv({ ...storeEnv(['--home', t.home]), ...options.env }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  const exited = new Promise<Exited>((resolve) => {
    proc.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`serve did not start within 30 s: ${stderr}`));
    }, 30_000);
    proc.stdout?.on('data', (d: Buffer) => {
      const before = stdout.includes('\n');
      stdout += d.toString('utf8');
      if (before || !stdout.includes('\n')) return;
      clearTimeout(timer);
      const info = JSON.parse(stdout.slice(0, stdout.indexOf('\n'))) as ServeInfo;
      const tcp = info.listen.find((u) => u.startsWith('http://'));
      resolve({
        info,
        port: tcp === undefined ? null : Number(new URL(tcp).port),
        socket: info.socket,
        url: tcp ?? `unix:${info.socket}`,
        proc,
        stderr: () => stderr,
        exited,
        stop: () => {
          // process.kill, not proc.kill: Deno's child_process reports a child it signalled
          // itself as killed by the signal, even when the child handled it and exited 0.
          if (proc.exitCode === null && proc.signalCode === null) {
            try {
              process.kill(proc.pid as number, 'SIGTERM');
            } catch { /* exited meanwhile */ }
          }
          return exited;
        },
      });
    });
    exited.then((e) => {
      clearTimeout(timer);
      reject(new Error(`serve exited with ${e.code} before listening: ${e.stderr}`));
    });
  });
}

/** Runs serve to its end (for refusals at start): like run() in cli.ts. */
export async function serveOnce(
  t: TestHome,
  args: readonly string[],
  options: ServeOptions = {},
): Promise<Exited> {
  const { file, argv } = command([
    '--home',
    t.home,
    'serve',
    ...args,
    ...(options.password === false ? [] : ['--password-file', t.passwordFile]),
  ], { nodeFlags: options.nodeFlags });
  const proc = spawn(file, argv, {
    env: baseEnv({ ...storeEnv(['--home', t.home]), ...options.env }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  proc.stdout?.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
  proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
  const timer = setTimeout(() => proc.kill('SIGKILL'), 30_000);
  return await new Promise((resolve) => {
    proc.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

export interface HttpResult {
  status: number;
  statusText: string;
  /** As received: names in their case, repeated names kept. */
  headers: Array<[string, string]>;
  body: Buffer;
  trailers: Record<string, string | undefined>;
  /** Whether the response ended properly (false: the connection was cut). */
  complete: boolean;
}

export interface HttpOptions {
  method?: string;
  headers?: Record<string, string> | Array<[string, string]>;
  body?: string | Uint8Array;
  /** The Host header; default the listener's own name. null sends none. */
  host?: string | null;
}

/** One request to serve's TCP port or unix socket; the body is read to its end. */
export function http(
  to: Served | { port: number } | { socket: string },
  path: string,
  options: HttpOptions = {},
): Promise<HttpResult> {
  const tcp = 'port' in to && to.port !== null ? to.port : null;
  const socket = tcp === null ? (to as { socket: string }).socket : null;
  const host = options.host === undefined
    ? (tcp === null ? 'localhost' : `127.0.0.1:${tcp}`)
    : options.host;
  const headers: Array<[string, string]> = Array.isArray(options.headers)
    ? [...options.headers]
    : Object.entries(options.headers ?? {});
  if (host !== null) headers.unshift(['Host', host]);
  const body = options.body === undefined ? undefined : Buffer.from(options.body);
  if (body !== undefined) headers.push(['Content-Length', String(body.length)]);
  return new Promise((resolve, reject) => {
    const req = request({
      ...(tcp === null ? { socketPath: socket as string } : { host: '127.0.0.1', port: tcp }),
      method: options.method ?? (body === undefined ? 'GET' : 'POST'),
      path,
      headers: headers.flat(),
      setHost: false,
      agent: false,
    }, (res) => {
      const chunks: Buffer[] = [];
      const pairs: Array<[string, string]> = [];
      for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) {
        pairs.push([res.rawHeaders[i] as string, res.rawHeaders[i + 1] as string]);
      }
      const done = () =>
        resolve({
          status: res.statusCode ?? 0,
          statusText: res.statusMessage ?? '',
          headers: pairs,
          body: Buffer.concat(chunks),
          trailers: { ...res.trailers },
          complete: res.complete,
        });
      res.on('data', (d: Buffer) => chunks.push(Buffer.from(d)));
      res.on('end', done);
      res.on('error', done);
      res.on('aborted', done);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** The first value of a response header (case-insensitive). */
export function header(r: HttpResult, name: string): string | undefined {
  return r.headers.find(([n]) => n.toLowerCase() === name.toLowerCase())?.[1];
}

/** The body as JSON (tests read fields of it freely). */
// deno-lint-ignore no-explicit-any
export function json(r: HttpResult): any {
  return JSON.parse(r.body.toString('utf8'));
}

/** A response as if it were a CLI run, for the canary checks: the head and body as "stdout". */
export function asRun(r: HttpResult): RunResult {
  const head = `HTTP/1.1 ${r.status} ${r.statusText}\r\n` +
    r.headers.map(([k, v]) => `${k}: ${v}\r\n`).join('') + '\r\n' +
    Object.entries(r.trailers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
  const bytes = Buffer.concat([Buffer.from(head, 'latin1'), r.body]);
  return {
    code: r.status,
    stdout: bytes.toString('utf8'),
    stderr: '',
    stdoutBytes: new Uint8Array(bytes),
  };
}

/**
 * Writes raw bytes to the TCP port or socket (optionally more later), and collects what comes
 * back until the server closes the connection or `waitMs` passes.
 */
export function raw(
  to: { port: number } | { socket: string },
  bytes: string,
  options: { waitMs?: number; drip?: { bytes: string; everyMs: number } } = {},
): Promise<{ response: string; closed: boolean; ms: number }> {
  return new Promise((resolve) => {
    const s = 'port' in to ? connect(to.port, '127.0.0.1') : connect(to.socket);
    const started = Date.now();
    let response = '';
    let settled = false;
    const finish = (closed: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearInterval(drip);
      s.destroy();
      resolve({ response, closed, ms: Date.now() - started });
    };
    s.on('data', (d: Buffer) => (response += d.toString('latin1')));
    s.on('close', () => finish(true));
    s.on('error', () => finish(true));
    s.write(bytes);
    const drip = options.drip === undefined
      ? undefined
      : setInterval(() => s.write(options.drip?.bytes ?? ''), options.drip.everyMs);
    const timer = setTimeout(() => finish(false), options.waitMs ?? 5_000);
  });
}

export interface UpstreamRequest {
  method: string;
  path: string;
  /** Lower-case names; repeated names joined with ", ". */
  headers: Record<string, string>;
  body: Buffer;
}

/**
 * An upstream written at the socket level (for startRawListener), so status line, chunking and
 * timing are exactly as scripted on Node and Deno. It records each request, then answers by path:
 * - `/r/CODE/absolute|relative`: a redirect to https://evil.test/steal or /steal;
 * - `/reflect/raw|base64|hex|json|gzip|header|status|sse-half|sse-bytes|sse-slow`: echoes the
 *   secret it received (Authorization: Bearer, else x-api-key) in that form or place;
 * - `/status/NNN`: that status, with a short text body;
 * - `/slow`: answers after 3 s; `/big`: 100 bytes with a Content-Length; `/big-late`: 10 bytes,
 *   then 100 more after 300 ms, chunked;
 * - anything else: `{"method", "path", "headers", "body"}` as JSON.
 */
export function scriptedUpstream(): {
  onConnection: (socket: Socket) => void;
  requests: UpstreamRequest[];
} {
  const requests: UpstreamRequest[] = [];
  const onConnection = (socket: Socket) => {
    let received = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      const end = received.indexOf('\r\n\r\n');
      if (end < 0) return;
      const [line, ...lines] = received.subarray(0, end).toString('latin1').split('\r\n');
      const headers: Record<string, string> = {};
      for (const l of lines) {
        const colon = l.indexOf(':');
        const name = l.slice(0, colon).toLowerCase();
        const value = l.slice(colon + 1).trim();
        headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
      }
      const length = Number(headers['content-length'] ?? 0);
      if (received.length < end + 4 + length) return;
      socket.off('data', onData);
      const [method, path] = (line as string).split(' ') as [string, string];
      const body = received.subarray(end + 4, end + 4 + length);
      const request = { method, path, headers, body };
      requests.push(request);
      _answer(socket, request).catch(() => socket.destroy());
    };
    socket.on('data', onData);
  };
  return { onConnection, requests };
}

function _secretOf(r: UpstreamRequest): Buffer {
  const auth = r.headers['authorization'];
  const value = auth !== undefined ? auth.replace(/^Bearer /, '') : r.headers['x-api-key'] ?? '';
  return Buffer.from(value, 'latin1');
}

async function _answer(socket: Socket, r: UpstreamRequest): Promise<void> {
  const send = (head: string[], body: Buffer | string) => {
    const bytes = Buffer.from(body);
    socket.end(
      Buffer.concat([
        Buffer.from(
          [...head, `Content-Length: ${bytes.length}`, 'Connection: close'].join('\r\n') +
            '\r\n\r\n',
          'latin1',
        ),
        bytes,
      ]),
    );
  };
  const chunked = async (head: string[], pieces: Buffer[], delayMs: number) => {
    socket.write(
      [...head, 'Transfer-Encoding: chunked', 'Connection: close'].join('\r\n') + '\r\n\r\n',
    );
    for (const piece of pieces) {
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      if (socket.destroyed) return;
      socket.write(
        Buffer.concat([
          Buffer.from(`${piece.length.toString(16)}\r\n`),
          piece,
          Buffer.from('\r\n'),
        ]),
      );
    }
    socket.end('0\r\n\r\n');
  };
  const redirect = /^\/r\/(\d{3})\/(absolute|relative)/.exec(r.path);
  if (redirect !== null) {
    const location = redirect[2] === 'absolute' ? 'https://evil.test/steal' : '/steal';
    return send([`HTTP/1.1 ${redirect[1]} Moved`, `Location: ${location}`], 'moved');
  }
  const status = /^\/status\/(\d{3})$/.exec(r.path);
  if (status !== null) {
    return send(
      [`HTTP/1.1 ${status[1]} Status`, 'Content-Type: text/plain'],
      `status ${status[1]}\n`,
    );
  }
  const s = _secretOf(r);
  const text = (t: string) => Buffer.from(t, 'latin1');
  const SSE = 'Content-Type: text/event-stream';
  switch (r.path.replace(/\?.*/, '')) {
    case '/reflect/raw':
      return send(['HTTP/1.1 200 OK'], Buffer.concat([text('before '), s, text(' after')]));
    case '/reflect/base64':
      return send(
        ['HTTP/1.1 200 OK'],
        text(`b64=${Buffer.concat([text('x'), s]).toString('base64')};`),
      );
    case '/reflect/hex':
      return send(['HTTP/1.1 200 OK'], text(`hex=${s.toString('hex').toUpperCase()};`));
    case '/reflect/json':
      return send(
        ['HTTP/1.1 200 OK', 'Content-Type: application/json'],
        JSON.stringify({ echo: s.toString('latin1') }),
      );
    case '/reflect/gzip':
      return send(
        ['HTTP/1.1 200 OK', 'Content-Encoding: gzip'],
        gzipSync(Buffer.concat([text('before '), s, text(' after')])),
      );
    case '/reflect/header':
      return send(
        [
          'HTTP/1.1 200 OK',
          `X-Echo: ${s.toString('latin1')}`,
          `X-Echo-B64: ${s.toString('base64')}`,
        ],
        'ok',
      );
    case '/reflect/status':
      return send([`HTTP/1.1 200 Echo ${s.toString('latin1')} end`], 'ok');
    case '/reflect/sse-half': {
      const body = Buffer.concat([text('data: '), s, text('\n\n')]);
      const at = 6 + Math.floor(s.length / 2);
      return await chunked(['HTTP/1.1 200 OK', SSE], [body.subarray(0, at), body.subarray(at)], 40);
    }
    case '/reflect/sse-bytes': {
      const body = Buffer.concat([text('data: '), s, text('\n\ndata: done\n\n')]);
      return await chunked(['HTTP/1.1 200 OK', SSE], [...body].map((b) => Buffer.from([b])), 1);
    }
    case '/reflect/sse-slow':
      return await chunked(['HTTP/1.1 200 OK', SSE], [
        Buffer.concat([text('data: first '), s, text('\n\n')]),
        text('data: second\n\n'),
      ], 1_500);
    case '/slow':
      await new Promise((resolve) => setTimeout(resolve, 3_000));
      return send(['HTTP/1.1 200 OK'], 'late');
    case '/big':
      return send(['HTTP/1.1 200 OK'], 'x'.repeat(100));
    case '/big-late':
      return await chunked(['HTTP/1.1 200 OK'], [text('y'.repeat(10)), text('y'.repeat(100))], 150);
    default:
      return send(
        ['HTTP/1.1 200 OK', 'Content-Type: application/json'],
        JSON.stringify({
          method: r.method,
          path: r.path,
          // Connection management is the client's own: one-shot exec asks to close, serve keeps
          // its upstream connections alive. Everything else must be the same either way.
          headers: Object.fromEntries(
            Object.entries(r.headers).filter(([n]) => n !== 'connection'),
          ),
          body: r.body.toString('latin1'),
        }),
      );
  }
}
