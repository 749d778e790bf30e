/**
 * Reads `.env` files for `credential import`: `NAME=value` lines, an optional `export `, single or
 * double quotes, `#` comments and blank lines. Errors name the line and the variable, never the
 * text: the line holds a secret.
 */
import { usage } from '../src/errors.ts';

export interface DotenvEntry {
  name: string;
  value: Uint8Array;
  line: number;
}

const LINE_RE = /^(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_]*)[ \t]*=[ \t]*(.*)$/;

/**
 * A `.env` line: an upper-case variable with an underscore (OPENAI_API_KEY=), or any variable after
 * `export `. Base64 values end in `=` too, but their letters are mixed case and have no underscore.
 */
const ENV_LINE_RE =
  /^[ \t]*(?:export[ \t]+[A-Za-z_][A-Za-z0-9_]*|[A-Z][A-Z0-9]*_[A-Z0-9_]*)[ \t]*=/;

export function looksLikeDotenvLine(value: Uint8Array): boolean {
  const head = new TextDecoder().decode(value.subarray(0, 256));
  return ENV_LINE_RE.test(head);
}

/**
 * Parses the file's text. A later assignment of the same variable replaces the earlier one, as
 * when the file is sourced by a shell. No `$VAR` expansion: values are taken as written.
 */
export function parseDotenv(text: string): DotenvEntry[] {
  const byName = new Map<string, DotenvEntry>();
  const encoder = new TextEncoder();
  text.split('\n').forEach((raw, i) => {
    const line = i + 1;
    const trimmed = raw.replace(/\r$/, '').trim();
    if (trimmed === '' || trimmed.startsWith('#')) return;
    const m = LINE_RE.exec(trimmed);
    if (m === null) {
      throw usage(
        'bad_dotenv',
        `line ${line} of the .env file is not NAME=value`,
        'each line is NAME=value, export NAME=value, a # comment or blank',
      );
    }
    const name = m[1] as string;
    const value = _value(m[2] as string, name, line);
    byName.delete(name);
    byName.set(name, { name, value: encoder.encode(value), line });
  });
  return [...byName.values()];
}

function _value(rest: string, name: string, line: number): string {
  const quote = rest[0];
  if (quote !== '"' && quote !== "'") {
    // Unquoted: an inline comment starts at a `#` after white space.
    return rest.replace(/[ \t]+#.*$/, '').trim();
  }
  let value = '';
  for (let i = 1; i < rest.length; i++) {
    const c = rest[i] as string;
    if (c === quote) {
      const after = rest.slice(i + 1).trim();
      if (after !== '' && !after.startsWith('#')) {
        throw usage('bad_dotenv', `line ${line} (${name}): text after the closing quote`);
      }
      return value;
    }
    if (quote === '"' && c === '\\' && i + 1 < rest.length) {
      const next = rest[++i] as string;
      value += next === 'n' ? '\n' : next === 'r' ? '\r' : next === 't' ? '\t' : next;
      continue;
    }
    value += c;
  }
  throw usage(
    'bad_dotenv',
    `line ${line} (${name}): the quote is not closed on the same line`,
    'a credential value is one line',
  );
}
