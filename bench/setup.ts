/**
 * The set-up the gateway benches share (bench/gateway.ts, portkey.ts, team_store.ts, keeper.ts;
 * monitor.ts and exec_serve.ts use a piece):
 * running the CLI, a home with one credential and one agent granted it, serve's arguments, the
 * local upstream and the node:http proxies as children, and small helpers for ports, children and
 * their peak resident set. `cli` is the command before the CLI's words: the binary
 * (`['dist/trust-protocol']`), or node and another tree's `cmd/main.ts`.
 */
import type { Buffer } from 'node:buffer';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { createServer } from 'node:net';
import * as path from 'node:path';

export const NODE = 'node_modules/.bin/node';
export const CA = path.resolve('fixtures/tls/ca.pem');
export const HOST = 'api.allowed.test';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Starts a child and resolves with the first line it prints on stdout. */
export function firstLine(child: ChildProcess, name: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    child.on('error', reject);
    child.on('exit', (code) => reject(new Error(`${name} exited (${code})`)));
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const nl = out.indexOf('\n');
      if (nl >= 0) resolve(out.slice(0, nl));
    });
  });
}

/** The process's peak resident set (VmHWM), MB. */
export function peakRssMb(pid: number): number {
  const hwm = /^VmHWM:\s+(\d+) kB$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (hwm === null) throw new Error(`no VmHWM in /proc/${pid}/status`);
  return Number(hwm[1]) / 1024;
}

/** SIGTERM, resolved when the child has exited (at once if it has already). */
export function stop(child: ChildProcess | undefined): Promise<void> {
  if (child === undefined || child.exitCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}

/** `cli --home HOME WORDS...` with `input` (default none) on stdin: its stdout; a failure throws. */
export function tp(
  cli: readonly string[],
  home: string,
  words: string[],
  opts: { env: Record<string, string>; input?: string },
): string {
  const [file, ...prefix] = cli as [string, ...string[]];
  const r = spawnSync(file, [...prefix, '--home', home, ...words], {
    env: opts.env,
    input: opts.input ?? '',
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`${words.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

/**
 * `init` of `home` at the KDF floor, credential `bench_key` (a random secret) for HOST injected as
 * a bearer token, and agent `bench-agent` (COMPANION) granted it: the agent's id and token.
 */
export function benchHome(
  cli: readonly string[],
  home: string,
  passwordFile: string,
  env: Record<string, string>,
): { id: string; token: string } {
  const pw = ['--password-file', passwordFile];
  tp(cli, home, ['init', '--kdf-memory-mib', '19', '--kdf-iterations', '2', ...pw], { env });
  tp(cli, home, [
    'credential',
    'add',
    'bench_key',
    '--allowed-domains',
    HOST,
    '--base-url',
    `https://${HOST}`,
    '--inject',
    'Authorization: Bearer {{CREDENTIAL}}',
    ...pw,
  ], { env, input: `sk-bench-${randomBytes(16).toString('hex')}` });
  const agent = JSON.parse(
    tp(cli, home, ['--json', 'agent', 'register', 'bench-agent', '--tier', 'COMPANION', ...pw], {
      env,
    }),
  ) as { id: string; token: string };
  tp(cli, home, ['agent', 'grant', agent.id, 'bench_key', ...pw], { env });
  return agent;
}

/**
 * serve's words on `home`, HOST's port 443 connected to the local upstream at `upstreamPort`;
 * `ttl` null gives no --ttl, serve's default (8h): bench/keeper.ts's serves have always run so.
 */
export function serveArgs(
  home: string,
  passwordFile: string,
  upstreamPort: number,
  ttl: string | null = '30m',
): string[] {
  return [
    '--home',
    home,
    '--json',
    'serve',
    '--listen',
    '127.0.0.1:0',
    ...(ttl === null ? [] : ['--ttl', ttl]),
    '--cacert',
    CA,
    '--connect-to',
    `${HOST}:443:127.0.0.1:${upstreamPort}`,
    '--password-file',
    passwordFile,
  ];
}

/** bench/upstream.ts (1 MiB for /big) as one of `children`: its port. */
export async function startUpstream(
  env: Record<string, string>,
  children: ChildProcess[],
): Promise<number> {
  const child = spawn(NODE, ['bench/upstream.ts', '1'], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env,
  });
  children.push(child);
  return Number(await firstLine(child, 'bench/upstream.ts'));
}

/**
 * The two bench/node_proxy.ts baselines in front of the upstream, bare and audited (its audit home
 * a new folder in `work`), as `children`: their URLs, and that audit home.
 */
export async function startNodeProxies(
  work: string,
  upstream: number,
  env: Record<string, string>,
  children: ChildProcess[],
): Promise<{ node: string; nodeAudited: string; auditHome: string }> {
  const auditHome = fs.mkdtempSync(path.join(work, 'node-proxy-'));
  const urls: Record<'node' | 'nodeAudited', string> = { node: '', nodeAudited: '' };
  for (const [name, mode] of [['node', 'bare'], ['nodeAudited', 'audited']] as const) {
    const child = spawn(
      NODE,
      ['bench/node_proxy.ts', mode, String(upstream), HOST, CA, auditHome],
      { stdio: ['ignore', 'pipe', 'inherit'], env },
    );
    children.push(child);
    urls[name] = `http://127.0.0.1:${await firstLine(child, `node_proxy.ts ${mode}`)}`;
  }
  return { ...urls, auditHome };
}
