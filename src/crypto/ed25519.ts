/**
 * Ed25519 through @noble/ed25519 with strict RFC 8032 verification (zip215: false), plus explicit
 * refusals before any verification (PITFALLS: Node's own verify accepted a small-order key):
 * non-canonical encodings (y >= p, x = 0 with the sign bit set, S >= L), small-order points, and
 * points with a small-order component. Honest keys and signatures are always in the prime-order
 * subgroup, so refusing the rest only removes the inputs on which verifiers disagree: every
 * verdict is the same on Node, Deno and libsodium (minisign).
 */
import * as ed from '@noble/ed25519';
import { sha512 } from '@noble/hashes/sha2.js';

ed.hashes.sha512 = sha512;

/** The order of the prime-order subgroup (RFC 8032, 5.1). */
const L = 2n ** 252n + 27742317777372353535851937790883648493n;

/** Why a key or signature is refused before verification; null when it is acceptable. */
export type PointProblem = 'malformed' | 'non_canonical' | 'small_order' | 'mixed_order';

export function publicKeyOf(seed: Uint8Array): Uint8Array {
  return ed.getPublicKey(seed);
}

export function sign(message: Uint8Array, seed: Uint8Array): Uint8Array {
  return ed.sign(message, seed);
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
    return ed.verify(signature, message, publicKey, { zip215: false });
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
