/**
 * Redaction: every injected secret value, and the encoded forms an upstream may echo it in, is
 * replaced by `[REDACTED:name]` before the agent sees a response (SPEC section 6).
 *
 * Semantics (the same for `redactBytes` and for `Redactor` under any chunking):
 * - Every occurrence of every form of every secret is found, overlapping ones included.
 * - Overlapping occurrences merge into one redacted span (the union), so no fragment of a longer
 *   form survives because a shorter one matched first. Spans that only touch stay separate.
 * - Each span becomes one marker, named after the longest form that starts where the span starts
 *   (ties: the secret listed first).
 *
 * Floor: a value must be at least 8 bytes. Its shortest form is then the 8-byte raw value, and the
 * shortest stable base64 core is 10 characters (60 bits), so unrelated text matches by chance about
 * once in 2^60 positions. Shorter values are refused rather than redacted with short patterns that
 * would hit ordinary base64 or hex text.
 *
 * Known limits: base64 characters that mix secret bits with neighbouring bytes (at most one on each
 * side of an embedded value, carrying at most 4 secret bits each) stay; mixed-case hex, line-wrapped
 * base64 and nested encodings (percent-encoded base64, JSON inside JSON) are not recognised, except
 * for the base64 text a template sends with `|base64`, which the broker redacts as a value itself.
 */
import { Buffer } from 'node:buffer';
import { TpError } from './errors.ts';

export interface Secret {
  name: string;
  value: Uint8Array;
}

const _MIN_VALUE_BYTES = 8;
/** A 64 KiB credential value's base64 rendering (`{{CREDENTIAL|base64}}`), which is redacted too. */
const _MAX_VALUE_BYTES = Math.ceil((64 * 1024) / 3) * 4;

/** Every byte sequence to redact for one value, deduplicated, longest first. */
export function secretForms(value: Uint8Array): Uint8Array[] {
  _checkValue(value, 'value');
  // A copy: callers wipe their value buffers, which must not blank out a redactor's patterns.
  const raw = Buffer.from(value);
  // Keyed by their bytes as latin1: the ASCII forms are their own keys, converted once each.
  const unique = new Map<string, Buffer>([[raw.toString('latin1'), raw]]);
  const ascii = [
    ..._percentForms(raw),
    ..._base64Forms(raw),
    raw.toString('hex'),
    raw.toString('hex').toUpperCase(),
  ];
  for (const text of ascii) if (!unique.has(text)) unique.set(text, Buffer.from(text, 'latin1'));
  for (const text of _jsonForms(raw)) {
    const bytes = Buffer.from(text, 'utf8');
    const key = bytes.toString('latin1');
    if (!unique.has(key)) unique.set(key, bytes);
  }
  return [...unique.values()].sort((a, b) => b.length - a.length).map(_view);
}

interface _Pattern {
  bytes: Buffer;
  marker: Buffer;
}

/** Patterns bucketed by their first two bytes (every form is at least 8 bytes long). */
interface _Index {
  /** Bit `(b0 << 8) | b1` set where some pattern begins with the two bytes (8 KiB, per request). */
  firstTwo: Uint32Array;
  /** Non-zero where some pattern begins with the byte. */
  firstOne: Uint8Array;
  /** Longest first, so the first one that matches at a position is the longest there. */
  buckets: Map<number, _Pattern[]>;
}

/**
 * The compiled patterns of a set of secrets: compile once per request, then redact its headers
 * and stream its body with it (compiling derives every encoded form of every value).
 */
export class Redaction {
  readonly index: _Index;
  /** The patterns' total length: what holding this redaction costs in memory, roughly. */
  readonly bytes: number;

  constructor(secrets: readonly Secret[]) {
    const patterns = _compile(secrets);
    this.index = _index(patterns);
    this.bytes = patterns.reduce((sum, p) => sum + p.bytes.length, 0);
  }

  /** Zeroes every pattern (best effort); the redaction must not be used afterwards. */
  wipe(): void {
    for (const bucket of this.index.buckets.values()) for (const p of bucket) p.bytes.fill(0);
  }
}

/**
 * Compiled redactions kept across requests (serve), keyed by what they were compiled from (the
 * caller's key names the sealed values, never the plaintext). Compiling derives every encoded
 * form of every value, the largest share of a request's allocations; the values are the same
 * from one request to the next until a credential changes. An entry in use is wiped only once
 * its last user releases it, so dropping the cache never blanks a response still streaming.
 *
 * Bounded in entries and in pattern bytes (a 64 KiB value compiles to more than 20 times its
 * size, and an agent chooses which credentials a template combines): past either bound the cache
 * starts over, and a redaction larger than the byte bound on its own is used once and not kept.
 */
export class RedactionCache {
  readonly maxEntries: number;
  readonly maxBytes: number;
  /** `dropped`: no longer in the cache, wiped when its last user releases it. */
  #entries = new Map<string, { redaction: Redaction; users: number; dropped: boolean }>();
  #bytes = 0;

  constructor(options: { maxEntries?: number; maxBytes?: number } = {}) {
    this.maxEntries = options.maxEntries ?? 64;
    this.maxBytes = options.maxBytes ?? 16 * 1024 * 1024;
  }

  /** The redaction for `key`, compiled by `make` when absent; call `release` when done with it. */
  acquire(key: string, make: () => Redaction): { redaction: Redaction; release: () => void } {
    let entry = this.#entries.get(key);
    if (entry === undefined) {
      const redaction = make();
      if (redaction.bytes > this.maxBytes) {
        return { redaction, release: _once(() => redaction.wipe()) };
      }
      if (this.#entries.size >= this.maxEntries || this.#bytes + redaction.bytes > this.maxBytes) {
        this.clear();
      }
      entry = { redaction, users: 0, dropped: false };
      this.#entries.set(key, entry);
      this.#bytes += redaction.bytes;
    }
    entry.users += 1;
    const held = entry;
    return {
      redaction: held.redaction,
      release: _once(() => {
        held.users -= 1;
        if (held.users === 0 && held.dropped) held.redaction.wipe();
      }),
    };
  }

  /** Drops every entry: unused ones are wiped now, the others when their last user releases. */
  clear(): void {
    for (const entry of this.#entries.values()) {
      entry.dropped = true;
      if (entry.users === 0) entry.redaction.wipe();
    }
    this.#entries.clear();
    this.#bytes = 0;
  }
}

function _once(fn: () => void): () => void {
  let done = false;
  return () => {
    if (done) return;
    done = true;
    fn();
  };
}

function _compiled(secrets: readonly Secret[] | Redaction): Redaction {
  return secrets instanceof Redaction ? secrets : new Redaction(secrets);
}

/**
 * Streaming redactor, one per response body. It holds back only the shortest tail that could
 * still begin a match (never more than the longest form minus one byte), so a server-sent event
 * ending in `\n\n` is released at once. Output may share memory with the chunk passed in.
 */
export class Redactor {
  #index: _Index;
  #tail: Buffer = Buffer.alloc(0);
  /** Absolute stream offset of `#tail[0]`. */
  #base = 0;
  /** Absolute offset up to which bytes belong to a span whose marker was already emitted. */
  #redactEnd = 0;
  #ended = false;

  constructor(secrets: readonly Secret[] | Redaction) {
    this.#index = _compiled(secrets).index;
  }

  /** Returns the bytes that are safe to emit now (may be empty). */
  push(chunk: Uint8Array): Uint8Array {
    if (this.#ended) {
      throw new TpError('internal', 'redact_after_end', 'Redactor.push called after end()');
    }
    return this.#process(_buffer(chunk), false);
  }

  /** Flushes the held-back tail; the redactor cannot be used afterwards. */
  end(): Uint8Array {
    if (this.#ended) return new Uint8Array(0);
    const out = this.#process(Buffer.alloc(0), true);
    this.#ended = true;
    this.#tail = Buffer.alloc(0);
    return out;
  }

  /**
   * One pass over the held tail plus the new chunk, position by position. It stops at the first
   * position where a pattern could still complete in a later chunk: every decision before that
   * point is final whatever arrives next, which makes the output independent of the chunking.
   */
  #process(chunk: Buffer, final: boolean): Uint8Array {
    const buf = this.#tail.length === 0 ? chunk : Buffer.concat([this.#tail, chunk]);
    const { firstTwo, firstOne, buckets } = this.#index;
    const out: Buffer[] = [];
    let cursor = 0;
    let limit = buf.length;
    scan: for (let at = 0; at < buf.length; at++) {
      if (at + 1 === buf.length) {
        if (!final && firstOne[buf[at]] !== 0) limit = at;
        break;
      }
      const key = (buf[at] << 8) | buf[at + 1];
      if ((firstTwo[key >>> 5] & (1 << (key & 31))) === 0) continue;
      let found: _Pattern | undefined;
      for (const pattern of buckets.get(key)!) {
        const available = Math.min(pattern.bytes.length, buf.length - at);
        if (!_equalAt(buf, at, pattern.bytes, available)) continue;
        if (available === pattern.bytes.length) {
          found = pattern;
          break;
        }
        if (!final) {
          limit = at;
          break scan;
        }
      }
      if (found === undefined) continue;
      const end = this.#base + at + found.bytes.length;
      if (this.#base + at < this.#redactEnd) {
        if (end > this.#redactEnd) this.#redactEnd = end;
      } else {
        const from = Math.max(cursor, this.#redactEnd - this.#base);
        if (at > from) out.push(buf.subarray(from, at));
        out.push(found.marker);
        this.#redactEnd = end;
        cursor = at;
      }
    }
    const from = Math.max(cursor, this.#redactEnd - this.#base);
    if (limit > from) out.push(buf.subarray(from, limit));
    // Copied: the caller may reuse the chunk's memory once push returns.
    this.#tail = Buffer.from(buf.subarray(limit));
    this.#base += limit;
    return _view(out.length === 1 ? out[0] : Buffer.concat(out));
  }
}

/** Redacts a whole body at once; identical to streaming it through a `Redactor` in any chunks. */
export function redactBytes(
  data: Uint8Array,
  secrets: readonly Secret[] | Redaction,
): Uint8Array {
  const redactor = new Redactor(secrets);
  const head = redactor.push(data);
  const tail = redactor.end();
  return tail.length === 0 ? head : _view(Buffer.concat([head, tail]));
}

/**
 * Redacts a status text or header value. Fetch represents both as byte strings (one character per
 * wire byte, i.e. latin1), so the text is matched as latin1 bytes; when it contains non-ASCII
 * characters it is also matched as UTF-8, which catches a value that was decoded as UTF-8.
 */
export function redactString(text: string, secrets: readonly Secret[] | Redaction): string {
  const compiled = _compiled(secrets);
  if (!_mayMatch(text, compiled.index)) return text;
  let result = text;
  // deno-lint-ignore no-control-regex
  if (/^[\u0000-\u00ff]*$/.test(result)) {
    result = _redactAs(result, compiled, { encoding: 'latin1' });
  }
  // deno-lint-ignore no-control-regex
  if (/[^\u0000-\u007f]/.test(result)) result = _redactAs(result, compiled, { encoding: 'utf8' });
  return result;
}

/**
 * False when an ASCII text has no two adjacent characters that begin a pattern, so no pattern can
 * occur in it (most header names and values: nothing to encode or allocate). Other text always
 * takes the byte path, which also matches it as UTF-8.
 */
function _mayMatch(text: string, { firstTwo }: _Index): boolean {
  for (let i = 0; i + 1 < text.length; i++) {
    const a = text.charCodeAt(i);
    const b = text.charCodeAt(i + 1);
    if (a > 0x7f || b > 0x7f) return true;
    const key = (a << 8) | b;
    if ((firstTwo[key >>> 5] & (1 << (key & 31))) !== 0) return true;
  }
  return false;
}

/** Leaves the text untouched unless something matched (UTF-8 would rewrite lone surrogates). */
function _redactAs(
  text: string,
  secrets: Redaction,
  { encoding }: { encoding: 'latin1' | 'utf8' },
): string {
  const bytes = Buffer.from(text, encoding);
  const redacted = _buffer(redactBytes(bytes, secrets));
  return redacted.equals(bytes) ? text : redacted.toString(encoding);
}

function _compile(secrets: readonly Secret[]): _Pattern[] {
  if (!Array.isArray(secrets)) {
    throw new TpError('internal', 'redact_bad_secrets', 'secrets: expected an array');
  }
  const seen = new Set<string>();
  const patterns: _Pattern[] = [];
  secrets.forEach((secret, index) => {
    if (typeof secret?.name !== 'string' || secret.name === '') {
      throw new TpError(
        'internal',
        'redact_bad_secret',
        `secrets[${index}].name: expected a non-empty string`,
      );
    }
    _checkValue(secret.value, `secret "${secret.name}"`);
    const marker = Buffer.from(`[REDACTED:${secret.name}]`, 'utf8');
    for (const form of secretForms(secret.value)) {
      const bytes = _buffer(form);
      const key = bytes.toString('latin1');
      if (seen.has(key)) continue;
      seen.add(key);
      patterns.push({ bytes, marker });
    }
  });
  // Stable: equal lengths keep the order of the secrets, so the first listed names the span.
  return patterns.sort((a, b) => b.bytes.length - a.bytes.length);
}

function _checkValue(value: Uint8Array, field: string): void {
  if (!(value instanceof Uint8Array)) {
    throw new TpError('internal', 'redact_bad_secret', `${field}: expected a Uint8Array`);
  }
  if (value.length < _MIN_VALUE_BYTES || value.length > _MAX_VALUE_BYTES) {
    throw new TpError(
      'internal',
      'redact_bad_secret',
      `${field}: value has ${value.length} bytes; expected ${_MIN_VALUE_BYTES} to ${_MAX_VALUE_BYTES}`,
      { hint: 'credential values are checked at add; this one bypassed that check' },
    );
  }
}

function _index(patterns: readonly _Pattern[]): _Index {
  const firstTwo = new Uint32Array(65536 / 32);
  const firstOne = new Uint8Array(256);
  const buckets = new Map<number, _Pattern[]>();
  for (const pattern of patterns) {
    const key = (pattern.bytes[0] << 8) | pattern.bytes[1];
    firstTwo[key >>> 5] |= 1 << (key & 31);
    firstOne[pattern.bytes[0]] = 1;
    const bucket = buckets.get(key);
    if (bucket === undefined) buckets.set(key, [pattern]);
    else bucket.push(pattern);
  }
  return { firstTwo, firstOne, buckets };
}

/**
 * Whether `buf` holds the first `length` bytes of `pattern` at `at`. The bucket key already
 * matched the first two bytes, and the caller checked bounds.
 */
function _equalAt(buf: Buffer, at: number, pattern: Buffer, length: number): boolean {
  for (let i = 2; i < length; i++) {
    if (buf[at + i] !== pattern[i]) return false;
  }
  return true;
}

/**
 * For the value at byte offset 0, 1 or 2 (mod 3) of a larger blob, the base64 characters made only
 * of the value's bits (the stable core, the same whatever surrounds it), plus the endings seen when
 * the blob ends with the value (last partial character, with and without padding). At alignment 0
 * the longest ending is the whole-value encoding.
 */
function _base64Forms(value: Buffer): string[] {
  const forms: string[] = [];
  for (const align of [0, 1, 2]) {
    const bits = 8 * (align + value.length);
    const start = Math.ceil((8 * align) / 6);
    const padded = Buffer.concat([Buffer.alloc(align), value]).toString('base64');
    const urlSafe = padded.replaceAll('+', '-').replaceAll('/', '_');
    for (const text of [padded, urlSafe]) {
      forms.push(
        text.slice(start, Math.floor(bits / 6)),
        text.slice(start, Math.ceil(bits / 6)),
        text.slice(start),
      );
    }
  }
  return forms;
}

const _ALPHANUMERIC = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const _URI_COMPONENT_SAFE = "-_.!~*'()";
const _RFC3986_SAFE = '-._~';
const _FORM_SAFE = '*-._';

/**
 * encodeURIComponent, RFC 3986 (Python quote with `safe=''`), query style with `+` for space (Go QueryEscape,
 * Python quote_plus), HTML form encoding (URLSearchParams), and every byte escaped; each with
 * upper- and lower-case hex digits.
 */
/** Printable ASCII (`!` to `~`) except `encoded`: kept raw. */
function _keepPrintableExcept(encoded: string): Uint8Array {
  const keep = new Uint8Array(256);
  for (let b = 0x21; b <= 0x7e; b++) keep[b] = encoded.includes(String.fromCharCode(b)) ? 0 : 1;
  return keep;
}

function _keep(safe: string | null): Uint8Array {
  const keep = new Uint8Array(256);
  if (safe !== null) { for (const ch of _ALPHANUMERIC + safe) keep[ch.charCodeAt(0)] = 1; }
  return keep;
}

const _PERCENT_STYLES = [
  { keep: _keep(_URI_COMPONENT_SAFE), plus: false },
  { keep: _keep(_RFC3986_SAFE), plus: false },
  { keep: _keep(_RFC3986_SAFE), plus: true },
  { keep: _keep(_FORM_SAFE), plus: true },
  { keep: _keep(null), plus: false },
];
/**
 * Encoders that leave some reserved characters raw, always with upper-case hex: Python's `quote`
 * (default `safe='/'`), Go's `url.PathEscape`, JavaScript's `encodeURI`, and the WHATWG URL
 * serializer's path and (special-scheme) query sets, as `new URL()` writes a Location or a link.
 */
const _PARTIAL_STYLES = [
  { keep: _keep(_RFC3986_SAFE + '/'), plus: false },
  { keep: _keep(_RFC3986_SAFE + '$&+,:;=@'), plus: false },
  { keep: _keep(_URI_COMPONENT_SAFE + ';,/?:@&=+$#'), plus: false },
  { keep: _keepPrintableExcept('"#<>?`{}'), plus: false },
  { keep: _keepPrintableExcept('"#<>\''), plus: false },
];
const _HEX_DIGITS = {
  upper: Buffer.from('0123456789ABCDEF'),
  lower: Buffer.from('0123456789abcdef'),
};

/** As latin1 text (every form is ASCII). */
function _percentForms(value: Buffer): string[] {
  const forms: string[] = [];
  for (const upper of [true, false]) {
    for (const style of _PERCENT_STYLES) {
      forms.push(_percentEncode(value, { ...style, upper }).toString('latin1'));
    }
  }
  for (const style of _PARTIAL_STYLES) {
    forms.push(_percentEncode(value, { ...style, upper: true }).toString('latin1'));
  }
  return forms;
}

function _percentEncode(
  value: Buffer,
  options: { keep: Uint8Array; plus: boolean; upper: boolean },
): Buffer {
  const keep = options.keep;
  const digits = options.upper ? _HEX_DIGITS.upper : _HEX_DIGITS.lower;
  const out = Buffer.alloc(3 * value.length);
  let n = 0;
  for (const byte of value) {
    if (keep[byte] !== 0) {
      out[n++] = byte;
    } else if (options.plus && byte === 0x20) {
      out[n++] = 0x2b;
    } else {
      out[n++] = 0x25;
      out[n++] = digits[byte >> 4];
      out[n++] = digits[byte & 15];
    }
  }
  return out.subarray(0, n);
}

/**
 * The inside of a JSON string holding the value decoded as UTF-8: JSON.stringify's minimal
 * escaping, optionally with `\/` (PHP), non-ASCII as \uNNNN (Python, PHP), and HTML-safe escapes of
 * `<>&` U+2028 U+2029 (Go), with lower- or upper-case hex. Values that are not UTF-8 cannot sit in
 * a JSON string as text, so they get no JSON forms.
 */
function _jsonForms(value: Buffer): string[] {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(value);
  } catch {
    return [];
  }
  // Only the variants that can differ, which keeps this cheap for 64 KiB values.
  const either = (matters: boolean) => matters ? [false, true] : [false];
  const forms: string[] = [];
  for (const slash of either(text.includes('/'))) {
    for (const unicode of either(/[\u0080-\uffff]/.test(text))) {
      for (const html of either(/[<>&\u2028\u2029]/.test(text))) {
        // Hex digits appear only where something is written as \uNNNN.
        for (const upper of either(/[^ -\u007f]|[<>&]/.test(text))) {
          forms.push(_jsonEscape(text, { slash, unicode, html, upper }));
        }
      }
    }
  }
  // .NET's default encoder (System.Text.Json, so ASP.NET Core): \u and four upper-case hex
  // digits for non-ASCII, `<>&`, and also `"'+\``, where other encoders write `\"` or nothing.
  if (/[^ -~]|["'+`<>&]/.test(text)) {
    forms.push(
      _jsonEscape(text, { slash: false, unicode: true, html: true, upper: true, dotnet: true }),
    );
  }
  return forms;
}

const _DOTNET_ESCAPED = new Set(['"', "'", '+', '`', '\u007f']);

const _JSON_SHORT: Record<string, string> = {
  '"': '\\"',
  '\\': '\\\\',
  '\b': '\\b',
  '\f': '\\f',
  '\n': '\\n',
  '\r': '\\r',
  '\t': '\\t',
};

function _jsonEscape(
  text: string,
  options: { slash: boolean; unicode: boolean; html: boolean; upper: boolean; dotnet?: boolean },
): string {
  let out = '';
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    const code = text.charCodeAt(i);
    const htmlUnsafe = ch === '<' || ch === '>' || ch === '&' || code === 0x2028 ||
      code === 0x2029;
    const dotnet = options.dotnet === true && _DOTNET_ESCAPED.has(ch);
    if (_JSON_SHORT[ch] !== undefined && !dotnet) {
      out += _JSON_SHORT[ch];
    } else if (
      code < 0x20 || (options.unicode && code >= 0x80) || (options.html && htmlUnsafe) || dotnet
    ) {
      const hex = code.toString(16).padStart(4, '0');
      out += '\\u' + (options.upper ? hex.toUpperCase() : hex);
    } else if (options.slash && ch === '/') {
      out += '\\/';
    } else {
      out += ch;
    }
  }
  return out;
}

function _buffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function _view(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
