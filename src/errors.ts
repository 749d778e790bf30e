/**
 * Every failure the library reports is a TpError. `kind` decides the exit code (cmd/ maps it);
 * `code` is a stable machine-readable reason for `--json` output and the audit trail.
 * Messages never contain secret values.
 */
export type ErrorKind =
  | 'verification' // exit 1
  | 'usage' // exit 2
  | 'sealed' // exit 3
  | 'denied' // exit 4
  | 'brake' // exit 5
  | 'audit' // exit 6
  | 'upstream' // exit 7
  | 'integrity' // exit 8
  | 'internal'; // exit 70

/** Facts a caller acts on, as numbers rather than words in the message or hint. */
export interface ErrorDetails {
  /** A rate limit: seconds until a request may succeed (HTTP Retry-After). */
  retryAfterSeconds?: number;
}

export class TpError extends Error {
  readonly kind: ErrorKind;
  readonly code: string;
  readonly hint?: string;
  readonly details: ErrorDetails;

  constructor(
    kind: ErrorKind,
    code: string,
    message: string,
    options: { hint?: string; cause?: unknown; details?: ErrorDetails } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TpError';
    this.kind = kind;
    this.code = code;
    if (options.hint !== undefined) this.hint = options.hint;
    this.details = options.details ?? {};
  }
}

export function usage(code: string, message: string, hint?: string): TpError {
  return new TpError('usage', code, message, hint === undefined ? {} : { hint });
}

export function denied(code: string, message: string, hint?: string): TpError {
  return new TpError('denied', code, message, hint === undefined ? {} : { hint });
}

export function integrity(code: string, message: string, hint?: string): TpError {
  return new TpError('integrity', code, message, hint === undefined ? {} : { hint });
}
