/**
 * `exec` through a running serve (issue 17), run by bench/run.ts or on its own
 * (`node_modules/.bin/node bench/exec_serve.ts`, after `make build`; prints the section):
 * - start-up: `dist/trust-protocol exec` handing a small templated GET to a serve on the home's
 *   socket, against a bare `node -e 0` and `--version`, in one hyperfine invocation per round;
 *   goal at most 1.3x `node -e 0` (median wall time, median of 3 rounds).
 * - what that start-up loads: the project's modules (from the sources, one file a module) and
 *   Node's built-in modules beyond a bare script (the bundle the binary embeds), with the one-shot
 *   `exec` (it unseals the vault itself) beside it; bench/loaded.ts records them.
 * Standalone, TP_BENCH_BEFORE=PATH adds a row for an older binary's `exec` against the same serve
 * (a before/after comparison), and TP_BENCH_RUNS=N sets hyperfine's runs (default 50).
 */
import { randomBytes } from 'node:crypto';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import process from 'node:process';
import { firstLine } from './setup.ts';

const NODE = 'node_modules/.bin/node';
const BINARY = 'dist/trust-protocol';
const BUNDLE = 'dist/trust-protocol.cjs';
const CA = 'fixtures/tls/ca.pem';
const HOST = 'api.allowed.test';
const ROUNDS = 3;
export const GOAL_EXEC_SERVE = 1.3;
const BARE = 'node -e 0';
const BARE_AGAIN = 'node -e 0 (again)';
const VERSION = 'trust-protocol --version';
const EXEC = 'trust-protocol exec (through serve)';
const EXEC_BEFORE = 'exec before (TP_BENCH_BEFORE)';

interface Timing {
  median: number;
  min: number;
  cpu: number;
}

interface Loaded {
  modules: string[];
  builtins: string[];
}

export interface ExecServeBench {
  rounds: Array<Record<string, Timing>>;
  command: string;
  /** Per round: exec / mean of the two `node -e 0` rows, on median wall time, fastest run, CPU. */
  ratios: Array<{ median: number; min: number; cpu: number }>;
  serveExec: Loaded;
  oneShot: Loaded;
  version: Loaded;
  /** A bare script under the same hook: what every process loads anyway. */
  bare: Loaded;
}

function _stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.removeAllListeners('exit');
    child.on('exit', () => resolve());
    child.kill('SIGTERM');
  });
}

function _hyperfine(
  work: string,
  label: string,
  commands: Record<string, string>,
  env: Record<string, string>,
): { results: Record<string, Timing>; command: string } {
  const json = path.join(work, `hyperfine-${label}.json`);
  const flags = ['-N', '--warmup', '5', '--runs', process.env.TP_BENCH_RUNS || '50'];
  const args = [...flags, '--export-json', json];
  for (const [name, cmd] of Object.entries(commands)) args.push('-n', name, cmd);
  // Its progress on stderr: standalone, this script prints the section on stdout.
  const r = spawnSync('hyperfine', args, { stdio: ['ignore', 2, 'inherit'], env });
  if (r.status !== 0) throw new Error(`hyperfine (${label}) failed`);
  const exported = JSON.parse(fs.readFileSync(json, 'utf8')) as {
    results: Array<{ median: number; min: number; user: number; system: number }>;
  };
  const results: Record<string, Timing> = {};
  Object.keys(commands).forEach((name, i) => {
    const x = exported.results[i];
    results[name] = { median: x.median * 1000, min: x.min * 1000, cpu: (x.user + x.system) * 1000 };
  });
  const shown = Object.entries(commands).map(([n, c]) => `-n "${n}" "${c}"`).join(' ');
  return { results, command: `hyperfine ${flags.join(' ')} ${shown}` };
}

/** What one run loads (bench/loaded.ts), from `entry` (cmd/main.ts or the bundle). */
function _loaded(
  work: string,
  entry: string,
  args: readonly string[],
  env: Record<string, string>,
  hooks: boolean,
): Loaded {
  const out = path.join(work, 'loaded.json');
  const r = spawnSync(NODE, ['--import', './bench/loaded.ts', entry, ...args], {
    env: { ...env, TP_BENCH_LOADED: out, TP_BENCH_LOADED_HOOKS: hooks ? '1' : '0' },
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`${entry} ${args.join(' ')} failed: ${r.stderr}`);
  const loaded = JSON.parse(fs.readFileSync(out, 'utf8')) as Loaded;
  fs.rmSync(out);
  return loaded;
}

export async function benchExecServe(
  parent: string,
  baseEnv: Record<string, string>,
  step: (text: string) => void,
): Promise<ExecServeBench> {
  const work = fs.mkdtempSync(path.join(parent, 'exec-serve-'));
  const home = path.join(work, 'home');
  const password = path.join(work, 'password');
  fs.writeFileSync(password, 'a master password of ordinary length\n', { mode: 0o600 });
  const env = { ...baseEnv, HOME: work };
  const children: ChildProcess[] = [];
  try {
    step('exec through serve: upstream, vault and serve');
    const upstreamChild = spawn(NODE, ['bench/upstream.ts', '1'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    children.push(upstreamChild);
    const port = Number(await firstLine(upstreamChild, 'bench/upstream.ts'));
    const tp = (args: string[], input = ''): string => {
      const r = spawnSync(BINARY, ['--home', home, ...args, '--password-file', password], {
        env,
        input,
        encoding: 'utf8',
      });
      if (r.status !== 0) throw new Error(`${args.join(' ')} failed (${r.status}): ${r.stderr}`);
      return r.stdout;
    };
    tp(['init', '--kdf-memory-mib', '19', '--kdf-iterations', '2']);
    tp(
      ['credential', 'add', 'bench_key', '--allowed-domains', HOST],
      `sk-bench-${randomBytes(16).toString('hex')}`,
    );
    const agent = JSON.parse(
      tp(['--json', 'agent', 'register', 'bench-serve', '--tier', 'COMPANION']),
    ) as { id: string; token: string };
    tp(['agent', 'grant', agent.id, 'bench_key']);
    const template = path.join(work, 'small.json');
    fs.writeFileSync(
      template,
      JSON.stringify({
        credential: 'bench_key',
        method: 'GET',
        url: `https://${HOST}/v1/models`,
        headers: { Authorization: 'Bearer {{CREDENTIAL}}' },
      }),
    );
    const serve = spawn(BINARY, [
      '--home',
      home,
      '--json',
      'serve',
      '--ttl',
      '30m',
      '--cacert',
      CA,
      '--connect-to',
      `${HOST}:443:127.0.0.1:${port}`,
      '--password-file',
      password,
    ], { stdio: ['ignore', 'pipe', 'inherit'], env });
    children.push(serve);
    await firstLine(serve, 'serve');

    // No password and no --cacert: the request can only succeed through the serve.
    const agentEnv = { ...env, TRUST_PROTOCOL_TOKEN: agent.token };
    const execArgs = ['--home', home, 'exec', '--template', template];
    const check = spawnSync(BINARY, execArgs, { env: agentEnv, encoding: 'utf8' });
    if (check.status !== 0 || !check.stdout.includes('model-a')) {
      throw new Error(`exec through serve failed (${check.status}): ${check.stderr}`);
    }

    step('exec through serve: what start-up loads');
    const oneShotArgs = [
      ...execArgs,
      '--cacert',
      CA,
      '--connect-to',
      `${HOST}:443:127.0.0.1:${port}`,
      '--password-file',
      password,
    ];
    const empty = path.join(work, 'empty.cjs');
    fs.writeFileSync(empty, '');
    const both = (args: readonly string[]) => ({
      modules: _loaded(work, 'cmd/main.ts', args, agentEnv, true).modules,
      builtins: _loaded(work, BUNDLE, args, agentEnv, false).builtins,
    });
    const serveExec = both(execArgs);
    const oneShot = both(oneShotArgs);
    const version = both(['--version']);
    const bare = _loaded(work, empty, [], agentEnv, false);

    const before = process.env.TP_BENCH_BEFORE;
    const rounds: Array<Record<string, Timing>> = [];
    let command = '';
    for (let round = 1; round <= ROUNDS; round++) {
      step(`exec through serve: hyperfine round ${round}`);
      const m = _hyperfine(work, `exec-serve-${round}`, {
        [BARE]: `${NODE} -e 0`,
        [VERSION]: `${BINARY} --version`,
        [EXEC]: `${BINARY} ${execArgs.join(' ')}`,
        ...(before ? { [EXEC_BEFORE]: `${before} ${execArgs.join(' ')}` } : {}),
        [BARE_AGAIN]: `${NODE} -e 0`,
      }, agentEnv);
      rounds.push(m.results);
      command = m.command.split(work).join('$W');
    }
    const ratios = rounds.map((r) => {
      const base = (k: keyof Timing) => (r[BARE][k] + r[BARE_AGAIN][k]) / 2;
      return {
        median: r[EXEC].median / base('median'),
        min: r[EXEC].min / base('min'),
        cpu: r[EXEC].cpu / base('cpu'),
      };
    });
    await _stop(serve);
    return { rounds, command, ratios, serveExec, oneShot, version, bare };
  } finally {
    for (const child of children) await _stop(child);
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/** The round whose median ratio is the median one. */
function _medianRound(b: ExecServeBench): number {
  const order = b.ratios.map((r, i) => ({ r: r.median, i })).sort((x, y) => x.r - y.r);
  return order[(order.length - 1) >> 1].i;
}

/** The summary row's figure and verdict, for bench/run.ts. */
export function execServeVerdict(b: ExecServeBench): { ratio: number; met: boolean } {
  const ratio = b.ratios[_medianRound(b)].median;
  return { ratio, met: ratio <= GOAL_EXEC_SERVE };
}

export function execServeMarkdown(b: ExecServeBench): string {
  const i = _medianRound(b);
  const r = b.rounds[i];
  const base = {
    median: (r[BARE].median + r[BARE_AGAIN].median) / 2,
    min: (r[BARE].min + r[BARE_AGAIN].min) / 2,
    cpu: (r[BARE].cpu + r[BARE_AGAIN].cpu) / 2,
  };
  const ms = (x: number) => `${x.toFixed(1)} ms`;
  const x = (v: number) => `${v.toFixed(2)}x`;
  const row = (cells: readonly string[]) => `| ${cells.join(' | ')} |`;
  const { ratio, met } = execServeVerdict(b);
  const extra = (l: Loaded) => l.builtins.filter((m) => !b.bare.builtins.includes(m));
  // Node's internal/ modules are counted but not named: the public ones say what was loaded.
  const publicNames = (names: readonly string[]) =>
    names.filter((n) => !n.startsWith('internal/')).join(', ');
  const ratioText = b.ratios.map((q, n) => n === i ? `**${x(q.median)}**` : x(q.median));
  return [
    '## `exec` through a running serve (issue 17)',
    '',
    "Goal: `dist/trust-protocol exec --template FILE`, handed to a serve on the home's socket (no",
    'password, no TLS in the client), within 1.3x of `node -e 0`, median wall time, median of',
    `${ROUNDS} rounds (one hyperfine invocation each). The serve's own work for the request (the`,
    'upstream request over its pooled TLS connection, the audit entries) is part of the time.',
    '',
    `Rounds: ${ratioText.join(', ')}; the median round (bold) is shown in full. Verdict: ${
      met
        ? `met (${x(ratio)} ≤ ${x(GOAL_EXEC_SERVE)})`
        : `**missed** (${x(ratio)} > ${x(GOAL_EXEC_SERVE)})`
    }; on the fastest runs ${x(b.ratios[i].min)}, on CPU time ${x(b.ratios[i].cpu)}.`,
    '',
    row(['command', 'median', 'fastest', 'CPU (user+sys)', 'ratio: median', 'fastest', 'CPU']),
    row(['---', '---', '---', '---', '---', '---', '---']),
    ...Object.entries(r).map(([name, t]) =>
      row([
        `\`${name}\``,
        ms(t.median),
        ms(t.min),
        ms(t.cpu),
        x(t.median / base.median),
        x(t.min / base.min),
        x(t.cpu / base.cpu),
      ])
    ),
    '',
    'Ratios are to the mean of the two `node -e 0` rows.',
    '',
    '```sh',
    b.command,
    '```',
    '',
    "What start-up loads (bench/loaded.ts: the project's modules from the sources, where each is a",
    'file; the built-in modules Node loads for the bundle the binary embeds, beyond the',
    `${b.bare.builtins.length} an empty script loads):`,
    '',
    row(['run', 'project modules', 'built-in modules beyond a bare script']),
    row(['---', '---', '---']),
    ...([
      ['`--version`', b.version],
      ['`exec` through serve', b.serveExec],
      ['`exec` unsealing itself (one-shot)', b.oneShot],
    ] as Array<[string, Loaded]>).map(([name, l]) =>
      row([name, String(l.modules.length), `${extra(l).length} (${publicNames(extra(l))})`])
    ),
    '',
    `\`exec\` through serve loads: ${b.serveExec.modules.map((m) => `\`${m}\``).join(', ')}.`,
    '',
    '```sh',
    'TP_BENCH_LOADED=out.json node_modules/.bin/node --import ./bench/loaded.ts cmd/main.ts --home $W/home exec --template $W/small.json',
    'TP_BENCH_LOADED=out.json TP_BENCH_LOADED_HOOKS=0 node_modules/.bin/node --import ./bench/loaded.ts dist/trust-protocol.cjs --home $W/home exec --template $W/small.json',
    '```',
    '',
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.chdir(path.resolve(path.dirname(new URL(import.meta.url).pathname), '..'));
  const parent = fs.mkdtempSync(path.join(process.env.TMPDIR ?? '/tmp', 'tp-bench-exec-'));
  try {
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', NO_COLOR: '1' };
    const b = await benchExecServe(parent, env, (t) => process.stderr.write(`== ${t}\n`));
    process.stdout.write(execServeMarkdown(b));
  } finally {
    fs.rmSync(parent, { recursive: true, force: true });
  }
}
