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
      await new Promise((r) => setTimeout(r, 31_000));
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
    60_000,
  );
});
