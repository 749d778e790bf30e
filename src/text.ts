/** Text helpers that need no runtime module (the CLI's start-up path imports them). */

const strictDecoder = new TextDecoder('utf-8', { fatal: true });

export function decodeUtf8Strict(bytes: Uint8Array): string | null {
  try {
    return strictDecoder.decode(bytes);
  } catch {
    return null;
  }
}

/** Control, bidi and separator characters a terminal or editor may act on. */
// deno-lint-ignore no-control-regex -- matching control characters is the point
const UNSAFE_TEXT = new RegExp(
  '[\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069]',
  'g',
);

/** Text from outside (reasons, names, paths) made safe to print: such characters become \uNNNN. */
export function escapeControls(s: string): string {
  return s.replace(UNSAFE_TEXT, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
