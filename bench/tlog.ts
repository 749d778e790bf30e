/**
 * Proof speed on a large audit log (issue #18): `audit prove` (an inclusion proof, built from the
 * tree files and checked against the checkpoint's root) and a consistency proof (as
 * `audit verify --checkpoint` and `audit cosign` make one), timed in-process on a log of ENTRIES
 * entries written by bench/gen_log.ts; then the same after `audit rotate` has closed the whole log
 * into one segment, plain and gzipped.
 *
 *   node bench/tlog.ts ENTRIES [DIR]
 */
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import process from 'node:process';
import { auditHome, rotateAuditLog } from '../src/audit.ts';
import { compressSegments } from '../src/audit_segments.ts';
import { openHome, withLock } from '../src/home.ts';
import { signCheckpoint } from '../src/tlog/note.ts';
import { extendsTree, proveInclusion } from '../src/tlog/proof.ts';
import { TreeStore } from '../src/tlog/tree_store.ts';
import { generateLog, initHome } from './gen_log.ts';

const PASSWORD = 'bench tlog password';

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

async function main(): Promise<void> {
  const entries = Number(process.argv[2] ?? '1000000');
  const dir = process.argv[3] ?? fs.mkdtempSync(path.join(tmpdir(), 'tp-bench-tlog-'));
  const home = path.join(dir, 'home');
  const passwordFile = path.join(dir, 'password');
  fs.writeFileSync(passwordFile, PASSWORD + '\n', { mode: 0o600 });
  initHome([process.execPath, 'cmd/main.ts'], home, passwordFile);
  let t0 = performance.now();
  await generateLog(home, PASSWORD, entries - 1);
  const genS = (performance.now() - t0) / 1000;
  const h = openHome(home, { create: false });
  const dirA = auditHome(h);
  // The tree files are caught up from the log once (a writer does this as it appends; the
  // generator writes the log directly), then the roots a checkpoint would sign.
  t0 = performance.now();
  const roots = await withLock(dirA, 'audit', () => {
    const view = TreeStore.open(dirA);
    try {
      return { size: view.size, root: view.root(), half: view.root(Math.floor(view.size / 2)) };
    } finally {
      view.close();
    }
  }, { timeoutMs: 600_000 });
  const buildS = (performance.now() - t0) / 1000;
  const seed = new Uint8Array(32).fill(1);
  const note = signCheckpoint('bench.example/log', roots.size, roots.root, seed);
  const old = { size: Math.floor(roots.size / 2), root: roots.half };
  const cur = { size: roots.size, root: roots.root };

  const measure = async (label: string, runs = 21) => {
    const prove: number[] = [];
    const consistent: number[] = [];
    for (let i = 0; i < runs; i++) {
      const seq = 1 + Math.floor(((i * 7919) % 1000) / 1000 * roots.size);
      prove.push(await timed(() => proveInclusion(h, seq, note)));
      consistent.push(
        await timed(async () => {
          if (!(await extendsTree(h, old, cur))) throw new Error('not consistent');
        }),
      );
    }
    return { label, runs, prove: median(prove), consistent: median(consistent) };
  };
  const rows = [await measure('live log')];
  await rotateAuditLog(h);
  rows.push(await measure('one closed segment (plain)'));
  await withLock(dirA, 'audit', () => compressSegments(dirA), { timeoutMs: 600_000 });
  // Each proof inflates the whole compressed segment: a few runs say enough.
  rows.push(await measure('one closed segment (gzip)', 3));
  const mib = fs.readdirSync(path.join(home, 'audit', 'segments'))
    .filter((f) => f.endsWith('.gz'))
    .map((f) => fs.statSync(path.join(home, 'audit', 'segments', f)).size)[0]! / 1024 / 1024;
  console.log(
    `${roots.size} entries; log generated in ${genS.toFixed(1)} s; tree files built in ${
      buildS.toFixed(1)
    } s; gzipped segment ${mib.toFixed(0)} MiB`,
  );
  console.log(
    '| where the entries are | runs | audit prove (median) | consistency proof (median) |',
  );
  console.log('| --- | --- | --- | --- |');
  for (const r of rows) {
    console.log(
      `| ${r.label} | ${r.runs} | ${r.prove.toFixed(2)} ms | ${r.consistent.toFixed(2)} ms |`,
    );
  }
  if (process.argv[3] === undefined) fs.rmSync(dir, { recursive: true, force: true });
}

await main();
