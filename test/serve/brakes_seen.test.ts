/**
 * A brake serve enforced is recorded in the vault (MACed `known_brakes`) when serve first sees
 * it, not only on the next allowed request: an agent that then deletes every record of the brake
 * (the file, the journal line, and the password-less audit entries, cut off the log's end) does
 * not lift it, for serve nor for a one-shot `exec` (issue #14).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addCredential, newAgent, newHome, type TestHome } from '../helpers/cli.ts';
import { type Listener, startHttpsListener } from '../helpers/listeners.ts';
import { http, json, type Served, startServe, upstreamArgs } from '../helpers/serve.ts';

const CANARY = `sk-seen-canary-${Math.random().toString(16).slice(2, 10)}`;

let t: TestHome;
let upstream: Listener;
let s: Served;
let agent: { id: string; token: string };

beforeAll(async () => {
  t = await newHome();
  upstream = await startHttpsListener();
  const added = await addCredential(t, 'k', CANARY, ['--allowed-domains', 'api.allowed.test']);
  expect(added.code, added.stderr).toBe(0);
  agent = await newAgent(t, { name: 'worker', grants: ['k'] });
  // Not HOME/serve.sock: a one-shot exec must not find this serve and hand it the request.
  s = await startServe(t, [...upstreamArgs(t, upstream.port), '--socket', `${t.dir}/s.sock`]);
});
afterAll(async () => {
  await s.stop();
  await upstream.close();
});

const TEMPLATE = {
  credential: 'k',
  url: 'https://api.allowed.test/x',
  headers: { Authorization: 'Bearer {{CREDENTIAL}}' },
};

function _viaServe(token: string | null) {
  return http(s, '/v1/proxy', {
    body: JSON.stringify(TEMPLATE),
    headers: {
      'Content-Type': 'application/json',
      ...(token === null ? {} : { Authorization: `Bearer ${token}` }),
    },
  });
}

/** A one-shot exec that holds the password: it would send, were the brake lifted. */
function _oneShot(token: string) {
  return t.tp([
    'exec',
    '--template',
    t.file('tpl.json', JSON.stringify(TEMPLATE)),
    '--cacert',
    path.join(t.dir, 'ca.pem'),
    '--connect-to',
    `api.allowed.test:443:127.0.0.1:${upstream.port}`,
    '--password-file',
    t.passwordFile,
  ], { env: { TRUST_PROTOCOL_TOKEN: token } });
}

/** What an agent that can write the home does: every record of the brake goes. */
function _eraseBrake(id: string): void {
  const dir = path.join(t.home, 'brakes');
  for (const name of fs.readdirSync(dir)) fs.rmSync(path.join(dir, name));
  const log = path.join(t.home, 'audit', 'audit.log');
  const lines = fs.readFileSync(log, 'utf8').trimEnd().split('\n');
  const at = lines.findIndex((l) => {
    const e = JSON.parse(l);
    return e.event === 'brake.activate' && e.data.brake === id;
  });
  expect(at).toBeGreaterThan(0);
  // Everything from the brake's entry on was written without the password (no MAC to break).
  expect(lines.slice(at).every((l) => JSON.parse(l).mac === null)).toBe(true);
  fs.writeFileSync(log, lines.slice(0, at).join('\n') + '\n', { mode: 0o600 });
  fs.chmodSync(log, 0o600);
}

async function _activate(args: string[]): Promise<string> {
  const on = await t.tp(['--json', 'emergency', 'activate', '--reason', 'incident', ...args]);
  expect(on.code, on.stderr).toBe(0);
  return JSON.parse(on.stdout).id as string;
}

async function _clear(args: string[]): Promise<void> {
  const off = await t.tp(['emergency', 'clear', ...args, '--password-file', t.passwordFile]);
  expect(off.code, off.stderr).toBe(0);
}

const SCENARIOS = [
  {
    scope: 'credential',
    args: () => ['--scope', 'credential', '--credential-name', 'k'],
    token: () => agent.token,
  },
  // No token: the monitor, which acts on an agent's own denials, stays out of it.
  { scope: 'global', args: () => ['--scope', 'global'], token: () => null },
  // Last: clearing an agent brake also ends the agent's token.
  {
    scope: 'agent',
    args: () => ['--scope', 'agent', '--agent-id', agent.id],
    token: () => agent.token,
  },
] as const;

describe('a brake serve refused a request under', () => {
  it('allows before any brake (the setup works)', async () => {
    const r = await _viaServe(agent.token);
    expect(r.status, r.body.toString()).toBe(200);
  });

  for (const sc of SCENARIOS) {
    it(`${sc.scope} scope stays when all its records are deleted: serve 423, exec exit 5, nothing sent`, async () => {
      const id = await _activate([...sc.args()]);
      const sent = upstream.requests.length;
      const refused = await _viaServe(sc.token());
      expect(refused.status).toBe(423);
      expect(json(refused).error.code).toBe(`brake_${sc.scope}`);
      _eraseBrake(id);
      for (let i = 0; i < 2; i++) {
        const r = await _viaServe(sc.token());
        expect(r.status, r.body.toString()).toBe(423);
        expect(json(r).error.code).toBe(`brake_${sc.scope}`);
      }
      const e = await _oneShot(agent.token);
      expect(e.code, e.stderr).toBe(5);
      expect(e.stderr).toContain('incident');
      expect(e.stderr + e.stdout).not.toContain(CANARY);
      expect(upstream.requests).toHaveLength(sent);
      if (sc.scope === 'global') {
        await _clear(['--scope', 'global', '--confirmation', 'CONFIRM_RESTORE_ACCESS']);
      } else if (sc.scope === 'credential') await _clear([...sc.args()]);
      if (sc.scope !== 'agent') {
        const r = await _viaServe(agent.token);
        expect(r.status, r.body.toString()).toBe(200);
      }
    });
  }
});

describe('a brake placed while no request reaches serve', () => {
  it('is recorded in the vault all the same; erased afterwards, it still holds', async () => {
    const fresh = await newAgent(t, { name: 'fresh', grants: ['k'] });
    const id = await _activate(['--scope', 'agent', '--agent-id', fresh.id]);
    // No request: serve notices the brake by itself. Bounded wait for the vault to record it.
    const known = () =>
      JSON.parse(fs.readFileSync(path.join(t.home, 'vault.json'), 'utf8')).body.known_brakes
        .some((b: { id: string }) => b.id === id);
    for (let i = 0; i < 100 && !known(); i++) await new Promise((r) => setTimeout(r, 100));
    expect(known()).toBe(true);
    const sent = upstream.requests.length;
    _eraseBrake(id);
    const r = await _viaServe(fresh.token);
    expect(r.status, r.body.toString()).toBe(423);
    expect(json(r).error.code).toBe('brake_agent');
    const e = await _oneShot(fresh.token);
    expect(e.code, e.stderr).toBe(5);
    expect(upstream.requests).toHaveLength(sent);
  });
});
