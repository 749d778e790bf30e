/** The one place where error kinds become exit codes and messages (SPEC §1). */
import { type ErrorKind, TpError } from '../src/errors.ts';
import { paint } from './color.ts';

export const EXIT: Readonly<Record<ErrorKind | 'ok' | 'http_status', number>> = {
  ok: 0,
  verification: 1,
  usage: 2,
  sealed: 3,
  denied: 4,
  brake: 5,
  audit: 6,
  upstream: 7,
  integrity: 8,
  http_status: 22,
  internal: 70,
};

export const EXIT_TABLE = `Exit codes:
  0   success
  1   verification failed (audit tampered, skill signature invalid)
  2   usage error (bad flags, malformed template, unknown placeholder)
  3   sealed: vault missing, no password source, wrong password
  4   denied by policy: token, agent state, tier, grant, domain, scheme, port, placement, rate limit
  5   blocked by an emergency brake
  6   audit trail cannot be written (fail closed: the request is not sent)
  7   upstream failure: DNS, connect, TLS, timeout, response too large
  8   state integrity failure: a state file was edited, swapped or corrupted
  22  with --fail: the upstream answered with HTTP status >= 400
  70  internal error (a bug: please report it)`;

export function asTpError(e: unknown): TpError {
  if (e instanceof TpError) return e;
  const message = e instanceof Error ? e.message : String(e);
  return new TpError('internal', 'internal', `internal error: ${message}`, { cause: e });
}

export function formatError(e: TpError, options: { json: boolean; color: boolean }): string {
  if (options.json) {
    const error: Record<string, string> = { code: e.code, kind: e.kind, message: e.message };
    if (e.hint !== undefined) error.hint = e.hint;
    return JSON.stringify({ error }) + '\n';
  }
  return `trust-protocol: ${paint(options.color, 'red', 'error:')} ${e.message}\n` +
    (e.hint === undefined ? '' : `hint: ${e.hint}\n`);
}
