/**
 * Detection acting as requests happen, through the real CLI: a scripted agent triggers each
 * anomaly kind against a local upstream, and the test reads what the audit trail recorded and
 * what the action did (brake: the next request exits 5; refuse_renewal: `agent renew` exits 3).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addCredential, newAgent, sharedHome, type TestHome } from '../helpers/cli.ts';
import { awayFromHourEnd, seedHistory, workingHours } from '../helpers/history.ts';
import { type Listener, startHttpsListener, TEST_CA } from '../helpers/listeners.ts';

const AUTH = { Authorization: 'Bearer {{CREDENTIAL}}' };

function handler(req: IncomingMessage, res: ServerResponse): void {
  if (req.url === '/fail') {
    res.writeHead(500, { 'content-type': 'text/plain' });
    res.end('upstream broke');
    return;
  }
  const body = req.url === '/big'
    ? 'x'.repeat(200_000)
    : req.url === '/page'
    ? 'x'.repeat(2_000)
    : '{"ok":true}';
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(body);
}

interface Entry {
  seq: number;
  event: string;
  actor: { type: string; id?: string };
  outcome: string;
  data: Record<string, unknown>;
}

function audit(t: TestHome): Entry[] {
  return readFileSync(path.join(t.home, 'audit', 'audit.log'), 'utf8').split('\n')
    .filter((l) => l !== '').map((l) => JSON.parse(l) as Entry);
}

function anomalies(t: TestHome, agent: string): Entry[] {
  return audit(t).filter((e) => e.event === 'monitor.anomaly' && e.data.agent === agent);
}

let upstream: Listener;
beforeAll(async () => {
  upstream = await startHttpsListener(handler);
});
afterAll(async () => {
  await upstream.close();
});

/** Two credentials, added once for the file and copied for each test. */
const worldHome = sharedHome(async (t) => {
  for (const [name, domain] of [['k', 'api.allowed.test'], ['k2', 'files.allowed.test']]) {
    const r = await addCredential(t, name!, `sk-live-${name}-0123456789`, [
      '--allowed-domains',
      domain!,
    ]);
    expect(r.code, r.stderr).toBe(0);
  }
});

async function world(): Promise<{ t: TestHome; route: string[] }> {
  const { t } = await worldHome();
  const ca = t.file('ca.pem', TEST_CA);
  const route = [
    '--cacert',
    ca,
    '--connect-to',
    `api.allowed.test:443:127.0.0.1:${upstream.port}`,
    '--connect-to',
    `files.allowed.test:443:127.0.0.1:${upstream.port}`,
  ];
  return { t, route };
}

function execAs(
  w: { t: TestHome; route: string[] },
  token: string,
  body: object,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const tpl = w.t.file(`t-${Math.random().toString(16).slice(2)}.json`, JSON.stringify(body));
  return w.t.tp(
    ['exec', '--template', tpl, '--password-file', w.t.passwordFile, ...w.route],
    { env: { TRUST_PROTOCOL_TOKEN: token } },
  );
}

function renew(t: TestHome, token: string, extra: string[] = []) {
  return t.tp(['--json', 'agent', 'renew', '--password-file', t.passwordFile, ...extra], {
    env: { TRUST_PROTOCOL_TOKEN: token },
  });
}

const get = (credential: string, url: string) => ({ credential, url, headers: AUTH });

describe('live detection through exec', () => {
  it(
    'a denial burst places the agent brake: the next request exits 5 until a human clears it',
    async () => {
      await awayFromHourEnd(60_000);
      const w = await world();
      const prober = await newAgent(w.t, { name: 'prober', grants: ['k'] });
      const ok = get('k', 'https://api.allowed.test/v1');
      expect((await execAs(w, prober.token, ok)).code).toBe(0);
      const probes = [
        get('k2', 'https://files.allowed.test/a'),
        get('k', 'https://evil.test/a'),
        get('k2', 'https://api.allowed.test/v2'),
        get('k', 'https://other.evil.test/b'),
        get('k', 'https://third.evil.test/c'),
      ];
      for (const p of probes) expect((await execAs(w, prober.token, p)).code).toBe(4);
      const [burst] = anomalies(w.t, prober.id);
      expect(burst?.data).toMatchObject({
        kind: 'denial_burst',
        severity: 'high',
        actions: ['record', 'refuse_renewal', 'brake'],
      });
      expect(burst?.actor).toEqual({ type: 'system' });
      const brake = audit(w.t).find((e) => e.event === 'brake.activate');
      expect(brake?.data).toMatchObject({ scope: 'agent', target: prober.id });
      expect(String(brake?.data.reason)).toMatch(/monitor: denial_burst/);

      const stopped = await execAs(w, prober.token, ok);
      expect(stopped.code).toBe(5);
      expect(upstream.requests.filter((r) => r.path === '/v1').length).toBeGreaterThan(0);
      const refused = await renew(w.t, prober.token);
      expect(refused.code).not.toBe(0);

      const cleared = await w.t.tp([
        '--json',
        'emergency',
        'clear',
        '--scope',
        'agent',
        '--agent-id',
        prober.id,
        '--password-file',
        w.t.passwordFile,
      ]);
      expect(cleared.code, cleared.stderr).toBe(0);
      // Clearing the brake restores access with the agent's current token (issue 16).
      const after = await execAs(w, prober.token, ok);
      expect(after.code, after.stderr).toBe(0);
      // Only one anomaly for the burst, however many monitors looked at the log.
      expect(anomalies(w.t, prober.id).filter((e) => e.data.kind === 'denial_burst')).toHaveLength(
        1,
      );
      expect((await w.t.tp(['audit', 'verify', '--password-file', w.t.passwordFile])).code).toBe(0);
    },
    130_000,
  );

  it('raises every other kind against a learned baseline, audited with its actions', async () => {
    // From the history's "now" to the last request, in one clock hour (Deno: about 70 s).
    await awayFromHourEnd(120_000);
    const w = await world();
    const now = new Date();
    const make = async (name: string, grants: string[]) => {
      const a = await newAgent(w.t, { name, grants });
      await seedHistory(w.t, a.id, workingHours(now));
      return a;
    };
    const loop = await make('loop', ['k']);
    const broken = await make('broken', ['k']);
    const hoarder = await make('hoarder', ['k']);
    const roamer = await make('roamer', ['k', 'k2']);

    for (let i = 0; i < 11; i++) {
      expect((await execAs(w, loop.token, get('k', 'https://api.allowed.test/v1'))).code).toBe(0);
    }
    for (let i = 0; i < 7; i++) {
      expect((await execAs(w, broken.token, get('k', 'https://api.allowed.test/fail'))).code)
        .toBe(0);
    }
    expect((await execAs(w, hoarder.token, get('k', 'https://api.allowed.test/big'))).code)
      .toBe(0);
    expect((await execAs(w, roamer.token, get('k2', 'https://files.allowed.test/x'))).code)
      .toBe(0);

    const kinds = (id: string) => anomalies(w.t, id).map((e) => e.data.kind).sort();
    expect(kinds(loop.id)).toEqual(['off_hours', 'rate_spike']);
    expect(kinds(broken.id)).toEqual(['error_spike', 'off_hours']);
    expect(kinds(hoarder.id)).toEqual(['off_hours', 'size_spike']);
    expect(kinds(roamer.id)).toEqual(['new_credential', 'new_host', 'off_hours']);

    const spike = anomalies(w.t, loop.id).find((e) => e.data.kind === 'rate_spike');
    // 11 requests within seconds cross the threshold at a pace far over 3 × it: high.
    expect(spike?.data).toMatchObject({
      severity: 'high',
      actions: ['record', 'refuse_renewal'],
      evidence: { requests: 11, threshold: 10 },
    });
    const size = anomalies(w.t, hoarder.id).find((e) => e.data.kind === 'size_spike');
    expect(size?.data).toMatchObject({ severity: 'high', evidence: { bytes: 200_000 } });
    // The history was replayed when the monitor first ran, and its old anomalies not acted on.
    expect(audit(w.t).filter((e) => e.event === 'monitor.rebuild')).toHaveLength(1);
    expect(audit(w.t).some((e) => e.event === 'brake.activate')).toBe(false);

    // refuse_renewal (the rate spike's default) blocks the loop's renewal, not the roamer's.
    const refused = await renew(w.t, loop.token);
    expect(refused.code).toBe(4);
    expect(refused.stderr).toMatch(/renewal_refused_anomaly|rate_spike anomaly/);
    const granted = await renew(w.t, roamer.token);
    expect(granted.code, granted.stderr).toBe(0);
    expect((await w.t.tp(['audit', 'verify', '--password-file', w.t.passwordFile])).code).toBe(0);
  }, 250_000);

  it('a volume spike: pages of a host growing larger through the day refuse renewal', async () => {
    await awayFromHourEnd(60_000);
    const w = await world();
    const now = new Date();
    const pager = await newAgent(w.t, { name: 'pager', grants: ['k'] });
    // Nine days of about 1 KB responses, 16 a day; now ten 2 KB pages: each under the size
    // threshold (about 2.7 × the usual hour's largest), no rate spike (10 an hour is the floor),
    // but the day's mean response is twice the host's usual.
    await seedHistory(w.t, pager.id, workingHours(now, { bytes: 1_000 }));
    for (let i = 0; i < 10; i++) {
      expect((await execAs(w, pager.token, get('k', 'https://api.allowed.test/page'))).code)
        .toBe(0);
    }
    const found = anomalies(w.t, pager.id);
    expect(found.map((e) => e.data.kind).sort()).toEqual(['off_hours', 'volume_spike']);
    const volume = found.find((e) => e.data.kind === 'volume_spike');
    expect(volume?.actor).toEqual({ type: 'system' });
    expect(volume?.data).toMatchObject({
      kind: 'volume_spike',
      severity: 'medium',
      actions: ['record', 'refuse_renewal'],
      evidence: { host: 'api.allowed.test', responses: 10, mean_bytes: 2_000, history_days: 9 },
    });
    expect((volume?.data.evidence as { reasons: string[] }).reasons).toContain('mean_size');
    const refused = await renew(w.t, pager.token);
    expect(refused.code).toBe(4);
    expect(refused.stderr).toMatch(/renewal_refused_anomaly|volume_spike anomaly/);
    expect((await w.t.tp(['audit', 'verify', '--password-file', w.t.passwordFile])).code).toBe(0);
  }, 190_000);

  it(
    'configured actions apply: demote instead of brake, and a human can change them back',
    async () => {
      await awayFromHourEnd(60_000);
      const w = await world();
      const set = await w.t.tp([
        'monitor',
        'actions',
        'denial_burst',
        'demote',
        '--password-file',
        w.t.passwordFile,
      ]);
      expect(set.code, set.stderr).toBe(0);
      const a = await newAgent(w.t, { name: 'p', tier: 'PARTNER', grants: ['k'] });
      for (let i = 0; i < 5; i++) {
        expect((await execAs(w, a.token, get('k', `https://evil.test/${i}`))).code).toBe(4);
      }
      const shown = JSON.parse((await w.t.tp(['--json', 'agent', 'show', a.id])).stdout);
      expect(shown.tier).toBe('COMPANION');
      const demoted = audit(w.t).find((e) => e.event === 'agent.demote');
      expect(demoted?.actor).toEqual({ type: 'system' });
      expect(demoted?.data).toMatchObject({ from: 'PARTNER', to: 'COMPANION', by: 'monitor' });
      expect(audit(w.t).some((e) => e.event === 'brake.activate')).toBe(false);
      const ok = await execAs(w, a.token, get('k', 'https://api.allowed.test/v1'));
      expect(ok.code, ok.stderr).toBe(0);
      const back = await w.t.tp([
        '--json',
        'monitor',
        'actions',
        'denial_burst',
        'default',
        '--password-file',
        w.t.passwordFile,
      ]);
      expect(JSON.parse(back.stdout).actions).toEqual(['record', 'refuse_renewal', 'brake']);
      expect((await w.t.tp(['audit', 'verify', '--password-file', w.t.passwordFile])).code).toBe(0);
    },
    130_000,
  );

  it('a tampered monitor state is rebuilt from the audit trail, not trusted', async () => {
    await awayFromHourEnd(60_000);
    const w = await world();
    const a = await newAgent(w.t, { name: 'a', grants: ['k'] });
    expect((await execAs(w, a.token, get('k', 'https://api.allowed.test/v1'))).code).toBe(0);
    const file = path.join(w.t.home, 'monitor.json');
    const saved = JSON.parse(readFileSync(file, 'utf8'));
    saved.detector.agents[a.id].denials = [1000, 1000, 1000];
    writeFileSync(file, JSON.stringify(saved), { mode: 0o600 });
    for (let i = 0; i < 5; i++) {
      expect((await execAs(w, a.token, get('k', `https://evil.test/${i}`))).code).toBe(4);
    }
    expect(audit(w.t).filter((e) => e.event === 'monitor.rebuild').map((e) => e.data.reason))
      .toEqual(['no saved state', 'saved state failed its check']);
    expect(anomalies(w.t, a.id).map((e) => e.data.kind)).toEqual(['denial_burst']);
    expect((await execAs(w, a.token, get('k', 'https://api.allowed.test/v1'))).code).toBe(5);
  }, 130_000);
});

describe('agent renew', () => {
  it(
    'is granted after clean behaviour: a fresh token, the old one stops, the budget counts',
    async () => {
      const w = await world();
      const a = await newAgent(w.t, { name: 'clean', grants: ['k'] });
      expect((await execAs(w, a.token, get('k', 'https://api.allowed.test/v1'))).code).toBe(0);
      let token = a.token;
      for (let i = 1; i <= 4; i++) {
        const r = await renew(w.t, token);
        expect(r.code, r.stderr).toBe(0);
        const issued = JSON.parse(r.stdout);
        expect(issued.token).not.toBe(token);
        expect((await execAs(w, token, get('k', 'https://api.allowed.test/v1'))).code).toBe(4);
        token = issued.token;
        expect((await execAs(w, token, get('k', 'https://api.allowed.test/v1'))).code).toBe(0);
      }
      const spent = await renew(w.t, token);
      expect(spent.code).toBe(4);
      expect(spent.stderr).toMatch(/renewed 4 times, its COMPANION budget/);
      const entries = audit(w.t).filter((e) => e.event === 'agent.renew');
      expect(entries.map((e) => e.outcome)).toEqual(['ok', 'ok', 'ok', 'ok', 'denied']);
      expect(entries[4]?.data).toMatchObject({ reason: 'renewal_budget_spent', renewals: 4 });
      for (const e of entries) expect(JSON.stringify(e)).not.toMatch(/tpat_/);
      // A human's token restarts the budget.
      const fresh = JSON.parse(
        (await w.t.tp(['--json', 'agent', 'token', a.id, '--password-file', w.t.passwordFile]))
          .stdout,
      ).token as string;
      expect((await renew(w.t, fresh)).code).toBe(0);
    },
    // Nineteen CLI runs, most unsealing: 8 s on Deno alone, past 60 s under the full suite's load.
    120_000,
  );

  it('refuses a low score, and a submitted score has no effect', async () => {
    const w = await world();
    const a = await newAgent(w.t, { name: 'sloppy', grants: ['k'] });
    expect((await execAs(w, a.token, get('k', 'https://api.allowed.test/v1'))).code).toBe(0);
    // Two denials out of three attempts: no burst, but a third of attempts denied.
    for (const host of ['evil.test', 'other.evil.test']) {
      expect((await execAs(w, a.token, get('k', `https://${host}/x`))).code).toBe(4);
    }
    const low = await renew(w.t, a.token);
    expect(low.code).toBe(4);
    expect(low.stderr).toMatch(/scores \d+; COMPANION renewal needs 75/);
    const submitted = await renew(w.t, a.token, ['--score', '100']);
    expect(submitted.code).toBe(2);
    expect(submitted.stderr).toMatch(/--score/);
    expect((await renew(w.t, 'tpat_not_a_real_token')).code).toBe(4);
    expect((await renew(w.t, '')).code).toBe(4);
  }, 60_000);
});
