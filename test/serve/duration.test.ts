import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatDuration, parseDuration } from '../../src/serve/duration.ts';

const DAY = 86_400_000;

describe('parseDuration', () => {
  it('reads seconds, minutes, hours, days and combinations', () => {
    expect(parseDuration('90s', '--ttl', DAY)).toBe(90_000);
    expect(parseDuration('30m', '--ttl', DAY)).toBe(1_800_000);
    expect(parseDuration('8h', '--ttl', DAY)).toBe(28_800_000);
    expect(parseDuration('1d', '--ttl', DAY)).toBe(DAY);
    expect(parseDuration('1h30m', '--ttl', DAY)).toBe(5_400_000);
  });

  it('refuses zero, too long, and anything that is not a duration, naming the flag', () => {
    for (
      const text of ['0s', '0h0m', '25h', '2d', '', '8', 'h', '1.5h', '-1h', '8 h', '8H', '1w']
    ) {
      expect(() => parseDuration(text, '--idle', DAY), text).toThrow(/--idle/);
    }
  });

  it('formatDuration writes what parseDuration reads', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: DAY / 1000 }), (seconds) => {
        const text = formatDuration(seconds * 1000);
        expect(parseDuration(text, '--ttl', DAY)).toBe(seconds * 1000);
      }),
    );
  });
});
