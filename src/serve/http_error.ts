/**
 * How a refusal travels over HTTP: a TpError becomes a status and `{"error": {code, kind, message,
 * hint?}}` (marked by a `Trust-Protocol-Error` header that serve strips from upstream responses, so
 * only serve itself can set it), and `exec` turns such an answer back into the same TpError, hence
 * the same exit code as a one-shot `exec`.
 */
import { errorCodeOf, type ErrorKind, TpError } from '../errors.ts';
import { AUDIT_SEQ_HEADER } from './protocol.ts';

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
/** The HTTP status of each kind (SPEC §8), and of the codes that have one of their own. */
const STATUS_OF_KIND: Record<ErrorKind, number> = {
  verification: 500,
  usage: 400,
  sealed: 503,
  denied: 403,
  brake: 423,
  audit: 503,
  upstream: 502,
  integrity: 503,
  internal: 500,
};
const STATUS_OF_CODE: Readonly<Record<string, number>> = {
  no_token: 401,
  bad_token: 401,
  token_expired: 401,
  admin_token_invalid: 401,
  admin_token_expired: 401,
  unknown_issuer: 401,
  unlinked_identity: 401,
  role_denied: 403,
  org_denied: 403,
  rate_limited: 429,
  agent_rate_limited: 429,
  not_found: 404,
  method_not_allowed: 405,
  body_too_large: 413,
  timeout: 504,
};

export function errorStatus(e: TpError): number {
  return STATUS_OF_CODE[e.code] ?? STATUS_OF_KIND[e.kind];
}

/** Only TpError messages are known to be free of secrets; anything else is reported generically. */
export function asServeError(e: unknown): TpError {
  if (e instanceof TpError) return e;
  return new TpError('internal', 'internal', 'internal error in serve (a bug: please report it)', {
    cause: e,
  });
}

export function errorJson(e: TpError): { error: Record<string, string | number> } {
  const error: Record<string, string | number> = { code: e.code, kind: e.kind, message: e.message };
  if (e.hint !== undefined) error.hint = e.hint;
  if (e.details.retryAfterSeconds !== undefined) error.retry_after = e.details.retryAfterSeconds;
  return { error };
}

/**
 * Extra headers for a refusal: Retry-After on rate limits, the auth scheme on 401, and the seq of
 * the `request.denied` entry when serve recorded the refusal.
 */
export function errorHeaders(e: TpError): Array<[string, string]> {
  const headers: Array<[string, string]> = [[ERROR_HEADER, e.code]];
  if (e.details.auditSeq !== undefined) {
    headers.push([AUDIT_SEQ_HEADER, String(e.details.auditSeq)]);
  }
  const status = errorStatus(e);
  if (status === 429) {
    headers.push(['Retry-After', String(Math.max(1, e.details.retryAfterSeconds ?? 1))]);
  }
  if (status === 401) headers.push(['WWW-Authenticate', 'Bearer']);
  return headers;
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
  const kind = KINDS.includes(e.kind as ErrorKind) ? e.kind as ErrorKind : _kindOf(status);
  const retry = e.retry_after;
  return new TpError(kind, errorCodeOf(code), message, {
    ...(typeof e.hint === 'string' ? { hint: e.hint } : {}),
    ...(Number.isSafeInteger(retry) ? { details: { retryAfterSeconds: retry as number } } : {}),
  });
}

/**
 * An answer that names no kind is not serve's own (serve always names it): the status alone says
 * what it is, and a 503 is taken as sealed, the kind that asks the operator to look.
 */
function _kindOf(status: number): ErrorKind {
  if (status === 401 || status === 403 || status === 429) return 'denied';
  if (status === 423) return 'brake';
  if (status === 502 || status === 504) return 'upstream';
  if (status === 503) return 'sealed';
  if (status >= 400 && status < 500) return 'usage';
  return 'internal';
}
