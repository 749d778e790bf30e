/**
 * serve's front: the process that parses agent HTTP (docs/architecture.md#serve). It keeps the
 * node:http adapter (src/serve/node_http.ts) and passes each request to the keeper, the child
 * that holds the keys, over the frame pipe (src/serve/frames.ts); it streams the keeper's
 * responses, already redacted, back to the client. It never unseals and never sees a key or a
 * credential value: a compromise of this process exposes the requests and responses in flight.
 */
import { Buffer } from 'node:buffer';
import * as fs from 'node:fs';
import { connect } from 'node:net';
import { integrity, TpError, usage } from '../errors.ts';
import { ioErrorCode } from '../home.ts';
import type { TcpAddress } from './address.ts';
import {
  BODY_PIECE,
  FRAME,
  type Frame,
  frameChannel,
  fromWire,
  KEEPER_PROTOCOL,
  parseJson,
  type Pipe,
  u32,
  type WireError,
} from './frames.ts';
import { MAX_BODY_BYTES, type ServeHandler, type ServeResponse } from './handler.ts';
import type { RequestHead, ResponseHead } from './keeper.ts';
import { type HttpListener, listenHttp } from './node_http.ts';
import type { StopReason } from './serve.ts';

export interface FrontListen {
  listen: TcpAddress | null;
  socket: string;
  /** The gid that may connect to the socket too (0660), or null for the owner only (0600). */
  socketGroup: number | null;
}

export interface Ready {
  urls: string[];
  startedAt: Date;
  expiresAt: Date;
  keeperPid: number;
}

export interface FrontStopped {
  reason: StopReason;
  /** The keeper's error at stop (serve.stop not audited), or null. */
  error: TpError | null;
}

export interface Front {
  /** Resolves once the keeper unsealed; null if it exited first (its error is on stderr). */
  unsealed: Promise<boolean>;
  /**
   * Once unsealed: the settings HOME/config.json supplied for flags not given, as the keeper
   * read them and verified their seal under the vault's key (the front has no key).
   */
  settings(): Readonly<Record<string, string | string[]>>;
  /** Claims the socket, listens, and waits for the keeper to record serve.start. */
  listen(where: FrontListen): Promise<Ready>;
  /** Stops accepting and asks the keeper to stop (idempotent). */
  stop(reason: StopReason): void;
  /** The keeper said it stopped (null: its pipe closed without a word, it died). */
  stopped: Promise<FrontStopped | null>;
}

interface _Stream {
  /** The adapter's hook for a connection whose token named an active agent. */
  agent: (() => void) | undefined;
  resolve(r: ServeResponse): void;
  reject(e: TpError): void;
  head: ResponseHead | null;
  chunks: Uint8Array[];
  finished: boolean;
  failed: boolean;
  trailers: Array<[string, string]>;
  wake: (() => void) | null;
}

export function startFront(
  pipe: Pipe,
  hooks: {
    /** The keeper needs the password from the terminal: the caller prompts; the bytes are wiped. */
    password(): Promise<Uint8Array>;
    /** The keeper could not be given the password (the prompt failed): the caller reports it. */
    passwordFailed(e: unknown): void;
  },
): Front {
  const streams = new Map<number, _Stream>();
  let nextId = 1;
  let listeners: HttpListener[] = [];
  let closing: Promise<unknown> | null = null;
  let resolveUnsealed: (ok: boolean) => void = () => {};
  const unsealed = new Promise<boolean>((resolve) => (resolveUnsealed = resolve));
  let settings: Readonly<Record<string, string | string[]>> = {};
  let resolveReady: (r: Omit<Ready, 'urls'> | null) => void = () => {};
  const ready = new Promise<Omit<Ready, 'urls'> | null>((resolve) => (resolveReady = resolve));
  let resolveStopped: (s: FrontStopped | null) => void = () => {};
  const stopped = new Promise<FrontStopped | null>((resolve) => (resolveStopped = resolve));
  const closeListeners = () => {
    closing ??= Promise.all(listeners.map((l) => l.close()));
    return closing;
  };

  const onFrame = (frame: Frame) => {
    switch (frame.type) {
      case FRAME.needPassword:
        hooks.password().then(async (bytes) => {
          await channel.send(FRAME.password, 0, bytes);
          bytes.fill(0);
        }, (e) => {
          hooks.passwordFailed(e);
          void channel.close();
        });
        return;
      case FRAME.unsealed: {
        const u = parseJson<
          { protocol: number; settings?: Record<string, string | string[]> }
        >(frame);
        _protocol(u.protocol);
        settings = u.settings ?? {};
        resolveUnsealed(true);
        return;
      }
      case FRAME.ready: {
        const r = parseJson<
          { protocol: number; started_at: string; expires_at: string; pid: number }
        >(frame);
        _protocol(r.protocol);
        resolveReady({
          startedAt: new Date(r.started_at),
          expiresAt: new Date(r.expires_at),
          keeperPid: r.pid,
        });
        return;
      }
      case FRAME.stopping:
        // The keeper's TTL or idle clock ran out: stop accepting; the keeper stops by itself.
        void closeListeners();
        return;
      case FRAME.stopped: {
        const s = parseJson<{ reason: StopReason; error?: WireError }>(frame);
        resolveStopped({ reason: s.reason, error: s.error ? fromWire(s.error) : null });
        return;
      }
      case FRAME.responseHead:
        return _head(frame);
      case FRAME.responseBody: {
        const s = streams.get(frame.stream);
        if (s === undefined) return;
        s.chunks.push(frame.payload);
        // A body sent as bytes is buffered whole here, as before (it gets a Content-Length).
        if (s.head?.body === 'bytes') void _credit(frame.stream, frame.payload.length);
        s.wake?.();
        return;
      }
      case FRAME.responseEnd: {
        const s = streams.get(frame.stream);
        if (s === undefined) return;
        s.trailers = parseJson<{ trailers: Array<[string, string]> }>(frame).trailers;
        s.finished = true;
        streams.delete(frame.stream);
        if (s.head?.body === 'bytes') {
          s.resolve(_response(s.head, new Uint8Array(Buffer.concat(s.chunks))));
        }
        s.wake?.();
        return;
      }
      case FRAME.responseError:
        return _fail(frame.stream);
      case FRAME.agentProven:
        streams.get(frame.stream)?.agent?.();
        return;
      default:
        throw new TpError('internal', 'keeper_protocol', `unknown frame type ${frame.type}`);
    }
  };

  const channel = frameChannel(pipe, {
    onFrame,
    onClose: () => {
      for (const id of [...streams.keys()]) _fail(id);
      resolveUnsealed(false);
      resolveReady(null);
      resolveStopped(null);
      void closeListeners();
    },
  });

  const _credit = (id: number, n: number) => channel.send(FRAME.credit, id, u32(n));

  const _head = (frame: Frame) => {
    const s = streams.get(frame.stream);
    if (s === undefined) return;
    const head = parseJson<ResponseHead>(frame);
    s.head = head;
    if (head.body === 'none') s.resolve(_response(head, null));
    if (head.body !== 'stream') return;
    const id = frame.stream;
    s.resolve({
      ..._response(head, null),
      body: {
        async *[Symbol.asyncIterator]() {
          while (true) {
            const chunk = s.chunks.shift();
            if (chunk !== undefined) {
              yield chunk;
              // The adapter asks for the next chunk once this one is written (and drained).
              void _credit(id, chunk.length);
              continue;
            }
            if (s.failed) throw new TpError('upstream', 'stream_cut', 'the response was cut');
            if (s.finished) return;
            await new Promise<void>((resolve) => (s.wake = resolve));
            s.wake = null;
          }
        },
      },
      trailers: () => s.trailers,
    });
  };

  const _fail = (id: number) => {
    const s = streams.get(id);
    if (s === undefined) return;
    streams.delete(id);
    s.failed = true;
    s.finished = true;
    s.reject(_keeperGone());
    s.wake?.();
  };

  const handler: ServeHandler = (request) => {
    if (channel.closed) return Promise.reject(_keeperGone());
    if (closing !== null) {
      return Promise.reject(
        new TpError('sealed', 'serve_stopping', 'serve is stopping and drops its keys', {
          hint: 'start serve again, or run exec with the password',
        }),
      );
    }
    const id = nextId++;
    const head: RequestHead = {
      method: request.method,
      target: request.target,
      headers: request.headers.map(([k, v]) => [k, v]),
      hosts: [...request.hosts],
      via: request.via,
      agent: request.agent !== undefined,
    };
    const response = new Promise<ServeResponse>((resolve, reject) => {
      streams.set(id, {
        agent: request.agent,
        resolve,
        reject,
        head: null,
        chunks: [],
        finished: false,
        failed: false,
        trailers: [],
        wake: null,
      });
    });
    void channel.sendJson(FRAME.requestHead, id, head);
    request.signal.addEventListener('abort', () => void channel.send(FRAME.abort, id), {
      once: true,
    });
    // The body is read here, whatever the route, at most MAX_BODY_BYTES (the adapter lingers
    // over a larger one so the client sees the 413); the keeper's handler decides what to do.
    request.body(MAX_BODY_BYTES).then(async (bytes) => {
      for (let at = 0; at < bytes.length; at += BODY_PIECE) {
        await channel.send(FRAME.requestBody, id, bytes.subarray(at, at + BODY_PIECE));
      }
      await channel.send(FRAME.requestEnd, id);
    }, (e) => {
      const code = e instanceof TpError && e.code === 'body_too_large'
        ? 'body_too_large'
        : 'body_incomplete';
      void channel.sendJson(FRAME.requestEnd, id, { error: code });
    });
    return response;
  };

  return {
    unsealed,
    settings: () => settings,
    async listen(where) {
      await claimSocket(where.socket);
      if (where.listen !== null) {
        listeners.push(await listenHttp(handler, { kind: 'tcp', address: where.listen }));
      }
      listeners.push(
        await listenHttp(handler, {
          kind: 'unix',
          path: where.socket,
          ...(where.socketGroup == null ? {} : { group: where.socketGroup }),
        }),
      );
      const urls = listeners.map((l) => l.url);
      await channel.sendJson(FRAME.listening, 0, { urls, pid: process.pid });
      const r = await ready;
      if (r === null) {
        await closeListeners();
        throw new TpError('internal', 'keeper_gone', "serve's keeper exited before it was ready");
      }
      return { urls, ...r };
    },
    stop(reason) {
      void closeListeners();
      void channel.sendJson(FRAME.stop, 0, { reason });
    },
    stopped: stopped.then(async (s) => {
      await closeListeners();
      listeners = [];
      return s;
    }),
  };
}

function _response(head: ResponseHead, body: Uint8Array | null): ServeResponse {
  return {
    status: head.status,
    ...(head.statusText === undefined ? {} : { statusText: head.statusText }),
    headers: head.headers,
    body,
  };
}

/**
 * The keeper exited (killed, crashed): the keys are gone with it, so serve is sealed (503, and
 * serve exits 3); the front never answers a request by itself.
 */
function _keeperGone(): TpError {
  return new TpError('sealed', 'keeper_gone', "serve's keeper exited: serve holds no keys now", {
    hint: 'start serve again, or run exec with the password',
  });
}

function _protocol(version: number): void {
  if (version !== KEEPER_PROTOCOL) {
    throw new TpError(
      'internal',
      'keeper_protocol',
      `serve's keeper speaks protocol ${version}, the front ${KEEPER_PROTOCOL}`,
    );
  }
}
/**
 * The socket path must be free: a live serve there is refused, a stale socket (nobody listening)
 * left by a killed serve is removed, anything else at that path is left alone and refused.
 */
export async function claimSocket(socket: string): Promise<void> {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(socket);
  } catch (e) {
    if (ioErrorCode(e) === 'ENOENT') return;
    throw usage('cannot_listen', `cannot use ${socket} (${ioErrorCode(e) ?? 'error'})`);
  }
  if (st.isSymbolicLink()) {
    throw integrity('symlink', `${socket} is a symbolic link`, 'remove it, or pass --socket PATH');
  }
  if (!st.isSocket()) {
    throw usage(
      'socket_path_taken',
      `${socket} exists and is not a socket`,
      'remove it, or pass --socket PATH',
    );
  }
  if (await _answers(socket)) {
    throw usage(
      'serve_running',
      `a serve is already running on ${socket}`,
      'use it (exec finds it by itself), or stop it first; --socket PATH starts another',
    );
  }
  fs.unlinkSync(socket);
}

function _answers(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(socket);
    const done = (alive: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve(alive);
    };
    const timer = setTimeout(() => done(true), 2_000);
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}
