/**
 * Skill verification as a pure function over what scan.ts and trust.ts loaded: the folder as
 * seen, the manifest and signature bytes, the trusted key and the clock. It never stops at the
 * first problem: the verdict lists every one, each with a stable kind (docs/formats-skills.md).
 */
import { escapeControls } from '../bytes.ts';
import { parseComment, type SkillMeta } from './comment.ts';
import { keyIdHex, type PublicKey } from './keys.ts';
import {
  comparePaths,
  type FileMode,
  MANIFEST_FILE,
  type ManifestEntry,
  parseManifest,
  pathProblem,
  SIGNATURE_FILE,
} from './manifest.ts';
import type { Loaded, Seen } from './scan.ts';
import { checkSignature, parseSignature, type Signature } from './signature.ts';
import { decodeUtf8Strict } from '../bytes.ts';

export const PROBLEM_KINDS = [
  'missing_manifest',
  'missing_signature',
  'malformed_manifest',
  'malformed_signature',
  'malformed_comment',
  'malformed_key',
  'wrong_key',
  'bad_signature',
  'bad_comment_signature',
  'non_canonical_key',
  'small_order_key',
  'non_canonical_signature',
  'small_order_signature',
  'unknown_publisher',
  'revoked_publisher',
  'publisher_mismatch',
  'expired',
  'modified',
  'added',
  'removed',
  'renamed',
  'mode_changed',
  'symlink',
  'special_file',
  'unsafe_path',
  'case_collision',
  'unicode_collision',
  'unreadable',
] as const;
export type ProblemKind = (typeof PROBLEM_KINDS)[number];

export interface Problem {
  kind: ProblemKind;
  path?: string;
  detail: string;
}

/** The key to verify with and what is known about its publisher (trust.ts). */
export interface Trust {
  /** Null when no key could be loaded; the reason is among `problems`. */
  key: PublicKey | null;
  /** The publisher's name when the key is a registered publisher. */
  publisher: string | null;
  problems: Problem[];
}

export interface VerifyInput {
  seen: readonly Seen[];
  manifest: Loaded;
  signature: Loaded;
  trust: Trust;
  now: Date;
}

export interface Verdict {
  ok: boolean;
  problems: Problem[];
  /** From the trusted comment, only when its signature holds; otherwise null. */
  name: string | null;
  version: string | null;
  publisher: string | null;
  key_id: string | null;
  expires: string | null;
  signed: string | null;
  files: number;
}

export function verifySkill(input: VerifyInput): Verdict {
  const problems: Problem[] = [...input.trust.problems, ...treeProblems(input.seen)];
  const entries = _manifestEntries(input.manifest, problems);
  const sig = _signature(input.signature, problems);
  let meta: SkillMeta | null = null;
  if (sig !== null && input.trust.key !== null && 'bytes' in input.manifest) {
    meta = _checkSigned(sig, input.manifest.bytes, input.trust.key, problems);
  }
  if (meta !== null && sig !== null) {
    if (meta.publisher !== keyIdHex(sig.keyId)) {
      problems.push({
        kind: 'publisher_mismatch',
        detail: `the trusted comment names publisher ${meta.publisher} but key ${
          keyIdHex(sig.keyId)
        } signed`,
      });
    }
    if (meta.expires !== null && input.now.getTime() >= Date.parse(meta.expires)) {
      problems.push({ kind: 'expired', detail: `the signature expired at ${meta.expires}` });
    }
  }
  if (entries !== null) problems.push(..._listedProblems(entries, input.seen));
  const unique = _dedupe(problems);
  return {
    ok: unique.length === 0,
    problems: unique,
    name: meta?.name ?? null,
    version: meta?.version ?? null,
    publisher: input.trust.publisher,
    key_id: sig !== null ? keyIdHex(sig.keyId) : input.trust.key && keyIdHex(input.trust.key.keyId),
    expires: meta?.expires ?? null,
    signed: meta?.signed ?? null,
    files: entries?.length ?? 0,
  };
}

/** What in the folder itself can never be part of a valid skill (signing refuses it too). */
export function treeProblems(seen: readonly Seen[]): Problem[] {
  const problems: Problem[] = [];
  for (const s of seen) {
    const why = pathProblem(s.path);
    if (why !== null) {
      problems.push({ kind: 'unsafe_path', path: s.path, detail: `the name ${why}` });
    }
    if (s.kind === 'symlink') {
      problems.push({
        kind: 'symlink',
        path: s.path,
        detail: `is a symbolic link${
          s.target === '' ? '' : ` to ${escapeControls(s.target)}`
        }; a skill may contain only files and folders`,
      });
    } else if (s.kind === 'special') {
      problems.push({
        kind: 'special_file',
        path: s.path,
        detail: 'is not a regular file or folder (a device, FIFO or socket)',
      });
    } else if (s.kind === 'unreadable' && why === null) {
      problems.push({ kind: 'unreadable', path: s.path, detail: `cannot be read (${s.error})` });
    }
  }
  problems.push(...collisionProblems(seen.map((s) => s.path)));
  return problems;
}

/**
 * Names that would become one on a case-insensitive file system (Windows, macOS by default) or
 * that differ only in Unicode normalisation (NFC vs NFD: one name on macOS). Folders are checked
 * too; a collision is reported once, at the highest level where it happens.
 */
export function collisionProblems(paths: readonly string[]): Problem[] {
  const all = new Set<string>();
  for (const p of paths) {
    const parts = p.split('/');
    for (let i = 1; i <= parts.length; i++) all.add(parts.slice(0, i).join('/'));
  }
  const groups = new Map<string, string[]>();
  for (const p of all) {
    const key = _fold(p);
    groups.set(key, [...(groups.get(key) ?? []), p]);
  }
  const colliding = new Set<string>();
  const problems: Problem[] = [];
  const byDepth = [...groups.entries()]
    .filter(([, names]) => names.length > 1)
    .sort(([a], [b]) => a.split('/').length - b.split('/').length || comparePaths(a, b));
  for (const [key, names] of byDepth) {
    colliding.add(key);
    const parent = key.slice(0, Math.max(0, key.lastIndexOf('/')));
    if (parent !== '' && _hasCollidingAncestor(parent, colliding)) continue;
    const sorted = names.sort(comparePaths);
    const unicodeOnly = new Set(sorted.map((n) => n.normalize('NFC'))).size === 1;
    problems.push({
      kind: unicodeOnly ? 'unicode_collision' : 'case_collision',
      path: sorted[0] as string,
      detail: `${sorted.map((n) => JSON.stringify(n)).join(' and ')} ${
        unicodeOnly
          ? 'differ only in Unicode normalisation (NFC/NFD) and are one name on macOS'
          : 'differ only in case and are one name on a case-insensitive file system'
      }`,
    });
  }
  return problems;
}

/** The folder against the manifest: every change, each file once. */
export function compareFiles(entries: readonly ManifestEntry[], seen: readonly Seen[]): Problem[] {
  const problems: Problem[] = [];
  const modeChanged = (e: ManifestEntry, now: FileMode, at: string): void => {
    if (now === e.mode) return;
    problems.push({
      kind: 'mode_changed',
      path: at,
      detail: e.mode === 0o755
        ? 'was signed executable (0755) and is not any more'
        : 'was signed non-executable (0644) and is executable now',
    });
  };
  const files = new Map<string, Extract<Seen, { kind: 'file' }>>();
  const other = new Set<string>();
  for (const s of seen) {
    if (s.kind === 'file') files.set(s.path, s);
    else if (s.kind !== 'dir') other.add(s.path);
  }
  const listed = new Set(entries.map((e) => e.path));
  const removed: ManifestEntry[] = [];
  for (const e of entries) {
    const f = files.get(e.path);
    if (f === undefined) {
      // A link or unreadable file in its place is reported as that already.
      if (!other.has(e.path)) removed.push(e);
      continue;
    }
    if (f.sha256 !== e.sha256 || f.size !== e.size) {
      problems.push({
        kind: 'modified',
        path: e.path,
        detail: f.size === e.size
          ? `content changed (same size, ${e.size} bytes)`
          : `content changed (${e.size} bytes signed, ${f.size} now)`,
      });
    }
    modeChanged(e, f.mode, e.path);
  }
  const added = [...files.values()].filter((f) => !listed.has(f.path));
  for (const r of removed) {
    const i = added.findIndex((a) => a.sha256 === r.sha256 && a.size === r.size);
    if (i >= 0) {
      const a = added.splice(i, 1)[0] as Extract<Seen, { kind: 'file' }>;
      problems.push({
        kind: 'renamed',
        path: a.path,
        detail: `${JSON.stringify(r.path)} was renamed to ${JSON.stringify(a.path)}`,
      });
      modeChanged(r, a.mode, a.path);
    } else {
      problems.push({
        kind: 'removed',
        path: r.path,
        detail: 'is listed in the manifest but missing',
      });
    }
  }
  for (const a of added) {
    problems.push({ kind: 'added', path: a.path, detail: 'is not listed in the manifest' });
  }
  return problems;
}

/** Unsafe and colliding paths in the manifest, then the folder compared with the safe ones. */
function _listedProblems(entries: readonly ManifestEntry[], seen: readonly Seen[]): Problem[] {
  const problems: Problem[] = [];
  const safe = entries.filter((e) => {
    const why = pathProblem(e.path);
    if (why !== null) {
      problems.push({
        kind: 'unsafe_path',
        path: e.path,
        detail: `the manifest lists a path that ${why}`,
      });
    }
    return why === null;
  });
  return [...problems, ...collisionProblems(safe.map((e) => e.path)), ...compareFiles(safe, seen)];
}

function _manifestEntries(manifest: Loaded, problems: Problem[]): ManifestEntry[] | null {
  if ('missing' in manifest) {
    problems.push({
      kind: 'missing_manifest',
      detail: `there is no ${MANIFEST_FILE}: the folder was never signed, or it was removed`,
    });
    return null;
  }
  if ('problem' in manifest) {
    problems.push({ kind: 'malformed_manifest', detail: `${MANIFEST_FILE} ${manifest.problem}` });
    return null;
  }
  try {
    return parseManifest(manifest.bytes);
  } catch (e) {
    problems.push({ kind: 'malformed_manifest', detail: (e as Error).message });
    return null;
  }
}

function _signature(signature: Loaded, problems: Problem[]): Signature | null {
  if ('missing' in signature) {
    problems.push({ kind: 'missing_signature', detail: `there is no ${SIGNATURE_FILE}` });
    return null;
  }
  if ('problem' in signature) {
    problems.push({
      kind: 'malformed_signature',
      detail: `${SIGNATURE_FILE} ${signature.problem}`,
    });
    return null;
  }
  try {
    return parseSignature(signature.bytes);
  } catch (e) {
    problems.push({ kind: 'malformed_signature', detail: (e as Error).message });
    return null;
  }
}

/** Checks both signatures; returns the trusted comment's fields when its signature holds. */
function _checkSigned(
  sig: Signature,
  manifest: Uint8Array,
  key: PublicKey,
  problems: Problem[],
): SkillMeta | null {
  const findings = checkSignature(sig, manifest, key);
  problems.push(...findings);
  // The comment signature covers the file signature and the comment: if only the file signature
  // failed, the comment is still the publisher's.
  if (!findings.every((f) => f.kind === 'bad_signature')) return null;
  const text = decodeUtf8Strict(sig.trustedComment);
  try {
    if (text === null) throw new Error('the trusted comment is not UTF-8');
    return parseComment(text);
  } catch (e) {
    problems.push({ kind: 'malformed_comment', detail: (e as Error).message });
    return null;
  }
}

function _fold(p: string): string {
  return p.normalize('NFC').toLowerCase().normalize('NFC');
}

function _hasCollidingAncestor(dir: string, colliding: Set<string>): boolean {
  for (let d = dir; d !== ''; d = d.slice(0, Math.max(0, d.lastIndexOf('/')))) {
    if (colliding.has(d)) return true;
  }
  return false;
}

function _dedupe(problems: Problem[]): Problem[] {
  const seen = new Set<string>();
  return problems.filter((p) => {
    const key = `${p.kind}\0${p.path ?? ''}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
