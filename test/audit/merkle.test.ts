import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  consistencyProof,
  inclusionProof,
  leafHash,
  nodeHash,
  rootOf,
  verifyConsistency,
  verifyInclusion,
} from '../../src/tlog/merkle.ts';

/** RFC 9162 2.1.1 MTH, literally: the naive recompute the tree is checked against. */
function naive(leaves: Uint8Array[]): Uint8Array {
  if (leaves.length === 1) return leaves[0]!;
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  return nodeHash(naive(leaves.slice(0, k)), naive(leaves.slice(k)));
}

const leaves = (n: number) => Array.from({ length: n }, (_, i) => leafHash(`entry ${i}`));
const oracle = (l: Uint8Array[]) => (a: number, b: number) => naive(l.slice(a, b));
const flip = (h: Uint8Array) => {
  const c = h.slice();
  c[0] = c[0]! ^ 1;
  return c;
};

describe('RFC 9162 Merkle tree', () => {
  it('the known empty and one-leaf roots', () => {
    expect(Buffer.from(rootOf([])).toString('hex')).toBe(
      'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    );
    // RFC 6962 test vector: leaf hash of the empty entry.
    expect(Buffer.from(leafHash(new Uint8Array(0))).toString('hex')).toBe(
      '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
    );
  });

  it('rootOf equals the naive recompute', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 300 }), (n) => {
      const l = leaves(n);
      expect(rootOf(l)).toEqual(naive(l));
    }));
  });

  it('inclusion proofs verify for every size, and fail when tampered', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 200 }), fc.nat(), fc.nat(), (n, i0, t) => {
        const l = leaves(n);
        const i = i0 % n;
        const root = naive(l);
        const proof = inclusionProof(i, n, oracle(l));
        expect(verifyInclusion(l[i]!, i, n, proof, root)).toBe(true);
        expect(verifyInclusion(flip(l[i]!), i, n, proof, root)).toBe(false);
        expect(verifyInclusion(l[i]!, i, n, proof, flip(root))).toBe(false);
        if (n > 1) expect(verifyInclusion(l[i]!, (i + 1) % n, n, proof, root)).toBe(false);
        if (proof.length > 0) {
          const bad = proof.slice();
          bad[t % bad.length] = flip(bad[t % bad.length]!);
          expect(verifyInclusion(l[i]!, i, n, bad, root)).toBe(false);
          expect(verifyInclusion(l[i]!, i, n, proof.slice(1), root)).toBe(false);
        }
      }),
    );
  });

  it('consistency proofs verify for every pair of sizes, and fail when tampered', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 200 }), fc.nat(), fc.nat(), (n, m0, t) => {
        const l = leaves(n);
        const m = 1 + (m0 % n);
        const proof = consistencyProof(m, n, oracle(l));
        const oldRoot = naive(l.slice(0, m));
        const root = naive(l);
        expect(verifyConsistency(m, oldRoot, n, root, proof)).toBe(true);
        expect(verifyConsistency(m, flip(oldRoot), n, root, proof)).toBe(false);
        if (m < n) {
          expect(verifyConsistency(m, oldRoot, n, flip(root), proof)).toBe(false);
          const bad = proof.slice();
          bad[t % bad.length] = flip(bad[t % bad.length]!);
          expect(verifyConsistency(m, oldRoot, n, root, bad)).toBe(false);
          // A fork: the old tree with one leaf changed is not extended by this one.
          const forked = l.slice(0, m);
          forked[t % m] = flip(forked[t % m]!);
          expect(verifyConsistency(m, naive(forked), n, root, proof)).toBe(false);
        }
      }),
    );
  });
});

describe('the hashes, against node:crypto written out by hand', () => {
  it('leaf = SHA-256(0x00 || entry) for text and bytes, node = SHA-256(0x01 || left || right)', async () => {
    const { createHash } = await import('node:crypto');
    const sha = (...parts: Uint8Array[]) => {
      const h = createHash('sha256');
      for (const p of parts) h.update(p);
      return new Uint8Array(h.digest());
    };
    const text = '{"seq":1,"é":"\u2028"}';
    expect(leafHash(text)).toEqual(sha(new Uint8Array([0]), new TextEncoder().encode(text)));
    expect(leafHash(new Uint8Array([1, 2]))).toEqual(sha(new Uint8Array([0, 1, 2])));
    const [l, r] = [leafHash('l'), leafHash('r')];
    expect(nodeHash(l, r)).toEqual(sha(new Uint8Array([1]), l, r));
  });
});
