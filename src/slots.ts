/**
 * Key slots (vault format 2, docs/formats.md#key-slots), as LUKS has them: one per admin, each
 * opening the same data key with that admin's own password. A slot holds an X25519 key pair: the
 * private key wrapped under the Argon2id key of the admin's password, the public key in the clear,
 * and the data key sealed to the public key (ephemeral X25519, HKDF-SHA256, AES-256-GCM). Sealing
 * needs no password, so a new data key (`vault rekey`, #19) can be sealed to every slot without
 * the other admins' passwords. The whole slot list is under the vault MAC; the role is also in the
 * data-key seal's associated data, so an edited role fails even before the MAC is checked.
 */
import { Buffer } from 'node:buffer';
import {
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  type KeyObject,
} from 'node:crypto';
import type { Admin, Role } from './admins.ts';
import { fromB64, toB64, utf8, wipe } from './bytes.ts';
import { canonicalJson } from './canonical.ts';
import { open, randomBytes, seal } from './crypto/aead.ts';
import { deriveKey, type KdfParams } from './crypto/kdf.ts';
import { integrity } from './errors.ts';

export interface SlotKdf {
  algorithm: 'argon2id';
  memory_kib: number;
  iterations: number;
  parallelism: number;
  salt: string;
}

export interface Slot {
  name: string;
  role: Role;
  /** The admin's organisation (src/orgs.ts); absent: instance-wide, as every slot before it. */
  org?: string;
  created_at: string;
  kdf: SlotKdf;
  /** X25519 public key, 32 bytes, standard base64. */
  public_key: string;
  /** The X25519 private key, AES-256-GCM under the Argon2id key of the admin's password. */
  private_key: { nonce: string; ciphertext: string };
  /** The data key sealed to `public_key`: the ephemeral public key and AES-256-GCM. */
  key: { ephemeral: string; nonce: string; ciphertext: string };
}

// DER prefixes of X25519 keys (RFC 8410): node:crypto takes raw keys only through these or JWK.
const PKCS8 = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI = Buffer.from('302a300506032b656e032100', 'hex');

function _privateKey(raw: Uint8Array): KeyObject {
  return createPrivateKey({ key: Buffer.concat([PKCS8, raw]), format: 'der', type: 'pkcs8' });
}

function _publicKey(raw: Uint8Array): KeyObject {
  return createPublicKey({ key: Buffer.concat([SPKI, raw]), format: 'der', type: 'spki' });
}

function _rawPublic(k: KeyObject): Uint8Array {
  return new Uint8Array(k.export({ format: 'der', type: 'spki' }).subarray(SPKI.length));
}

function _keyPair(): { privateRaw: Uint8Array; publicRaw: Uint8Array } {
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  return {
    privateRaw: new Uint8Array(
      privateKey.export({ format: 'der', type: 'pkcs8' }).subarray(PKCS8.length),
    ),
    publicRaw: _rawPublic(publicKey),
  };
}

export function slotKdf(params: KdfParams, salt: Uint8Array = randomBytes(16)): SlotKdf {
  return {
    algorithm: 'argon2id',
    memory_kib: params.memoryKib,
    iterations: params.iterations,
    parallelism: params.parallelism,
    salt: toB64(salt),
  };
}

export function slotParams(kdf: SlotKdf): KdfParams {
  return { memoryKib: kdf.memory_kib, iterations: kdf.iterations, parallelism: kdf.parallelism };
}

function _privateAad(name: string, kdf: SlotKdf, publicKey: string): Uint8Array {
  return utf8.encode(
    canonicalJson({ v: 2, purpose: 'slot-private-key', name, kdf, public_key: publicKey }),
  );
}

function _keyAad(
  slot: Pick<Slot, 'name' | 'role' | 'org' | 'public_key'>,
  ephemeral: string,
): Uint8Array {
  const { name, role, org, public_key } = slot;
  // The org is bound only when there is one: slots made before organisations keep their AAD.
  return utf8.encode(
    canonicalJson({
      v: 2,
      purpose: 'slot-data-key',
      name,
      role,
      ...(org === undefined ? {} : { org }),
      public_key,
      ephemeral,
    }),
  );
}

function _sharedKey(secret: Uint8Array, ephemeral: string, publicKey: string): Uint8Array {
  const salt = utf8.encode(`${ephemeral}.${publicKey}`);
  return new Uint8Array(hkdfSync('sha256', secret, salt, 'trust-protocol/v2/slot-data-key', 32));
}

/** Seals the data key to a slot's public key (no password needed: `vault rekey`). */
export function sealToSlot(
  slot: Pick<Slot, 'name' | 'role' | 'org' | 'public_key'>,
  dataKey: Uint8Array,
): Slot['key'] {
  const eph = generateKeyPairSync('x25519');
  const ephemeral = toB64(_rawPublic(eph.publicKey));
  const shared = new Uint8Array(
    diffieHellman({
      privateKey: eph.privateKey,
      publicKey: _publicKey(fromB64(slot.public_key, 'slot.public_key')),
    }),
  );
  const k = _sharedKey(shared, ephemeral, slot.public_key);
  const s = seal(k, dataKey, _keyAad(slot, ephemeral));
  wipe(shared, k);
  return { ephemeral, nonce: toB64(s.nonce), ciphertext: toB64(s.ciphertext) };
}

/**
 * A slot from a key already derived from the password with `kdf` (a new slot, or a format-1 vault's
 * wrapping key reused when it is upgraded: no second Argon2id).
 */
export function slotWithKek(
  admin: Admin,
  kdf: SlotKdf,
  kek: Uint8Array,
  dataKey: Uint8Array,
  createdAt: string,
): Slot {
  const { privateRaw, publicRaw } = _keyPair();
  const publicKey = toB64(publicRaw);
  const wrapped = seal(kek, privateRaw, _privateAad(admin.name, kdf, publicKey));
  wipe(privateRaw);
  const base = {
    name: admin.name,
    role: admin.role,
    ...(admin.org === undefined ? {} : { org: admin.org }),
    public_key: publicKey,
  };
  return {
    ...base,
    created_at: createdAt,
    kdf,
    private_key: { nonce: toB64(wrapped.nonce), ciphertext: toB64(wrapped.ciphertext) },
    key: sealToSlot(base, dataKey),
  };
}

/** A new slot: one Argon2id of the password. */
export function newSlot(
  admin: Admin,
  password: Uint8Array,
  params: KdfParams,
  dataKey: Uint8Array,
  createdAt: string,
): Slot {
  const kdf = slotKdf(params);
  const kek = deriveKey(password, fromB64(kdf.salt, 'kdf.salt'), params);
  try {
    return slotWithKek(admin, kdf, kek, dataKey, createdAt);
  } finally {
    wipe(kek);
  }
}

/**
 * The data key, if `password` is this slot's (one Argon2id); null for another password. A slot
 * whose password opens but whose sealed data key does not (its role, name or keys were edited) is
 * an integrity failure, not a wrong password.
 */
export function openSlot(slot: Slot, password: Uint8Array): Uint8Array | null {
  const kek = deriveKey(password, fromB64(slot.kdf.salt, 'kdf.salt'), slotParams(slot.kdf));
  const privateRaw = open(
    kek,
    {
      nonce: fromB64(slot.private_key.nonce, 'private_key.nonce'),
      ciphertext: fromB64(slot.private_key.ciphertext, 'private_key.ciphertext'),
    },
    _privateAad(slot.name, slot.kdf, slot.public_key),
  );
  wipe(kek);
  if (privateRaw === null) return null;
  let dataKey: Uint8Array | null = null;
  try {
    const privateKey = _privateKey(privateRaw);
    if (toB64(_rawPublic(createPublicKey(privateKey))) === slot.public_key) {
      const shared = new Uint8Array(
        diffieHellman({
          privateKey,
          publicKey: _publicKey(fromB64(slot.key.ephemeral, 'key.ephemeral')),
        }),
      );
      const k = _sharedKey(shared, slot.key.ephemeral, slot.public_key);
      dataKey = open(
        k,
        {
          nonce: fromB64(slot.key.nonce, 'key.nonce'),
          ciphertext: fromB64(slot.key.ciphertext, 'key.ciphertext'),
        },
        _keyAad(slot, slot.key.ephemeral),
      );
      wipe(shared, k);
    }
  } catch {
    dataKey = null;
  } finally {
    wipe(privateRaw);
  }
  if (dataKey === null || dataKey.length !== 32) {
    throw integrity(
      'slot_binding',
      `key slot "${slot.name}" was edited: its password opens it but its data key does not match its name, role and organisation`,
      'restore vault.json from a backup; nothing was decrypted or sent',
    );
  }
  return dataKey;
}
