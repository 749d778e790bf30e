/**
 * The team store (issue #19), against the file store in the same run:
 *   - gateway throughput: wrk (32 connections, 10 s) on serve's `/v1/gateway/...` with the home as
 *     the store, then with the home as a working copy of a PostgreSQL store; alternating rounds,
 *     medians. Goal: the PostgreSQL store at least 0.5x the file store's requests per second.
 *   - brake propagation: two serves on one store (two homes); a brake placed with the CLI on the
 *     first machine's home, and the time from that command's exit until the second serve refuses
 *     (polled every 5 ms); then cleared, and the same until it answers again. Goal: p99 under 1 s.
 * PostgreSQL is Debian's (`make tools`), started as in the tests (test/helpers/postgres.ts).
 *   node_modules/.bin/node bench/team_store.ts [ROUNDS] [BRAKES]
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { request } from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import process from 'node:process';
import { findPostgres, startPostgres } from '../test/helpers/postgres.ts';
import { ensureWrk, runWrk, type WrkResult } from './gateway.ts';
import { benchHome, CA, firstLine, serveArgs, startUpstream, stop, tp } from './setup.ts';

const BINARY = 'dist/trust-protocol';
const GOAL_RATIO = 0.5;
const GOAL_BRAKE_P99_MS = 1000;
const rounds = Number(process.argv[2] ?? 3);
const brakes = Number(process.argv[3] ?? 30);

const found = findPostgres();
if (found.bin === null) throw new Error(`PostgreSQL is needed: ${found.why}`);
ensureWrk((s) => console.error(s));
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'tp-bench-team-'));
const password = path.join(work, 'password');
fs.writeFileSync(password, 'a master password of ordinary length\n', { mode: 0o600 });
const env: Record<string, string> = {
  PATH: process.env.PATH ?? '/usr/bin:/bin',
  HOME: work,
  NODE_EXTRA_CA_CERTS: CA,
};
const children: ChildProcess[] = [];
const pg = startPostgres(found.bin);

async function serve(home: string, store: string | null, upstream: number) {
  const child = spawn(BINARY, serveArgs(home, password, upstream), {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: store === null ? env : { ...env, TRUST_PROTOCOL_STORE: store },
  });
  children.push(child);
  const info = JSON.parse(await firstLine(child, 'serve')) as { listen: string[] };
  return { child, url: info.listen[0] as string };
}

function status(url: string, token: string): Promise<number> {
  return new Promise((resolve) => {
    const req = request(`${url}/v1/gateway/bench_key/v1/models`, {
      headers: { Authorization: `Bearer ${token}` },
      agent: false,
    }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', () => resolve(0));
    req.end();
  });
}

async function until(url: string, token: string, want: number): Promise<number> {
  const start = performance.now();
  for (;;) {
    if ((await status(url, token)) === want) return performance.now() - start;
    if (performance.now() - start > 10_000) throw new Error(`no ${want} within 10 s`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

function percentile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] as number;
}

try {
  const upstream = await startUpstream(env, children);
  const home = path.join(work, 'home');
  const agent = benchHome([BINARY], home, password, env);
  const store = pg.database();
  tp([BINARY], home, ['store', 'migrate', '--to', store, '--password-file', password], { env });
  const copyA = path.join(work, 'copy-a');
  const copyB = path.join(work, 'copy-b');
  const auth = [`Authorization: Bearer ${agent.token}`];

  const results: { file: WrkResult[]; postgres: WrkResult[] } = { file: [], postgres: [] };
  for (let round = 0; round < rounds; round++) {
    for (const kind of ['file', 'postgres'] as const) {
      console.error(`round ${round + 1}/${rounds}: ${kind} store`);
      const s = await serve(
        kind === 'file' ? home : copyA,
        kind === 'file' ? null : store,
        upstream,
      );
      results[kind].push(runWrk(`${s.url}/v1/gateway/bench_key/v1/models`, auth, env));
      await stop(s.child);
    }
  }
  const rpsFile = median(results.file.map((r) => r.rps));
  const rpsPg = median(results.postgres.map((r) => r.rps));

  console.error(`brake propagation: ${brakes} brakes between two serves`);
  const a = await serve(copyA, store, upstream);
  const b = await serve(copyB, store, upstream);
  const placed: number[] = [];
  const lifted: number[] = [];
  for (let i = 0; i < brakes; i++) {
    // On a's machine: the CLI hands it to a's serve on its socket, which puts it in the store.
    const scope = ['--scope', 'agent', '--agent-id', agent.id];
    tp([BINARY], copyA, ['emergency', 'activate', ...scope, '--reason', `bench ${i}`], {
      env: { ...env, TRUST_PROTOCOL_STORE: store },
    });
    placed.push(await until(b.url, agent.token, 423));
    tp([BINARY], copyA, ['emergency', 'clear', ...scope, '--password-file', password], {
      env: { ...env, TRUST_PROTOCOL_STORE: store },
    });
    lifted.push(await until(b.url, agent.token, 200));
  }
  await stop(a.child);
  await stop(b.child);

  const ratio = rpsPg / rpsFile;
  const p99 = percentile(placed, 99);
  const row = (name: string, rs: WrkResult[]) =>
    `| ${name} | ${rs.map((r) => r.rps.toFixed(0)).join(', ')} | ${
      median(rs.map((r) => r.p50Ms)).toFixed(2)
    } | ${median(rs.map((r) => r.p99Ms)).toFixed(2)} |`;
  console.log(
    [
      `### Team store (issue #19): ${rounds} rounds, wrk 32 connections 10 s, ${brakes} brakes`,
      '',
      '| store | req/s per round | p50 ms (median) | p99 ms (median) |',
      '| --- | --- | --- | --- |',
      row('file (the home)', results.file),
      row('PostgreSQL (the home a working copy)', results.postgres),
      '',
      `PostgreSQL / file requests per second: ${ratio.toFixed(2)} (goal >= ${GOAL_RATIO}: ${
        ratio >= GOAL_RATIO ? 'met' : 'NOT met'
      })`,
      ...(placed.length === 0 ? [] : [
        `Brake propagation to another serve after the CLI returned: p50 ${
          percentile(placed, 50).toFixed(0)
        } ms, p99 ${p99.toFixed(0)} ms, max ${
          Math.max(...placed).toFixed(0)
        } ms (goal p99 < ${GOAL_BRAKE_P99_MS} ms: ${
          p99 < GOAL_BRAKE_P99_MS ? 'met' : 'NOT met'
        }); lifted: p50 ${percentile(lifted, 50).toFixed(0)} ms, p99 ${
          percentile(lifted, 99).toFixed(0)
        } ms`,
      ]),
    ].join('\n'),
  );
} finally {
  for (const c of children) await stop(c);
  pg.stop();
  fs.rmSync(work, { recursive: true, force: true });
}
