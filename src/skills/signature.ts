/**
 * minisign signature files (docs/formats-skills.md#signature), four lines:
 *   untrusted comment: <anything>
 *   base64(algorithm (2) || key id (8) || Ed25519 signature (64))
 *   trusted comment: <text>
 *   base64(Ed25519 signature over the 64 signature bytes || the trusted comment's bytes)
 * Algorithm "ED" signs BLAKE2b-512 of the file (prehashed, minisign's default and what `skill
 * sign` writes); legacy "Ed" signs the file itself (`minisign -S -l`), accepted when verifying.
 */
import { blake2b } from '@noble/hashes/blake2.js';
import { Buffer } from 'node:buffer';
import { secretEqual } from '../bytes.ts';
import {
  type PointProblem,
  publicKeyProblem,
  sign,
  signatureProblem,
  verify,
} from '../crypto/ed25519.ts';
import { usage } from '../errors.ts';
import type { PublicKey, SecretKey } from './keys.ts';
import { keyIdHex } from './keys.ts';
import { base64, fileLines, startsWith, strictBase64 } from './text.ts';

const UNTRUSTED = 'untrusted comment: ';
const TRUSTED = 'trusted comment: ';
/** minisign reads lines into fixed buffers: longer comments would be split and misread there. */
const UNTRUSTED_MAX = 1024;
const TRUSTED_MAX = 8192 - TRUSTED.length - 1;

export interface Signature {
  prehashed: boolean;
  keyId: Uint8Array;
  signature: Uint8Array;
  /** The trusted comment's bytes, exactly as signed. */
  trustedComment: Uint8Array;
  globalSignature: Uint8Array;
}

export type SignatureProblemKind =
  | 'wrong_key'
  | 'bad_signature'
  | 'bad_comment_signature'
  | 'non_canonical_key'
  | 'small_order_key'
  | 'malformed_key'
  | 'non_canonical_signature'
  | 'small_order_signature';

export interface SignatureFinding {
  kind: SignatureProblemKind;
  detail: string;
}

export function signFile(
  message: Uint8Array,
  key: SecretKey,
  options: { trustedComment: string; untrustedComment: string },
): Uint8Array {
  const comment = Buffer.from(options.trustedComment, 'utf8');
  if (/[\r\n\0]/.test(options.trustedComment) || comment.length > TRUSTED_MAX) {
    throw usage('bad_comment', 'the trusted comment must be one line of at most 8 KiB');
  }
  const signature = sign(blake2b(message), key.seed);
  const global = sign(new Uint8Array(Buffer.concat([signature, comment])), key.seed);
  const head = new Uint8Array(74);
  head.set([0x45, 0x44]); // "ED": prehashed
  head.set(key.keyId, 2);
  head.set(signature, 10);
  return new Uint8Array(Buffer.from(
    `${UNTRUSTED}${options.untrustedComment}\n${base64(head)}\n` +
      `${TRUSTED}${options.trustedComment}\n${base64(global)}\n`,
    'utf8',
  ));
}

/** Parses a signature file; throws a TpError (code `malformed_signature`) naming what is wrong. */
export function parseSignature(bytes: Uint8Array): Signature {
  const lines = fileLines(bytes);
  const fail = (what: string) => {
    throw usage('malformed_signature', `the signature file is malformed: ${what}`);
  };
  if (lines.length !== 4) fail(`expected 4 lines, found ${lines.length}`);
  const [untrusted, head, trusted, global] = lines as [
    Uint8Array,
    Uint8Array,
    Uint8Array,
    Uint8Array,
  ];
  if (!startsWith(untrusted, UNTRUSTED) || untrusted.length >= UNTRUSTED_MAX) {
    fail('line 1 is not an "untrusted comment: " line of less than 1 KiB');
  }
  const sig = strictBase64(head, 74);
  if (sig === null) fail('line 2 is not base64 of a 74-byte signature');
  const algorithm = String.fromCharCode(
    (sig as Uint8Array)[0] as number,
    (sig as Uint8Array)[1] as number,
  );
  if (algorithm !== 'ED' && algorithm !== 'Ed') fail(`unsupported algorithm "${algorithm}"`);
  if (!startsWith(trusted, TRUSTED) || trusted.length - TRUSTED.length > TRUSTED_MAX) {
    fail('line 3 is not a "trusted comment: " line of at most 8 KiB');
  }
  const comment = trusted.slice(TRUSTED.length);
  if (comment.includes(0) || comment.includes(0x0d)) fail('the trusted comment holds a NUL or CR');
  const globalSignature = strictBase64(global, 64);
  if (globalSignature === null) fail('line 4 is not base64 of a 64-byte signature');
  return {
    prehashed: algorithm === 'ED',
    keyId: (sig as Uint8Array).slice(2, 10),
    signature: (sig as Uint8Array).slice(10, 74),
    trustedComment: comment,
    globalSignature: globalSignature as Uint8Array,
  };
}

/**
 * Every reason the signature does not hold for `message` under `key`; empty when it does (both
 * the signature over the file and the one over the trusted comment). Pure.
 */
export function checkSignature(
  sig: Signature,
  message: Uint8Array,
  key: PublicKey,
): SignatureFinding[] {
  if (!secretEqual(sig.keyId, key.keyId)) {
    return [{
      kind: 'wrong_key',
      detail: `signed by key ${keyIdHex(sig.keyId)}, not by the trusted key ${keyIdHex(key.keyId)}`,
    }];
  }
  const findings: SignatureFinding[] = [];
  const keyProblem = publicKeyProblem(key.publicKey);
  if (keyProblem !== null) findings.push(_pointFinding(keyProblem, 'key', 'the public key'));
  for (
    const [what, bytes] of [['signature', sig.signature], [
      'comment signature',
      sig.globalSignature,
    ]] as const
  ) {
    const problem = signatureProblem(bytes);
    if (problem !== null) findings.push(_pointFinding(problem, 'signature', `the ${what}`));
  }
  if (findings.length > 0) return findings;
  const signed = sig.prehashed ? blake2b(message) : message;
  if (!verify(sig.signature, signed, key.publicKey)) {
    findings.push({
      kind: 'bad_signature',
      detail:
        'the signature does not match the manifest: the manifest was changed or signed by another key',
    });
  }
  const global = new Uint8Array(Buffer.concat([sig.signature, sig.trustedComment]));
  if (!verify(sig.globalSignature, global, key.publicKey)) {
    findings.push({
      kind: 'bad_comment_signature',
      detail: 'the trusted comment (name, version, publisher, expiry) was changed after signing',
    });
  }
  return findings;
}

function _pointFinding(
  problem: PointProblem,
  target: 'key' | 'signature',
  what: string,
): SignatureFinding {
  if (problem === 'non_canonical') {
    return {
      kind: `non_canonical_${target}`,
      detail: `${what} is a non-canonical encoding (y >= p, a signed zero x, or S >= L)`,
    };
  }
  if (problem === 'malformed') {
    return target === 'key'
      ? { kind: 'malformed_key', detail: `${what} is not a point on the curve` }
      : { kind: 'bad_signature', detail: `${what} does not encode a curve point` };
  }
  return {
    kind: `small_order_${target}`,
    detail: problem === 'small_order'
      ? `${what} is a small-order point (it would verify forged signatures)`
      : `${what} has a small-order component (not in the prime-order subgroup)`,
  };
}
