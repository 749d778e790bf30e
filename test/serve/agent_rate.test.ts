import { describe, expect, it } from 'vitest';
import { agentRateLimiter } from '../../src/serve/agent_rate.ts';

describe('agentRateLimiter', () => {
  it('allows N per sliding window per agent and says how long to wait', () => {
    const limiter = agentRateLimiter({ count: 2, periodSeconds: 60 });
    const at = (s: number) => new Date(Date.UTC(2030, 0, 1) + s * 1000);
    expect(limiter.take('a', at(0))).toBeNull();
    expect(limiter.take('a', at(10))).toBeNull();
    expect(limiter.take('a', at(20))).toBe(40);
    expect(limiter.take('b', at(20))).toBeNull();
    // Refusals do not count: at 60 s the first request has left the window.
    expect(limiter.take('a', at(59.5))).toBe(1);
    expect(limiter.take('a', at(60))).toBeNull();
    expect(limiter.take('a', at(65))).toBe(5);
    expect(limiter.take('a', at(70))).toBeNull();
  });
});
