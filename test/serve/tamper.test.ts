/**
 * State changed behind a running serve, which keeps what it read between requests (the vault
 * while its bytes stay the same, the audit trail's brakes and vault changes read forward, the
 * digests of the entries it wrote): a vault.json restored from an older copy, and a cut audit
 * log, are refused on the very next request, with nothing sent upstream.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newAgent, type TestHome } from '../helpers/cli.ts';
import type { Listener } from '../helpers/listeners.ts';
import { http, json, type Served, servedCredential } from '../helpers/serve.ts';

let t: TestHome;
let upstream: Listener;
let s: Served;
let agent: { id: string; token: string };
let stop = async () => {};

beforeAll(async () => {
  ({ t, upstream, s, agent, stop } = await servedCredential('sk-tamper-canary-0123456789'));
});
afterAll(async () => {
  await stop();
});

function _request(token: string | null = agent.token) {
  return http(s, '/v1/proxy', {
    body: JSON.stringify({
      credential: 'k',
      url: 'https://api.allowed.test/x',
      headers: { Authorization: 'Bearer {{CREDENTIAL}}' },
    }),
    headers: {
      'Content-Type': 'application/json',
      ...(token === null ? {} : { Authorization: `Bearer ${token}` }),
    },
  });
}

const vaultFile = () => path.join(t.home, 'vault.json');
const logFile = () => path.join(t.home, 'audit', 'audit.log');

describe('serve and state changed behind its back', () => {
  it('a vault.json restored from before `agent revoke`: 503 vault_rollback, nothing sent; put back: 200', async () => {
    expect((await _request()).status).toBe(200);
    const old = fs.readFileSync(vaultFile());
    const other = await newAgent(t, { name: 'other' });
    const revoked = await t.tp(['agent', 'revoke', other.id, '--password-file', t.passwordFile]);
    expect(revoked.code, revoked.stderr).toBe(0);
    const current = fs.readFileSync(vaultFile());
    _rewrite(vaultFile(), old);
    const sent = upstream.requests.length;
    for (let i = 0; i < 3; i++) {
      const r = await _request();
      expect(r.status).toBe(503);
      expect(json(r).error.code).toBe('vault_rollback');
    }
    expect(upstream.requests).toHaveLength(sent);
    // serve never wrote its audit head into the restored copy.
    expect(fs.readFileSync(vaultFile()).equals(old)).toBe(true);
    _rewrite(vaultFile(), current);
    expect((await _request()).status).toBe(200);
  });

  it('a brake serve has seen stays when its files are deleted and serve has moved the head past it', async () => {
    const on = await t.tp(['emergency', 'activate', '--scope', 'global', '--reason', 'incident']);
    expect(on.code, on.stderr).toBe(0);
    // serve audits a refused request under its key and moves the vault's head past the brake's
    // own entry; from then on only the vault's list of known brakes holds it. (No token: the
    // monitor, which acts on an agent's denials, stays out of it.)
    expect((await http(s, '/v1/gateway/nope/x')).status).toBe(423);
    await _headAtEnd();
    const brakes = path.join(t.home, 'brakes');
    for (const name of fs.readdirSync(brakes)) fs.rmSync(path.join(brakes, name));
    const sent = upstream.requests.length;
    const r = await _request();
    expect(r.status).toBe(423);
    expect(json(r).error.code).toBe('brake_global');
    expect(upstream.requests).toHaveLength(sent);
    const off = await t.tp([
      'emergency',
      'clear',
      '--confirmation',
      'CONFIRM_RESTORE_ACCESS',
      '--password-file',
      t.passwordFile,
    ]);
    expect(off.code, off.stderr).toBe(0);
    expect((await _request()).status).toBe(200);
  });

  it('a FIFO in brakes/ is a fail-closed brake, not a hang; removed: 200', async () => {
    const fifo = path.join(t.home, 'brakes', 'brk_0123456789abcdef.json');
    expect(spawnSync('mkfifo', ['-m', '600', fifo]).status).toBe(0);
    const sent = upstream.requests.length;
    // No token: the agent's own denials would make the monitor brake it (a denial burst).
    const r = await _request(null);
    expect(r.status).toBe(423);
    expect(json(r).error.message).toContain('brk_0123456789abcdef.json cannot be read');
    expect((await http(s, '/v1/health')).status).toBe(200);
    expect(upstream.requests).toHaveLength(sent);
    fs.rmSync(fifo);
    const after = await _request();
    expect(after.status, after.body.toString()).toBe(200);
  });

  it('the audit log cut below the head the vault recorded: 503 audit_truncated, nothing sent', async () => {
    for (let i = 0; i < 3; i++) expect((await _request()).status).toBe(200);
    const lines = await _headAtEnd();
    _rewrite(logFile(), lines.slice(0, -4).join('\n') + '\n');
    const sent = upstream.requests.length;
    const r = await _request();
    expect(r.status).toBe(503);
    expect(json(r).error.code).toBe('audit_truncated');
    expect(upstream.requests).toHaveLength(sent);
  });
});

/** Waits until serve has recorded the log's last entry as the vault's head (within 250 ms). */
async function _headAtEnd(): Promise<string[]> {
  const lines = fs.readFileSync(logFile(), 'utf8').trimEnd().split('\n');
  const last = JSON.parse(lines.at(-1)!).seq as number;
  const deadline = Date.now() + 5000;
  while (JSON.parse(fs.readFileSync(vaultFile(), 'utf8')).body.audit_head?.seq !== last) {
    expect(Date.now()).toBeLessThan(deadline);
    await new Promise((r) => setTimeout(r, 10));
  }
  return lines;
}

/** Replaces a state file's content, keeping it private (Deno's writeFileSync ignores the umask). */
function _rewrite(file: string, content: string | Uint8Array): void {
  fs.writeFileSync(file, content, { mode: 0o600 });
  fs.chmodSync(file, 0o600);
}
