/**
 * Signing a skill folder: refuse what verification would refuse (links, unsafe or colliding
 * names), write the manifest of every file and a prehashed minisign signature of it whose trusted
 * comment carries name, version, publisher key id and expiry.
 */
import * as path from 'node:path';
import { escapeControls } from '../bytes.ts';
import { writeAtomic } from '../home.ts';
import { usage } from '../errors.ts';
import { formatComment, type SkillMeta } from './comment.ts';
import { keyIdHex, type SecretKey } from './keys.ts';
import { formatManifest, MANIFEST_FILE, SIGNATURE_FILE } from './manifest.ts';
import type { Seen } from './scan.ts';
import { signFile } from './signature.ts';
import { treeProblems } from './verify.ts';

export interface SignInput {
  seen: readonly Seen[];
  key: SecretKey;
  name: string;
  version: string;
  expires: string | null;
  now: Date;
}

export interface Signed {
  manifest: Uint8Array;
  signature: Uint8Array;
  meta: SkillMeta;
  files: number;
}

export function signSkill(input: SignInput): Signed {
  const problems = treeProblems(input.seen);
  if (problems.length > 0) {
    const shown = problems.slice(0, 20).map((p) =>
      `\n  ${p.kind} ${escapeControls(p.path ?? '')}: ${escapeControls(p.detail)}`
    );
    throw usage(
      'unsignable',
      `the folder cannot be signed (${problems.length} problem(s)):${shown.join('')}${
        problems.length > 20 ? '\n  …' : ''
      }`,
      'replace links with the files themselves and rename the files named above',
    );
  }
  const entries = input.seen.flatMap((s) =>
    s.kind === 'file' ? [{ path: s.path, size: s.size, mode: s.mode, sha256: s.sha256 }] : []
  );
  if (entries.length === 0) throw usage('empty_skill', 'the folder has no files to sign');
  const manifest = formatManifest(entries);
  const meta: SkillMeta = {
    name: input.name,
    version: input.version,
    publisher: keyIdHex(input.key.keyId),
    expires: input.expires,
    signed: input.now.toISOString().replace(/\.\d{3}Z$/, 'Z'),
  };
  const signature = signFile(manifest, input.key, {
    trustedComment: formatComment(meta),
    untrustedComment: 'signature from trust-protocol secret key',
  });
  return { manifest, signature, meta, files: entries.length };
}

/** Replaces MANIFEST and MANIFEST.minisig in `dir`, each atomically (temp file, fsync, rename). */
export function writeSigned(dir: string, signed: Signed): void {
  for (
    const [name, bytes] of [[MANIFEST_FILE, signed.manifest], [
      SIGNATURE_FILE,
      signed.signature,
    ]] as const
  ) {
    try {
      writeAtomic(dir, name, bytes, 0o644);
    } catch (e) {
      throw usage(
        'unwritable',
        `cannot write ${path.join(dir, name)} (${(e as { code?: string }).code ?? 'error'})`,
        'check that the folder is writable by you',
      );
    }
  }
}
