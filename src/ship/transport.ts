/**
 * Delivers one formatted batch and resolves only once the receiver accepted it:
 * - HTTP kinds (src/http/client.ts `send`, explicit CA roots, no environment): a 2xx answer.
 * - syslog, which has no acknowledgement (RFC 6587): one connection per batch; the bytes are
 *   written, our side is closed (TLS close_notify, then FIN), and the receiver closes its side in
 *   order in return, which it does only after reading everything up to our FIN. A receiver that
 *   crashes after reading but before storing loses that batch; we cannot know (docs/formats.md).
 * Anything else rejects with a TpError (kind upstream); 429 and 503 carry Retry-After.
 */
import { Buffer } from 'node:buffer';
import { connect as netConnect, isIP, type Socket } from 'node:net';
import {
  checkServerIdentity,
  connect as tlsConnect,
  createSecureContext,
  rootCertificates,
} from 'node:tls';
import { TpError } from '../errors.ts';
import { send } from '../http/client.ts';
import type { Destination } from './destination.ts';

export interface DeliverOptions {
  /** PEM roots that replace the bundled ones (--cacert). */
  ca?: string;
  /** Splunk HEC token, or a bearer token for OTLP and JSON lines (--token-file). */
  token?: string;
  timeoutMs: number;
}

/** A receiver's answer body is read up to this, then dropped: only its status matters. */
const MAX_ANSWER = 64 * 1024;

export function deliver(
  dest: Destination,
  body: Uint8Array,
  options: DeliverOptions,
): Promise<void> {
  return dest.kind === 'syslog' ? _syslog(dest, body, options) : _http(dest, body, options);
}

const CONTENT_TYPE: Record<string, string> = {
  otlp: 'application/json',
  splunk: 'application/json',
  jsonl: 'application/x-ndjson',
};

async function _http(dest: Destination, body: Uint8Array, options: DeliverOptions): Promise<void> {
  const headers: Array<[string, string]> = [['Content-Type', CONTENT_TYPE[dest.kind]!]];
  if (options.token !== undefined) {
    headers.push([
      'Authorization',
      `${dest.kind === 'splunk' ? 'Splunk' : 'Bearer'} ${options.token}`,
    ]);
  }
  const res = await send(
    { method: 'POST', url: dest.httpUrl!, headers, body },
    {
      ...(options.ca === undefined ? {} : { ca: options.ca }),
      timeoutMs: options.timeoutMs,
      maxResponseBytes: MAX_ANSWER,
    },
  );
  // Read the answer to its end so the exchange completes; its bytes are never quoted.
  try {
    for await (const _ of res.body) { /* drained */ }
  } catch { /* the status decides */ }
  if (res.status >= 200 && res.status < 300) return;
  const retryAfter = res.status === 429 || res.status === 503
    ? retryAfterSeconds(res.headers.find(([n]) => n.toLowerCase() === 'retry-after')?.[1])
    : undefined;
  throw new TpError(
    'upstream',
    'ship_rejected',
    `the receiver answered HTTP ${res.status}: the entries were not accepted`,
    {
      hint: res.status === 401 || res.status === 403
        ? 'check the token file'
        : "they are sent again later; see the receiver's logs",
      ...(retryAfter === undefined ? {} : { details: { retryAfterSeconds: retryAfter } }),
    },
  );
}

/** Retry-After: delta-seconds or an HTTP date; capped at an hour; undefined when unusable. */
export function retryAfterSeconds(value: string | undefined, now = Date.now()): number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  let seconds: number;
  if (/^\d{1,10}$/.test(text)) seconds = Number(text);
  else {
    const at = Date.parse(text);
    if (Number.isNaN(at)) return undefined;
    seconds = Math.max(0, Math.ceil((at - now) / 1000));
  }
  return Math.min(seconds, 3600);
}

function _syslog(dest: Destination, body: Uint8Array, options: DeliverOptions): Promise<void> {
  return new Promise((resolve, reject) => {
    let socket: Socket;
    let settled = false;
    const label = `${dest.host}:${dest.port}`;
    const settle = (error?: TpError) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (error === undefined) resolve();
      else reject(error);
    };
    const timer = setTimeout(
      () =>
        settle(
          _upstream(
            'timeout',
            `syslog receiver ${label} did not close within ${options.timeoutMs} ms`,
          ),
        ),
      options.timeoutMs,
    );
    const onReady = () => {
      socket.end(Buffer.from(body.buffer, body.byteOffset, body.byteLength));
    };
    if (dest.tls) {
      socket = tlsConnect({
        host: dest.host,
        port: dest.port,
        servername: isIP(dest.host) === 0 ? dest.host.replace(/\.$/, '') : undefined,
        // Explicit roots: the runtime's default store takes CA variables from the environment.
        secureContext: createSecureContext({
          ca: options.ca ?? [...rootCertificates],
          minVersion: 'TLSv1.2',
        }),
        rejectUnauthorized: true,
        checkServerIdentity: (_name, cert) => checkServerIdentity(dest.host, cert),
      });
      socket.once('secureConnect', onReady);
    } else {
      socket = netConnect({ host: dest.host, port: dest.port });
      socket.once('connect', onReady);
    }
    // The receiver says nothing; whatever it sends is ignored, but read so its close is seen.
    socket.on('data', () => {});
    socket.on(
      'error',
      (e) =>
        settle(
          _upstream(
            'connect',
            `syslog to ${label} failed: ${(e as { code?: string }).code ?? e.message}`,
          ),
        ),
    );
    // 'end': the receiver closed its side after reading ours; 'close' without it is a cut.
    let ended = false;
    socket.on('end', () => (ended = true));
    socket.on(
      'close',
      () =>
        ended && socket.writableFinished
          ? settle()
          : settle(_upstream('connect', `syslog receiver ${label} closed the connection early`)),
    );
  });
}

function _upstream(code: 'timeout' | 'connect', message: string): TpError {
  return new TpError('upstream', code, message, {
    hint: 'the entries are sent again later; check that the receiver is running',
  });
}
