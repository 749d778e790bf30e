import { describe, expect, it } from 'vitest';
import type { AuditEntry } from '../../src/monitor/behaviour.ts';
import { type AnomalyKind, detectAnomalies } from '../../src/monitor/anomalies.ts';

const DAY = 24 * 3600_000;
const START = Date.parse('2026-03-02T00:00:00Z');
const NOW = new Date(START + 30 * DAY);

/** A deterministic pseudo-random source so the traces are the same on every run. */
function rng(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648;
  };
}

interface Req {
  at: number;
  host?: string;
  credential?: string;
  status?: number;
  bytes?: number;
  denied?: string;
  failed?: boolean;
}

function entries(agent: string, reqs: readonly Req[]): AuditEntry[] {
  const out: AuditEntry[] = [];
  for (const r of reqs) {
    const ts = new Date(r.at).toISOString();
    const actor = { type: 'agent', id: agent };
    const base = {
      credentials: [r.credential ?? 'k'],
      host: r.host ?? 'api.example.test',
      path: '/v1',
    };
    if (r.denied !== undefined) {
      out.push({ ts, event: 'request.denied', actor, data: { ...base, reason: r.denied } });
      continue;
    }
    out.push({ ts, event: 'request.allowed', actor, data: base });
    out.push(
      r.failed === true
        ? { ts, event: 'request.failed', actor, data: { ...base, reason: 'upstream_unreachable' } }
        : {
          ts,
          event: 'request.completed',
          actor,
          data: { ...base, status: r.status ?? 200, bytes: r.bytes ?? 2000 },
        },
    );
  }
  return out;
}

/** Working hours 09-17 UTC on `days` days, a varying rate, 1% upstream errors, varied sizes. */
function normalDays(days: number, seed = 7): Req[] {
  const rand = rng(seed);
  const out: Req[] = [];
  for (let d = 0; d < days; d++) {
    for (let h = 9; h < 18; h++) {
      const peak = 1 - Math.abs(h - 13) / 5;
      const n = Math.round(20 + 40 * peak + 15 * rand());
      for (let i = 0; i < n; i++) {
        out.push({
          at: START + d * DAY + h * 3600_000 + Math.floor((i * 3600_000) / n),
          status: rand() < 0.01 ? 503 : 200,
          bytes: Math.round(1000 + 3000 * rand()),
          host: rand() < 0.5 ? 'api.example.test' : 'files.example.test',
        });
      }
    }
  }
  return out;
}

function kinds(reqs: Req[]): AnomalyKind[] {
  return detectAnomalies(entries('agt_a', reqs), { now: NOW }).map((a) => a.kind);
}

/** An hour of day 15 (history: 14 normal days), starting at `minute`. */
function at(hour: number, i = 0): number {
  return START + 14 * DAY + hour * 3600_000 + i * 1000;
}

describe('detectAnomalies', () => {
  it('normal traffic with a daily rhythm, errors and varied sizes is not flagged', () => {
    const all = detectAnomalies(entries('agt_a', normalDays(21)), { now: NOW });
    expect(all).toEqual([]);
  });

  it('request-rate spike against the agent baseline', () => {
    const burst = Array.from({ length: 400 }, (_, i): Req => ({ at: at(11, i) }));
    const found = detectAnomalies(entries('agt_a', [...normalDays(14), ...burst]), { now: NOW });
    expect(found.map((a) => a.kind)).toEqual(['rate_spike']);
    expect(found[0]).toMatchObject({ agent: 'agt_a', severity: 'medium' });
    // The learned threshold is well under the fixed fallback of 600 an hour.
    expect(found[0]!.evidence.threshold).toBeLessThan(400);
    expect(kinds([...normalDays(14), ...burst.slice(0, 80)])).toEqual([]);
  });

  it('error spike: most responses fail in one hour', () => {
    const errors = Array.from({ length: 40 }, (_, i): Req => ({ at: at(10, i), status: 502 }));
    const failed = Array.from(
      { length: 10 },
      (_, i): Req => ({ at: at(10, 100 + i), failed: true }),
    );
    expect(kinds([...normalDays(14), ...errors, ...failed])).toEqual(['error_spike']);
  });

  it('a burst of denials over several targets is high severity probing', () => {
    const probes = ['a.test', 'b.test', 'c.test', 'd.test', 'e.test', 'f.test'].map(
      (host, i): Req => ({ at: at(12, i), host, denied: 'domain_not_allowed' }),
    );
    const found = detectAnomalies(entries('agt_a', [...normalDays(14), ...probes]), { now: NOW })
      .filter((a) => a.kind === 'denial_burst');
    expect(found).toHaveLength(1);
    expect(found[0]).toMatchObject({ severity: 'high', evidence: { denials: 5 } });
    // Four denials in an hour are within the floor.
    expect(kinds([...normalDays(14), ...probes.slice(0, 4)]).includes('denial_burst')).toBe(false);
  });

  it('a new agent with no history is judged by the fixed fallback', () => {
    const probes = Array.from({ length: 5 }, (_, i): Req => ({
      at: START + i * 1000,
      credential: `c${i}`,
      denied: 'not_granted',
    }));
    expect(kinds(probes)).toEqual(['denial_burst']);
    expect(kinds(probes.slice(0, 4))).toEqual([]);
  });

  it('first-ever host and credential, after the learning day', () => {
    const found = detectAnomalies(
      entries('agt_a', [
        ...normalDays(14),
        { at: at(10), host: 'new.example.test' },
        { at: at(10, 1), credential: 'other', denied: 'not_granted' },
      ]),
      { now: NOW },
    );
    expect(found.map((a) => [a.kind, a.severity])).toEqual([
      ['new_host', 'low'],
      ['new_credential', 'medium'],
    ]);
  });

  it('off-hours activity: an hour the agent never worked in', () => {
    const night = Array.from({ length: 3 }, (_, i): Req => ({ at: at(3, i) }));
    expect(kinds([...normalDays(14), ...night])).toEqual(['off_hours']);
    // Not before the minimum history of days.
    expect(kinds([...normalDays(3), ...night.map((r) => ({ at: r.at - 11 * DAY }))])).toEqual([]);
  });

  it('response-size spike against the agent own sizes', () => {
    const big = { at: at(10), bytes: 500_000 };
    const found = detectAnomalies(entries('agt_a', [...normalDays(14), big]), { now: NOW });
    expect(found.map((a) => a.kind)).toEqual(['size_spike']);
    expect(found[0]!.evidence.bytes).toBe(500_000);
  });

  it('is deterministic, ignores entries after now and entries not by an agent', () => {
    const trace = entries('agt_a', [...normalDays(14), { at: at(3) }]);
    expect(detectAnomalies(trace, { now: NOW })).toEqual(detectAnomalies(trace, { now: NOW }));
    expect(detectAnomalies(trace, { now: new Date(at(2)) })).toEqual([]);
    const anon = trace.map((e) => ({ ...e, actor: { type: 'anyone' } }));
    expect(detectAnomalies(anon, { now: NOW })).toEqual([]);
  });

  it('baselines are per agent: a busy agent does not hide a quiet one', () => {
    const busy = entries('agt_busy', [11, 12, 13, 14, 15].flatMap((seed) => normalDays(14, seed)));
    const quiet = entries('agt_quiet', [
      ...normalDays(14, 3).filter((_, i) => i % 20 === 0),
      ...Array.from({ length: 60 }, (_, i): Req => ({ at: at(11, i) })),
    ]);
    const found = detectAnomalies([...busy, ...quiet], { now: NOW });
    expect(found.map((a) => [a.agent, a.kind])).toEqual([['agt_quiet', 'rate_spike']]);
  });
});
