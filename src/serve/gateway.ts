/**
 * `ANY /v1/gateway/CRED/PATH`: the request a client sent to serve, turned into the template
 * `exec` would run: the credential's base URL + PATH + query, the client's method and headers
 * (minus the agent token, hop-by-hop and routing headers), and the credential's inject header.
 * Only the inject header is template text. The client's URL and headers go in the template's
 * `literal` part and the body is forwarded apart: all opaque, never scanned for placeholders (a
 * prompt may well mention `{{credential}}`, and a client must not name another credential, #14).
 */
import { injectHeader } from '../credentials.ts';
import { isForbiddenRequestHeader } from '../grammar.ts';
import { usage } from '../errors.ts';
import type { Template } from '../template.ts';

/** Where clients put an API key; serve reads the agent token from the first one present. */
export const AUTH_HEADERS = ['authorization', 'x-api-key', 'api-key', 'x-goog-api-key'] as const;

/**
 * Client headers the gateway never forwards: what a template may not set, the client's own API key
 * (the agent token), Via and Origin, Accept-Encoding (the upstream answers in identity encoding;
 * serve redacts, then streams), and serve's own Trust-Protocol-* request headers.
 */
const DROPPED = new Set<string>([...AUTH_HEADERS, 'via', 'origin', 'accept-encoding']);

function _dropped(lower: string): boolean {
  return DROPPED.has(lower) || isForbiddenRequestHeader(lower) ||
    lower.startsWith('trust-protocol-');
}

export interface GatewayCredential {
  name: string;
  base_url: string;
  inject: string;
}

export interface GatewayRequest {
  method: string;
  /** The path after `/v1/gateway/CRED`: empty or starting with `/`, as received. */
  path: string;
  /** Empty or `?...`, as received. */
  query: string;
  headers: ReadonlyArray<readonly [string, string]>;
}

export function gatewayTemplate(credential: GatewayCredential, request: GatewayRequest): Template {
  _checkPath(request.path);
  // Checked when the rule was stored; the vault holding it is authenticated by now.
  const [injectName, injectValue] = injectHeader(credential.inject) as [string, string];
  return {
    credential: credential.name,
    method: request.method,
    url: credential.base_url.replace(/\/$/, '') + request.path + request.query,
    headers: [[injectName, injectValue]],
    body: { kind: 'none' },
    literal: { url: true, headers: forwardedHeaders(request.headers, injectName) },
  };
}

/** The token from the first auth header present: `Authorization: Bearer T`, or a bare key header. */
export function gatewayToken(headers: ReadonlyArray<readonly [string, string]>): string | null {
  for (const name of AUTH_HEADERS) {
    const found = headers.find(([n]) => n.toLowerCase() === name);
    if (found === undefined) continue;
    if (name !== 'authorization') return found[1].trim() === '' ? null : found[1].trim();
    const m = /^Bearer\s+(\S+)\s*$/i.exec(found[1]);
    if (m !== null) return m[1] as string;
  }
  return null;
}

/** Client headers to pass on, repeated names joined (as HTTP allows), in first-seen order. */
export function forwardedHeaders(
  headers: ReadonlyArray<readonly [string, string]>,
  replaced: string,
): Array<[string, string]> {
  const connection = new Set(
    headers.filter(([n]) => n.toLowerCase() === 'connection')
      .flatMap(([, v]) => v.split(',').map((t) => t.trim().toLowerCase())),
  );
  const out = new Map<string, [string, string]>();
  for (const [name, value] of headers) {
    const lower = name.toLowerCase();
    if (
      _dropped(lower) || connection.has(lower) || lower === replaced.toLowerCase()
    ) continue;
    const seen = out.get(lower);
    if (seen === undefined) out.set(lower, [name, value]);
    else seen[1] += (lower === 'cookie' ? '; ' : ', ') + value;
  }
  return [...out.values()];
}

// The base URL's host is fixed; dot segments would still climb out of its path, and a backslash
// is a slash to the URL parser.
function _checkPath(path: string): void {
  if (path !== '' && !path.startsWith('/')) {
    throw usage('bad_gateway_path', 'the gateway path must start with "/"');
  }
  if (path.includes('\\')) {
    throw usage('bad_gateway_path', 'the gateway path may not contain a backslash');
  }
  for (const segment of path.split('/')) {
    const dots = segment.replace(/%2e/gi, '.');
    if (dots === '.' || dots === '..') {
      throw usage(
        'bad_gateway_path',
        'the gateway path may not contain "." or ".." segments',
        "send the path the API documents, relative to the credential's base URL",
      );
    }
  }
}
