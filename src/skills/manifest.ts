/**
 * The skill manifest (docs/formats-skills.md#manifest): a file GNU `sha256sum --strict -c` checks
 * inside the folder with no warning, because the size and mode of each file sit on a `#` line
 * (sha256sum skips those) just before its checksum line:
 *
 *   # trust-protocol skill manifest v1
 *   # sha256sum --strict -c MANIFEST checks every file; each "#file MODE SIZE" line describes the next.
 *   #file 0644 1234
 *   <sha256 hex>  path/to/file
 *
 * One canonical byte form: entries sorted by the UTF-8 bytes of their paths, LF line ends, modes
 * 0644 or 0755 only (the executable bit is what is recorded), no other lines.
 */
import { Buffer } from 'node:buffer';
import { decodeUtf8Strict } from '../bytes.ts';
import { usage } from '../errors.ts';

export const MANIFEST_FILE = 'MANIFEST';
export const SIGNATURE_FILE = 'MANIFEST.minisig';
export const MANIFEST_VERSION = 1;
const HEADER = `# trust-protocol skill manifest v${MANIFEST_VERSION}\n` +
  `# sha256sum --strict -c ${MANIFEST_FILE} checks every file; ` +
  `each "#file MODE SIZE" line describes the next.\n`;
/** Manifests larger than this are refused unread (about a million files). */
export const MANIFEST_MAX_BYTES = 256 * 1024 * 1024;

export type FileMode = 0o644 | 0o755;

export interface ManifestEntry {
  path: string;
  size: number;
  mode: FileMode;
  sha256: string;
}

export function formatManifest(entries: readonly ManifestEntry[]): Uint8Array {
  const sorted = [...entries].sort((a, b) => comparePaths(a.path, b.path));
  let text = HEADER;
  for (const e of sorted) {
    text += `#file 0${e.mode.toString(8)} ${e.size}\n${e.sha256}  ${e.path}\n`;
  }
  return new Uint8Array(Buffer.from(text, 'utf8'));
}

/**
 * Throws a TpError (code `malformed_manifest`) naming the first line that is wrong. Paths are
 * only read here; whether each is safe (pathProblem) is for the verifier to report, path by path.
 */
export function parseManifest(bytes: Uint8Array): ManifestEntry[] {
  const fail = (what: string): never => {
    throw usage('malformed_manifest', `${MANIFEST_FILE} is malformed: ${what}`);
  };
  const text = decodeUtf8Strict(bytes) ?? fail('it is not UTF-8');
  const version = /^# trust-protocol skill manifest v(\d+)\n/.exec(text);
  if (version === null) fail('it does not start with "# trust-protocol skill manifest v1"');
  if (Number((version as RegExpExecArray)[1]) !== MANIFEST_VERSION) {
    fail(
      `format version ${(version as RegExpExecArray)[1]} is not supported (upgrade trust-protocol)`,
    );
  }
  if (!text.startsWith(HEADER)) fail('line 2 is not the fixed explanation line');
  if (!text.endsWith('\n')) fail('the last line does not end with a newline');
  const lines = text.slice(HEADER.length, -1).split('\n');
  if (text.length === HEADER.length) lines.length = 0;
  if (lines.length % 2 !== 0) fail('a "#file" line lacks its checksum line');
  const entries: ManifestEntry[] = [];
  for (let i = 0; i < lines.length; i += 2) {
    const n = i + 3;
    const meta = /^#file 0(644|755) (0|[1-9]\d{0,15})$/.exec(lines[i] as string);
    if (meta === null) fail(`line ${n} is not "#file 0644|0755 SIZE"`);
    const sum = /^([0-9a-f]{64}) {2}(.+)$/s.exec(lines[i + 1] as string);
    if (sum === null) fail(`line ${n + 1} is not "<sha256>  <path>"`);
    const [, mode, size] = meta as RegExpExecArray;
    const [, sha256, path] = sum as RegExpExecArray;
    if (Number(size) > Number.MAX_SAFE_INTEGER) fail(`line ${n}: the size is too large`);
    entries.push({
      path: path as string,
      size: Number(size),
      mode: mode === '755' ? 0o755 : 0o644,
      sha256: sha256 as string,
    });
  }
  for (let i = 1; i < entries.length; i++) {
    if (
      comparePaths((entries[i - 1] as ManifestEntry).path, (entries[i] as ManifestEntry).path) >= 0
    ) {
      fail(
        `the paths are not sorted and unique at ${
          JSON.stringify((entries[i] as ManifestEntry).path)
        }`,
      );
    }
  }
  return entries;
}

/**
 * Why a relative path is unsafe to sign, list or install, or null. Paths use "/", are relative,
 * have no empty, "." or ".." segment, no backslash (a separator on Windows) and no control
 * characters (sha256sum would need its escape syntax; terminals act on them); the two signature
 * files are reserved at the top.
 */
export function pathProblem(path: string): string | null {
  if (path === '') return 'is empty';
  if (path.startsWith('/')) return 'is absolute';
  if (!path.isWellFormed() || path.includes('\ufffd')) return 'is not valid UTF-8';
  // deno-lint-ignore no-control-regex -- control characters are what is refused
  if (/[\u0000-\u001f\u007f-\u009f]/.test(path)) return 'contains a control character';
  if (path.includes('\\')) return 'contains a backslash';
  const segments = path.split('/');
  if (segments.includes('..')) return 'escapes the folder (..)';
  if (segments.some((s) => s === '' || s === '.')) return 'has an empty or "." segment';
  if (path === MANIFEST_FILE || path === SIGNATURE_FILE) return 'is reserved for the signature';
  if (Buffer.byteLength(path) > 4096) return 'is longer than 4096 bytes';
  return null;
}

/** Byte order of the UTF-8 encodings: the same on every runtime, unlike UTF-16 code units. */
export function comparePaths(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}
