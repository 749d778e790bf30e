import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES, type ErrorCode, type ErrorKind, TpError } from '../../src/errors.ts';
import {
  errorFromResponse,
  errorHeaders,
  errorJson,
  errorStatus,
  headerJson,
} from '../../src/serve/http_error.ts';

const KINDS: ErrorKind[] = [
  'usage',
  'sealed',
  'denied',
  'brake',
  'audit',
  'upstream',
  'integrity',
  'internal',
];

describe('TpError over HTTP', () => {
  it('maps kinds and codes to the statuses of SPEC §8', () => {
    const status = (kind: ErrorKind, code: ErrorCode) => errorStatus(new TpError(kind, code, 'm'));
    expect(status('denied', 'no_token')).toBe(401);
    expect(status('denied', 'bad_token')).toBe(401);
    expect(status('denied', 'token_expired')).toBe(401);
    expect(status('denied', 'not_granted')).toBe(403);
    expect(status('denied', 'agent_revoked')).toBe(403);
    expect(status('brake', 'brake_global')).toBe(423);
    expect(status('denied', 'rate_limited')).toBe(429);
    expect(status('denied', 'agent_rate_limited')).toBe(429);
    expect(status('usage', 'bad_template')).toBe(400);
    expect(status('usage', 'body_too_large')).toBe(413);
    expect(status('upstream', 'connect')).toBe(502);
    expect(status('upstream', 'timeout')).toBe(504);
    for (const k of ['sealed', 'integrity', 'audit'] as const) expect(status(k, 'io')).toBe(503);
  });

  it('a code this version does not know (a newer serve) comes back as remote_error', () => {
    const back = errorFromResponse(403, {
      error: { code: 'brand_new_reason', kind: 'denied', message: 'no' },
    });
    expect(back).toMatchObject({ kind: 'denied', code: 'remote_error', message: 'no' });
  });

  it('exec gets back the same kind, code, message and hint (property)', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...KINDS),
        fc.constantFrom(...ERROR_CODES),
        fc.string(),
        fc.option(fc.string(), { nil: undefined }),
        (kind, code, message, hint) => {
          const e = new TpError(kind, code, message, hint === undefined ? {} : { hint });
          const back = errorFromResponse(errorStatus(e), JSON.parse(JSON.stringify(errorJson(e))));
          expect([back.kind, back.code, back.message, back.hint]).toEqual([
            kind,
            code,
            message,
            hint,
          ]);
        },
      ),
    );
  });

  it('without a kind, the status alone decides (401/403/429 → 4, 423 → 5, 400 → 2, 502/504 → 7, 503 → 3)', () => {
    const kind = (status: number, code = 'x') =>
      errorFromResponse(status, { error: { code } }).kind;
    expect([401, 403, 429].map((s) => kind(s))).toEqual(['denied', 'denied', 'denied']);
    expect(kind(423)).toBe('brake');
    expect(kind(400)).toBe('usage');
    expect([502, 504].map((s) => kind(s))).toEqual(['upstream', 'upstream']);
    for (const code of ['audit_write_failed', 'vault_mac', 'no_vault']) {
      expect(kind(503, code)).toBe('sealed');
    }
    expect(errorFromResponse(500, 'not json').kind).toBe('internal');
  });

  it("Retry-After from the error's details, not its words; it travels back to exec", () => {
    const e = new TpError('denied', 'rate_limited', 'over', {
      hint: 'wait a bit',
      details: { retryAfterSeconds: 42 },
    });
    expect(errorHeaders(e)).toContainEqual(['Retry-After', '42']);
    expect(errorJson(e).error.retry_after).toBe(42);
    const back = errorFromResponse(429, JSON.parse(JSON.stringify(errorJson(e))));
    expect(back.details.retryAfterSeconds).toBe(42);
    const none = new TpError('denied', 'agent_rate_limited', 'over', { hint: 'retry after 9 s' });
    expect(errorHeaders(none)).toContainEqual(['Retry-After', '1']);
  });

  it('a JSON trailer value stays ASCII', () => {
    expect(headerJson({ m: 'é\u2028\n' })).toMatch(/^[\x20-\x7e]+$/);
    expect(JSON.parse(headerJson({ m: 'é\u2028\n' }))).toEqual({ m: 'é\u2028\n' });
  });
});
