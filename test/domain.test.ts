import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  type DomainPattern,
  effectivePort,
  formatDomainPattern,
  matchTarget,
  parseDomainPattern,
  parseTargetUrl,
} from '../src/domain.ts';
import { TpError } from '../src/errors.ts';

function errorOf(f: () => unknown): TpError {
  try {
    f();
  } catch (e) {
    if (e instanceof TpError) return e;
    throw e;
  }
  throw new Error('expected a TpError');
}

// The pattern decision for a raw URL: the matched pattern's text, or why it was refused.
function decide(patterns: readonly string[], raw: string): string {
  let url: URL;
  try {
    url = parseTargetUrl(raw);
  } catch (e) {
    if (e instanceof TpError) return `refused:${e.code}`;
    throw e;
  }
  const p = matchTarget(patterns.map(parseDomainPattern), url);
  return p === null ? 'no-match' : formatDomainPattern(p);
}

describe('parseDomainPattern', () => {
  const valid: Array<[string, DomainPattern]> = [
    ['api.openai.com', { scheme: 'https', host: 'api.openai.com', wildcard: false, port: null }],
    ['API.OpenAI.com', { scheme: 'https', host: 'api.openai.com', wildcard: false, port: null }],
    ['*.github.com', { scheme: 'https', host: 'github.com', wildcard: true, port: null }],
    ['*.co.uk', { scheme: 'https', host: 'co.uk', wildcard: true, port: null }],
    ['localhost', { scheme: 'https', host: 'localhost', wildcard: false, port: null }],
    ['http://localhost:8080', { scheme: 'http', host: 'localhost', wildcard: false, port: 8080 }],
    ['HTTP://localhost', { scheme: 'http', host: 'localhost', wildcard: false, port: null }],
    ['https://api.openai.com', {
      scheme: 'https',
      host: 'api.openai.com',
      wildcard: false,
      port: null,
    }],
    ['api.openai.com:443', { scheme: 'https', host: 'api.openai.com', wildcard: false, port: 443 }],
    ['api.openai.com:65535', {
      scheme: 'https',
      host: 'api.openai.com',
      wildcard: false,
      port: 65535,
    }],
    ['127.0.0.1', { scheme: 'https', host: '127.0.0.1', wildcard: false, port: null }],
    ['http://10.0.0.1:3000', { scheme: 'http', host: '10.0.0.1', wildcard: false, port: 3000 }],
    ['[::1]', { scheme: 'https', host: '[::1]', wildcard: false, port: null }],
    ['[0:0::1]:8443', { scheme: 'https', host: '[::1]', wildcard: false, port: 8443 }],
    ['[2001:DB8::1]', { scheme: 'https', host: '[2001:db8::1]', wildcard: false, port: null }],
    ['bücher.de', { scheme: 'https', host: 'xn--bcher-kva.de', wildcard: false, port: null }],
    ['*.bücher.de', { scheme: 'https', host: 'xn--bcher-kva.de', wildcard: true, port: null }],
    ['my_host.internal', {
      scheme: 'https',
      host: 'my_host.internal',
      wildcard: false,
      port: null,
    }],
  ];
  it.each(valid)('accepts %s', (text, expected) => {
    expect(parseDomainPattern(text)).toEqual(expected);
  });

  const invalid = [
    '',
    '*',
    '*.com',
    '*.',
    '*.*.github.com',
    'api.*.github.com',
    'a*.github.com',
    '*a.github.com',
    '*github.com',
    'api.github.*',
    '*.1.2.3.4',
    '*.[::1]',
    'api.openai.com/v1',
    'api.openai.com?x=1',
    'api.openai.com#x',
    'user@api.openai.com',
    'user:pw@api.openai.com',
    ' api.openai.com',
    'api.openai.com ',
    'api .openai.com',
    'api.openai.com\t',
    'api.openai.com\n',
    'api.openai.com.',
    '.openai.com',
    'api..openai.com',
    'api.openai.com:0',
    'api.openai.com:65536',
    'api.openai.com:99999',
    'api.openai.com:',
    'api.openai.com:443x',
    'api.openai.com:0443',
    'api.openai.com:-1',
    'api.openai.com:1:2',
    'http://',
    'https://',
    'ftp://api.openai.com',
    'ws://api.openai.com',
    '::1',
    '[::1',
    '[::1]x',
    'api%2eopenai.com',
    'api\\openai.com',
    '0x7f.0.0.1',
    '2130706433',
    '0177.0.0.1',
    '1.2.3',
    'a\u3002b.com.',
    `${'a'.repeat(64)}.com`,
    'a!b.com',
  ];
  it.each(invalid)('refuses %j', (text) => {
    const e = errorOf(() => parseDomainPattern(text));
    expect(e.kind).toBe('usage');
    expect(e.code).toBe('bad_domain_pattern');
  });
});

describe('parseTargetUrl', () => {
  const refused: Array<[string, string, string]> = [
    ['https://api.allowed.test/\t', 'usage', 'bad_url'],
    ['https://api.allowed.test\n.evil.test/', 'usage', 'bad_url'],
    ['https://api.allowed.\r\ntest/', 'usage', 'bad_url'],
    ['https://api.allowed.test/\u0000', 'usage', 'bad_url'],
    ['https://api.allowed.test/\u007f', 'usage', 'bad_url'],
    ['https://api.allowed.test/\u0085', 'usage', 'bad_url'],
    [' https://api.allowed.test/', 'usage', 'bad_url'],
    ['https://api.allowed.test/ ', 'usage', 'bad_url'],
    ['https://api.allowed.test/\u3000', 'usage', 'bad_url'],
    ['https://evil.test\\@api.allowed.test', 'usage', 'bad_url'],
    ['https:\\\\api.allowed.test/', 'usage', 'bad_url'],
    ['', 'usage', 'bad_url'],
    ['api.allowed.test', 'usage', 'bad_url'],
    ['https://', 'usage', 'bad_url'],
    ['https://a b.test/', 'usage', 'bad_url'],
    ['javascript:alert(1)', 'denied', 'scheme_not_allowed'],
    ['file:///etc/passwd', 'denied', 'scheme_not_allowed'],
    ['data:text/plain,hi', 'denied', 'scheme_not_allowed'],
    ['ws://api.allowed.test/', 'denied', 'scheme_not_allowed'],
    ['wss://api.allowed.test/', 'denied', 'scheme_not_allowed'],
    ['ftp://api.allowed.test/', 'denied', 'scheme_not_allowed'],
    ['https://api.allowed.test@evil.test/', 'denied', 'userinfo'],
    ['https://user:pw@api.allowed.test/', 'denied', 'userinfo'],
    ['https://:pw@api.allowed.test/', 'denied', 'userinfo'],
    ['https://@api.allowed.test/', 'denied', 'userinfo'],
    ['https://:@api.allowed.test/', 'denied', 'userinfo'],
    ['https:@api.allowed.test/', 'denied', 'userinfo'],
    ['https:///@api.allowed.test/', 'denied', 'userinfo'],
    ['https://api.allowed.test./', 'denied', 'trailing_dot'],
    ['https://api.allowed.test.:443/', 'denied', 'trailing_dot'],
    ['https://api.allowed.test%2E/', 'denied', 'trailing_dot'],
  ];
  it.each(refused)('refuses %j (%s %s)', (raw, kind, code) => {
    const e = errorOf(() => parseTargetUrl(raw));
    expect([e.kind, e.code]).toEqual([kind, code]);
    expect(e.message).not.toContain('\n');
  });

  it('returns the parsed URL that will be sent', () => {
    const url = parseTargetUrl('HTTPS://API.Allowed.Test:443/a/../b?q=1#f');
    expect(url.href).toBe('https://api.allowed.test/b?q=1#f');
    expect(parseTargetUrl('https://api.allowed.test/a@b').pathname).toBe('/a@b');
    expect(parseTargetUrl('https://api.allowed.test/?x=a@b').search).toBe('?x=a@b');
  });
});

describe('effectivePort', () => {
  it('uses the scheme default unless a port is given', () => {
    expect(effectivePort(new URL('https://a.test/'))).toBe(443);
    expect(effectivePort(new URL('http://a.test/'))).toBe(80);
    expect(effectivePort(new URL('https://a.test:443/'))).toBe(443);
    expect(effectivePort(new URL('https://a.test:80/'))).toBe(80);
    expect(effectivePort(new URL('http://a.test:8443/'))).toBe(8443);
    expect(errorOf(() => effectivePort(new URL('ws://a.test/'))).code).toBe('scheme_not_allowed');
  });
});

describe('matchTarget: URL tricks', () => {
  const exact = ['api.allowed.test'];
  const wild = ['*.allowed.test'];
  const table: Array<[string[], string, string]> = [
    [exact, 'https://api.allowed.test/', 'api.allowed.test'],
    [exact, 'https://api.allowed.test', 'api.allowed.test'],
    [exact, 'https://api.allowed.test/v1/x?y=1#z', 'api.allowed.test'],
    [exact, 'HTTPS://API.ALLOWED.TEST/', 'api.allowed.test'],
    [exact, 'https://api.allowed.test:443/', 'api.allowed.test'],
    [exact, 'https://api.allowed.test:8443/', 'no-match'],
    [exact, 'https://api.allowed.test:80/', 'no-match'],
    [exact, 'http://api.allowed.test/', 'no-match'],
    [exact, 'http://api.allowed.test:443/', 'no-match'],
    [exact, 'https://api.allowed.test@evil.test/', 'refused:userinfo'],
    [exact, 'https://evil.test@api.allowed.test/', 'refused:userinfo'],
    [exact, 'https://evil.test\\@api.allowed.test', 'refused:bad_url'],
    [exact, 'https://api.allowed.test\\.evil.test/', 'refused:bad_url'],
    [exact, 'https://evil.test\\api.allowed.test/', 'refused:bad_url'],
    // WHATWG decodes and IDNA-maps these to the plain host, which is then where the request goes.
    [exact, 'https://api%2Eallowed.test/', 'api.allowed.test'],
    [exact, 'https://api%2eallowed%2etest/', 'api.allowed.test'],
    [exact, 'https://api\u3002allowed\u3002test/', 'api.allowed.test'],
    [exact, 'https://\uff41\uff50\uff49.allowed.test/', 'api.allowed.test'],
    [exact, 'https://api.allowed.test%2Eevil.test/', 'no-match'],
    [exact, 'https://\u0430pi.allowed.test/', 'no-match'],
    [exact, 'https://api.a\u13deowed.test/', 'no-match'],
    [exact, 'https://api.allowed.test./', 'refused:trailing_dot'],
    [exact, 'https://api.allowed.test\n.evil.test/', 'refused:bad_url'],
    [exact, 'https://api.allowed.test\t.evil.test/', 'refused:bad_url'],
    [exact, 'https://api.allowed.\ttest/', 'refused:bad_url'],
    [exact, 'https://api.allowed.test.evil.test/', 'no-match'],
    [exact, 'https://evilapi.allowed.test/', 'no-match'],
    [exact, 'https://x.api.allowed.test/', 'no-match'],
    [exact, 'https://allowed.test/', 'no-match'],
    [exact, 'https://api.allowed.tes/', 'no-match'],
    [exact, 'https://api.allowed.test#@evil.test/', 'api.allowed.test'],
    [exact, 'https://evil.test#@api.allowed.test/', 'no-match'],
    [exact, 'https://evil.test?@api.allowed.test/', 'no-match'],
    [exact, 'https://evil.test/@api.allowed.test/', 'no-match'],
    [exact, 'javascript://api.allowed.test/', 'refused:scheme_not_allowed'],
    [exact, 'file://api.allowed.test/', 'refused:scheme_not_allowed'],
    [exact, 'data:text/html,https://api.allowed.test/', 'refused:scheme_not_allowed'],
    [exact, 'ws://api.allowed.test/', 'refused:scheme_not_allowed'],
    [exact, 'wss://api.allowed.test/', 'refused:scheme_not_allowed'],
    [exact, 'https:api.allowed.test/', 'api.allowed.test'],
    [wild, 'https://api.allowed.test/', '*.allowed.test'],
    [wild, 'https://API.Allowed.Test:443/', '*.allowed.test'],
    [wild, 'https://a-b_c.allowed.test/', '*.allowed.test'],
    [wild, 'https://allowed.test/', 'no-match'],
    [wild, 'https://a.b.allowed.test/', 'no-match'],
    [wild, 'https://a%2Eb.allowed.test/', 'no-match'],
    [wild, 'https://a\u3002b.allowed.test/', 'no-match'],
    [wild, 'https://evilallowed.test/', 'no-match'],
    [wild, 'https://api.allowed.test.evil.test/', 'no-match'],
    [wild, 'https://api.allowed.test@evil.test/', 'refused:userinfo'],
    [wild, 'https://.allowed.test/', 'no-match'],
    [wild, 'https://a!b.allowed.test/', 'no-match'],
    [wild, 'https://api.allowed.test:8443/', 'no-match'],
    [wild, 'http://api.allowed.test/', 'no-match'],
    [wild, 'https://\u0430pi.allowed.test/', '*.allowed.test'],
    [wild, 'https://api.allowed.test./', 'refused:trailing_dot'],
    [['http://api.allowed.test'], 'http://api.allowed.test/', 'http://api.allowed.test'],
    [['http://api.allowed.test'], 'https://api.allowed.test/', 'http://api.allowed.test'],
    [['http://api.allowed.test'], 'http://api.allowed.test:443/', 'no-match'],
    [['api.allowed.test:8443'], 'https://api.allowed.test:8443/', 'api.allowed.test:8443'],
    [['api.allowed.test:8443'], 'https://api.allowed.test/', 'no-match'],
    [['api.allowed.test:8443'], 'http://api.allowed.test:8443/', 'no-match'],
    [
      ['http://api.allowed.test:8080'],
      'http://api.allowed.test:8080/',
      'http://api.allowed.test:8080',
    ],
    [['api.allowed.test', '*.allowed.test'], 'https://x.allowed.test/', '*.allowed.test'],
    // IP patterns match the normalised address, which is what the request is sent to.
    [['127.0.0.1'], 'https://127.0.0.1/', '127.0.0.1'],
    [['127.0.0.1'], 'https://2130706433/', '127.0.0.1'],
    [['127.0.0.1'], 'https://0x7f.1/', '127.0.0.1'],
    [['127.0.0.1'], 'https://0x7f000001/', '127.0.0.1'],
    [['127.0.0.1'], 'https://0177.0.0.1/', '127.0.0.1'],
    [['127.0.0.1'], 'https://127.1/', '127.0.0.1'],
    [['127.0.0.1'], 'https://127.0.0.2/', 'no-match'],
    [['127.0.0.1'], 'https://[::ffff:127.0.0.1]/', 'no-match'],
    [['127.0.0.1'], 'https://127.0.0.1.nip.io/', 'no-match'],
    [['127.0.0.1'], 'https://localhost/', 'no-match'],
    [['[::1]'], 'https://[::1]/', '[::1]'],
    [['[::1]'], 'https://[0:0:0:0:0:0:0:1]/', '[::1]'],
    [['[::1]'], 'https://[::2]/', 'no-match'],
    [['[::1]:8443'], 'https://[::1]:8443/', '[::1]:8443'],
    [['http://[::1]:8080'], 'http://[::1]:8080/', 'http://[::1]:8080'],
    [['bücher.de'], 'https://b\u00fccher.de/', 'xn--bcher-kva.de'],
    [['bücher.de'], 'https://xn--bcher-kva.de/', 'xn--bcher-kva.de'],
    [['bücher.de'], 'https://bucher.de/', 'no-match'],
    [[], 'https://api.allowed.test/', 'no-match'],
  ];
  it.each(table)('%j vs %j -> %s', (patterns, raw, expected) => {
    expect(decide(patterns, raw)).toBe(expected);
  });

  it('never matches a URL object that parseTargetUrl would refuse', () => {
    const patterns = [parseDomainPattern('api.allowed.test'), parseDomainPattern('*.allowed.test')];
    expect(matchTarget(patterns, new URL('https://user@api.allowed.test/'))).toBeNull();
    expect(matchTarget(patterns, new URL('https://:pw@api.allowed.test/'))).toBeNull();
    expect(matchTarget(patterns, new URL('https://api.allowed.test./'))).toBeNull();
    expect(matchTarget(patterns, new URL('wss://api.allowed.test/'))).toBeNull();
    expect(matchTarget(patterns, new URL('ftp://api.allowed.test/'))).toBeNull();
  });
});

describe('properties', () => {
  const wildcard = [parseDomainPattern('*.allowed.test')];
  const exact = [parseDomainPattern('api.allowed.test')];
  const labelChars = fc.constantFrom(
    ...'abcXYZ019-_.'.split(''),
    '!',
    '*',
    '@',
    '?',
    '#',
    '%2e',
    '\u3002',
    ' ',
    ':',
  );

  it('L.allowed.test matches *.allowed.test iff L is one valid label', () => {
    fc.assert(
      fc.property(
        fc.array(labelChars, { minLength: 0, maxLength: 70 }).map((a) => a.join('')),
        (label) => {
          // Punycode validity of xn-- labels differs between runtimes and is not what is tested here.
          fc.pre(!/^xn--/i.test(label));
          const oneLabel = /^[A-Za-z0-9_-]{1,63}$/.test(label);
          expect(decide(['*.allowed.test'], `https://${label}.allowed.test/`) === '*.allowed.test')
            .toBe(
              oneLabel,
            );
        },
      ),
      { numRuns: 1000 },
    );
  });

  // URLs built from tricky parts, weighted so that many of them do land on the allowed hosts.
  const urlText = fc.tuple(
    fc.constantFrom(
      'https://',
      'HTTPS://',
      'http://',
      'https:',
      'https:///',
      'ws://',
      'https:\\\\',
    ),
    fc.constantFrom('', '', '', 'user@', 'api.allowed.test@', '@', ':@', 'evil.test\\@'),
    fc.oneof(
      {
        weight: 4,
        arbitrary: fc.constantFrom(
          'api.allowed.test',
          'API.ALLOWED.TEST',
          'api%2eallowed.test',
          'api\u3002allowed\uff0etest',
          '\uff41pi.allowed.test',
          'x.allowed.test',
          'a-b.allowed.test',
          '\u0430pi.allowed.test',
          'allowed.test',
          'a.b.allowed.test',
          'api.allowed.test.',
          'api.allowed.test%2e',
          'api.allowed.test.evil.test',
          'api.allowed.test%2eevil.test',
          'evilallowed.test',
          'api.allowed.tes',
          '0x7f.1',
        ),
      },
      {
        weight: 1,
        arbitrary: fc.array(
          fc.tuple(
            fc.constantFrom(
              'api',
              'API',
              'x',
              'allowed',
              'test',
              'evil',
              '\uff41pi',
              '\u0430pi',
              '1',
            ),
            fc.constantFrom('.', '.', '\u3002', '%2e', '@', '\t', ''),
          ),
          { minLength: 1, maxLength: 5 },
        ).map((labels) =>
          labels.map(([l, sep], i) => i === labels.length - 1 ? l : l + sep).join('')
        ),
      },
    ),
    fc.constantFrom('', '', ':443', ':8443', ':80', ':'),
    fc.constantFrom(
      '',
      '/',
      '/x?y#z',
      '\\@evil.test',
      '@evil.test',
      '#@evil.test',
      '/@api.allowed.test',
      '?@x',
      '\n',
    ),
  ).map((parts) => parts.join(''));
  it('a URL whose parsed host, scheme and port are not the allowed ones never matches', () => {
    let hits = 0;
    fc.assert(
      fc.property(urlText, (raw) => {
        let url: URL;
        try {
          url = parseTargetUrl(raw);
        } catch {
          return;
        }
        const onDefaultHttps = url.protocol === 'https:' && effectivePort(url) === 443;
        const exactHit = matchTarget(exact, url);
        const wildHit = matchTarget(wildcard, url);
        expect(exactHit !== null).toBe(onDefaultHttps && url.hostname === 'api.allowed.test');
        expect(wildHit !== null).toBe(
          onDefaultHttps && /^[a-z0-9_-]{1,63}\.allowed\.test$/.test(url.hostname),
        );
        if (exactHit !== null || wildHit !== null) {
          hits++;
          expect(url.username + url.password).toBe('');
        }
      }),
      { numRuns: 3000 },
    );
    // The generator must reach the allowed hosts often, or the property says nothing.
    expect(hits).toBeGreaterThan(20);
  });

  const label = fc.stringMatching(/^[a-z0-9]([a-z0-9_-]{0,8}[a-z0-9])?$/);
  const name = fc.tuple(
    fc.array(label, { minLength: 0, maxLength: 3 }),
    fc.stringMatching(/^[a-z][a-z0-9]{0,6}$/),
  )
    .map(([labels, tld]) => [...labels, tld].join('.'));
  const ipv4 = fc.ipV4();
  const ipv6 = fc.constantFrom('[::1]', '[2001:db8::1]', '[fe80::1:2]', '[::ffff:7f00:1]');
  const port = fc.option(fc.integer({ min: 1, max: 65535 }), { nil: null });
  const pattern = fc.oneof(
    fc.tuple(fc.boolean(), fc.oneof(name, ipv4, ipv6), port).map(([http, host, p]) => ({
      http,
      host,
      p,
      wild: false,
    })),
    fc.tuple(fc.boolean(), name.filter((n) => n.includes('.')), port).map(([http, host, p]) => ({
      http,
      host,
      p,
      wild: true,
    })),
  ).map(({ http, host, p, wild }) =>
    `${http ? 'http://' : ''}${wild ? '*.' : ''}${host}${p === null ? '' : `:${p}`}`
  );

  it('formatDomainPattern(parseDomainPattern(x)) round-trips', () => {
    fc.assert(
      fc.property(pattern, (text) => {
        const parsed = parseDomainPattern(text);
        expect(formatDomainPattern(parsed)).toBe(text);
        expect(parseDomainPattern(formatDomainPattern(parsed))).toEqual(parsed);
      }),
      { numRuns: 1000 },
    );
  });

  it('a pattern matches the URL built from its own text', () => {
    fc.assert(
      fc.property(pattern, (text) => {
        const p = parseDomainPattern(text);
        const host = p.wildcard ? `x.${p.host}` : p.host;
        const raw = `${p.scheme}://${host}${p.port === null ? '' : `:${p.port}`}/`;
        expect(matchTarget([p], parseTargetUrl(raw))).toBe(p);
      }),
      { numRuns: 500 },
    );
  });
});
