/**
 * The canary fixture for the adversarial security suite (test/canary/): a home with a credential
 * whose value is a random canary, an agent granted it, an allowed listener for api.allowed.test and
 * attacker listeners for every other host or port a URL trick could reach, and `exec` running the
 * real CLI against them.
 *
 * The canary's encoded forms are computed here, independently of src/redact.ts, so a test fails if
 * the implementation misses a form instead of agreeing with itself.
 */
import { Buffer } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import type { Socket } from 'node:net';
import { expect } from 'vitest';
import { addCredential, newAgent, newHome, type RunResult, type TestHome } from './cli.ts';
import {
  echoHandler,
  type Handler,
  type Listener,
  startHttpsListener,
  startRawListener,
  TEST_CA,
} from './listeners.ts';

export const ALLOWED_HOST = 'api.allowed.test';

/**
 * Host:port pairs an attack could make the client connect to, all routed to the attacker's TLS
 * listener (the test certificate covers the names, so a leak would complete the handshake).
 */
const ATTACKER_TLS_ROUTES = [
  'evil.test:443',
  'www.evil.test:443',
  'api.allowed.test.evil.test:443',
  'evilallowed.test:443',
  'allowed.test:443',
  'www.allowed.test:443',
  'api.allowed.test.:443',
  'xn--pi-6kc.allowed.test:443',
  'localhost:443',
  '127.0.0.1:443',
  '[::1]:443',
  '[::ffff:7f00:1]:443',
  'api.allowed.test:8443',
  'evil.test:8443',
];

/** The same for plain-text ports, routed to the attacker's plain listener. */
const ATTACKER_PLAIN_ROUTES = [
  'api.allowed.test:80',
  'evil.test:80',
  '127.0.0.1:80',
  'api.allowed.test:21',
  'evil.test:21',
];

/** `sk-canary-` and 24 random hex digits; `special` adds characters every encoding changes. */
export function newCanary(options: { special?: boolean } = {}): string {
  const hex = randomBytes(12).toString('hex');
  if (options.special !== true) return `sk-canary-${hex}`;
  return `sk-canary-${hex.slice(0, 12)}/+= "\\&?#%<>${hex.slice(12)}`;
}

export interface CanaryForm {
  name: string;
  text: string;
  /** The form's bytes when they are not `text` as UTF-8 (UTF-16). */
  bytes?: Buffer;
}

/**
 * The characters of base64(prefix + value + suffix) that depend only on `value`, for a prefix of
 * `align` bytes (0, 1 or 2): they appear whatever bytes surround the value.
 */
export function base64Core(value: Uint8Array, align: number, urlSafe = false): string {
  const bits = 8 * (align + value.length);
  const encoded = Buffer.concat([Buffer.alloc(align), Buffer.from(value), Buffer.alloc(3)])
    .toString('base64');
  const core = encoded.slice(Math.ceil((8 * align) / 6), Math.floor(bits / 6));
  return urlSafe ? core.replaceAll('+', '-').replaceAll('/', '_') : core;
}

/** Every form of `canary` that must never reach the agent or an attacker. */
export function canaryForms(canary: string): CanaryForm[] {
  const bytes = Buffer.from(canary, 'utf8');
  const forms: CanaryForm[] = [{ name: 'raw', text: canary }];
  for (const align of [0, 1, 2]) {
    forms.push({ name: `base64 at alignment ${align}`, text: base64Core(bytes, align) });
    forms.push({ name: `base64url at alignment ${align}`, text: base64Core(bytes, align, true) });
  }
  forms.push({ name: 'hex', text: bytes.toString('hex') });
  forms.push({ name: 'HEX', text: bytes.toString('hex').toUpperCase() });
  forms.push({ name: 'encodeURIComponent', text: encodeURIComponent(canary) });
  forms.push({ name: 'percent (RFC 3986 unreserved kept)', text: percentEncode(bytes) });
  forms.push({
    name: 'percent (lower-case hex)',
    text: percentEncode(bytes).replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase()),
  });
  forms.push({ name: 'percent (form, + for space)', text: percentEncode(bytes, { plus: true }) });
  forms.push({ name: 'percent (every byte)', text: percentEncode(bytes, { all: true }) });
  const json = JSON.stringify(canary).slice(1, -1);
  forms.push({ name: 'JSON-escaped', text: json });
  forms.push({ name: 'JSON-escaped with \\/', text: json.replaceAll('/', '\\/') });
  forms.push({ name: 'JSON-escaped as .NET writes it', text: dotnetJson(canary) });
  forms.push({ name: 'encodeURI', text: encodeURI(canary) });
  forms.push({ name: 'a WHATWG URL path', text: whatwgPath(canary) });
  forms.push({ name: 'a WHATWG URL query', text: whatwgQuery(canary) });
  forms.push({ name: "Python's quote", text: percentEncode(bytes).replaceAll('%2F', '/') });
  // What `{{CREDENTIAL|base64}}` sends is a value of its own, echoed in its own encoded forms.
  const b64 = bytes.toString('base64');
  forms.push({ name: 'base64 text, percent-encoded', text: percentEncode(Buffer.from(b64)) });
  forms.push({ name: 'base64 text, JSON-escaped with \\/', text: b64.replaceAll('/', '\\/') });
  // Issue #14. Mixes of literal and escaped characters are found by findCanary's decoded view.
  const utf16le = Buffer.from(canary, 'utf16le');
  forms.push({ name: 'UTF-16LE', text: '', bytes: utf16le });
  forms.push({ name: 'UTF-16BE', text: '', bytes: Buffer.from(utf16le).swap16() });
  const chars = [...canary];
  forms.push({
    name: 'HTML decimal references',
    text: chars.map((c) => `&#${c.codePointAt(0)};`).join(''),
  });
  forms.push({
    name: 'HTML hex references',
    text: chars.map((c) => `&#x${c.codePointAt(0)!.toString(16)};`).join(''),
  });
  forms.push({ name: 'JSON, every character \\u-escaped', text: _unicodeEscaped(canary) });
  const pairs = [...bytes].map((b) => b.toString(16).padStart(2, '0'));
  for (const [name, hex] of [['hex', pairs], ['HEX', pairs.map((p) => p.toUpperCase())]] as const) {
    for (const separator of [':', ' ', '-']) {
      forms.push({ name: `${name} separated by "${separator}"`, text: hex.join(separator) });
    }
    forms.push({ name: `${name} as \\x`, text: hex.map((h) => `\\x${h}`).join('') });
  }
  // A value's UTF-8 bytes each read as a latin1 character, then written as UTF-8 (Node's
  // req.headers through JSON.stringify), and that text \u-escaped.
  const mojibake = bytes.toString('latin1');
  if (mojibake !== canary) {
    forms.push({ name: 'latin1/UTF-8 mix-up', text: mojibake });
    forms.push({ name: 'latin1/UTF-8 mix-up, \\u-escaped', text: _unicodeEscaped(mojibake) });
  }
  const unique = new Map<string, CanaryForm>();
  for (const form of forms) {
    const key = form.bytes?.toString('latin1') ?? form.text;
    if (!unique.has(key)) unique.set(key, form);
  }
  return [...unique.values()];
}

/** Every UTF-16 code unit as `\uHHHH`, lower-case hex (Python's json.dumps writes non-ASCII so). */
function _unicodeEscaped(text: string): string {
  let out = '';
  for (let i = 0; i < text.length; i++) {
    out += '\\u' + text.charCodeAt(i).toString(16).padStart(4, '0');
  }
  return out;
}

/**
 * `data` (bytes) with HTML character references and JSON escapes decoded, each decoded
 * character written back as UTF-8: a canary echoed in any mix of literal and escaped characters
 * appears in it literally.
 */
function _decoded(data: Buffer): Buffer {
  const utf8 = (text: string) => Buffer.from(text, 'utf8').toString('latin1');
  const named: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };
  const text = data.toString('latin1')
    .replace(
      /&#[xX]([0-9a-fA-F]{1,10});|&#([0-9]{1,10});|&(amp|lt|gt|quot|apos);/gi,
      (_, hex, dec, name) =>
        name !== undefined ? named[name.toLowerCase()] : utf8(
          String.fromCodePoint(
            Math.min(parseInt(hex ?? dec, hex === undefined ? 10 : 16), 0x10ffff),
          ),
        ),
    )
    .replace(
      /(?:\\u[0-9a-fA-F]{4})+/g,
      (run) => utf8(String.fromCharCode(...run.split('\\u').slice(1).map((h) => parseInt(h, 16)))),
    )
    .replace(/\\(["\\/])/g, '$1');
  return Buffer.from(text, 'latin1');
}

/** `text` as the WHATWG URL serializer writes it in a path (`new URL()`, non-special scheme). */
export function whatwgPath(text: string): string {
  const url = new URL('x://h/');
  url.pathname = `/${text}`;
  return url.pathname.slice(1);
}

/** `text` as the WHATWG URL serializer writes it in an https URL's query. */
export function whatwgQuery(text: string): string {
  const url = new URL('https://h/');
  url.search = text.startsWith('?') ? `?${text}` : text;
  return url.search.slice(1);
}

/**
 * A string's JSON escaping by .NET's default encoder (System.Text.Json): `\\` and the short
 * escapes for control characters that have one; \u and four upper-case hex digits for other
 * control characters, DEL, non-ASCII and `"&'+<>` and the backtick.
 */
export function dotnetJson(text: string): string {
  const short: Record<string, string> = {
    '\\': '\\\\',
    '\n': '\\n',
    '\r': '\\r',
    '\t': '\\t',
    '\b': '\\b',
    '\f': '\\f',
  };
  let out = '';
  for (let i = 0; i < text.length; i++) {
    const ch = text[i] as string;
    const code = text.charCodeAt(i);
    if (short[ch] !== undefined) out += short[ch];
    else if (code < 0x20 || code > 0x7e || `"&'+<>\``.includes(ch)) {
      out += `\\u${code.toString(16).toUpperCase().padStart(4, '0')}`;
    } else out += ch;
  }
  return out;
}

/** Percent-encodes every byte outside `A-Za-z0-9-._~` (or every byte with `all`), upper-case hex. */
export function percentEncode(
  bytes: Uint8Array,
  options: { all?: boolean; plus?: boolean } = {},
): string {
  let out = '';
  for (const b of bytes) {
    const c = String.fromCharCode(b);
    if (options.plus === true && c === ' ') out += '+';
    else if (options.all !== true && /[A-Za-z0-9\-._~]/.test(c)) out += c;
    else out += `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** The name of the first form of `canary` found in `data`, or null. */
export function findCanary(data: Uint8Array | string, canary: string): string | null {
  const haystack = typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data);
  for (const form of canaryForms(canary)) {
    if (haystack.indexOf(form.bytes ?? Buffer.from(form.text, 'utf8')) >= 0) return form.name;
  }
  // Mixes of literal and escaped characters (an HTML escaper, an attacker's choice).
  const decoded = _decoded(haystack);
  if (decoded.indexOf(Buffer.from(canary, 'utf8')) >= 0) return 'raw, once escapes are decoded';
  const mojibake = Buffer.from(Buffer.from(canary, 'utf8').toString('latin1'), 'utf8');
  if (decoded.indexOf(mojibake) >= 0) return 'latin1/UTF-8 mix-up, once escapes are decoded';
  // Hex in any mix of cases, with or without separators.
  const lower = haystack.toString('latin1').toLowerCase();
  const pairs = [...Buffer.from(canary, 'utf8')].map((b) => b.toString(16).padStart(2, '0'));
  for (const separator of ['', ':', ' ', '-', '\\x']) {
    if (lower.includes(pairs.join(separator))) return `hex in mixed case ("${separator}")`;
  }
  return null;
}

/** Fails naming the form and `where` (never printing the canary itself). */
export function expectNoCanary(data: Uint8Array | string, canary: string, where = 'output'): void {
  const found = findCanary(data, canary);
  expect(found, `a canary (${found}) appeared in ${where}`).toBeNull();
}

/** Files in a directory tree, for scanning everything an agent could read in the home. */
function _files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = path.join(dir, name);
    return statSync(p).isDirectory() ? _files(p) : [p];
  });
}

export interface ExecOptions {
  env?: Record<string, string | undefined>;
  /** Extra exec flags such as -i, --json, --fail. */
  args?: readonly string[];
  /** Pass --cacert with the test CA (default true). */
  cacert?: boolean;
  /** Pass --password-file (default true). */
  password?: boolean;
  /** The token to present (default the fixture agent's); null presents none. */
  token?: string | null;
  input?: string;
}

export interface CredentialSpec {
  name: string;
  value: string;
  flags: readonly string[];
  /** Grant it to the fixture agent (default true). */
  grant?: boolean;
  /** Count its value as a canary (default true); false for controls allowed on evil.test. */
  canary?: boolean;
}

export interface CanaryOptions {
  canary?: string;
  /** Placements of credential `k` (default header only). */
  placements?: readonly string[];
  /** Further credentials; their values count as canaries too. */
  credentials?: readonly CredentialSpec[];
  /** The allowed upstream as an HTTP handler (default: echo) ... */
  allowedHandler?: Handler;
  /** ... or as a raw socket (full control of status line and framing). */
  allowedRaw?: (socket: Socket) => void;
  tier?: string;
}

export interface Canary {
  t: TestHome;
  canary: string;
  /** Every credential value in the home, `canary` first. */
  canaries: string[];
  agent: { id: string; token: string };
  allowed: Listener;
  /** TLS listener for every host or TLS port other than api.allowed.test:443. */
  attacker: Listener;
  /** Plain listener for plain-text ports (http://, ws://, ftp://), and a proxy for proxy variables. */
  plainAttacker: Listener;
  caFile: string;
  /** The --connect-to values passed to every exec. */
  routes: string[];
  /** A unique marker to put in a request (header X-Case) to find out who received it. */
  marker(): string;
  /** Runs exec with a template (object, or raw JSON text) or curl-form arguments (string[]). */
  exec(template: unknown, options?: ExecOptions): Promise<RunResult>;
  /** Names of the listeners that received `marker`. */
  receivedBy(marker: string): string[];
  /** No canary in the agent's stdout and stderr, nor in anything the attackers received. */
  expectClean(result: RunResult): void;
  /** Also checks every file in the home (audit trail included) and closes the listeners. */
  close(): Promise<void>;
}

let _counter = 0;

export async function setupCanary(options: CanaryOptions = {}): Promise<Canary> {
  const canary = options.canary ?? newCanary();
  const t = await newHome();
  const placements = options.placements ?? ['header'];
  const specs: CredentialSpec[] = [
    {
      name: 'k',
      value: canary,
      flags: ['--allowed-domains', ALLOWED_HOST, '--placement', placements.join(',')],
    },
    ...(options.credentials ?? []),
  ];
  const [allowed, attacker, plainAttacker] = await Promise.all([
    options.allowedRaw === undefined
      ? startHttpsListener(options.allowedHandler ?? echoHandler)
      : startRawListener(options.allowedRaw),
    startHttpsListener(echoHandler),
    startHttpsListener(echoHandler, { tls: false }),
  ]);
  for (const spec of specs) {
    const r = await addCredential(t, spec.name, spec.value, spec.flags);
    if (r.code !== 0) throw new Error(`credential add ${spec.name} failed: ${r.stderr}`);
  }
  const agent = await newAgent(t, {
    tier: options.tier ?? 'COMPANION',
    grants: specs.filter((s) => s.grant !== false).map((s) => s.name),
  });
  // These suites make dozens of refused attempts with one agent on purpose; by default the
  // monitor would brake it after five (that is tested in test/monitor/live.test.ts).
  const actions = await t.tp([
    'monitor',
    'actions',
    'denial_burst',
    'record',
    '--password-file',
    t.passwordFile,
  ]);
  if (actions.code !== 0) throw new Error(`monitor actions failed: ${actions.stderr}`);
  const caFile = t.file('ca.pem', TEST_CA);
  const routes = [
    `${ALLOWED_HOST}:443:127.0.0.1:${allowed.port}`,
    ...ATTACKER_TLS_ROUTES.map((r) => `${r}:127.0.0.1:${attacker.port}`),
    ...ATTACKER_PLAIN_ROUTES.map((r) => `${r}:127.0.0.1:${plainAttacker.port}`),
  ];
  const listeners = { allowed, attacker, plainAttacker };
  const canaries = specs.filter((s) => s.canary !== false).map((s) => s.value);

  const f: Canary = {
    t,
    canary,
    canaries,
    agent,
    allowed,
    attacker,
    plainAttacker,
    caFile,
    routes,
    marker: () => `case-${++_counter}-${randomBytes(6).toString('hex')}`,
    exec(template, o = {}) {
      const common = [
        ...(o.args ?? []),
        ...(o.cacert === false ? [] : ['--cacert', caFile]),
        ...routes.flatMap((r) => ['--connect-to', r]),
        ...(o.password === false ? [] : ['--password-file', t.passwordFile]),
      ];
      const token = o.token === undefined ? agent.token : o.token;
      const env = { ...(token === null ? {} : { TRUST_PROTOCOL_TOKEN: token }), ...o.env };
      if (Array.isArray(template)) {
        return t.tp(['exec', ...(template as string[]), ...common], { env, input: o.input });
      }
      const text = typeof template === 'string' ? template : JSON.stringify(template);
      const file = t.file(`template-${++_counter}.json`, text);
      return t.tp(['exec', '--template', file, ...common], { env, input: o.input });
    },
    receivedBy(marker) {
      const needle = Buffer.from(marker, 'utf8');
      return Object.entries(listeners)
        .filter(([, l]) => Buffer.from(l.rawBytes()).indexOf(needle) >= 0)
        .map(([name]) => name);
    },
    expectClean(result) {
      for (const value of canaries) {
        expectNoCanary(result.stdoutBytes, value, "the agent's stdout");
        expectNoCanary(result.stderr, value, "the agent's stderr");
        expectNoCanary(attacker.rawBytes(), value, 'what the TLS attacker received');
        expectNoCanary(plainAttacker.rawBytes(), value, 'what the plain attacker received');
      }
    },
    async close() {
      await Promise.all([allowed.close(), attacker.close(), plainAttacker.close()]);
      for (const file of _files(t.home)) {
        const bytes = readFileSync(file);
        for (const value of canaries) expectNoCanary(bytes, value, `state file ${file}`);
      }
    },
  };
  return f;
}

/** A request to `url` with `k` in Authorization and the marker in X-Case. */
export function bearer(url: string, marker: string, extra: Record<string, unknown> = {}) {
  return {
    credential: 'k',
    method: 'GET',
    url,
    headers: { Authorization: 'Bearer {{CREDENTIAL}}', 'X-Case': marker },
    ...extra,
  };
}

/** What the allowed listener received for `marker` (requests recorded by the HTTP layer). */
export function requestsWith(listener: Listener, marker: string) {
  return listener.requests.filter((r) => r.headers['x-case'] === marker);
}
