/**
 * Closed segments of the audit log (docs/formats.md#audit-segments, issue #18). The live log stays
 * `audit/audit.log`; when it reaches the size limit (or on `audit rotate`) it becomes
 * `audit/segments/NNNNNN-FIRST-LAST.log` and a new, empty live log starts, continuing the chain
 * (its first `prev` is the digest of the segment's last line) and the Merkle tree (leaf indices
 * go on). `audit/segments/index.json` lists every segment with its size and SHA-256, so a segment
 * compressed (`.log.gz`) or moved elsewhere (`--segments DIR`) is still found and checked.
 *
 * Nothing here is trusted more than the log itself: the index and the segments are agent-writable
 * files, as the log is. Readers check a segment's size and SHA-256 against the index, and the
 * chain across segments is checked by `audit verify` as for one file; a missing or altered
 * segment is named by its file name.
 */
import { Buffer } from 'node:buffer';
import { createHash, hash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import process from 'node:process';
import { gunzipSync, gzipSync } from 'node:zlib';
import { TpError } from './errors.ts';
import {
  fsyncDir,
  type Home,
  ioErrorCode,
  READ_FLAGS,
  readStateFile,
  subdir,
  writeAtomic,
} from './home.ts';

export const SEGMENTS_DIR = 'segments';
export const SEGMENT_INDEX = 'index.json';
export const SEGMENT_INDEX_VERSION = 1;
/** The live log is closed into a segment once it holds this many bytes. */
export const DEFAULT_SEGMENT_BYTES = 256 * 1024 * 1024;
/** Overrides the limit (bytes, at least `MIN_SEGMENT_BYTES`): for tests and small disks. */
export const SEGMENT_BYTES_ENV = 'TRUST_PROTOCOL_AUDIT_SEGMENT_BYTES';
/**
 * An agent controls its environment: a tiny limit could only make many small segments, which
 * every reader follows; this floor keeps that from becoming a file per entry.
 */
export const MIN_SEGMENT_BYTES = 4096;
const LIVE = 'audit.log';
const NAME_RE = /^(\d{6})-(\d+)-(\d+)\.log$/;

/** One closed segment, as `index.json` lists it. */
export interface Segment {
  /** `NNNNNN-FIRST-LAST.log`; the file may also be that name plus `.gz`. */
  file: string;
  first_seq: number;
  last_seq: number;
  /** Size and SHA-256 (hex) of the uncompressed content. */
  bytes: number;
  sha256: string;
  /** The digest of its last line: the next segment's (or the live log's) first `prev`. */
  last_digest: string;
}

/** The size limit for this process: the environment's, when it names a valid one. */
export function segmentLimit(env: Record<string, string | undefined> = process.env): number {
  const text = env[SEGMENT_BYTES_ENV];
  if (text === undefined || !/^\d{1,15}$/.test(text)) return DEFAULT_SEGMENT_BYTES;
  return Math.max(MIN_SEGMENT_BYTES, Number(text));
}

/** The segments in order, from `audit/segments/index.json` (none when it is absent). */
export function readSegments(auditDir: Home): Segment[] {
  const dir = subdir(auditDir, SEGMENTS_DIR, { create: false });
  const bytes = dir === null ? null : readStateFile(dir, SEGMENT_INDEX);
  if (bytes === null) return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    throw _badIndex('it is not JSON');
  }
  const o = parsed as { v?: unknown; segments?: unknown };
  if (o?.v !== SEGMENT_INDEX_VERSION || !Array.isArray(o.segments)) {
    throw _badIndex(`expected {"v": ${SEGMENT_INDEX_VERSION}, "segments": [...]}`);
  }
  return o.segments.map((s: unknown, i: number) => {
    const r = s as Record<string, unknown>;
    const m = typeof r?.file === 'string' ? NAME_RE.exec(r.file) : null;
    const ok = m !== null && Number(m[1]) === i + 1 &&
      Number(m[2]) === r.first_seq && Number(m[3]) === r.last_seq &&
      Number.isSafeInteger(r.bytes) && typeof r.sha256 === 'string' &&
      /^[0-9a-f]{64}$/.test(r.sha256) && typeof r.last_digest === 'string' &&
      /^[0-9a-f]{64}$/.test(r.last_digest);
    if (!ok) throw _badIndex(`segment ${i + 1} is not described as expected`);
    return {
      file: r.file as string,
      first_seq: r.first_seq as number,
      last_seq: r.last_seq as number,
      bytes: r.bytes as number,
      sha256: r.sha256 as string,
      last_digest: r.last_digest as string,
    };
  });
}

/** Total bytes of the segments: where the live log starts in the whole trail. */
export function segmentsBytes(segments: readonly Segment[]): number {
  return segments.reduce((n, s) => n + s.bytes, 0);
}

/**
 * Where a segment is: `audit/segments`, then each of `search` in order; `NAME.log` before
 * `NAME.log.gz`. Null when it is in none of them.
 */
export function findSegment(
  auditDir: Home,
  s: Segment,
  search: readonly string[] = [],
): { path: string; gz: boolean } | null {
  const dirs = [path.join(auditDir.dir, SEGMENTS_DIR), ...search];
  for (const dir of dirs) {
    for (const gz of [false, true]) {
      const p = path.join(dir, gz ? `${s.file}.gz` : s.file);
      try {
        if (fs.lstatSync(p).isFile()) return { path: p, gz };
      } catch (e) {
        if (ioErrorCode(e) !== 'ENOENT' && ioErrorCode(e) !== 'ENOTDIR') throw e;
      }
    }
  }
  return null;
}

/**
 * A segment's content, checked against the index (size and SHA-256). A segment that is missing or
 * does not match is a verification failure that names its file.
 */
export function segmentContent(
  auditDir: Home,
  s: Segment,
  search: readonly string[] = [],
): Buffer {
  const found = findSegment(auditDir, s, search);
  if (found === null) throw _missing(s, search);
  let bytes: Buffer;
  try {
    const raw = fs.readFileSync(found.path, { flag: READ_FLAGS });
    bytes = found.gz ? gunzipSync(raw) : raw;
  } catch (e) {
    throw _altered(found.path, `it cannot be read (${ioErrorCode(e) ?? 'bad gzip data'})`);
  }
  if (bytes.length !== s.bytes || hash('sha256', bytes, 'hex') !== s.sha256) {
    throw _altered(found.path, 'its content is not the one index.json recorded');
  }
  return bytes;
}

/**
 * Closes the live log into the next segment. Call under the audit lock, with the live log's
 * complete lines all durable. Safe to run again after a crash part-way (the writer does, when it
 * finds the live log still linked as a segment): the steps are a hard link of the live log to its
 * segment name, the index written atomically, then an empty live log renamed over the old one.
 * Returns the segment, or null when the live log is empty.
 */
export function rotateLive(auditDir: Home): Segment | null {
  const live = path.join(auditDir.dir, LIVE);
  let content: Buffer;
  try {
    content = fs.readFileSync(live, { flag: READ_FLAGS });
  } catch (e) {
    if (ioErrorCode(e) === 'ENOENT') return null;
    throw e;
  }
  if (content.length === 0) return null;
  if (content[content.length - 1] !== 0x0a) {
    throw new TpError(
      'audit',
      'audit_tail_malformed',
      'the live audit log ends in a torn line; it is not closed into a segment',
      { hint: 'the next append repairs the tail; then run `trust-protocol audit rotate` again' },
    );
  }
  const dir = subdir(auditDir, SEGMENTS_DIR, { create: true })!;
  const segments = readSegments(auditDir);
  const firstLine = content.subarray(0, content.indexOf(0x0a)).toString('utf8');
  const lastStart = content.lastIndexOf(0x0a, content.length - 2) + 1;
  const lastLine = content.subarray(lastStart, content.length - 1).toString('utf8');
  const segment: Segment = {
    file: '',
    first_seq: _seq(firstLine),
    last_seq: _seq(lastLine),
    bytes: content.length,
    sha256: createHash('sha256').update(content).digest('hex'),
    last_digest: _digest(lastLine),
  };
  const previous = segments[segments.length - 1];
  // A crash after the index was written: this live log is already the last segment.
  const done = previous !== undefined && previous.sha256 === segment.sha256 &&
    previous.first_seq === segment.first_seq;
  const n = done ? segments.length : segments.length + 1;
  segment.file = `${String(n).padStart(6, '0')}-${segment.first_seq}-${segment.last_seq}.log`;
  const target = path.join(dir.dir, segment.file);
  if (!_sameFile(live, target)) {
    fs.rmSync(target, { force: true });
    fs.linkSync(live, target);
    fsyncDir(dir.dir);
  }
  if (!done) {
    const index = { v: SEGMENT_INDEX_VERSION, segments: [...segments, segment] };
    writeAtomic(dir.dir, SEGMENT_INDEX, JSON.stringify(index, null, 1) + '\n', 0o600);
  }
  // The fresh live log replaces the old name in one rename: a reader sees one or the other.
  writeAtomic(auditDir.dir, LIVE, new Uint8Array(0), 0o600);
  return segment;
}

/**
 * Whether the live log is still the last segment's file (a rotation stopped before the new live
 * log was put in place): readers then take the live log as empty, and the next writer completes
 * the rotation.
 */
export function liveIsLastSegment(auditDir: Home, liveFd: number): boolean {
  const st = fs.fstatSync(liveFd);
  if (st.nlink < 2 || st.size === 0) return false;
  const segments = readSegments(auditDir);
  const last = segments[segments.length - 1];
  if (last === undefined) return false;
  try {
    const s = fs.lstatSync(path.join(auditDir.dir, SEGMENTS_DIR, last.file));
    return s.ino === st.ino && s.dev === st.dev;
  } catch {
    return false;
  }
}

/** Compresses every closed segment still stored as `.log` in `audit/segments`; returns their names. */
export function compressSegments(auditDir: Home): string[] {
  const dir = subdir(auditDir, SEGMENTS_DIR, { create: false });
  if (dir === null) return [];
  const out: string[] = [];
  for (const s of readSegments(auditDir)) {
    const plain = path.join(dir.dir, s.file);
    if (!fs.existsSync(plain)) continue;
    const content = segmentContent(auditDir, s);
    writeAtomic(dir.dir, `${s.file}.gz`, gzipSegment(content), 0o600);
    fs.rmSync(plain);
    out.push(`${s.file}.gz`);
  }
  if (out.length > 0) fsyncDir(dir.dir);
  return out;
}

/** Uncompressed bytes per gzip member of a segment `compressSegments` writes. */
export const GZ_MEMBER_BYTES = 1024 * 1024;
/** The gzip extra subfield of each member: ID "TP", version 1, member size, content size. */
const GZ_SUBFIELD = [0x54, 0x50];
const GZ_SUBFIELD_VERSION = 1;
const GZ_HEADER = 10 + 2 + 4 + 9;

/**
 * A segment as gzip (docs/formats.md#audit-segments): one gzip member per `GZ_MEMBER_BYTES` of
 * content, each saying in its header how long it is and how much it holds, so that a reader finds
 * the member that holds an offset by reading the headers alone and inflates only that member
 * (a proof of one entry used to inflate the whole segment). Any gzip reader inflates the whole.
 */
export function gzipSegment(content: Uint8Array): Buffer {
  const members: Buffer[] = [];
  for (let at = 0; at < content.length; at += GZ_MEMBER_BYTES) {
    const chunk = content.subarray(at, Math.min(content.length, at + GZ_MEMBER_BYTES));
    // node:zlib writes a 10-byte header without flags: the deflate data and trailer follow it.
    const body = gzipSync(chunk).subarray(10);
    const head = Buffer.alloc(GZ_HEADER);
    head.set([0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 255]);
    head.writeUInt16LE(13, 10);
    head.set([...GZ_SUBFIELD], 12);
    head.writeUInt16LE(9, 14);
    head[16] = GZ_SUBFIELD_VERSION;
    head.writeUInt32LE(GZ_HEADER + body.length, 17);
    head.writeUInt32LE(chunk.length, 21);
    members.push(head, body);
  }
  return Buffer.concat(members);
}

/** One gzip member of a compressed segment: where it is in the file and what it holds. */
interface GzMember {
  at: number;
  size: number;
  from: number;
  bytes: number;
}

/**
 * The members of a segment written by `gzipSegment`, from their headers; null when the file is
 * not one (a segment gzipped by hand, or headers that do not add up to the index's size), which
 * the caller then reads whole, checked.
 */
function _gzMembers(fd: number, s: Segment): GzMember[] | null {
  const fileSize = fs.fstatSync(fd).size;
  const out: GzMember[] = [];
  let at = 0;
  let from = 0;
  while (at < fileSize) {
    const h = _preadFd(fd, at, GZ_HEADER);
    const ok = h.length === GZ_HEADER && h[0] === 0x1f && h[1] === 0x8b && h[2] === 8 &&
      h[3] === 4 && h.readUInt16LE(10) === 13 && h[12] === GZ_SUBFIELD[0] &&
      h[13] === GZ_SUBFIELD[1] && h.readUInt16LE(14) === 9 && h[16] === GZ_SUBFIELD_VERSION;
    if (!ok) return null;
    const size = h.readUInt32LE(17);
    const bytes = h.readUInt32LE(21);
    if (size <= GZ_HEADER || at + size > fileSize) return null;
    out.push({ at, size, from, bytes });
    at += size;
    from += bytes;
  }
  return from === s.bytes ? out : null;
}

/**
 * The whole trail as one byte range (segments, then the live log), read at any offset: the tree
 * files (tlog/tree_store.ts) and the ship cursor keep offsets in it. A segment read is checked
 * against the index (and a compressed one inflated) whole, once; with `check: false` a plain
 * segment is read in place instead, and a compressed one member by member (`gzipSegment`), for a
 * reader that checks what it reads by other means.
 */
export class TrailReader {
  readonly base: number;
  #auditDir: Home;
  #segments: readonly Segment[];
  #search: readonly string[];
  #live: number | null;
  #check: boolean;
  #cached: { i: number; bytes: Buffer } | null = null;
  /** Segment files opened for reading in place; `members` null for a plain one. */
  #open = new Map<number, { fd: number; path: string; members: GzMember[] | null } | null>();
  #member: { i: number; k: number; bytes: Buffer } | null = null;

  constructor(
    auditDir: Home,
    live: number | null,
    options: { segments?: readonly Segment[]; search?: readonly string[]; check?: boolean } = {},
  ) {
    this.#auditDir = auditDir;
    this.#segments = options.segments ?? readSegments(auditDir);
    this.#search = options.search ?? [];
    this.#live = live;
    this.#check = options.check ?? true;
    this.base = segmentsBytes(this.#segments);
  }

  /** Closes the segment files it opened (not the live log, which is the caller's). */
  close(): void {
    for (const f of this.#open.values()) if (f !== null) fs.closeSync(f.fd);
    this.#open.clear();
    this.#member = null;
  }

  pread(at: number, n: number): Buffer {
    const parts: Buffer[] = [];
    let start = 0;
    for (let i = 0; i < this.#segments.length && n > 0; i++) {
      const s = this.#segments[i]!;
      if (at < start + s.bytes) {
        const from = at - start;
        const f = this.#check ? null : this.#inPlace(i);
        const part = f === null
          ? this.#segment(i).subarray(from, Math.min(s.bytes, from + n))
          : f.members === null
          ? _preadFd(f.fd, from, Math.min(s.bytes - from, n))
          : this.#fromMembers(i, f, from, n);
        if (part.length === 0) break;
        parts.push(part);
        at += part.length;
        n -= part.length;
      }
      start += s.bytes;
    }
    if (n > 0 && this.#live !== null && at >= this.base) {
      parts.push(_preadFd(this.#live, at - this.base, n));
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }

  /**
   * A segment's file, opened once, to read in place: a plain one, or one compressed by
   * `gzipSegment` (its members listed). Null for any other gzip file, which is read whole.
   */
  #inPlace(i: number): { fd: number; path: string; members: GzMember[] | null } | null {
    if (this.#open.has(i)) return this.#open.get(i)!;
    const s = this.#segments[i]!;
    const found = findSegment(this.#auditDir, s, this.#search);
    if (found === null) throw _missing(s, this.#search);
    const fd = fs.openSync(found.path, READ_FLAGS);
    let f: { fd: number; path: string; members: GzMember[] | null } | null = {
      fd,
      path: found.path,
      members: null,
    };
    if (found.gz) {
      f.members = _gzMembers(fd, s);
      if (f.members === null) {
        fs.closeSync(fd);
        f = null;
      }
    }
    this.#open.set(i, f);
    return f;
  }

  /** Up to `n` bytes at `from` of a compressed segment, inflating only the members that hold them. */
  #fromMembers(
    i: number,
    f: { fd: number; path: string; members: GzMember[] | null },
    from: number,
    n: number,
  ): Buffer {
    const members = f.members!;
    const parts: Buffer[] = [];
    // The member holding `from`, by bisection on where each one starts.
    let lo = 0;
    let hi = members.length - 1;
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      if (members[mid]!.from <= from) lo = mid;
      else hi = mid - 1;
    }
    for (let k = lo; k < members.length && n > 0; k++) {
      const m = members[k]!;
      if (this.#member?.i !== i || this.#member.k !== k) {
        let bytes: Buffer;
        try {
          bytes = gunzipSync(_preadFd(f.fd, m.at, m.size));
        } catch {
          throw _altered(f.path, `its gzip member ${k + 1} cannot be inflated`);
        }
        if (bytes.length !== m.bytes) {
          throw _altered(f.path, `its gzip member ${k + 1} does not hold what its header says`);
        }
        this.#member = { i, k, bytes };
      }
      const part = this.#member.bytes.subarray(from - m.from, Math.min(m.bytes, from - m.from + n));
      parts.push(part);
      from += part.length;
      n -= part.length;
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }

  #segment(i: number): Buffer {
    if (this.#cached?.i !== i) {
      this.#cached = {
        i,
        bytes: segmentContent(this.#auditDir, this.#segments[i]!, this.#search),
      };
    }
    return this.#cached.bytes;
  }
}

function _preadFd(fd: number, at: number, n: number): Buffer {
  const b = Buffer.alloc(n);
  let read = 0;
  while (read < n) {
    const got = fs.readSync(fd, b, read, n - read, at + read);
    if (got === 0) break;
    read += got;
  }
  return b.subarray(0, read);
}

function _seq(line: string): number {
  const m = /^\{"v":\d+,"seq":(\d+),/.exec(line);
  if (m === null) {
    throw new TpError('audit', 'audit_tail_malformed', 'an audit line has no sequence number', {
      hint: 'run `trust-protocol audit verify` to see what happened to the log',
    });
  }
  return Number(m[1]);
}

/** The entry digest (audit.ts `lineDigest`), kept here so this module does not import audit.ts. */
function _digest(line: string): string {
  const at = line.lastIndexOf(',"mac":');
  return hash('sha256', at < 0 ? line : line.slice(0, at), 'hex');
}

function _sameFile(a: string, b: string): boolean {
  try {
    const x = fs.lstatSync(a);
    const y = fs.lstatSync(b);
    return x.ino === y.ino && x.dev === y.dev;
  } catch {
    return false;
  }
}

function _badIndex(why: string): TpError {
  return new TpError(
    'verification',
    'segment_index',
    `the audit segment index (audit/segments/index.json) is damaged: ${why}`,
    { hint: 'restore it from a backup; `trust-protocol audit verify` says more' },
  );
}

function _missing(s: Segment, search: readonly string[]): TpError {
  return new TpError(
    'verification',
    'segment_missing',
    `audit segment ${s.file} (entries ${s.first_seq} to ${s.last_seq}) is missing` +
      ` from audit/segments${search.length > 0 ? ` and ${search.join(', ')}` : ''}`,
    { hint: 'restore it, or name the directory that holds it with --segments DIR' },
  );
}

function _altered(file: string, why: string): TpError {
  return new TpError(
    'verification',
    'segment_altered',
    `audit segment ${path.basename(file)} was altered: ${why}`,
    { hint: `restore ${file} from a backup` },
  );
}
