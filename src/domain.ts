/**
 * Domain patterns (which hosts a credential may be sent to) and the checks on a request's target URL.
 *
 * A pattern is stored in the same form the WHATWG URL parser gives `URL.hostname`, so matching is a
 * plain string comparison against the URL that is actually sent:
 * - names are lowercase ASCII, Unicode names as A-labels (`bücher.de` is `xn--bcher-kva.de`);
 * - IPv4 is dotted decimal, and only that form is accepted in a pattern (`0x7f.1` is refused rather
 *   than silently read as 127.0.0.1);
 * - IPv6 keeps its brackets and the parser's compressed form (`[0:0::1]` is stored as `[::1]`);
 * - for `*.github.com`, `wildcard` is true and `host` is the part after `*.` (`github.com`).
 *
 * Host names are normalised with `new URL` rather than `domainToASCII`, because Node and Deno
 * implement `domainToASCII` differently (IPv4 shorthand, invalid punycode) while their URL parsers agree.
 */
import { denied, TpError, usage } from './errors.ts';

export interface DomainPattern {
  scheme: 'https' | 'http';
  host: string;
  wildcard: boolean;
  port: number | null;
}

const PATTERN_HINT =
  'write a host (api.example.com), *.example.com, an IPv4 address or [IPv6], optionally with :PORT, ' +
  'and http:// in front only to allow plain http';

// A label as it may appear in a pattern or fill a wildcard, after WHATWG normalisation.
const LABEL_RE = /^[a-z0-9_-]{1,63}$/;
const IPV4_RE = /^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$/;
// C0 controls, DEL and C1 controls: never meaningful in a URL, and WHATWG silently drops some of them.
// deno-lint-ignore no-control-regex
const CONTROL_RE = /[\u0000-\u001f\u007f-\u009f]/;

export function parseDomainPattern(text: string): DomainPattern {
  if (typeof text !== 'string' || text === '') throw _badPattern('an empty domain pattern');
  if (CONTROL_RE.test(text) || /\s/.test(text)) {
    throw _badPattern(
      `domain pattern ${JSON.stringify(text)} contains whitespace or a control character`,
    );
  }
  let scheme: DomainPattern['scheme'] = 'https';
  let rest = text;
  const prefix = /^([a-z][a-z0-9+.-]*):\/\//i.exec(text);
  if (prefix !== null) {
    const name = prefix[1].toLowerCase();
    if (name !== 'http' && name !== 'https') {
      throw _badPattern(
        `domain pattern ${JSON.stringify(text)} has scheme ${name}: only http or https`,
      );
    }
    scheme = name;
    rest = text.slice(prefix[0].length);
    if (rest === '') throw _badPattern(`domain pattern ${JSON.stringify(text)} has no host`);
  }
  if (/[/?#@\\%]/.test(rest)) {
    throw _badPattern(
      `domain pattern ${JSON.stringify(text)} must be only a host and an optional port ` +
        '(no path, query, fragment, userinfo or percent-encoding)',
    );
  }
  const { hostText, portText } = _splitPort(rest, text);
  const port = portText === null ? null : _parsePort(portText, text);
  if (!hostText.includes('*')) {
    return { scheme, host: _normaliseHost(hostText, text), wildcard: false, port };
  }
  if (!hostText.startsWith('*.') || hostText.indexOf('*', 1) >= 0) {
    throw _badPattern(
      `domain pattern ${JSON.stringify(text)}: a wildcard must be a single leading "*." ` +
        '(no partial or multiple wildcards)',
    );
  }
  const host = _normaliseHost(hostText.slice(2), text);
  if (IPV4_RE.test(host) || host.startsWith('[')) {
    throw _badPattern(`domain pattern ${JSON.stringify(text)} puts a wildcard on an IP address`);
  }
  if (host.split('.').length < 2) {
    throw _badPattern(
      `domain pattern ${
        JSON.stringify(text)
      } is too broad: "*." must be followed by at least two labels`,
    );
  }
  return { scheme, host, wildcard: true, port };
}

export function formatDomainPattern(p: DomainPattern): string {
  const scheme = p.scheme === 'http' ? 'http://' : '';
  const port = p.port === null ? '' : `:${p.port}`;
  return `${scheme}${p.wildcard ? '*.' : ''}${p.host}${port}`;
}

/**
 * Parse the URL a request will be sent to. The returned URL is the one to send: checks made on it
 * hold for the request, whereas checks on the raw text would not (WHATWG rewrites hosts).
 */
export function parseTargetUrl(raw: string): URL {
  if (typeof raw !== 'string' || raw === '') throw usage('bad_url', 'the URL is empty');
  if (CONTROL_RE.test(raw)) {
    throw usage(
      'bad_url',
      'the URL contains a control character (tab, newline...)',
      'URL parsers silently drop some of them, which can change the host: remove them',
    );
  }
  if (raw.trim() !== raw) throw usage('bad_url', 'the URL has leading or trailing whitespace');
  if (raw.includes('\\')) {
    throw usage(
      'bad_url',
      'the URL contains a backslash',
      'URL parsers read a backslash as "/", which can change the host: use "/" or %5C',
    );
  }
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw usage('bad_url', `not a valid absolute URL: ${JSON.stringify(raw)}`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw denied(
      'scheme_not_allowed',
      `scheme ${url.protocol.slice(0, -1)} is not allowed: only https or http`,
    );
  }
  if (url.username !== '' || url.password !== '' || _rawAuthority(raw).includes('@')) {
    throw denied(
      'userinfo',
      'the URL contains userinfo ("user@" before the host)',
      'put credentials in a header placeholder, never in the URL authority',
    );
  }
  if (url.hostname.endsWith('.')) {
    throw denied('trailing_dot', `host ${url.hostname} ends with a dot`, 'remove the trailing dot');
  }
  return url;
}

/** The first pattern that allows a request to `url`, or null. */
export function matchTarget(patterns: readonly DomainPattern[], url: URL): DomainPattern | null {
  const scheme = url.protocol === 'https:' ? 'https' : url.protocol === 'http:' ? 'http' : null;
  if (scheme === null || url.username !== '' || url.password !== '') return null;
  const host = url.hostname.toLowerCase();
  if (host === '' || host.endsWith('.')) return null;
  const port = effectivePort(url);
  for (const p of patterns) {
    if (scheme === 'http' && p.scheme !== 'http') continue;
    if (port !== (p.port ?? _defaultPort(scheme))) continue;
    if (_hostMatches(p, host)) return p;
  }
  return null;
}

export function effectivePort(url: URL): number {
  if (url.port !== '') return Number(url.port);
  if (url.protocol === 'https:') return 443;
  if (url.protocol === 'http:') return 80;
  throw denied(
    'scheme_not_allowed',
    `scheme ${url.protocol.slice(0, -1)} is not allowed: only https or http`,
  );
}

function _hostMatches(p: DomainPattern, host: string): boolean {
  if (!p.wildcard) return host === p.host;
  const suffix = `.${p.host}`;
  return host.endsWith(suffix) && LABEL_RE.test(host.slice(0, -suffix.length));
}

function _defaultPort(scheme: 'https' | 'http'): number {
  return scheme === 'https' ? 443 : 80;
}

// The authority as written: after "scheme:" and any slashes, up to the first "/", "?" or "#".
function _rawAuthority(raw: string): string {
  const afterScheme = raw.slice(raw.indexOf(':') + 1).replace(/^\/+/, '');
  const end = afterScheme.search(/[/?#]/);
  return end < 0 ? afterScheme : afterScheme.slice(0, end);
}

function _splitPort(rest: string, text: string): { hostText: string; portText: string | null } {
  if (rest.startsWith('[')) {
    const close = rest.indexOf(']');
    if (close < 0) throw _badPattern(`domain pattern ${JSON.stringify(text)} has an unclosed "["`);
    const after = rest.slice(close + 1);
    if (after !== '' && !after.startsWith(':')) {
      throw _badPattern(`domain pattern ${JSON.stringify(text)} has text after the IPv6 address`);
    }
    return { hostText: rest.slice(0, close + 1), portText: after === '' ? null : after.slice(1) };
  }
  const colon = rest.indexOf(':');
  if (colon < 0) return { hostText: rest, portText: null };
  if (rest.indexOf(':', colon + 1) >= 0) {
    throw _badPattern(
      `domain pattern ${JSON.stringify(text)} has several ":"`,
      'write an IPv6 address in brackets: [2001:db8::1]:8443',
    );
  }
  return { hostText: rest.slice(0, colon), portText: rest.slice(colon + 1) };
}

function _parsePort(portText: string, text: string): number {
  const port = /^[1-9][0-9]{0,4}$/.test(portText) ? Number(portText) : 0;
  if (port < 1 || port > 65535) {
    throw _badPattern(
      `domain pattern ${JSON.stringify(text)} has port ${JSON.stringify(portText)}: ` +
        'expected a number from 1 to 65535 without leading zeros',
    );
  }
  return port;
}

function _normaliseHost(hostText: string, text: string): string {
  if (hostText === '') throw _badPattern(`domain pattern ${JSON.stringify(text)} has no host`);
  let host: string;
  try {
    host = new URL(`https://${hostText}/`).hostname;
  } catch {
    throw _badPattern(
      `domain pattern ${JSON.stringify(text)} is not a valid host name or IP address`,
    );
  }
  if (host.startsWith('[')) {
    if (!hostText.startsWith('[')) {
      throw _badPattern(`domain pattern ${JSON.stringify(text)} is not valid`);
    }
    return host;
  }
  if (host.endsWith('.')) {
    throw _badPattern(`domain pattern ${JSON.stringify(text)} ends with a dot`);
  }
  if (IPV4_RE.test(host)) {
    if (host !== hostText) {
      throw _badPattern(
        `domain pattern ${JSON.stringify(text)} is an IPv4 address in an unusual form`,
        `write it in dotted decimal: ${host}`,
      );
    }
    return host;
  }
  const labels = host.split('.');
  if (host.length > 253 || !labels.every((label) => LABEL_RE.test(label))) {
    throw _badPattern(
      `domain pattern ${JSON.stringify(text)} is not a valid host name ` +
        '(empty label, label over 63 characters, or a character other than letters, digits, "-" and "_")',
    );
  }
  return host;
}

function _badPattern(message: string, hint: string = PATTERN_HINT): TpError {
  return usage('bad_domain_pattern', message, hint);
}
