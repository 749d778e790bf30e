/**
 * `serve --agent-rate N/PERIOD`: at most N requests per agent in any sliding window of PERIOD, kept
 * in memory (it lives and dies with this serve; per-credential limits are counted from the audit
 * trail and hold across processes).
 */
import type { Rate } from '../credentials.ts';

export interface AgentRateLimiter {
  /** Counts a request by `agent` at `now`; returns null if allowed, else the seconds to wait. */
  take(agent: string, now: Date): number | null;
}

export function agentRateLimiter(rate: Rate): AgentRateLimiter {
  const windowMs = rate.periodSeconds * 1000;
  const seen = new Map<string, number[]>();
  return {
    take(agent, now) {
      const t = now.getTime();
      const recent = (seen.get(agent) ?? []).filter((at) => at > t - windowMs);
      if (recent.length >= rate.count) {
        seen.set(agent, recent);
        return Math.max(1, Math.ceil(((recent[0] as number) + windowMs - t) / 1000));
      }
      recent.push(t);
      seen.set(agent, recent);
      return null;
    },
  };
}
