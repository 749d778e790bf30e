/**
 * A fast writer of large audit logs (issue 16): appends `n` request entries to an initialised
 * home's log in the real format (src/audit.ts's `entryFormatter`: fixed field order, hash chain,
 * HMACs under the vault's audit key), then records the new head in the vault as `serve` does
 * after its appends. Entries go out in large writes with one fsync at the end, which is what
 * makes ten million of them take minutes instead of hours; `audit verify` accepts the result.
 *
 * As a command: node bench/gen_log.ts HOME PASSWORD_FILE ENTRIES
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { entryFormatter, lineDigest, logTail } from '../src/audit.ts';
import { openHome } from '../src/home.ts';
import { openState } from '../src/state.ts';
import { loadVault, unseal, wipeKeys } from '../src/vault.ts';

const AGENTS = ['agt_4f7f2af5c2203f70452d', 'agt_9c1e0b7d33a2f4e81c07', 'agt_0d5a6b2c8e9f1a3b4c5d'];
const HOSTS = ['api.openai.com', 'api.anthropic.com', 'api.github.com'];
const CREDENTIALS = ['openai', 'anthropic', 'github'];
/** One entry every 50 ms of simulated serve traffic, ending about now. */
const STEP_MS = 50;

/**
 * Appends `n` entries (allowed, completed, now and then a denial) to the log of the home at
 * `homeDir`, unsealed with `password`; returns the new head.
 */
export async function generateLog(
  homeDir: string,
  password: string,
  n: number,
  options: { end?: Date } = {},
): Promise<{ seq: number; hash: string }> {
  const home = openHome(homeDir, { create: false });
  const keys = unseal(loadVault(home), new TextEncoder().encode(password));
  try {
    const format = entryFormatter(keys.audit);
    const tail = logTail(home).last;
    if (tail === null) throw new Error(`${homeDir} has no audit log: run init first`);
    let seq = (JSON.parse(tail) as { seq: number }).seq;
    let prev = lineDigest(tail) as string;
    const t0 = (options.end ?? new Date()).getTime() - n * STEP_MS;
    const fd = fs.openSync(path.join(homeDir, 'audit', 'audit.log'), 'a');
    try {
      let batch = '';
      for (let i = 0; i < n; i++) {
        const who = i % 7 === 0 ? 1 : i % 11 === 0 ? 2 : 0;
        const agent = AGENTS[who] as string;
        const denied = i % 997 === 0;
        const kind = denied ? 'denied' : i % 2 === 0 ? 'allowed' : 'completed';
        const data: Record<string, unknown> = {
          agent,
          credentials: [CREDENTIALS[who]],
          method: 'POST',
          host: HOSTS[who],
          path: '/v1/chat/completions',
        };
        if (kind === 'completed') Object.assign(data, { status: 200, bytes: 1234 + (i % 5000) });
        if (denied) data.reason = 'domain_not_allowed';
        seq += 1;
        const { line, digest } = format({
          event: `request.${kind}`,
          actor: { type: 'agent', id: agent },
          outcome: kind === 'completed' ? 'ok' : kind,
          data,
          seq,
          ts: new Date(t0 + i * STEP_MS).toISOString(),
          prev,
        });
        prev = digest;
        batch += line + '\n';
        if (batch.length >= 4 * 1024 * 1024) {
          fs.writeSync(fd, batch);
          batch = '';
        }
      }
      if (batch.length > 0) fs.writeSync(fd, batch);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    const head = { seq, hash: prev };
    await openState(home).vault.recordHead(keys, head);
    return head;
  } finally {
    wipeKeys(keys);
  }
}

if (process.argv[1]?.endsWith('gen_log.ts')) {
  const [homeDir, passwordFile, count] = process.argv.slice(2);
  if (homeDir === undefined || passwordFile === undefined || !/^\d+$/.test(count ?? '')) {
    console.error('usage: node bench/gen_log.ts HOME PASSWORD_FILE ENTRIES');
    process.exit(2);
  }
  const password = fs.readFileSync(passwordFile, 'utf8').replace(/\r?\n$/, '');
  const started = performance.now();
  const head = await generateLog(homeDir, password, Number(count));
  console.log(
    `wrote ${count} entries (head #${head.seq}) in ${
      ((performance.now() - started) / 1000).toFixed(1)
    } s`,
  );
}

/** `trust-protocol init` of `home` at the KDF floor, run with `cli` (the binary, or node + main.ts). */
export function initHome(
  cli: readonly string[],
  home: string,
  passwordFile: string,
  env?: Record<string, string>,
): void {
  const [file, ...pre] = cli;
  const r = spawnSync(file!, [
    ...pre,
    '--home',
    home,
    'init',
    '--kdf-memory-mib',
    '19',
    '--kdf-iterations',
    '2',
    '--password-file',
    passwordFile,
  ], { ...(env === undefined ? {} : { env }), stdio: 'ignore' });
  if (r.status !== 0) throw new Error(`init of ${home} failed`);
}
