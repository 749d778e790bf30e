/**
 * Ed25519 with strict RFC 8032 verification: explicit refusals before any verification
 * (PITFALLS: Node's own verify accepted a small-order key) of non-canonical encodings (y >= p,
 * x = 0 with the sign bit set, S >= L), small-order points, and points with a small-order
 * component, checked with @noble/ed25519's point arithmetic. Honest keys and signatures are always
 * in the prime-order subgroup, so refusing the rest only removes the inputs on which verifiers
 * disagree: every verdict is the same on Node, Deno and libsodium (minisign).
 *
 * What is left, the signature equation, key derivation and signing, runs in node:crypto (OpenSSL
 * on Node, Deno's own on Deno): @noble/ed25519 builds its base-point tables on the first call of
 * a process, tens of milliseconds of a short command such as `audit cosign` or `skill verify`
 * (more under load), where node:crypto takes under a millisecond. Signatures are deterministic (RFC 8032), so both give
 * the same bytes; test/ed25519.test.ts checks RFC 8032 and Wycheproof vectors on both runtimes.
 */
import { Buffer } from 'node:buffer';
import * as crypto from 'node:crypto';
import * as ed from '@noble/ed25519';

/** The order of the prime-order subgroup (RFC 8032, 5.1). */
const L = 2n ** 252n + 27742317777372353535851937790883648493n;

/** Why a key or signature is refused before verification; null when it is acceptable. */
export type PointProblem = 'malformed' | 'non_canonical' | 'small_order' | 'mixed_order';

/** DER prefixes of an Ed25519 private key (PKCS #8, the seed follows) and public key (SPKI). */
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

function _privateKey(seed: Uint8Array): crypto.KeyObject {
  if (seed.length !== 32) throw new RangeError('an Ed25519 seed is 32 bytes');
  const der = Buffer.concat([PKCS8_PREFIX, seed]);
  try {
    return crypto.createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  } finally {
    der.fill(0);
  }
}

export function publicKeyOf(seed: Uint8Array): Uint8Array {
  const spki = crypto.createPublicKey(_privateKey(seed)).export({ format: 'der', type: 'spki' });
  return new Uint8Array(spki.subarray(SPKI_PREFIX.length));
}

export function sign(message: Uint8Array, seed: Uint8Array): Uint8Array {
  return new Uint8Array(crypto.sign(null, message, _privateKey(seed)));
}

export function publicKeyProblem(publicKey: Uint8Array): PointProblem | null {
  return publicKey.length === 32 ? _pointProblem(publicKey) : 'malformed';
}

/** Checks R (the first half) as a point and S (the second half) as a scalar below L. */
export function signatureProblem(signature: Uint8Array): PointProblem | null {
  if (signature.length !== 64) return 'malformed';
  const problem = _pointProblem(signature.subarray(0, 32));
  if (problem !== null) return problem;
  return _littleEndian(signature.subarray(32)) >= L ? 'non_canonical' : null;
}

/** False for malformed, small-order or non-canonical keys and signatures, and bad signatures. */
export function verify(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean {
  if (publicKeyProblem(publicKey) !== null || signatureProblem(signature) !== null) return false;
  try {
    const key = crypto.createPublicKey({
      key: Buffer.concat([SPKI_PREFIX, publicKey]),
      format: 'der',
      type: 'spki',
    });
    return crypto.verify(null, message, key, signature);
  } catch {
    return false;
  }
}

function _pointProblem(bytes: Uint8Array): PointProblem | null {
  let point: ed.Point;
  try {
    point = ed.Point.fromBytes(bytes, false);
  } catch {
    // ZIP-215 decoding also takes y >= p and a signed zero x: a point, but not its canonical name.
    try {
      ed.Point.fromBytes(bytes, true);
      return 'non_canonical';
    } catch {
      return 'malformed';
    }
  }
  if (point.isSmallOrder()) return 'small_order';
  return point.isTorsionFree() ? null : 'mixed_order';
}

function _littleEndian(bytes: Uint8Array): bigint {
  let n = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(bytes[i] as number);
  return n;
}
