/**
 * Where `serve` may listen: a loopback TCP address (127.0.0.0/8, ::1, localhost) or a unix socket,
 * never anything reachable from another machine. Also the Host header values each listener answers
 * to, so a page that rebinds its own DNS name to 127.0.0.1 is refused (its Host is its own name).
 */
import { isIPv4, isIPv6 } from 'node:net';
import { usage } from '../errors.ts';

/**
 * Where the dedicated-user deployment's serve listens (install.sh --system): exec, run as an agent
 * user with no state directory of its own, finds it there by itself.
 */
export const SYSTEM_SOCKET = '/run/trust-protocol/serve.sock';

export interface TcpAddress {
  /** What to bind: an IP literal (`localhost` binds 127.0.0.1, without asking a resolver). */
  bind: string;
  port: number;
}

const HINT =
  'serve listens on loopback only: --listen 127.0.0.1:PORT, [::1]:PORT or localhost:PORT';

export function parseListen(text: string): TcpAddress {
  const m = /^(\[[^\]]*\]|[^:[\]]*):(\d{1,5})$/.exec(text);
  if (m === null || Number(m[2]) > 65535) {
    throw usage(
      'bad_listen',
      `--listen must be HOST:PORT, got ${JSON.stringify(text)}`,
      HINT + ' (port 0 picks a free one)',
    );
  }
  const host = (m[1] as string).toLowerCase();
  const port = Number(m[2]);
  const bind = _loopback(host);
  if (bind === null) {
    throw usage(
      'not_loopback',
      `refusing to listen on ${JSON.stringify(host === '' ? '(every address)' : host)}: ` +
        'it is not a loopback address, so other machines could reach the unsealed vault',
      HINT,
    );
  }
  return { bind, port };
}

function _loopback(host: string): string | null {
  if (host === 'localhost') return '127.0.0.1';
  if (isIPv4(host) && host.startsWith('127.')) return host;
  if (host.startsWith('[') && host.endsWith(']') && isIPv6(host.slice(1, -1))) {
    // Canonical form decides: [0:0:0:0:0:0:0:1] is ::1, [::ffff:127.0.0.1] is not accepted.
    return new URL(`http://${host}/`).hostname === '[::1]' ? '::1' : null;
  }
  return null;
}

/** The URL a client uses to reach a bound TCP listener. */
export function tcpUrl(address: TcpAddress): string {
  return `http://${
    address.bind.includes(':') ? `[${address.bind}]` : address.bind
  }:${address.port}`;
}

/** Host header values (lower case) accepted on a TCP listener bound to `address`. */
export function tcpHosts(address: TcpAddress): Set<string> {
  const names = new Set(['127.0.0.1', 'localhost', '[::1]']);
  names.add(address.bind.includes(':') ? `[${address.bind}]` : address.bind);
  const hosts = new Set<string>();
  for (const name of names) {
    hosts.add(`${name}:${address.port}`);
    if (address.port === 80) hosts.add(name);
  }
  return hosts;
}

/** The default socket in the home, where `exec` looks for a running serve. */
export const SOCKET_NAME = 'serve.sock';

/** A unix socket has no host name; clients (curl, exec) send `localhost`. */
export const UNIX_HOSTS: ReadonlySet<string> = new Set(['localhost']);
