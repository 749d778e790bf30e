/**
 * HMAC-SHA256, the MAC of the audit trail, the vault, monitor state and config.json.
 *
 * `digestHmacer` is RFC 2104 written out for the audit trail's case (a 32-byte digest per entry,
 * thousands of entries under one key): the padded keys are computed once, where node's createHmac
 * would set the key up again for every entry. Its pads are key material, so it has `wipe()`;
 * test/audit_verify.test.ts checks it against createHmac. For one-off MACs, `hmacSha256Hex`.
 */
import { Buffer } from 'node:buffer';
import { createHmac, hash } from 'node:crypto';

export interface DigestHmac {
  /** The HMAC (hex) of a digest given in hex. */
  (digestHex: string): string;
  /** Zeroes the padded keys; the function throws if called afterwards. */
  wipe(): void;
}

export function digestHmacer(key: Uint8Array): DigestHmac {
  const block = Buffer.alloc(64);
  if (key.length > 64) Buffer.from(hash('sha256', key, 'buffer')).copy(block);
  else Buffer.from(key).copy(block);
  const inner = Buffer.alloc(96);
  const outer = Buffer.alloc(96);
  for (let i = 0; i < 64; i++) {
    inner[i] = (block[i] as number) ^ 0x36;
    outer[i] = (block[i] as number) ^ 0x5c;
  }
  block.fill(0);
  let wiped = false;
  const mac = ((digestHex: string) => {
    if (wiped) throw new Error('digestHmacer: used after wipe()');
    inner.write(digestHex, 64, 'hex');
    // Hex output is cheaper than a Buffer here: no allocation per call.
    outer.write(hash('sha256', inner, 'hex'), 64, 'hex');
    return hash('sha256', outer, 'hex');
  }) as DigestHmac;
  mac.wipe = () => {
    wiped = true;
    inner.fill(0);
    outer.fill(0);
  };
  return mac;
}

/** HMAC-SHA256 of `data` under `key`, in hex. */
export function hmacSha256Hex(key: Uint8Array, data: string | Uint8Array): string {
  return createHmac('sha256', key).update(data).digest('hex');
}
