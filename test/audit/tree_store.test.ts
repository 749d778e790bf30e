import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { auditHome, FileAuditLog } from '../../src/audit.ts';
import { openHome } from '../../src/home.ts';
import {
  consistencyProof,
  inclusionProof,
  leafHash,
  rootOf,
  verifyConsistency,
  verifyInclusion,
} from '../../src/tlog/merkle.ts';
import { LeafStream, TREE_DIR, TreeStore } from '../../src/tlog/tree_store.ts';

const KEY = new Uint8Array(32).fill(7);

function newHome() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tp-tree-'));
  fs.chmodSync(dir, 0o700);
  return openHome(dir, { create: true });
}

async function append(log: FileAuditLog, n: number, batch = 1): Promise<void> {
  const w = log.writer({ macKey: KEY });
  for (let i = 0; i < n; i += batch) {
    const events = Array.from({ length: Math.min(batch, n - i) }, (_, j) => ({
      event: 'vault.saved' as const,
      actor: { type: 'operator' as const },
      outcome: 'ok' as const,
      data: { generation: i + j },
    }));
    await w.append(events);
  }
}

function logLeaves(home: { dir: string }): Uint8Array[] {
  const text = fs.readFileSync(path.join(home.dir, 'audit', 'audit.log'), 'utf8');
  return text.slice(0, text.lastIndexOf('\n') + 1).split('\n').slice(0, -1).map((l) => leafHash(l));
}

function stored(home: { dir: string }, options: { rebuild?: boolean } = {}) {
  const view = TreeStore.open(auditHome(home), options);
  try {
    return { size: view.size, root: view.root() };
  } finally {
    view.close();
  }
}

const tree = (home: { dir: string }, f: string) => path.join(home.dir, 'audit', TREE_DIR, f);

describe('the audit tree on disk', () => {
  it('is maintained by appends and equals a recompute from the log', async () => {
    const home = newHome();
    const log = new FileAuditLog(home);
    await append(log, 700, 13);
    const leaves = logLeaves(home);
    expect(leaves.length).toBe(700);
    // The writer wrote the two complete blocks itself.
    expect(fs.statSync(tree(home, 'level1')).size).toBe(2 * 40);
    const s = stored(home);
    expect(s.size).toBe(700);
    expect(s.root).toEqual(rootOf(leaves));
    const stream = new LeafStream();
    stream.update(fs.readFileSync(path.join(home.dir, 'audit', 'audit.log')));
    expect(stream.root()).toEqual(rootOf(leaves));
  });

  it("the writer's block records (hashed while each batch syncs) equal a rebuild's", async () => {
    const home = newHome();
    const a = new FileAuditLog(home);
    const b = new FileAuditLog(home);
    // Batches below, across and above a block of 256; a second log object (another process)
    // appends in between, so the first one's prepared roots are stale and must not be used.
    await append(a, 1000, 300);
    await append(a, 200, 7);
    await append(b, 100, 30);
    await append(a, 600, 64);
    const written = fs.readFileSync(tree(home, 'level1'));
    expect(written.length).toBe(7 * 40);
    stored(home, { rebuild: true });
    expect(fs.readFileSync(tree(home, 'level1'))).toEqual(written);
    expect(stored(home).root).toEqual(rootOf(logLeaves(home)));
  });

  it('serves proofs that verify, from a view of the files', async () => {
    const home = newHome();
    await append(new FileAuditLog(home), 1100, 50);
    const leaves = logLeaves(home);
    const view = TreeStore.open(auditHome(home));
    try {
      const root = rootOf(leaves);
      for (const i of [0, 255, 256, 600, 1023, 1024, 1099]) {
        expect(verifyInclusion(leaves[i]!, i, 1100, inclusionProof(i, 1100, view.mth), root))
          .toBe(true);
        expect(leafHash(view.line(i))).toEqual(leaves[i]);
      }
      for (const m of [1, 256, 257, 700, 1024, 1099]) {
        const p = consistencyProof(m, 1100, view.mth);
        expect(verifyConsistency(m, rootOf(leaves.slice(0, m)), 1100, root, p)).toBe(true);
      }
    } finally {
      view.close();
    }
  });

  it('recovers from a crash mid-update: torn record, missing files, records ahead of the log', async () => {
    const home = newHome();
    await append(new FileAuditLog(home), 600, 7);
    const want = rootOf(logLeaves(home));
    // A kill while writing a record leaves part of it.
    fs.truncateSync(tree(home, 'level1'), 40 + 17);
    expect(stored(home).root).toEqual(want);
    expect(fs.statSync(tree(home, 'level1')).size).toBe(80);
    // The writer died before writing any tree file.
    fs.rmSync(path.join(home.dir, 'audit', TREE_DIR), { recursive: true });
    expect(stored(home).root).toEqual(want);
    // A process appending afterwards continues from the repaired files.
    const again = new FileAuditLog(home);
    await append(again, 300, 11);
    expect(stored(home).root).toEqual(rootOf(logLeaves(home)));
    // The log rolled back to an older copy: the records past its end are dropped.
    const logPath = path.join(home.dir, 'audit', 'audit.log');
    const text = fs.readFileSync(logPath, 'utf8');
    const cut = text.split('\n').slice(0, 300).join('\n') + '\n';
    fs.writeFileSync(logPath, cut);
    const s = stored(home);
    expect(s.size).toBe(300);
    expect(s.root).toEqual(rootOf(logLeaves(home)));
  });

  it('a corrupted hash is caught by the proof check and repaired by a rebuild', async () => {
    const home = newHome();
    await append(new FileAuditLog(home), 520, 20);
    const want = rootOf(logLeaves(home));
    const fd = fs.openSync(tree(home, 'level1'), 'r+');
    fs.writeSync(fd, new Uint8Array(32), 0, 32, 8);
    fs.closeSync(fd);
    expect(stored(home).root).not.toEqual(want);
    expect(stored(home, { rebuild: true }).root).toEqual(want);
  });
});
