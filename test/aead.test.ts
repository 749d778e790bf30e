import { describe, expect, it } from 'vitest';
import { gcm } from '@noble/ciphers/aes.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { open, randomBytes, seal, subkey } from '../src/crypto/aead.ts';

const enc = new TextEncoder();

describe('AES-256-GCM and HKDF from the runtime', () => {
  it('produce exactly what @noble/ciphers and @noble/hashes produce (the vault format is unchanged)', () => {
    for (let i = 0; i < 20; i++) {
      const key = randomBytes(32);
      const aad = randomBytes(i * 3);
      const plaintext = randomBytes(i * 17);
      const sealed = seal(key, plaintext, aad);
      expect(gcm(key, sealed.nonce, aad).decrypt(sealed.ciphertext)).toEqual(plaintext);
      const nobleCt = gcm(key, sealed.nonce, aad).encrypt(plaintext);
      expect(open(key, { nonce: sealed.nonce, ciphertext: nobleCt }, aad)).toEqual(plaintext);
      expect(subkey(key, 'state-mac')).toEqual(
        hkdf(sha256, key, undefined, enc.encode('trust-protocol/v1/state-mac'), 32),
      );
    }
  });

  it('refuses a changed ciphertext, AAD, key, nonce, or a short tag', () => {
    const key = randomBytes(32);
    const aad = enc.encode('meta');
    const s = seal(key, enc.encode('sk-aead-canary-123'), aad);
    const flipped = s.ciphertext.slice();
    flipped[0]! ^= 1;
    expect(open(key, { ...s, ciphertext: flipped }, aad)).toBeNull();
    expect(open(key, s, enc.encode('other'))).toBeNull();
    expect(open(randomBytes(32), s, aad)).toBeNull();
    expect(open(key, { ...s, nonce: randomBytes(12) }, aad)).toBeNull();
    expect(open(key, { ...s, ciphertext: s.ciphertext.subarray(0, s.ciphertext.length - 4) }, aad))
      .toBeNull();
    expect(open(key, s, aad)).toEqual(enc.encode('sk-aead-canary-123'));
  });
});
