/**
 * The audit log's Merkle tree on disk (docs/formats.md#audit-tree), a cache of hashes derived
 * from the log alone (its closed segments, then `audit/audit.log`, read as one byte range:
 * audit_segments.ts `TrailReader`): `audit/tree-v1/level1` holds, for every complete block of 256
 * entries, the byte offset where the block ends in the log and the block's subtree hash;
 * `level2`..`level4` hold the hashes of complete 256^2, 256^3 and 256^4-entry subtrees. Any
 * subtree hash a proof needs is then at most 255 hashes away (or one block of the log), so
 * proofs stay fast on a 10M-entry log while the files stay small (40 bytes per 256 entries).
 *
 * Nothing here is trusted: the files are in the agent-writable home and are not fsynced (the log
 * is, and they are rebuilt from it). What is signed is computed from the log (`LeafStream`);
 * a proof built from these files is checked against that before it is handed out, and a
 * mismatch rebuilds the files from the log (`TreeStore.open` with `rebuild`).
 */
import { Buffer } from 'node:buffer';
import { createHash, type Hash as NodeHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type Home, READ_FLAGS, subdir } from '../home.ts';
import { liveIsLastSegment, readSegments, TrailReader } from '../audit_segments.ts';
import { integrity } from '../errors.ts';
import { EMPTY_ROOT, type Hash, leafHash, leafHashOfPrefixed, nodeHash, rootOf } from './merkle.ts';

export const TREE_DIR = 'tree-v1';
const LOG_FILE = 'audit.log';

/** The log read at offsets over the whole trail (segments, then the live log). */
export interface LogSource {
  pread(at: number, n: number): Uint8Array;
}
const BLOCK = 256;
const REC1 = 40;
const TOP_LEVEL = 4;
/** A writer catches up at most this much of the log by itself; more is left to `audit` commands. */
const CATCH_UP_BYTES = 64 * 1024 * 1024;

/** The frontier of a tree built from a stream of log bytes: its size and root at any point. */
export class LeafStream {
  #stack: Array<{ size: number; hash: Hash }> = [];
  #line: NodeHash | null = null;
  size = 0;

  update(chunk: Uint8Array): void {
    let start = 0;
    for (let nl = chunk.indexOf(0x0a); nl >= 0; nl = chunk.indexOf(0x0a, start)) {
      const h = this.#line ?? createHash('sha256').update(new Uint8Array([0]));
      h.update(chunk.subarray(start, nl));
      this.push(new Uint8Array(h.digest()));
      this.#line = null;
      start = nl + 1;
    }
    // A line split across chunks (or a torn tail, which never becomes a leaf).
    if (start < chunk.length) {
      this.#line ??= createHash('sha256').update(new Uint8Array([0]));
      this.#line.update(chunk.subarray(start));
    }
  }

  push(leaf: Hash): void {
    this.size += 1;
    let node = { size: 1, hash: leaf };
    for (;;) {
      const top = this.#stack[this.#stack.length - 1];
      if (top === undefined || top.size !== node.size) break;
      this.#stack.pop();
      node = { size: top.size * 2, hash: nodeHash(top.hash, node.hash) };
    }
    this.#stack.push(node);
  }

  root(): Hash {
    if (this.#stack.length === 0) return EMPTY_ROOT;
    let r = this.#stack[this.#stack.length - 1]!.hash;
    for (let i = this.#stack.length - 2; i >= 0; i--) r = nodeHash(this.#stack[i]!.hash, r);
    return r;
  }
}

/** Where the writer's tree stands: complete blocks, and the leaves of the unfinished one. */
interface Tail {
  blocks: number;
  /** Byte offset in the log where the unfinished block starts, and where the log ends. */
  start: number;
  end: number;
  leaves: Hash[];
  /** Subtree counts of level2..4 already on disk (index 0 is level2). */
  upper: number[];
}

/** A batch's tree work that needs no file, done while the batch's fsync runs (`prepare`). */
export interface PreparedBatch {
  /** Byte offset in the trail where the batch starts, and where each of its lines ends. */
  at: number;
  ends: number[];
  leaves: Hash[];
  /** The roots of the blocks the batch completes, when the writer's tail was known (`basis`). */
  roots: Hash[] | null;
  basis: Tail | null;
}

/**
 * The tree files of one home's audit directory. The writer (audit.ts, under the audit lock) calls
 * `prepare` while a batch syncs and `appended` once it is durable; readers call `open` (under the
 * same lock) for a view.
 */
export class TreeStore {
  #tail: Tail | null = null;
  /** The writer's open tree files, kept while its tail is (reopened when the tail is reloaded). */
  #files: Files | null = null;

  /**
   * The leaf hashes of a batch of lines (`bytes`, each line ending in a newline) written at byte
   * `at` of the trail, and the roots of the blocks they complete: all the hashing, kept off the
   * path after the fsync. Nothing is written: the tree never runs ahead of the durable log.
   */
  prepare(at: number, bytes: Uint8Array): PreparedBatch {
    const ends: number[] = [];
    const leaves: Hash[] = [];
    // One prefixed copy of the batch: each newline becomes the next line's 0x00 leaf prefix.
    const z = Buffer.allocUnsafe(bytes.length + 1);
    z[0] = 0;
    z.set(bytes, 1);
    let start = 0;
    for (let nl = z.indexOf(0x0a, 1); nl >= 0; nl = z.indexOf(0x0a, nl + 1)) {
      z[nl] = 0;
      leaves.push(leafHashOfPrefixed(z.subarray(start, nl)));
      ends.push(at + nl);
      start = nl;
    }
    const basis = this.#tail !== null && this.#tail.end === at ? this.#tail : null;
    let roots: Hash[] | null = null;
    if (basis !== null) {
      roots = [];
      let first = BLOCK - basis.leaves.length;
      if (first <= leaves.length) {
        roots.push(rootOf([...basis.leaves, ...leaves.slice(0, first)]));
        for (; first + BLOCK <= leaves.length; first += BLOCK) {
          roots.push(rootOf(leaves.slice(first, first + BLOCK)));
        }
      }
    }
    return { at, ends, leaves, roots, basis };
  }

  /**
   * After the prepared batch was written and made durable. Best effort: the log is the record,
   * so a failure here only leaves the tree to be caught up later.
   */
  appended(auditDir: Home, logFd: LogSource, batch: PreparedBatch): void {
    try {
      let tail = this.#tail !== null && this.#tail.end === batch.at ? this.#tail : null;
      this.#tail = null;
      const roots = tail !== null && tail === batch.basis ? batch.roots : null;
      if (tail === null) {
        this.#files?.close();
        this.#files = null;
        tail = _load(auditDir, logFd, batch.at, CATCH_UP_BYTES);
        if (tail === null) return;
      }
      this.#files ??= new Files(auditDir, null);
      let next = 0;
      for (let i = 0; i < batch.leaves.length; i++) {
        const root = tail.leaves.length === BLOCK - 1 && roots !== null ? roots[next++] : undefined;
        _push(this.#files, tail, batch.leaves[i]!, batch.ends[i]!, root);
      }
      this.#tail = tail;
    } catch {
      this.#tail = null;
      this.#files?.close();
      this.#files = null;
    }
  }

  /** Closes the writer's tree files (a long-lived process keeps them open between batches). */
  close(): void {
    this.#files?.close();
    this.#files = null;
    this.#tail = null;
  }

  /**
   * The tree over the log's complete lines as they are now, its files first brought up to date
   * (or, with `rebuild`, recomputed from the log). Call under the audit lock.
   */
  static open(
    auditDir: Home,
    options: { rebuild?: boolean; segments?: readonly string[] } = {},
  ): TreeView {
    const logPath = path.join(auditDir.dir, LOG_FILE);
    let liveFd: number | null;
    try {
      liveFd = fs.openSync(logPath, READ_FLAGS);
    } catch (e) {
      if ((e as { code?: string }).code !== 'ENOENT') throw e;
      liveFd = null;
    }
    if (liveFd !== null && !fs.fstatSync(liveFd).isFile()) {
      fs.closeSync(liveFd);
      throw integrity('not_a_file', `the audit log ${logPath} is not a regular file`);
    }
    const segments = readSegments(auditDir);
    if (liveFd !== null && liveIsLastSegment(auditDir, liveFd)) {
      fs.closeSync(liveFd);
      liveFd = null;
    }
    // Segments are read in place (a compressed one member by member), not hashed whole on every
    // proof: what is read here is checked against a root anyway (a proof that fails is not
    // handed out). The rebuild after a failed proof reads them whole and checked, so that an
    // altered segment is named.
    const logFd = new TrailReader(auditDir, liveFd, {
      segments,
      check: options.rebuild === true,
      ...(options.segments ? { search: options.segments } : {}),
    });
    const end = logFd.base + (liveFd === null ? 0 : _completeEnd(liveFd));
    if (end === 0 && segments.length === 0 && liveFd === null) {
      return new TreeView(null, null, null, 0, 0);
    }
    if (options.rebuild) _reset(auditDir);
    const tail = _load(auditDir, logFd, end, Infinity);
    if (tail === null) throw new Error('unreachable: an unlimited catch-up always loads');
    return new TreeView(
      new Files(auditDir, logFd),
      logFd,
      liveFd,
      tail.blocks * BLOCK + tail.leaves.length,
      end,
    );
  }
}

/** Read access to a tree of `size` leaves: subtree hashes and the entries themselves. */
export class TreeView {
  readonly size: number;
  readonly logEnd: number;
  #files: Files | null;
  #logFd: (LogSource & { close?(): void }) | null;
  #liveFd: number | null;
  #blocks = new Map<number, { lines: Buffer[]; leaves: Hash[] }>();

  constructor(
    files: Files | null,
    logFd: (LogSource & { close?(): void }) | null,
    liveFd: number | null,
    size: number,
    logEnd: number,
  ) {
    this.#files = files;
    this.#logFd = logFd;
    this.#liveFd = liveFd;
    this.size = size;
    this.logEnd = logEnd;
  }

  close(): void {
    this.#files?.close();
    this.#logFd?.close?.();
    if (this.#liveFd !== null) fs.closeSync(this.#liveFd);
    this.#files = null;
    this.#logFd = null;
    this.#liveFd = null;
  }

  root(size = this.size): Hash {
    return size === 0 ? EMPTY_ROOT : this.mth(0, size);
  }

  /** MTH(D[start:end]) of RFC 9162, for ranges inside this tree. */
  mth = (start: number, end: number): Hash => {
    const n = end - start;
    if (n === 1) return this.#block(Math.floor(start / BLOCK)).leaves[start % BLOCK]!;
    if ((n & (n - 1)) === 0 && start % n === 0) return this.#complete(Math.log2(n), start / n);
    let k = 1;
    while (k * 2 < n) k *= 2;
    return nodeHash(this.mth(start, start + k), this.mth(start + k, end));
  };

  /** The entry line at leaf `index` (without its newline). */
  line(index: number): string {
    return this.#block(Math.floor(index / BLOCK)).lines[index % BLOCK]!.toString('utf8');
  }

  /** The complete subtree of 2^k leaves numbered `index` at that height. */
  #complete(k: number, index: number): Hash {
    const level = Math.min(Math.floor(k / 8), TOP_LEVEL);
    const fan = 2 ** (k - 8 * level);
    if (level === 0) {
      const first = index * fan;
      const b = this.#block(Math.floor(first / BLOCK));
      return rootOf(b.leaves.slice(first % BLOCK, first % BLOCK + fan));
    }
    return rootOf(this.#files!.hashes(level, index * fan, fan));
  }

  #block(b: number): { lines: Buffer[]; leaves: Hash[] } {
    let found = this.#blocks.get(b);
    if (found === undefined) {
      const files = this.#files!;
      const start = b === 0 ? 0 : files.record1(b - 1).end;
      const end = b < files.count1() ? files.record1(b).end : this.logEnd;
      const lines = _splitLines(_pread(this.#logFd!, start, end - start));
      found = { lines, leaves: lines.map((l) => leafHash(l)) };
      if (this.#blocks.size >= 8) this.#blocks.clear();
      this.#blocks.set(b, found);
    }
    return found;
  }
}

/** The open tree files: level1 (offset and hash per block) and the hashes of higher levels. */
class Files {
  #dir: string;
  #fds = new Map<number, number>();
  #count1: number | null = null;
  readonly logFd: LogSource | null;

  constructor(auditDir: Home, logFd: LogSource | null) {
    const dir = subdir(auditDir, TREE_DIR, { create: true })!;
    this.#dir = dir.dir;
    this.logFd = logFd;
  }

  fd(level: number): number {
    let fd = this.#fds.get(level);
    if (fd === undefined) {
      const p = path.join(this.#dir, `level${level}`);
      fd = fs.openSync(
        p,
        fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW |
          fs.constants.O_NONBLOCK,
        0o600,
      );
      if (!fs.fstatSync(fd).isFile()) {
        fs.closeSync(fd);
        throw integrity('not_a_file', `the audit tree file ${p} is not a regular file`);
      }
      this.#fds.set(level, fd);
    }
    return fd;
  }

  close(): void {
    for (const fd of this.#fds.values()) fs.closeSync(fd);
    this.#fds.clear();
  }

  /** Complete records on disk (a torn last record, from a crash, is not one). */
  count(level: number): number {
    if (level === 1 && this.#count1 !== null) return this.#count1;
    return Math.floor(fs.fstatSync(this.fd(level)).size / (level === 1 ? REC1 : 32));
  }

  count1(): number {
    return this.#count1 ??= this.count(1);
  }

  truncate(level: number, count: number): void {
    fs.ftruncateSync(this.fd(level), count * (level === 1 ? REC1 : 32));
    if (level === 1) this.#count1 = count;
  }

  record1(i: number): { end: number; hash: Hash } {
    const b = _pread(this.fd(1), i * REC1, REC1);
    return { end: Number(b.readBigUInt64BE(0)), hash: new Uint8Array(b.subarray(8, 40)) };
  }

  hashes(level: number, from: number, n: number): Hash[] {
    const out: Hash[] = [];
    if (level === 1) {
      const b = _pread(this.fd(1), from * REC1, n * REC1);
      for (let i = 0; i < n; i++) out.push(new Uint8Array(b.subarray(i * REC1 + 8, i * REC1 + 40)));
    } else {
      const b = _pread(this.fd(level), from * 32, n * 32);
      for (let i = 0; i < n; i++) out.push(new Uint8Array(b.subarray(i * 32, i * 32 + 32)));
    }
    if (out.some((h) => h.length !== 32)) throw new Error('audit tree file shorter than expected');
    return out;
  }

  write1(i: number, end: number, hash: Hash): void {
    const b = Buffer.alloc(REC1);
    b.writeBigUInt64BE(BigInt(end), 0);
    b.set(hash, 8);
    _pwrite(this.fd(1), i * REC1, b);
    this.#count1 = i + 1;
  }

  write(level: number, i: number, hash: Hash): void {
    _pwrite(this.fd(level), i * 32, hash);
  }
}

/** Adds one leaf whose line ends at byte `end`; completes blocks and higher subtrees. */
function _push(files: Files, tail: Tail, leaf: Hash, end: number, root?: Hash): void {
  tail.leaves.push(leaf);
  tail.end = end;
  if (tail.leaves.length < BLOCK) return;
  files.write1(tail.blocks, end, root ?? rootOf(tail.leaves));
  tail.blocks += 1;
  tail.start = end;
  tail.leaves = [];
  _completeUpper(files, tail);
}

/** Writes the level2..4 hashes that the blocks on disk complete. */
function _completeUpper(files: Files, tail: Tail): void {
  let below = tail.blocks;
  for (let level = 2; level <= TOP_LEVEL; level++) {
    const want = Math.floor(below / BLOCK);
    const have = tail.upper[level - 2]!;
    for (let i = have; i < want; i++) {
      files.write(level, i, rootOf(files.hashes(level - 1, i * BLOCK, BLOCK)));
    }
    tail.upper[level - 2] = want;
    below = want;
  }
}

/**
 * The tree's state for a log whose complete lines end at `logEnd`, with the files made to match
 * it: records beyond the log (a log cut or restored from an older copy) are dropped, records a
 * crash did not write are computed from the log. Null when that would mean reading more than
 * `limit` bytes of the log.
 */
function _load(auditDir: Home, logFd: LogSource, logEnd: number, limit: number): Tail | null {
  const files = new Files(auditDir, logFd);
  try {
    let blocks = files.count(1);
    if (blocks > 0 && files.record1(blocks - 1).end > logEnd) {
      // Ends only grow: the last block that still fits, by bisection.
      let lo = 0;
      let hi = blocks;
      while (lo < hi) {
        const mid = Math.floor((lo + hi) / 2);
        if (files.record1(mid).end <= logEnd) lo = mid + 1;
        else hi = mid;
      }
      blocks = lo;
    }
    // A block must end at the end of a line of this log; if not, the files belong to another log.
    if (blocks > 0) {
      const end = files.record1(blocks - 1).end;
      if (end < 1 || _pread(logFd, end - 1, 1)[0] !== 0x0a) blocks = 0;
    }
    if (blocks !== files.count(1) || fs.fstatSync(files.fd(1)).size !== blocks * REC1) {
      files.truncate(1, blocks);
    }
    const upper: number[] = [];
    let below = blocks;
    for (let level = 2; level <= TOP_LEVEL; level++) {
      const want = Math.floor(below / BLOCK);
      const have = Math.min(files.count(level), want);
      if (fs.fstatSync(files.fd(level)).size !== have * 32) files.truncate(level, have);
      upper.push(have);
      below = want;
    }
    const start = blocks === 0 ? 0 : files.record1(blocks - 1).end;
    if (logEnd - start > limit) return null;
    const tail: Tail = { blocks, start, end: start, leaves: [], upper };
    _completeUpper(files, tail);
    // Read forward in pieces: a rebuild of a large log holds one piece at a time.
    const PIECE = 4 * 1024 * 1024;
    let carry: Buffer = Buffer.alloc(0);
    for (let pos = start; pos < logEnd;) {
      const piece = Buffer.concat([carry, _pread(logFd, pos, Math.min(PIECE, logEnd - pos))]);
      pos += piece.length - carry.length;
      let from = 0;
      for (let nl = piece.indexOf(0x0a); nl >= 0; nl = piece.indexOf(0x0a, from)) {
        _push(files, tail, leafHash(piece.subarray(from, nl)), tail.end + nl - from + 1);
        from = nl + 1;
      }
      carry = piece.subarray(from);
    }
    return tail;
  } finally {
    files.close();
  }
}

function _reset(auditDir: Home): void {
  const files = new Files(auditDir, null);
  try {
    for (let level = 1; level <= TOP_LEVEL; level++) files.truncate(level, 0);
  } finally {
    files.close();
  }
}

/** The end of the last complete line of the log: a torn tail is nobody's leaf. */
function _completeEnd(fd: number): number {
  const size = fs.fstatSync(fd).size;
  for (let pos = size; pos > 0;) {
    const start = Math.max(0, pos - 64 * 1024);
    const nl = _pread(fd, start, pos - start).lastIndexOf(0x0a);
    if (nl >= 0) return start + nl + 1;
    pos = start;
  }
  return 0;
}

function _splitLines(b: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let from = 0;
  for (let nl = b.indexOf(0x0a); nl >= 0; nl = b.indexOf(0x0a, from)) {
    out.push(b.subarray(from, nl));
    from = nl + 1;
  }
  return out;
}

function _pread(fd: number | LogSource, at: number, n: number): Buffer {
  if (typeof fd !== 'number') {
    const got = fd.pread(at, n);
    return Buffer.from(got.buffer, got.byteOffset, got.byteLength);
  }
  const b = Buffer.alloc(n);
  let read = 0;
  while (read < n) {
    const got = fs.readSync(fd, b, read, n - read, at + read);
    if (got === 0) break;
    read += got;
  }
  return b.subarray(0, read);
}

function _pwrite(fd: number, at: number, data: Uint8Array): void {
  let n = 0;
  while (n < data.length) n += fs.writeSync(fd, data, n, data.length - n, at + n);
}
