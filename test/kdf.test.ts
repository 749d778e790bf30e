import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import {
  argon2idWith,
  checkKdfParams,
  deriveKey,
  KDF_CEILING,
  KDF_FLOOR,
  kdfImplementation,
} from '../src/crypto/kdf.ts';
import { fromHex, toHex } from '../src/bytes.ts';

const vector = JSON.parse(
  readFileSync(new URL('../fixtures/vectors/argon2id-rfc9106.json', import.meta.url), 'utf8'),
);
const isDeno = typeof (globalThis as { Deno?: unknown }).Deno === 'object';

describe('argon2id', () => {
  const input = {
    password: fromHex(vector.password_hex, 'password'),
    salt: fromHex(vector.salt_hex, 'salt'),
    secret: fromHex(vector.secret_hex, 'secret'),
    associatedData: fromHex(vector.associated_data_hex, 'ad'),
    params: {
      memoryKib: vector.memory_kib,
      iterations: vector.iterations,
      parallelism: vector.parallelism,
    },
    length: 32,
  };

  it('matches the RFC 9106 vector with @noble/hashes', () => {
    expect(toHex(argon2idWith('@noble/hashes', input))).toBe(vector.tag_hex);
  });

  it('uses node:crypto on Node and @noble/hashes on Deno', () => {
    expect(kdfImplementation()).toBe(isDeno ? '@noble/hashes' : 'node:crypto');
  });

  it.runIf(!isDeno)('matches the RFC 9106 vector with node:crypto', () => {
    expect(toHex(argon2idWith('node:crypto', input))).toBe(vector.tag_hex);
  });

  it('both implementations agree on the floor parameters', () => {
    const args = {
      password: new TextEncoder().encode('correct horse'),
      salt: new Uint8Array(16).fill(7),
      params: KDF_FLOOR,
      length: 32,
    };
    const noble = toHex(argon2idWith('@noble/hashes', args));
    expect(toHex(deriveKey(args.password, args.salt, KDF_FLOOR))).toBe(noble);
  });

  it('refuses parameters below the floor or above the ceiling', () => {
    expect(checkKdfParams(KDF_FLOOR)).toBeNull();
    expect(checkKdfParams({ ...KDF_FLOOR, memoryKib: KDF_FLOOR.memoryKib - 1 })).toMatch(/floor/);
    expect(checkKdfParams({ ...KDF_FLOOR, iterations: 1 })).toMatch(/floor/);
    expect(checkKdfParams({ ...KDF_FLOOR, memoryKib: KDF_CEILING.memoryKib + 1 })).toMatch(
      /ceiling/,
    );
    expect(checkKdfParams({ ...KDF_FLOOR, iterations: 1e9 })).toMatch(/ceiling/);
    expect(checkKdfParams({ ...KDF_FLOOR, memoryKib: 19456.5 })).toMatch(/whole/);
    expect(() => deriveKey(new Uint8Array(1), new Uint8Array(16), { ...KDF_FLOOR, iterations: 1 }))
      .toThrow(/floor/);
  });
});
