import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Buffer } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import {
  redactBytes,
  Redaction,
  RedactionCache,
  Redactor,
  redactString,
  type Secret,
  secretForms,
} from '../src/redact.ts';
import { TpError } from '../src/errors.ts';
import { whatwgPath, whatwgQuery } from './helpers/canary.ts';

const CANARY = 'tp-Canary/4f"é<&>+ ~x\\9\'()*';
const canary: Secret = { name: 'canary', value: Buffer.from(CANARY, 'utf8') };
const MARK = '[REDACTED:canary]';

function bytes(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, 'utf8'));
}

function latin1(data: Uint8Array): string {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('latin1');
}

function has(haystack: Uint8Array, needle: Uint8Array): boolean {
  return Buffer.from(haystack).indexOf(Buffer.from(needle)) >= 0;
}

function streamed(secrets: readonly Secret[], chunks: readonly Uint8Array[]): Uint8Array {
  const redactor = new Redactor(secrets);
  const out = chunks.map((chunk) => redactor.push(chunk));
  out.push(redactor.end());
  return new Uint8Array(Buffer.concat(out));
}

function splitAt(data: Uint8Array, cuts: readonly number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((c) => c % (data.length + 1)))].sort((a, b) => a - b);
  const chunks: Uint8Array[] = [];
  let from = 0;
  for (const p of [...points, data.length]) {
    chunks.push(data.subarray(from, p));
    from = p;
  }
  return chunks;
}

/**
 * A deliberately naive redactor over the same forms: at each position the longest form, spans
 * merged while they overlap. The engine's indexOf scanning and hold-back must agree with it. The
 * forms matched character by character (HTML, JSON escapes, hex with separators) are regular
 * expressions here, written from their description rather than from src/redact.ts.
 */
function reference(data: Uint8Array, secrets: readonly Secret[]): Uint8Array {
  const seen = new Set<string>();
  const patterns: { form: Buffer; name: string }[] = [];
  for (const s of secrets) {
    for (const form of secretForms(s.value)) {
      const key = latin1(form);
      if (!seen.has(key)) patterns.push({ form: Buffer.from(form), name: s.name });
      seen.add(key);
    }
  }
  patterns.sort((a, b) => b.form.length - a.form.length);
  const regexes = secrets.map((s) => ({ name: s.name, regexes: unitRegexes(s.value) }));
  const buf = Buffer.from(data);
  const text = latin1(data);
  const out: Buffer[] = [];
  let spanEnd = 0;
  for (let p = 0; p < buf.length; p++) {
    const literal = patterns.find(({ form }) => buf.subarray(p, p + form.length).equals(form));
    let hit = literal === undefined
      ? undefined
      : { length: literal.form.length, name: literal.name };
    for (const { name, regexes: list } of regexes) {
      for (const re of list) {
        re.lastIndex = p;
        const length = re.exec(text)?.[0].length ?? 0;
        const earlier = secrets.findIndex((s) => s.name === name) <
          secrets.findIndex((s) => s.name === hit?.name);
        if (
          length > 0 &&
          (hit === undefined || length > hit.length || (length === hit.length && earlier))
        ) {
          hit = { length, name };
        }
      }
    }
    if (hit !== undefined && p < spanEnd) {
      spanEnd = Math.max(spanEnd, p + hit.length);
    } else if (hit !== undefined) {
      out.push(Buffer.from(`[REDACTED:${hit.name}]`));
      spanEnd = p + hit.length;
    } else if (p >= spanEnd) {
      out.push(buf.subarray(p, p + 1));
    }
  }
  return new Uint8Array(Buffer.concat(out));
}

/** Sticky regular expressions (over latin1 text) for the forms matched character by character. */
function unitRegexes(value: Uint8Array): RegExp[] {
  const raw = Buffer.from(value);
  const esc = (s: string) => s.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&');
  const anyCase = (hex: string) =>
    [...hex].map((d) => /[a-f]/i.test(d) ? `[${d.toLowerCase()}${d.toUpperCase()}]` : d).join('');
  const hex = [...raw].map((b, i) =>
    (i > 0 ? '[:\\- ,]{0,2}' : '') + '(?:\\\\x|0x)?' + anyCase(b.toString(16).padStart(2, '0'))
  ).join('');
  const regexes = [new RegExp(hex, 'y')];
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(raw);
  } catch {
    return regexes;
  }
  const literal = (c: string) => esc(Buffer.from(c, 'utf8').toString('latin1'));
  const named: Record<string, string> = {
    '&': '&amp;|&AMP;',
    '<': '&lt;|&LT;',
    '>': '&gt;|&GT;',
    '"': '&quot;|&QUOT;',
    "'": '&apos;',
  };
  const html = [...text].map((c) => {
    const code = c.codePointAt(0)!;
    const decimal = `&#(?=[0-9]{1,10};)0*${code};`;
    const hexRef = `&#[xX](?=[0-9a-fA-F]{1,10};)0*${anyCase(code.toString(16))};`;
    return `(?:${[decimal, hexRef, named[c], literal(c)].filter(Boolean).join('|')})`;
  }).join('');
  regexes.push(new RegExp(html, 'y'));
  const short: Record<string, string> = {
    '"': '\\\\"',
    '\\': '\\\\\\\\',
    '/': '\\\\/',
    '\b': '\\\\b',
    '\f': '\\\\f',
    '\n': '\\\\n',
    '\r': '\\\\r',
    '\t': '\\\\t',
  };
  const json = (t: string) =>
    [...t].map((c) => {
      const units = [...Array(c.length).keys()].map((i) =>
        '\\\\u' + anyCase(c.charCodeAt(i).toString(16).padStart(4, '0'))
      ).join('');
      return `(?:${[units, short[c], literal(c)].filter(Boolean).join('|')})`;
    }).join('');
  regexes.push(new RegExp(json(text), 'y'));
  // deno-lint-ignore no-control-regex
  if (/[^\x00-\x7f]/.test(text)) regexes.push(new RegExp(json(raw.toString('latin1')), 'y'));
  return regexes;
}

/** Each form built with the platform's own encoders, independently of src/redact.ts. */
function independentForms(text: string): Record<string, string> {
  const raw = Buffer.from(text, 'utf8');
  const every = (upper: boolean) =>
    [...raw].map((b) => {
      const hex = b.toString(16).padStart(2, '0');
      return '%' + (upper ? hex.toUpperCase() : hex);
    }).join('');
  const json = JSON.stringify(text).slice(1, -1);
  const rfc3986 = encodeURIComponent(text).replace(
    /[!'()*]/g,
    (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase(),
  );
  const u = (c: string) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0');
  return {
    raw: text,
    base64: raw.toString('base64'),
    base64Unpadded: raw.toString('base64').replace(/=+$/, ''),
    base64url: raw.toString('base64url'),
    base64urlPadded: raw.toString('base64').replaceAll('+', '-').replaceAll('/', '_'),
    uriComponent: encodeURIComponent(text),
    uriComponentLower: encodeURIComponent(text).replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase()),
    formEncoded: new URLSearchParams({ k: text }).toString().slice(2),
    rfc3986: rfc3986,
    goQueryEscape: rfc3986.replaceAll('%20', '+'),
    everyByteUpper: every(true),
    everyByteLower: every(false),
    hexLower: raw.toString('hex'),
    hexUpper: raw.toString('hex').toUpperCase(),
    json,
    jsonSlash: json.replaceAll('/', '\\/'),
    jsonAscii: json.replace(/[\u0080-\uffff]/g, u),
    jsonAsciiSlash: json.replace(/[\u0080-\uffff]/g, u).replaceAll('/', '\\/'),
    jsonAsciiUpper: json.replace(
      /[\u0080-\uffff]/g,
      (c) => u(c).toUpperCase().replace('\\U', '\\u'),
    ),
    jsonGoHtml: json.replace(/[<>&]/g, u),
    pythonQuote: rfc3986.replaceAll('%2F', '/'),
    goPathEscape: rfc3986.replace(/%(24|26|2B|2C|3A|3B|3D|40)/g, (m) => decodeURIComponent(m)),
    encodeURI: encodeURI(text),
    whatwgPath: whatwgPath(text),
    whatwgQuery: whatwgQuery(text),
    jsonDotnet: json.replaceAll('\\"', '\\u0022').replace(
      /[+'`<>&\u007f-\uffff]/g,
      (c) => '\\u' + c.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0'),
    ),
  };
}

/**
 * The forms of issue #14, each written here by an encoder of its own (never src/redact.ts): UTF-16,
 * HTML character references, JSON with `\u` escapes in any mix, hex with separators, and the
 * latin1-to-UTF-8 mix-up. Mixed forms alternate between literal and escaped characters.
 */
function newForms(text: string): Record<string, Buffer> {
  const raw = Buffer.from(text, 'utf8');
  const chars = [...text];
  const utf16le = Buffer.from(text, 'utf16le');
  const utf16be = Buffer.from(utf16le).swap16();
  const cp = (c: string) => c.codePointAt(0)!;
  const named: Record<string, string> = {
    '&': '&amp;',
    '<': '&lt;',
    '>': '&gt;',
    '"': '&quot;',
    "'": '&#39;',
  };
  const htmlEscape = (c: string) => named[c] ?? c;
  const html = (ref: (c: string, i: number) => string) => chars.map(ref).join('');
  const decimal = (c: string) => `&#${cp(c)};`;
  const hexRef = (c: string) => `&#x${cp(c).toString(16)};`;
  const u = (unit: number, upper = false) => {
    const hex = unit.toString(16).padStart(4, '0');
    return '\\u' + (upper ? hex.toUpperCase() : hex);
  };
  // Every UTF-16 code unit as \uXXXX: astral characters become a surrogate pair.
  const jsonU = (s: string, upper = false) =>
    [...Array(s.length).keys()].map((i) => u(s.charCodeAt(i), upper)).join('');
  const jsonLiteral = (c: string) => JSON.stringify(c).slice(1, -1);
  const hexBytes = [...raw].map((b) => b.toString(16).padStart(2, '0'));
  const mojibake = raw.toString('latin1');
  const ascii = (s: string) => Buffer.from(s, 'utf8');
  return {
    utf16le,
    utf16leBom: Buffer.concat([Buffer.from([0xff, 0xfe]), utf16le]),
    utf16be,
    utf16beBom: Buffer.concat([Buffer.from([0xfe, 0xff]), utf16be]),
    htmlDecimal: ascii(html(decimal)),
    htmlHexLower: ascii(html(hexRef)),
    htmlHexUpper: ascii(html((c) => `&#X${cp(c).toString(16).toUpperCase()};`)),
    htmlDecimalZeros: ascii(html((c) => `&#${String(cp(c)).padStart(7, '0')};`)),
    htmlHexZeros: ascii(html((c) => `&#x${cp(c).toString(16).padStart(6, '0')};`)),
    htmlEscaper: ascii(html(htmlEscape)),
    htmlEscaperApos: ascii(html((c) => c === "'" ? '&apos;' : htmlEscape(c))),
    htmlMixed: ascii(html((c, i) => [c, decimal(c), hexRef(c), htmlEscape(c)][i % 4])),
    jsonAllLower: ascii(jsonU(text)),
    jsonAllUpper: ascii(jsonU(text, true)),
    jsonMixed: ascii(html((c, i) => i % 2 === 0 ? jsonU(c, i % 4 === 0) : jsonLiteral(c))),
    hexColon: ascii(hexBytes.join(':')),
    hexSpaceUpper: ascii(hexBytes.join(' ').toUpperCase()),
    hexDash: ascii(hexBytes.join('-')),
    hexBackslashX: ascii(hexBytes.map((h) => `\\x${h}`).join('')),
    hexMixedCase: ascii(hexBytes.map((h, i) => i % 2 === 0 ? h.toUpperCase() : h).join('')),
    mojibake: Buffer.from(mojibake, 'utf8'),
    mojibakeJson: ascii(JSON.stringify(mojibake).slice(1, -1)),
    mojibakeJsonAscii: ascii(
      JSON.stringify(mojibake).slice(1, -1).replace(/[\u0080-\uffff]/g, (c) => u(cp(c))),
    ),
  };
}

/** The marker a form redacts to: a byte order mark is not part of the value, so it stays. */
function redactedForm(kind: string, form: Buffer, mark: string): string {
  return kind.endsWith('Bom') ? latin1(form.subarray(0, 2)) + mark : mark;
}

describe('redactBytes: the forms of issue #14', () => {
  for (const [kind, form] of Object.entries(newForms(CANARY))) {
    it(`redacts the ${kind} form`, () => {
      const body = Buffer.concat([Buffer.from('before '), form, Buffer.from(' after')]);
      const out = latin1(redactBytes(body, [canary]));
      expect(out).toBe(`before ${redactedForm(kind, form, MARK)} after`);
    });
  }

  it('redacts every new form of random text, whole and split anywhere (property)', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'binary', minLength: 3, maxLength: 24 }).filter((t) =>
          t.isWellFormed() && Buffer.byteLength(t) >= 8
        ),
        fc.array(fc.nat(), { maxLength: 6 }),
        (text, cuts) => {
          const secrets = [{ name: 's', value: bytes(text) }];
          for (const [kind, form] of Object.entries(newForms(text))) {
            const want = redactedForm(kind, form, '[REDACTED:s]');
            expect(latin1(redactBytes(form, secrets)), kind).toBe(want);
            expect(latin1(streamed(secrets, splitAt(form, cuts))), kind).toBe(want);
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it('redacts any mix of literal characters and HTML references or JSON escapes (property)', () => {
    const html = (c: string, how: number) => {
      const code = c.codePointAt(0)!;
      const named: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;' };
      return [
        c,
        `&#${'0'.repeat(how % 3)}${code};`,
        `&#${how % 2 === 0 ? 'x' : 'X'}${code.toString(16)};`,
        `&#x${code.toString(16).toUpperCase()};`,
        named[c] ?? c,
      ][how % 5];
    };
    const json = (c: string, how: number) => {
      const units = [...Array(c.length).keys()].map((i) =>
        '\\u' + c.charCodeAt(i).toString(16).padStart(4, '0')
      ).join('');
      return [JSON.stringify(c).slice(1, -1), units, units.toUpperCase().replaceAll('\\U', '\\u')][
        how % 3
      ];
    };
    fc.assert(
      fc.property(
        fc.string({ unit: 'binary', minLength: 3, maxLength: 24 }).filter((t) =>
          t.isWellFormed() && Buffer.byteLength(t) >= 8
        ),
        fc.array(fc.nat(), { minLength: 24, maxLength: 24 }),
        (text, choices) => {
          const secrets = [{ name: 's', value: bytes(text) }];
          for (const encode of [html, json]) {
            const form = [...text].map((c, i) => encode(c, choices[i])).join('');
            expect(latin1(redactBytes(bytes(`<${form}>`), secrets)), form).toBe(
              '<[REDACTED:s]>',
            );
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it('leaves near misses of the new forms alone', () => {
    const value = 'near-miss-value';
    const secrets = [{ name: 'n', value: bytes(value) }];
    const misses = [
      // One character referenced as another.
      [...value].map((c, i) => `&#${c.codePointAt(0)! + (i === 3 ? 1 : 0)};`).join(''),
      // A reference without its semicolon, or with a digit too many.
      [...value].map((c, i) => `&#${c.codePointAt(0)}${i === 5 ? '' : ';'}`).join(''),
      // One hex digit wrong.
      Buffer.from(value).toString('hex').replace(/^6e/, '6f').match(/../g)!.join(':'),
      // A \u escape of a different character.
      [...value].map((c, i) => i === 7 ? '\\u0041' : c).join(''),
    ];
    for (const miss of misses) {
      const data = bytes(`x ${miss} y`);
      expect(latin1(redactBytes(data, secrets)), miss).toBe(latin1(data));
    }
  });
});

describe('secretForms', () => {
  it('lists the raw value and its encodings, unique, longest first, none shorter than 8', () => {
    const forms = secretForms(canary.value).map(latin1);
    expect(new Set(forms).size).toBe(forms.length);
    for (let i = 1; i < forms.length; i++) {
      expect(forms[i - 1].length).toBeGreaterThanOrEqual(forms[i].length);
    }
    expect(Math.min(...forms.map((f) => f.length))).toBeGreaterThanOrEqual(8);
    for (const [kind, form] of Object.entries(independentForms(CANARY))) {
      expect(forms, kind).toContain(latin1(bytes(form)));
    }
  });

  it("includes what the platform's own encoders produce for random text (property)", () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'binary', minLength: 3, maxLength: 40 }).filter((t) =>
          t.isWellFormed() && Buffer.byteLength(t) >= 8
        ),
        (text) => {
          const forms = new Set(secretForms(bytes(text)).map(latin1));
          const platform = [
            JSON.stringify(text).slice(1, -1),
            encodeURIComponent(text),
            new URLSearchParams({ k: text }).toString().slice(2),
            Buffer.from(text).toString('base64'),
            Buffer.from(text).toString('base64url'),
          ];
          for (const form of platform) expect(forms.has(latin1(bytes(form))), form).toBe(true);
        },
      ),
    );
  });

  it('copies the value, so wiping the caller buffer does not blank the patterns', () => {
    const value = Buffer.from('wipe-me-after-use');
    const forms = secretForms(value);
    const redactor = new Redactor([{ name: 'w', value }]);
    value.fill(0);
    expect(latin1(forms.at(-1)!)).toBe('wipe-me-after-use');
    expect(latin1(redactor.push(bytes('x wipe-me-after-use y')))).toBe('x [REDACTED:w] y');
  });

  it('refuses values outside 8 bytes .. the base64 length of 64 KiB without echoing them', () => {
    for (const value of [bytes('short7!'), new Uint8Array(Math.ceil((64 * 1024) / 3) * 4 + 1)]) {
      let error: unknown;
      try {
        secretForms(value);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(TpError);
      expect((error as TpError).message).not.toContain('short7!');
    }
    expect(() => new Redactor([{ name: 'k', value: bytes('1234567') }])).toThrow(TpError);
    expect(() => new Redactor([{ name: '', value: bytes('12345678') }])).toThrow(TpError);
  });
});

describe('redactBytes', () => {
  for (const [kind, form] of Object.entries(independentForms(CANARY))) {
    it(`redacts the ${kind} form`, () => {
      const out = latin1(redactBytes(bytes(`before ${form} after`), [canary]));
      expect(out).toBe(`before ${MARK} after`);
      expect(out).not.toContain(latin1(bytes(form)));
      expect(out).not.toContain(latin1(bytes(CANARY)));
    });
  }

  it('redacts every character made only of secret bits in a base64 blob, offsets 0..5', () => {
    const secret = bytes('sk-ant-api03-Zx9/+Qq');
    const encoders: Record<string, (b: Buffer) => string> = {
      std: (b) => b.toString('base64'),
      stdUnpadded: (b) => b.toString('base64').replace(/=+$/, ''),
      url: (b) => b.toString('base64url'),
      urlPadded: (b) => b.toString('base64').replaceAll('+', '-').replaceAll('/', '_'),
    };
    for (let offset = 0; offset <= 5; offset++) {
      for (let suffix = 0; suffix <= 3; suffix++) {
        for (const [name, encode] of Object.entries(encoders)) {
          const blob = Buffer.concat([
            Buffer.from('user:pass'.slice(0, offset)),
            secret,
            Buffer.from('\x00\xff\x7f'.slice(0, suffix), 'latin1'),
          ]);
          const label = `${name} offset ${offset} suffix ${suffix}`;
          _expectCoreRedacted(encode(blob), { offset, length: secret.length, label });
          if (suffix === 0) {
            const out = latin1(redactBytes(bytes(encode(blob)), [{ name: 'k', value: secret }]));
            expect(out.endsWith('[REDACTED:k]'), label).toBe(true);
          }
        }
      }
    }
  });

  it('redacts base64 cores of random secrets in random blobs (property)', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 8, maxLength: 64 }),
        fc.uint8Array({ maxLength: 7 }),
        fc.uint8Array({ maxLength: 7 }),
        fc.boolean(),
        (secret, prefix, suffix, url) => {
          const blob = Buffer.concat([prefix, secret, suffix]);
          const text = blob.toString(url ? 'base64url' : 'base64');
          _expectCoreRedacted(text, { offset: prefix.length, length: secret.length, label: text });
        },
      ),
    );
  });

  it('redacts hex in either case', () => {
    const value = bytes('\x01\xfe-hex-canary');
    const hex = Buffer.from(value).toString('hex');
    const secrets = [{ name: 'h', value }];
    for (const form of [hex, hex.toUpperCase()]) {
      expect(latin1(redactBytes(bytes(`id=${form};`), secrets))).toBe('id=[REDACTED:h];');
    }
  });

  it('redacts two secrets, each under its own name', () => {
    const a = { name: 'a', value: bytes('alpha-secret-1') };
    const b = { name: 'b', value: bytes('bravo-secret-2') };
    const body = `{"x":"alpha-secret-1","y":"${Buffer.from('bravo-secret-2').toString('hex')}"}`;
    expect(latin1(redactBytes(bytes(body), [a, b]))).toBe(
      '{"x":"[REDACTED:a]","y":"[REDACTED:b]"}',
    );
  });

  it('prefers the longer secret when one is a prefix of another', () => {
    const short = { name: 'short', value: bytes('prefix-secret') };
    const long = { name: 'long', value: bytes('prefix-secret-longer') };
    for (const secrets of [[short, long], [long, short]]) {
      expect(latin1(redactBytes(bytes('<prefix-secret-longer>'), secrets))).toBe(
        '<[REDACTED:long]>',
      );
      expect(latin1(redactBytes(bytes('<prefix-secret-long>'), secrets))).toBe(
        '<[REDACTED:short]-long>',
      );
    }
  });

  it('redacts the union of overlapping matches, leaving no fragment', () => {
    const a = { name: 'a', value: bytes('abcdefgh12') };
    const b = { name: 'b', value: bytes('12345678xy') };
    expect(latin1(redactBytes(bytes('[abcdefgh12345678xy]'), [a, b]))).toBe('[[REDACTED:a]]');
    expect(latin1(redactBytes(bytes('abcdefgh12abcdefgh12'), [a]))).toBe(
      '[REDACTED:a][REDACTED:a]',
    );
    const ends = { name: 'e', value: bytes('abbbbbba') };
    expect(latin1(redactBytes(bytes('-abbbbbbabbbbbba-'), [ends]))).toBe('-[REDACTED:e]-');
    const repetitive = { name: 'r', value: bytes('aaaaaaaa') };
    expect(latin1(redactBytes(bytes('x' + 'a'.repeat(1000) + 'x'), [repetitive]))).toBe(
      'x[REDACTED:r]x',
    );
  });

  it('leaves a near miss alone: the value with any one byte changed', () => {
    const value = 'near-miss-value';
    for (let i = 0; i < value.length; i++) {
      const changed = value.slice(0, i) + '#' + value.slice(i + 1);
      const data = bytes(`x ${changed} y`);
      expect(latin1(redactBytes(data, [{ name: 'n', value: bytes(value) }])), changed).toBe(
        latin1(data),
      );
    }
  });

  it('passes text and binary without secrets through byte for byte', () => {
    const text = bytes('HTTP/1.1 body with {"json": true} and café ☕ and base64 QUJDRA==');
    expect(redactBytes(text, [canary])).toEqual(text);
    expect(redactBytes(text, [])).toEqual(text);
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 8, maxLength: 64 }),
        fc.uint8Array({ maxLength: 2000 }),
        fc.array(fc.nat(), { maxLength: 10 }),
        (value, data, cuts) => {
          const secrets = [{ name: 's', value }];
          fc.pre(secretForms(value).every((form) => !has(data, form)));
          expect(redactBytes(data, secrets)).toEqual(data);
          expect(streamed(secrets, splitAt(data, cuts))).toEqual(data);
        },
      ),
    );
  });

  it('agrees with a naive reference implementation (property)', () => {
    fc.assert(
      fc.property(_scenario(), ({ secrets, data }) => {
        expect(latin1(redactBytes(data, secrets))).toBe(latin1(reference(data, secrets)));
      }),
      { numRuns: 300 },
    );
  });
});

describe('Redactor', () => {
  const sse = (value: string) => `data: {"k":"${value}"}\n\n`;
  const cases = [
    { name: 'api', value: 'sk-live-0123456789abcdef' },
    { name: 'odd', value: 'tok/"quoted"\\é' },
  ];

  for (const { name, value } of cases) {
    const secrets = [{ name, value: bytes(value) }];
    const extra = newForms(value);
    const later = [extra.htmlMixed, extra.jsonMixed, extra.hexColon, extra.utf16le, extra.mojibake];
    const whole = new Uint8Array(Buffer.concat([
      bytes(
        sse(JSON.stringify(value).slice(1, -1)) + sse('no secret') +
          sse(Buffer.from(value).toString('base64')),
      ),
      ...later.map((form) => Buffer.from(sse(latin1(form)), 'latin1')),
    ]));
    const expected = sse(`[REDACTED:${name}]`) + sse('no secret') + sse(`[REDACTED:${name}]`) +
      later.map(() => sse(`[REDACTED:${name}]`)).join('');

    it(`gives the same SSE output split at every byte (${name})`, () => {
      expect(latin1(redactBytes(whole, secrets))).toBe(expected);
      for (let cut = 0; cut <= whole.length; cut++) {
        const out = streamed(secrets, [whole.subarray(0, cut), whole.subarray(cut)]);
        expect(latin1(out), `cut at ${cut}`).toBe(expected);
      }
      const ones = [...whole].map((b) => Uint8Array.of(b));
      expect(latin1(streamed(secrets, ones))).toBe(expected);
    });

    it(`releases a complete event at once and holds back only a possible match (${name})`, () => {
      const redactor = new Redactor(secrets);
      const event = bytes(sse(value));
      expect(latin1(redactor.push(event))).toBe(sse(`[REDACTED:${name}]`));
      const partial = bytes(`data: ${value.slice(0, 5)}`);
      expect(latin1(redactor.push(partial))).toBe('data: ');
      expect(latin1(redactor.push(bytes('!\n')))).toBe(`${value.slice(0, 5)}!\n`);
      expect(redactor.end()).toEqual(new Uint8Array(0));
    });
  }

  it('holds back at most the longest form minus one byte, and only a possible match', () => {
    const longest = secretForms(canary.value)[0];
    const almost = longest.subarray(0, longest.length - 1);
    const redactor = new Redactor([canary]);
    expect(redactor.push(almost).length).toBe(0);
    expect(latin1(redactor.end())).toBe(latin1(almost));
    // The canary starts with "t", so only a final "%" could begin its every-byte form "%74...".
    const stream = new Redactor([canary]);
    expect(stream.push(new Uint8Array(10_000).fill(0x25)).length).toBe(9_999);
    expect(latin1(stream.push(bytes('qq')))).toBe('%qq');
  });

  it('keeps its own copy of a held-back tail when the caller reuses the chunk memory', () => {
    const redactor = new Redactor([canary]);
    const chunk = Buffer.from(`head ${CANARY.slice(0, 6)}`);
    expect(latin1(redactor.push(chunk))).toBe('head ');
    chunk.fill(0x2e);
    expect(latin1(redactor.push(bytes(`${CANARY.slice(6)} tail`)))).toBe(`${MARK} tail`);
  });

  it('refuses push after end', () => {
    const redactor = new Redactor([canary]);
    redactor.end();
    expect(() => redactor.push(bytes('x'))).toThrow(TpError);
  });

  it('matches redactBytes for any chunking and never emits a raw secret (property)', () => {
    fc.assert(
      fc.property(
        _scenario(),
        fc.array(fc.nat(), { maxLength: 20 }),
        ({ secrets, data }, cuts) => {
          const whole = redactBytes(data, secrets);
          const out = streamed(secrets, splitAt(data, cuts));
          expect(latin1(out)).toBe(latin1(whole));
          for (const { value } of secrets) expect(has(out, value)).toBe(false);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('redactString', () => {
  const key: Secret = { name: 'key', value: bytes('pässwörd-1234') };

  it('redacts a header value, also when its bytes were read as latin1', () => {
    const wire = Buffer.from('pässwörd-1234').toString('latin1');
    expect(redactString(`Bearer ${wire}`, [key])).toBe('Bearer [REDACTED:key]');
    expect(redactString('Bearer pässwörd-1234', [key])).toBe('Bearer [REDACTED:key]');
    const basic = Buffer.from('user:pässwörd-1234').toString('base64');
    // "user:" is 40 bits: the 7th character mixes 4 bits of ":" with 2 bits of the secret.
    expect(redactString(`Basic ${basic}`, [key])).toBe('Basic dXNlcjp[REDACTED:key]');
  });

  it('redacts a status text', () => {
    const status = `Unauthorized: token ${encodeURIComponent('pässwörd-1234')} rejected`;
    expect(redactString(status, [key])).toBe('Unauthorized: token [REDACTED:key] rejected');
  });

  it('leaves strings without a secret untouched', () => {
    for (const text of ['OK', 'café', 'Ünïcödé ☕ \ud800 lone', '\u00ff\u0080 bytes']) {
      expect(redactString(text, [key])).toBe(text);
    }
  });

  it('answers as the byte path does for any text around any form, fast path or not', () => {
    const compiled = new Redaction([canary, key]);
    const forms = [...secretForms(canary.value), ...secretForms(key.value)].map(latin1);
    // Pieces of forms too: a prefix that begins a pattern but does not complete it.
    const piece = fc.constantFrom(...forms).chain((f) =>
      fc.integer({ min: 0, max: f.length }).map((n) => f.slice(0, n))
    );
    const text = fc.array(
      fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom(...forms), piece),
      {
        maxLength: 6,
      },
    ).map((parts) => parts.join(''));
    fc.assert(
      fc.property(text, (t) => {
        // deno-lint-ignore no-control-regex
        const want = /^[\u0000-\u007f]*$/.test(t)
          ? latin1(redactBytes(new Uint8Array(Buffer.from(t, 'latin1')), compiled))
          : redactString(t, [canary, key]);
        expect(redactString(t, compiled)).toBe(want);
        expect(redactString(t, compiled).includes(CANARY)).toBe(false);
      }),
      { numRuns: 500 },
    );
  });
});

/**
 * Asserts that every base64 character of `text` carrying only secret bits (the secret sits at
 * byte `offset`) was redacted, and nothing before the first of them.
 */
function _expectCoreRedacted(
  text: string,
  { offset, length, label }: { offset: number; length: number; label: string },
): void {
  const first = Math.ceil((8 * offset) / 6);
  const last = Math.floor((8 * (offset + length)) / 6);
  // Node's base64 decoder reads both alphabets.
  const decoded = Buffer.from(text, 'base64');
  const value = decoded.subarray(offset, offset + length);
  const out = latin1(redactBytes(bytes(text), [{ name: 'k', value }]));
  const at = out.indexOf('[REDACTED:k]');
  expect(at, label).toBe(first);
  expect(out.slice(0, at), label).toBe(text.slice(0, at));
  const rest = out.slice(at + '[REDACTED:k]'.length);
  expect(text.endsWith(rest), label).toBe(true);
  expect(text.length - rest.length, label).toBeGreaterThanOrEqual(last);
}

/** Secrets from a small alphabet (many overlaps and partial matches) or random bytes. */
function _scenario() {
  const value = fc.oneof(
    fc.uint8Array({ minLength: 8, maxLength: 64 }),
    fc.array(fc.constantFrom(0x61, 0x62), { minLength: 8, maxLength: 16 }).map((a) =>
      Uint8Array.from(a)
    ),
  );
  return fc.array(value, { minLength: 1, maxLength: 3 }).chain((values) => {
    const secrets = values.map((v, i) => ({ name: `s${i}`, value: v }));
    const forms = secrets.flatMap((s) => {
      const text = Buffer.from(s.value).toString('utf8');
      const extra = Buffer.from(text, 'utf8').equals(s.value)
        ? Object.values(newForms(text))
        : [Buffer.from([...s.value].map((b) => b.toString(16).padStart(2, '0')).join(':'))];
      return [...secretForms(s.value), ...extra.map((f) => new Uint8Array(f))];
    });
    const piece = fc.oneof(
      fc.uint8Array({ maxLength: 24 }),
      fc.array(fc.constantFrom(0x61, 0x62), { maxLength: 12 }).map((a) => Uint8Array.from(a)),
      fc.constantFrom(...forms),
      fc.tuple(fc.constantFrom(...forms), fc.nat()).map(([f, n]) => f.subarray(0, n % f.length)),
      fc.tuple(fc.constantFrom(...forms), fc.nat()).map(([f, n]) => f.subarray(n % f.length)),
    );
    return fc.array(piece, { maxLength: 12 }).map((pieces) => ({
      secrets,
      data: new Uint8Array(Buffer.concat(pieces)),
    }));
  });
}

describe('RedactionCache', () => {
  const redacts = (r: Redaction) => latin1(redactBytes(bytes(`x ${CANARY} y`), r)).includes(MARK);
  const counting = () => {
    const made: Redaction[] = [];
    const make = () => {
      const r = new Redaction([canary]);
      made.push(r);
      return r;
    };
    return { made, make };
  };

  it('compiles once per key and hands the same redaction to every user', () => {
    const cache = new RedactionCache();
    const { made, make } = counting();
    const a = cache.acquire('k1', make);
    const b = cache.acquire('k1', make);
    const c = cache.acquire('k2', make);
    expect(made).toHaveLength(2);
    expect(b.redaction).toBe(a.redaction);
    expect(c.redaction).not.toBe(a.redaction);
    expect(redacts(a.redaction)).toBe(true);
  });

  it('clear() wipes an unused entry at once, and one in use only when its last user releases it', () => {
    const cache = new RedactionCache();
    const { make } = counting();
    const idle = cache.acquire('idle', make);
    idle.release();
    const busy = cache.acquire('busy', make);
    const busyAgain = cache.acquire('busy', make);
    cache.clear();
    expect(redacts(idle.redaction)).toBe(false);
    expect(redacts(busy.redaction)).toBe(true);
    busy.release();
    busy.release(); // a second release of the same handle counts once
    expect(redacts(busy.redaction)).toBe(true);
    busyAgain.release();
    expect(redacts(busy.redaction)).toBe(false);
    // Cleared: the next user of the key gets a fresh compilation.
    expect(redacts(cache.acquire('busy', make).redaction)).toBe(true);
  });

  it('holds at most maxEntries entries: the next new key drops the others', () => {
    const cache = new RedactionCache({ maxEntries: 4 });
    const { made, make } = counting();
    for (let i = 0; i < 4; i++) cache.acquire(`k${i}`, make).release();
    cache.acquire('k0', make).release();
    expect(made).toHaveLength(4);
    const newest = cache.acquire('one more', make);
    expect(made).toHaveLength(5);
    expect(made.slice(0, -1).some((r) => redacts(r))).toBe(false);
    expect(redacts(newest.redaction)).toBe(true);
  });

  it('a 64 KiB value compiles to more than 20 times its size: why the cache is bounded in bytes', () => {
    const value = Buffer.from(randomBytes(48 * 1024).toString('base64'));
    expect(value.length).toBe(64 * 1024);
    expect(new Redaction([{ name: 'big', value }]).bytes).toBeGreaterThan(20 * value.length);
  });

  it('holds at most maxBytes of patterns; a redaction larger than that alone is used once', () => {
    const size = new Redaction([canary]).bytes;
    expect(size).toBeGreaterThan(CANARY.length);
    const cache = new RedactionCache({ maxBytes: 2 * size });
    const { made, make } = counting();
    cache.acquire('a', make).release();
    cache.acquire('b', make).release();
    cache.acquire('a', make).release();
    expect(made).toHaveLength(2);
    cache.acquire('c', make).release(); // a third would exceed the bound: a and b are dropped
    expect(made.map(redacts)).toEqual([false, false, true]);
    cache.acquire('c', make).release();
    expect(made).toHaveLength(3);

    const small = new RedactionCache({ maxBytes: size - 1 });
    const once = counting();
    const first = small.acquire('a', once.make);
    expect(redacts(first.redaction)).toBe(true);
    first.release();
    expect(redacts(first.redaction)).toBe(false);
    small.acquire('a', once.make).release();
    expect(once.made).toHaveLength(2);
  });
});
