/**
 * serve's keeper: the child process that holds the keys (docs/architecture.md#serve). It answers
 * the front's requests with the serve handler over the frame pipe (src/serve/frames.ts) and sends
 * back responses that are already redacted; the front never sees a key or a credential value.
 * Each response body is sent within a window of unacknowledged bytes that the front's credits
 * reopen as it writes to the client, so a slow client holds the upstream, not the front's memory.
 */
import { Buffer } from 'node:buffer';
import { TpError } from '../errors.ts';
import {
  BODY_PIECE,
  FRAME,
  type Frame,
  type FrameChannel,
  frameChannel,
  KEEPER_PROTOCOL,
  parseJson,
  type Pipe,
  readU32,
  STREAM_WINDOW,
  toWire,
} from './frames.ts';
import { errorResponse, type ServeRequest, type ServeResponse } from './handler.ts';
import { asServeError } from './http_error.ts';
import { openServe, type ServeCore, type ServeOptions, type Stopped } from './serve.ts';

/** What the front sends for each request (`requestHead`). */
export interface RequestHead {
  method: string;
  target: string;
  headers: Array<[string, string]>;
  hosts: string[];
  via: 'unix' | 'tcp';
  /** The front's adapter asks to hear when a token proves the connection an agent's. */
  agent: boolean;
}

/** Sent back in `requestEnd` when the front could not read the whole body. */
export interface RequestEnd {
  error?: 'body_too_large' | 'body_incomplete';
}

export interface ResponseHead {
  status: number;
  statusText?: string;
  headers: Array<[string, string]>;
  /** `bytes`: body frames follow, the front buffers them (Content-Length); `stream`: streamed. */
  body: 'none' | 'bytes' | 'stream';
}

/** How long the keeper waits, once stopping, for responses still streaming to the front. */
const DRAIN_MS = 5_000;

interface _Stream {
  controller: AbortController;
  chunks: Buffer[];
  size: number;
  end: Promise<RequestEnd>;
  ended(end: RequestEnd): void;
  /** Body bytes sent and not yet credited by the front. */
  unacked: number;
  wake: Array<() => void>;
}

export interface KeeperLink {
  /** Asks the front for the password it prompted for (the caller wipes it). */
  password(): Promise<Uint8Array>;
  /**
   * Serves until stopped; resolves with how it stopped. `options.keys` are taken over.
   * `settings`: what HOME/config.json added to serve's flags, verified under the key; the front
   * listens by them (it cannot check the file's seal itself).
   */
  serve(
    options: ServeOptions,
    settings?: Readonly<Record<string, string | string[]>>,
  ): Promise<Stopped>;
  /** Stops (SIGTERM to the keeper itself): as if the front had asked. */
  stop(reason: Stopped['reason']): void;
}

export function keeperLink(pipe: Pipe): KeeperLink {
  let core: ServeCore | null = null;
  let passwordWaiter: ((p: Uint8Array) => void) | null = null;
  let stopRequested: Stopped['reason'] | null = null;
  let startError: TpError | null = null;
  const streams = new Map<number, _Stream>();
  const inFlight = new Set<Promise<void>>();
  const stopNow = (reason: Stopped['reason']) => {
    stopRequested ??= reason;
    // Before serve(): it stops as soon as it has opened (or the keeper exits on its error).
    if (core !== null) void core.stop(reason);
  };

  const onFrame = (frame: Frame) => {
    switch (frame.type) {
      case FRAME.password:
        passwordWaiter?.(frame.payload);
        passwordWaiter = null;
        return;
      case FRAME.listening: {
        const started = parseJson<{ urls: string[]; pid: number }>(frame);
        if (core === null) return;
        const c = core;
        c.begin(started).then(
          () =>
            channel.sendJson(FRAME.ready, 0, {
              protocol: KEEPER_PROTOCOL,
              started_at: c.startedAt.toISOString(),
              expires_at: c.expiresAt.toISOString(),
              pid: process.pid,
            }),
          (e) => {
            // serve.start could not be audited: serve must not run.
            startError = asServeError(e);
            void c.stop('signal');
          },
        );
        return;
      }
      case FRAME.requestHead: {
        if (core === null) return;
        const head = parseJson<RequestHead>(frame);
        const done = _handle(core, frame.stream, head);
        inFlight.add(done);
        void done.finally(() => inFlight.delete(done));
        return;
      }
      case FRAME.requestBody: {
        const s = streams.get(frame.stream);
        if (s === undefined) return;
        s.chunks.push(
          Buffer.from(frame.payload.buffer, frame.payload.byteOffset, frame.payload.length),
        );
        s.size += frame.payload.length;
        return;
      }
      case FRAME.requestEnd:
        streams.get(frame.stream)?.ended(
          frame.payload.length === 0 ? {} : parseJson<RequestEnd>(frame),
        );
        return;
      case FRAME.abort:
        streams.get(frame.stream)?.controller.abort();
        return;
      case FRAME.credit: {
        const s = streams.get(frame.stream);
        if (s === undefined) return;
        s.unacked = Math.max(0, s.unacked - readU32(frame));
        for (const wake of s.wake.splice(0)) wake();
        return;
      }
      case FRAME.stop:
        stopNow(parseJson<{ reason: Stopped['reason'] }>(frame).reason);
        return;
      default:
        throw new TpError('internal', 'keeper_protocol', `unknown frame type ${frame.type}`);
    }
  };
  const channel: FrameChannel = frameChannel(pipe, {
    onFrame,
    onClose: () => {
      // The front is gone (killed, crashed): nobody can use these keys any more.
      for (const s of streams.values()) {
        s.controller.abort();
        s.ended({ error: 'body_incomplete' });
        for (const wake of s.wake.splice(0)) wake();
      }
      passwordWaiter?.(new Uint8Array(0));
      stopNow('front');
    },
  });

  const _handle = async (c: ServeCore, id: number, head: RequestHead): Promise<void> => {
    const ended = c.onRequest(head.target);
    let resolveEnd: (e: RequestEnd) => void = () => {};
    const stream: _Stream = {
      controller: new AbortController(),
      chunks: [],
      size: 0,
      end: new Promise((resolve) => (resolveEnd = resolve)),
      ended: (e) => resolveEnd(e),
      unacked: 0,
      wake: [],
    };
    streams.set(id, stream);
    const request: ServeRequest = {
      method: head.method,
      target: head.target,
      headers: head.headers,
      body: (limit) => _body(stream, limit),
      signal: stream.controller.signal,
      hosts: new Set(head.hosts),
      via: head.via,
      ...(head.agent ? { agent: () => void channel.send(FRAME.agentProven, id) } : {}),
    };
    try {
      let response: ServeResponse;
      try {
        response = await c.handler(request);
      } catch (e) {
        response = errorResponse(asServeError(e));
      }
      await _respond(id, stream, response);
    } finally {
      streams.delete(id);
      ended();
    }
  };

  const _respond = async (id: number, s: _Stream, response: ServeResponse): Promise<void> => {
    const body = response.body;
    const kind = body === null ? 'none' : body instanceof Uint8Array ? 'bytes' : 'stream';
    const head: ResponseHead = {
      status: response.status,
      ...(response.statusText === undefined ? {} : { statusText: response.statusText }),
      headers: response.headers,
      body: kind,
    };
    await channel.sendJson(FRAME.responseHead, id, head);
    if (body instanceof Uint8Array) {
      await _sendBody(id, s, body);
    } else if (body !== null) {
      try {
        // Iterated to its end even when the client has gone, as the node:http adapter does: the
        // broker records how the request ended when its stream ends.
        for await (const chunk of body) await _sendBody(id, s, chunk);
      } catch {
        await channel.send(FRAME.responseError, id);
        return;
      }
    }
    await channel.sendJson(FRAME.responseEnd, id, { trailers: response.trailers?.() ?? [] });
  };

  const _sendBody = async (id: number, s: _Stream, bytes: Uint8Array): Promise<void> => {
    for (let at = 0; at < bytes.length; at += BODY_PIECE) {
      const piece = bytes.subarray(at, at + BODY_PIECE);
      while (s.unacked > 0 && s.unacked + piece.length > STREAM_WINDOW && !channel.closed) {
        await new Promise<void>((resolve) => s.wake.push(resolve));
      }
      s.unacked += piece.length;
      // Not awaited: the front reads its pipe at all times, so waiting for the pipe to drain
      // would only put the upstream read and the front's write in lockstep. The window above is
      // what bounds the bytes in flight.
      void channel.send(FRAME.responseBody, id, piece);
    }
  };

  return {
    stop: stopNow,
    password() {
      return new Promise((resolve) => {
        passwordWaiter = resolve;
        void channel.send(FRAME.needPassword, 0);
      });
    },
    async serve(options, settings = {}) {
      const c = await openServe(options, {
        onClock: (reason) => void channel.sendJson(FRAME.stopping, 0, { reason }),
        beforeAudit: async () => {
          await Promise.race([
            Promise.allSettled([...inFlight]),
            new Promise((resolve) => setTimeout(resolve, DRAIN_MS).unref()),
          ]);
        },
      });
      core = c;
      if (stopRequested !== null) void c.stop(stopRequested);
      else await channel.sendJson(FRAME.unsealed, 0, { protocol: KEEPER_PROTOCOL, settings });
      const stopped = await c.stopped;
      const error = startError ?? stopped.auditError;
      await channel.sendJson(FRAME.stopped, 0, {
        reason: stopped.reason,
        ...(error === null ? {} : { error: toWire(error) }),
      });
      await channel.close();
      return { reason: stopped.reason, auditError: error };
    },
  };
}

/** The body the front read, refused over `limit` bytes (413) as the node:http adapter does. */
async function _body(s: _Stream, limit: number): Promise<Uint8Array> {
  const end = await s.end;
  const tooLarge = () =>
    new TpError('usage', 'body_too_large', `the request body is larger than ${limit} bytes`);
  if (end.error === 'body_too_large' || s.size > limit) throw tooLarge();
  if (end.error === 'body_incomplete') {
    throw new TpError('usage', 'body_incomplete', 'the request body was cut off');
  }
  return new Uint8Array(Buffer.concat(s.chunks));
}
