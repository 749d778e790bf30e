/**
 * Connection strings of the team store (#19), without the database client: the password found
 * where the client finds it, redacted for messages and refused on a command line. Small, so that
 * every CLI start can check `--store` without loading src/store/postgres.ts.
 */

/**
 * A connection string cut where the client (`postgres`) cuts it: the authority runs to the first
 * `/` or `?`, the user info to its last `@`, the password from the user info's first `:`. So a
 * password may hold `@` or `#` unencoded; a cut of our own (a regex stopping at the first `@`)
 * would show the rest. No URL parser: WHATWG URL refuses the socket form `postgres://u:pw@/db`.
 */
export function splitPassword(
  url: string,
): { before: string; password: string; after: string } | null {
  const scheme = /^postgres(?:ql)?:\/\//.exec(url);
  if (scheme === null) return null;
  const start = scheme[0].length;
  const rest = url.slice(start);
  const end = rest.search(/[/?]/);
  const authority = end === -1 ? rest : rest.slice(0, end);
  const at = authority.lastIndexOf('@');
  const colon = at === -1 ? -1 : authority.slice(0, at).indexOf(':');
  if (colon === -1) return null;
  return {
    before: url.slice(0, start + colon),
    password: authority.slice(colon + 1, at),
    after: url.slice(start + at),
  };
}

/** A connection string with its password replaced: what every message shows. */
export function redactUrl(url: string): string {
  const s = splitPassword(url);
  return s === null ? url : `${s.before}:***${s.after}`;
}

/** Whether a connection string carries a password (where the client would find one). */
export function hasPassword(url: string): boolean {
  return splitPassword(url) !== null;
}

export function isPostgresUrl(text: string): boolean {
  return text.startsWith('postgres://') || text.startsWith('postgresql://');
}
