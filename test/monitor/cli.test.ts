import { describe, expect, it } from 'vitest';
import { addCredential, newAgent, newHome, type TestHome } from '../helpers/cli.ts';
import { awayFromHourEnd } from '../helpers/history.ts';
import { startHttpsListener, TEST_CA } from '../helpers/listeners.ts';
import type { AgentReport } from '../../src/monitor/report.ts';

const AUTH = { Authorization: 'Bearer {{CREDENTIAL}}' };

function execAs(
  t: TestHome,
  token: string,
  body: object,
  extra: string[],
): Promise<{ code: number; stderr: string }> {
  const tpl = t.file(`t-${Math.random().toString(16).slice(2)}.json`, JSON.stringify(body));
  return t.tp(
    ['exec', '--template', tpl, '--password-file', t.passwordFile, ...extra],
    { env: { TRUST_PROTOCOL_TOKEN: token } },
  );
}

describe('monitor report through the CLI', () => {
  it('shows a denial burst for a probing agent and a clean report for another', async () => {
    await awayFromHourEnd(60_000);
    const t = await newHome();
    expect(
      (await addCredential(t, 'k', 'sk-mon-1', ['--allowed-domains', 'api.allowed.test'])).code,
    )
      .toBe(0);
    expect(
      (await addCredential(t, 'k2', 'sk-mon-2', ['--allowed-domains', 'api.allowed.test'])).code,
    )
      .toBe(0);
    const good = await newAgent(t, { name: 'good', grants: ['k'] });
    const prober = await newAgent(t, { name: 'prober', grants: ['k'] });
    const upstream = await startHttpsListener();
    try {
      const ca = t.file('ca.pem', TEST_CA);
      const route = [
        '--cacert',
        ca,
        '--connect-to',
        `api.allowed.test:443:127.0.0.1:${upstream.port}`,
      ];
      const ok = { credential: 'k', url: 'https://api.allowed.test/v1', headers: AUTH };
      for (const agent of [good, prober]) {
        const r = await execAs(t, agent.token, ok, route);
        expect(r.code, r.stderr).toBe(0);
      }
      const probes = [
        { credential: 'k2', url: 'https://api.allowed.test/v1', headers: AUTH },
        { credential: 'k', url: 'https://evil.test/a', headers: AUTH },
        { credential: 'k2', url: 'https://api.allowed.test/v2', headers: AUTH },
        { credential: 'k', url: 'https://other.test/b', headers: AUTH },
        { credential: 'k', url: 'https://third.test/c', headers: AUTH },
      ];
      for (const p of probes) expect((await execAs(t, prober.token, p, route)).code).toBe(4);
    } finally {
      await upstream.close();
    }
    const r = await t.tp(['--json', 'monitor', 'report']);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.note).toMatch(/audit verify/);
    const byId = new Map<string, AgentReport>(
      (report.agents as AgentReport[]).map((a) => [a.id, a]),
    );
    const p = byId.get(prober.id)!;
    expect(p.behaviour).toMatchObject({ requests: 6, denied: 5, completed: 1 });
    expect(p.recent_anomalies.map((a) => a.kind)).toEqual(['denial_burst']);
    expect(p.recent_anomalies[0]).toMatchObject({ agent: prober.id, severity: 'high' });
    expect(p.score).toBeLessThan(60);
    const g = byId.get(good.id)!;
    expect(g).toMatchObject({ tier: 'COMPANION', score: 100, recent_anomalies: [] });
    expect(g.behaviour).toMatchObject({ requests: 1, denied: 0, completed: 1 });

    const text = await t.tp(['monitor', 'report']);
    expect(text.stdout).toMatch(/computed from the audit trail; run `audit verify` to trust it/);
    expect(text.stdout).toMatch(/denial_burst\(high\)/);
    const rec = await t.tp(['--json', 'agent', 'recommend', good.id]);
    expect(rec.code, rec.stderr).toBe(0);
    expect(JSON.parse(rec.stdout).recommendations).toMatchObject([
      { agent: good.id, action: 'keep', evidence: { requests: 1, denials: 0, last_anomaly: null } },
    ]);
    expect((await t.tp(['agent', 'recommend', 'agt_nobody'])).code).not.toBe(0);
  }, 130_000);

  it("an operator's mistakes never brake the agent: only probing counts (issue 16)", async () => {
    const t = await newHome();
    const added = await addCredential(t, 'k', 'sk-mon-ops-3', [
      '--allowed-domains',
      'api.allowed.test',
    ]);
    expect(added.code, added.stderr).toBe(0);
    const agent = await newAgent(t, { grants: ['k'] });
    const upstream = await startHttpsListener();
    try {
      const route = [
        '--cacert',
        t.file('ca.pem', TEST_CA),
        '--connect-to',
        `api.allowed.test:443:127.0.0.1:${upstream.port}`,
      ];
      const ok = { credential: 'k', url: 'https://api.allowed.test/v1', headers: AUTH };
      const mistakes: Array<[object, Record<string, string>]> = [
        [{ credential: 'k', url: 'https://api.allowed.test/v1', headers: {} }, {}],
        [{ credential: 'k', url: '/v1', headers: AUTH }, {}],
        [ok, { NODE_TLS_REJECT_UNAUTHORIZED: '0' }],
        [ok, { NODE_TLS_REJECT_UNAUTHORIZED: '0' }],
        [{ ...ok, url: 'http://api.allowed.test/v1' }, {}],
        [{ ...ok, url: 'http://api.allowed.test/v2' }, {}],
      ];
      for (const [body, env] of mistakes) {
        const tpl = t.file(`m-${Math.random().toString(16).slice(2)}.json`, JSON.stringify(body));
        const r = await t.tp(
          ['exec', '--template', tpl, '--password-file', t.passwordFile, ...route],
          { env: { TRUST_PROTOCOL_TOKEN: agent.token, ...env } },
        );
        expect(r.code, JSON.stringify(body)).not.toBe(0);
      }
      const brakes = await t.tp(['--json', 'emergency', 'status']);
      expect(JSON.parse(brakes.stdout)).toEqual({
        global: null,
        agents: [],
        credentials: [],
        orgs: [],
      });
      const after = await execAs(t, agent.token, ok, route);
      expect(after.code, after.stderr).toBe(0);
    } finally {
      await upstream.close();
    }
    const report = JSON.parse((await t.tp(['--json', 'monitor', 'report'])).stdout);
    const mine = (report.agents as AgentReport[]).find((a) => a.id === agent.id)!;
    expect(mine.behaviour?.denied).toBeGreaterThanOrEqual(4);
    expect(mine.recent_anomalies).toEqual([]);
  }, 90_000);
});
