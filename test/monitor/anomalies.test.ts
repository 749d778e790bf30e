import { describe, expect, it } from 'vitest';
import type { AuditEntry } from '../../src/monitor/behaviour.ts';
import { type AnomalyKind, detectAnomalies, Detector } from '../../src/monitor/anomalies.ts';
import { requestEvents } from '../../src/monitor/behaviour.ts';

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

/** `n` extra reads of api.example.test spread over day `day`'s working hours, usual sizes × `size`. */
function drip(day: number, n: number, size = 1): Req[] {
  const rand = rng(1000 + day);
  return Array.from({ length: n }, (_, i): Req => ({
    at: START + day * DAY + 9 * 3600_000 + Math.floor((i * 9 * 3600_000) / n) + 500,
    bytes: Math.round((1000 + 3000 * rand()) * size),
  }));
}

function found(reqs: Req[]) {
  return detectAnomalies(entries('agt_a', reqs), { now: NOW });
}

describe('detectAnomalies', () => {
  it('normal traffic with a daily rhythm, errors and varied sizes is not flagged', () => {
    const all = detectAnomalies(entries('agt_a', normalDays(21)), { now: NOW });
    expect(all).toEqual([]);
  });

  it('request-rate spike against the agent baseline', () => {
    // 400 requests in under 7 minutes: the threshold is crossed at a pace over 3 × it: high.
    const burst = Array.from({ length: 400 }, (_, i): Req => ({ at: at(11, i) }));
    const found = detectAnomalies(entries('agt_a', [...normalDays(14), ...burst]), { now: NOW });
    expect(found.map((a) => a.kind)).toEqual(['rate_spike']);
    expect(found[0]).toMatchObject({ agent: 'agt_a', severity: 'high' });
    // The learned threshold is well under the fixed fallback of 600 an hour.
    expect(found[0]!.evidence.threshold).toBeLessThan(400);
    expect(kinds([...normalDays(14), ...burst.slice(0, 80)])).toEqual([]);
    // The same 400 spread over the hour cross the threshold late, at a pace under 3 × it.
    const spread = Array.from({ length: 400 }, (_, i): Req => ({ at: at(11, 9 * i) }));
    const paced = detectAnomalies(entries('agt_a', [...normalDays(14), ...spread]), { now: NOW });
    expect(paced.map((a) => [a.kind, a.severity])).toEqual([['rate_spike', 'medium']]);
  });

  it('the rate threshold follows the busy hours, not the median hour', () => {
    // Busy hours reach about 75; 180 in an hour is 3 × the median hour but not 3.5 × the 90th
    // percentile, and a busy agent's hour like that is not a spike.
    const busy = Array.from({ length: 180 }, (_, i): Req => ({ at: at(11, 20 * i) }));
    expect(kinds([...normalDays(14), ...busy])).toEqual([]);
    const loop = Array.from({ length: 300 }, (_, i): Req => ({ at: at(11, 12 * i) }));
    expect(kinds([...normalDays(14), ...loop])).toEqual(['rate_spike']);
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

  it('only probing counts: rate limits, usage errors, the environment and brakes never make a burst (issue 16)', () => {
    const hosts = ['api.example.test', 'files.example.test'];
    const reasons = ['rate_limited', 'bad_template', 'tls_env', 'brake', 'scheme_not_allowed'];
    const refused = Array.from({ length: 12 }, (_, i): Req => ({
      at: at(12, i),
      host: hosts[i % 2],
      credential: i % 2 === 0 ? 'k' : 'k2',
      denied: reasons[i % reasons.length]!,
    }));
    const history = [...normalDays(14), { at: at(9), host: hosts[1], credential: 'k2' }];
    const found = detectAnomalies(entries('agt_a', [...history, ...refused]), { now: NOW })
      .filter((a) => a.kind === 'denial_burst');
    expect(found).toEqual([]);
    // The same refusals for off-list hosts are probing.
    const probing = refused.map((r) => ({ ...r, denied: 'domain_not_allowed' }));
    const probed = detectAnomalies(entries('agt_a', [...history, ...probing]), { now: NOW })
      .filter((a) => a.kind === 'denial_burst');
    expect(probed.map((a) => a.severity)).toEqual(['high']);
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

  it('off-hours: starting an hour early is not flagged, two hours early is', () => {
    // The agent works 09-17: 08 is next to a usual hour, 07 is two hours from every one.
    expect(kinds([...normalDays(14), { at: at(8) }, { at: at(8, 60) }])).toEqual([]);
    expect(kinds([...normalDays(14), { at: at(7) }])).toEqual(['off_hours']);
    // A night's first hour does not make the next one usual: 05 and 06 are both flagged.
    const found = detectAnomalies(
      entries('agt_a', [...normalDays(14), { at: at(5) }, { at: at(6) }]),
      { now: NOW },
    );
    expect(found.map((a) => [a.kind, a.evidence.hour_of_day])).toEqual([
      ['off_hours', 5],
      ['off_hours', 6],
    ]);
  });

  it('response-size spike against the agent own sizes', () => {
    const big = { at: at(10), bytes: 500_000 };
    const found = detectAnomalies(entries('agt_a', [...normalDays(14), big]), { now: NOW });
    expect(found.map((a) => a.kind)).toEqual(['size_spike']);
    expect(found[0]).toMatchObject({ severity: 'high', evidence: { bytes: 500_000 } });
    // Above the threshold but under 10 × it: medium.
    const some = detectAnomalies(
      entries('agt_a', [...normalDays(14), { at: at(10), bytes: 40_000 }]),
      {
        now: NOW,
      },
    );
    expect(some.map((a) => [a.kind, a.severity])).toEqual([['size_spike', 'medium']]);
    // Within the host's usual largest responses: nothing.
    expect(kinds([...normalDays(14), { at: at(10), bytes: 4_500 }])).toEqual([]);
  });

  it('response sizes are judged per host: a large host does not hide a small one', () => {
    const media = normalDays(14, 9).filter((_, i) => i % 10 === 0).map((r): Req => ({
      ...r,
      host: 'media.example.test',
      bytes: 300_000 + (r.bytes ?? 0) * 20,
    }));
    const history = [...normalDays(14), ...media].sort((a, b) => a.at - b.at);
    const onApi = detectAnomalies(
      entries('agt_a', [...history, { at: at(10), host: 'api.example.test', bytes: 300_000 }]),
      { now: NOW },
    );
    expect(onApi.map((a) => [a.kind, a.evidence.host])).toEqual([
      ['size_spike', 'api.example.test'],
    ]);
    expect(kinds([...history, { at: at(10), host: 'media.example.test', bytes: 350_000 }]))
      .toEqual([]);
  });

  it('a size spike is not high on a short history, and an hour once seen is not news again', () => {
    // Two days of one host (18 hours): the fixed fallback, and never high.
    const short = normalDays(2);
    expect(kinds([...short, { at: START + 2 * DAY + 10 * 3600_000, bytes: 5_000_000 }]))
      .toEqual([]);
    const huge = detectAnomalies(
      entries('agt_a', [...short, { at: START + 2 * DAY + 10 * 3600_000, bytes: 20_000_000 }]),
      { now: NOW },
    );
    expect(huge.map((a) => [a.kind, a.severity])).toEqual([['size_spike', 'medium']]);
    // After a 60 KB hour, a 50 KB response a day later is under the largest hour seen.
    const again = detectAnomalies(
      entries('agt_a', [
        ...normalDays(14),
        { at: at(10), bytes: 60_000 },
        { at: at(10) + DAY, bytes: 50_000 },
      ]),
      { now: NOW },
    );
    expect(again.map((a) => [a.kind, a.evidence.bytes])).toEqual([['size_spike', 60_000]]);
  });

  it('a detector saved and restored mid-trace finds what one replay finds', () => {
    const reqs = [
      ...normalDays(14),
      { at: at(3) },
      { at: at(10), bytes: 500_000 },
      ...Array.from({ length: 400 }, (_, i): Req => ({ at: at(11, i) })),
    ];
    const trace = entries('agt_a', reqs);
    const events = requestEvents(trace, { now: NOW });
    let d = new Detector();
    const found = [];
    for (const [i, e] of events.entries()) {
      if (i % 997 === 0) d = new Detector(JSON.parse(JSON.stringify(d.save())));
      found.push(...d.observe(e));
    }
    expect(found).toEqual(detectAnomalies(trace, { now: NOW }));
    expect(found.map((a) => a.kind)).toEqual(['off_hours', 'size_spike', 'rate_spike']);
    // Bounded: sizes of more than 14 days ago are forgotten, daily volumes of more than 28.
    const sizes = d.save().agents.agt_a!.sizes;
    expect(Object.values(sizes).every((l) => l.length <= 14 * 24)).toBe(true);
    const volumes = d.save().agents.agt_a!.volumes;
    expect(Object.values(volumes).every((l) => l.length <= 28)).toBe(true);
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

  it('volume spike: a day with three times a host usual responses, of ordinary sizes', () => {
    const spikes = found([...normalDays(15), ...drip(14, 450)]);
    expect(spikes.map((a) => [a.kind, a.severity])).toEqual([['volume_spike', 'medium']]);
    expect(spikes[0]!.evidence).toMatchObject({
      host: 'api.example.test',
      day: '2026-03-16',
      history_days: 14,
    });
    expect(spikes[0]!.evidence.responses).toBeLessThan(450 + 205);
    // Half as much again in a day is within the host's days.
    expect(kinds([...normalDays(15), ...drip(14, 100)])).toEqual([]);
  });

  it('volume spike: a third elevated day in a row is sustained', () => {
    // About 1.7 × the usual day: elevated, under the one-day threshold.
    const three = found([...normalDays(17), ...drip(14, 150), ...drip(15, 150), ...drip(16, 150)]);
    expect(three.map((a) => [a.kind, a.severity, a.evidence.day, a.evidence.reasons])).toEqual([
      ['volume_spike', 'medium', '2026-03-18', ['sustained']],
    ]);
    // Two such days, or three that are not consecutive, are not.
    expect(kinds([...normalDays(17), ...drip(14, 150), ...drip(15, 150)])).toEqual([]);
    expect(kinds([...normalDays(18), ...drip(14, 150), ...drip(15, 150), ...drip(17, 150)]))
      .toEqual([]);
  });

  it('volume spike is high on a third flagged day in a row', () => {
    const days = found([...normalDays(17), ...drip(14, 450), ...drip(15, 450), ...drip(16, 450)]);
    expect(days.map((a) => [a.kind, a.severity, a.evidence.day])).toEqual([
      ['volume_spike', 'medium', '2026-03-16'],
      ['volume_spike', 'medium', '2026-03-17'],
      ['volume_spike', 'high', '2026-03-18'],
    ]);
  });

  it('volume spike: responses of a host growing larger on average', () => {
    // The day's api.example.test responses are 2.3 × their usual sizes: no single one over the
    // size threshold, the mean is.
    const grown = normalDays(15).map((r) =>
      r.at >= START + 14 * DAY && r.host === 'api.example.test'
        ? { ...r, bytes: Math.round((r.bytes ?? 0) * 2.3) }
        : r
    );
    const spikes = found(grown);
    expect(spikes.map((a) => a.kind)).toEqual(['volume_spike']);
    expect(spikes[0]!.evidence.reasons).toContain('mean_size');
    expect(spikes[0]!.evidence.host).toBe('api.example.test');
  });

  it('volume spike needs 7 days of the host, and one large response is not a volume', () => {
    // Six days of history: not judged.
    expect(kinds([...normalDays(7), ...drip(6, 450)])).toEqual([]);
    // One 3 MB response (about 6 × the host's usual day) is a size spike only.
    expect(kinds([...normalDays(15), { at: at(10), bytes: 3_000_000 }])).toEqual(['size_spike']);
    // A runaway loop's volume is its rate spike's.
    const loop = Array.from({ length: 600 }, (_, i): Req => ({ at: at(11, 5 * i) }));
    expect(kinds([...normalDays(15), ...loop])).toEqual(['rate_spike']);
  });
});
