/** The trust tiers (SPEC §4): what each may be granted and how long its tokens live. */
import { usage } from './errors.ts';

export const TIERS = ['NOVICE', 'COMPANION', 'PARTNER', 'GUARDIAN', 'SACRED'] as const;
export type Tier = (typeof TIERS)[number];

const HOUR = 3600_000;

export const TIER_RULES: Readonly<Record<Tier, { maxGrants: number; tokenLifetimeMs: number }>> = {
  NOVICE: { maxGrants: 1, tokenLifetimeMs: 1 * HOUR },
  COMPANION: { maxGrants: 5, tokenLifetimeMs: 4 * HOUR },
  PARTNER: { maxGrants: 20, tokenLifetimeMs: 8 * HOUR },
  GUARDIAN: { maxGrants: Infinity, tokenLifetimeMs: 12 * HOUR },
  SACRED: { maxGrants: Infinity, tokenLifetimeMs: 24 * HOUR },
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
