/**
 * Line and base64 reading shared by the minisign key and signature files. Strict on purpose: a
 * file with two spellings (padding bits, stray characters) is refused, so what was signed or
 * trusted has exactly one byte form.
 */
import { Buffer } from 'node:buffer';
import { decodeUtf8Strict } from '../bytes.ts';

/** Splits on LF, drops a CR before it (as minisign does), and drops the final empty line. */
export function fileLines(bytes: Uint8Array): Uint8Array[] {
  const lines: Uint8Array[] = [];
  let start = 0;
  for (let i = 0; i <= bytes.length; i++) {
    if (i < bytes.length && bytes[i] !== 0x0a) continue;
    let end = i;
    if (end > start && bytes[end - 1] === 0x0d) end -= 1;
    lines.push(bytes.subarray(start, end));
    start = i + 1;
  }
  if (lines.length > 0 && (lines[lines.length - 1] as Uint8Array).length === 0) lines.pop();
  return lines;
}

export function lineText(line: Uint8Array): string | null {
  return decodeUtf8Strict(line);
}

/** Canonical standard base64 of exactly `length` bytes, or null. */
export function strictBase64(line: Uint8Array, length: number): Uint8Array | null {
  const text = decodeUtf8Strict(line);
  if (text === null || !/^[A-Za-z0-9+/]+={0,2}$/.test(text) || text.length % 4 !== 0) return null;
  const bytes = Buffer.from(text, 'base64');
  if (bytes.length !== length || bytes.toString('base64') !== text) return null;
  return new Uint8Array(bytes);
}

export function base64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

export function startsWith(line: Uint8Array, prefix: string): boolean {
  const p = Buffer.from(prefix, 'utf8');
  return line.length >= p.length &&
    Buffer.compare(Buffer.from(line.subarray(0, p.length)), p) === 0;
}
