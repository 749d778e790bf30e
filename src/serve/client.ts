/**
 * `exec`'s side of serve: find a running serve, hand it the template over `POST /v1/proxy`, and
 * turn its answer back into what `execute()` would have returned or thrown, so `exec` prints the
 * same output and exits with the same code either way.
 */
import { HOP_BY_HOP_HEADERS } from '../grammar.ts';
import type { BrakeRequest } from '../brakes.ts';
import { Buffer } from 'node:buffer';
import * as fs from 'node:fs';
import { type IncomingMessage, request as httpRequest } from 'node:http';
import { connect, isIPv4 } from 'node:net';
import * as path from 'node:path';
import type { BrokeredResponse, BrokerRequest } from '../broker.ts';
import { decodeUtf8Strict } from '../text.ts';
import { denied, TpError, usage } from '../errors.ts';
import { ERROR_HEADER, errorFromResponse } from './http_error.ts';
import { AUDIT_SEQ_HEADER, MAX_BYTES_HEADER, TIMEOUT_HEADER } from './protocol.ts';

export type ServerTarget =
  | { kind: 'tcp'; connect: string; port: number; host: string; url: string }
  | { kind: 'unix'; path: string; url: string };

const PROBE_TIMEOUT_MS = 2_000;
/** src/http/client.ts's default (not imported: exec's client path loads no HTTP client). */
const UPSTREAM_TIMEOUT_MS = 60_000;
/**
 * How long past the upstream timeout exec waits for serve's answer to start: serve may first wait
 * up to 30 s for the audit lock (src/audit.ts).
 */
const ANSWER_MARGIN_MS = 30_000;

/** `unix:PATH`, or `http://` with a loopback host and a port. */
export function parseServerTarget(text: string): ServerTarget {
  const hint = 'use unix:PATH or http://127.0.0.1:PORT (serve listens on loopback only)';
  if (text.startsWith('unix:') && text.length > 5) {
    const p = path.resolve(text.slice(5));
    return { kind: 'unix', path: p, url: `unix:${p}` };
  }
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw usage('bad_server', `not a serve address: ${JSON.stringify(text)}`, hint);
  }
  const host = url.hostname;
  const connect = host === 'localhost'
    ? '127.0.0.1'
    : host === '[::1]'
    ? '::1'
    : isIPv4(host) && host.startsWith('127.')
    ? host
    : null;
  if (
    url.protocol !== 'http:' || connect === null || url.username !== '' || url.password !== '' ||
    (url.pathname !== '/' && url.pathname !== '') || url.search !== '' || url.hash !== ''
  ) {
    throw usage('bad_server', `not a loopback serve address: ${JSON.stringify(text)}`, hint);
  }
  const port = url.port === '' ? 80 : Number(url.port);
  return { kind: 'tcp', connect, port, host: url.host, url: `http://${url.host}` };
}

/** The default socket when something there answers /v1/health like a serve; else null. */
export async function findServer(socket: string): Promise<ServerTarget | null> {
  const target = socketTarget(socket);
  return target !== null && await probeServer(target) ? target : null;
}

/** A default socket path as a target, if a socket is there (not a symbolic link to one). */
export function socketTarget(socket: string): ServerTarget | null {
  try {
    if (!fs.lstatSync(socket).isSocket()) return null;
  } catch {
    return null;
  }
  return { kind: 'unix', path: socket, url: `unix:${socket}` };
}

export async function probeServer(target: ServerTarget): Promise<boolean> {
  return (await serverHealth(target)) !== null;
}

export interface Health {
  status: 'ok';
  version: string;
  expires_at: string;
  /** serve's loopback TCP listener (`http://HOST:PORT`), null if it has the unix socket only. */
  tcp_url: string | null;
}

/** What `GET /v1/health` answers, or null if nothing answers there like a serve. */
export async function serverHealth(target: ServerTarget): Promise<Health | null> {
  try {
    const res = await _request(target, {
      method: 'GET',
      path: '/v1/health',
      headers: {},
      body: null,
      timeoutMs: PROBE_TIMEOUT_MS,
    });
    const body = await _readSmall(res);
    const json = JSON.parse(decodeUtf8Strict(body) ?? '') as Partial<Health>;
    if (res.statusCode !== 200 || json.status !== 'ok') return null;
    return { ...json, tcp_url: typeof json.tcp_url === 'string' ? json.tcp_url : null } as Health;
  } catch {
    return null;
  }
}

export interface ProxyRequest {
  template: BrokerRequest['template'];
  token: string | null;
  timeoutMs?: number | undefined;
  maxResponseBytes?: number | undefined;
}

/**
 * What execute() would return, or null when no serve is there; throws the TpError serve reports,
 * with the same kind and code. One round trip: no health probe first (issue 17). "No serve" is
 * decided only where nothing can have been carried out: the connection failed (nothing was sent),
 * or what answered is not a serve (no serve header in its answer, docs/decisions.md). Once the
 * connection is made, any failure before an answer is an error: the request may have reached
 * serve, and it is never sent a second time, here or by unsealing.
 */
export async function proxyViaServer(
  target: ServerTarget,
  request: ProxyRequest,
): Promise<BrokeredResponse | null> {
  const headers: Record<string, string> = {
    'Content-Type': 'application/json',
    TE: 'trailers',
  };
  if (request.token !== null) {
    if (!/^[\x21-\x7e]+$/.test(request.token)) {
      // A token that cannot be sent: serve's refusal only where a serve answers (else the
      // one-shot path decides), as when exec probed first.
      if (!(await probeServer(target))) return null;
      throw denied('bad_token', 'the agent token is not valid');
    }
    headers.Authorization = `Bearer ${request.token}`;
  }
  if (request.timeoutMs !== undefined) headers[TIMEOUT_HEADER] = String(request.timeoutMs / 1000);
  if (request.maxResponseBytes !== undefined) {
    headers[MAX_BYTES_HEADER] = String(request.maxResponseBytes);
  }
  let res: IncomingMessage;
  try {
    res = await _request(target, {
      method: 'POST',
      path: '/v1/proxy',
      headers,
      body: Buffer.from(JSON.stringify(_templateJson(request.template)), 'utf8'),
      // serve answers within the upstream timeout it applies; a peer silent well past it is
      // wedged, or no serve: an error (the request may have been read), never a wait forever.
      timeoutMs: (request.timeoutMs ?? UPSTREAM_TIMEOUT_MS) + ANSWER_MARGIN_MS,
      sent: true,
    });
  } catch (e) {
    if (e instanceof TpError && e.code === 'serve_unreachable') return null;
    throw e;
  }
  // Only serve sets these two (it strips trust-protocol-* headers from upstream answers): a
  // refusal carries the first, a forwarded answer the second.
  if (
    res.headers[ERROR_HEADER.toLowerCase()] === undefined &&
    res.headers[AUDIT_SEQ_HEADER.toLowerCase()] === undefined
  ) {
    res.destroy();
    return null;
  }
  if (res.headers[ERROR_HEADER.toLowerCase()] !== undefined) {
    const text = decodeUtf8Strict(await _readSmall(res)) ?? '';
    let json: unknown = null;
    try {
      json = JSON.parse(text);
    } catch { /* the status alone decides */ }
    throw errorFromResponse(res.statusCode ?? 500, json);
  }
  const pairs: Array<[string, string]> = [];
  let auditSeq: number | undefined;
  for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) {
    const name = res.rawHeaders[i] as string;
    const value = res.rawHeaders[i + 1] as string;
    // serve's own header is not the upstream's: exec prints what execute() would have returned.
    if (name.toLowerCase() === AUDIT_SEQ_HEADER.toLowerCase()) {
      if (/^\d{1,15}$/.test(value)) auditSeq = Number(value);
    } else if (!HOP_BY_HOP_HEADERS.has(name.toLowerCase())) {
      pairs.push([name, value]);
    }
  }
  return {
    status: res.statusCode ?? 0,
    statusText: res.statusMessage ?? '',
    headers: pairs,
    body: _body(res, target),
    ...(auditSeq === undefined ? {} : { auditSeq }),
  };
}

/** `agent renew` through serve (`POST /v1/agent/renew`): the JSON serve answers, or its error. */
export async function renewViaServer(
  target: ServerTarget,
  token: string | null,
): Promise<Record<string, unknown>> {
  const headers: Record<string, string> = {};
  if (token !== null) {
    if (!/^[\x21-\x7e]+$/.test(token)) throw denied('bad_token', 'the agent token is not valid');
    headers.Authorization = `Bearer ${token}`;
  }
  const res = await _request(target, {
    method: 'POST',
    path: '/v1/agent/renew',
    headers,
    body: null,
    timeoutMs: 60_000,
  });
  const text = decodeUtf8Strict(await _readSmall(res)) ?? '';
  let json: unknown = null;
  try {
    json = JSON.parse(text);
  } catch { /* the status alone decides */ }
  if (res.headers[ERROR_HEADER.toLowerCase()] !== undefined || res.statusCode !== 200) {
    throw errorFromResponse(res.statusCode ?? 500, json);
  }
  return json as Record<string, unknown>;
}

/**
 * `emergency activate` through serve's socket (`POST /v1/emergency`), for a user who may reach
 * the socket but not write the home: the brake serve recorded, or its error.
 */
export async function brakeViaServer(
  target: ServerTarget,
  request: BrakeRequest,
): Promise<Record<string, unknown>> {
  const res = await _request(target, {
    method: 'POST',
    path: '/v1/emergency',
    headers: { 'Content-Type': 'application/json' },
    body: Buffer.from(
      JSON.stringify({
        scope: request.scope,
        ...(request.scope === 'agent' ? { agent_id: request.target } : {}),
        ...(request.scope === 'credential' ? { credential_name: request.target } : {}),
        ...(request.scope === 'org' ? { org: request.target } : {}),
        reason: request.reason,
      }),
      'utf8',
    ),
    timeoutMs: 60_000,
  });
  const text = decodeUtf8Strict(await _readSmall(res)) ?? '';
  let json: unknown = null;
  try {
    json = JSON.parse(text);
  } catch { /* the status alone decides */ }
  if (res.headers[ERROR_HEADER.toLowerCase()] !== undefined || res.statusCode !== 200) {
    throw errorFromResponse(res.statusCode ?? 500, json);
  }
  return json as Record<string, unknown>;
}

/**
 * One request to serve's agent API as the agent (the MCP server's tools): the whole answer, error
 * answers included, read up to `limit` bytes. A cut response throws.
 */
export async function callServe(
  target: ServerTarget,
  request: { method: string; path: string; token: string | null; json?: unknown; limit: number },
): Promise<{ status: number; headers: Array<[string, string]>; body: Uint8Array }> {
  const headers: Record<string, string> = {};
  if (request.token !== null && /^[\x21-\x7e]+$/.test(request.token)) {
    headers.Authorization = `Bearer ${request.token}`;
  }
  if (request.json !== undefined) headers['Content-Type'] = 'application/json';
  const res = await _request(target, {
    method: request.method,
    path: request.path,
    headers,
    body: request.json === undefined ? null : Buffer.from(JSON.stringify(request.json), 'utf8'),
    timeoutMs: null,
  });
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of _body(res, target)) {
    size += chunk.length;
    if (size > request.limit) {
      res.destroy();
      throw new TpError(
        'upstream',
        'response_too_large',
        `the response is larger than ${request.limit} bytes`,
      );
    }
    chunks.push(Buffer.from(chunk));
  }
  const pairs: Array<[string, string]> = [];
  for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) {
    pairs.push([res.rawHeaders[i] as string, res.rawHeaders[i + 1] as string]);
  }
  return {
    status: res.statusCode ?? 0,
    headers: pairs,
    body: new Uint8Array(Buffer.concat(chunks)),
  };
}

/** The template as JSON: the curl-like form of exec is parsed already. */
function _templateJson(template: BrokerRequest['template']): unknown {
  if ('json' in template) return template.json;
  const t = template.parsed;
  return {
    ...(t.credential === null ? {} : { credential: t.credential }),
    method: t.method,
    url: t.url,
    headers: Object.fromEntries(t.headers),
    ...(t.body.kind === 'text' ? { body: t.body.text } : {}),
    ...(t.body.kind === 'json' ? { body: t.body.value } : {}),
  };
}

async function* _body(res: IncomingMessage, target: ServerTarget): AsyncIterable<Uint8Array> {
  const cut = () =>
    new TpError('upstream', 'serve_cut', `the response from serve (${target.url}) was cut off`, {
      hint: 'see `trust-protocol audit show --tail 5` for how the request ended',
    });
  try {
    for await (const chunk of res) yield new Uint8Array(chunk as Buffer);
  } catch {
    throw cut();
  }
  if (!res.complete) throw cut();
  const trailer = res.trailers[ERROR_HEADER.toLowerCase()];
  if (trailer !== undefined) {
    let json: unknown = null;
    try {
      json = JSON.parse(trailer);
    } catch { /* reported as a cut */ }
    throw json === null ? cut() : errorFromResponse(502, json);
  }
}

/**
 * One request on a connection of its own. A failure to connect is `serve_unreachable`; with `sent`,
 * a failure once connected (the request may have been read) is `serve_cut` instead.
 */
function _request(
  target: ServerTarget,
  options: {
    method: string;
    path: string;
    headers: Record<string, string>;
    body: Uint8Array | null;
    timeoutMs: number | null;
    sent?: boolean;
  },
): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    let connected = false;
    const req = httpRequest({
      // Our own connection and no agent: one request per connection anyway, and the agent's
      // server-name check (an IPv6 regular expression compiled on first use) costs exec's start-up.
      createConnection: () => {
        const socket = target.kind === 'unix'
          ? connect(target.path)
          : connect({ host: target.connect, port: target.port });
        socket.once('connect', () => connected = true);
        return socket;
      },
      method: options.method,
      path: options.path,
      headers: {
        ...options.headers,
        Host: target.kind === 'unix' ? 'localhost' : target.host,
        ...(options.body === null ? {} : { 'Content-Length': String(options.body.length) }),
      },
    });
    const timer = options.timeoutMs === null
      ? undefined
      : setTimeout(() => req.destroy(new Error('timeout')), options.timeoutMs);
    req.on('response', (res) => {
      clearTimeout(timer);
      resolve(res);
    });
    req.on('error', (e) => {
      clearTimeout(timer);
      if (connected && options.sent === true) {
        reject(
          new TpError(
            'upstream',
            'serve_cut',
            `the connection to serve (${target.url}) failed before it answered; the request ` +
              'may have been carried out, so it is not sent again',
            {
              hint: 'see `trust-protocol audit show --tail 5` for whether serve received it',
              cause: e,
            },
          ),
        );
        return;
      }
      reject(
        new TpError(
          'sealed',
          'serve_unreachable',
          `no trust-protocol serve answers at ${target.url}`,
          {
            hint: 'start one with `trust-protocol serve`, or run exec with the password',
            cause: e,
          },
        ),
      );
    });
    req.end(options.body ?? undefined);
  });
}

async function _readSmall(res: IncomingMessage): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res) {
    size += (chunk as Buffer).length;
    if (size > 64 * 1024) break;
    chunks.push(chunk as Buffer);
  }
  return new Uint8Array(Buffer.concat(chunks));
}
