/**
 * C2SP signed notes (c2sp.org/signed-note), checkpoints (c2sp.org/tlog-checkpoint) and
 * cosignatures (c2sp.org/tlog-cosignature), Ed25519 only: what Go's golang.org/x/mod/sumdb/note
 * reads. A note is text lines, a blank line, then lines `— <name> base64(keyid || signature)`.
 * Key id = SHA-256(name || 0x0A || type || public key)[:4], type 0x01 for a note signature and
 * 0x04 for a cosignature (whose signature is preceded by a big-endian u64 timestamp and covers
 * "cosignature/v1\ntime T\n" + the note's text). A verifier key is `name+keyid(hex)+base64(type
 * || public key)`.
 */
import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import { publicKeyOf, sign, verify } from '../crypto/ed25519.ts';
import { TpError, usage } from '../errors.ts';
import type { Hash } from './merkle.ts';

export const ALG_ED25519 = 0x01;
export const ALG_COSIGNATURE_V1 = 0x04;
const DASH = '\u2014 ';

export interface VerifierKey {
  name: string;
  id: number;
  type: number;
  publicKey: Uint8Array;
}

export interface Checkpoint {
  origin: string;
  size: number;
  root: Hash;
  /** The note's text: the checkpoint body, which every signature covers. */
  text: string;
}

export interface NoteSignature {
  name: string;
  id: number;
  /** Signature bytes after the key id (a cosignature's start with its timestamp). */
  bytes: Uint8Array;
  line: string;
}

/** Whether `text` holds a control character (other than newlines when `newlines` is true). */
function _hasControl(text: string, newlines: boolean): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if ((c < 0x20 && !(newlines && c === 0x0a)) || c === 0x7f) return true;
  }
  return false;
}

function _bad(what: string): TpError {
  return usage('bad_note', `not a valid signed note: ${what}`);
}

export function keyId(name: string, type: number, publicKey: Uint8Array): number {
  const h = createHash('sha256').update(name).update('\n').update(new Uint8Array([type]))
    .update(publicKey).digest();
  return h.readUInt32BE(0);
}

/** A key name per the signed-note spec: non-empty, no spaces or plus signs, no control bytes. */
export function validName(name: string): boolean {
  return name.length > 0 && name.length <= 255 && !/[\s+]/.test(name) && !_hasControl(name, false);
}

export function formatVerifierKey(name: string, type: number, publicKey: Uint8Array): string {
  const id = keyId(name, type, publicKey).toString(16).padStart(8, '0');
  return `${name}+${id}+${Buffer.from([type, ...publicKey]).toString('base64')}`;
}

export function parseVerifierKey(text: string): VerifierKey {
  const m = /^([^+\s]+)\+([0-9a-f]{8})\+([A-Za-z0-9+/]+=*)$/.exec(text.trim());
  const bad = () =>
    usage('bad_key', 'not a verifier key', 'expected NAME+KEYID+BASE64, as `audit key` prints');
  if (m === null || !validName(m[1]!)) throw bad();
  const raw = Buffer.from(m[3]!, 'base64');
  if (raw.length !== 33 || raw.toString('base64') !== m[3]) throw bad();
  const type = raw[0]!;
  const publicKey = new Uint8Array(raw.subarray(1));
  if (type !== ALG_ED25519 && type !== ALG_COSIGNATURE_V1) throw bad();
  const id = parseInt(m[2]!, 16);
  if (id !== keyId(m[1]!, type, publicKey)) {
    throw usage('bad_key', 'the verifier key does not match its key id: it was changed');
  }
  return { name: m[1]!, id, type, publicKey };
}

/** The body and signatures of a note; throws on anything the spec does not allow. */
export function parseNote(note: string): { text: string; signatures: NoteSignature[] } {
  if (note.length > 1024 * 1024 || _hasControl(note, true)) {
    throw _bad('it holds control characters or is too large');
  }
  const split = note.lastIndexOf('\n\n');
  if (split < 0 || !note.endsWith('\n')) throw _bad('no blank line before the signatures');
  const text = note.slice(0, split + 1);
  const signatures: NoteSignature[] = [];
  for (const line of note.slice(split + 2, -1).split('\n')) {
    const m = new RegExp(`^${DASH}(\\S+) ([A-Za-z0-9+/]+=*)$`).exec(line);
    if (m === null || !validName(m[1]!)) throw _bad(`malformed signature line "${line}"`);
    const raw = Buffer.from(m[2]!, 'base64');
    if (raw.length < 5 || raw.toString('base64') !== m[2]) throw _bad('malformed signature');
    signatures.push({
      name: m[1]!,
      id: raw.readUInt32BE(0),
      bytes: new Uint8Array(raw.subarray(4)),
      line,
    });
  }
  if (signatures.length === 0) throw _bad('no signature');
  return { text, signatures };
}

function _sigLine(name: string, id: number, bytes: Uint8Array): string {
  const raw = Buffer.alloc(4 + bytes.length);
  raw.writeUInt32BE(id, 0);
  raw.set(bytes, 4);
  return `${DASH}${name} ${raw.toString('base64')}`;
}

export function checkpointText(origin: string, size: number, root: Hash): string {
  return `${origin}\n${size}\n${Buffer.from(root).toString('base64')}\n`;
}

/** A checkpoint note signed by the log's key (`name` is the origin). */
export function signCheckpoint(origin: string, size: number, root: Hash, seed: Uint8Array): string {
  const text = checkpointText(origin, size, root);
  const pub = publicKeyOf(seed);
  const sig = sign(Buffer.from(text, 'utf8'), seed);
  return `${text}\n${_sigLine(origin, keyId(origin, ALG_ED25519, pub), sig)}\n`;
}

function _cosigned(text: string, time: number): Uint8Array {
  return Buffer.from(`cosignature/v1\ntime ${time}\n${text}`, 'utf8');
}

/** The note with a cosignature by the witness key `seed` named `name` appended. */
export function cosign(note: string, name: string, seed: Uint8Array, time: number): string {
  const { text } = parseNote(note);
  const pub = publicKeyOf(seed);
  const ts = Buffer.alloc(8);
  ts.writeBigUInt64BE(BigInt(time));
  const sig = sign(_cosigned(text, time), seed);
  const line = _sigLine(name, keyId(name, ALG_COSIGNATURE_V1, pub), Buffer.concat([ts, sig]));
  return `${note}${line}\n`;
}

/** Whether `sig` is a valid signature of the note `text` by `key` (either kind). */
export function signatureValid(text: string, sig: NoteSignature, key: VerifierKey): boolean {
  if (sig.name !== key.name || sig.id !== key.id) return false;
  if (key.type === ALG_ED25519) {
    return sig.bytes.length === 64 && verify(sig.bytes, Buffer.from(text, 'utf8'), key.publicKey);
  }
  if (sig.bytes.length !== 72) return false;
  const time = Buffer.from(sig.bytes).readBigUInt64BE(0);
  if (time >= 2n ** 63n) return false;
  return verify(sig.bytes.subarray(8), _cosigned(text, Number(time)), key.publicKey);
}

/**
 * Opens a checkpoint note signed by `logKey`: checks the signature and the body's three lines.
 * Throws (verification) when the signature is missing or wrong.
 */
export function openCheckpoint(note: string, logKey: VerifierKey): Checkpoint {
  const { text, signatures } = parseNote(note);
  if (logKey.type !== ALG_ED25519) throw usage('bad_key', 'that is a witness key, not a log key');
  const mine = signatures.filter((s) => s.name === logKey.name && s.id === logKey.id);
  if (mine.length === 0) {
    throw new TpError(
      'verification',
      'checkpoint_key',
      `the checkpoint is not signed by ${logKey.name} with this key`,
    );
  }
  if (!mine.every((s) => signatureValid(text, s, logKey))) {
    throw new TpError(
      'verification',
      'checkpoint_signature',
      "the checkpoint's signature does not verify: it was changed or forged",
    );
  }
  return { ...parseCheckpointText(text), text };
}

export function parseCheckpointText(text: string): Omit<Checkpoint, 'text'> {
  const lines = text.split('\n');
  const [origin, size, root] = lines;
  if (
    origin === undefined || origin === '' || size === undefined ||
    !/^(0|[1-9]\d{0,15})$/.test(size) ||
    root === undefined
  ) {
    throw _bad('not a checkpoint (origin, size, root hash)');
  }
  const hash = Buffer.from(root, 'base64');
  if (hash.length !== 32 || hash.toString('base64') !== root) throw _bad('bad root hash');
  return { origin, size: Number(size), root: new Uint8Array(hash) };
}

/** How many of `witnesses` cosigned the note validly; forged or unknown lines count for nothing. */
export function validCosigners(note: string, witnesses: readonly VerifierKey[]): string[] {
  const { text, signatures } = parseNote(note);
  const ok: string[] = [];
  for (const w of witnesses) {
    if (w.type !== ALG_COSIGNATURE_V1) continue;
    if (signatures.some((s) => signatureValid(text, s, w))) ok.push(w.name);
  }
  return [...new Set(ok)];
}
