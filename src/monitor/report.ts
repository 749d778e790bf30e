/**
 * The monitoring report (SPEC §4 `monitor report`): each agent's tier, behaviour score, recent
 * anomalies and recommendation, computed from the audit trail alone. It trusts the log as it is:
 * `audit verify` is what proves the log was not edited.
 */
import { Buffer } from 'node:buffer';
import type { Tier } from '../tiers.ts';
import { type AuditEntry, type Behaviour, behaviourOf } from './behaviour.ts';
import { type Anomaly, detectAnomalies } from './anomalies.ts';
import { recommend, type Recommendation } from './recommend.ts';

/** Anomalies this recent lower the score and are listed as recent. */
export const RECENT_MS = 7 * 24 * 3600_000;
const PENALTY = { low: 5, medium: 15, high: 40 } as const;
const MAX_RECENT = 10;

export interface AgentReport {
  id: string;
  name: string;
  tier: Tier;
  state: string;
  score: number;
  behaviour: Behaviour | null;
  recent_anomalies: Anomaly[];
  recommendation: Recommendation;
}

/** The readable entries of a log; malformed lines are for `audit verify` to report. */
export function parseAuditLog(bytes: Uint8Array): AuditEntry[] {
  const out: AuditEntry[] = [];
  for (const line of Buffer.from(bytes).toString('utf8').split('\n')) {
    if (line === '') continue;
    try {
      const e = JSON.parse(line) as AuditEntry;
      if (typeof e?.ts === 'string' && typeof e.event === 'string') out.push(e);
    } catch {
      continue;
    }
  }
  return out;
}

/**
 * 0-100: 100 less a penalty per recent anomaly (low 5, medium 15, high 40), less up to 30 for
 * the share of denied attempts and up to 20 for the upstream error rate.
 */
export function scoreOf(
  b: Behaviour | undefined,
  anomalies: readonly Anomaly[],
  options: { now: Date },
): number {
  let score = 100;
  for (const a of anomalies) {
    if (options.now.getTime() - Date.parse(a.at) < RECENT_MS) score -= PENALTY[a.severity];
  }
  if (b !== undefined && b.requests > 0) score -= Math.min(30, (100 * b.denied) / b.requests);
  if (b !== undefined) score -= Math.min(20, 40 * b.error_rate);
  return Math.max(0, Math.min(100, Math.round(score)));
}

export function monitorReport(
  entries: readonly AuditEntry[],
  agents: ReadonlyArray<{ id: string; name: string; tier: Tier; state: string }>,
  options: { now: Date },
): AgentReport[] {
  const behaviours = behaviourOf(entries, options);
  const anomalies = detectAnomalies(entries, options);
  const tierSince = _tierChanges(entries);
  const now = options.now.getTime();
  return agents.map((agent) => {
    const own = anomalies.filter((a) => a.agent === agent.id);
    const b = behaviours.get(agent.id);
    return {
      id: agent.id,
      name: agent.name,
      tier: agent.tier,
      state: agent.state,
      score: scoreOf(b, own, options),
      behaviour: b ?? null,
      recent_anomalies: own.filter((a) => now - Date.parse(a.at) < RECENT_MS).slice(-MAX_RECENT),
      recommendation: recommend({
        agent,
        behaviour: b,
        anomalies: own,
        tierSince: tierSince.get(agent.id) ?? null,
      }, options),
    };
  });
}

/** When each agent last got its tier: registration, promotion or demotion. */
function _tierChanges(entries: readonly AuditEntry[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const e of entries) {
    if (!['agent.register', 'agent.promote', 'agent.demote'].includes(e.event)) continue;
    const id = e.data?.agent;
    if (typeof id === 'string') out.set(id, e.ts);
  }
  return out;
}
