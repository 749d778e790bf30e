/**
 * Which key a skill must be signed with, from a public key file (`--key`) or a registered
 * publisher (`--publisher`), with what the publisher list says about it. Pure.
 *
 * The publisher list must come from a vault whose MAC was checked with the password: a list
 * read without it is the agent's to edit, so it could plant a name or delete a revocation
 * (#14). The caller passes an empty list when there is no vault.
 */
import { Buffer } from 'node:buffer';
import type { PublisherRecord } from '../vault.ts';
import { keyIdHex, parsePublicKey, type PublicKey } from './keys.ts';
import type { Problem, Trust } from './verify.ts';

export function trustFromKeyFile(bytes: Uint8Array, publishers: readonly PublisherRecord[]): Trust {
  let key: PublicKey;
  try {
    key = parsePublicKey(bytes);
  } catch (e) {
    return {
      key: null,
      publisher: null,
      problems: [{ kind: 'malformed_key', detail: (e as Error).message }],
    };
  }
  const b64 = Buffer.from(key.publicKey).toString('base64');
  const record = publishers.find((p) => p.key_id === keyIdHex(key.keyId) && p.public_key === b64);
  return {
    key,
    publisher: record?.name ?? null,
    problems: record === undefined ? [] : _revocation(record),
  };
}

export function trustFromPublisher(name: string, publishers: readonly PublisherRecord[]): Trust {
  const record = publishers.find((p) => p.name === name);
  if (record === undefined) {
    return {
      key: null,
      publisher: null,
      problems: [{
        kind: 'unknown_publisher',
        detail: `no publisher named ${JSON.stringify(name)} is registered (see \`publisher list\`)`,
      }],
    };
  }
  const key = publicKeyOfRecord(record);
  if (key === null) {
    return {
      key: null,
      publisher: record.name,
      problems: [{
        kind: 'malformed_key',
        detail: `the key recorded for ${record.name} is malformed`,
      }],
    };
  }
  return { key, publisher: record.name, problems: _revocation(record) };
}

export function publicKeyOfRecord(record: PublisherRecord): PublicKey | null {
  const publicKey = Buffer.from(record.public_key, 'base64');
  if (!/^[0-9A-F]{16}$/.test(record.key_id) || publicKey.length !== 32) return null;
  const keyId = Buffer.from(record.key_id, 'hex').reverse();
  return { keyId: new Uint8Array(keyId), publicKey: new Uint8Array(publicKey) };
}

function _revocation(record: PublisherRecord): Problem[] {
  if (record.revoked_at === null) return [];
  return [{
    kind: 'revoked_publisher',
    detail: `publisher ${record.name} (key ${record.key_id}) was revoked at ${record.revoked_at}: ${
      record.revoke_reason ?? 'no reason given'
    }`,
  }];
}
