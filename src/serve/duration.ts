/** Durations on the command line: `90s`, `30m`, `8h`, `1d`, or several units in a row (`1h30m`). */
import { usage } from '../errors.ts';

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Milliseconds, refusing zero and anything above `max` ms; `flag` names the option in errors. */
export function parseDuration(text: string, flag: string, max: number): number {
  const hint = 'write a number and a unit s, m, h or d, e.g. 90s, 30m, 8h or 1h30m';
  if (!/^(\d{1,6}[smhd])+$/.test(text)) {
    throw usage('bad_duration', `${flag} must be a duration, got ${JSON.stringify(text)}`, hint);
  }
  let ms = 0;
  for (const [, n, unit] of text.matchAll(/(\d+)([smhd])/g)) {
    ms += Number(n) * (UNIT_MS[unit as string] as number);
  }
  if (ms === 0) throw usage('bad_duration', `${flag} must be longer than zero`, hint);
  if (ms > max) {
    throw usage(
      'bad_duration',
      `${flag} ${text} is longer than the maximum of ${formatDuration(max)}`,
      hint,
    );
  }
  return ms;
}

/** The shortest spelling in whole units, e.g. 5400000 -> `1h30m`. */
export function formatDuration(ms: number): string {
  let rest = Math.round(ms / 1000);
  let out = '';
  for (const [unit, size] of [['d', 86_400], ['h', 3600], ['m', 60], ['s', 1]] as const) {
    const n = Math.floor(rest / size);
    if (n > 0) out += `${n}${unit}`;
    rest -= n * size;
  }
  return out === '' ? '0s' : out;
}
