/** Small byte helpers shared by the core. */
import { Buffer } from 'node:buffer';
import { createHash, timingSafeEqual } from 'node:crypto';
import { integrity } from './errors.ts';

// In their own module so that code loading at start-up (the CLI, exec's serve client) does not
// load node:crypto for them.
export { decodeUtf8Strict, escapeControls } from './text.ts';

export const utf8 = new TextEncoder();

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

export function fromHex(text: string, field: string): Uint8Array {
  if (!/^(?:[0-9a-f]{2})*$/.test(text)) {
    throw integrity('malformed_state', `${field}: expected lowercase hex`);
  }
  return new Uint8Array(Buffer.from(text, 'hex'));
}

export function toB64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

export function fromB64(text: string, field: string): Uint8Array {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) {
    throw integrity('malformed_state', `${field}: expected standard base64`);
  }
  return new Uint8Array(Buffer.from(text, 'base64'));
}

export function sha256(data: Uint8Array | string): Uint8Array {
  return new Uint8Array(createHash('sha256').update(data).digest());
}

/** Constant-time equality that also hides length differences (timingSafeEqual throws on them). */
export function secretEqual(a: Uint8Array, b: Uint8Array): boolean {
  return timingSafeEqual(sha256(a), sha256(b)) && a.length === b.length;
}

/** Best effort: JavaScript cannot guarantee no copy of a key survives elsewhere in memory. */
export function wipe(...buffers: Array<Uint8Array | null | undefined>): void {
  for (const b of buffers) b?.fill(0);
}
