/** AES-256-GCM with 96-bit random nonces and 128-bit tags (@noble/ciphers), plus HKDF subkeys. */
import { gcm } from '@noble/ciphers/aes.js';
import { randomBytes } from '@noble/ciphers/utils.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';

export interface Sealed {
  nonce: Uint8Array;
  ciphertext: Uint8Array;
}

export function seal(key: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Sealed {
  const nonce = randomBytes(12);
  return { nonce, ciphertext: gcm(key, nonce, aad).encrypt(plaintext) };
}

/** Returns null when the tag does not verify (wrong key, or the ciphertext or its AAD was changed). */
export function open(key: Uint8Array, sealed: Sealed, aad: Uint8Array): Uint8Array | null {
  if (sealed.nonce.length !== 12 || sealed.ciphertext.length < 16) return null;
  try {
    return gcm(key, sealed.nonce, aad).decrypt(sealed.ciphertext);
  } catch {
    return null;
  }
}

export function subkey(root: Uint8Array, purpose: string): Uint8Array {
  return hkdf(
    sha256,
    root,
    undefined,
    new TextEncoder().encode(`trust-protocol/v1/${purpose}`),
    32,
  );
}

export function randomKey(): Uint8Array {
  return randomBytes(32);
}

export { randomBytes };
