/**
 * Promotion and demotion advice with its evidence (SPEC §4, docs/monitoring.md). Advice only:
 * changing a tier stays a human decision (`agent promote` / `agent demote`).
 */
import { type Tier, tierRank, TIERS } from '../tiers.ts';
import type { Behaviour } from './behaviour.ts';
import type { Anomaly } from './anomalies.ts';

/** Clean active days and attempts at a tier before promotion to the next one is suggested. */
export const PROMOTE_AFTER: Readonly<Record<Tier, { days: number; requests: number } | null>> = {
  NOVICE: { days: 3, requests: 20 },
  COMPANION: { days: 7, requests: 100 },
  PARTNER: { days: 14, requests: 500 },
  GUARDIAN: { days: 30, requests: 1000 },
  SACRED: null,
};
/** Above this share of denied attempts an agent is not promoted. */
export const MAX_DENIAL_RATE = 0.05;
/** A high-severity anomaly this recent, after the last tier change, suggests demotion. */
export const DEMOTE_WINDOW_MS = 7 * 24 * 3600_000;

export interface Recommendation {
  agent: string;
  tier: Tier;
  action: 'promote' | 'demote' | 'keep';
  to: Tier | null;
  reason: string;
  evidence: {
    days_active: number;
    clean_days_at_tier: number;
    requests: number;
    denials: number;
    tier_since: string | null;
    last_anomaly: Anomaly | null;
  };
}

export interface RecommendInput {
  agent: { id: string; tier: Tier; state: string };
  behaviour: Behaviour | undefined;
  /** This agent's anomalies, oldest first. */
  anomalies: readonly Anomaly[];
  /** When the agent got its current tier (registration or last promotion or demotion). */
  tierSince: string | null;
}

export function recommend(input: RecommendInput, options: { now: Date }): Recommendation {
  const { agent, behaviour: b } = input;
  const last = input.anomalies.at(-1) ?? null;
  const serious = input.anomalies.filter((a) => a.severity !== 'low').at(-1) ?? null;
  // Clean days count from the later of the tier change and the last medium or high anomaly.
  const since = [input.tierSince, serious?.at].filter((t): t is string => t != null).sort().at(-1);
  const cleanDays =
    Object.keys(b?.per_day ?? {}).filter((d) => since === undefined || d > since.slice(0, 10))
      .length;
  const evidence = {
    days_active: b?.days_active ?? 0,
    clean_days_at_tier: cleanDays,
    requests: b?.requests ?? 0,
    denials: b?.denied ?? 0,
    tier_since: input.tierSince,
    last_anomaly: last,
  };
  const result = (action: Recommendation['action'], to: Tier | null, reason: string) => ({
    agent: agent.id,
    tier: agent.tier,
    action,
    to,
    reason,
    evidence,
  });
  const high = input.anomalies.filter((a) =>
    a.severity === 'high' && options.now.getTime() - Date.parse(a.at) < DEMOTE_WINDOW_MS &&
    (input.tierSince === null || a.at > input.tierSince)
  ).at(-1);
  if (high !== undefined) {
    const rank = tierRank(agent.tier);
    return rank === 0
      ? result(
        'keep',
        null,
        `high-severity ${high.kind} at ${high.at}; already NOVICE: consider \`agent suspend\``,
      )
      : result('demote', TIERS[rank - 1]!, `high-severity ${high.kind} at ${high.at}`);
  }
  if (agent.state !== 'active') return result('keep', null, `agent is ${agent.state}`);
  const rule = PROMOTE_AFTER[agent.tier];
  const next = TIERS[tierRank(agent.tier) + 1];
  if (rule === null || next === undefined) return result('keep', null, 'highest tier');
  const attempts = b?.requests ?? 0;
  const denialRate = attempts === 0 ? 0 : (b?.denied ?? 0) / attempts;
  if (cleanDays < rule.days || attempts < rule.requests) {
    return result(
      'keep',
      null,
      `needs ${rule.days} clean active days and ${rule.requests} requests at ${agent.tier} ` +
        `(has ${cleanDays} and ${attempts})`,
    );
  }
  if (denialRate > MAX_DENIAL_RATE) {
    return result(
      'keep',
      null,
      `denial rate ${(denialRate * 100).toFixed(1)}% is above ${MAX_DENIAL_RATE * 100}%`,
    );
  }
  return result(
    'promote',
    next,
    `${cleanDays} clean active days and ${attempts} requests at ${agent.tier}; a human decides`,
  );
}
