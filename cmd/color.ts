/**
 * Colour for a terminal, by hand: a few ANSI codes, no library. Whether colour is on is decided
 * once per stream (a terminal, no NO_COLOR, no --no-color); the core (src/) never colours.
 */
const CODES = { bold: 1, red: 31, green: 32, yellow: 33 } as const;

export type Style = keyof typeof CODES;

export function paint(on: boolean, style: Style, text: string): string {
  return on ? `\x1b[${CODES[style]}m${text}\x1b[0m` : text;
}

/** Colour on this stream: a terminal, and neither `NO_COLOR` (any value) nor `--no-color`. */
export function colorOn(
  stream: { isTTY?: boolean },
  env: Readonly<Record<string, string | undefined>>,
  noColorFlag: boolean,
): boolean {
  return !noColorFlag && env.NO_COLOR === undefined && stream.isTTY === true;
}
