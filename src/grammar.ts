/**
 * The small grammars every layer shares, in one place: the name rule (credentials, agents, brake
 * targets, gateway paths, placeholders), HTTP tokens and field values (RFC 9110 §5.5, §5.6.2), and
 * the header lists that belong to one connection or that a template may not set (SPEC §5).
 */

/** A credential or agent name: 1-64 of `A-Za-z0-9_.-`, starting with a letter or digit. */
export const NAME_SOURCE = '[A-Za-z0-9][A-Za-z0-9_.-]{0,63}';
export const NAME_RE: RegExp = new RegExp(`^${NAME_SOURCE}$`);

/** An HTTP token (a method or a header name). */
export const TOKEN_RE: RegExp = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** An HTTP field value as bytes of latin1 text: no CR, LF, NUL or other controls but tab. */
export const FIELD_VALUE_RE: RegExp = /^[\t\x20-\x7e\x80-\xff]*$/;

/** Hop-by-hop fields (RFC 9110 §7.6.1): they describe one connection and are never forwarded. */
export const HOP_BY_HOP_HEADERS: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** Fields that frame or route a request: only the HTTP client itself sets them. */
export const FRAMING_HEADERS: ReadonlySet<string> = new Set([
  ...HOP_BY_HOP_HEADERS,
  'host',
  'content-length',
]);

/**
 * Whether a template (or a gateway client) may not set this field (lower case): framing and
 * hop-by-hop fields, Expect, Forwarded, and the Proxy-* and X-Forwarded-* families (SPEC §5).
 */
export function isForbiddenRequestHeader(lowerName: string): boolean {
  return FRAMING_HEADERS.has(lowerName) || lowerName === 'expect' ||
    lowerName === 'forwarded' || lowerName.startsWith('proxy-') ||
    lowerName.startsWith('x-forwarded-');
}
