import { describe, expect, it } from 'vitest';
import { type AuditEntry, behaviourOf } from '../../src/monitor/behaviour.ts';
import type { Anomaly } from '../../src/monitor/anomalies.ts';
import { recommend } from '../../src/monitor/recommend.ts';
import { monitorReport, parseAuditLog, scoreOf } from '../../src/monitor/report.ts';

const NOW = new Date('2026-03-10T12:00:00Z');

function entry(ts: string, event: string, data: Record<string, unknown>, id = 'agt_a'): AuditEntry {
  return { ts, event, actor: { type: 'agent', id }, data };
}

const TRACE: AuditEntry[] = [
  entry('2026-03-09T08:00:00.000Z', 'request.allowed', { credentials: ['k'], host: 'a.test' }),
  entry('2026-03-09T08:00:01.000Z', 'request.completed', {
    credentials: ['k'],
    host: 'a.test',
    status: 200,
    bytes: 100,
  }),
  entry('2026-03-10T11:30:00.000Z', 'request.allowed', { credentials: ['k'], host: 'a.test' }),
  entry('2026-03-10T11:30:01.000Z', 'request.completed', { host: 'a.test', status: 503, bytes: 7 }),
  entry('2026-03-10T11:40:00.000Z', 'request.allowed', { credentials: ['k'], host: 'b.test' }),
  entry('2026-03-10T11:40:01.000Z', 'request.failed', {
    host: 'b.test',
    reason: 'upstream_timeout',
  }),
  entry('2026-03-10T11:50:00.000Z', 'request.denied', {
    credentials: ['x'],
    host: 'c.test',
    reason: 'not_granted',
  }),
  { ts: '2026-03-10T11:51:00.000Z', event: 'request.denied', actor: { type: 'anyone' }, data: {} },
  entry('2026-03-10T13:00:00.000Z', 'request.allowed', { credentials: ['k'], host: 'a.test' }),
];

describe('behaviourOf', () => {
  it('computes the metrics from request entries only, up to now', () => {
    const b = behaviourOf(TRACE, { now: NOW }).get('agt_a')!;
    expect(b).toMatchObject({
      requests: 4,
      allowed: 3,
      completed: 2,
      failed: 1,
      denied: 1,
      errors: 2,
      bytes: 107,
      requests_last_hour: 3,
      requests_last_day: 3,
      days_active: 2,
      per_day: { '2026-03-09': 1, '2026-03-10': 3 },
      per_hour: { '2026-03-09T08': 1, '2026-03-10T11': 3 },
      denials_by_reason: { not_granted: 1 },
      hosts: {
        'a.test': '2026-03-09T08:00:00.000Z',
        'b.test': '2026-03-10T11:40:00.000Z',
        'c.test': '2026-03-10T11:50:00.000Z',
      },
      credentials: { k: '2026-03-09T08:00:00.000Z', x: '2026-03-10T11:50:00.000Z' },
    });
    expect(b.error_rate).toBeCloseTo(2 / 3);
    expect(b.hour_histogram[8]).toBe(1);
    expect(b.hour_histogram[11]).toBe(3);
    expect(behaviourOf(TRACE, { now: NOW }).size).toBe(1);
  });

  it('parses a log and skips malformed lines', () => {
    const text = TRACE.map((e) => JSON.stringify(e)).join('\n') + '\n{"v":1,"seq":\n';
    expect(parseAuditLog(new TextEncoder().encode(text))).toHaveLength(TRACE.length);
  });
});

function anomaly(at: string, severity: Anomaly['severity']): Anomaly {
  return { agent: 'agt_a', kind: 'denial_burst', severity, at, evidence: {} };
}

/** `days` active days ending the day before NOW, `perDay` allowed requests each. */
function activeDays(days: number, perDay: number): AuditEntry[] {
  const out: AuditEntry[] = [];
  for (let d = days; d >= 1; d--) {
    const day = new Date(NOW.getTime() - d * 86400_000).toISOString().slice(0, 10);
    for (let i = 0; i < perDay; i++) {
      out.push(entry(`${day}T10:00:0${i % 10}.000Z`, 'request.allowed', { host: 'a.test' }));
    }
  }
  return out;
}

describe('recommend and score', () => {
  const agent = { id: 'agt_a', tier: 'NOVICE' as const, state: 'active' };

  it('promotes after enough clean days and requests at the tier; a human decides', () => {
    const b = behaviourOf(activeDays(3, 10), { now: NOW }).get('agt_a');
    const r = recommend({ agent, behaviour: b, anomalies: [], tierSince: null }, { now: NOW });
    expect(r).toMatchObject({ action: 'promote', to: 'COMPANION' });
    expect(r.evidence).toMatchObject({ clean_days_at_tier: 3, requests: 30, denials: 0 });
    const short = behaviourOf(activeDays(2, 10), { now: NOW }).get('agt_a');
    expect(recommend({ agent, behaviour: short, anomalies: [], tierSince: null }, { now: NOW }))
      .toMatchObject({ action: 'keep', to: null });
  });

  it('clean days restart after a medium anomaly or a tier change', () => {
    const b = behaviourOf(activeDays(5, 10), { now: NOW }).get('agt_a');
    const recent = anomaly(new Date(NOW.getTime() - 2 * 86400_000).toISOString(), 'medium');
    expect(recommend({ agent, behaviour: b, anomalies: [recent], tierSince: null }, { now: NOW }))
      .toMatchObject({ action: 'keep', evidence: { clean_days_at_tier: 1, last_anomaly: recent } });
    expect(
      recommend({ agent, behaviour: b, anomalies: [], tierSince: recent.at }, { now: NOW }).action,
    ).toBe('keep');
  });

  it('demotes after a recent high-severity anomaly, unless a human already changed the tier', () => {
    const high = anomaly('2026-03-09T00:00:00.000Z', 'high');
    const partner = { ...agent, tier: 'PARTNER' as const };
    const input = { agent: partner, behaviour: undefined, anomalies: [high], tierSince: null };
    expect(recommend(input, { now: NOW })).toMatchObject({ action: 'demote', to: 'COMPANION' });
    expect(recommend({ ...input, tierSince: '2026-03-09T01:00:00.000Z' }, { now: NOW }).action)
      .toBe('keep');
    expect(recommend({ ...input, agent }, { now: NOW }).reason).toMatch(/agent suspend/);
    expect(recommend(input, { now: new Date('2026-03-20T00:00:00Z') }).action).toBe('keep');
  });

  it('the score falls with recent anomalies, denials and errors', () => {
    const b = behaviourOf(TRACE, { now: NOW }).get('agt_a');
    expect(scoreOf(undefined, [], { now: NOW })).toBe(100);
    const base = scoreOf(b, [], { now: NOW });
    expect(base).toBeLessThan(100);
    expect(scoreOf(b, [anomaly('2026-03-10T00:00:00.000Z', 'high')], { now: NOW })).toBe(base - 40);
    expect(scoreOf(b, [anomaly('2026-01-01T00:00:00.000Z', 'high')], { now: NOW })).toBe(base);
  });

  it('the report covers every agent, with or without activity', () => {
    const agents = [
      { id: 'agt_a', name: 'a', tier: 'NOVICE' as const, state: 'active' },
      { id: 'agt_b', name: 'b', tier: 'COMPANION' as const, state: 'active' },
    ];
    const r = monitorReport(TRACE, agents, { now: NOW });
    expect(r.map((x) => x.id)).toEqual(['agt_a', 'agt_b']);
    expect(r[1]).toMatchObject({ score: 100, behaviour: null, recent_anomalies: [] });
  });
});
