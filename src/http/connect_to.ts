/**
 * curl-style `--connect-to HOST:PORT:ADDRESS:PORT`: route the connection for one host and port to
 * another address, without changing the name that is checked, sent as SNI, put in `Host` and verified
 * against the certificate. Only the operator sets it (a flag, never a template field).
 */
import { isIP } from 'node:net';
import { usage } from '../errors.ts';

export interface ConnectTo {
  /** Canonical host name as `URL.hostname` gives it, lower case, IPv6 without brackets. */
  host: string;
  port: number;
  /** Where to connect instead: a host name or an IP address (IPv6 without brackets). */
  address: string;
  addressPort: number;
}

const HINT =
  'use HOST:PORT:ADDRESS:PORT, e.g. api.example.com:443:127.0.0.1:8443 (IPv6 in brackets)';
const NAME = /^[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?$/i;

/** Parses one `--connect-to` value. Unlike curl, every field is required: no wildcards. */
export function parseConnectTo(text: string): ConnectTo {
  const fields = _fields(text);
  if (fields === null || fields.length !== 4) {
    throw _bad(text, 'it needs exactly four fields separated by ":"');
  }
  const [host, port, address, addressPort] = fields;
  return {
    host: _canonicalHost(text, host),
    port: _port(text, port.value),
    address: _address(text, address),
    addressPort: _port(text, addressPort.value),
  };
}

/** The first entry routing `host:port`, or null to connect to `host` itself. */
export function resolveConnectTo(
  list: readonly ConnectTo[],
  host: string,
  port: number,
): { address: string; port: number } | null {
  const wanted = _unbracket(host.toLowerCase());
  const entry = list.find((e) => e.host === wanted && e.port === port);
  return entry === undefined ? null : { address: entry.address, port: entry.addressPort };
}

interface _Field {
  value: string;
  bracketed: boolean;
}

function _fields(text: string): _Field[] | null {
  const fields: _Field[] = [];
  let i = 0;
  for (;;) {
    if (text[i] === '[') {
      const close = text.indexOf(']', i);
      if (close === -1) return null;
      fields.push({ value: text.slice(i + 1, close), bracketed: true });
      i = close + 1;
      if (i < text.length && text[i] !== ':') return null;
    } else {
      const colon = text.indexOf(':', i);
      const end = colon === -1 ? text.length : colon;
      fields.push({ value: text.slice(i, end), bracketed: false });
      i = end;
    }
    if (i >= text.length) return fields;
    i += 1;
  }
}

function _canonicalHost(text: string, field: _Field): string {
  const literal = _hostLiteral(text, field, 'host');
  // Compare in the form URL parsing gives the request's host, so `API.Example.com`, `[0::1]`
  // or `0x7f.1` match the URL the request names.
  let hostname: string;
  try {
    hostname = new URL(`http://${field.bracketed ? `[${literal}]` : literal}/`).hostname;
  } catch {
    throw _bad(text, 'the host is not a valid host name');
  }
  return _unbracket(hostname);
}

function _address(text: string, field: _Field): string {
  return _hostLiteral(text, field, 'address').toLowerCase();
}

function _hostLiteral(text: string, field: _Field, what: string): string {
  if (field.bracketed) {
    if (isIP(field.value) !== 6) throw _bad(text, `the ${what} in brackets is not an IPv6 address`);
    return field.value;
  }
  if (field.value.length > 253 || !NAME.test(field.value)) {
    throw _bad(text, `the ${what} is not a host name or an IP address`);
  }
  return field.value;
}

function _port(text: string, value: string): number {
  const port = /^[0-9]{1,5}$/.test(value) ? Number(value) : 0;
  if (port < 1 || port > 65535) throw _bad(text, `port "${value}" is not a number from 1 to 65535`);
  return port;
}

function _unbracket(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

function _bad(text: string, why: string) {
  return usage('bad_connect_to', `invalid --connect-to ${JSON.stringify(text)}: ${why}`, HINT);
}
