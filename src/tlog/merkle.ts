/**
 * RFC 9162 Merkle tree hashing and proofs (section 2.1): leaf = SHA-256(0x00 || entry), node =
 * SHA-256(0x01 || left || right). Proofs are built from `mth(start, end)`, the hash of the
 * subtree over leaves [start, end), which the caller answers from wherever it keeps hashes
 * (tree_store.ts from disk, a test from memory); verification is pure and needs only hashes.
 */
import { Buffer } from 'node:buffer';
import { createHash, hash } from 'node:crypto';

export type Hash = Uint8Array;
export type SubtreeHash = (start: number, end: number) => Hash;

// One-shot hashing of a prefixed copy: a createHash object per leaf cost a third of an append
// batch's CPU (bench/audit.ts).
export function leafHash(entry: Uint8Array | string): Hash {
  const data = typeof entry === 'string'
    ? Buffer.from('\u0000' + entry, 'utf8')
    : _prefixed(0, entry);
  return new Uint8Array(hash('sha256', data, 'buffer'));
}

/** The leaf hash of `data`, which already starts with the 0x00 leaf prefix. */
export function leafHashOfPrefixed(data: Uint8Array): Hash {
  return new Uint8Array(hash('sha256', data, 'buffer'));
}

export function nodeHash(left: Hash, right: Hash): Hash {
  const data = Buffer.allocUnsafe(1 + left.length + right.length);
  data[0] = 1;
  data.set(left, 1);
  data.set(right, 1 + left.length);
  return new Uint8Array(hash('sha256', data, 'buffer'));
}

function _prefixed(byte: number, entry: Uint8Array): Buffer {
  const data = Buffer.allocUnsafe(1 + entry.length);
  data[0] = byte;
  data.set(entry, 1);
  return data;
}

export const EMPTY_ROOT: Hash = new Uint8Array(createHash('sha256').digest());

/** The largest power of two strictly below `n` (n >= 2). */
export function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/** The root of a whole list of leaf hashes (MTH of RFC 9162 2.1.1), for small lists and tests. */
export function rootOf(leaves: readonly Hash[]): Hash {
  if (leaves.length === 0) return EMPTY_ROOT;
  let level = leaves.slice();
  while (level.length > 1) {
    const next: Hash[] = [];
    for (let i = 0; i + 1 < level.length; i += 2) next.push(nodeHash(level[i]!, level[i + 1]!));
    // An odd node is carried up unchanged: this gives exactly the RFC's left-heavy split.
    if (level.length % 2 === 1) next.push(level[level.length - 1]!);
    level = next;
  }
  return level[0]!;
}

/** PATH(m, D[n]) of RFC 9162 2.1.3.1: siblings from the leaf up to the root. */
export function inclusionProof(index: number, size: number, mth: SubtreeHash): Hash[] {
  if (!(index >= 0 && index < size)) throw new RangeError(`leaf ${index} not in a tree of ${size}`);
  const out: Hash[] = [];
  let lo = 0;
  let hi = size;
  while (hi - lo > 1) {
    const k = splitPoint(hi - lo);
    if (index < lo + k) {
      out.push(mth(lo + k, hi));
      hi = lo + k;
    } else {
      out.push(mth(lo, lo + k));
      lo += k;
    }
  }
  return out.reverse();
}

/** PROOF(m, D[n]) of RFC 9162 2.1.4.1: that the tree of `size` extends the tree of `old`. */
export function consistencyProof(old: number, size: number, mth: SubtreeHash): Hash[] {
  if (!(old >= 0 && old <= size)) throw new RangeError(`cannot prove ${old} against ${size}`);
  if (old === 0 || old === size) return [];
  const extra: Hash[] = [];
  let lo = 0;
  let hi = size;
  let m = old;
  let whole = true;
  while (m !== hi - lo) {
    const k = splitPoint(hi - lo);
    if (m <= k) {
      extra.push(mth(lo + k, hi));
      hi = lo + k;
    } else {
      extra.push(mth(lo, lo + k));
      lo += k;
      m -= k;
      whole = false;
    }
  }
  const base = whole ? [] : [mth(lo, hi)];
  return [...base, ...extra.reverse()];
}

function _same(a: Hash, b: Hash): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!;
  return d === 0;
}

const _odd = (n: number) => n % 2 === 1;
const _half = (n: number) => Math.floor(n / 2);

/** RFC 9162 2.1.3.2: whether `proof` places `leaf` at `index` under `root` of a tree of `size`. */
export function verifyInclusion(
  leaf: Hash,
  index: number,
  size: number,
  proof: readonly Hash[],
  root: Hash,
): boolean {
  if (!(Number.isSafeInteger(index) && Number.isSafeInteger(size) && index >= 0 && index < size)) {
    return false;
  }
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0) return false;
    if (_odd(fn) || fn === sn) {
      r = nodeHash(p, r);
      if (!_odd(fn)) {
        while (!_odd(fn) && fn !== 0) {
          fn = _half(fn);
          sn = _half(sn);
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = _half(fn);
    sn = _half(sn);
  }
  return sn === 0 && _same(r, root);
}

/** RFC 9162 2.1.4.2: whether `proof` shows the tree (`size`, `root`) extends (`old`, `oldRoot`). */
export function verifyConsistency(
  old: number,
  oldRoot: Hash,
  size: number,
  root: Hash,
  proof: readonly Hash[],
): boolean {
  if (!(Number.isSafeInteger(old) && Number.isSafeInteger(size) && old >= 0 && old <= size)) {
    return false;
  }
  if (old === size) return proof.length === 0 && _same(oldRoot, root);
  if (old === 0) return proof.length === 0;
  // A power-of-two old tree is a complete subtree of the new one: the proof leaves its root out.
  const path = _isPowerOfTwo(old) ? [oldRoot, ...proof] : [...proof];
  if (path.length === 0) return false;
  let fn = old - 1;
  let sn = size - 1;
  while (_odd(fn)) {
    fn = _half(fn);
    sn = _half(sn);
  }
  let fr = path[0]!;
  let sr = path[0]!;
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (_odd(fn) || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      if (!_odd(fn)) {
        while (!_odd(fn) && fn !== 0) {
          fn = _half(fn);
          sn = _half(sn);
        }
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = _half(fn);
    sn = _half(sn);
  }
  return sn === 0 && _same(fr, oldRoot) && _same(sr, root);
}

function _isPowerOfTwo(n: number): boolean {
  while (n > 1) {
    if (_odd(n)) return false;
    n = _half(n);
  }
  return n === 1;
}
