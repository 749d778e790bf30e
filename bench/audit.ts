/**
 * Audit trail benchmarks (issue 3), run by bench/run.ts:
 * 1. `trust-protocol audit verify` (HMACs checked) of a 1,000,000-entry log against `sha256sum` of
 *    the same file, both timed by hyperfine in the same run; the goal is at least one third of
 *    sha256sum's throughput.
 * 2. Durable appends per second when many requests append at once in one process (the way
 *    `serve` does: group commit), against the disk's own `write + fsync` rate as a reference;
 *    the goal is at least 5,000 durable entries per second.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { openState } from '../src/state.ts';
import { FileAuditLog } from '../src/audit.ts';
import { openHome } from '../src/home.ts';
import { generateLog, initHome } from './gen_log.ts';

export interface AuditBench {
  entries: number;
  logMiB: number;
  verifyMs: number;
  sha256sumMs: number;
  verifyCommand: string;
  appends: number;
  concurrency: number;
  appendsPerSecond: number;
  appendsWithoutTree: number;
  fsyncsPerSecond: number;
}

const BINARY = 'dist/trust-protocol';

/** A home (KDF floor) whose audit log holds `n` realistic request entries under the vault's key. */
async function _bigLog(
  dir: string,
  n: number,
): Promise<{ home: string; passwordFile: string; log: string }> {
  const home = path.join(dir, 'audit-home');
  const passwordFile = path.join(dir, 'audit-password');
  fs.writeFileSync(passwordFile, 'bench audit password\n', { mode: 0o600 });
  initHome([BINARY], home, passwordFile);
  const log = path.join(home, 'audit', 'audit.log');
  const existing = fs.readFileSync(log, 'utf8').trimEnd().split('\n').length;
  await generateLog(home, 'bench audit password', n - existing);
  return { home, passwordFile, log };
}

function _hyperfine(
  dir: string,
  commands: Record<string, string>,
  env: Record<string, string>,
): Record<string, number> {
  const json = path.join(dir, 'hyperfine-audit.json');
  const args = ['-N', '--warmup', '1', '--runs', '5', '--export-json', json];
  for (const [name, cmd] of Object.entries(commands)) args.push('-n', name, cmd);
  const r = spawnSync('hyperfine', args, { stdio: ['ignore', 'inherit', 'inherit'], env });
  if (r.status !== 0) throw new Error('hyperfine (audit) failed');
  const results =
    (JSON.parse(fs.readFileSync(json, 'utf8')) as { results: Array<{ median: number }> }).results;
  return Object.fromEntries(
    Object.keys(commands).map((name, i) => [name, (results[i]?.median ?? NaN) * 1000]),
  );
}

export async function appendRate(
  dir: string,
  total: number,
  concurrency: number,
  options: { tree?: boolean } = {},
): Promise<number> {
  const h = openHome(dir, { create: true });
  const log = options.tree === false ? new FileAuditLog(h, { tree: false }) : openState(h).audit;
  const w = log.writer({ macKey: new Uint8Array(32).fill(1) });
  const started = performance.now();
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < total) {
      const i = next++;
      await w.append([{
        event: 'request.completed',
        actor: { type: 'agent', id: 'agt_bench' },
        outcome: 'ok',
        data: { i, status: 200 },
      }]);
    }
  }));
  return total / ((performance.now() - started) / 1000);
}

function _fsyncRate(dir: string, count: number): number {
  const fd = fs.openSync(path.join(dir, 'fsync-probe'), 'w');
  const line = Buffer.alloc(300, 0x61);
  const started = performance.now();
  for (let i = 0; i < count; i++) {
    fs.writeSync(fd, line);
    fs.fsyncSync(fd);
  }
  fs.closeSync(fd);
  return count / ((performance.now() - started) / 1000);
}

export async function benchAudit(
  dir: string,
  env: Record<string, string>,
  step: (s: string) => void,
): Promise<AuditBench> {
  const entries = 1_000_000;
  step(`audit: writing a ${entries}-entry log`);
  const { home, passwordFile, log } = await _bigLog(dir, entries);
  const verifyCommand = `${BINARY} --home ${home} audit verify --password-file ${passwordFile}`;
  const check = spawnSync(BINARY, [
    '--home',
    home,
    '--json',
    'audit',
    'verify',
    '--password-file',
    passwordFile,
  ], { env, maxBuffer: 1 << 26 });
  const result = JSON.parse(check.stdout.toString()) as {
    ok: boolean;
    entries: number;
    hmac_checked: boolean;
  };
  if (check.status !== 0 || !result.ok || !result.hmac_checked || result.entries !== entries) {
    throw new Error(
      `audit verify of the bench log failed: ${check.stdout.toString().slice(0, 300)}`,
    );
  }
  step('audit: hyperfine verify vs sha256sum');
  const t = _hyperfine(
    dir,
    { 'sha256sum': `sha256sum ${log}`, 'audit verify': verifyCommand },
    env,
  );
  step('audit: concurrent durable appends');
  const concurrency = 64;
  const appends = 20_000;
  // With and without the Merkle tree (issue #18), alternating, in the same run.
  const rates = { tree: [] as number[], none: [] as number[] };
  for (let round = 0; round < 3; round++) {
    rates.none.push(
      await appendRate(path.join(dir, `append-none-${round}`), appends, concurrency, {
        tree: false,
      }),
    );
    rates.tree.push(await appendRate(path.join(dir, `append-tree-${round}`), appends, concurrency));
  }
  const median = (xs: number[]) => xs.slice().sort((a, b) => a - b)[1]!;
  const appendsPerSecond = median(rates.tree);
  const appendsWithoutTree = median(rates.none);
  const fsyncsPerSecond = _fsyncRate(dir, 500);
  return {
    entries,
    logMiB: fs.statSync(log).size / (1024 * 1024),
    verifyMs: t['audit verify'] as number,
    sha256sumMs: t['sha256sum'] as number,
    verifyCommand: `hyperfine -N --runs 5 "sha256sum $W/audit-home/audit/audit.log" "${
      verifyCommand.replaceAll(dir, '$W')
    }"`,
    appends,
    concurrency,
    appendsPerSecond,
    appendsWithoutTree,
    fsyncsPerSecond,
  };
}

export function auditMarkdown(a: AuditBench): string {
  const ratio = a.sha256sumMs / a.verifyMs;
  const met = (ok: boolean) => (ok ? 'met' : '**missed**');
  return `## Audit trail (issue 3)

| what | measured | baseline (same run) | ratio | goal | verdict |
|---|---|---|---|---|---|
| \`audit verify\` with HMACs, ${a.entries.toLocaleString('en')} entries (${
    a.logMiB.toFixed(0)
  } MiB) | ${(a.verifyMs / 1000).toFixed(2)} s | \`sha256sum\` of the same file: ${
    (a.sha256sumMs / 1000).toFixed(2)
  } s | ${ratio.toFixed(2)} of sha256sum's throughput | ≥ 0.33 | ${met(ratio >= 1 / 3)} |
| durable appends, ${
    a.appends.toLocaleString('en')
  } entries from ${a.concurrency} concurrent requests in one process (group commit) | ${
    Math.round(a.appendsPerSecond).toLocaleString('en')
  } entries/s | one \`write\` + \`fsync\` at a time: ${
    Math.round(a.fsyncsPerSecond).toLocaleString('en')
  }/s | ${(a.appendsPerSecond / a.fsyncsPerSecond).toFixed(1)}x | ≥ 5,000 entries/s | ${
    met(a.appendsPerSecond >= 5000)
  } |

| durable appends with the Merkle tree (issue #18), median of 3 alternating rounds | ${
    Math.round(a.appendsPerSecond).toLocaleString('en')
  } entries/s | without the tree: ${Math.round(a.appendsWithoutTree).toLocaleString('en')}/s | ${
    (a.appendsPerSecond / a.appendsWithoutTree).toFixed(2)
  } | ≥ 0.90 | ${met(a.appendsPerSecond >= 0.9 * a.appendsWithoutTree)} |

The verify time is the whole command: process start, the floor KDF, reading the file, and
checking every entry's chain link and HMAC. Command: \`${a.verifyCommand}\`. The appends run
in-process through \`state.audit.writer\` (the code path \`serve\` uses), each awaited until fsynced.
`;
}
