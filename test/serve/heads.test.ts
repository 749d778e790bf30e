/**
 * serve writes the audit head to the vault off the request path (src/serve/audit.ts). Once such a
 * write has failed, serve fails closed: the next request is refused before its secret is
 * decrypted, so nothing more goes upstream under a head the vault no longer follows.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestHome } from '../helpers/cli.ts';
import type { Listener } from '../helpers/listeners.ts';
import { http, json, type Served, servedCredential } from '../helpers/serve.ts';

let t: TestHome;
let upstream: Listener;
let s: Served;
let agent: { id: string; token: string };
let stop = async () => {};

beforeAll(async () => {
  ({ t, upstream, s, agent, stop } = await servedCredential('sk-heads-canary-0123456789'));
});
afterAll(async () => {
  fs.rmSync(path.join(t.home, 'vault.lock'), { force: true });
  await stop();
});

function _request() {
  return http(s, '/v1/proxy', {
    body: JSON.stringify({
      credential: 'k',
      url: 'https://api.allowed.test/x',
      headers: { Authorization: 'Bearer {{CREDENTIAL}}' },
    }),
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${agent.token}` },
  });
}

describe('a failed head write', () => {
  it(
    'the vault lock held past its 30 s timeout: later requests are refused, nothing sent',
    async () => {
      expect((await _request()).status).toBe(200);
      // A live owner (pid 1) that never lets go: serve's next head write waits 30 s, then fails.
      fs.writeFileSync(path.join(t.home, 'vault.lock'), '1 held-by-test', { mode: 0o600 });
      expect((await _request()).status).toBe(200);
      // Waited out with room: the head write starts after the answer and fails at 30 s.
      await new Promise((r) => setTimeout(r, 35_000));
      const sent = upstream.requests.length;
      const r = await _request();
      expect(r.status).toBe(500);
      expect(json(r).error.code).toBe('lock_timeout');
      expect(upstream.requests).toHaveLength(sent);
      // It stays refused with the lock gone: the head the vault holds lags the log (restart serve).
      fs.rmSync(path.join(t.home, 'vault.lock'));
      expect((await _request()).status).toBe(500);
      expect(upstream.requests).toHaveLength(sent);
    },
    90_000,
  );
});

describe('the head window (250 ms, docs/decisions.md)', () => {
  it(
    'a running serve records the head at the log end by itself; killed, a cut below it is caught',
    async () => {
      const own = await servedCredential('sk-heads-window-canary-0123456789');
      try {
        const request = () =>
          http(own.s, '/v1/proxy', {
            body: JSON.stringify({
              credential: 'k',
              url: 'https://api.allowed.test/x',
              headers: { Authorization: 'Bearer {{CREDENTIAL}}' },
            }),
            headers: {
              'Content-Type': 'application/json',
              Authorization: `Bearer ${own.agent.token}`,
            },
          });
        for (let i = 0; i < 3; i++) expect((await request()).status).toBe(200);
        const log = path.join(own.t.home, 'audit', 'audit.log');
        const vault = path.join(own.t.home, 'vault.json');
        const lines = fs.readFileSync(log, 'utf8').trimEnd().split('\n');
        const last = JSON.parse(lines.at(-1)!).seq as number;
        // No stop, no further request: the deferred write alone brings the head to the last entry
        // (the bound only turns a hang into a failure; no timing is asserted).
        const deadline = Date.now() + 10_000;
        while (JSON.parse(fs.readFileSync(vault, 'utf8')).body.audit_head?.seq !== last) {
          expect(Date.now()).toBeLessThan(deadline);
          await new Promise((r) => setTimeout(r, 20));
        }
        // Killed, it writes nothing more; the log cut below the recorded head is reported.
        const keeper = (own.s.info as unknown as { keeper_pid: number }).keeper_pid;
        process.kill(keeper, 'SIGKILL');
        process.kill(own.s.info.pid, 'SIGKILL');
        await own.s.exited;
        fs.writeFileSync(log, lines.slice(0, -2).join('\n') + '\n', { mode: 0o600 });
        const verify = await own.t.tp([
          '--json',
          'audit',
          'verify',
          '--password-file',
          own.t.passwordFile,
        ]);
        expect(verify.code).not.toBe(0);
        expect(verify.stdout + verify.stderr).toContain('truncated');
      } finally {
        await own.stop();
      }
    },
    60_000,
  );
});
