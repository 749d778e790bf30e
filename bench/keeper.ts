/**
 * What the key-holding child (issue 14) costs: serve from the sources of two trees, one without the
 * split and one with it, against the same local HTTPS upstream (bench/upstream.ts), alternating
 * rounds so that both see the same machine. Per round: wrk on the gateway (small JSON answers:
 * requests/s, p50 and p99 latency), then one 50 MiB download through /v1/proxy (streaming
 * throughput through the frame pipe's credit window); after the rounds, each serve's peak resident
 * set (VmHWM), summed over front and keeper for the split.
 * Run: node bench/keeper.ts BEFORE_TREE AFTER_TREE [ROUNDS [big]]   (big: the download only)
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import process from 'node:process';
import { parseWrk, type WrkResult } from './gateway.ts';
import { benchHome, firstLine, HOST, serveArgs } from './setup.ts';

const NODE = process.execPath;
const ENV = { PATH: process.env.PATH ?? '', HOME: os.tmpdir(), NO_COLOR: '1' };
const WRK = ['-t2', '-c8', '-d10s', '--timeout', '30s', '--latency'];
const BIG_MIB = 50;

interface Tree {
  name: string;
  dir: string;
  home: string;
  password: string;
  token: string;
  serve: ChildProcess;
  url: string;
  pids: number[];
  wrk: WrkResult[];
  bigMiBps: number[];
}

async function _setup(name: string, dir: string, upstream: number, work: string): Promise<Tree> {
  const home = path.join(work, name);
  const password = path.join(work, `${name}.password`);
  fs.writeFileSync(password, 'a master password of ordinary length\n', { mode: 0o600 });
  const main = path.join(dir, 'cmd/main.ts');
  const agent = benchHome([NODE, main], home, password, ENV);
  const serve = spawn(NODE, [main, ...serveArgs(home, password, upstream, null)], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: ENV,
  });
  const info = JSON.parse(await firstLine(serve, 'serve')) as {
    listen: string[];
    keeper_pid?: number;
  };
  const pids = [serve.pid as number, ...(info.keeper_pid === undefined ? [] : [info.keeper_pid])];
  return {
    name,
    dir,
    home,
    password,
    token: agent.token,
    serve,
    url: info.listen[0] as string,
    pids,
    wrk: [],
    bigMiBps: [],
  };
}

function _round(tree: Tree, bigOnly: boolean): void {
  if (!bigOnly) _wrk(tree);
  _big(tree);
}

function _wrk(tree: Tree): void {
  const r = spawnSync('wrk', [
    ...WRK,
    '-H',
    `Authorization: Bearer ${tree.token}`,
    `${tree.url}/v1/gateway/bench_key/v1/models`,
  ], { encoding: 'utf8' });
  const result = parseWrk(r.stdout);
  if (result.non2xx > 0) throw new Error(`${tree.name}: ${r.stdout}`);
  tree.wrk.push(result);
}

function _big(tree: Tree): void {
  const started = performance.now();
  const big = spawnSync('curl', [
    '-sS',
    '-o',
    '/dev/null',
    '-w',
    '%{http_code} %{size_download}',
    '-H',
    `Authorization: Bearer ${tree.token}`,
    '-H',
    'Content-Type: application/json',
    '--data',
    JSON.stringify({
      credential: 'bench_key',
      url: `https://${HOST}/big`,
      headers: { Authorization: 'Bearer {{CREDENTIAL}}' },
    }),
    `${tree.url}/v1/proxy`,
  ], { encoding: 'utf8' });
  const seconds = (performance.now() - started) / 1000;
  const [code, size] = big.stdout.split(' ').map(Number);
  if (code !== 200 || size !== BIG_MIB * 1024 * 1024) throw new Error(`big: ${big.stdout}`);
  tree.bigMiBps.push(BIG_MIB / seconds);
}

/** CPU seconds (user + system) the process used so far. */
function _cpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime, fields 14 and 15 of stat(5), in clock ticks (100 a second on Linux).
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function _hwmMb(pid: number): number {
  const m = /^VmHWM:\s+(\d+) kB$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0) / 1024;
}

function _med(values: number[], digits: number): string {
  return values.length === 0 ? '-' : _median(values).toFixed(digits);
}

function _median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
}

const [before, after, rounds = '3', only] = process.argv.slice(2);
if (before === undefined || after === undefined) {
  throw new Error('usage: node bench/keeper.ts BEFORE_TREE AFTER_TREE [ROUNDS]');
}
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'tp-bench-keeper-'));
const upstreamChild = spawn(NODE, ['bench/upstream.ts', String(BIG_MIB)], {
  stdio: ['ignore', 'pipe', 'inherit'],
});
const trees: Tree[] = [];
try {
  const upstream = Number(await firstLine(upstreamChild, 'bench/upstream.ts'));
  trees.push(await _setup('before', path.resolve(before), upstream, work));
  trees.push(await _setup('after', path.resolve(after), upstream, work));
  for (let i = 0; i < Number(rounds); i++) for (const tree of trees) _round(tree, only === 'big');
  const lines = [
    '| serve | gateway requests/s | p50 ms | p99 ms | 50 MiB via /v1/proxy, MiB/s | peak RSS MB | CPU s |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const tree of trees) {
    const rss = tree.pids.map(_hwmMb);
    lines.push(
      `| ${tree.name} (${tree.pids.length} process${tree.pids.length > 1 ? 'es' : ''}) | ` +
        `${_med(tree.wrk.map((w) => w.rps), 0)} | ` +
        `${_med(tree.wrk.map((w) => w.p50Ms), 2)} | ` +
        `${_med(tree.wrk.map((w) => w.p99Ms), 2)} | ` +
        `${_median(tree.bigMiBps).toFixed(0)} | ` +
        `${rss.map((r) => r.toFixed(0)).join(' + ')} | ` +
        `${tree.pids.map((p) => _cpuSeconds(p).toFixed(1)).join(' + ')} |`,
    );
  }
  console.log(lines.join('\n'));
  console.log(`\nload average after the run: ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  console.log(`socket errors: ${trees.map((t) => `${t.name} ${t.wrk.map((w) => w.errors)}`)}`);
  console.log(
    `\nper round (rps; MiB/s): ${
      trees.map((t) =>
        `${t.name} ${t.wrk.map((w) => w.rps.toFixed(0)).join(', ')}; ` +
        t.bigMiBps.map((m) => m.toFixed(1)).join(', ')
      ).join(' | ')
    }`,
  );
} finally {
  for (const tree of trees) tree.serve.kill('SIGTERM');
  upstreamChild.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 1000));
  fs.rmSync(work, { recursive: true, force: true });
}
