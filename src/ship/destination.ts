/**
 * Where `audit ship --to URL` sends entries (docs/formats.md#ship): the URL's scheme names the
 * protocol. A SIEM is usually remote, so any host is allowed, but only over TLS: plain TCP or
 * HTTP only to a loopback address (a collector on the same machine), because audit entries name
 * agents, hosts and paths. No user name or password in the URL: a token goes in a token file.
 */
import { usage } from '../errors.ts';

export type ShipKind = 'syslog' | 'otlp' | 'splunk' | 'jsonl';

export interface Destination {
  kind: ShipKind;
  tls: boolean;
  /** Without brackets for IPv6. */
  host: string;
  port: number;
  /** For the HTTP kinds: the URL the request goes to (https: or http:). */
  httpUrl: URL | null;
  /** The URL as given, normalised: names the cursor file. */
  text: string;
}

const SCHEMES: Record<string, { kind: ShipKind; tls: boolean; port: number }> = {
  'syslog+tcp:': { kind: 'syslog', tls: false, port: 514 },
  'syslog+tls:': { kind: 'syslog', tls: true, port: 6514 },
  'otlp+http:': { kind: 'otlp', tls: false, port: 4318 },
  'otlp+https:': { kind: 'otlp', tls: true, port: 4318 },
  'splunk+http:': { kind: 'splunk', tls: false, port: 8088 },
  'splunk+https:': { kind: 'splunk', tls: true, port: 8088 },
  'http:': { kind: 'jsonl', tls: false, port: 80 },
  'https:': { kind: 'jsonl', tls: true, port: 443 },
};

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);
const HOST_RE =
  /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9-]{1,63})*|\[[0-9A-Fa-f:.]+\])$/;

export function parseDestination(text: string): Destination {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw _bad('is not a URL');
  }
  const scheme = SCHEMES[url.protocol];
  if (scheme === undefined) {
    throw _bad(
      `has an unsupported scheme ${url.protocol}`,
      'use syslog+tcp:// syslog+tls:// otlp+http(s):// splunk+https:// or https://',
    );
  }
  if (url.username !== '' || url.password !== '') {
    throw _bad('carries a user name or password', 'put a token in a file and pass --token-file');
  }
  if (url.search !== '' || url.hash !== '') throw _bad('has a query or fragment');
  // Non-special schemes keep hosts as written: hold them to plain names and IP literals.
  if (!HOST_RE.test(url.hostname)) throw _bad('has an unsupported host name');
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  if (!scheme.tls && !LOOPBACK.has(host.toLowerCase())) {
    throw _bad(
      'sends in plain text to a host that is not loopback',
      'use the TLS form (syslog+tls://, otlp+https://, splunk+https://, https://)',
    );
  }
  const port = url.port === '' ? scheme.port : Number(url.port);
  if (scheme.kind === 'syslog' && url.pathname !== '' && url.pathname !== '/') {
    throw _bad('has a path, which syslog has no use for');
  }
  const httpUrl = scheme.kind === 'syslog'
    ? null
    : new URL(`${scheme.tls ? 'https' : 'http'}://${url.hostname}:${port}${url.pathname}`);
  return { kind: scheme.kind, tls: scheme.tls, host, port, httpUrl, text: url.href };
}

function _bad(what: string, hint?: string) {
  // The URL is not quoted: it may hold something the operator did not mean to print.
  return usage('bad_url', `the --to URL ${what}`, hint);
}
