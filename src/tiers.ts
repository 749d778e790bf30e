/** The trust tiers (SPEC §4): what each may be granted and how long its tokens live. */
import { usage } from './errors.ts';

export const TIERS = ['NOVICE', 'COMPANION', 'PARTNER', 'GUARDIAN', 'SACRED'] as const;
export type Tier = (typeof TIERS)[number];

const HOUR = 3600_000;

/**
 * `renewals`: how many times the agent may renew its own token (`agent renew`) before a human
 * issues one again; `minScore`: the behaviour score (docs/monitoring.md) renewal needs. The more
 * a tier may do, the cleaner the record it must keep to extend itself.
 */
export const TIER_RULES: Readonly<
  Record<Tier, { maxGrants: number; tokenLifetimeMs: number; renewals: number; minScore: number }>
> = {
  NOVICE: { maxGrants: 1, tokenLifetimeMs: 1 * HOUR, renewals: 3, minScore: 70 },
  COMPANION: { maxGrants: 5, tokenLifetimeMs: 4 * HOUR, renewals: 4, minScore: 75 },
  PARTNER: { maxGrants: 20, tokenLifetimeMs: 8 * HOUR, renewals: 6, minScore: 80 },
  GUARDIAN: { maxGrants: Infinity, tokenLifetimeMs: 12 * HOUR, renewals: 6, minScore: 85 },
  SACRED: { maxGrants: Infinity, tokenLifetimeMs: 24 * HOUR, renewals: 6, minScore: 90 },
};

export function tierRank(t: Tier): number {
  return TIERS.indexOf(t);
}

export function parseTier(text: string): Tier {
  const upper = text.toUpperCase();
  if (!(TIERS as readonly string[]).includes(upper)) {
    throw usage('bad_tier', `unknown trust tier "${text}"`, `use one of ${TIERS.join(', ')}`);
  }
  return upper as Tier;
}
