/**
 * Reads a skill folder for signing or verification: what is there (never following a symbolic
 * link), each regular file's size, executable bit and SHA-256 (streamed in 1 MiB blocks, so a
 * large folder never sits in memory), and the manifest and signature files. It judges nothing:
 * verify.ts decides over what this returns.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import { usage } from '../errors.ts';
import { type FileMode, MANIFEST_FILE, MANIFEST_MAX_BYTES, SIGNATURE_FILE } from './manifest.ts';

export type Seen =
  | { kind: 'file'; path: string; size: number; mode: FileMode; sha256: string }
  | { kind: 'dir'; path: string }
  | { kind: 'symlink'; path: string; target: string }
  | { kind: 'special'; path: string }
  | { kind: 'unreadable'; path: string; error: string };

export interface ScanProgress {
  files: number;
  totalFiles: number;
  bytes: number;
  totalBytes: number;
}

/** A file read whole (manifest, signature, key): its bytes, or why it could not be used. */
export type Loaded = { bytes: Uint8Array } | { missing: true } | { problem: string };

const BLOCK = 1024 * 1024;

/** Lists and hashes everything under `dir` except the two signature files at its top. */
export function scanSkill(
  dir: string,
  options: { onProgress?: (p: ScanProgress) => void } = {},
): Seen[] {
  _checkFolder(dir);
  const seen: Seen[] = [];
  const files: Array<{ path: string; size: number }> = [];
  _walk(dir, '', seen, files);
  const progress: ScanProgress = {
    files: 0,
    totalFiles: files.length,
    bytes: 0,
    totalBytes: files.reduce((n, f) => n + f.size, 0),
  };
  for (const f of files) {
    seen.push(_hashFile(dir, f.path, (n) => {
      progress.bytes += n;
      options.onProgress?.(progress);
    }));
    progress.files += 1;
    options.onProgress?.(progress);
  }
  return seen;
}

export function loadSigned(dir: string): { manifest: Loaded; signature: Loaded } {
  return {
    manifest: loadFile(path.join(dir, MANIFEST_FILE), MANIFEST_MAX_BYTES),
    signature: loadFile(path.join(dir, SIGNATURE_FILE), 64 * 1024),
  };
}

/** Reads a whole file without following a symbolic link, up to `limit` bytes. */
export function loadFile(file: string, limit: number): Loaded {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === 'ENOENT') return { missing: true };
    return { problem: code === 'ELOOP' ? 'is a symbolic link' : `cannot be read (${code})` };
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) return { problem: 'is not a regular file' };
    if (st.size > limit) return { problem: `is larger than ${limit} bytes` };
    return { bytes: new Uint8Array(fs.readFileSync(fd)) };
  } catch (e) {
    return { problem: `cannot be read (${(e as { code?: string }).code ?? 'error'})` };
  } finally {
    fs.closeSync(fd);
  }
}

function _checkFolder(dir: string): void {
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch (e) {
    throw usage(
      'no_such_folder',
      `cannot open the skill folder ${dir} (${(e as { code?: string }).code})`,
    );
  }
  if (!st.isDirectory()) throw usage('not_a_folder', `${dir} is not a folder`);
}

function _walk(
  root: string,
  rel: string,
  seen: Seen[],
  files: Array<{ path: string; size: number }>,
) {
  const abs = rel === '' ? root : path.join(root, rel);
  let names: string[];
  try {
    names = fs.readdirSync(abs);
  } catch (e) {
    seen.push({ kind: 'unreadable', path: rel, error: (e as { code?: string }).code ?? 'error' });
    return;
  }
  names.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  for (const name of names) {
    const p = rel === '' ? name : `${rel}/${name}`;
    if (rel === '' && (name === MANIFEST_FILE || name === SIGNATURE_FILE)) continue;
    let st: fs.Stats;
    try {
      st = fs.lstatSync(path.join(root, p));
    } catch (e) {
      // A name that is not valid UTF-8 comes back with U+FFFD and cannot be opened again.
      seen.push({ kind: 'unreadable', path: p, error: (e as { code?: string }).code ?? 'error' });
      continue;
    }
    if (st.isSymbolicLink()) {
      let target = '';
      try {
        target = fs.readlinkSync(path.join(root, p));
      } catch { /* the link is reported either way; its target is only a detail */ }
      seen.push({ kind: 'symlink', path: p, target });
    } else if (st.isDirectory()) {
      seen.push({ kind: 'dir', path: p });
      _walk(root, p, seen, files);
    } else if (st.isFile()) {
      files.push({ path: p, size: st.size });
    } else {
      seen.push({ kind: 'special', path: p });
    }
  }
}

function _hashFile(root: string, rel: string, onBytes: (n: number) => void): Seen {
  let fd: number;
  try {
    fd = fs.openSync(path.join(root, rel), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
  } catch (e) {
    return { kind: 'unreadable', path: rel, error: (e as { code?: string }).code ?? 'error' };
  }
  try {
    const st = fs.fstatSync(fd);
    // Swapped for something else between listing and opening.
    if (!st.isFile()) return { kind: 'special', path: rel };
    const hash = createHash('sha256');
    const buf = Buffer.allocUnsafe(BLOCK);
    let size = 0;
    for (;;) {
      const n = fs.readSync(fd, buf, 0, BLOCK, null);
      if (n === 0) break;
      hash.update(buf.subarray(0, n));
      size += n;
      onBytes(n);
    }
    return {
      kind: 'file',
      path: rel,
      size,
      mode: (st.mode & 0o111) !== 0 ? 0o755 : 0o644,
      sha256: hash.digest('hex'),
    };
  } catch (e) {
    return { kind: 'unreadable', path: rel, error: (e as { code?: string }).code ?? 'error' };
  } finally {
    fs.closeSync(fd);
  }
}
