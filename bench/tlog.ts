/**
 * The Merkle tree's speed goals (issue #18), in one run:
 * 1. Durable appends with and without the tree, side by side: rounds of 20,000 appends from 64
 *    concurrent appenders in one process (group commit, as `serve` appends), alternating without
 *    and with the tree; the goal is a ratio of at least 0.90.
 * 2. Proofs on a large log: a log of ENTRIES entries written by bench/gen_log.ts (the real line
 *    format, chain and HMACs, in large writes), its tree files caught up once by `TreeStore.open`
 *    (the code a writer appends with), then, through the real CLI (`node cmd/main.ts`, process
 *    start included, which `--version` shows): `audit prove SEQ --checkpoint FILE` and
 *    `audit cosign NEW` after the witness cosigned a checkpoint of half the log (a consistency
 *    proof, O(log n)); `audit verify --checkpoint` is timed once, as it reads the whole log by
 *    design. The in-process times of `proveInclusion` and `extendsTree` (no process start) follow,
 *    on the live log, then after `audit rotate` on one plain and one gzipped segment.
 *
 *   node bench/tlog.ts [all|append|proofs] [ENTRIES] [DIR]
 *
 * A DIR is kept; run again on it, it measures the same log again (unless it was rotated).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import process from 'node:process';
import { auditHome, rotateAuditLog } from '../src/audit.ts';
import { compressSegments } from '../src/audit_segments.ts';
import { publicKeyOf } from '../src/crypto/ed25519.ts';
import { openHome, withLock } from '../src/home.ts';
import { ALG_ED25519, formatVerifierKey, signCheckpoint } from '../src/tlog/note.ts';
import { extendsTree, proveInclusion } from '../src/tlog/proof.ts';
import { TreeStore } from '../src/tlog/tree_store.ts';
import { appendRate } from './audit.ts';
import { generateLog, initHome } from './gen_log.ts';

const PASSWORD = 'bench tlog password';
// TP_BENCH_CLI=dist/trust-protocol times the built binary instead of the sources.
const CLI = process.env.TP_BENCH_CLI
  ? [process.env.TP_BENCH_CLI]
  : [process.execPath, 'cmd/main.ts'];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

/** Entries/s (wall) and CPU µs per entry (user + sys of this process) of one round of appends. */
async function appendRound(dir: string, n: number, concurrency: number, tree: boolean) {
  const cpu0 = process.cpuUsage();
  const rate = await appendRate(dir, n, concurrency, { tree });
  const cpu = process.cpuUsage(cpu0);
  return { rate, cpuUs: (cpu.user + cpu.system) / n };
}

async function benchAppend(dir: string): Promise<void> {
  const rounds = 7;
  const appends = 40_000;
  const concurrency = 64;
  const none: Array<{ rate: number; cpuUs: number }> = [];
  const tree: Array<{ rate: number; cpuUs: number }> = [];
  for (let round = 0; round < rounds; round++) {
    none.push(await appendRound(path.join(dir, `none-${round}`), appends, concurrency, false));
    tree.push(await appendRound(path.join(dir, `tree-${round}`), appends, concurrency, true));
  }
  console.log(
    `durable appends, ${appends} from ${concurrency} concurrent appenders, ${rounds} alternating rounds`,
  );
  console.log(
    '| round | without the tree | with the tree | ratio (rate) | ratio (CPU per entry) |',
  );
  console.log('| --- | --- | --- | --- | --- |');
  const show = (r: { rate: number; cpuUs: number }) =>
    `${Math.round(r.rate)}/s, ${r.cpuUs.toFixed(1)} µs CPU`;
  for (let i = 0; i < rounds; i++) {
    console.log(
      `| ${i + 1} | ${show(none[i]!)} | ${show(tree[i]!)} | ${
        (tree[i]!.rate / none[i]!.rate).toFixed(2)
      } | ${(none[i]!.cpuUs / tree[i]!.cpuUs).toFixed(2)} |`,
    );
  }
  const rate = median(tree.map((t, i) => t.rate / none[i]!.rate));
  const cpu = median(tree.map((t, i) => none[i]!.cpuUs / t.cpuUs));
  console.log(
    `ratio: appends with the tree / without = ${rate.toFixed(2)} (median of the rounds' ratios; ` +
      `medians ${Math.round(median(tree.map((t) => t.rate)))}/s and ${
        Math.round(median(none.map((t) => t.rate)))
      }/s); goal >= 0.90: ${rate >= 0.9 ? 'met' : 'not met'}`,
  );
  console.log(
    `ratio: CPU per append without the tree / with = ${cpu.toFixed(2)} (median; ${
      median(none.map((t) => t.cpuUs)).toFixed(1)
    } and ${median(tree.map((t) => t.cpuUs)).toFixed(1)} µs), less disturbed by other load`,
  );
}

/** Wall time of the CLI, ms, median of `runs` (each run preceded by `before`, untimed). */
function cliTime(args: string[], runs: number, before: () => void = () => {}): number {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    before();
    const t0 = performance.now();
    const r = spawnSync(CLI[0]!, [...CLI.slice(1), ...args], { encoding: 'utf8' });
    times.push(performance.now() - t0);
    if (r.status !== 0) {
      throw new Error(`${args.join(' ')} failed (${r.status}): ${r.stderr.slice(0, 400)}`);
    }
  }
  return median(times);
}

async function benchProofs(entries: number, dir: string): Promise<void> {
  const home = path.join(dir, 'home');
  const passwordFile = path.join(dir, 'password');
  let t0 = performance.now();
  // A DIR kept from an earlier run whose live log is still whole is measured again as it is.
  const reuse = fs.existsSync(path.join(home, 'audit', 'audit.log')) &&
    !fs.existsSync(path.join(home, 'audit', 'segments'));
  if (!reuse) {
    fs.writeFileSync(passwordFile, PASSWORD + '\n', { mode: 0o600 });
    initHome(CLI, home, passwordFile);
    await generateLog(home, PASSWORD, entries - 1);
  }
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
  const logMiB = fs.statSync(path.join(home, 'audit', 'audit.log')).size / 1024 / 1024;
  // Checkpoints signed with a bench key (prove reads the note's body; cosign checks it with
  // --log-key): what is timed is the proof, not where the key is kept.
  const seed = new Uint8Array(32).fill(1);
  const origin = 'bench.example/log';
  const logKey = formatVerifierKey(origin, ALG_ED25519, publicKeyOf(seed));
  const note = signCheckpoint(origin, roots.size, roots.root, seed);
  const half = Math.floor(roots.size / 2);
  const oldNote = signCheckpoint(origin, half, roots.half, seed);
  const ckpt = path.join(dir, 'new.ckpt');
  const oldCkpt = path.join(dir, 'old.ckpt');
  fs.writeFileSync(ckpt, note);
  fs.writeFileSync(oldCkpt, oldNote);

  const runs = 5;
  const cli: Array<[string, number]> = [];
  cli.push(['`--version` (process start only)', cliTime(['--version'], runs)]);
  const seqs = [1, Math.floor(roots.size / 3), roots.size - 1];
  for (const seq of seqs) {
    cli.push([
      `\`audit prove ${seq} --checkpoint new.ckpt\``,
      cliTime(['--home', home, 'audit', 'prove', String(seq), '--checkpoint', ckpt], runs),
    ]);
  }
  const wkey = path.join(dir, 'witness.key');
  const wstate = path.join(dir, 'witness.state');
  const wold = path.join(dir, 'witness.state.old');
  for (const f of [wkey, wstate, wold]) fs.rmSync(f, { force: true });
  spawnSync(CLI[0]!, [...CLI.slice(1), 'audit', 'witness-key', 'bench.example/w', '--out', wkey]);
  const cosign = ['--home', home, 'audit', 'cosign'];
  cliTime([...cosign, oldCkpt, '--key', wkey, '--log-key', logKey, '--state', wstate], 1);
  fs.copyFileSync(wstate, wold);
  cli.push([
    `\`audit cosign new.ckpt\` after old.ckpt (${half} entries): consistency proof`,
    cliTime(
      [...cosign, ckpt, '--key', wkey, '--state', wstate],
      runs,
      () => fs.copyFileSync(wold, wstate),
    ),
  ]);
  cli.push([
    '`audit verify --checkpoint old.ckpt --key VERIFIER` (reads the whole log), 1 run',
    cliTime(['--home', home, 'audit', 'verify', '--checkpoint', oldCkpt, '--key', logKey], 1),
  ]);

  const measure = async (label: string, runs = 21) => {
    const prove: number[] = [];
    const consistent: number[] = [];
    const old = { size: half, root: roots.half };
    const cur = { size: roots.size, root: roots.root };
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
  // Rotation reads the live log whole (a segment is at most 256 MiB when it rotates by itself):
  // past 1.5 GiB of live log, which only a log written by the generator reaches, it is skipped.
  const segmented = logMiB <= 1536;
  let gzMiB = NaN;
  if (segmented) {
    await rotateAuditLog(h);
    rows.push(await measure('one closed segment (plain)'));
    await withLock(dirA, 'audit', () => compressSegments(dirA), { timeoutMs: 600_000 });
    rows.push(await measure('one closed segment (gzip)'));
    gzMiB = fs.readdirSync(path.join(home, 'audit', 'segments'))
      .filter((f) => f.endsWith('.gz'))
      .map((f) => fs.statSync(path.join(home, 'audit', 'segments', f)).size)[0]! / 1024 / 1024;
  }

  console.log(
    `${roots.size} entries (${logMiB.toFixed(0)} MiB); log ${reuse ? 'reused' : 'generated'} in ${
      genS.toFixed(1)
    } s; tree files built in ${buildS.toFixed(1)} s; gzipped segment ${gzMiB.toFixed(0)} MiB`,
  );
  console.log(`| CLI command, ${roots.size} entries, live log | wall time (median of ${runs}) |`);
  console.log('| --- | --- |');
  for (const [what, ms] of cli) console.log(`| ${what} | ${ms.toFixed(0)} ms |`);
  console.log('| where the entries are | runs | proveInclusion (median) | extendsTree (median) |');
  console.log('| --- | --- | --- | --- |');
  for (const r of rows) {
    console.log(
      `| ${r.label} | ${r.runs} | ${r.prove.toFixed(2)} ms | ${r.consistent.toFixed(2)} ms |`,
    );
  }
  const start = cli[0]![1];
  const worst = Math.max(...cli.slice(1, -1).map(([, ms]) => ms)) - start;
  console.log(
    `ratio: slowest CLI prove/cosign minus process start = ${worst.toFixed(0)} ms, ${
      (worst / 50).toFixed(2)
    } of the 50 ms goal (at ${roots.size} entries)`,
  );
  const gz = rows[2];
  if (gz === undefined) {
    console.log('(the live log is over 1.5 GiB: not rotated, no segment rows)');
    return;
  }
  console.log(
    `ratio: proof on the gzipped segment / on the live log = ${
      (gz.prove / rows[0]!.prove).toFixed(2)
    } (prove), ${(gz.consistent / rows[0]!.consistent).toFixed(2)} (consistency)`,
  );
}

async function main(): Promise<void> {
  const what = process.argv[2] ?? 'all';
  if (!['all', 'append', 'proofs'].includes(what)) {
    console.error('usage: node bench/tlog.ts [all|append|proofs] [ENTRIES] [DIR]');
    process.exit(2);
  }
  const entries = Number(process.argv[3] ?? '1000000');
  const dir = process.argv[4] ?? fs.mkdtempSync(path.join(tmpdir(), 'tp-bench-tlog-'));
  try {
    if (what !== 'proofs') await benchAppend(path.join(dir, 'append'));
    if (what !== 'append') await benchProofs(entries, dir);
  } finally {
    if (process.argv[4] === undefined) fs.rmSync(dir, { recursive: true, force: true });
  }
}

await main();
