/**
 * AES-256-GCM with 96-bit random nonces and 128-bit tags, and HKDF-SHA256 subkeys, from the
 * runtime's own crypto (node:crypto on Node and Deno): no module to load or tables to build on
 * every start. The layout is ciphertext followed by the 16-byte tag; the tag length is fixed on
 * both sides (PITFALLS: a decipher otherwise accepts short tags). test/aead.test.ts checks the
 * output against @noble/ciphers.
 */
import { Buffer } from 'node:buffer';
import {
  createCipheriv,
  createDecipheriv,
  hkdfSync,
  randomBytes as nodeRandomBytes,
} from 'node:crypto';

const TAG = 16;

export interface Sealed {
  nonce: Uint8Array;
  ciphertext: Uint8Array;
}

export function randomBytes(n: number): Uint8Array {
  return new Uint8Array(nodeRandomBytes(n));
}

export function seal(key: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Sealed {
  const nonce = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG });
  c.setAAD(aad);
  const ciphertext = Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()]);
  return { nonce, ciphertext: new Uint8Array(ciphertext) };
}

/** Returns null when the tag does not verify (wrong key, or the ciphertext or its AAD was changed). */
export function open(key: Uint8Array, sealed: Sealed, aad: Uint8Array): Uint8Array | null {
  const { nonce, ciphertext } = sealed;
  if (key.length !== 32 || nonce.length !== 12 || ciphertext.length < TAG) return null;
  try {
    const d = createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG });
    d.setAAD(aad);
    d.setAuthTag(ciphertext.subarray(ciphertext.length - TAG));
    return new Uint8Array(
      Buffer.concat([d.update(ciphertext.subarray(0, ciphertext.length - TAG)), d.final()]),
    );
  } catch {
    return null;
  }
}

export function subkey(root: Uint8Array, purpose: string): Uint8Array {
  return new Uint8Array(
    hkdfSync('sha256', root, new Uint8Array(0), `trust-protocol/v1/${purpose}`, 32),
  );
}

export function randomKey(): Uint8Array {
  return randomBytes(32);
}
