/**
 * Ed25519 through @noble/ed25519 with strict RFC 8032 verification (zip215: false), plus an
 * explicit refusal of small-order public keys (PITFALLS: Node's own verify accepted one).
 */
import * as ed from '@noble/ed25519';
import { sha512 } from '@noble/hashes/sha2.js';

ed.hashes.sha512 = sha512;

export function publicKeyOf(seed: Uint8Array): Uint8Array {
  return ed.getPublicKey(seed);
}

export function sign(message: Uint8Array, seed: Uint8Array): Uint8Array {
  return ed.sign(message, seed);
}

/** False for malformed, small-order or non-canonical keys and signatures, and bad signatures. */
export function verify(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean {
  if (signature.length !== 64 || publicKey.length !== 32) return false;
  try {
    const point = ed.Point.fromBytes(publicKey, false);
    if (point.isSmallOrder()) return false;
    return ed.verify(signature, message, publicKey, { zip215: false });
  } catch {
    return false;
  }
}
