/**
 * Proofs about the audit log for outsiders (docs/formats.md#inclusion-proof-version-1): building
 * them from the home's tree (tree_store.ts) and checking them with nothing but a verifier key.
 * Every proof built here is checked before it is returned; one that fails is rebuilt once from
 * the log itself (the tree files are agent-writable, so a bad one is repaired, never believed).
 */
import { Buffer } from 'node:buffer';
import { auditHome } from '../audit.ts';
import { TpError, usage } from '../errors.ts';
import { type Home, subdir, withLock } from '../home.ts';
import { arr, int, obj, str } from '../validate.ts';
import {
  consistencyProof,
  type Hash,
  inclusionProof,
  leafHash,
  verifyConsistency,
  verifyInclusion,
} from './merkle.ts';
import {
  type Checkpoint,
  openCheckpoint,
  parseCheckpointText,
  parseNote,
  type VerifierKey,
} from './note.ts';
import { TreeStore, type TreeView } from './tree_store.ts';

export const PROOF_FORMAT = 'trust-protocol/audit-inclusion-proof';
export const PROOF_VERSION = 1;

export interface InclusionProof {
  format: typeof PROOF_FORMAT;
  version: typeof PROOF_VERSION;
  seq: number;
  leaf_index: number;
  tree_size: number;
  entry: string;
  proof: string[];
  checkpoint: string;
}

/** The body of a checkpoint note, signature not checked (the verifier of the proof checks it). */
export function checkpointBody(note: string): Omit<Checkpoint, 'text'> & { text: string } {
  const { text } = parseNote(note);
  return { ...parseCheckpointText(text), text };
}

/** Runs `fn` on the home's tree under the audit lock; `fn` returning false rebuilds it once. */
async function _withTree<T>(
  home: Home,
  fn: (view: TreeView) => T | null,
  segments: readonly string[] = [],
): Promise<T | null> {
  const dir = auditHome(home);
  if (subdir(home, 'audit', { create: false }) === null) return null;
  return await withLock(dir, 'audit', () => {
    for (const rebuild of [false, true]) {
      const view = TreeStore.open(dir, { rebuild, segments });
      try {
        const found = fn(view);
        if (found !== null) return found;
      } finally {
        view.close();
      }
    }
    return null;
  }, { timeoutMs: 30_000 });
}

function _notInLog(size: number, logSize: number): TpError {
  return new TpError(
    'verification',
    'audit_truncated',
    `the checkpoint covers ${size} entries but the log holds ${logSize}: it was cut or rolled back`,
    { hint: 'restore audit/audit.log from a backup; `trust-protocol audit verify` says more' },
  );
}

/** An inclusion proof of entry `seq` against the checkpoint `note` (its body read unchecked). */
export async function proveInclusion(
  home: Home,
  seq: number,
  note: string,
  trail: { segments?: readonly string[] } = {},
): Promise<InclusionProof> {
  const c = checkpointBody(note);
  if (!(seq >= 1 && seq <= c.size)) {
    throw usage(
      'bad_arguments',
      `entry ${seq} is not in this checkpoint, which covers 1 to ${c.size}`,
    );
  }
  let logSize = 0;
  const found = await _withTree(home, (view) => {
    logSize = view.size;
    if (view.size < c.size) return null;
    const path = inclusionProof(seq - 1, c.size, view.mth);
    const entry = view.line(seq - 1);
    return verifyInclusion(leafHash(entry), seq - 1, c.size, path, c.root) ? { path, entry } : null;
  }, trail.segments);
  if (found === null) {
    if (logSize < c.size) throw _notInLog(c.size, logSize);
    throw new TpError(
      'verification',
      'not_consistent',
      "the log does not hold this checkpoint's tree: it was rewritten since, or the checkpoint is another log's",
      { hint: 'run `trust-protocol audit verify --checkpoint FILE --key VERIFIER`' },
    );
  }
  return {
    format: PROOF_FORMAT,
    version: PROOF_VERSION,
    seq,
    leaf_index: seq - 1,
    tree_size: c.size,
    entry: found.entry,
    proof: found.path.map((h) => Buffer.from(h).toString('base64')),
    checkpoint: note,
  };
}

/**
 * Whether the home's log, whose first `size` entries have root `root` (computed from the log by
 * the caller), extends the tree (`oldSize`, `oldRoot`): a consistency proof from the tree files,
 * checked against both roots.
 */
export async function extendsTree(
  home: Home,
  old: { size: number; root: Hash },
  current: { size: number; root: Hash },
  trail: { segments?: readonly string[] } = {},
): Promise<boolean> {
  if (old.size > current.size) return false;
  const ok = await _withTree(home, (view) => {
    if (view.size < current.size) return null;
    const p = consistencyProof(old.size, current.size, view.mth);
    return verifyConsistency(old.size, old.root, current.size, current.root, p) ? true : null;
  }, trail.segments);
  return ok === true;
}

export function parseProof(text: string): InclusionProof {
  try {
    const o = obj(JSON.parse(text), 'proof');
    if (o.format !== PROOF_FORMAT || o.version !== PROOF_VERSION) {
      throw new Error(`not a ${PROOF_FORMAT} version ${PROOF_VERSION}`);
    }
    return {
      format: PROOF_FORMAT,
      version: PROOF_VERSION,
      seq: int(o.seq, 'seq'),
      leaf_index: int(o.leaf_index, 'leaf_index'),
      tree_size: int(o.tree_size, 'tree_size'),
      entry: str(o.entry, 'entry'),
      proof: arr(o.proof, 'proof').map((h, i) => str(h, `proof[${i}]`)),
      checkpoint: str(o.checkpoint, 'checkpoint'),
    };
  } catch (e) {
    throw usage(
      'bad_proof',
      `the proof file is malformed: ${e instanceof Error ? e.message : String(e)}`,
    );
  }
}

/**
 * Checks a proof with the log's verifier key alone: the checkpoint's signature, then that the
 * entry (numbered as the proof says) is leaf `leaf_index` of the signed tree. Throws when not.
 */
export function verifyProof(p: InclusionProof, logKey: VerifierKey): Checkpoint {
  const c = openCheckpoint(p.checkpoint, logKey);
  const bad = (why: string) =>
    new TpError('verification', 'proof_invalid', `the proof does not hold: ${why}`);
  if (p.tree_size !== c.size) throw bad("its tree size is not the checkpoint's");
  const seq = /^\{"v":\d+,"seq":(\d+),/.exec(p.entry)?.[1];
  if (seq === undefined || Number(seq) !== p.seq || p.leaf_index !== p.seq - 1) {
    throw bad('the entry is not the one numbered');
  }
  const path = p.proof.map((h) => {
    const b = Buffer.from(h, 'base64');
    if (b.length !== 32 || b.toString('base64') !== h) throw bad('a proof hash is malformed');
    return new Uint8Array(b);
  });
  if (!verifyInclusion(leafHash(p.entry), p.leaf_index, c.size, path, c.root)) {
    throw bad(
      'the entry is not in the tree the checkpoint signs (altered entry, or another checkpoint)',
    );
  }
  return c;
}
