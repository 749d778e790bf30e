/**
 * minisign key files (docs/formats-skills.md#keys), byte for byte as minisign 0.11 writes and reads
 * them, so `minisign -S -s PREFIX.key` signs with a key made by `skill keygen` and a minisign key
 * signs skills here.
 *
 * Public key file:  `untrusted comment: ...` then base64("Ed" || key id (8) || public key (32)).
 * Secret key file:  `untrusted comment: ...` then base64 of 158 bytes: "Ed", KDF "Sc" (scrypt) or
 * two zero bytes (no password, `minisign -W`), checksum "B2", salt (32), opslimit (u64 LE),
 * memlimit (u64 LE), then key id (8) || seed || public key (64) || BLAKE2b-256 checksum (32), that
 * last 104 bytes XORed with scrypt(password, salt) when encrypted.
 */
import { randomBytes } from 'node:crypto';
import { blake2b } from '@noble/hashes/blake2.js';
import { scrypt } from '@noble/hashes/scrypt.js';
import { secretEqual, wipe } from '../bytes.ts';
import { publicKeyOf } from '../crypto/ed25519.ts';
import { TpError, usage } from '../errors.ts';
import { base64, fileLines, startsWith, strictBase64 } from './text.ts';

export interface PublicKey {
  /** The 8 key id bytes as stored (minisign prints them as a little-endian u64). */
  keyId: Uint8Array;
  publicKey: Uint8Array;
}

export interface SecretKey extends PublicKey {
  seed: Uint8Array;
}

/** scrypt cost as minisign stores it: libsodium's opslimit and memlimit. */
export interface KdfLimits {
  opsLimit: bigint;
  memLimit: bigint;
}

/** minisign's own choice (libsodium's *_SENSITIVE): scrypt N = 2^20, r = 8, p = 1, 1 GiB. */
export const MINISIGN_KDF: KdfLimits = { opsLimit: 33554432n, memLimit: 1073741824n };
/** The lower bound keygen accepts (libsodium's MEMLIMIT_MIN); reading accepts what libsodium does. */
export const MIN_KDF_MEMORY = 16n * 1024n * 1024n;

const COMMENT = 'untrusted comment: ';
const SECRET_KEY_BYTES = 158;
const SEALED_BYTES = 104;

export function keyIdHex(keyId: Uint8Array): string {
  return [...keyId].reverse().map((b) => b.toString(16).padStart(2, '0')).join('').toUpperCase();
}

export function generateKey(random: (n: number) => Uint8Array = _random): SecretKey {
  const seed = random(32);
  return { keyId: random(8), seed, publicKey: publicKeyOf(seed) };
}

export function formatPublicKey(key: PublicKey): string {
  const body = new Uint8Array(42);
  body.set([0x45, 0x64]);
  body.set(key.keyId, 2);
  body.set(key.publicKey, 10);
  return `${COMMENT}minisign public key ${keyIdHex(key.keyId)}\n${base64(body)}\n`;
}

/** Reads a public key file (what minisign reads: a comment line, then the key line). */
export function parsePublicKey(bytes: Uint8Array): PublicKey {
  const lines = fileLines(bytes);
  const body = lines.length === 2 ? strictBase64(lines[1] as Uint8Array, 42) : null;
  if (body === null || body[0] !== 0x45 || body[1] !== 0x64) {
    throw usage(
      'malformed_key',
      'not a minisign public key file (a comment line, then base64 of "Ed", an 8-byte key id and a 32-byte key)',
      'use the PREFIX.pub file written by `trust-protocol skill keygen` or `minisign -G`',
    );
  }
  return { keyId: body.slice(2, 10), publicKey: body.slice(10, 42) };
}

export function formatSecretKey(
  key: SecretKey,
  password: Uint8Array,
  options: { limits?: KdfLimits; random?: (n: number) => Uint8Array } = {},
): string {
  const limits = options.limits ?? MINISIGN_KDF;
  const salt = (options.random ?? _random)(32);
  const body = new Uint8Array(SECRET_KEY_BYTES);
  body.set([0x45, 0x64, 0x53, 0x63, 0x42, 0x32]); // "Ed" "Sc" "B2"
  body.set(salt, 6);
  body.set(_u64(limits.opsLimit), 38);
  body.set(_u64(limits.memLimit), 46);
  const sealed = body.subarray(54);
  sealed.set(key.keyId, 0);
  sealed.set(key.seed, 8);
  sealed.set(key.publicKey, 40);
  sealed.set(_checksum(key), 72);
  const stream = _stream(password, salt, limits);
  for (let i = 0; i < SEALED_BYTES; i++) sealed[i] = (sealed[i] as number) ^ (stream[i] as number);
  wipe(stream);
  const text = `${COMMENT}minisign encrypted secret key\n${base64(body)}\n`;
  wipe(body);
  return text;
}

export interface SecretKeyFile {
  encrypted: boolean;
  body: Uint8Array;
}

export function parseSecretKey(bytes: Uint8Array): SecretKeyFile {
  const lines = fileLines(bytes);
  const body = lines.length === 2 && startsWith(lines[0] as Uint8Array, COMMENT)
    ? strictBase64(lines[1] as Uint8Array, SECRET_KEY_BYTES)
    : null;
  const tag = body === null ? '' : String.fromCharCode(...body.subarray(0, 6));
  if (body === null || (tag !== 'EdScB2' && tag !== 'Ed\0\0B2')) {
    throw usage(
      'malformed_key',
      'not a minisign secret key file (Ed25519 key, scrypt or no KDF, BLAKE2b checksum)',
      'use the PREFIX.key file written by `trust-protocol skill keygen` or `minisign -G`',
    );
  }
  return { encrypted: tag === 'EdScB2', body };
}

/** Decrypts with the password (ignored for a key stored without one). Wrong password: exit 3. */
export function openSecretKey(file: SecretKeyFile, password: Uint8Array | null): SecretKey {
  const sealed = file.body.slice(54);
  if (file.encrypted) {
    if (password === null) throw usage('password_needed', 'this secret key needs its password');
    const limits = {
      opsLimit: _readU64(file.body.subarray(38, 46)),
      memLimit: _readU64(file.body.subarray(46, 54)),
    };
    const stream = _stream(password, file.body.subarray(6, 38), limits);
    for (let i = 0; i < SEALED_BYTES; i++) {
      sealed[i] = (sealed[i] as number) ^ (stream[i] as number);
    }
    wipe(stream);
  }
  const key = {
    keyId: sealed.slice(0, 8),
    seed: sealed.slice(8, 40),
    publicKey: sealed.slice(40, 72),
  };
  const checksumOk = secretEqual(_checksum(key), sealed.subarray(72, 104));
  wipe(sealed);
  if (file.encrypted && !checksumOk) {
    wipe(key.seed);
    throw new TpError('sealed', 'wrong_key_password', 'wrong password for this secret key', {
      hint: 'check the password source (--password-file, TRUST_PROTOCOL_PASSWORD or the prompt)',
    });
  }
  if (!secretEqual(publicKeyOf(key.seed), key.publicKey)) {
    wipe(key.seed);
    throw usage('malformed_key', 'the secret key file is damaged: its two halves do not match');
  }
  return key;
}

/**
 * libsodium's pickparams() for crypto_pwhash_scryptsalsa208sha256, which minisign calls with the
 * limits stored in the file: the same limits give the same scrypt parameters here.
 */
export function scryptParams(limits: KdfLimits): { N: number; r: number; p: number } {
  const ops = limits.opsLimit < 32768n ? 32768n : limits.opsLimit;
  const r = 8n;
  const maxN = ops < limits.memLimit / 32n ? ops / (r * 4n) : limits.memLimit / (r * 128n);
  let log2 = 1n;
  while (log2 < 63n && !(1n << log2 > maxN / 2n)) log2 += 1n;
  let p = 1n;
  if (!(ops < limits.memLimit / 32n)) {
    let maxrp = ops / 4n / (1n << log2);
    if (maxrp > 0x3fffffffn) maxrp = 0x3fffffffn;
    p = maxrp / r;
  }
  // Beyond minisign's own 1 GiB (N = 2^20) or twice its work (N * p): a damaged or hostile file
  // would only hang or exhaust memory.
  if (log2 > 20n || p < 1n || (1n << log2) * p > 1n << 21n) {
    throw usage(
      'kdf_params',
      `the secret key asks for scrypt N=2^${log2}, p=${p}, beyond minisign's N=2^20, p=1`,
    );
  }
  return { N: 2 ** Number(log2), r: Number(r), p: Number(p) };
}

/** The limits keygen stores for a memory budget: N = budget / 1 KiB, r = 8, p = 1. */
export function limitsForMemory(memLimit: bigint): KdfLimits {
  return { opsLimit: memLimit / 32n, memLimit };
}

function _stream(password: Uint8Array, salt: Uint8Array, limits: KdfLimits): Uint8Array {
  const { N, r, p } = scryptParams(limits);
  return scrypt(password, salt, { N, r, p, dkLen: SEALED_BYTES, maxmem: 128 * r * (N + p) + 1024 });
}

function _checksum(key: SecretKey): Uint8Array {
  return blake2b
    .create({ dkLen: 32 })
    .update(new Uint8Array([0x45, 0x64]))
    .update(key.keyId)
    .update(key.seed)
    .update(key.publicKey)
    .digest();
}

function _u64(n: bigint): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, n, true);
  return out;
}

function _readU64(bytes: Uint8Array): bigint {
  return new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
}

function _random(n: number): Uint8Array {
  return new Uint8Array(randomBytes(n));
}
