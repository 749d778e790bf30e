/**
 * The TypeScript SDK (`import { TrustProtocol } from 'trust-protocol/sdk'`): a client of a running
 * `trust-protocol serve`, for Node and Deno, with no dependency beyond the runtime's node:
 * modules. It holds the agent token and never a credential value: serve sends the request,
 * injects the value and redacts the answer. It imports nothing from the CLI, so the published
 * bundle stays small; the discovery below is exec's (cmd/commands/exec.ts), redone in a few lines.
 */
import * as fs from 'node:fs';
import { type IncomingMessage, request as httpRequest } from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import process from 'node:process';

/** A request template (SPEC section 5; `Template` in serve's OpenAPI document). */
export interface Template {
  /** The credential `{{CREDENTIAL}}` names. */
  credential?: string | null;
  /** Default GET. */
  method?: string;
  url: string;
  /** Placeholders `{{CREDENTIAL}}`, `{{CREDENTIAL:name}}`, optionally `|base64`. */
  headers?: Record<string, string>;
  /** A string is sent as is; any other JSON value is sent as JSON. */
  body?: unknown;
}

/** What `GET /v1/health` answers (`Health` in the OpenAPI document). */
export interface Health {
  status: 'ok';
  version: string;
  expires_at: string;
  /** serve's loopback TCP address (`http://HOST:PORT`), null when it listens on its socket only. */
  tcp_url: string | null;
}

/** The fields of serve's refusal, `{"error": {...}}` (`Error` in the OpenAPI document). */
export interface ServeErrorBody {
  code: string;
  kind: string;
  message: string;
  hint?: string;
  retry_after?: number;
}

export interface TrustProtocolOptions {
  /** The agent token (tpat_...); default TRUST_PROTOCOL_TOKEN. */
  token?: string;
  /**
   * Where serve listens: a unix socket (`unix:PATH` or an absolute path) or
   * `http://127.0.0.1:PORT`. Default TRUST_PROTOCOL_SERVER, else the socket in the home
   * (TRUST_PROTOCOL_HOME, else ~/.trust-protocol) or /run/trust-protocol/serve.sock, whichever
   * answers first, as `exec` finds it.
   */
  server?: string;
}

export interface RequestOptions {
  /** Seconds for the whole upstream request; can only lower serve's own limit. */
  timeoutSeconds?: number;
  /** A cap on the response body; can only lower serve's own limit. */
  maxResponseBytes?: number;
  signal?: AbortSignal;
}

/**
 * A refusal by serve (policy, brake, rate limit, upstream failure) or no serve at all. `code` is
 * serve's stable reason (`domain_not_allowed`, `rate_limited`, ...); `message` and `hint` are its
 * text, which never holds a secret.
 */
export class TrustProtocolError extends Error {
  readonly code: string;
  readonly kind: string;
  readonly hint: string | undefined;
  /** serve's HTTP status; 0 when no serve answered. */
  readonly status: number;
  /** On 429: seconds until a request may succeed. */
  readonly retryAfter: number | undefined;

  constructor(
    status: number,
    error: ServeErrorBody,
  ) {
    super(error.message);
    this.name = 'TrustProtocolError';
    this.status = status;
    this.code = error.code;
    this.kind = error.kind;
    this.hint = error.hint;
    this.retryAfter = error.retry_after;
  }
}

type _Target =
  | { kind: 'tcp'; host: string; port: number; url: string }
  | { kind: 'unix'; path: string; url: string };

const SYSTEM_SOCKET = '/run/trust-protocol/serve.sock';
const ERROR_HEADER = 'trust-protocol-error';
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);
const NO_SERVE_HINT =
  'start one with `trust-protocol serve` (add --listen 127.0.0.1:PORT for the gateway), ' +
  'or pass server: unix:PATH or http://127.0.0.1:PORT';

export class TrustProtocol {
  readonly #token: string | undefined;
  readonly #named: _Target | null;
  #found: Promise<_Target> | null = null;

  constructor(options: TrustProtocolOptions = {}) {
    this.#token = options.token ?? (process.env.TRUST_PROTOCOL_TOKEN || undefined);
    const server = options.server ?? (process.env.TRUST_PROTOCOL_SERVER || undefined);
    this.#named = server === undefined ? null : _parseServer(server);
  }

  /**
   * Sends `template` through serve's `POST /v1/proxy`: the upstream's answer as a standard
   * Response whose body streams, already redacted by serve. A refusal throws TrustProtocolError;
   * a failure part-way through the body errors the body's stream with one.
   */
  async request(template: Template, options: RequestOptions = {}): Promise<Response> {
    const headers: Record<string, string> = {
      'Content-Type': 'application/json',
      // Asks serve to end a stream that fails part-way with an error trailer, not a bare cut.
      TE: 'trailers',
    };
    if (this.#token !== undefined) headers.Authorization = `Bearer ${this.#token}`;
    if (options.timeoutSeconds !== undefined) {
      headers['Trust-Protocol-Timeout'] = String(options.timeoutSeconds);
    }
    if (options.maxResponseBytes !== undefined) {
      headers['Trust-Protocol-Max-Response-Bytes'] = String(options.maxResponseBytes);
    }
    const target = await this.#target();
    const res = await _send(target, {
      method: 'POST',
      path: '/v1/proxy',
      headers,
      body: new TextEncoder().encode(JSON.stringify(template)),
      signal: options.signal,
    });
    if (res.headers[ERROR_HEADER] !== undefined) throw await _refusal(res);
    return _response(res, target);
  }

  /**
   * The base URL an unmodified SDK (OpenAI, Anthropic, ...) uses for `credential`: serve's
   * `/v1/gateway/CREDENTIAL` on its loopback TCP address, with the agent token as its API key.
   * Needs a TCP server (option `server` or TRUST_PROTOCOL_SERVER): a unix socket has no URL.
   */
  gatewayUrl(credential: string): string {
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(credential)) {
      throw new TrustProtocolError(0, {
        code: 'bad_credential_name',
        kind: 'usage',
        message: `not a credential name: ${JSON.stringify(credential)}`,
      });
    }
    if (this.#named?.kind !== 'tcp') {
      throw new TrustProtocolError(0, {
        code: 'no_tcp_server',
        kind: 'usage',
        message: 'the gateway needs serve on a loopback TCP address; no http:// server was given',
        hint: 'start serve with --listen 127.0.0.1:PORT and pass server: http://127.0.0.1:PORT ' +
          '(or set TRUST_PROTOCOL_SERVER)',
      });
    }
    return `${this.#named.url}/v1/gateway/${credential}`;
  }

  /** serve's `GET /v1/health`: its status, version and when it expires. */
  async status(): Promise<Health> {
    const target = await this.#target();
    const res = await _send(target, { method: 'GET', path: '/v1/health', headers: {} });
    if (res.statusCode !== 200) throw await _refusal(res);
    return JSON.parse(new TextDecoder().decode(await _readAll(res))) as Health;
  }

  #target(): Promise<_Target> {
    if (this.#named !== null) return Promise.resolve(this.#named);
    this.#found ??= _discover();
    return this.#found;
  }
}

/** `unix:PATH`, an absolute socket path, or `http://` with a loopback host and a port. */
function _parseServer(text: string): _Target {
  if (text.startsWith('unix:') && text.length > 5) {
    const p = path.resolve(text.slice(5));
    return { kind: 'unix', path: p, url: `unix:${p}` };
  }
  if (text.startsWith('/')) return { kind: 'unix', path: text, url: `unix:${text}` };
  let url: URL | null = null;
  try {
    url = new URL(text);
  } catch { /* reported below */ }
  const host = url?.hostname ?? '';
  const loopback = host === 'localhost' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host);
  if (
    url === null || url.protocol !== 'http:' || !loopback || url.port === '' ||
    url.username !== '' || url.password !== '' || url.pathname !== '/' || url.search !== '' ||
    url.hash !== ''
  ) {
    throw new TrustProtocolError(0, {
      code: 'bad_server',
      kind: 'usage',
      message: `not a serve address: ${JSON.stringify(text)}`,
      hint: 'use unix:PATH or http://127.0.0.1:PORT (serve listens on loopback only)',
    });
  }
  return {
    kind: 'tcp',
    host: host === '[::1]' ? '::1' : host === 'localhost' ? '127.0.0.1' : host,
    port: Number(url.port),
    url: `http://${url.host}`,
  };
}

/** The first default socket that answers /v1/health like a serve. */
async function _discover(): Promise<_Target> {
  const home = process.env.TRUST_PROTOCOL_HOME || path.join(os.homedir(), '.trust-protocol');
  const tried: string[] = [];
  for (const socket of [path.resolve(home, 'serve.sock'), SYSTEM_SOCKET]) {
    tried.push(socket);
    try {
      if (!fs.statSync(socket).isSocket()) continue;
    } catch {
      continue;
    }
    const target: _Target = { kind: 'unix', path: socket, url: `unix:${socket}` };
    try {
      const res = await _send(target, { method: 'GET', path: '/v1/health', headers: {} });
      const health = JSON.parse(new TextDecoder().decode(await _readAll(res)));
      if (res.statusCode === 200 && health?.status === 'ok') return target;
    } catch { /* not a serve: try the next */ }
  }
  throw new TrustProtocolError(0, {
    code: 'no_serve',
    kind: 'sealed',
    message: `no trust-protocol serve answers at ${tried.join(' or ')}`,
    hint: NO_SERVE_HINT,
  });
}

function _send(
  target: _Target,
  options: {
    method: string;
    path: string;
    headers: Record<string, string>;
    body?: Uint8Array;
    signal?: AbortSignal | undefined;
  },
): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({
      ...(target.kind === 'unix'
        ? { socketPath: target.path }
        : { host: target.host, port: target.port }),
      method: options.method,
      path: options.path,
      headers: {
        ...options.headers,
        // serve answers only to its own loopback name (a unix socket's is `localhost`).
        Host: target.kind === 'unix' ? 'localhost' : new URL(target.url).host,
        ...(options.body === undefined ? {} : { 'Content-Length': String(options.body.length) }),
      },
      agent: false,
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    });
    req.on('response', resolve);
    req.on('error', (e) => {
      if (options.signal?.aborted) return reject(options.signal.reason ?? e);
      reject(
        new TrustProtocolError(0, {
          code: 'serve_unreachable',
          kind: 'sealed',
          message: `no trust-protocol serve answers at ${target.url}`,
          hint: NO_SERVE_HINT,
        }),
      );
    });
    req.end(options.body);
  });
}

async function _refusal(res: IncomingMessage): Promise<TrustProtocolError> {
  const status = res.statusCode ?? 0;
  let error: Partial<ServeErrorBody> = {};
  try {
    error = JSON.parse(new TextDecoder().decode(await _readAll(res))).error ?? {};
  } catch { /* the status alone speaks */ }
  return new TrustProtocolError(status, {
    code: typeof error.code === 'string' ? error.code : `http_${status}`,
    kind: typeof error.kind === 'string' ? error.kind : 'internal',
    message: typeof error.message === 'string'
      ? error.message
      : `trust-protocol serve answered HTTP ${status}`,
    ...(typeof error.hint === 'string' ? { hint: error.hint } : {}),
    ...(typeof error.retry_after === 'number' ? { retry_after: error.retry_after } : {}),
  });
}

/** serve's answer as a Response; the body streams from the connection as it arrives. */
function _response(res: IncomingMessage, target: _Target): Response {
  const headers = new Headers();
  for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) {
    const name = res.rawHeaders[i] as string;
    if (HOP_BY_HOP.has(name.toLowerCase())) continue;
    try {
      headers.append(name, res.rawHeaders[i + 1] as string);
    } catch { /* a header the fetch standard refuses (e.g. non-Latin-1): left out */ }
  }
  const status = res.statusCode ?? 0;
  const init = { status, statusText: res.statusMessage ?? '', headers };
  // The fetch standard has no Response for a 1xx, and none with a body for 204, 205 and 304.
  if ([204, 205, 304].includes(status) || status < 200 || status > 599) {
    res.resume();
    return _safeResponse(null, { ...init, status: status < 200 || status > 599 ? 502 : status });
  }
  const chunks = res[Symbol.asyncIterator]();
  const cut = () =>
    new TrustProtocolError(502, {
      code: 'serve_cut',
      kind: 'upstream',
      message: `the response from serve (${target.url}) was cut off`,
      hint: 'see `trust-protocol audit show --tail 5` for how the request ended',
    });
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      let next: IteratorResult<unknown>;
      try {
        next = await chunks.next();
      } catch {
        return controller.error(cut());
      }
      if (!next.done) return controller.enqueue(new Uint8Array(next.value as Uint8Array));
      const trailer = res.trailers[ERROR_HEADER];
      if (trailer !== undefined) {
        let error: ServeErrorBody | null = null;
        try {
          error = JSON.parse(trailer).error ?? null;
        } catch { /* reported as a cut */ }
        return controller.error(error === null ? cut() : new TrustProtocolError(502, error));
      }
      if (!res.complete) return controller.error(cut());
      controller.close();
    },
    cancel() {
      res.destroy();
    },
  });
  return _safeResponse(body, init);
}

/** A status text the fetch standard refuses (it is the upstream's) is dropped, not fatal. */
function _safeResponse(body: ReadableStream<Uint8Array> | null, init: ResponseInit): Response {
  try {
    return new Response(body, init);
  } catch {
    return new Response(body, { ...init, statusText: '' });
  }
}

async function _readAll(res: IncomingMessage): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of res) {
    chunks.push(chunk as Uint8Array);
    size += (chunk as Uint8Array).length;
    // serve's own JSON answers are small; anything larger is not one.
    if (size > 1024 * 1024) break;
  }
  const all = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.length;
  }
  return all;
}
