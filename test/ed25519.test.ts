import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { Buffer } from 'node:buffer';
import * as ed from '@noble/ed25519';
import {
  publicKeyOf,
  publicKeyProblem,
  sign,
  signatureProblem,
  verify,
} from '../src/crypto/ed25519.ts';

const hex = (s: string) => new Uint8Array(Buffer.from(s, 'hex'));
const toHex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const fixture = (name: string) =>
  JSON.parse(readFileSync(new URL(`../fixtures/vectors/${name}`, import.meta.url), 'utf8'));

const L = 2n ** 252n + 27742317777372353535851937790883648493n;
const P = 2n ** 255n - 19n;

function le(n: bigint): Uint8Array {
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) out[i] = Number((n >> BigInt(8 * i)) & 0xffn);
  return out;
}

/** The eight points of order dividing 8 (libsodium's blocklist), canonical encodings. */
const SMALL_ORDER = [
  '0100000000000000000000000000000000000000000000000000000000000000', // identity
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', // order 2
  '0000000000000000000000000000000000000000000000000000000000000000', // order 4
  '0000000000000000000000000000000000000000000000000000000000000080', // order 4
  '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05', // order 8
  '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85', // order 8
  'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a', // order 8
  'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa', // order 8
];

describe('RFC 8032 section 7.1 vectors', () => {
  const { vectors } = fixture('ed25519-rfc8032.json') as {
    vectors: Array<
      { name: string; secret_key: string; public_key: string; message: string; signature: string }
    >;
  };

  it('has TEST 1, 2, 3, 1024 and SHA(abc)', () => {
    expect(vectors.map((v) => v.name)).toEqual([
      'TEST 1',
      'TEST 2',
      'TEST 3',
      'TEST 1024',
      'TEST SHA(abc)',
    ]);
    expect(hex((vectors[3] as { message: string }).message).length).toBe(1023);
  });

  for (const v of vectors) {
    it(`${v.name}: derives the key, reproduces the signature, verifies, refuses any flipped bit`, () => {
      const seed = hex(v.secret_key);
      const message = hex(v.message);
      expect(toHex(publicKeyOf(seed))).toBe(v.public_key);
      expect(toHex(sign(message, seed))).toBe(v.signature);
      expect(verify(hex(v.signature), message, hex(v.public_key))).toBe(true);
      for (const bit of [0, 7, 255, 256, 511]) {
        const sig = hex(v.signature);
        sig[bit >> 3] = (sig[bit >> 3] as number) ^ (1 << (bit & 7));
        expect(verify(sig, message, hex(v.public_key))).toBe(false);
      }
      const other = new Uint8Array([...message, 0]);
      expect(verify(hex(v.signature), other, hex(v.public_key))).toBe(false);
    });
  }
});

describe('Wycheproof ed25519_test.json', () => {
  const file = fixture('wycheproof-ed25519.json') as {
    numberOfTests: number;
    testGroups: Array<{
      publicKey: { pk: string };
      tests: Array<{ tcId: number; msg: string; sig: string; result: string; comment: string }>;
    }>;
  };
  const tests = file.testGroups.flatMap((g) => g.tests.map((t) => ({ ...t, pk: g.publicKey.pk })));

  it('holds every test the file announces', () => {
    expect(tests.length).toBe(file.numberOfTests);
    expect(tests.length).toBe(151);
  });

  it('accepts exactly the valid signatures', () => {
    const wrong = tests.filter((t) =>
      verify(hex(t.sig), hex(t.msg), hex(t.pk)) !== (t.result === 'valid')
    );
    expect(wrong.map((t) => `${t.tcId} ${t.result} ${t.comment}`)).toEqual([]);
    expect(tests.filter((t) => t.result === 'valid').length).toBeGreaterThan(80);
    expect(tests.filter((t) => t.result === 'invalid').length).toBeGreaterThan(50);
  });
});

describe('strict verification: ZIP-215 edge cases are refused', () => {
  it('the eight small-order points are exactly the torsion subgroup', () => {
    const t8 = ed.Point.fromBytes(hex(SMALL_ORDER[4] as string), false);
    const multiples = new Set<string>();
    let q = ed.Point.ZERO;
    for (let k = 0; k < 8; k++) {
      multiples.add(toHex(q.toBytes()));
      q = q.add(t8);
    }
    expect([...multiples].sort()).toEqual([...SMALL_ORDER].sort());
  });

  it('refuses every small-order public key, and the forgery it allows for any message', () => {
    for (const k of SMALL_ORDER) {
      expect(publicKeyProblem(hex(k))).toBe('small_order');
      // R = the key, S = 0: [S]B = R + [h]A holds for identity-like keys and any message.
      const forged = new Uint8Array(64);
      forged.set(hex(k));
      for (const m of ['', 'hello', 'rm -rf /']) {
        expect(verify(forged, new TextEncoder().encode(m), hex(k))).toBe(false);
      }
    }
  });

  it('refuses small-order R in a signature', () => {
    for (const r of SMALL_ORDER) {
      const sig = new Uint8Array(64);
      sig.set(hex(r));
      expect(signatureProblem(sig)).toBe('small_order');
    }
  });

  it('refuses keys with a small-order component (mixed order)', () => {
    const honest = ed.Point.fromBytes(publicKeyOf(new Uint8Array(32).fill(7)), false);
    for (const t of SMALL_ORDER.slice(1)) {
      const mixed = honest.add(ed.Point.fromBytes(hex(t), false)).toBytes();
      expect(publicKeyProblem(mixed)).toBe('mixed_order');
    }
    expect(publicKeyProblem(honest.toBytes())).toBeNull();
  });

  it('refuses non-canonical encodings: y >= p and a signed zero x', () => {
    let decodable = 0;
    for (let y = P; y < 2n ** 255n; y++) {
      const enc = le(y);
      const problem = publicKeyProblem(enc);
      expect(problem === 'non_canonical' || problem === 'malformed').toBe(true);
      if (problem === 'non_canonical') decodable += 1;
      const sig = new Uint8Array(64);
      sig.set(enc);
      expect(signatureProblem(sig)).not.toBeNull();
    }
    // p, p+1 (y = 0 and y = 1, both small order) at least decode leniently.
    expect(decodable).toBeGreaterThanOrEqual(2);
    // x = 0 with the sign bit: y = 1 (identity) and y = -1 (order 2).
    expect(
      publicKeyProblem(hex('0100000000000000000000000000000000000000000000000000000000000080')),
    )
      .toBe('non_canonical');
    expect(
      publicKeyProblem(hex('ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff')),
    )
      .toBe('non_canonical');
  });

  it('refuses S >= L (malleated signatures) and keeps S just below L', () => {
    const seed = new Uint8Array(32).fill(9);
    const message = new TextEncoder().encode('manifest');
    const sig = sign(message, seed);
    let s = 0n;
    for (let i = 31; i >= 0; i--) s = (s << 8n) | BigInt(sig[32 + i] as number);
    for (const bumped of [s + L, s + 2n * L, L, 2n ** 256n - 1n]) {
      const bad = new Uint8Array(sig);
      bad.set(le(bumped & (2n ** 256n - 1n)), 32);
      expect(signatureProblem(bad)).toBe('non_canonical');
      expect(verify(bad, message, publicKeyOf(seed))).toBe(false);
    }
    expect(signatureProblem(sig)).toBeNull();
    expect(verify(sig, message, publicKeyOf(seed))).toBe(true);
  });

  it('refuses wrong lengths and points that are not on the curve', () => {
    expect(publicKeyProblem(new Uint8Array(31))).toBe('malformed');
    expect(signatureProblem(new Uint8Array(63))).toBe('malformed');
    // y = 2 has no x on the curve.
    expect(publicKeyProblem(le(2n))).toBe('malformed');
    expect(verify(new Uint8Array(64), new Uint8Array(0), le(2n))).toBe(false);
  });
});
