/**
 * renewalCheck, the pure decision behind `agent renew`: entries read without a valid MAC (the
 * password-less ones) count against an agent but never for it (issue #14).
 */
import { describe, expect, it } from 'vitest';
import type { Checked } from '../../src/audit.ts';
import type { AuditEntry } from '../../src/monitor/behaviour.ts';
import { renewalCheck } from '../../src/monitor/renewal.ts';
import type { AgentRecord } from '../../src/vault.ts';

const HOUR = 3600_000;
const NOW = new Date('2026-03-10T12:00:00.000Z');
const T0 = NOW.getTime() - 3 * 24 * HOUR;
const AGENT: AgentRecord = {
  id: 'agt_1',
  name: 'bot',
  tier: 'COMPANION',
  state: 'active',
  grants: ['k'],
  token_sha256: null,
  token_expires_at: null,
  created_at: new Date(T0).toISOString(),
  updated_at: new Date(T0).toISOString(),
};

function request(
  at: number,
  event: 'request.allowed' | 'request.denied',
  host: string,
  authenticated: boolean,
): Checked<AuditEntry> {
  return {
    ts: new Date(at).toISOString(),
    event,
    actor: { type: 'agent', id: AGENT.id },
    data: { credentials: ['k'], host, method: 'GET', path: '/x' },
    authenticated,
  } as Checked<AuditEntry>;
}

function marked(entries: Array<Checked<AuditEntry>>, authenticated: boolean) {
  return entries.map((e) => ({ ...e, authenticated }) as Checked<AuditEntry>);
}

describe('renewalCheck', () => {
  it('an unverified denial that marks a host as seen does not hide a new_host anomaly', () => {
    const trusted = [
      ...Array.from(
        { length: 100 },
        (_, i) => request(T0 + i * 1000, 'request.allowed', 'a.test', true),
      ),
      request(T0 + 2 * 24 * HOUR, 'request.allowed', 'b.test', true),
    ];
    // Written without a MAC during the agent's learning day: b.test would no longer be new.
    const forged = request(T0 + HOUR, 'request.denied', 'b.test', false);
    const all = [...trusted.slice(0, 50), forged, ...trusted.slice(50)];
    const score = renewalCheck(AGENT, all, NOW).facts.score;
    expect(score).toBe(renewalCheck(AGENT, trusted, NOW).facts.score);
    // Were it trusted, the forged line would have raised the score.
    expect(renewalCheck(AGENT, marked(all, true), NOW).facts.score).toBeGreaterThan(score);
  });

  it('unverified denials still lower the score', () => {
    const trusted = [request(T0, 'request.allowed', 'a.test', true)];
    const denials = [1, 2].map((i) => request(T0 + i * 1000, 'request.denied', 'evil.test', false));
    expect(renewalCheck(AGENT, [...trusted, ...denials], NOW).facts.score)
      .toBeLessThan(renewalCheck(AGENT, trusted, NOW).facts.score);
  });

  it('only an authenticated token or registration clears a refuse_renewal anomaly', () => {
    const anomaly: Checked<AuditEntry> = {
      ts: new Date(T0).toISOString(),
      event: 'monitor.anomaly',
      actor: { type: 'system' },
      data: { agent: AGENT.id, kind: 'rate_spike', actions: ['record', 'refuse_renewal'] },
      authenticated: true,
    };
    const token = (authenticated: boolean) =>
      ({
        ts: new Date(T0 + 1000).toISOString(),
        event: 'agent.token',
        actor: { type: 'operator' },
        data: { agent: AGENT.id },
        authenticated,
      }) as Checked<AuditEntry>;
    expect(renewalCheck(AGENT, [anomaly, token(false)], NOW).refusal?.code)
      .toBe('renewal_refused_anomaly');
    expect(renewalCheck(AGENT, [anomaly, token(true)], NOW).refusal).toBeNull();
  });
});
