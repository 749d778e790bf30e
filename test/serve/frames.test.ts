/**
 * The frame channel between serve's front and keeper (src/serve/frames.ts): frames sent in one
 * turn of the event loop leave in one write, and closing flushes what is still queued.
 */
import { Buffer } from 'node:buffer';
import { PassThrough, Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { FRAME, type Frame, frameChannel } from '../../src/serve/frames.ts';

/** A writable that records each write reaching it (one per syscall on a real pipe). */
function recorder() {
  const writes: Buffer[] = [];
  const output = new Writable({
    writev(chunks, done) {
      writes.push(Buffer.concat(chunks.map((c) => c.chunk as Buffer)));
      done();
    },
    write(chunk: Buffer, _enc, done) {
      writes.push(Buffer.from(chunk));
      done();
    },
  });
  return { writes, output };
}

function parse(bytes: Buffer): Frame[] {
  const frames: Frame[] = [];
  for (let at = 0; at < bytes.length;) {
    const length = bytes.readUInt32BE(at + 5);
    frames.push({
      type: bytes[at] as number,
      stream: bytes.readUInt32BE(at + 1),
      payload: new Uint8Array(bytes.subarray(at + 9, at + 9 + length)),
    });
    at += 9 + length;
  }
  return frames;
}

describe('the frame channel', () => {
  it("a response's head, body and end sent in one turn leave in one write, in order", async () => {
    const { writes, output } = recorder();
    const channel = frameChannel({ input: new PassThrough(), output }, {
      onFrame() {},
      onClose() {},
    });
    const sent = [
      channel.sendJson(FRAME.responseHead, 5, { status: 200 }),
      channel.send(FRAME.responseBody, 5, new TextEncoder().encode('hello')),
      channel.sendJson(FRAME.responseEnd, 5, { trailers: [] }),
    ];
    expect(await Promise.all(sent)).toEqual([true, true, true]);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(writes.length).toBe(1);
    expect(parse(writes[0] as Buffer).map((f) => [f.type, f.stream])).toEqual([
      [FRAME.responseHead, 5],
      [FRAME.responseBody, 5],
      [FRAME.responseEnd, 5],
    ]);
  });

  it('close flushes the frames still queued before it resolves', async () => {
    const { writes, output } = recorder();
    const channel = frameChannel({ input: new PassThrough(), output }, {
      onFrame() {},
      onClose() {},
    });
    void channel.sendJson(FRAME.stopped, 0, { reason: 'signal' });
    await channel.close();
    const frames = writes.flatMap((w) => parse(w));
    expect(frames.map((f) => f.type)).toEqual([FRAME.stopped]);
  });
});
