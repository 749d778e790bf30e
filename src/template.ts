/**
 * Request templates: the JSON an agent writes, its `{{CREDENTIAL}}` placeholders, and rendering with
 * secret values into the request that is sent.
 *
 * Placeholder grammar, exactly: `{{CREDENTIAL}}` or `{{CREDENTIAL:name}}`, each optionally with
 * `|base64` before the `}}`. Text that looks like a placeholder (`{{`, optional whitespace, then
 * `credential` in any case) but is not exactly this is refused, so a typo is never sent literally.
 * Substitution is a single pass over the template: a value is never re-scanned.
 *
 * How a value is inserted depends on where it lands, so it can never change the request's structure:
 * - header values: the value's bytes as Latin-1 characters (fetch sends each as one byte, so the
 *   bytes arrive exactly), after checking for CR, LF, NUL and surrounding whitespace;
 * - URL path and query: every byte outside `A-Za-z0-9-._~` percent-encoded, and the origin of the
 *   result checked against the template's;
 * - JSON body: the value as the inside of a JSON string literal (the body is serialised first, and
 *   placeholders can only occur inside its strings);
 * - text body: the raw bytes.
 *
 * Messages name the field and offset, never a value.
 */
import { isForbiddenRequestHeader, NAME_RE, NAME_SOURCE, TOKEN_RE } from './grammar.ts';
import { Buffer } from 'node:buffer';
import { effectivePort, parseTargetUrl } from './domain.ts';
import { TpError, usage } from './errors.ts';

export interface Template {
  credential: string | null;
  method: string;
  url: string;
  headers: Array<[string, string]>;
  body: { kind: 'none' } | { kind: 'text'; text: string } | { kind: 'json'; value: unknown };
  /**
   * What serve's gateway forwards from its client: the URL and these headers are data, sent as
   * they are and never read for placeholders, so a client cannot ask for another credential by
   * writing one (#14). Only `headers` (the credential's --inject rule) is template text then.
   * A JSON template never has this field.
   */
  literal?: { url: true; headers: Array<[string, string]> };
}

export type Placement = 'header' | 'query' | 'path' | 'body';

export interface PlaceholderUse {
  name: string;
  base64: boolean;
  placement: Placement;
}

export interface RenderedRequest {
  method: string;
  url: URL;
  headers: Array<[string, string]>;
  body: Uint8Array | null;
}

interface _Match {
  start: number;
  end: number;
  name: string | null;
  base64: boolean;
}

const TEMPLATE_KEYS = new Set(['credential', 'method', 'url', 'headers', 'body']);
const TEMPLATE_HINT = 'a template is {"credential"?, "method"?, "url", "headers"?, "body"?}';
const PLACEHOLDER_RE = new RegExp(`\\{\\{CREDENTIAL(?::(${NAME_SOURCE}))?(\\|base64)?\\}\\}`, 'y');
const LOOKS_LIKE_RE = /\{\{\s*credential/iy;
const PLACEHOLDER_HINT =
  'a placeholder is exactly {{CREDENTIAL}} or {{CREDENTIAL:name}}, optionally with |base64 before "}}"';
// fetch refuses these methods outright; refusing them here gives a clear usage error instead.
const FORBIDDEN_METHODS = new Set(['CONNECT', 'TRACE', 'TRACK']);
const MAX_JSON_DEPTH = 256;
const utf8 = new TextEncoder();

export function parseTemplate(input: unknown): Template {
  if (!_isPlainObject(input)) {
    throw usage('bad_template', 'the template must be a JSON object', TEMPLATE_HINT);
  }
  for (const key of Object.keys(input)) {
    if (!TEMPLATE_KEYS.has(key)) {
      throw usage('bad_template', `unknown template field ${JSON.stringify(key)}`, TEMPLATE_HINT);
    }
  }
  const { credential, method, url, headers, body } = input;
  if (credential !== undefined && credential !== null && typeof credential !== 'string') {
    throw usage('bad_template', 'template field "credential" must be a string', TEMPLATE_HINT);
  }
  if (method !== undefined && typeof method !== 'string') {
    throw usage('bad_template', 'template field "method" must be a string', TEMPLATE_HINT);
  }
  if (typeof url !== 'string') {
    throw usage(
      'bad_template',
      'template field "url" is required and must be a string',
      TEMPLATE_HINT,
    );
  }
  const template: Template = {
    credential: credential ?? null,
    method: method ?? 'GET',
    url,
    headers: _parseHeaders(headers),
    body: body === undefined || body === null
      ? { kind: 'none' }
      : typeof body === 'string'
      ? { kind: 'text', text: body }
      : { kind: 'json', value: body },
  };
  _checkTemplate(template);
  findPlaceholders(template);
  return template;
}

/** Every placeholder in the template with where it is; refuses malformed or misplaced ones. */
export function findPlaceholders(t: Template): PlaceholderUse[] {
  const uses: PlaceholderUse[] = [];
  const add = (matches: _Match[], field: string, placement: (m: _Match) => Placement) => {
    for (const m of matches) {
      uses.push({ name: _credentialName(t, m, field), base64: m.base64, placement: placement(m) });
    }
  };
  _refuseMention(t.method, 'method');
  for (const [name, value] of t.headers) {
    _refuseMention(name, 'a header name');
    add(_scan(value, `header ${name}`), `header ${name}`, () => 'header');
  }
  const urlMatches = t.literal === undefined ? _scan(t.url, 'url') : [];
  if (urlMatches.length > 0) {
    const placements = _urlPlacements(t.url, urlMatches);
    add(urlMatches, 'url', (m) => placements[urlMatches.indexOf(m)] as Placement);
  }
  if (t.body.kind === 'text') add(_scan(t.body.text, 'body'), 'body', () => 'body');
  if (t.body.kind === 'json') {
    _walkJsonStrings(
      t.body.value,
      'body',
      (text, field) => add(_scan(text, field), field, () => 'body'),
    );
  }
  return uses;
}

/** The request to send, with `values` (credential name to secret bytes) substituted. */
export function renderTemplate(
  t: Template,
  values: ReadonlyMap<string, Uint8Array>,
): RenderedRequest {
  _checkTemplate(t);
  findPlaceholders(t);
  const valueOf = (m: _Match, field: string): Uint8Array => {
    const name = _credentialName(t, m, field);
    const bytes = values.get(name);
    if (bytes === undefined) {
      throw usage(
        'unknown_credential',
        `${field}: no value was supplied for credential ${JSON.stringify(name)}`,
      );
    }
    return m.base64 ? utf8.encode(Buffer.from(bytes).toString('base64')) : bytes;
  };

  const headers: Array<[string, string]> = [
    ...(t.literal?.headers ?? []),
    ...t.headers.map(([name, template]): [string, string] => {
      const field = `header ${name}`;
      const value = _substitute(
        template,
        field,
        (m) => Buffer.from(valueOf(m, field)).toString('latin1'),
      );
      if (value !== template) _checkHeaderValue(name, value, 'after substitution');
      return [name, value];
    }),
  ];

  const origin = _origin(parseTargetUrl(t.literal ? t.url : _stripPlaceholders(t.url)));
  const url = t.literal ? parseTargetUrl(t.url) : _parseRenderedUrl(
    _substitute(t.url, 'url', (m) => _percentEncode(valueOf(m, 'url'))),
  );
  if (_origin(url) !== origin) {
    throw usage(
      'url_changed',
      'substituting the placeholders would change the URL scheme, host or port',
    );
  }

  let body: Uint8Array | null = null;
  if (t.body.kind === 'text') {
    const text = t.body.text;
    body = _concat(
      _splice(text, _scan(text, 'body'), (s) => utf8.encode(s), (m) => valueOf(m, 'body')),
    );
  } else if (t.body.kind === 'json') {
    const serialised = JSON.stringify(t.body.value);
    const jsonEscaped = (m: _Match) =>
      JSON.stringify(_decodeUtf8(valueOf(m, 'body'), 'body')).slice(1, -1);
    body = utf8.encode(_substitute(serialised, 'body', jsonEscaped));
    if (!headers.some(([name]) => name.toLowerCase() === 'content-type')) {
      headers.push(['Content-Type', 'application/json']);
    }
  }
  return { method: t.method, url, headers, body };
}

/**
 * The template for the curl-like form of `exec`. As in curl, the method is POST when data is given,
 * and data comes with `Content-Type: application/x-www-form-urlencoded` unless a header sets one.
 * Data is sent byte for byte (like `--data-binary`): reading `@FILE` is the caller's job.
 */
export function parseCurlArgs(
  args: {
    method?: string;
    url: string;
    headers: string[];
    data?: string | Uint8Array;
    credential?: string;
  },
): Template {
  const headers: Array<[string, string]> = args.headers.map((line) => {
    const colon = line.indexOf(':');
    if (colon < 0) {
      throw usage('bad_header', `-H ${JSON.stringify(line)} has no ":"`, 'write -H "Name: value"');
    }
    const value = line.slice(colon + 1);
    return [line.slice(0, colon), value.startsWith(' ') ? value.slice(1) : value];
  });
  let body: Template['body'] = { kind: 'none' };
  if (args.data !== undefined) {
    const text = typeof args.data === 'string' ? args.data : _decodeUtf8(args.data, '-d data');
    body = { kind: 'text', text };
    if (!headers.some(([name]) => name.toLowerCase() === 'content-type')) {
      headers.push(['Content-Type', 'application/x-www-form-urlencoded']);
    }
  }
  const template: Template = {
    credential: args.credential ?? null,
    method: args.method ?? (args.data === undefined ? 'GET' : 'POST'),
    url: args.url,
    headers,
    body,
  };
  _checkTemplate(template);
  findPlaceholders(template);
  return template;
}

// Checks that do not depend on placeholders: shape, method, header names and values, body.
function _checkTemplate(t: Template): void {
  if (t.credential !== null && !NAME_RE.test(t.credential)) {
    throw usage(
      'bad_template',
      `template field "credential" is not a credential name: ${JSON.stringify(t.credential)}`,
      'a name is 1-64 of A-Z a-z 0-9 _ . - starting with a letter or digit',
    );
  }
  _refuseMention(t.method, 'method');
  if (!TOKEN_RE.test(t.method)) {
    throw usage(
      'bad_method',
      `method ${JSON.stringify(t.method)} is not an HTTP method name`,
      'e.g. GET or POST',
    );
  }
  if (FORBIDDEN_METHODS.has(t.method.toUpperCase())) {
    throw usage('bad_method', `method ${t.method} is not allowed`);
  }
  if (typeof t.url !== 'string' || t.url === '') {
    throw usage('bad_template', 'template field "url" is empty');
  }
  const seen = new Set<string>();
  for (const [name] of t.headers) _refuseMention(name, 'a header name');
  for (const [name, value] of [...(t.literal?.headers ?? []), ...t.headers]) {
    if (!TOKEN_RE.test(name)) {
      throw usage(
        'bad_header',
        `header name ${JSON.stringify(name)} is not a valid HTTP header name`,
      );
    }
    const lower = name.toLowerCase();
    if (
      isForbiddenRequestHeader(lower)
    ) {
      throw usage(
        'forbidden_header',
        `a template may not set header ${name}`,
        'framing, routing and proxy headers are set by trust-protocol itself',
      );
    }
    if (seen.has(lower)) {
      throw usage('bad_header', `header ${name} is set twice (names are case-insensitive)`);
    }
    seen.add(lower);
    _checkHeaderValue(name, value, 'in the template');
  }
  if (t.body.kind !== 'none' && /^(GET|HEAD)$/i.test(t.method)) {
    throw usage(
      'bad_template',
      `a ${t.method} request cannot have a body`,
      'use POST, PUT or PATCH',
    );
  }
  if (t.body.kind === 'json') _checkJson(t.body.value, 'body', 0);
}

function _checkHeaderValue(name: string, value: string, where: string): void {
  if (typeof value !== 'string') {
    throw usage('bad_header', `header ${name}: the value must be a string`);
  }
  if (/[\r\n\0]/.test(value)) {
    throw usage('bad_header', `header ${name} contains CR, LF or NUL ${where}`);
  }
  if (/^[ \t]|[ \t]$/.test(value)) {
    throw usage('bad_header', `header ${name} has leading or trailing whitespace ${where}`);
  }
  if (/[\u0100-\uffff]/.test(value)) {
    throw usage(
      'bad_header',
      `header ${name} contains a character above U+00FF ${where}`,
      'HTTP header values are bytes: percent-encode or base64 such text',
    );
  }
}

function _parseHeaders(headers: unknown): Array<[string, string]> {
  if (headers === undefined || headers === null) return [];
  if (!_isPlainObject(headers)) {
    throw usage(
      'bad_template',
      'template field "headers" must be an object of name: value',
      TEMPLATE_HINT,
    );
  }
  return Object.entries(headers).map(([name, value]) => {
    if (typeof value !== 'string') {
      throw usage('bad_template', `header ${JSON.stringify(name)}: the value must be a string`);
    }
    return [name, value];
  });
}

function _checkJson(value: unknown, field: string, depth: number): void {
  if (depth > MAX_JSON_DEPTH) {
    throw usage('bad_template', `${field} nests deeper than ${MAX_JSON_DEPTH} levels`);
  }
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return;
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw usage('bad_template', `${field} is not a finite number`);
    return;
  }
  if (Array.isArray(value)) {
    value.forEach((item, i) => _checkJson(item, `${field}[${i}]`, depth + 1));
    return;
  }
  if (!_isPlainObject(value)) throw usage('bad_template', `${field} is not a JSON value`);
  for (const [key, item] of Object.entries(value)) {
    _checkJson(item, _jsonField(field, key), depth + 1);
  }
}

// Calls `visit` on every string in a JSON value, object keys included, with a path naming it.
function _walkJsonStrings(
  value: unknown,
  field: string,
  visit: (text: string, field: string) => void,
): void {
  if (typeof value === 'string') visit(value, field);
  else if (Array.isArray(value)) {
    value.forEach((item, i) => _walkJsonStrings(item, `${field}[${i}]`, visit));
  } else if (_isPlainObject(value)) {
    for (const [key, item] of Object.entries(value)) {
      const itemField = _jsonField(field, key);
      visit(key, `${itemField} (the key)`);
      _walkJsonStrings(item, itemField, visit);
    }
  }
}

function _jsonField(field: string, key: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `${field}.${key}` : `${field}[${JSON.stringify(key)}]`;
}

// Finds the placeholders in `text`; anything that looks like one but is not is an error.
function _scan(text: string, field: string): _Match[] {
  const matches: _Match[] = [];
  let i = text.indexOf('{{');
  while (i >= 0) {
    LOOKS_LIKE_RE.lastIndex = i;
    if (!LOOKS_LIKE_RE.test(text)) {
      i = text.indexOf('{{', i + 1);
      continue;
    }
    PLACEHOLDER_RE.lastIndex = i;
    const m = PLACEHOLDER_RE.exec(text);
    if (m === null) {
      throw usage(
        'bad_placeholder',
        `${field}: malformed placeholder at offset ${i}`,
        PLACEHOLDER_HINT,
      );
    }
    matches.push({
      start: i,
      end: PLACEHOLDER_RE.lastIndex,
      name: m[1] ?? null,
      base64: m[2] !== undefined,
    });
    i = text.indexOf('{{', PLACEHOLDER_RE.lastIndex);
  }
  return matches;
}

function _refuseMention(text: string, field: string): void {
  const m = /\{\{\s*credential/i.exec(text);
  if (m !== null) {
    throw usage(
      'placeholder_placement',
      `a placeholder may not appear in ${field} (offset ${m.index})`,
      'placeholders go in header values, the URL path or query, or the body',
    );
  }
}

function _credentialName(t: Template, m: _Match, field: string): string {
  if (m.name !== null) return m.name;
  if (t.credential === null) {
    throw usage(
      'missing_credential',
      `${field}: {{CREDENTIAL}} at offset ${m.start}, but the template names no "credential"`,
      'add "credential": "NAME" to the template, or write {{CREDENTIAL:NAME}}',
    );
  }
  return t.credential;
}

interface _UrlParts {
  authorityEnd: number;
  queryStart: number;
  fragmentStart: number;
}

// Locates URL components in the raw text. Placeholders contain none of "/?#", so where one starts
// decides its component.
function _urlParts(url: string): _UrlParts {
  const prefix = /^https?:\/\//i.exec(url);
  if (prefix === null) {
    throw usage(
      'placeholder_placement',
      'a placeholder in the URL needs the URL to start with https:// or http://',
    );
  }
  const rest = url.slice(prefix[0].length).search(/[/?#]/);
  const authorityEnd = rest < 0 ? url.length : prefix[0].length + rest;
  // A "?" inside the fragment does not matter: placeholders in the fragment are refused first.
  return {
    authorityEnd,
    queryStart: url.indexOf('?', authorityEnd),
    fragmentStart: url.indexOf('#', authorityEnd),
  };
}

function _urlPlacement(parts: _UrlParts, m: _Match): Placement {
  const where = m.start < parts.authorityEnd
    ? 'the URL scheme, userinfo, host or port'
    : parts.fragmentStart >= 0 && m.start > parts.fragmentStart
    ? 'the URL fragment'
    : null;
  if (where !== null) _refusePlacement(where, m);
  return parts.queryStart >= 0 && m.start > parts.queryStart ? 'query' : 'path';
}

/**
 * Each URL placeholder's component, read twice before any value exists: in the text, and as the
 * WHATWG parser (fetch's) reads it, which skips extra slashes, reads a backslash as a slash and
 * drops tabs and newlines (`https:///{{CREDENTIAL}}.host` has the placeholder in its host).
 * For the parse, each placeholder becomes a marker of lower-case letters and digits, which no
 * URL component rewrites; both readings must agree on path or query (#14).
 */
function _urlPlacements(url: string, matches: _Match[]): Placement[] {
  const parts = _urlParts(url);
  const inText = matches.map((m) => _urlPlacement(parts, m));
  let base = 'tpmark';
  while (url.toLowerCase().includes(base)) base += 'x';
  const marker = (i: number) => `${base}${i}z`;
  let parsed: URL;
  try {
    parsed = new URL(_splice(url, matches, (s) => s, (m) => marker(matches.indexOf(m))).join(''));
  } catch {
    throw usage(
      'placeholder_placement',
      'url: with its placeholders the URL does not parse, so where they land is unknown',
      'placeholders go in header values, the URL path or query, or the body',
    );
  }
  return matches.map((m, i) => {
    const count = (text: string) => text.split(marker(i)).length - 1;
    // Only a decoded host could hold a second copy; once anywhere else, it is not path or query.
    const where = count(parsed.href) !== 1
      ? 'the URL host'
      : count(parsed.pathname) === 1
      ? 'path'
      : count(parsed.search) === 1
      ? 'query'
      : 'the URL scheme, userinfo, host, port or fragment';
    if (where !== 'path' && where !== 'query') _refusePlacement(where, m);
    if (where !== inText[i]) {
      throw usage(
        'placeholder_placement',
        `url: the placeholder at offset ${m.start} is in the ${
          inText[i]
        } as written but in the ${where} as parsed`,
        'write the URL so that it reads the same as text and parsed: no extra or back slashes',
      );
    }
    return where;
  });
}

function _refusePlacement(where: string, m: _Match): never {
  throw usage(
    'placeholder_placement',
    `url: a placeholder may not appear in ${where} (offset ${m.start})`,
    'placeholders go in header values, the URL path or query, or the body',
  );
}

function _substitute(text: string, field: string, value: (m: _Match) => string): string {
  return _splice(text, _scan(text, field), (s) => s, value).join('');
}

// Alternates the literal text between matches with the matches' values, in order.
function _splice<T>(
  text: string,
  matches: _Match[],
  literal: (s: string) => T,
  value: (m: _Match) => T,
): T[] {
  const out: T[] = [];
  let at = 0;
  for (const m of matches) {
    out.push(literal(text.slice(at, m.start)), value(m));
    at = m.end;
  }
  out.push(literal(text.slice(at)));
  return out;
}

function _stripPlaceholders(url: string): string {
  return _substitute(url, 'url', () => '');
}

function _origin(url: URL): string {
  return `${url.protocol}//${url.hostname}:${effectivePort(url)}`;
}

function _percentEncode(bytes: Uint8Array): string {
  let out = '';
  for (const b of bytes) {
    const c = String.fromCharCode(b);
    out += /[A-Za-z0-9\-._~]/.test(c) ? c : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

function _decodeUtf8(bytes: Uint8Array, field: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw usage('bad_value', `${field}: a value is not valid UTF-8 text`);
  }
}

// The rendered URL holds secrets (percent-encoded), so its own parse errors must not be passed on:
// parseTargetUrl may quote the URL it refuses.
function _parseRenderedUrl(rendered: string): URL {
  try {
    return parseTargetUrl(rendered);
  } catch (e) {
    if (!(e instanceof TpError)) throw e;
    throw new TpError(e.kind, e.code, 'the URL is not valid once the placeholders are substituted');
  }
}

function _concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function _isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}
