/**
 * Argon2id key derivation. Node >= 24.7 has a native implementation in node:crypto (about 6x faster
 * than WebAssembly-free JavaScript); Deno does not, so it uses @noble/hashes. Both give identical
 * output (RFC 9106 vectors in fixtures/ run on both runtimes).
 */
import * as nodeCrypto from 'node:crypto';
import { argon2id } from '@noble/hashes/argon2.js';
import { TpError } from '../errors.ts';

export interface KdfParams {
  memoryKib: number;
  iterations: number;
  parallelism: number;
}

export const KDF_DEFAULT: KdfParams = { memoryKib: 64 * 1024, iterations: 3, parallelism: 1 };
/** OWASP's minimum for Argon2id: 19 MiB, t=2. Nothing below is ever accepted, not even in tests. */
export const KDF_FLOOR: KdfParams = { memoryKib: 19 * 1024, iterations: 2, parallelism: 1 };
/** A tampered header must not make unsealing hang or exhaust memory. */
export const KDF_CEILING: KdfParams = { memoryKib: 1024 * 1024, iterations: 10, parallelism: 4 };

export function checkKdfParams(p: KdfParams): string | null {
  const ints = [p.memoryKib, p.iterations, p.parallelism].every(Number.isSafeInteger);
  if (!ints) return 'KDF parameters must be whole numbers';
  if (p.memoryKib < KDF_FLOOR.memoryKib) {
    return `KDF memory below the ${KDF_FLOOR.memoryKib / 1024} MiB floor`;
  }
  if (p.iterations < KDF_FLOOR.iterations) {
    return `KDF iterations below the floor of ${KDF_FLOOR.iterations}`;
  }
  if (p.parallelism < 1) return 'KDF parallelism must be at least 1';
  if (p.memoryKib > KDF_CEILING.memoryKib) {
    return `KDF memory above the ${KDF_CEILING.memoryKib / 1024} MiB ceiling`;
  }
  if (p.iterations > KDF_CEILING.iterations) {
    return `KDF iterations above the ceiling of ${KDF_CEILING.iterations}`;
  }
  if (p.parallelism > KDF_CEILING.parallelism) {
    return `KDF parallelism above ${KDF_CEILING.parallelism}`;
  }
  return null;
}

type NativeArgon2 = (
  algorithm: string,
  params: {
    message: Uint8Array;
    nonce: Uint8Array;
    secret?: Uint8Array;
    associatedData?: Uint8Array;
    parallelism: number;
    tagLength: number;
    memory: number;
    passes: number;
  },
) => Uint8Array;

const nativeArgon2 = (nodeCrypto as unknown as { argon2Sync?: NativeArgon2 }).argon2Sync;

export interface Argon2Input {
  password: Uint8Array;
  salt: Uint8Array;
  secret?: Uint8Array;
  associatedData?: Uint8Array;
  params: KdfParams;
  length: number;
}

/** Raw Argon2id with a chosen implementation; no parameter policy (used by the RFC 9106 tests). */
export function argon2idWith(
  impl: 'node:crypto' | '@noble/hashes',
  input: Argon2Input,
): Uint8Array {
  const { params: p } = input;
  if (impl === 'node:crypto') {
    if (nativeArgon2 === undefined) throw new Error('node:crypto has no argon2 on this runtime');
    return new Uint8Array(nativeArgon2('argon2id', {
      message: input.password,
      nonce: input.salt,
      ...(input.secret ? { secret: input.secret } : {}),
      ...(input.associatedData ? { associatedData: input.associatedData } : {}),
      parallelism: p.parallelism,
      tagLength: input.length,
      memory: p.memoryKib,
      passes: p.iterations,
    }));
  }
  return argon2id(input.password, input.salt, {
    t: p.iterations,
    m: p.memoryKib,
    p: p.parallelism,
    dkLen: input.length,
    ...(input.secret ? { key: input.secret } : {}),
    ...(input.associatedData ? { personalization: input.associatedData } : {}),
  });
}

/** Derives a 32-byte key-encryption key, refusing parameters outside the floor and ceiling. */
export function deriveKey(password: Uint8Array, salt: Uint8Array, params: KdfParams): Uint8Array {
  const problem = checkKdfParams(params);
  if (problem !== null) throw new TpError('integrity', 'kdf_params', problem);
  return argon2idWith(kdfImplementation(), { password, salt, params, length: 32 });
}

/** The implementation in use, for `status` and the performance report. */
export function kdfImplementation(): 'node:crypto' | '@noble/hashes' {
  return typeof nativeArgon2 === 'function' ? 'node:crypto' : '@noble/hashes';
}
