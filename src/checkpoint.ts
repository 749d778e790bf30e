/**
 * Audit checkpoints (docs/formats.md#checkpoint): the log's head signed with an Ed25519 key
 * derived from the vault's data key. A user keeps the file elsewhere; `audit verify --checkpoint`
 * then proves the log still contains and extends that head, even if log and vault were both
 * rolled back to an older copy.
 */
import { canonicalJson } from './canonical.ts';
import { fromB64, toB64, utf8 } from './bytes.ts';
import { subkey } from './crypto/aead.ts';
import { publicKeyOf, sign, verify } from './crypto/ed25519.ts';
import { TpError, usage } from './errors.ts';
import type { Head } from './audit_verify.ts';
import { int, obj, str } from './validate.ts';

export const CHECKPOINT_FORMAT = 'trust-protocol/audit-checkpoint';
export const CHECKPOINT_VERSION = 1;

export interface Checkpoint {
  format: typeof CHECKPOINT_FORMAT;
  version: typeof CHECKPOINT_VERSION;
  seq: number;
  hash: string;
  created_at: string;
  public_key: string;
  signature: string;
}

function _signed(c: Omit<Checkpoint, 'signature'>): Uint8Array {
  const { format, version, seq, hash, created_at, public_key } = c;
  return utf8.encode(canonicalJson({ format, version, seq, hash, created_at, public_key }));
}

export function checkpointKey(dataKey: Uint8Array): { seed: Uint8Array; publicKey: Uint8Array } {
  const seed = subkey(dataKey, 'audit-checkpoint-ed25519');
  return { seed, publicKey: publicKeyOf(seed) };
}

export function createCheckpoint(head: Head, dataKey: Uint8Array, now: Date): Checkpoint {
  const { seed, publicKey } = checkpointKey(dataKey);
  const unsigned = {
    format: CHECKPOINT_FORMAT,
    version: CHECKPOINT_VERSION,
    seq: head.seq,
    hash: head.hash,
    created_at: now.toISOString(),
    public_key: toB64(publicKey),
  } as const;
  const signature = toB64(sign(_signed(unsigned), seed));
  seed.fill(0);
  return { ...unsigned, signature };
}

/**
 * Parses and checks a checkpoint's signature. `expectedKey` (derived from the vault when the
 * password is known) must match the embedded key; without it the embedded key is used, which is
 * as trustworthy as the place the user kept the file.
 */
export function readCheckpoint(text: string, expectedKey: Uint8Array | null): Checkpoint {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw usage('bad_checkpoint', 'the checkpoint file is not valid JSON');
  }
  let c: Checkpoint;
  try {
    const o = obj(raw, 'checkpoint');
    if (o.format !== CHECKPOINT_FORMAT || o.version !== CHECKPOINT_VERSION) {
      throw new Error('not a version 1 checkpoint');
    }
    c = {
      format: CHECKPOINT_FORMAT,
      version: CHECKPOINT_VERSION,
      seq: int(o.seq, 'seq'),
      hash: str(o.hash, 'hash'),
      created_at: str(o.created_at, 'created_at'),
      public_key: str(o.public_key, 'public_key'),
      signature: str(o.signature, 'signature'),
    };
  } catch (e) {
    throw usage(
      'bad_checkpoint',
      `the checkpoint file is malformed: ${e instanceof Error ? e.message : String(e)}`,
    );
  }
  let key: Uint8Array;
  let signature: Uint8Array;
  try {
    key = fromB64(c.public_key, 'public_key');
    signature = fromB64(c.signature, 'signature');
  } catch (e) {
    throw usage(
      'bad_checkpoint',
      `the checkpoint file is malformed: ${e instanceof Error ? e.message : String(e)}`,
    );
  }
  if (expectedKey !== null && toB64(expectedKey) !== c.public_key) {
    throw new TpError(
      'verification',
      'checkpoint_key',
      "the checkpoint was signed by another vault's key",
    );
  }
  if (!verify(signature, _signed(c), key)) {
    throw new TpError(
      'verification',
      'checkpoint_signature',
      "the checkpoint's signature does not verify: the file was changed",
    );
  }
  return c;
}
