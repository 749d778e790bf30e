/**
 * The ship cursor (docs/formats.md#ship-cursor): per destination, `HOME/ship/<sha256 of the URL>.json`
 * records the last entry the receiver accepted (seq, the byte offset just after its line, and its
 * digest). It is written atomically (temp file, fsync, rename, fsync dir; 0600) and only after the
 * receiver accepted. It sits in the home, which an agent may write: the digest lets the shipper
 * check the cursor against the log, so an edited cursor is detected instead of skipping entries.
 */
import { Buffer } from 'node:buffer';
import { hash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type Home, readStateFile, subdir, writeStateFile } from '../home.ts';

export const SHIP_DIR = 'ship';
export const CURSOR_FORMAT = 'trust-protocol-ship-cursor';
export const CURSOR_VERSION = 1;

export interface ShipCursor {
  seq: number;
  offset: number;
  digest: string;
}

export function cursorName(destination: string): string {
  return `${hash('sha256', destination, 'hex')}.json`;
}

/**
 * The stored cursor: null when none was written yet, 'malformed' when the file is not a cursor
 * (the caller treats it as not matching the log).
 */
export function readCursor(home: Home, destination: string): ShipCursor | null | 'malformed' {
  const dir = subdir(home, SHIP_DIR, { create: false });
  const bytes = dir === null ? null : readStateFile(dir, cursorName(destination));
  if (bytes === null) return null;
  let p: unknown;
  try {
    p = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    return 'malformed';
  }
  const { format, v, to, seq, offset, digest } = (p ?? {}) as Record<string, unknown>;
  const ok = format === CURSOR_FORMAT && v === CURSOR_VERSION && to === destination &&
    Number.isSafeInteger(seq) && (seq as number) >= 1 &&
    Number.isSafeInteger(offset) && (offset as number) > 0 &&
    typeof digest === 'string' && /^[0-9a-f]{64}$/.test(digest);
  return ok
    ? { seq: seq as number, offset: offset as number, digest: digest as string }
    : 'malformed';
}

export function writeCursor(home: Home, destination: string, cursor: ShipCursor): void {
  const dir = subdir(home, SHIP_DIR, { create: true }) as Home;
  const body = {
    format: CURSOR_FORMAT,
    v: CURSOR_VERSION,
    to: destination,
    seq: cursor.seq,
    offset: cursor.offset,
    digest: cursor.digest,
  };
  writeStateFile(dir, cursorName(destination), JSON.stringify(body) + '\n');
}

/** Removes the cursor (nothing shipped yet, as far as a running shipper knows). */
export function removeCursor(home: Home, destination: string): void {
  const dir = subdir(home, SHIP_DIR, { create: false });
  if (dir !== null) fs.rmSync(path.join(dir.dir, cursorName(destination)), { force: true });
}
