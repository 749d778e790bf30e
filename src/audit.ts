/**
 * The audit trail (`audit/audit.log`, format in docs/formats.md#audit): one JSON line per event,
 * fields in a fixed order with `prev` and `mac` last. An entry's digest is SHA-256 of its line up
 * to `,"mac":` (the "prefix"); the next entry's `prev` is that digest, and `mac` is HMAC-SHA256
 * of the digest under the audit key, or null when written without the password (a later entry
 * with a MAC seals it through the chain). Verification hashes raw bytes without parsing JSON.
 * An append is durable (fsync) before it returns; if it cannot be made durable the caller must not
 * perform the action it records (exit 6).
 */
import { Buffer } from 'node:buffer';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { hash } from 'node:crypto';
import { type DigestHmac, digestHmacer, hmacSha256Hex } from './crypto/hmac.ts';
import {
  type AuditKeyring,
  copyMacKey,
  currentKey,
  type MacKey,
  type SeqHmac,
  seqHmacer,
  wipeMacKey,
} from './audit_keys.ts';
import { promisify } from 'node:util';
import { secretEqual } from './bytes.ts';
import { integrity, TpError } from './errors.ts';
import { type EventName, UNKEYED_EVENTS } from './events.ts';
import {
  fsyncDir,
  type Home,
  ioErrorCode,
  openStateFile,
  READ_FLAGS,
  subdir,
  withLock,
} from './home.ts';
import {
  compressSegments,
  findSegment,
  liveIsLastSegment,
  readSegments,
  rotateLive,
  type Segment,
  segmentContent,
  segmentLimit,
  TrailReader,
} from './audit_segments.ts';
import { TreeStore } from './tlog/tree_store.ts';
import type { StoreAppend, StoreSync } from './store/sync.ts';

export const AUDIT_DIR = 'audit';
export const AUDIT_FILE = 'audit.log';
export const AUDIT_VERSION = 1;
export const GENESIS = '0'.repeat(64);

export type Outcome = 'ok' | 'allowed' | 'denied' | 'error';

export interface Actor {
  type: 'operator' | 'agent' | 'anyone' | 'system';
  id?: string;
}

export interface AuditEvent {
  event: EventName;
  actor: Actor;
  outcome: Outcome;
  data: Record<string, unknown>;
}

export interface Appended {
  seq: number;
  hash: string;
}

/**
 * What a reader of the log says about an entry it returns (issue #14). `Authenticated`: its MAC
 * verified under the audit key, so a password holder wrote it. `Unverified`: read without the key,
 * or written with `"mac": null`, so anyone who can write the home could have written it. An
 * unverified entry may only narrow access (count a denial, place a brake); whatever grants, renews,
 * raises a score, resets a counter, clears an anomaly or proves the vault current takes
 * `Authenticated` entries, and says so in its parameter types.
 */
export type Authenticated<T> = T & { readonly authenticated: true };
export type Unverified<T> = T & { readonly authenticated: false };
export type Checked<T> = Authenticated<T> | Unverified<T>;

export function authenticatedOnly<T>(entries: readonly Checked<T>[]): Array<Authenticated<T>> {
  return entries.filter((e): e is Authenticated<T> => e.authenticated);
}

/** Whether a line's event (read from the fixed field order) is one of `UNKEYED_EVENTS`. */
export function mayLackMac(line: string): boolean {
  const named = LEADING_FIELDS.exec(line);
  return named !== null && UNKEYED_EVENTS.test(named[2]!);
}

export function auditHome(home: Home): Home {
  return { dir: path.join(home.dir, AUDIT_DIR) };
}

/**
 * The whole log, closed segments then the live log (empty when there is none yet), read with the
 * state-file rules (no symlinks).
 */
export function readAuditLog(home: Home, options: TrailOptions = {}): Uint8Array {
  const chunks: Uint8Array[] = [];
  for (const chunk of readLogChunks(home, options)) chunks.push(Buffer.from(chunk));
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
}

/** Where readers of the whole trail also look for closed segments moved out of the home. */
export interface TrailOptions {
  /** Directories searched after `audit/segments` (`--segments DIR`). */
  segments?: readonly string[];
}

/** Bytes read per block by the forward readers: memory stays this size whatever the log's length. */
const CHUNK = 1024 * 1024;

/**
 * The log as it was when opened, oldest bytes first: every closed segment (checked against the
 * segment index: a missing or altered one throws, naming its file), then the live log, in blocks
 * of at most 1 MiB (issue #16: a reader of the whole trail holds one block, not the file; a
 * compressed segment is inflated whole). Each block is a view of one reused buffer, valid until
 * the next is asked for. Nothing when there is no log yet.
 */
export function* readLogChunks(home: Home, options: TrailOptions = {}): Generator<Uint8Array> {
  const dir = subdir(home, AUDIT_DIR, { create: false });
  if (dir === null) return;
  for (const segment of readSegments(dir)) {
    const bytes = segmentContent(dir, segment, options.segments);
    for (let pos = 0; pos < bytes.length; pos += CHUNK) yield bytes.subarray(pos, pos + CHUNK);
  }
  const fd = _openForReading(home);
  if (fd === null) return;
  try {
    if (liveIsLastSegment(dir, fd)) return;
    const size = fs.fstatSync(fd).size;
    const buf = Buffer.allocUnsafe(Math.min(CHUNK, Math.max(size, 1)));
    for (let pos = 0; pos < size;) {
      const n = fs.readSync(fd, buf, 0, Math.min(buf.length, size - pos), pos);
      if (n === 0) return;
      pos += n;
      yield buf.subarray(0, n);
    }
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Every line of the log, oldest first, without the newline: what splitting the whole file on
 * newlines gives (blank lines included, and a torn tail as the last line), read block by block.
 */
export function* readLogLines(home: Home, options: TrailOptions = {}): Generator<string> {
  let carry: Buffer | null = null;
  for (const chunk of readLogChunks(home, options)) {
    const b = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    let start = 0;
    for (let nl = b.indexOf(0x0a); nl >= 0; nl = b.indexOf(0x0a, start)) {
      if (carry === null) yield b.toString('utf8', start, nl);
      else {
        yield Buffer.concat([carry, b.subarray(start, nl)]).toString('utf8');
        carry = null;
      }
      start = nl + 1;
    }
    // The reused block is overwritten by the next read: keep a copy of the unfinished line.
    if (start < b.length) {
      carry = carry === null
        ? Buffer.from(b.subarray(start))
        : Buffer.concat([carry, b.subarray(start)]);
    }
  }
  if (carry !== null) yield carry.toString('utf8');
}

/**
 * The log's lines newest first (the same lines `readLogLines` gives, reversed), reading backwards
 * from the end in blocks, so that a reader of the newest entries pays for those only: the live
 * log, then the closed segments, newest first.
 */
export function* readLogLinesBackward(home: Home): Generator<string> {
  const fd = _openForReading(home);
  try {
    const end = fd === null ? 0 : fs.fstatSync(fd).size;
    // `_linesBackward` yields the empty string after a final newline first; splitting does too.
    yield* _trailBackward(auditHome(home), fd, end);
  } finally {
    if (fd !== null) fs.closeSync(fd);
  }
}

/**
 * The live log's size in bytes and the trail's last complete line (null when it has none), read
 * from the end: right after a rotation the live log is empty and the last line is the last
 * segment's.
 */
export function logTail(home: Home): { bytes: number; last: string | null } {
  const fd = _openForReading(home);
  if (fd === null) return { bytes: 0, last: _segmentsTail(auditHome(home)) };
  try {
    const dir = auditHome(home);
    if (liveIsLastSegment(dir, fd)) return { bytes: 0, last: _segmentsTail(dir) };
    const last = _readTail(fd).last;
    return { bytes: fs.fstatSync(fd).size, last: last ?? _segmentsTail(dir) };
  } finally {
    fs.closeSync(fd);
  }
}

/** The last line of the last closed segment, or null when there is none. */
function _segmentsTail(auditDir: Home): string | null {
  if (!fs.existsSync(auditDir.dir)) return null;
  for (const line of _segmentsBackward(auditDir)) if (line !== '') return line;
  return null;
}

/**
 * The lines of the closed segments, newest first: a plain segment is read backwards in blocks (a
 * reader that stops early pays for what it read), a compressed one inflated whole. Segments read
 * this way are not hashed against the index (`audit verify` does that); a missing one throws.
 */
function* _segmentsBackward(auditDir: Home): Generator<string> {
  const segments = readSegments(auditDir);
  for (let i = segments.length - 1; i >= 0; i--) {
    const s = segments[i] as Segment;
    const found = findSegment(auditDir, s);
    if (found === null || found.gz) {
      const lines = segmentContent(auditDir, s).toString('utf8').split('\n');
      for (let j = lines.length - 1; j >= 0; j--) if (lines[j] !== '') yield lines[j] as string;
      continue;
    }
    const fd = fs.openSync(found.path, READ_FLAGS);
    try {
      for (const line of _linesBackward(fd, fs.fstatSync(fd).size)) if (line !== '') yield line;
    } finally {
      fs.closeSync(fd);
    }
  }
}

/** The lines of the live log before byte `end` (newest first), then those of the segments. */
function* _trailBackward(auditDir: Home, liveFd: number | null, end: number): Generator<string> {
  if (liveFd !== null && !liveIsLastSegment(auditDir, liveFd)) yield* _linesBackward(liveFd, end);
  yield* _segmentsBackward(auditDir);
}

/** The log opened with `readAuditLog`'s checks (those of every state file); null when absent. */
function _openForReading(home: Home): number | null {
  const dir = subdir(home, AUDIT_DIR, { create: false });
  return dir === null ? null : openStateFile(dir, AUDIT_FILE);
}

/** Characters JSON.stringify leaves raw that a terminal or editor may act on (C1, bidi, separators). */
const UNSAFE = /[\u007f-\u009f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

function _json(value: unknown): string {
  return JSON.stringify(value).replace(
    UNSAFE,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

export const MAC_MARKER = ',"mac":';
/** seq and event name, read from the fixed field order without parsing the line. */
const LEADING_FIELDS = /^\{"v":\d+,"seq":(\d+),"ts":"[^"\\]*","event":"([^"\\]*)"/;

/** Serialises an entry in the fixed field order; the digest and MAC cover the prefix. */
export function formatEntry(
  e: AuditEvent & { seq: number; ts: string; prev: string },
  macKey: Uint8Array | null,
): { line: string; digest: string } {
  return _format(e, macKey === null ? null : (digest) => digestMac(macKey, digest));
}

/**
 * `formatEntry` for many entries under one key (a writer of a large log): the keyed hasher is set
 * up once instead of per entry.
 */
export function entryFormatter(
  macKey: Uint8Array,
): (e: AuditEvent & { seq: number; ts: string; prev: string }) => { line: string; digest: string } {
  const mac = digestHmacer(macKey);
  return (e) => _format(e, mac);
}

function _format(
  e: AuditEvent & { seq: number; ts: string; prev: string },
  mac: ((digestHex: string) => string) | null,
): { line: string; digest: string } {
  const prefix = `{"v":${AUDIT_VERSION},"seq":${e.seq},"ts":${_json(e.ts)},` +
    `"event":${_json(e.event)},"actor":${_json(e.actor)},` +
    `"outcome":${_json(e.outcome)},"data":${_json(e.data)},"prev":"${e.prev}"`;
  const digest = prefixDigest(prefix);
  return { line: `${prefix}${MAC_MARKER}${mac === null ? 'null' : `"${mac(digest)}"`}}`, digest };
}

export function prefixDigest(prefix: string | Uint8Array): string {
  return hash('sha256', prefix, 'hex');
}

export function digestMac(macKey: Uint8Array, digestHex: string): string {
  return hmacSha256Hex(macKey, Buffer.from(digestHex, 'hex'));
}

/** The digest of a complete line (the part before `,"mac":`), or null when it has no marker. */
export function lineDigest(line: string): string | null {
  const at = line.lastIndexOf(MAC_MARKER);
  return at < 0 ? null : prefixDigest(line.slice(0, at));
}

/** Reads the last complete line of the log; reports a torn tail (bytes after the last newline). */
function _readTail(fd: number): { last: string | null; validLength: number; torn: boolean } {
  const size = fs.fstatSync(fd).size;
  if (size === 0) return { last: null, validLength: 0, torn: false };
  for (let window = 4096;; window *= 4) {
    const start = Math.max(0, size - window);
    const buf = Buffer.alloc(size - start);
    fs.readSync(fd, buf, 0, buf.length, start);
    const end = buf.lastIndexOf(0x0a);
    if (end < 0) {
      if (start === 0) return { last: null, validLength: 0, torn: true };
      continue;
    }
    const begin = end === 0 ? -1 : buf.lastIndexOf(0x0a, end - 1);
    if (begin < 0 && start > 0) continue;
    const validLength = start + end + 1;
    return {
      last: buf.subarray(begin + 1, end).toString('utf8'),
      validLength,
      torn: validLength !== size,
    };
  }
}

/**
 * Authenticated entries newer than `since`, newest first, reading the log backwards in blocks.
 * Only an authenticated entry ends the scan, and a line whose MAC is wrong throws: lines appended
 * or edited by hand (no MAC, a broken one, an old timestamp) can neither hide nor fake entries.
 */
function _readRecent(
  auditDir: Home,
  fd: number,
  end: number,
  since: string,
  macKey: MacKey,
): Array<Authenticated<LogEntry>> {
  const out: Array<Authenticated<LogEntry>> = [];
  const mac = seqHmacer(macKey);
  const chain = new ChainBackward();
  try {
    // Into the segments too: a rotation must not reset a rate limit.
    for (const line of _trailBackward(auditDir, fd, end)) {
      if (line === '') continue;
      chain.link(line);
      const entry = _readEntry(line, mac);
      if (entry === null || !entry.authenticated) continue;
      if (entry.ts < since) return out;
      out.push(entry);
    }
    chain.atStart();
    return out;
  } finally {
    mac.wipe();
  }
}

function _recentEntries(
  home: Home,
  macKey: MacKey,
  since: Date,
): Array<Authenticated<LogEntry>> {
  const dir = subdir(home, AUDIT_DIR, { create: false });
  if (dir === null) return [];
  let fd: number;
  try {
    fd = fs.openSync(
      path.join(dir.dir, AUDIT_FILE),
      fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK,
    );
  } catch (e) {
    if ((e as { code?: string }).code === 'ENOENT') return [];
    throw e;
  }
  try {
    return _readRecent(dir, fd, _readTail(fd).validLength, since.toISOString(), macKey);
  } finally {
    fs.closeSync(fd);
  }
}

/** `FileAuditLog.entriesAfter` without a follower: reads the log back from its end. */
function _scanEntriesAfter(
  home: Home,
  macKey: MacKey | null,
  afterSeq: number,
  events: RegExp | undefined,
): Array<Checked<LogEntry>> {
  const fd = _openLog(home);
  const out: Array<Checked<LogEntry>> = [];
  const mac = macKey === null ? null : seqHmacer(macKey);
  try {
    const end = fd === null ? 0 : _completeEnd(fd);
    // With the key (what proves the vault current), the lines read must also chain: an entry
    // deleted whole is as much a hidden change as one whose MAC was broken. Without it the scan
    // only finds brakes, which narrow.
    const chain = mac === null ? null : new ChainBackward();
    for (const line of _trailBackward(auditHome(home), fd, end)) {
      if (line === '') continue;
      chain?.link(line);
      const named = events === undefined ? null : LEADING_FIELDS.exec(line);
      if (named !== null && Number(named[1]) > afterSeq && !events!.test(named[2] as string)) {
        if (mac !== null) _authenticated(line, mac);
        continue;
      }
      const entry = _readEntry(line, mac);
      if (entry === null) continue;
      if (entry.seq > afterSeq) out.push(entry);
      else if (mac === null || entry.authenticated) return out;
    }
    chain?.atStart();
    return out;
  } finally {
    mac?.wipe();
    if (fd !== null) fs.closeSync(fd);
  }
}

/** The end of the last complete line: a torn tail (a crash mid-write) is nobody's entry yet. */
function _completeEnd(fd: number): number {
  const size = fs.fstatSync(fd).size;
  if (size === 0) return 0;
  const last = Buffer.alloc(1);
  fs.readSync(fd, last, 0, 1, size - 1);
  return last[0] === 0x0a ? size : _readTail(fd).validLength;
}

/** The log opened for reading (no symlinks), or null when there is none yet. */
function _openLog(home: Home): number | null {
  const dir = subdir(home, AUDIT_DIR, { create: false });
  if (dir === null) return null;
  let fd: number;
  try {
    fd = fs.openSync(path.join(dir.dir, AUDIT_FILE), READ_FLAGS);
  } catch (e) {
    if (ioErrorCode(e) === 'ENOENT') return null;
    throw _auditError(e);
  }
  return _regularFile(fd, path.join(dir.dir, AUDIT_FILE));
}

/**
 * One home's audit log, as this process sees it: its writers share one group-commit queue, and
 * the digests of what it wrote last; a long-lived process may follow it. Open it once per process
 * and home, through `openState` (src/state.ts), so that every writer shares that queue.
 */
export class FileAuditLog {
  readonly home: Home;
  /** Appends waiting for the batch being written (null: none is being written). */
  #queue: Pending[] | null = null;
  /**
   * The digests of the entries this process wrote last, and where its last batch ended. While
   * the log still ends there with that entry (nobody else appended or rewrote it), a guard's
   * `digestAt` reads them from here instead of scanning the log backwards.
   */
  #written: Written | null = null;
  #follower: LogFollower | null = null;
  /** The Merkle tree over the entries (tlog/tree_store.ts), kept up to date by each batch. */
  #tree: TreeStore | null;

  /** The team store this home is kept in step with (src/store/sync.ts); null: the files alone. */
  readonly sync: StoreSync | null;

  /** `tree: false` only for the benchmark that measures what the tree costs. */
  constructor(home: Home, options: { tree?: boolean; sync?: StoreSync | null } = {}) {
    this.home = home;
    this.#tree = options.tree === false ? null : new TreeStore();
    this.sync = options.sync ?? null;
  }

  /**
   * Appends under the audit lock: read the tail, chain, write, fsync. Appends made while another
   * is being written wait and then go out together (group commit: one lock, one fsync for the
   * batch), each still resolved only once durable. A torn tail left by a crash is cut off and the
   * repair itself is recorded, so the chain stays verifiable.
   */
  writer(options: AuditWriterOptions): AuditWriter {
    const clock = options.clock ?? (() => new Date());
    return {
      append: (events, appendOptions = {}) => {
        const keyed = options.macKey === null
          ? events.find((e) => !UNKEYED_EVENTS.test(e.event))
          : undefined;
        if (keyed !== undefined) {
          return Promise.reject(
            new TpError('internal', 'audit_needs_key', `${keyed.event} is written only with a MAC`),
          );
        }
        return new Promise<Appended>((resolve, reject) => {
          const pending: Pending = {
            events,
            macKey: options.macKey,
            guard: appendOptions.guard,
            clock,
            resolve,
            reject,
          };
          if (this.#queue !== null) {
            this.#queue.push(pending);
            return;
          }
          this.#queue = [pending];
          void this.#drain();
        });
      },
    };
  }

  async #drain(): Promise<void> {
    const dir = auditHome(this.home);
    const queue = this.#queue as Pending[];
    while (queue.length > 0) {
      const batch = queue.splice(0);
      // Checked once a batch, not once an append (its lstat calls were a seventh of the CPU).
      try {
        subdir(this.home, AUDIT_DIR, { create: true });
      } catch (e) {
        const refused = e instanceof TpError && e.kind === 'integrity' ? e : _auditError(e);
        for (const p of batch) p.reject(refused);
        continue;
      }
      try {
        await withLock(dir, 'audit', () => this.#appendBatch(dir, batch), { timeoutMs: 30_000 });
      } catch (e) {
        for (const p of batch) p.reject(_auditError(e));
      }
    }
    this.#queue = null;
  }

  async #appendBatch(dir: Home, batch: readonly Pending[]): Promise<void> {
    // On the team store the batch is numbered and chained under the store's lock, after what
    // other instances appended was brought in, and is in the store before it is in the file.
    const stored = this.sync === null ? null : await this.sync.appendLock(dir);
    try {
      await _appendBatch(
        dir,
        batch,
        {
          get: () => this.#written,
          set: (w) => this.#written = w,
        },
        this.#tree,
        stored,
      );
    } finally {
      await stored?.release();
    }
  }

  /**
   * The entries numbered above `afterSeq`, newest first. With a key, every line read is checked:
   * a wrong MAC (or a null one on an event that is always keyed) throws, and only an
   * authenticated entry at or below `afterSeq` ends the scan; without one, every readable entry,
   * unverified. `events` keeps only entries whose event name it matches; the others above
   * `afterSeq` are skipped unparsed (their name is read from the fixed field order), which keeps
   * frequent scans cheap, but with a key their MAC is still checked: renaming an entry's event
   * must not hide it.
   */
  entriesAfter(macKey: null, afterSeq: number, events?: RegExp): Array<Unverified<LogEntry>>;
  entriesAfter(
    macKey: MacKey | null,
    afterSeq: number,
    events?: RegExp,
  ): Array<Checked<LogEntry>>;
  entriesAfter(
    macKey: MacKey | null,
    afterSeq: number,
    events?: RegExp,
  ): Array<Checked<LogEntry>> {
    if (this.#follower !== null && events !== undefined) {
      const found = this.#follower.entriesAfter(macKey, afterSeq, events);
      if (found !== null) return found;
    }
    return _scanEntriesAfter(this.home, macKey, afterSeq, events);
  }

  /**
   * Authenticated entries newer than `since`, newest first, read without the audit lock: a look
   * at the log for a read-only answer (serve's /v1/check and /v1/agent/status), never for a
   * decision that lets a request through (the rate limit itself is counted under the lock,
   * AppendGuard).
   */
  recent(macKey: MacKey, since: Date): Array<Authenticated<LogEntry>> {
    return _recentEntries(this.home, macKey, since);
  }

  /**
   * For a long-lived process (serve), which asks `entriesAfter` the same questions before every
   * request (brakes activated, vault changes since the vault's head): from now on such a query
   * for one of `events` (the same RegExp objects) reads only what was appended since the last
   * one. Returns the function that stops following.
   *
   * The follower remembers the lines of those events (and any line whose event cannot be read
   * without parsing) above the first head it was asked about, and reads the log forward from
   * where it stopped; a log that no longer continues from there (cut, rewritten) is scanned
   * again, and so is a query about an older head. Its answers hold every entry a scan would give;
   * on a log whose numbering goes backwards (only a tampered one) possibly more, never fewer.
   */
  follow(macKey: MacKey, events: readonly RegExp[]): () => void {
    const follower = new LogFollower(this.home, macKey, events);
    this.#follower?.close();
    this.#follower = follower;
    return () => {
      if (this.#follower === follower) this.#follower = null;
      follower.close();
    };
  }
}

interface FollowedLine {
  seq: number;
  /** Null when the event name cannot be read from the fixed field order. */
  event: string | null;
  line: string;
}

class LogFollower {
  #home: Home;
  #mac: SeqHmac;
  #key: AuditKeyring;
  #events: readonly RegExp[];
  #cursor: LogCursor | null = null;
  /** The log, kept open between queries, and its path (to notice a replaced file). */
  #fd: number | null = null;
  #path: string;
  /** The followed lines numbered above `#from`, in log order. */
  #lines: FollowedLine[] = [];
  #from = 0;

  constructor(home: Home, macKey: MacKey, events: readonly RegExp[]) {
    this.#home = home;
    this.#path = path.join(home.dir, AUDIT_DIR, AUDIT_FILE);
    this.#key = copyMacKey(macKey);
    this.#mac = seqHmacer(this.#key);
    this.#events = events;
  }

  close(): void {
    wipeMacKey(this.#key);
    this.#mac.wipe();
    this.#cursor = null;
    this.#lines = [];
    this.#closeLog();
  }

  #closeLog(): void {
    if (this.#fd !== null) fs.closeSync(this.#fd);
    this.#fd = null;
  }

  /**
   * Null when this query is not one it follows, or the log cannot be followed right now. Throws,
   * as the full scan does, when a line it reads carries a wrong MAC.
   */
  entriesAfter(
    macKey: MacKey | null,
    afterSeq: number,
    events: RegExp,
  ): Array<Checked<LogEntry>> | null {
    if (!this.#events.includes(events)) return null;
    const current = this.#cursor !== null && afterSeq >= this.#from && this.#advance();
    if (!current && !this.#start(afterSeq)) return null;
    const mac = macKey === null ? null : seqHmacer(macKey);
    const out: Array<Checked<LogEntry>> = [];
    try {
      for (let i = this.#lines.length - 1; i >= 0; i--) {
        const { seq, event, line } = this.#lines[i]!;
        if (seq <= afterSeq || (event !== null && !events.test(event))) continue;
        const entry = _readEntry(line, mac);
        if (entry !== null && entry.seq > afterSeq) out.push(entry);
      }
      return out;
    } finally {
      mac?.wipe();
    }
  }

  /** Lines read are checked under the key before any is kept, also those of other events. */
  #keepAll(lines: readonly string[]): void {
    for (const line of lines) if (line !== '') _authenticated(line, this.#mac);
    for (const line of lines) if (line !== '') this.#keep(line);
  }

  #keep(line: string): void {
    const named = LEADING_FIELDS.exec(line);
    if (named !== null && !this.#events.some((re) => re.test(named[2]!))) return;
    let seq = named === null ? NaN : Number(named[1]);
    if (named === null) {
      try {
        seq = (JSON.parse(line) as { seq?: unknown }).seq as number;
      } catch {
        return; // unreadable: entriesAfter skips it too
      }
    }
    if (typeof seq === 'number' && seq > this.#from) {
      this.#lines.push({ seq, event: named?.[2] ?? null, line });
    }
  }

  /** Reads what was appended since the cursor; false when the log no longer continues from it. */
  #advance(): boolean {
    if (this.#fd === null) return false;
    let atPath: fs.Stats;
    try {
      atPath = fs.lstatSync(this.#path);
    } catch {
      return false;
    }
    const held = fs.fstatSync(this.#fd);
    if (atPath.ino !== held.ino || atPath.dev !== held.dev) return false;
    const read = _linesFrom(this.#fd, this.#cursor, held.size);
    if (read === null || read.cursor === null) return false;
    this.#keepAll(read.lines);
    this.#cursor = read.cursor;
    return true;
  }

  /**
   * Scans back from the end of the log as a keyed `entriesAfter(afterSeq)` would (to the last
   * authentic entry at or below it) and sets the cursor at the end. False when the log is empty
   * or ends in a torn line (the next append repairs it).
   */
  #start(afterSeq: number): boolean {
    this.#cursor = null;
    this.#lines = [];
    this.#from = afterSeq;
    this.#closeLog();
    const fd = _openLog(this.#home);
    if (fd === null) return false;
    let keep = false;
    try {
      const tail = _readTail(fd);
      const digest = tail.last === null || tail.torn ? null : lineDigest(tail.last);
      if (digest === null) return false;
      const found: string[] = [];
      let reached = false;
      // As the keyed scan does: the lines read back must chain (an entry deleted whole is seen).
      const chain = new ChainBackward();
      for (const line of _linesBackward(fd, tail.validLength)) {
        if (line === '') continue;
        chain.link(line);
        const named = LEADING_FIELDS.exec(line);
        if (named !== null && Number(named[1]) > afterSeq) {
          found.push(line);
          continue;
        }
        const entry = _readEntry(line, this.#mac);
        if (entry !== null && entry.authenticated && entry.seq <= afterSeq) {
          reached = true;
          break;
        }
        found.push(line);
      }
      // The entries after `afterSeq` begin in a closed segment: the full scan reads them there.
      if (!reached && readSegments(auditHome(this.#home)).length > 0) return false;
      if (!reached) chain.atStart();
      this.#keepAll(found.reverse());
      this.#cursor = { offset: tail.validLength, digest };
      this.#fd = fd;
      keep = true;
      return true;
    } finally {
      if (!keep) fs.closeSync(fd);
    }
  }
}

/** Where a forward reader of the log stopped: after a complete line, and that line's digest. */
export interface LogCursor {
  offset: number;
  digest: string;
}

/**
 * The complete lines written after `cursor`, oldest first, and the cursor after them. Null when
 * the log no longer continues from the cursor (the next line's `prev` is not the cursor's digest,
 * or the log is shorter): it was cut or rewritten, and the caller reads it again from the start
 * (`cursor` null). Reads only the new bytes, so a reader that keeps up pays for what is new.
 */
export function readLogFrom(
  home: Home,
  cursor: LogCursor | null,
): { lines: string[]; cursor: LogCursor | null } | null {
  const dir = subdir(home, AUDIT_DIR, { create: false });
  const file = dir === null ? null : path.join(dir.dir, AUDIT_FILE);
  let fd: number;
  try {
    if (file === null) throw Object.assign(new Error('no audit directory'), { code: 'ENOENT' });
    fd = fs.openSync(file, READ_FLAGS);
  } catch (e) {
    if (ioErrorCode(e) !== 'ENOENT') throw _auditError(e);
    return cursor === null ? { lines: [], cursor: null } : null;
  }
  _regularFile(fd, file);
  try {
    return _linesFrom(fd, cursor, fs.fstatSync(fd).size) ??
      _acrossRotation(dir!, fd, cursor!);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * `readLogFrom` when the live log no longer continues from the cursor because it was closed into
 * a segment since: the rest of that segment (the old live log, byte for byte), then the new live
 * log. Null when that is not what happened (a cut or a rewrite), or after more than one rotation.
 */
function _acrossRotation(
  auditDir: Home,
  liveFd: number,
  cursor: LogCursor,
): { lines: string[]; cursor: LogCursor | null } | null {
  const segments = readSegments(auditDir);
  const last = segments[segments.length - 1];
  if (last === undefined || last.bytes < cursor.offset) return null;
  let content: Buffer;
  try {
    content = segmentContent(auditDir, last);
  } catch {
    return null;
  }
  const before = content.subarray(0, cursor.offset).toString('utf8');
  const lastBefore = before.slice(before.lastIndexOf('\n', before.length - 2) + 1, -1);
  if (!before.endsWith('\n') || lineDigest(lastBefore) !== cursor.digest) return null;
  const rest = content.subarray(cursor.offset).toString('utf8');
  const lines = rest === '' ? [] : rest.slice(0, -1).split('\n');
  const live = _linesFrom(
    liveFd,
    { offset: 0, digest: last.last_digest },
    fs.fstatSync(liveFd).size,
  );
  if (live === null) return null;
  // An empty live log: the next read goes on from its start, after the segment's last entry.
  return { lines: [...lines, ...live.lines], cursor: live.cursor };
}

/** `readLogFrom` on an open log of `size` bytes. */
function _linesFrom(
  fd: number,
  cursor: LogCursor | null,
  size: number,
): { lines: string[]; cursor: LogCursor | null } | null {
  const from = cursor?.offset ?? 0;
  if (size < from) return null;
  if (size === from) return { lines: [], cursor };
  const bytes = Buffer.alloc(size - from);
  let read = 0;
  while (read < bytes.length) {
    const n = fs.readSync(fd, bytes, read, bytes.length - read, from + read);
    if (n === 0) break;
    read += n;
  }
  const complete = bytes.lastIndexOf(0x0a, read - 1) + 1;
  if (complete === 0) return { lines: [], cursor };
  const lines = bytes.subarray(0, complete - 1).toString('utf8').split('\n');
  if (cursor !== null && _prevOf(lines[0]!) !== cursor.digest) return null;
  const digest = lineDigest(lines[lines.length - 1]!);
  // After a malformed last line there is nothing to continue from: start over next time.
  const next = digest === null ? null : { offset: from + complete, digest };
  return { lines, cursor: next };
}

/** The `prev` field of a line: the last one, just before the MAC. */
/**
 * Read back from the tail, each line must be the one the newer line's `prev` names, and the first
 * line of the trail must follow the genesis hash: every line is MAC-checked on its own, so without
 * this an entry deleted whole (say the requests a rate limit counts) would go unnoticed.
 */
class ChainBackward {
  /** The `prev` of the line read last (the next one read must have this digest). */
  #expect: string | null | undefined;

  link(line: string): void {
    if (this.#expect !== undefined && lineDigest(line) !== this.#expect) _chainBroken(line);
    this.#expect = _prevOf(line);
    if (this.#expect === null) _chainBroken(line);
  }

  atStart(): void {
    if (this.#expect !== undefined && this.#expect !== GENESIS) {
      throw integrity(
        'audit_forked',
        'the audit log no longer begins with its first entry: entries were cut from its start',
        'run `trust-protocol audit verify`; restore the log from a backup',
      );
    }
  }
}

function _chainBroken(line: string): never {
  const seq = LEADING_FIELDS.exec(line)?.[1] ?? '?';
  throw integrity(
    'audit_forked',
    `the audit log's chain is broken at entry ${seq}: entries were deleted, inserted or reordered`,
    'run `trust-protocol audit verify`; restore the log from a backup',
  );
}

function _prevOf(line: string): string | null {
  const at = line.lastIndexOf(',"prev":"');
  return at < 0 ? null : line.slice(at + 9, at + 9 + 64);
}

type Hmacer = SeqHmac;

/**
 * Whether a line is authenticated. With the key (`mac`): true when its MAC verifies, false when it
 * is null on one of `UNKEYED_EVENTS`; anything else (a wrong, cut or stripped MAC, no MAC field)
 * throws, because skipping it would let an edit hide what a password holder recorded. Without the
 * key every entry is unverified (false); null: not an entry.
 */
function _authenticated(line: string, mac: Hmacer | null): boolean | null {
  const at = line.lastIndexOf(MAC_MARKER);
  if (mac === null) return at < 0 ? null : false;
  const tail = at < 0 ? '' : line.slice(at + MAC_MARKER.length);
  if (tail === 'null}') {
    if (mayLackMac(line)) return false;
  } else if (at >= 0) {
    // After a rekey the key depends on the entry's number (src/audit_keys.ts).
    const seq = mac.single ? 0 : Number(/^\{"v":\d+,"seq":(\d+),/.exec(line)?.[1] ?? NaN);
    const want = `"${mac(prefixDigest(line.slice(0, at)), seq)}"}`;
    if (secretEqual(Buffer.from(tail, 'utf8'), Buffer.from(want, 'utf8'))) return true;
  }
  throw _macMismatch(line);
}

function _tailUnderKey(line: string, macKey: MacKey): void {
  const mac = seqHmacer(macKey);
  try {
    _authenticated(line, mac);
  } catch {
    throw integrity(
      'audit_mac_mismatch',
      "the last audit entry does not check under this process's audit key: the vault was rekeyed since it was unsealed, or the log was edited; nothing was appended",
      'run the command again (it unseals the current vault); if it fails again, run `trust-protocol audit verify`',
    );
  } finally {
    mac.wipe();
  }
}

function _macMismatch(line: string): TpError {
  const seq = /^\{"v":\d+,"seq":(\d+),/.exec(line)?.[1];
  return integrity(
    'audit_mac_mismatch',
    `audit entry ${seq ?? '(unnumbered)'} does not carry a valid MAC: it was edited or forged`,
    'run `trust-protocol audit verify` to see what happened to the log, then restore it from a backup',
  );
}

/** One entry of a complete line, saying whether it is authenticated; null for a blank line. */
function _readEntry(line: string, mac: Hmacer | null): Checked<LogEntry> | null {
  if (line === '') return null;
  const authenticated = _authenticated(line, mac);
  if (authenticated === null) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    return null;
  }
  const e = _fields(parsed);
  if (e === null) return null;
  // A fresh object: a forged line's own "authenticated" field never reaches a caller.
  return authenticated ? { ...e, authenticated: true } : { ...e, authenticated: false };
}

function _fields(p: unknown): LogEntry | null {
  if (typeof p !== 'object' || p === null) return null;
  const { seq, ts, event, actor, outcome, data } = p as Record<string, unknown>;
  if (typeof seq !== 'number' || typeof ts !== 'string' || typeof event !== 'string') return null;
  return {
    seq,
    ts,
    event,
    actor: typeof actor === 'object' && actor !== null ? actor as LogEntry['actor'] : {},
    outcome: typeof outcome === 'string' ? outcome : '',
    data: typeof data === 'object' && data !== null ? data as Record<string, unknown> : {},
  };
}

/**
 * Every entry of a whole log (bytes, or complete lines), oldest first, each saying whether it is
 * authenticated under `macKey`; a line whose MAC is wrong throws (integrity). A torn tail is
 * left out. For readers that judge the whole trail (renewal, the monitor).
 */
export function checkedEntries(
  log: Uint8Array | readonly string[],
  macKey: MacKey,
): Array<Checked<LogEntry>> {
  let lines: readonly string[];
  if (Array.isArray(log)) lines = log;
  else {
    const text = Buffer.from(log as Uint8Array).toString('utf8');
    lines = text.slice(0, text.lastIndexOf('\n') + 1).split('\n');
  }
  const mac = seqHmacer(macKey);
  const out: Array<Checked<LogEntry>> = [];
  try {
    for (const line of lines) {
      const entry = _readEntry(line, mac);
      if (entry !== null) out.push(entry);
    }
    return out;
  } finally {
    mac.wipe();
  }
}

/**
 * The digest of the entry numbered `seq`, scanning back from the end (into the segments);
 * null if there is none.
 */
function _digestAt(auditDir: Home, fd: number, end: number, seq: number): string | null {
  for (const line of _trailBackward(auditDir, fd, end)) {
    const m = /^\{"v":\d+,"seq":(\d+),/.exec(line);
    if (m === null) continue;
    const at = Number(m[1]);
    if (at === seq) return lineDigest(line);
    if (at < seq) return null;
  }
  return null;
}

/** The complete lines of the log before byte `end`, newest first, read backwards in blocks. */
function* _linesBackward(fd: number, end: number): Generator<string> {
  let carry = Buffer.alloc(0);
  // Most scans stop after a few lines: start small, then read larger blocks.
  let size = 4096;
  for (let pos = end; pos > 0; size = Math.min(size * 4, 256 * 1024)) {
    const start = Math.max(0, pos - size);
    const block = Buffer.alloc(pos - start);
    fs.readSync(fd, block, 0, block.length, start);
    const lines = Buffer.concat([block, carry]).toString('utf8').split('\n');
    carry = start === 0 ? Buffer.alloc(0) : Buffer.from(lines.shift() ?? '', 'utf8');
    for (let i = lines.length - 1; i >= 0; i--) yield lines[i] as string;
    pos = start;
  }
}

function _malformedTail(): never {
  throw new TpError(
    'audit',
    'audit_tail_malformed',
    'the last audit entry is malformed; new entries cannot be linked to it',
    {
      hint: 'run `trust-protocol audit verify` to see what happened to the log',
    },
  );
}

function _seqOf(line: string): number {
  const m = /^\{"v":\d+,"seq":(\d+),/.exec(line);
  return m === null ? _malformedTail() : Number(m[1]);
}

export interface RecentEntry {
  ts: string;
  event: string;
  data: Record<string, unknown>;
}

/** An entry as read back from the log (docs/formats.md#audit, without `v`, `prev` and `mac`). */
export interface LogEntry extends RecentEntry {
  seq: number;
  actor: { type?: string; id?: string };
  outcome: string;
}

/**
 * Runs under the audit lock before the events are written; throwing aborts the append. Lets a
 * rate limit count earlier entries and record the new one atomically across processes. `recent`
 * gives authenticated entries only (it needs the writer's key).
 */
export type AppendGuard = (
  recent: (since: Date) => Array<Authenticated<RecentEntry>>,
  tail: { seq: number; digestAt: (seq: number) => string | null },
) => void;

export interface AuditWriter {
  append(events: readonly AuditEvent[], options?: { guard?: AppendGuard }): Promise<Appended>;
}

export interface AuditWriterOptions {
  /** Entries are MACed under the current key; a guard reads older entries under theirs. */
  macKey: MacKey | null;
  clock?: () => Date;
}

interface Pending {
  events: readonly AuditEvent[];
  macKey: MacKey | null;
  guard: AppendGuard | undefined;
  clock: () => Date;
  resolve: (head: Appended) => void;
  reject: (error: unknown) => void;
}

const fsyncAsync = promisify(fs.fsync);

interface Written {
  end: number;
  digests: Map<number, string>;
}

const WRITTEN_MAX = 4096;

/**
 * The fsync is awaited (it runs off the event loop), so appends arriving meanwhile queue up for
 * the next batch instead of waiting behind a blocked loop.
 */
async function _appendBatch(
  dir: Home,
  batch: readonly Pending[],
  written: { get(): Written | null; set(w: Written | null): void },
  tree: TreeStore | null,
  stored: StoreAppend | null,
): Promise<void> {
  const file = path.join(dir.dir, AUDIT_FILE);
  let fd = _openLive(file);
  if (fs.fstatSync(fd).nlink > 1 && liveIsLastSegment(dir, fd)) {
    // A rotation stopped before the new live log was put in place: finish it first.
    fs.closeSync(fd);
    rotateLive(dir);
    written.set(null);
    fd = _openLive(file);
  }
  const done: Array<() => void> = [];
  let rotate = false;
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw _notAFile(file);
    if ((st.mode & 0o022) !== 0) {
      throw integrity(
        'insecure_permissions',
        `the audit log ${file} is writable by group or others`,
        `check who changed it, then: chmod 600 ${file}`,
      );
    }
    if ((st.mode & 0o077) !== 0) fs.fchmodSync(fd, 0o600);
    const tail = _readTail(fd);
    const segments = readSegments(dir);
    // An empty live log after a rotation continues the last segment's chain and numbering.
    const closed = segments[segments.length - 1];
    let seq = tail.last === null ? (closed?.last_seq ?? 0) : _seqOf(tail.last);
    let prev = tail.last === null
      ? (closed?.last_digest ?? GENESIS)
      : (lineDigest(tail.last) ?? _malformedTail());
    let out = '';
    const staged: Array<Authenticated<RecentEntry>> = [];
    // One keyed hasher per key for the batch: createHmac would set up the key for every entry.
    const macs = new Map<Uint8Array, DigestHmac>();
    const fresh: Array<[number, string]> = [];
    const lines: string[] = [];
    const stage = (e: AuditEvent, macKey: Uint8Array | null, ts: string) => {
      seq += 1;
      let mac = macKey === null ? null : macs.get(macKey);
      if (macKey !== null && mac === undefined) macs.set(macKey, mac = digestHmacer(macKey));
      const { line, digest } = _format({ ...e, seq, ts, prev }, mac ?? null);
      fresh.push([seq, digest]);
      prev = digest;
      lines.push(line);
      out += line + '\n';
      if (macKey !== null) {
        staged.unshift({ ts, event: e.event, data: e.data, authenticated: true });
      }
    };
    if (tail.torn) {
      fs.ftruncateSync(fd, tail.validLength);
      stage(
        {
          event: 'audit.repair',
          actor: { type: 'system' },
          outcome: 'ok',
          data: { reason: 'torn tail after a crash', truncated_at_byte: tail.validLength },
        },
        null,
        new Date().toISOString(),
      );
    }
    const tailSeq = seq;
    const ours = written.get();
    const known = ours !== null && ours.end === tail.validLength && !tail.torn &&
        ours.digests.get(tailSeq) === prev
      ? ours.digests
      : new Map<number, string>();
    const digestAt = (at: number) => known.get(at) ?? _digestAt(dir, fd, tail.validLength, at);
    // A tail this process did not write must check under the writer's keys: an entry MACed
    // under a key it lacks means the vault was rekeyed since it unsealed (or the log was edited),
    // and an entry appended under a retired key would never verify again.
    const foreignTail = tail.last !== null && !tail.torn && known.get(tailSeq) !== prev &&
        !tail.last.endsWith(`${MAC_MARKER}null}`)
      ? tail.last
      : null;
    for (const p of batch) {
      try {
        // A key wiped before its append was staged would MAC the entry under zeros: an entry no
        // one could ever verify again, in the trail for good. Refused (a bug if it happens).
        if (p.macKey !== null && currentKey(p.macKey).every((b) => b === 0)) {
          throw new TpError('internal', 'audit_key_wiped', 'an append came with a wiped audit key');
        }
        if (foreignTail !== null && p.macKey !== null) _tailUnderKey(foreignTail, p.macKey);
        // Earlier appends of this batch count too, as if they were already in the file.
        const key = p.macKey;
        p.guard?.(
          (since) => {
            if (key === null) {
              throw new TpError('internal', 'audit_needs_key', 'a guard read without a key');
            }
            return [
              ...staged.filter((e) => e.ts >= since.toISOString()),
              ..._readRecent(dir, fd, tail.validLength, since.toISOString(), key),
            ];
          },
          { seq: tailSeq, digestAt },
        );
      } catch (e) {
        done.push(() => p.reject(e));
        continue;
      }
      const ts = p.clock().toISOString();
      for (const e of p.events) stage(e, p.macKey === null ? null : currentKey(p.macKey), ts);
      const head = { seq, hash: prev };
      done.push(() => p.resolve(head));
    }
    for (const mac of macs.values()) mac.wipe();
    const bytes = Buffer.from(out, 'utf8');
    const at = tail.torn ? tail.validLength : st.size;
    // The store's commit is the durable record; a failure rejects the batch with nothing written.
    if (stored !== null && lines.length > 0) await stored.commit(lines);
    written.set(null);
    let n = 0;
    while (n < bytes.length) {
      n += fs.writeSync(fd, bytes, n, bytes.length - n, at + n);
    }
    const synced = fsyncAsync(fd);
    // The tree's hashing (leaves, and the blocks they complete) is done while the disk syncs
    // (off this thread); its offsets run over the whole trail (segments, then the live log).
    const trail = new TrailReader(dir, fd, { segments, check: false });
    const prepared = tree?.prepare(trail.base + at, bytes);
    await synced;
    if (st.size === 0) fsyncDir(dir.dir);
    // After the fsync: the tree never runs ahead of what is durable in the log.
    try {
      if (prepared !== undefined) tree?.appended(dir, trail, prepared);
    } finally {
      trail.close();
    }
    for (const [s, d] of fresh) known.set(s, d);
    for (const s of known.keys()) {
      if (known.size <= WRITTEN_MAX) break;
      known.delete(s);
    }
    written.set({ end: at + bytes.length, digests: known });
    rotate = at + bytes.length >= segmentLimit();
  } finally {
    fs.closeSync(fd);
  }
  if (rotate) {
    // Still under the lock, with everything durable: the batch is in the log either way, so a
    // failed rotation is left for the next batch (the limit is checked again).
    try {
      rotateLive(dir);
    } catch {
      // The live log stays as it is; nothing is lost.
    }
    written.set(null);
  }
  for (const settle of done) settle();
}

/**
 * The newest entry of the trail in `auditDir` (live log, else the last closed segment): its
 * number and digest; 0 and the genesis digest for an empty trail. Under the audit lock.
 */
export function trailHead(auditDir: Home): { seq: number; digest: string } {
  const fd = fs.existsSync(auditDir.dir) ? openStateFile(auditDir, AUDIT_FILE) : null;
  let last: string | null = null;
  try {
    if (fd !== null && !liveIsLastSegment(auditDir, fd)) last = _readTail(fd).last;
  } finally {
    if (fd !== null) fs.closeSync(fd);
  }
  last ??= _segmentsTail(auditDir);
  if (last === null) return { seq: 0, digest: GENESIS };
  return { seq: _seqOf(last), digest: lineDigest(last) ?? _malformedTail() };
}

/**
 * The team store's pull (#19): appends entries other instances wrote, as the store holds them, to
 * this home's live log, under the audit lock. They must continue the local trail exactly (numbers
 * and chain), or nothing is written (exit 8). A torn tail is cut first: it is a write this home
 * never finished, and the store holds every entry that was committed. The lines are checked by
 * the readers (chain and MACs), as every line of the file is.
 */
export function appendReplicated(auditDir: Home, rows: readonly string[]): void {
  if (rows.length === 0) return;
  const file = path.join(auditDir.dir, AUDIT_FILE);
  let fd = _regularFile(_openLive(file), file);
  if (fs.fstatSync(fd).nlink > 1 && liveIsLastSegment(auditDir, fd)) {
    fs.closeSync(fd);
    rotateLive(auditDir);
    fd = _regularFile(_openLive(file), file);
  }
  try {
    const tail = _readTail(fd);
    const closed = readSegments(auditDir).at(-1);
    let seq = tail.last === null ? (closed?.last_seq ?? 0) : _seqOf(tail.last);
    let prev = tail.last === null
      ? (closed?.last_digest ?? GENESIS)
      : (lineDigest(tail.last) ?? _malformedTail());
    for (const line of rows) {
      if (_seqOf(line) !== seq + 1 || _prevOf(line) !== prev) _chainBroken(line);
      seq += 1;
      prev = lineDigest(line) ?? _malformedTail();
    }
    const bytes = Buffer.from(rows.join('\n') + '\n', 'utf8');
    if (tail.torn) fs.ftruncateSync(fd, tail.validLength);
    let n = 0;
    while (n < bytes.length) {
      n += fs.writeSync(fd, bytes, n, bytes.length - n, tail.validLength + n);
    }
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function _openLive(file: string): number {
  return fs.openSync(
    file,
    fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK,
    0o600,
  );
}

/**
 * `audit rotate`: closes the live log into the next segment now, under the audit lock (appends
 * wait for it and then go to the new live log), and with `compress` gzips every closed segment.
 */
export async function rotateAuditLog(
  home: Home,
  options: { compress?: boolean } = {},
): Promise<{ segment: Segment | null; compressed: string[] }> {
  if (subdir(home, AUDIT_DIR, { create: false }) === null) return { segment: null, compressed: [] };
  const dir = auditHome(home);
  return await withLock(dir, 'audit', () => {
    const segment = rotateLive(dir);
    return { segment, compressed: options.compress ? compressSegments(dir) : [] };
  }, { timeoutMs: 30_000 });
}

/** `fd` when it is a regular file; otherwise (a FIFO, a device) it is closed and refused. */
function _regularFile(fd: number, file: string): number {
  if (fs.fstatSync(fd).isFile()) return fd;
  fs.closeSync(fd);
  throw _notAFile(file);
}

function _notAFile(file: string): TpError {
  return integrity(
    'not_a_file',
    `the audit log ${file} is not a regular file`,
    'check who replaced it, then restore it from a backup and run `trust-protocol audit verify`',
  );
}

function _auditError(e: unknown): TpError {
  if (e instanceof TpError && e.kind === 'audit') return e;
  const code = ioErrorCode(e) ?? (e instanceof TpError ? e.code : 'unknown');
  return new TpError(
    'audit',
    'audit_write_failed',
    `the audit trail cannot be written (${code}); nothing was done`,
    {
      hint: 'check free space and permissions of the audit directory in the trust-protocol home',
      cause: e,
    },
  );
}
