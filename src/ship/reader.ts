/**
 * Reads the audit log for the shipper, apart from its writers (no lock: complete lines only, a
 * torn tail is left for later): checks that a cursor still names an entry of the log, and reads
 * the next batch after it, bounded in bytes and entries so memory stays flat on a large log.
 */
import { Buffer } from 'node:buffer';
import * as fs from 'node:fs';
import { AUDIT_DIR, AUDIT_FILE, lineDigest } from '../audit.ts';
import { liveIsLastSegment, TrailReader } from '../audit_segments.ts';
import { openStateFile, subdir } from '../home.ts';
import type { Home } from '../home.ts';
import type { ShipCursor } from './cursor.ts';
import { type ShipEntry, shipEntry } from './messages.ts';

export interface Batch {
  entries: ShipEntry[];
  /** The cursor after the last entry of the batch (the one given when the batch is empty). */
  next: ShipCursor | null;
}

export interface BatchLimits {
  maxBytes: number;
  maxEntries: number;
}

/** A single entry line may be this long before the reader gives up on it. */
const MAX_LINE = 16 * 1024 * 1024;

/**
 * The entries after `cursor` (from the start when null), or null when the log no longer holds the
 * entry the cursor names (edited cursor, or a log cut or rewritten): the caller decides where to
 * start again, never skipping silently.
 */
export function readBatch(
  home: Home,
  cursor: ShipCursor | null,
  limits: BatchLimits,
): Batch | null {
  const dir = subdir(home, AUDIT_DIR, { create: false });
  const live = dir === null ? null : openStateFile(dir, AUDIT_FILE);
  if (dir === null) return cursor === null ? { entries: [], next: null } : null;
  // Offsets run over the whole trail (closed segments, then the live log), so a rotation does
  // not move the cursor; a log from before segments has the same offsets.
  const skipLive = live !== null && liveIsLastSegment(dir, live);
  const fd = new TrailReader(dir, skipLive ? null : live, { check: false });
  try {
    const size = fd.base + (live === null || skipLive ? 0 : fs.fstatSync(live).size);
    if (cursor !== null && !_names(fd, size, cursor)) return null;
    const from = cursor?.offset ?? 0;
    let want = limits.maxBytes;
    for (;;) {
      const length = Math.min(want, size - from);
      if (length <= 0) return { entries: [], next: cursor };
      const buf = _read(fd, from, length);
      const end = buf.lastIndexOf(0x0a);
      if (end < 0) {
        // No complete line yet, or one longer than the window: widen it once it is all there.
        if (length < want || want >= MAX_LINE) return { entries: [], next: cursor };
        want = Math.min(want * 4, MAX_LINE);
        continue;
      }
      const lines = buf.subarray(0, end).toString('utf8').split('\n')
        .slice(0, limits.maxEntries);
      const entries = lines.map(shipEntry);
      if (cursor !== null && _prevOf(entries[0]!.line) !== cursor.digest) return null;
      let offset = from;
      for (const e of entries) offset += Buffer.byteLength(e.line, 'utf8') + 1;
      const last = entries[entries.length - 1]!;
      return { entries, next: { seq: last.seq, offset, digest: last.id } };
    }
  } finally {
    fd.close();
    if (live !== null) fs.closeSync(live);
  }
}

/** Whether the complete line ending just before `cursor.offset` is the entry the cursor names. */
function _names(fd: TrailReader, size: number, cursor: ShipCursor): boolean {
  if (cursor.offset > size) return false;
  for (let window = 64 * 1024;; window *= 4) {
    const start = Math.max(0, cursor.offset - window);
    const buf = _read(fd, start, cursor.offset - start);
    if (buf[buf.length - 1] !== 0x0a) return false;
    const begin = buf.lastIndexOf(0x0a, buf.length - 2);
    if (begin < 0 && start > 0) {
      if (window >= MAX_LINE) return false;
      continue;
    }
    const line = buf.subarray(begin + 1, buf.length - 1).toString('utf8');
    const seq = /^\{"v":\d+,"seq":(\d+),/.exec(line)?.[1];
    return seq !== undefined && Number(seq) === cursor.seq && lineDigest(line) === cursor.digest;
  }
}

function _read(fd: TrailReader, at: number, length: number): Buffer {
  return fd.pread(at, length);
}

function _prevOf(line: string): string | null {
  const at = line.lastIndexOf(',"prev":"');
  return at < 0 ? null : line.slice(at + 9, at + 9 + 64);
}
