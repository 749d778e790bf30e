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
 * Two kinds of forms. Literal ones (`secretForms`: raw, base64, percent-encodings, hex, JSON
 * escapes, UTF-16 LE and BE) are byte strings. Families matched unit by unit (`_UnitMatcher`)
 * accept each character or byte of the value in any of its encodings, in any mix: HTML character
 * references, JSON escapes, hex in either case with separators or `\x`, and JSON of a non-ASCII
 * value that went through a latin1/UTF-8 mix-up. Their cost is one matcher per family and secret,
 * not one pattern per mix.
 *
 * Known limits (docs/threat-model.md lists them all): base64 characters that mix secret bits with
 * neighbouring bytes (at most one on each side of an embedded value, carrying at most 4 secret bits
 * each) stay; line-wrapped base64 and nested encodings (percent-encoded base64, JSON inside JSON,
 * HTML references inside JSON) are not recognised, except for the base64 text a template sends
 * with `|base64`, which the broker redacts as a value itself.
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
  const binary = [..._jsonForms(raw).map((text) => Buffer.from(text, 'utf8')), ..._utf16Forms(raw)];
  for (const bytes of binary) {
    const key = bytes.toString('latin1');
    if (!unique.has(key)) unique.set(key, bytes);
  }
  return [...unique.values()].sort((a, b) => b.length - a.length).map(_view);
}

interface _Pattern {
  bytes: Buffer;
  marker: Buffer;
  /** The secret's index: of two matches equally long, the first listed secret names the span. */
  order: number;
}

/** Patterns bucketed by their first two bytes (every form is at least 8 bytes long). */
interface _Index {
  /** Bit `(b0 << 8) | b1` set where some pattern begins with the two bytes (8 KiB, per request). */
  firstTwo: Uint32Array;
  /** Non-zero where some pattern begins with the byte. */
  firstOne: Uint8Array;
  /** Longest first, so the first one that matches at a position is the longest there. */
  buckets: Map<number, _Pattern[]>;
  /** The unit matchers that may begin with the two bytes. */
  matchers: Map<number, _UnitMatcher[]>;
  /**
   * The matchers whose first character can be written `&#...;` (keyed `&#` key * 0x110000 + the
   * code point) or `\uHHHH` (the `\u` key * 0x110000 + the UTF-16 code unit).
   */
  byUnit: Map<number, _UnitMatcher[]>;
}

/**
 * The compiled patterns of a set of secrets: compile once per request, then redact its headers
 * and stream its body with it (compiling derives every encoded form of every value).
 */
export class Redaction {
  readonly index: _Index;
  /** The patterns' total length: what holding this redaction costs in memory, roughly. */
  readonly bytes: number;

  readonly #texts: _Text[];

  constructor(secrets: readonly Secret[]) {
    const { patterns, matchers, texts } = _compile(secrets);
    this.index = _index(patterns, matchers);
    this.#texts = texts;
    this.bytes = patterns.reduce((sum, p) => sum + p.bytes.length, 0) +
      texts.reduce((sum, t) => sum + t.bytes, 0);
  }

  /** Zeroes every pattern (best effort); the redaction must not be used afterwards. */
  wipe(): void {
    for (const bucket of this.index.buckets.values()) for (const p of bucket) p.bytes.fill(0);
    for (const text of this.#texts) text.wipe();
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
 * still begin a match (never more than the longest possible match minus one byte: at most 14
 * bytes per character for HTML references, whose digits are capped for this), so a server-sent
 * event ending in `\n\n` is released at once. Output may share memory with the chunk passed in.
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
    const { firstTwo, firstOne, buckets, matchers, byUnit } = this.#index;
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
      let found: { length: number; marker: Buffer; order: number } | undefined;
      // Plain loops over a list that may be absent: iterating a shared empty array instead
      // (another elements kind) made V8 deoptimise this loop at every bucket without matchers.
      const bucket = buckets.get(key);
      const bucketLength = bucket === undefined ? 0 : bucket.length;
      for (let k = 0; k < bucketLength; k++) {
        const pattern = bucket![k];
        const available = Math.min(pattern.bytes.length, buf.length - at);
        if (!_equalAt(buf, at, pattern.bytes, available)) continue;
        if (available === pattern.bytes.length) {
          found = { length: available, marker: pattern.marker, order: pattern.order };
          break;
        }
        if (!final) {
          limit = at;
          break scan;
        }
      }
      let candidates = matchers.get(key);
      for (let round = 0; round < 2; round++) {
        const candidatesLength = candidates === undefined ? 0 : candidates.length;
        for (let k = 0; k < candidatesLength; k++) {
          const matcher = candidates![k];
          const length = matcher.match(buf, at, final);
          if (length < 0) {
            limit = at;
            break scan;
          }
          if (
            length > 0 && (found === undefined || length > found.length ||
              (length === found.length && matcher.order < found.order))
          ) {
            found = { length, marker: matcher.marker, order: matcher.order };
          }
        }
        if (round === 1 || (key !== _REFERENCE_KEY && key !== _UNICODE_ESCAPE_KEY)) break;
        // `&#` and `\u` are common in HTML and JSON: decode the character once and try only the
        // matchers whose first character it is, not every matcher at every reference.
        const unit = _escapedUnit(buf, at, key === _REFERENCE_KEY);
        if (unit === -1 && !final) {
          limit = at;
          break scan;
        }
        candidates = unit < 0 ? undefined : byUnit.get(key * 0x110000 + unit);
      }
      if (found === undefined) continue;
      const end = this.#base + at + found.length;
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

function _compile(
  secrets: readonly Secret[],
): { patterns: _Pattern[]; matchers: _UnitMatcher[]; texts: _Text[] } {
  if (!Array.isArray(secrets)) {
    throw new TpError('internal', 'redact_bad_secrets', 'secrets: expected an array');
  }
  const seen = new Set<string>();
  const patterns: _Pattern[] = [];
  const matchers: _UnitMatcher[] = [];
  const texts: _Text[] = [];
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
      patterns.push({ bytes, marker, order: index });
    }
    const own = new _Text(Buffer.from(secret.value));
    texts.push(own);
    const of = { marker, order: index };
    matchers.push(new _UnitMatcher(_HEX, own, of));
    if (own.codePoints.length === 0) return; // Not UTF-8: no text to escape.
    matchers.push(new _UnitMatcher(_HTML, own, of), new _UnitMatcher(_JSON, own, of));
    // A non-ASCII value echoed through a latin1/UTF-8 mix-up: each UTF-8 byte of the value became
    // a character (Node's req.headers read as latin1, then written as UTF-8 by JSON.stringify).
    if (own.codePoints.length !== own.utf8.length) {
      const mojibake = new _Text(Buffer.from(own.utf8.toString('latin1'), 'utf8'));
      texts.push(mojibake);
      matchers.push(new _UnitMatcher(_JSON, mojibake, of));
    }
  });
  // Stable: equal lengths keep the order of the secrets, so the first listed names the span.
  patterns.sort((a, b) => b.bytes.length - a.bytes.length);
  return { patterns, matchers, texts };
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

function _index(patterns: readonly _Pattern[], matchers: readonly _UnitMatcher[]): _Index {
  const firstTwo = new Uint32Array(65536 / 32);
  const firstOne = new Uint8Array(256);
  const buckets = new Map<number, _Pattern[]>();
  const byKey = new Map<number, _UnitMatcher[]>();
  const enter = (key: number) => {
    firstTwo[key >>> 5] |= 1 << (key & 31);
    firstOne[key >>> 8] = 1;
  };
  const add = <T>(map: Map<number, T[]>, key: number, item: T) => {
    const list = map.get(key);
    if (list === undefined) map.set(key, [item]);
    else if (!list.includes(item)) list.push(item);
  };
  for (const pattern of patterns) {
    const key = (pattern.bytes[0] << 8) | pattern.bytes[1];
    enter(key);
    add(buckets, key, pattern);
  }
  const byUnit = new Map<number, _UnitMatcher[]>();
  for (const matcher of matchers) {
    for (const key of matcher.keys()) {
      enter(key);
      add(byKey, key, matcher);
    }
    const escape = matcher.escapeKey();
    if (escape === null) continue;
    enter(escape.key);
    add(byUnit, escape.key * 0x110000 + escape.unit, matcher);
  }
  return { firstTwo, firstOne, buckets, matchers: byKey, byUnit };
}

const _REFERENCE_KEY = (0x26 << 8) | 0x23; // &#
const _UNICODE_ESCAPE_KEY = (0x5c << 8) | 0x75; // \u

/**
 * The character a `&#...;` reference (`reference`) or the UTF-16 code unit a `\uHHHH` escape at
 * `at` writes; -1 when the end of `buf` cuts it short, -2 when it is not one.
 */
function _escapedUnit(buf: Buffer, at: number, reference: boolean): number {
  if (!reference) {
    if (at + 6 > buf.length) return -1;
    let unit = 0;
    for (let k = 2; k < 6; k++) {
      const digit = _digit(buf[at + k], 16);
      if (digit < 0) return -2;
      unit = unit * 16 + digit;
    }
    return unit;
  }
  let pos = at + 2;
  if (pos >= buf.length) return -1;
  const hex = buf[pos] === 0x78 || buf[pos] === 0x58; // x X
  const radix = hex ? 16 : 10;
  if (hex) pos++;
  let value = 0;
  for (let digits = 0;; digits++, pos++) {
    if (pos >= buf.length) return -1;
    const digit = _digit(buf[pos], radix);
    if (digit < 0) return digits > 0 && buf[pos] === _SEMICOLON && value < 0x110000 ? value : -2;
    if (digits === _MAX_REFERENCE_DIGITS) return -2;
    value = value * radix + digit;
  }
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
  const text = _utf8Text(value);
  if (text === null) return [];
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

/** The value as text, or null when it is not UTF-8. */
function _utf8Text(value: Buffer): string | null {
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(value);
  } catch {
    return null;
  }
}

/**
 * The value as UTF-16, little- and big-endian (a byte order mark before it is left in place, as
 * it is not part of the value). Only for values that are text.
 */
function _utf16Forms(value: Buffer): Buffer[] {
  const text = _utf8Text(value);
  if (text === null) return [];
  const le = Buffer.from(text, 'utf16le');
  return [le, Buffer.from(le).swap16()];
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

/**
 * Families of forms matched unit by unit, each unit (a character or a byte of the value) in any
 * of its encodings, so an encoder's (or an attacker's) mix of literal and escaped characters is
 * caught without one pattern per mix: HTML character references, JSON escapes, hex with
 * separators. Matching is a small NFA run: the set of input offsets reached after each unit
 * (rarely more than one: two encodings of a unit overlap only where the unit is `&` or `\`).
 */
const _HTML = 0;
const _JSON = 1;
const _HEX = 2;

/** One class for every family (a switch, not subclasses): the scan's call site stays monomorphic. */
class _UnitMatcher {
  readonly family: number;
  /** The value as text (HTML, JSON) or as bytes (hex: `text.utf8` holds the raw value). */
  readonly text: _Text;
  readonly marker: Buffer;
  /** The secret's index: of two matches equally long, the first listed secret names the span. */
  readonly order: number;
  readonly units: number;

  constructor(family: number, text: _Text, { marker, order }: { marker: Buffer; order: number }) {
    this.family = family;
    this.text = text;
    this.marker = marker;
    this.order = order;
    this.units = family === _HEX ? text.utf8.length : text.codePoints.length;
  }

  /** The `&#` or `\u` key, and the first character as that escape writes it (`byUnit`). */
  escapeKey(): { key: number; unit: number } | null {
    const first = this.text.codePoints[0];
    if (this.family === _HTML) return { key: _REFERENCE_KEY, unit: first };
    if (this.family !== _JSON) return null;
    const unit = first < 0x10000 ? first : 0xd800 + ((first - 0x10000) >> 10);
    return { key: _UNICODE_ESCAPE_KEY, unit };
  }

  /** Two-byte keys (`b0 << 8 | b1`) at which a match can begin, other than `escapeKey`. */
  keys(): number[] {
    const first = this.text.codePoints[0];
    if (this.family === _HTML) {
      return [
        ...this.text.literalKeys([_AMP]),
        ...(_HTML_NAMES[first] ?? []).map((name) => (_AMP << 8) | name.charCodeAt(0)),
      ];
    }
    if (this.family === _JSON) {
      const short = _JSON_SHORT_ESCAPES[first];
      return [
        ...this.text.literalKeys([_BACKSLASH]),
        ...(short === undefined ? [] : [(_BACKSLASH << 8) | short]),
      ];
    }
    const hex = this.text.utf8.subarray(0, 1).toString('hex');
    const keys = [(_BACKSLASH << 8) | 0x78, (0x30 << 8) | 0x78];
    for (const hi of new Set([hex[0], hex[0].toUpperCase()])) {
      for (const lo of new Set([hex[1], hex[1].toUpperCase()])) {
        keys.push((hi.charCodeAt(0) << 8) | lo.charCodeAt(0));
      }
    }
    return keys;
  }

  /**
   * The length of the longest match at `at`, 0 for none, or -1 when not `final` and a match could
   * still complete (or grow) with bytes after the end of `buf`.
   */
  match(buf: Buffer, at: number, final: boolean): number {
    // Reused across calls, with explicit counts (no allocation, no `length = 0`): this runs at
    // every candidate position of every response.
    let states = _STATES[0];
    let next = _STATES[1];
    states.offsets[0] = at;
    states.n = 1;
    let pending = false;
    const { family, text, units } = this;
    for (let i = 0; i < units; i++) {
      next.n = 0;
      next.pending = false;
      for (let k = 0; k < states.n; k++) {
        const pos = states.offsets[k];
        // Positional arguments: an options object per step would allocate in the hot loop.
        if (family === _HTML) _htmlStep(text, buf, pos, i, next);
        else if (family === _JSON) _jsonStep(text, buf, pos, i, next);
        else _hexStep(text.utf8, buf, pos, i, next);
      }
      if (next.pending) pending = true;
      if (next.n === 0) return pending && !final ? -1 : 0;
      if (next.n > 1) _unique(next);
      const done = states;
      states = next;
      next = done;
    }
    if (pending && !final) return -1;
    let longest = at;
    for (let k = 0; k < states.n; k++) longest = Math.max(longest, states.offsets[k]);
    return longest - at;
  }
}

/** Where the units matched so far can end; `pending`: one more byte could have made another. */
interface _Ends {
  offsets: number[];
  n: number;
  pending: boolean;
}

const _STATES: [_Ends, _Ends] = [
  { offsets: [], n: 0, pending: false },
  { offsets: [], n: 0, pending: false },
];

function _end(ends: _Ends, offset: number): void {
  ends.offsets[ends.n++] = offset;
}

/** Deduplicates the offsets (a few at most: an insertion sort). */
function _unique(ends: _Ends): void {
  const list = ends.offsets;
  for (let k = 1; k < ends.n; k++) {
    const v = list[k];
    let j = k - 1;
    while (j >= 0 && list[j] > v) {
      list[j + 1] = list[j];
      j--;
    }
    list[j + 1] = v;
  }
  let n = 1;
  for (let k = 1; k < ends.n; k++) if (list[k] !== list[n - 1]) list[n++] = list[k];
  ends.n = n;
}

/**
 * A value's bytes and, when they are UTF-8, its code points with the bytes of each
 * (`utf8[offsets[i]..offsets[i+1]]`). Owns `utf8`, which `wipe` zeroes.
 */
class _Text {
  readonly codePoints: Uint32Array;
  readonly offsets: Uint32Array;
  readonly utf8: Buffer;
  constructor(utf8: Buffer) {
    const points = [..._utf8Text(utf8) ?? ''].map((c) => c.codePointAt(0)!);
    this.codePoints = Uint32Array.from(points);
    this.utf8 = utf8;
    this.offsets = new Uint32Array(points.length + 1);
    let at = 0;
    points.forEach((cp, i) => {
      this.offsets[i] = at;
      at += cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    });
    this.offsets[points.length] = at;
  }
  get bytes(): number {
    return this.codePoints.byteLength + this.offsets.byteLength + this.utf8.length;
  }
  wipe(): void {
    this.codePoints.fill(0);
    this.offsets.fill(0);
    this.utf8.fill(0);
  }
  /** Whether unit `i` is written literally at `pos`: 1 yes, 0 no, -1 cut short by the end. */
  literalAt(buf: Buffer, pos: number, i: number): number {
    const from = this.offsets[i];
    const length = this.offsets[i + 1] - from;
    for (let k = 0; k < length; k++) {
      if (pos + k >= buf.length) return -1;
      if (buf[pos + k] !== this.utf8[from + k]) return 0;
    }
    return 1;
  }
  /** Keys of a match starting with unit 0 written literally, unit 1 starting with `escape`s. */
  literalKeys(escapes: readonly number[]): number[] {
    const first = this.utf8[0];
    if (this.offsets[1] > 1) return [(first << 8) | this.utf8[1]];
    return [this.utf8[1], ...escapes].map((second) => (first << 8) | second);
  }
}

const _AMP = 0x26;
const _HASH = 0x23;
const _SEMICOLON = 0x3b;
const _BACKSLASH = 0x5c;
/** Digits in a numeric reference, leading zeros included: bounds what a stream holds back. */
const _MAX_REFERENCE_DIGITS = 10;
/** Named references for the characters HTML escapers name (HTML also accepts the upper case). */
const _HTML_NAMES: Record<number, string[]> = {
  0x26: ['amp;', 'AMP;'],
  0x3c: ['lt;', 'LT;'],
  0x3e: ['gt;', 'GT;'],
  0x22: ['quot;', 'QUOT;'],
  0x27: ['apos;'],
};

/** Each character literal or as `&#DDD;`, `&#xHH;`, `&#XHH;` (leading zeros too) or by name. */
function _htmlStep(text: _Text, buf: Buffer, pos: number, i: number, ends: _Ends): void {
  const literal = text.literalAt(buf, pos, i);
  if (literal === 1) _end(ends, pos + text.offsets[i + 1] - text.offsets[i]);
  if (literal === -1) ends.pending = true;
  if (pos >= buf.length || buf[pos] !== _AMP) return;
  if (pos + 1 >= buf.length) {
    ends.pending = true;
    return;
  }
  const cp = text.codePoints[i];
  if (buf[pos + 1] === _HASH) {
    const end = _numericReference(buf, pos + 2, cp);
    if (end === -1) ends.pending = true;
    else if (end > 0) _end(ends, end);
    return;
  }
  const names = _HTML_NAMES[cp];
  if (names === undefined) return;
  for (const name of names) {
    const found = _asciiAt(buf, pos + 1, name);
    if (found === -1) ends.pending = true;
    else if (found === 1) _end(ends, pos + 1 + name.length);
  }
}

/**
 * After `&#` at `pos`: the end of a reference to `cp`, 0 when there is none, -1 when the end of
 * `buf` cut it short.
 */
function _numericReference(buf: Buffer, pos: number, cp: number): number {
  if (pos >= buf.length) return -1;
  const hex = buf[pos] === 0x78 || buf[pos] === 0x58; // x X
  const radix = hex ? 16 : 10;
  let at = hex ? pos + 1 : pos;
  let value = 0;
  for (let digits = 0;; digits++) {
    if (at >= buf.length) return -1;
    const digit = _digit(buf[at], radix);
    if (digit < 0) return digits > 0 && buf[at] === _SEMICOLON && value === cp ? at + 1 : 0;
    if (digits === _MAX_REFERENCE_DIGITS) return 0;
    value = value * radix + digit;
    at++;
  }
}

function _digit(byte: number, radix: number): number {
  if (byte >= 0x30 && byte <= 0x39) return byte - 0x30;
  if (radix === 10) return -1;
  const lower = byte | 0x20;
  return lower >= 0x61 && lower <= 0x66 ? lower - 0x61 + 10 : -1;
}

/** Whether `ascii` is at `pos`: 1 yes, 0 no, -1 a prefix of it cut short by the end of `buf`. */
function _asciiAt(buf: Buffer, pos: number, ascii: string): number {
  for (let k = 0; k < ascii.length; k++) {
    if (pos + k >= buf.length) return -1;
    if (buf[pos + k] !== ascii.charCodeAt(k)) return 0;
  }
  return 1;
}

/** JSON's two-character escapes, by code point. */
const _JSON_SHORT_ESCAPES: Record<number, number> = {
  0x22: 0x22,
  0x5c: 0x5c,
  0x2f: 0x2f,
  0x08: 0x62,
  0x0c: 0x66,
  0x0a: 0x6e,
  0x0d: 0x72,
  0x09: 0x74,
};

/**
 * Each character literal, as its short escape (`\"`, `\/`, `\n`...) or as `\uHHHH` in either case
 * (a surrogate pair beyond U+FFFF): any mix of what JSON encoders write.
 */
function _jsonStep(text: _Text, buf: Buffer, pos: number, i: number, ends: _Ends): void {
  const literal = text.literalAt(buf, pos, i);
  if (literal === 1) _end(ends, pos + text.offsets[i + 1] - text.offsets[i]);
  if (literal === -1) ends.pending = true;
  if (pos >= buf.length || buf[pos] !== _BACKSLASH) return;
  if (pos + 1 >= buf.length) {
    ends.pending = true;
    return;
  }
  const cp = text.codePoints[i];
  if (buf[pos + 1] === _JSON_SHORT_ESCAPES[cp]) _end(ends, pos + 2);
  let end: number;
  if (cp < 0x10000) {
    end = _unicodeEscape(buf, pos, cp);
  } else {
    end = _unicodeEscape(buf, pos, 0xd800 + ((cp - 0x10000) >> 10));
    if (end > 0) end = _unicodeEscape(buf, end, 0xdc00 + ((cp - 0x10000) & 0x3ff));
  }
  if (end === -1) ends.pending = true;
  else if (end > 0) _end(ends, end);
}

/** `\uHHHH` of `unit` at `pos` (either case): its end, 0 for none, -1 cut short by the end. */
function _unicodeEscape(buf: Buffer, pos: number, unit: number): number {
  for (let k = 0; k < 6; k++) {
    if (pos + k >= buf.length) return -1;
    const byte = buf[pos + k];
    if (k === 0 && byte !== _BACKSLASH) return 0;
    if (k === 1 && byte !== 0x75) return 0;
    if (k >= 2 && _digit(byte, 16) !== ((unit >> (4 * (5 - k))) & 15)) return 0;
  }
  return pos + 6;
}

/** Bytes that may separate hex pairs (`73:6b`, `73 6b`, `73-6b`, `0x73, 0x6b`): at most two. */
const _HEX_SEPARATORS = new Uint8Array(256);
for (const ch of ': -,') _HEX_SEPARATORS[ch.charCodeAt(0)] = 1;
const _MAX_HEX_SEPARATORS = 2;

/**
 * Each byte as two hex digits of either case, optionally after `\x` or `0x`, pairs optionally
 * separated: mixed case, `73:6b:2d`, `\x73\x6b`. Deterministic: a separator or a prefix is never a
 * digit, so there is one way to read the input.
 */
function _hexStep(value: Buffer, buf: Buffer, pos: number, i: number, ends: _Ends): void {
  let at = pos;
  if (i > 0) {
    for (let k = 0; k < _MAX_HEX_SEPARATORS && at < buf.length && _HEX_SEPARATORS[buf[at]]; k++) {
      at++;
    }
  }
  if (
    at + 1 < buf.length && (buf[at] === _BACKSLASH || buf[at] === 0x30) && buf[at + 1] === 0x78
  ) {
    at += 2;
  }
  if (at + 1 >= buf.length) {
    ends.pending = true;
    return;
  }
  const byte = value[i];
  if (_digit(buf[at], 16) === byte >> 4 && _digit(buf[at + 1], 16) === (byte & 15)) {
    _end(ends, at + 2);
  }
}

function _buffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function _view(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
