/**
 * A home's state as plain data (#19): what `store migrate` copies between a file home and the
 * PostgreSQL store, and what both sides are compared and verified on. Every value is the bytes of
 * a state file (or one line of the audit log or brake journal): the copy changes no byte, so the
 * MACs and hashes that bind the files bind the rows the same way.
 */
import { Buffer } from 'node:buffer';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { AUDIT_DIR, AUDIT_FILE, readAuditLog } from '../audit.ts';
import { readSegments, SEGMENT_INDEX, SEGMENTS_DIR } from '../audit_segments.ts';
import type { MacKey } from '../audit_keys.ts';
import { type Head, verifyAuditLog, type VerifyResult } from '../audit_verify.ts';
import { integrity, usage } from '../errors.ts';
import { type Home, openHome, readStateFile, subdir, writeStateFile } from '../home.ts';
import { ADMIN_TOKEN_FILE } from '../oidc/config.ts';
import { TREE_DIR } from '../tlog/tree_store.ts';
import { parseVault, VAULT_FILE, type VaultFile } from '../vault.ts';

export interface AuditRow {
  seq: number;
  /** The closed segment's file name (`NNNNNN-FIRST-LAST.log`), or null for the live log. */
  segment: string | null;
  prev: string;
  mac: string | null;
  /** The line exactly as in the log, without its newline. */
  line: string;
}

export interface HomeImage {
  /** vault.json, as text. */
  vault: string;
  audit: AuditRow[];
  /** audit/segments/index.json, as text; null without segments. */
  segmentIndex: string | null;
  /** audit/tree-v1/ files by name (derived from the log: evidence for nobody). */
  tree: Array<{ name: string; data: Uint8Array }>;
  /** brakes/brk_*.json by file name. */
  brakes: Array<{ name: string; record: string }>;
  /** brakes/journal.log, one line each; null when there is no journal. */
  journal: string[] | null;
  /** Every other state file (config.json, ship cursors, monitor state), by path in the home. */
  files: Array<{ path: string; content: Uint8Array }>;
}

const BRAKES_DIR = 'brakes';
const JOURNAL = 'journal.log';

/** Not state: locks, temp files, sockets and serve's socket directories. */
function _skipped(name: string): boolean {
  return name.startsWith('.') || name.endsWith('.lock') || name.includes('.lock.stale.') ||
    name.endsWith('.tmp') || name === 'serve.sock';
}

function _text(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('utf8');
}

function _lines(text: string, what: string): string[] {
  if (text === '') return [];
  if (!text.endsWith('\n')) {
    throw integrity(
      'store_tampered',
      `${what} ends with an unfinished line`,
      'run `trust-protocol audit verify` (or `emergency status`) first; a torn tail is repaired by the next write',
    );
  }
  return text.slice(0, -1).split('\n');
}

/** One audit line's row fields, from its fixed layout; a line that is not an entry is refused. */
export function auditRow(line: string, segment: string | null): AuditRow {
  let o: { seq?: unknown; prev?: unknown; mac?: unknown };
  try {
    o = JSON.parse(line);
  } catch {
    throw integrity('store_tampered', 'an audit line is not JSON');
  }
  if (
    typeof o.seq !== 'number' || !Number.isSafeInteger(o.seq) || o.seq < 1 ||
    typeof o.prev !== 'string' || (o.mac !== null && typeof o.mac !== 'string')
  ) {
    throw integrity('store_tampered', 'an audit line lacks seq, prev or mac');
  }
  return { seq: o.seq, segment, prev: o.prev, mac: o.mac as string | null, line };
}

/** Reads a file home whole, with the state-file rules (no symlinks, our files only). */
export function readHomeImage(home: Home): HomeImage {
  const vault = readStateFile(home, VAULT_FILE);
  if (vault === null) throw integrity('store_tampered', `no ${VAULT_FILE} in ${home.dir}`);
  const auditDir = subdir(home, AUDIT_DIR, { create: false });
  const segments = auditDir === null ? [] : readSegments(auditDir);
  const audit = _lines(_text(readAuditLog(home)), 'the audit log').map((line) => {
    const row = auditRow(line, null);
    const s = segments.find((x) => row.seq >= x.first_seq && row.seq <= x.last_seq);
    return s === undefined ? row : { ...row, segment: s.file };
  });
  const segDir = auditDir === null ? null : subdir(auditDir, SEGMENTS_DIR, { create: false });
  const index = segDir === null ? null : readStateFile(segDir, SEGMENT_INDEX);
  const treeDir = auditDir === null ? null : subdir(auditDir, TREE_DIR, { create: false });
  const tree = treeDir === null ? [] : _names(treeDir).map((name) => ({
    name,
    data: readStateFile(treeDir, name) ?? new Uint8Array(0),
  }));
  const brakesDir = subdir(home, BRAKES_DIR, { create: false });
  const brakes = brakesDir === null ? [] : _names(brakesDir)
    .filter((n) => /^brk_[0-9a-f]{16}\.json$/.test(n))
    .map((name) => ({ name, record: _text(readStateFile(brakesDir, name)!) }));
  const journal = brakesDir === null ? null : readStateFile(brakesDir, JOURNAL);
  const files: HomeImage['files'] = [];
  _others(home, '', files);
  // The order the store reads them back in (byte order, as PostgreSQL's "C" collation).
  files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return {
    vault: _text(vault),
    audit,
    segmentIndex: index === null ? null : _text(index),
    tree,
    brakes,
    journal: journal === null ? null : _lines(_text(journal), 'brakes/journal.log'),
    files,
  };
}

function _names(dir: Home): string[] {
  return fs.readdirSync(dir.dir).filter((n) => !_skipped(n)).sort();
}

/** Files the tables above do not hold, walked with the home's rules. */
function _others(home: Home, prefix: string, out: HomeImage['files']): void {
  for (const name of _names(home)) {
    const rel = prefix === '' ? name : `${prefix}/${name}`;
    if (
      rel === VAULT_FILE || rel === `${AUDIT_DIR}/${AUDIT_FILE}` ||
      rel === `${AUDIT_DIR}/${SEGMENTS_DIR}` || rel === `${AUDIT_DIR}/${TREE_DIR}` ||
      rel === `${BRAKES_DIR}/${JOURNAL}` ||
      // A bearer credential (`admin login`), not state: never copied to the database.
      rel === ADMIN_TOKEN_FILE ||
      (prefix === BRAKES_DIR && /^brk_[0-9a-f]{16}\.json$/.test(name))
    ) continue;
    const st = fs.lstatSync(path.join(home.dir, name));
    if (st.isDirectory()) {
      _others(subdir(home, name, { create: false })!, rel, out);
    } else if (st.isFile()) {
      out.push({ path: rel, content: readStateFile(home, name)! });
    }
  }
}

/**
 * Writes an image as a new home in `dir`, which must not exist or be empty: into a sibling
 * temporary directory first, renamed into place only once `check` accepted what was written.
 */
export function writeHomeImage(
  dir: string,
  image: HomeImage,
  check: (written: Home) => void,
): void {
  const target = path.resolve(dir);
  let existing: string[] | null = null;
  try {
    existing = fs.readdirSync(target);
  } catch (e) {
    if ((e as { code?: string }).code !== 'ENOENT') throw e;
  }
  if (existing !== null && existing.length > 0) {
    throw usage(
      'store_not_empty',
      `${target} is not empty`,
      'migrate into a new directory (or an empty one); nothing was written',
    );
  }
  // The image may come from the database, which is untrusted: every name is checked before
  // anything is written, so no row can place a file outside the new home.
  _checkNames(image);
  const tmp = fs.mkdtempSync(path.join(path.dirname(target), `.${path.basename(target)}-`));
  try {
    fs.chmodSync(tmp, 0o700);
    const home = openHome(tmp, { create: false });
    writeStateFile(home, VAULT_FILE, image.vault);
    const auditDir = subdir(home, AUDIT_DIR, { create: true })!;
    const bySegment = new Map<string | null, string[]>();
    for (const row of image.audit) {
      const list = bySegment.get(row.segment) ?? [];
      list.push(row.line);
      bySegment.set(row.segment, list);
    }
    for (const [segment, lines] of bySegment) {
      if (segment === null) continue;
      const segDir = subdir(auditDir, SEGMENTS_DIR, { create: true })!;
      writeStateFile(segDir, segment, lines.join('\n') + '\n');
    }
    const live = bySegment.get(null) ?? [];
    writeStateFile(auditDir, AUDIT_FILE, live.length === 0 ? '' : live.join('\n') + '\n');
    if (image.segmentIndex !== null) {
      writeStateFile(
        subdir(auditDir, SEGMENTS_DIR, { create: true })!,
        SEGMENT_INDEX,
        image.segmentIndex,
      );
    }
    if (image.tree.length > 0) {
      const treeDir = subdir(auditDir, TREE_DIR, { create: true })!;
      for (const t of image.tree) writeStateFile(treeDir, t.name, t.data);
    }
    const brakesDir = subdir(home, BRAKES_DIR, { create: true })!;
    for (const b of image.brakes) writeStateFile(brakesDir, b.name, b.record);
    if (image.journal !== null) {
      writeStateFile(
        brakesDir,
        JOURNAL,
        image.journal.length === 0 ? '' : image.journal.join('\n') + '\n',
      );
    }
    for (const f of image.files) {
      const parts = f.path.split('/');
      let at: Home = home;
      for (const p of parts.slice(0, -1)) at = subdir(at, p, { create: true })!;
      writeStateFile(at, parts[parts.length - 1]!, f.content);
    }
    check(home);
    if (existing !== null) fs.rmdirSync(target);
    fs.renameSync(tmp, target);
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

/** One path component of a state file: no `.`, `..`, separator or control character. */
const COMPONENT = /^(?!\.\.?$)[A-Za-z0-9_.@-]{1,128}$/;

function _checkNames(image: HomeImage): void {
  const bad = (what: string, name: string) =>
    integrity(
      'store_tampered',
      `the store names a ${what} ${JSON.stringify(name)}, not a state file name`,
    );
  for (const row of image.audit) {
    if (row.segment !== null && !COMPONENT.test(row.segment)) throw bad('segment', row.segment);
  }
  for (const t of image.tree) if (!COMPONENT.test(t.name)) throw bad('tree file', t.name);
  for (const b of image.brakes) if (!COMPONENT.test(b.name)) throw bad('brake record', b.name);
  for (const f of image.files) {
    if (!f.path.split('/').every((p) => COMPONENT.test(p))) throw bad('file', f.path);
  }
}

export interface ImageCheck {
  vault: VaultFile;
  result: VerifyResult;
}

/**
 * Verifies an image as `audit verify` verifies a home: the chain (and the MACs with `macKey`)
 * over the lines, against the head the vault records. The vault's own MAC is checked by the
 * caller's `unseal`. A broken image is an integrity failure naming the first problem.
 */
export function verifyImage(image: HomeImage, macKey: MacKey | null): ImageCheck {
  const vault = parseVault(Buffer.from(image.vault, 'utf8'));
  const bytes = Buffer.from(image.audit.map((r) => r.line + '\n').join(''), 'utf8');
  const recordedHead: Head | null = vault.body.audit_head;
  const result = verifyAuditLog(bytes, { macKey, recordedHead });
  for (const row of image.audit) {
    const fields = auditRow(row.line, row.segment);
    if (fields.seq !== row.seq || fields.prev !== row.prev || fields.mac !== row.mac) {
      throw integrity(
        'store_tampered',
        `audit entry ${row.seq}: the row's seq, prev or mac differ from its line`,
      );
    }
  }
  if (!result.ok) {
    const p = result.problems[0]!;
    throw integrity(
      'store_tampered',
      `the audit trail does not verify: entry ${p.seq} ${p.kind.replace('_', ' ')} (${p.detail})`,
      'the copy was changed outside trust-protocol; migrate again from a good source',
    );
  }
  return { vault, result };
}

/** The first difference between two images, or null when they are the same byte for byte. */
export function imageDifference(a: HomeImage, b: HomeImage): string | null {
  if (a.vault !== b.vault) return 'the vault';
  if (a.audit.length !== b.audit.length) return 'the number of audit entries';
  for (let i = 0; i < a.audit.length; i++) {
    const x = a.audit[i]!;
    const y = b.audit[i]!;
    if (x.line !== y.line || x.segment !== y.segment || x.seq !== y.seq) {
      return `audit entry ${x.seq}`;
    }
  }
  if (a.segmentIndex !== b.segmentIndex) return 'the segment index';
  if (JSON.stringify(a.brakes) !== JSON.stringify(b.brakes)) return 'the brake records';
  if (JSON.stringify(a.journal) !== JSON.stringify(b.journal)) return 'the brake journal';
  const same = (
    x: Array<{ name: string; data: Uint8Array }>,
    y: Array<{ name: string; data: Uint8Array }>,
  ) =>
    x.length === y.length &&
    x.every((f, i) => f.name === y[i]!.name && Buffer.from(f.data).equals(y[i]!.data));
  if (!same(a.tree, b.tree)) return 'the audit tree';
  const files = (x: HomeImage) => x.files.map((f) => ({ name: f.path, data: f.content }));
  if (!same(files(a), files(b))) return 'the other state files';
  return null;
}
