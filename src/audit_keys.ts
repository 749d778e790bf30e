/**
 * The audit MAC keys of a vault across `vault rekey` (#19). The audit key derives from the data
 * key, so a rekey gives later entries a new key; the vault keeps each earlier key, wrapped under
 * the current data key (`body.audit_keys`, docs/formats.md), with the last entry it MACed. A reader
 * checks an entry under the key of its position: entries up to and including a rekey entry under
 * the key before it, later ones under the next. A removed admin who kept an old data key can
 * therefore forge nothing after the rekey that removed them.
 */
import { digestHmacer } from './crypto/hmac.ts';

/** An earlier audit key: it MACed the entries numbered up to `through` (after the previous one). */
export interface OlderAuditKey {
  through: number;
  key: Uint8Array;
}

/** The current audit key and the earlier ones, oldest first. */
export interface AuditKeyring {
  current: Uint8Array;
  older: readonly OlderAuditKey[];
}

/** What a reader checks MACs with: one key, or a vault's keys across rekeys. */
export type MacKey = Uint8Array | AuditKeyring;

/** The HMAC (hex) of an entry's digest under the key for the entry numbered `seq`. */
export interface SeqHmac {
  (digestHex: string, seq: number): string;
  /** True when every entry has the same key: the caller need not find the entry's number. */
  readonly single: boolean;
  wipe(): void;
}

export function seqHmacer(macKey: MacKey): SeqHmac {
  const ring: AuditKeyring = macKey instanceof Uint8Array ? { current: macKey, older: [] } : macKey;
  const older = [...ring.older].sort((a, b) => a.through - b.through)
    .map((o) => ({ through: o.through, mac: digestHmacer(o.key) }));
  const current = digestHmacer(ring.current);
  const mac = ((digestHex: string, seq: number) => {
    for (const o of older) if (seq <= o.through) return o.mac(digestHex);
    return current(digestHex);
  }) as SeqHmac & { single: boolean };
  mac.single = older.length === 0;
  mac.wipe = () => {
    current.wipe();
    for (const o of older) o.mac.wipe();
  };
  return mac;
}

/** The key new entries are MACed with. */
export function currentKey(macKey: MacKey): Uint8Array {
  return macKey instanceof Uint8Array ? macKey : macKey.current;
}

/** A copy the holder may wipe on its own (serve's follower outlives a request's keys). */
export function copyMacKey(macKey: MacKey): AuditKeyring {
  const ring: AuditKeyring = macKey instanceof Uint8Array ? { current: macKey, older: [] } : macKey;
  return {
    current: ring.current.slice(),
    older: ring.older.map((o) => ({ through: o.through, key: o.key.slice() })),
  };
}

export function wipeMacKey(macKey: MacKey): void {
  const ring: AuditKeyring = macKey instanceof Uint8Array ? { current: macKey, older: [] } : macKey;
  ring.current.fill(0);
  for (const o of ring.older) o.key.fill(0);
}
