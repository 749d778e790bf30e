/**
 * The framed binary protocol between serve's front (the HTTP-facing process) and its keeper (the
 * child that holds the keys), over the keeper's stdin and stdout (docs/formats.md#keeper-frames).
 * A frame is `[type u8][stream id u32][length u32][payload]`, big-endian; stream 0 carries the
 * control frames, each request its own stream id. Both sides honour the pipe's backpressure: a
 * send resolves once the frame is queued, or after 'drain' when the queue was full. Frames sent
 * in one turn of the event loop leave together, in one write.
 */
import { Buffer } from 'node:buffer';
import { setImmediate } from 'node:timers';
import { errorCodeOf, TpError } from '../errors.ts';

/** Sent in the keeper's `unsealed` and `ready` frames; the front refuses any other. */
export const KEEPER_PROTOCOL = 1;

export const FRAME = {
  // front -> keeper
  password: 1,
  listening: 2,
  requestHead: 3,
  requestBody: 4,
  requestEnd: 5,
  abort: 6,
  credit: 7,
  stop: 8,
  // keeper -> front
  needPassword: 20,
  unsealed: 21,
  ready: 22,
  responseHead: 23,
  responseBody: 24,
  responseEnd: 25,
  responseError: 26,
  stopping: 27,
  stopped: 28,
  /** The request's token named an active agent: the front's adapter keeps its connection. */
  agentProven: 29,
} as const;

export type FrameType = (typeof FRAME)[keyof typeof FRAME];

export interface Frame {
  type: number;
  stream: number;
  payload: Uint8Array;
}

const HEADER = 9;
/** The largest payload either side accepts: senders split bodies well below it. */
export const MAX_FRAME_PAYLOAD = 4 * 1024 * 1024;
/** Body bytes per frame. */
export const BODY_PIECE = 256 * 1024;
/** Unacknowledged response body bytes the keeper may have in flight per stream. */
export const STREAM_WINDOW = 1024 * 1024;

export interface FrameChannel {
  /** Resolves once the frame is queued (after 'drain' when full); false once closed. */
  send(type: FrameType, stream: number, payload?: Uint8Array): Promise<boolean>;
  sendJson(type: FrameType, stream: number, value: unknown): Promise<boolean>;
  readonly closed: boolean;
  /** Stops reading and ends the output; resolves once every frame sent is flushed. */
  close(): Promise<void>;
}

export interface Pipe {
  input: NodeJS.ReadableStream;
  output: NodeJS.WritableStream;
}

/**
 * Reads frames from `pipe.input` and hands each to `onFrame`; `onClose` runs once when the input
 * ends, errors, or carries something that is not a frame (the other side is then treated as gone).
 */
export function frameChannel(
  pipe: Pipe,
  handlers: { onFrame(frame: Frame): void; onClose(error: TpError | null): void },
): FrameChannel {
  let buffered: Buffer = Buffer.alloc(0);
  let closed = false;
  const finish = (error: TpError | null) => {
    if (closed) return;
    closed = true;
    pipe.input.off('data', onData);
    handlers.onClose(error);
  };
  const onData = (chunk: Buffer | string) => {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    buffered = buffered.length === 0 ? bytes : Buffer.concat([buffered, bytes]);
    while (!closed && buffered.length >= HEADER) {
      const length = buffered.readUInt32BE(5);
      if (length > MAX_FRAME_PAYLOAD) {
        finish(_protocolError(`a frame of ${length} bytes`));
        return;
      }
      if (buffered.length < HEADER + length) break;
      const frame: Frame = {
        type: buffered[0] as number,
        stream: buffered.readUInt32BE(1),
        // A copy: the receiver may keep it (or wipe it) independently of the read buffer.
        payload: new Uint8Array(buffered.subarray(HEADER, HEADER + length)),
      };
      // Password bytes pass through here: wipe what this read buffer held of them.
      const rest = buffered.subarray(HEADER + length);
      if (frame.type === FRAME.password) buffered.fill(0, 0, HEADER + length);
      buffered = rest.length === 0 ? Buffer.alloc(0) : rest;
      try {
        handlers.onFrame(frame);
      } catch (e) {
        finish(e instanceof TpError ? e : _protocolError(String(e)));
        return;
      }
    }
  };
  pipe.input.on('data', onData);
  pipe.input.once('end', () => finish(null));
  pipe.input.once('close', () => finish(null));
  pipe.input.once('error', () => finish(null));
  pipe.output.on('error', () => finish(null));

  let draining: Promise<void> | null = null;
  // The output stays corked for the rest of this turn of the event loop, so a response's head,
  // body and end (and whatever else is sent meanwhile) cost one write, not one each: each write
  // to a pipe is a system call on the event loop. `end()` uncorks, so closing flushes them.
  const output = pipe.output as NodeJS.WritableStream & { cork(): void; uncork(): void };
  let corked = false;
  const uncork = () => {
    corked = false;
    output.uncork();
  };
  const send = async (type: FrameType, stream: number, payload = new Uint8Array(0)) => {
    if (closed) return false;
    const header = Buffer.allocUnsafe(HEADER);
    header[0] = type;
    header.writeUInt32BE(stream, 1);
    header.writeUInt32BE(payload.length, 5);
    if (!corked) {
      corked = true;
      output.cork();
      setImmediate(uncork);
    }
    let ok: boolean;
    if (type === FRAME.password) {
      // A copy, wiped once written: the caller wipes its own as soon as this resolves, while the
      // pipe may still be writing.
      const frame = Buffer.concat([header, payload]);
      ok = output.write(frame, () => frame.fill(0));
    } else {
      // The payload is not copied (callers never reuse it).
      output.write(header);
      ok = output.write(payload);
    }
    if (!ok) {
      // One wait for the pipe's drain, shared by every sender that finds it full.
      draining ??= _drained(pipe.output, () => closed).then(() => {
        draining = null;
      });
      await draining;
    }
    return !closed;
  };
  return {
    send,
    sendJson: (type, stream, value) =>
      send(type, stream, new TextEncoder().encode(JSON.stringify(value))),
    get closed() {
      return closed;
    },
    close() {
      finish(null);
      return new Promise<void>((resolve) => pipe.output.end(() => resolve()));
    },
  };
}

export function parseJson<T>(frame: Frame): T {
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(frame.payload)) as T;
  } catch {
    throw _protocolError(`frame ${frame.type} does not carry JSON`);
  }
}

export function u32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
}

export function readU32(frame: Frame): number {
  if (frame.payload.length !== 4) throw _protocolError(`frame ${frame.type} is not a u32`);
  return new DataView(frame.payload.buffer, frame.payload.byteOffset).getUint32(0);
}

/** Errors cross the pipe as their kind, code, message and hint (no stack, no cause). */
export interface WireError {
  kind: TpError['kind'];
  code: string;
  message: string;
  hint?: string;
}

export function toWire(e: TpError): WireError {
  return { kind: e.kind, code: e.code, message: e.message, ...(e.hint ? { hint: e.hint } : {}) };
}

export function fromWire(w: WireError): TpError {
  return new TpError(
    w.kind,
    errorCodeOf(w.code),
    w.message,
    w.hint === undefined ? {} : { hint: w.hint },
  );
}

function _protocolError(what: string): TpError {
  return new TpError('internal', 'keeper_protocol', `serve's keeper pipe carried ${what}`);
}

function _drained(output: NodeJS.WritableStream, closed: () => boolean): Promise<void> {
  return new Promise((resolve) => {
    if (closed()) return resolve();
    const done = () => {
      output.off('drain', done);
      output.off('close', done);
      output.off('error', done);
      resolve();
    };
    output.on('drain', done);
    output.on('close', done);
    output.on('error', done);
  });
}
