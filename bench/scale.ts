/**
 * Read commands on a very large audit log (issue 16), run by bench/run.ts or on its own:
 *
 *   node bench/scale.ts [ENTRIES]      (default 10,000,000; prints the markdown section)
 *
 * Writes a log of ENTRIES request entries with bench/gen_log.ts (the real format and MACs), then
 * runs each read command of the real CLI (dist/trust-protocol when built, else
 * `node cmd/main.ts`) against that home and against a fresh one, under `/usr/bin/time`, and
 * reports the median wall time and the largest peak RSS of three runs. Goals: `status`,
 * `audit show --tail 5` and `emergency status` within 1.2x of a fresh home in both; every other
 * read command under 150 MB peak RSS; `audit verify` at least a third of `sha256sum`'s throughput
 * on the same file.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { generateLog, initHome } from './gen_log.ts';

const BINARY = 'dist/trust-protocol';
/** Runs per command: the tail readers are quick and noisy, so they get more. */
const RUNS = 3;
const TAIL_RUNS = 7;
const PASSWORD = 'bench scale password';

export interface ScaleRow {
  name: string;
  /** Tail readers are judged against a fresh home; the others by their peak RSS. */
  tail: boolean;
  freshMs: number;
  freshMiB: number;
  bigMs: number;
  bigMiB: number;
}

export interface ScaleBench {
  entries: number;
  logMiB: number;
  generateS: number;
  cli: string;
  rows: ScaleRow[];
  sha256sumMs: number;
}

function _cli(): string[] {
  return fs.existsSync(BINARY) ? [BINARY] : [process.execPath, 'cmd/main.ts'];
}

/** Median wall time (ms) and largest peak RSS (MiB) of `argv` over `runs` runs; stdout discarded. */
function _measure(
  argv: readonly string[],
  env: Record<string, string>,
  dir: string,
  runs = RUNS,
): { ms: number; mib: number } {
  const times: number[] = [];
  let rss = 0;
  const out = path.join(dir, 'time.txt');
  for (let i = 0; i < runs; i++) {
    const r = spawnSync('/usr/bin/time', ['-o', out, '-f', '%e %M', ...argv], {
      env,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    if (r.status !== 0) {
      throw new Error(`${argv.join(' ')} exited ${r.status}: ${r.stderr.toString().slice(-500)}`);
    }
    const [seconds, kib] = fs.readFileSync(out, 'utf8').trim().split('\n').at(-1)!.split(' ');
    times.push(Number(seconds) * 1000);
    rss = Math.max(rss, Number(kib) / 1024);
  }
  times.sort((a, b) => a - b);
  return { ms: times[Math.floor(runs / 2)]!, mib: rss };
}

export async function benchScale(
  dir: string,
  env: Record<string, string>,
  step: (s: string) => void,
  entries = 10_000_000,
): Promise<ScaleBench> {
  const passwordFile = path.join(dir, 'scale-password');
  fs.writeFileSync(passwordFile, PASSWORD + '\n', { mode: 0o600 });
  const fresh = path.join(dir, 'scale-fresh');
  const big = path.join(dir, 'scale-big');
  initHome(_cli(), fresh, passwordFile, env);
  initHome(_cli(), big, passwordFile, env);
  step(`scale: writing a ${entries.toLocaleString('en')}-entry log`);
  const started = performance.now();
  await generateLog(big, PASSWORD, entries);
  const generateS = (performance.now() - started) / 1000;
  const log = path.join(big, 'audit', 'audit.log');
  const commands: Array<[string, boolean, string[]]> = [
    ['status', true, ['status']],
    ['audit show --tail 5', true, ['audit', 'show', '--tail', '5']],
    ['emergency status', true, ['emergency', 'status']],
    ['audit verify (HMACs)', false, ['audit', 'verify', '--password-file', passwordFile]],
    ['audit show --event request.denied', false, ['audit', 'show', '--event', 'request.denied']],
    ['audit export', false, ['audit', 'export']],
    ['monitor report', false, ['monitor', 'report']],
    ['agent recommend', false, ['agent', 'recommend']],
  ];
  const rows: ScaleRow[] = [];
  for (const [name, tail, args] of commands) {
    step(`scale: ${name}`);
    const runs = tail ? TAIL_RUNS : RUNS;
    const a = _measure([..._cli(), '--home', fresh, ...args], env, dir, runs);
    const b = _measure([..._cli(), '--home', big, ...args], env, dir, runs);
    rows.push({ name, tail, freshMs: a.ms, freshMiB: a.mib, bigMs: b.ms, bigMiB: b.mib });
  }
  step('scale: sha256sum of the log');
  const sha = _measure(['sha256sum', log], env, dir);
  return {
    entries,
    logMiB: fs.statSync(log).size / (1024 * 1024),
    generateS,
    cli: fs.existsSync(BINARY) ? BINARY : 'node cmd/main.ts',
    rows,
    sha256sumMs: sha.ms,
  };
}

export function scaleMarkdown(s: ScaleBench): string {
  const met = (ok: boolean) => (ok ? 'met' : '**missed**');
  const verify = s.rows.find((r) => r.name.startsWith('audit verify'));
  const ratio = verify === undefined ? NaN : s.sha256sumMs / verify.bigMs;
  const rows = s.rows.map((r) => {
    const t = r.bigMs / r.freshMs;
    const m = r.bigMiB / r.freshMiB;
    const goal = r.tail ? '≤ 1.2x fresh (time and RSS)' : '< 150 MB peak RSS';
    const ok = r.tail ? t <= 1.2 && m <= 1.2 : r.bigMiB * 1.048576 < 150;
    return `| \`${r.name}\` | ${(r.freshMs / 1000).toFixed(2)} s, ${r.freshMiB.toFixed(0)} MiB | ${
      (r.bigMs / 1000).toFixed(2)
    } s, ${r.bigMiB.toFixed(0)} MiB | ${t.toFixed(2)}x, ${m.toFixed(2)}x | ${goal} | ${met(ok)} |`;
  });
  return `## Scale: a ${s.entries.toLocaleString('en')}-entry log (issue 16)

| command | fresh home | ${s.entries.toLocaleString('en')} entries (${
    s.logMiB.toFixed(0)
  } MiB) | ratio (time, RSS) | goal | verdict |
|---|---|---|---|---|---|
${rows.join('\n')}
| \`audit verify\` throughput | | ${
    (s.logMiB / ((verify?.bigMs ?? NaN) / 1000)).toFixed(0)
  } MiB/s | ${ratio.toFixed(2)} of \`sha256sum\`'s (${
    (s.sha256sumMs / 1000).toFixed(2)
  } s) | ≥ 0.33 | ${met(ratio >= 1 / 3)} |

Median wall time and largest peak RSS (\`/usr/bin/time -f '%e %M'\`) of ${TAIL_RUNS} runs (the first
three commands) or ${RUNS} runs (the others) of \`${s.cli}\`;
the fresh home holds only its \`init\` entry. The log was written by \`bench/gen_log.ts\` in ${
    s.generateS.toFixed(0)
  } s (the real format: hash chain and HMACs under the vault's key, head recorded in the vault).
Reproduce: \`node bench/scale.ts 10000000\` (this section alone, printed) or \`make bench\`
(\`TP_BENCH_SCALE_ENTRIES=N\` for a smaller log).
`;
}

if (process.argv[1]?.endsWith('scale.ts')) {
  const entries = Number(process.argv[2] ?? 10_000_000);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tp-scale-'));
  try {
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir, NO_COLOR: '1' };
    const result = await benchScale(dir, env, (s) => console.error(`== ${s}`), entries);
    console.log(scaleMarkdown(result));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
