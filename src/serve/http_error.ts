/**
 * How a refusal travels over HTTP: a TpError becomes a status and `{"error": {code, kind, message,
 * hint?}}` (marked by a `Trust-Protocol-Error` header that serve strips from upstream responses, so
 * only serve itself can set it), and `exec` turns such an answer back into the same TpError, hence
 * the same exit code as a one-shot `exec`.
 */
import { type ErrorKind, TpError } from '../errors.ts';

export const ERROR_HEADER = 'Trust-Protocol-Error';

const KINDS: readonly ErrorKind[] = [
  'verification',
  'usage',
  'sealed',
  'denied',
  'brake',
  'audit',
  'upstream',
  'integrity',
  'internal',
];
const UNAUTHENTICATED = new Set(['no_token', 'bad_token', 'token_expired']);
const RATE_LIMITED = new Set(['rate_limited', 'agent_rate_limited']);
const USAGE_STATUS: Record<string, number> = {
  not_found: 404,
  method_not_allowed: 405,
  body_too_large: 413,
};

export function errorStatus(e: TpError): number {
  if (UNAUTHENTICATED.has(e.code)) return 401;
  if (RATE_LIMITED.has(e.code)) return 429;
  switch (e.kind) {
    case 'denied':
      return 403;
    case 'brake':
      return 423;
    case 'usage':
      return USAGE_STATUS[e.code] ?? 400;
    case 'upstream':
      return e.code === 'timeout' ? 504 : 502;
    case 'sealed':
    case 'integrity':
    case 'audit':
      return 503;
    default:
      return 500;
  }
}

/** Only TpError messages are known to be free of secrets; anything else is reported generically. */
export function asServeError(e: unknown): TpError {
  if (e instanceof TpError) return e;
  return new TpError('internal', 'internal', 'internal error in serve (a bug: please report it)', {
    cause: e,
  });
}

export function errorJson(e: TpError): { error: Record<string, string> } {
  const error: Record<string, string> = { code: e.code, kind: e.kind, message: e.message };
  if (e.hint !== undefined) error.hint = e.hint;
  return { error };
}

/** Extra headers for a refusal: Retry-After on rate limits, the auth scheme on 401. */
export function errorHeaders(e: TpError): Array<[string, string]> {
  const headers: Array<[string, string]> = [[ERROR_HEADER, e.code]];
  if (RATE_LIMITED.has(e.code)) headers.push(['Retry-After', String(retryAfterSeconds(e))]);
  if (errorStatus(e) === 401) headers.push(['WWW-Authenticate', 'Bearer']);
  return headers;
}

/** Rate-limit errors say `retry after N s` in their hint. */
export function retryAfterSeconds(e: TpError): number {
  const m = /retry after (\d+) s/.exec(e.hint ?? '');
  return m === null ? 1 : Math.max(1, Number(m[1]));
}

/** A JSON text safe to put in a header or trailer field: non-ASCII escaped. */
export function headerJson(value: unknown): string {
  return JSON.stringify(value).replace(
    /[^\x20-\x7e]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/** The error serve described; the status decides the kind when the answer names none. */
export function errorFromResponse(status: number, body: unknown): TpError {
  const error = typeof body === 'object' && body !== null
    ? (body as { error?: unknown }).error
    : undefined;
  const e = typeof error === 'object' && error !== null ? error as Record<string, unknown> : {};
  const code = typeof e.code === 'string' ? e.code : `http_${status}`;
  const message = typeof e.message === 'string'
    ? e.message
    : `trust-protocol serve answered HTTP ${status}`;
  const kind = KINDS.includes(e.kind as ErrorKind) ? e.kind as ErrorKind : _kindOf(status, code);
  return new TpError(kind, code, message, typeof e.hint === 'string' ? { hint: e.hint } : {});
}

function _kindOf(status: number, code: string): ErrorKind {
  if (status === 401 || status === 403 || status === 429) return 'denied';
  if (status === 423) return 'brake';
  if (status === 502 || status === 504) return 'upstream';
  if (status === 503) {
    if (code.startsWith('audit')) return 'audit';
    return /integrity|mac|malformed|rollback|truncated/.test(code) ? 'integrity' : 'sealed';
  }
  if (status >= 400 && status < 500) return 'usage';
  return 'internal';
}
