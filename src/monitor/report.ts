/**
 * The monitoring report (SPEC §4 `monitor report`): each agent's tier, behaviour score, recent
 * anomalies and recommendation, computed from the audit trail alone. It trusts the log as it is:
 * `audit verify` is what proves the log was not edited.
 */
import { Buffer } from 'node:buffer';
import type { Tier } from '../tiers.ts';
import {
  type AuditEntry,
  type Behaviour,
  BehaviourCounter,
  behaviourOf,
  requestEventOf,
} from './behaviour.ts';
import { type Anomaly, detectAnomalies, Detector } from './anomalies.ts';
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
    const e = _parse(line);
    if (e !== null) out.push(e);
  }
  return out;
}

function _parse(line: string): AuditEntry | null {
  if (line === '') return null;
  try {
    const e = JSON.parse(line) as AuditEntry;
    return typeof e?.ts === 'string' && typeof e.event === 'string' ? e : null;
  } catch {
    return null;
  }
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
  const tierSince = new Map<string, string>();
  for (const e of entries) _tierChange(tierSince, e);
  return _reports(
    behaviourOf(entries, options),
    detectAnomalies(entries, options),
    tierSince,
    agents,
    options,
  );
}

/**
 * `monitorReport` over the log's lines, read once and kept nowhere (issue #16): memory holds the
 * per-agent figures, not the log. Request events are taken in the log's order, which is time
 * order unless the clock went backwards between two entries; then it returns null and the caller
 * falls back to `monitorReport`, which sorts them all in memory.
 */
export function monitorReportOfLines(
  lines: Iterable<string>,
  agents: ReadonlyArray<{ id: string; name: string; tier: Tier; state: string }>,
  options: { now: Date },
): AgentReport[] | null {
  const limit = options.now.getTime();
  const counter = new BehaviourCounter(options);
  const detector = new Detector();
  const anomalies: Anomaly[] = [];
  const tierSince = new Map<string, string>();
  let last = -Infinity;
  for (const line of lines) {
    const e = _parse(line);
    if (e === null) continue;
    _tierChange(tierSince, e);
    const r = requestEventOf(e, limit);
    if (r === null) continue;
    if (r.at < last) return null;
    last = r.at;
    counter.observe(r);
    for (const a of detector.observe(r)) anomalies.push(a);
  }
  return _reports(counter.result(), anomalies, tierSince, agents, options);
}

function _reports(
  behaviours: Map<string, Behaviour>,
  anomalies: readonly Anomaly[],
  tierSince: Map<string, string>,
  agents: ReadonlyArray<{ id: string; name: string; tier: Tier; state: string }>,
  options: { now: Date },
): AgentReport[] {
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
function _tierChange(out: Map<string, string>, e: AuditEntry): void {
  if (!['agent.register', 'agent.promote', 'agent.demote'].includes(e.event)) return;
  const id = e.data?.agent;
  if (typeof id === 'string') out.set(id, e.ts);
}
