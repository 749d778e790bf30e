import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Buffer } from 'node:buffer';
import { TpError } from '../src/errors.ts';
import {
  findPlaceholders,
  parseCurlArgs,
  parseTemplate,
  type PlaceholderUse,
  renderTemplate,
  type Template,
} from '../src/template.ts';

const enc = new TextEncoder();
const dec = new TextDecoder();

function errorOf(f: () => unknown): TpError {
  try {
    f();
  } catch (e) {
    if (e instanceof TpError) return e;
    throw e;
  }
  throw new Error('expected a TpError');
}

function template(overrides: Partial<Template>): Template {
  return {
    credential: 'key',
    method: 'GET',
    url: 'https://api.example.com/',
    headers: [],
    body: { kind: 'none' },
    ...overrides,
  };
}

function values(entries: Record<string, string | Uint8Array>): Map<string, Uint8Array> {
  return new Map(
    Object.entries(entries).map(([k, v]) => [k, typeof v === 'string' ? enc.encode(v) : v]),
  );
}

describe('placeholder grammar', () => {
  const valid: Array<[string, Array<[string, boolean]>]> = [
    ['Bearer {{CREDENTIAL}}', [['key', false]]],
    ['{{CREDENTIAL:other}}', [['other', false]]],
    ['{{CREDENTIAL:a_1.b-2}}', [['a_1.b-2', false]]],
    ['{{CREDENTIAL:9lives}}', [['9lives', false]]],
    [`{{CREDENTIAL:${'n'.repeat(64)}}}`, [['n'.repeat(64), false]]],
    ['Basic {{CREDENTIAL|base64}}', [['key', true]]],
    ['{{CREDENTIAL:pair|base64}}', [['pair', true]]],
    ['{{CREDENTIAL}}{{CREDENTIAL:b}}', [['key', false], ['b', false]]],
    ['{{{CREDENTIAL}}}', [['key', false]]],
    ['{{CREDENTIAL}}}}', [['key', false]]],
    ['{{name}} and {{ other }} and {{}}', []],
    ['{ {CREDENTIAL}}', []],
    ['{{\u0000CREDENTIAL}}', []],
    ['CREDENTIAL}}', []],
    ['', []],
  ];
  it.each(valid)('finds %j', (text, expected) => {
    const uses = findPlaceholders(template({ headers: [['X-Key', text]] }));
    expect(uses).toEqual(expected.map(([name, base64]) => ({ name, base64, placement: 'header' })));
  });

  const invalid: Array<[string, number]> = [
    ['{{ CREDENTIAL }}', 0],
    ['{{CREDENTIAL }}', 0],
    ['{{credential}}', 0],
    ['Bearer {{Credential}}', 7],
    ['{{CREDENTIAL|BASE64}}', 0],
    ['{{CREDENTIAL|hex}}', 0],
    ['{{CREDENTIAL|}}', 0],
    ['{{CREDENTIAL|base64|base64}}', 0],
    ['{{CREDENTIAL:}}', 0],
    ['{{CREDENTIAL::a}}', 0],
    ['{{CREDENTIAL:_a}}', 0],
    ['{{CREDENTIAL:a b}}', 0],
    ['{{CREDENTIAL:a|base64 }}', 0],
    [`{{CREDENTIAL:${'n'.repeat(65)}}}`, 0],
    ['{{CREDENTIAL', 0],
    ['x {{CREDENTIAL}', 2],
    ['x {{CREDENTIAL:{{CREDENTIAL}}}}', 2],
    ['{{CREDENTIALS}}', 0],
    ['{{\nCREDENTIAL}}', 0],
    ['{{\tcredential}}', 0],
    ['{{CREDENTIAL}} {{credential}}', 15],
    ['{{name}} {{CREDENTIAL:x}} {{ Credential', 26],
  ];
  it.each(invalid)('refuses %j at offset %i', (text, offset) => {
    const e = errorOf(() => findPlaceholders(template({ headers: [['X-Key', text]] })));
    expect([e.kind, e.code]).toEqual(['usage', 'bad_placeholder']);
    expect(e.message).toContain('header X-Key');
    expect(e.message).toContain(`offset ${offset}`);
  });

  it('refuses malformed placeholders in every field, naming the field', () => {
    const bad = '{{ CREDENTIAL }}';
    const cases: Array<[Partial<Template>, string]> = [
      [{ url: `https://api.example.com/${bad}` }, 'url'],
      [{ method: 'POST', body: { kind: 'text', text: `a${bad}` } }, 'body'],
      [
        { method: 'POST', body: { kind: 'json', value: { messages: [{ content: bad }] } } },
        'body.messages[0].content',
      ],
      [{ method: 'POST', body: { kind: 'json', value: { 'a b': { [bad]: 1 } } } }, 'body["a b"]'],
    ];
    for (const [overrides, field] of cases) {
      const e = errorOf(() => findPlaceholders(template(overrides)));
      expect(e.code).toBe('bad_placeholder');
      expect(e.message).toContain(field);
    }
  });

  it('refuses a look-alike that JSON serialisation would hide', () => {
    const e = errorOf(() =>
      findPlaceholders(
        template({ method: 'POST', body: { kind: 'json', value: ['{{\nCREDENTIAL}}'] } }),
      )
    );
    expect(e.code).toBe('bad_placeholder');
  });

  it('needs a credential for {{CREDENTIAL}} but not for a named one', () => {
    const e = errorOf(() =>
      findPlaceholders(template({ credential: null, headers: [['A', '{{CREDENTIAL}}']] }))
    );
    expect([e.kind, e.code]).toEqual(['usage', 'missing_credential']);
    expect(findPlaceholders(template({ credential: null, headers: [['A', '{{CREDENTIAL:x}}']] })))
      .toEqual([
        { name: 'x', base64: false, placement: 'header' },
      ]);
  });
});

describe('placement', () => {
  const allowed: Array<[string, Array<PlaceholderUse['placement']>]> = [
    ['https://api.example.com/{{CREDENTIAL}}', ['path']],
    ['https://api.example.com/v1/{{CREDENTIAL}}/x', ['path']],
    ['HTTPS://api.example.com/{{CREDENTIAL}}', ['path']],
    ['http://api.example.com/{{CREDENTIAL}}', ['path']],
    ['https://api.example.com?k={{CREDENTIAL}}', ['query']],
    ['https://api.example.com/a?k={{CREDENTIAL}}&b=/{{CREDENTIAL:o}}', ['query', 'query']],
    ['https://api.example.com/{{CREDENTIAL}}?k={{CREDENTIAL}}#frag', ['path', 'query']],
    ['https://api.example.com/a?b/c#d', []],
  ];
  it.each(allowed)('%s', (url, placements) => {
    expect(findPlaceholders(template({ url })).map((u) => u.placement)).toEqual(placements);
  });

  const refused = [
    'https://{{CREDENTIAL}}.example.com/',
    'https://api.{{CREDENTIAL}}/',
    'https://api.example.com{{CREDENTIAL}}/',
    'https://api.example.com{{CREDENTIAL}}',
    'https://{{CREDENTIAL}}',
    'https://{{CREDENTIAL}}@api.example.com/',
    'https://user:{{CREDENTIAL}}@api.example.com/',
    'https://api.example.com:{{CREDENTIAL}}/',
    'https://api.example.com\\{{CREDENTIAL}}/',
    'https://api.example.com/#{{CREDENTIAL}}',
    'https://api.example.com/a?b=1#x{{CREDENTIAL}}',
    'https://api.example.com#?{{CREDENTIAL}}',
    '{{CREDENTIAL}}://api.example.com/',
    'http{{CREDENTIAL}}://api.example.com/',
    'https:/{{CREDENTIAL}}',
    'https:api.example.com/{{CREDENTIAL}}',
    '//api.example.com/{{CREDENTIAL}}',
    'ftp://api.example.com/{{CREDENTIAL}}',
    ' https://api.example.com/{{CREDENTIAL}}',
    // The parser skips extra slashes and drops tabs and newlines: these land in the host (#14).
    'https:///{{CREDENTIAL}}.example.com/',
    'https:////{{CREDENTIAL}}.example.com/x',
    'https://\t/{{CREDENTIAL}}.example.com/',
    'https://\n/{{CREDENTIAL}}.example.com/',
    'https://\\/{{CREDENTIAL}}.example.com/',
    'https:\\\\{{CREDENTIAL}}.example.com/',
    'https:{{CREDENTIAL}}.example.com/',
    'https://api.example.com/\t#{{CREDENTIAL}}',
  ];
  it.each(refused)('refuses %s', (url) => {
    const e = errorOf(() => findPlaceholders(template({ url })));
    expect([e.kind, e.code]).toEqual(['usage', 'placeholder_placement']);
  });

  it('refuses placeholders in the method and header names', () => {
    for (
      const t of [
        template({ method: '{{CREDENTIAL}}' }),
        template({ headers: [['X-{{CREDENTIAL}}', 'v']] }),
      ]
    ) {
      expect(errorOf(() => findPlaceholders(t)).code).toBe('placeholder_placement');
      expect(errorOf(() => renderTemplate(t, values({ key: 'secret-value' }))).code).toBe(
        'placeholder_placement',
      );
    }
    const e = errorOf(() =>
      parseTemplate({ url: 'https://a.test/', headers: { '{{credential}}': 'v' } })
    );
    expect(e.code).toBe('placeholder_placement');
  });

  it('reports body placements, also for JSON keys', () => {
    const t = template({
      method: 'POST',
      body: {
        kind: 'json',
        value: { '{{CREDENTIAL:k1}}': ['{{CREDENTIAL:k2|base64}}', 1, null, true] },
      },
    });
    expect(findPlaceholders(t)).toEqual([
      { name: 'k1', base64: false, placement: 'body' },
      { name: 'k2', base64: true, placement: 'body' },
    ]);
  });
});

describe('parseTemplate', () => {
  it('parses the SPEC example', () => {
    const t = parseTemplate({
      credential: 'openai_key',
      method: 'POST',
      url: 'https://api.openai.com/v1/chat/completions',
      headers: { Authorization: 'Bearer {{CREDENTIAL}}', 'Content-Type': 'application/json' },
      body: { model: 'gpt-4o-mini', messages: [] },
    });
    expect(t).toEqual({
      credential: 'openai_key',
      method: 'POST',
      url: 'https://api.openai.com/v1/chat/completions',
      headers: [['Authorization', 'Bearer {{CREDENTIAL}}'], ['Content-Type', 'application/json']],
      body: { kind: 'json', value: { model: 'gpt-4o-mini', messages: [] } },
    });
  });

  it('applies defaults', () => {
    expect(parseTemplate({ url: 'https://a.test/' })).toEqual({
      credential: null,
      method: 'GET',
      url: 'https://a.test/',
      headers: [],
      body: { kind: 'none' },
    });
    const post = { method: 'POST', url: 'https://a.test/' };
    expect(parseTemplate({ ...post, body: 'raw' }).body).toEqual({ kind: 'text', text: 'raw' });
    expect(parseTemplate({ ...post, body: null }).body).toEqual({ kind: 'none' });
    expect(parseTemplate({ ...post, body: 0 }).body).toEqual({ kind: 'json', value: 0 });
    expect(parseTemplate({ ...post, body: [1] }).body).toEqual({ kind: 'json', value: [1] });
    expect(parseTemplate({ ...post, body: false }).body).toEqual({ kind: 'json', value: false });
    expect(parseTemplate({ method: 'M-SEARCH', url: 'https://a.test/' }).method).toBe('M-SEARCH');
  });

  const shapes: Array<[unknown, string, string]> = [
    [null, 'bad_template', 'JSON object'],
    [[], 'bad_template', 'JSON object'],
    ['https://a.test/', 'bad_template', 'JSON object'],
    [{}, 'bad_template', '"url"'],
    [{ url: 1 }, 'bad_template', '"url"'],
    [{ url: '' }, 'bad_template', '"url"'],
    [{ url: 'https://a.test/', header: {} }, 'bad_template', '"header"'],
    [{ url: 'https://a.test/', Url: 'x' }, 'bad_template', '"Url"'],
    [{ url: 'https://a.test/', credential: 5 }, 'bad_template', '"credential"'],
    [{ url: 'https://a.test/', credential: '' }, 'bad_template', '"credential"'],
    [{ url: 'https://a.test/', credential: '_x' }, 'bad_template', '"credential"'],
    [{ url: 'https://a.test/', credential: 'a'.repeat(65) }, 'bad_template', '"credential"'],
    [{ url: 'https://a.test/', method: 1 }, 'bad_template', '"method"'],
    [{ url: 'https://a.test/', method: '' }, 'bad_method', 'method'],
    [{ url: 'https://a.test/', method: 'GET ' }, 'bad_method', 'method'],
    [{ url: 'https://a.test/', method: 'G\nET' }, 'bad_method', 'method'],
    [{ url: 'https://a.test/', method: 'CONNECT' }, 'bad_method', 'CONNECT'],
    [{ url: 'https://a.test/', method: 'trace' }, 'bad_method', 'trace'],
    [{ url: 'https://a.test/', method: 'Track' }, 'bad_method', 'Track'],
    [{ url: 'https://a.test/', headers: [['A', 'b']] }, 'bad_template', '"headers"'],
    [{ url: 'https://a.test/', headers: 'A: b' }, 'bad_template', '"headers"'],
    [{ url: 'https://a.test/', headers: { A: 1 } }, 'bad_template', '"A"'],
    [{ url: 'https://a.test/', headers: { A: ['b'] } }, 'bad_template', '"A"'],
    [{ url: 'https://a.test/', body: 'x' }, 'bad_template', 'GET'],
    [{ url: 'https://a.test/', method: 'head', body: {} }, 'bad_template', 'head'],
    [{ url: 'https://a.test/', method: 'POST', body: { a: Number.NaN } }, 'bad_template', 'body.a'],
    [
      { url: 'https://a.test/', method: 'POST', body: { a: [undefined] } },
      'bad_template',
      'body.a[0]',
    ],
    [
      { url: 'https://a.test/', method: 'POST', body: { a: new Date(0) } },
      'bad_template',
      'body.a',
    ],
  ];
  it.each(shapes)('refuses %j with %s', (input, code, mention) => {
    const e = errorOf(() => parseTemplate(input));
    expect([e.kind, e.code]).toEqual(['usage', code]);
    expect(e.message).toContain(mention);
  });

  it('refuses a body that is not JSON data', () => {
    const e = errorOf(() =>
      parseTemplate({ url: 'https://a.test/', method: 'POST', body: { a: 1n } })
    );
    expect([e.code, e.message.includes('body.a')]).toEqual(['bad_template', true]);
  });

  it('refuses absurdly deep JSON bodies with a usage error', () => {
    let deep: unknown = 'leaf';
    for (let i = 0; i < 10_000; i++) deep = [deep];
    expect(
      errorOf(() => parseTemplate({ url: 'https://a.test/', method: 'POST', body: deep })).code,
    ).toBe('bad_template');
  });
});

describe('header rules', () => {
  const forbidden = [
    'Host',
    'host',
    'Content-Length',
    'CONTENT-LENGTH',
    'Transfer-Encoding',
    'Connection',
    'Upgrade',
    'TE',
    'te',
    'Trailer',
    'Expect',
    'Keep-Alive',
    'Proxy-Authorization',
    'Proxy-Connection',
    'proxy-anything',
    'Forwarded',
    'X-Forwarded-For',
    'X-Forwarded-Host',
    'x-forwarded-proto',
  ];
  it.each(forbidden)('refuses %s', (name) => {
    const e = errorOf(() => parseTemplate({ url: 'https://a.test/', headers: { [name]: 'v' } }));
    expect([e.kind, e.code]).toEqual(['usage', 'forbidden_header']);
    expect(errorOf(() => renderTemplate(template({ headers: [[name, 'v']] }), values({}))).code)
      .toBe('forbidden_header');
  });

  it('allows ordinary headers that merely resemble forbidden ones', () => {
    const names = [
      'Hostname',
      'X-Host',
      'Content-Type',
      'Proxy',
      'X-Forwarded',
      'Tea',
      'Authorization',
      'Cookie',
    ];
    for (const name of names) {
      expect(parseTemplate({ url: 'https://a.test/', headers: { [name]: 'v' } }).headers).toEqual([[
        name,
        'v',
      ]]);
    }
  });

  const bad: Array<[string, string]> = [
    ['Bad Name', 'v'],
    ['a:b', 'v'],
    ['', 'v'],
    ['Caf\u00e9', 'v'],
    ['X\n', 'v'],
    ['X', 'a\r\nInjected: 1'],
    ['X', 'a\nb'],
    ['X', 'a\rb'],
    ['X', 'a\u0000b'],
    ['X', ' leading'],
    ['X', 'trailing '],
    ['X', '\tleading'],
    ['X', 'trailing\t'],
    ['X', 'euro \u20ac'],
    ['X', 'emoji \u{1f600}'],
  ];
  it.each(bad)('refuses header %j: %j', (name, value) => {
    const e = errorOf(() => parseTemplate({ url: 'https://a.test/', headers: { [name]: value } }));
    expect([e.kind, e.code]).toEqual(['usage', 'bad_header']);
    expect(errorOf(() => renderTemplate(template({ headers: [[name, value]] }), values({}))).code)
      .toBe('bad_header');
  });

  it('refuses duplicate names, case-insensitively', () => {
    const e = errorOf(() =>
      parseTemplate({ url: 'https://a.test/', headers: { Authorization: 'a', authorization: 'b' } })
    );
    expect(e.code).toBe('bad_header');
    expect(
      errorOf(() => renderTemplate(template({ headers: [['A', '1'], ['A', '2']] }), values({})))
        .code,
    ).toBe('bad_header');
  });

  it('accepts Latin-1 text, inner tabs and empty values', () => {
    const headers: Array<[string, string]> = [['A', 'caf\u00e9'], ['B', 'x\ty'], ['C', '']];
    expect(renderTemplate(template({ headers }), values({})).headers).toEqual(headers);
  });

  it('checks the rendered value and never names the secret', () => {
    const canary = 'CANARY-s3cr3t';
    for (
      const secret of [
        `${canary}\r\nX-Evil: 1`,
        `${canary}\n`,
        `${canary}\u0000`,
        ` ${canary}`,
        `${canary} `,
      ]
    ) {
      const t = template({ headers: [['Authorization', '{{CREDENTIAL}}']] });
      const e = errorOf(() => renderTemplate(t, values({ key: secret })));
      expect([e.kind, e.code]).toEqual(['usage', 'bad_header']);
      expect(`${e.message} ${e.hint ?? ''}`).not.toContain(canary);
    }
  });
});

describe('renderTemplate', () => {
  it('substitutes header values, raw and base64', () => {
    const t = template({
      headers: [['Authorization', 'Basic {{CREDENTIAL:pair|base64}}'], [
        'X-Key',
        'k={{CREDENTIAL}};',
      ]],
    });
    const r = renderTemplate(t, values({ key: 'sk-live-123', pair: 'user:pa55word' }));
    expect(r.headers).toEqual([
      ['Authorization', `Basic ${Buffer.from('user:pa55word').toString('base64')}`],
      ['X-Key', 'k=sk-live-123;'],
    ]);
    expect(r.method).toBe('GET');
    expect(r.url.href).toBe('https://api.example.com/');
    expect(r.body).toBeNull();
  });

  it('puts the exact value bytes in a header value', () => {
    const secret = enc.encode('p\u00e4ss-w\u00f6rd-\u00df');
    const r = renderTemplate(
      template({ headers: [['X-Key', '{{CREDENTIAL}}']] }),
      values({ key: secret }),
    );
    expect(new Uint8Array(Buffer.from(r.headers[0][1], 'latin1'))).toEqual(secret);
  });

  it('base64 uses the standard alphabet with padding', () => {
    const secret = new Uint8Array([0xfb, 0xff, 0xfe, 0x3e, 0x3f]);
    const r = renderTemplate(
      template({ headers: [['X', '{{CREDENTIAL|base64}}']] }),
      values({ key: secret }),
    );
    expect(r.headers[0][1]).toBe('+//+Pj8=');
  });

  it('percent-encodes path and query values', () => {
    const secret = 'a/b?c#d@e%2F f+g"h\\i:j.k_l~m-n\u00e9';
    const t = template({
      url: 'https://api.example.com/v1/{{CREDENTIAL}}/x?k={{CREDENTIAL}}&z=1#frag',
    });
    const r = renderTemplate(t, values({ key: secret }));
    expect(r.url.origin).toBe('https://api.example.com');
    expect(r.url.pathname).toBe(
      `/v1/${
        encodeURIComponent(secret).replace(
          /[!'()*]/g,
          (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
        )
      }/x`,
    );
    expect(decodeURIComponent(r.url.pathname.split('/')[2])).toBe(secret);
    expect(r.url.searchParams.get('k')).toBe(secret);
    expect(r.url.searchParams.get('z')).toBe('1');
    expect(r.url.hash).toBe('#frag');
  });

  it('escapes values in a JSON body and adds a JSON content type', () => {
    const secret = 'q"uo\\te\n{{CREDENTIAL}}</script>\u2028\u00e9"}], "x": 1';
    const t = template({
      method: 'POST',
      body: {
        kind: 'json',
        value: { auth: { token: 'Bearer {{CREDENTIAL}}' }, list: ['{{CREDENTIAL|base64}}'], n: 1 },
      },
    });
    const r = renderTemplate(t, values({ key: secret }));
    expect(JSON.parse(dec.decode(r.body!))).toEqual({
      auth: { token: `Bearer ${secret}` },
      list: [Buffer.from(secret).toString('base64')],
      n: 1,
    });
    expect(r.headers).toEqual([['Content-Type', 'application/json']]);
    const typed = renderTemplate(
      { ...t, headers: [['content-type', 'application/vnd.api+json']] },
      values({ key: secret }),
    );
    expect(typed.headers).toEqual([['content-type', 'application/vnd.api+json']]);
  });

  it('inserts raw bytes in a text body', () => {
    const secret = new Uint8Array([0x73, 0x6b, 0x2d, 0xe2, 0x82, 0xac, 0x7b, 0x7b]);
    const t = template({
      method: 'PUT',
      body: { kind: 'text', text: 'k=\u00e9{{CREDENTIAL}}&j={{CREDENTIAL|base64}}' },
    });
    const r = renderTemplate(t, values({ key: secret }));
    const expected = Buffer.concat([
      Buffer.from('k=\u00e9'),
      secret,
      Buffer.from(`&j=${Buffer.from(secret).toString('base64')}`),
    ]);
    expect(Buffer.from(r.body!).equals(expected)).toBe(true);
    expect(r.headers).toEqual([]);
  });

  it('never re-scans a substituted value', () => {
    const t = template({
      method: 'POST',
      url: 'https://api.example.com/{{CREDENTIAL}}',
      headers: [['X', '{{CREDENTIAL}}']],
      body: { kind: 'text', text: '{{CREDENTIAL}}' },
    });
    const r = renderTemplate(
      t,
      values({ key: '{{CREDENTIAL:other}}', other: 'SHOULD-NOT-APPEAR' }),
    );
    expect(r.headers[0][1]).toBe('{{CREDENTIAL:other}}');
    expect(dec.decode(r.body!)).toBe('{{CREDENTIAL:other}}');
    expect(decodeURIComponent(r.url.pathname)).toBe('/{{CREDENTIAL:other}}');
  });

  it('refuses a missing value without rendering anything', () => {
    const t = template({ headers: [['X', '{{CREDENTIAL:absent}}']] });
    expect(errorOf(() => renderTemplate(t, values({ key: 'v' }))).code).toBe('unknown_credential');
  });

  it('applies the target URL checks to the rendered URL', () => {
    const cases: Array<[string, string]> = [
      ['https://api.example.com\\@evil.test/{{CREDENTIAL}}', 'bad_url'],
      ['https://api.example.com/\n{{CREDENTIAL}}', 'bad_url'],
      ['https://user@api.example.com/{{CREDENTIAL}}', 'userinfo'],
      ['https://api.example.com./{{CREDENTIAL}}', 'trailing_dot'],
      ['file:///etc/passwd', 'scheme_not_allowed'],
    ];
    for (const [url, code] of cases) {
      expect(errorOf(() => renderTemplate(template({ url }), values({ key: 'secret-value' }))).code)
        .toBe(code);
    }
  });
});

describe('parseCurlArgs', () => {
  it('builds a GET template from -H flags', () => {
    const t = parseCurlArgs({
      url: 'https://api.example.com/x',
      headers: ['Authorization: Bearer {{CREDENTIAL}}', 'X-Empty:', 'X-Colon:a:b', 'X-NoSpace:v'],
      credential: 'key',
    });
    expect(t).toEqual({
      credential: 'key',
      method: 'GET',
      url: 'https://api.example.com/x',
      headers: [['Authorization', 'Bearer {{CREDENTIAL}}'], ['X-Empty', ''], ['X-Colon', 'a:b'], [
        'X-NoSpace',
        'v',
      ]],
      body: { kind: 'none' },
    });
  });

  it('defaults to POST with a form content type when data is given, as curl does', () => {
    const t = parseCurlArgs({
      url: 'https://a.test/',
      headers: [],
      data: 'a=1&b={{CREDENTIAL:k}}',
    });
    expect(t.method).toBe('POST');
    expect(t.credential).toBeNull();
    expect(t.headers).toEqual([['Content-Type', 'application/x-www-form-urlencoded']]);
    expect(t.body).toEqual({ kind: 'text', text: 'a=1&b={{CREDENTIAL:k}}' });
    const json = parseCurlArgs({
      method: 'PUT',
      url: 'https://a.test/',
      headers: ['content-type: application/json'],
      data: enc.encode('{"a":"\u00e9"}'),
    });
    expect(json.method).toBe('PUT');
    expect(json.headers).toEqual([['content-type', 'application/json']]);
    expect(json.body).toEqual({ kind: 'text', text: '{"a":"\u00e9"}' });
  });

  it('refuses what a template refuses', () => {
    const cases: Array<[Parameters<typeof parseCurlArgs>[0], string]> = [
      [{ url: 'https://a.test/', headers: ['NoColon'] }, 'bad_header'],
      [{ url: 'https://a.test/', headers: ['X:  two spaces'] }, 'bad_header'],
      [{ url: 'https://a.test/', headers: ['Bad Name: v'] }, 'bad_header'],
      [{ url: 'https://a.test/', headers: ['Host: evil.test'] }, 'forbidden_header'],
      [{ url: 'https://a.test/', headers: ['X-Forwarded-For: 1.2.3.4'] }, 'forbidden_header'],
      [{ url: 'https://a.test/', headers: ['A: 1', 'a: 2'] }, 'bad_header'],
      [{ url: 'https://a.test/', headers: [], method: 'GET', data: 'x' }, 'bad_template'],
      [{ url: 'https://a.test/', headers: [], data: new Uint8Array([0xff, 0xfe]) }, 'bad_value'],
      [
        { url: 'https://{{CREDENTIAL}}.test/', headers: [], credential: 'k' },
        'placeholder_placement',
      ],
      [
        { url: 'https://a.test/', headers: ['A: {{ CREDENTIAL }}'], credential: 'k' },
        'bad_placeholder',
      ],
      [{ url: 'https://a.test/', headers: [], credential: 'bad name' }, 'bad_template'],
    ];
    for (const [args, code] of cases) expect(errorOf(() => parseCurlArgs(args)).code).toBe(code);
  });
});

describe('properties', () => {
  // Text rich in the characters the scanner cares about, but without "{{".
  const tricky = fc.array(
    fc.oneof(
      fc.constantFrom(
        '{',
        '}',
        'C',
        'CREDENTIAL',
        'credential',
        ' ',
        '\n',
        '|base64',
        ':',
        '"',
        '\\',
        '%',
        '/',
        '?',
        '#',
        '\u00e9',
      ),
      fc.string({ unit: 'binary', maxLength: 4 }),
    ),
    { maxLength: 20 },
  ).map((a) => a.join('')).filter((s) => !s.includes('{{') && s.isWellFormed());

  it('text without "{{" has no placeholders and renders unchanged', () => {
    fc.assert(
      fc.property(tricky, (s) => {
        const textBody = template({ method: 'POST', body: { kind: 'text', text: s } });
        expect(findPlaceholders(textBody)).toEqual([]);
        expect(Buffer.from(renderTemplate(textBody, values({})).body!).equals(Buffer.from(s))).toBe(
          true,
        );

        const jsonBody = template({ method: 'POST', body: { kind: 'json', value: { [s]: [s] } } });
        expect(findPlaceholders(jsonBody)).toEqual([]);
        expect(dec.decode(renderTemplate(jsonBody, values({})).body!)).toBe(
          JSON.stringify({ [s]: [s] }),
        );

        const url = `https://api.example.com/${s}`;
        let expected: string | null = null;
        try {
          expected = new URL(url).href;
        } catch {
          // The URL may be invalid on its own; rendering must then fail too.
        }
        try {
          expect(renderTemplate(template({ url }), values({})).url.href).toBe(expected);
        } catch (e) {
          if (!(e instanceof TpError)) throw e;
        }

        if (/^[^\r\n\0 \t]([^\r\n\0]*[^\r\n\0 \t])?$/.test(s) && !/[\u0100-\uffff]/.test(s)) {
          expect(renderTemplate(template({ headers: [['X', s]] }), values({})).headers).toEqual([[
            'X',
            s,
          ]]);
        }
      }),
      { numRuns: 500 },
    );
  });

  const name = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,10}$/);
  const placeholder = fc.tuple(fc.option(name, { nil: null }), fc.boolean()).map(([n, base64]) => ({
    text: `{{CREDENTIAL${n === null ? '' : `:${n}`}${base64 ? '|base64' : ''}}}`,
    name: n ?? 'key',
    base64,
  }));
  const literal = (excluded: RegExp) =>
    tricky.map((s) => s.replace(excluded, '')).filter((s) => !s.includes('{{'));
  const withPlaceholders = (excluded: RegExp) =>
    fc.tuple(
      literal(excluded),
      fc.array(fc.tuple(placeholder, literal(excluded)), { maxLength: 4 }),
    ).map(([head, rest]) => ({
      text: head + rest.map(([p, lit]) => p.text + lit).join(''),
      uses: rest.map(([p]) => ({ name: p.name, base64: p.base64 })),
    }));

  it('finds each inserted placeholder, in order, with its placement', () => {
    fc.assert(
      fc.property(
        withPlaceholders(/x^/),
        withPlaceholders(/[?#]/g),
        withPlaceholders(/#/g),
        withPlaceholders(/x^/),
        (header, path, query, body) => {
          const t = template({
            method: 'POST',
            headers: [['X', header.text]],
            url: `https://api.example.com/${path.text}?${query.text}`,
            body: { kind: 'text', text: body.text },
          });
          expect(findPlaceholders(t)).toEqual([
            ...header.uses.map((u) => ({ ...u, placement: 'header' })),
            ...path.uses.map((u) => ({ ...u, placement: 'path' })),
            ...query.uses.map((u) => ({ ...u, placement: 'query' })),
            ...body.uses.map((u) => ({ ...u, placement: 'body' })),
          ]);
          const json = template({
            method: 'POST',
            body: { kind: 'json', value: { a: [body.text] } },
          });
          expect(findPlaceholders(json)).toEqual(
            body.uses.map((u) => ({ ...u, placement: 'body' })),
          );
        },
      ),
      { numRuns: 500 },
    );
  });

  it('a URL placeholder is accepted only in the path or query the URL parser reads', () => {
    const prefix = fc.constantFrom(
      'https:',
      'https:/',
      'https://',
      'https:///',
      'HTTP://',
      'https:\\',
    );
    const piece = fc.constantFrom(
      '{{CREDENTIAL}}',
      '/',
      '\\',
      '\t',
      '\n',
      ' ',
      '@',
      ':',
      '?',
      '#',
      '.',
      '%2F',
      '%40',
      'api.example.com',
      '443',
    );
    let accepted = 0;
    fc.assert(
      fc.property(prefix, fc.array(piece, { maxLength: 10 }), (head, rest) => {
        const url = head + rest.join('');
        let uses: PlaceholderUse[];
        try {
          uses = findPlaceholders(template({ url }));
        } catch (e) {
          if (e instanceof TpError) return;
          throw e;
        }
        if (uses.length === 0) return;
        accepted++;
        // Each placeholder as a distinct value of letters and digits, as the parser will see it.
        let i = 0;
        const parsed = new URL(url.replaceAll('{{CREDENTIAL}}', () => `probe${i++}q`));
        uses.forEach((u, j) => {
          const probe = `probe${j}q`;
          expect(u.placement === 'path' ? parsed.pathname : parsed.search).toContain(probe);
          expect(parsed.host + parsed.username + parsed.password + parsed.hash).not.toContain(
            probe,
          );
        });
      }),
      { numRuns: 2000 },
    );
    expect(accepted).toBeGreaterThan(0);
  });

  const hostile = fc.array(
    fc.oneof(
      fc.constantFrom(
        '{{CREDENTIAL}}',
        '{{CREDENTIAL:other}}',
        '%2F',
        '%2e',
        '/',
        '?',
        '#',
        '@',
        '"',
        '\\',
        ':',
        '.',
        '&',
        '=',
        '+',
        ' ',
        '\u2028',
        '\u00e9',
        '}}',
        '{{',
      ),
      fc.string({ unit: 'binary', maxLength: 3 }),
    ),
    { minLength: 1, maxLength: 12 },
  ).map((a) => a.join('')).filter((s) => s !== '.' && s !== '..' && s.isWellFormed());

  it('a hostile value never changes the origin, the URL structure or the JSON structure', () => {
    fc.assert(
      fc.property(hostile, (secret) => {
        const t = template({
          method: 'POST',
          url: 'https://api.example.com/v1/{{CREDENTIAL}}/x?k={{CREDENTIAL}}&z=1',
          body: { kind: 'json', value: { a: ['{{CREDENTIAL}}', { b: 'p{{CREDENTIAL}}q' }], c: 2 } },
        });
        const r = renderTemplate(t, values({ key: secret, other: 'SHOULD-NOT-APPEAR' }));
        expect(r.url.origin).toBe('https://api.example.com');
        const segments = r.url.pathname.split('/');
        expect(segments.length).toBe(4);
        expect(decodeURIComponent(segments[2])).toBe(secret);
        expect([...r.url.searchParams]).toEqual([['k', secret], ['z', '1']]);
        expect(r.url.hash).toBe('');
        expect(JSON.parse(dec.decode(r.body!))).toEqual({
          a: [secret, { b: `p${secret}q` }],
          c: 2,
        });
        expect(dec.decode(r.body!)).not.toContain('SHOULD-NOT-APPEAR');
      }),
      { numRuns: 500 },
    );
  });
});
