import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { forwardedHeaders, gatewayTemplate, gatewayToken } from '../../src/serve/gateway.ts';
import { parseTargetUrl } from '../../src/domain.ts';
import { findPlaceholders, renderTemplate } from '../../src/template.ts';

const enc = new TextEncoder();
import { TpError } from '../../src/errors.ts';

const CRED = {
  name: 'g',
  base_url: 'https://api.allowed.test/',
  inject: 'Authorization: Bearer {{CREDENTIAL}}',
};

describe('gatewayTemplate', () => {
  it('base URL + path + query, the client headers, then the inject header', () => {
    const t = gatewayTemplate(CRED, {
      method: 'POST',
      path: '/v1/chat/completions',
      query: '?a=1',
      headers: [['Host', '127.0.0.1:1'], ['Authorization', 'Bearer tpat_x'], [
        'Content-Type',
        'application/json',
      ]],
    });
    expect(t).toEqual({
      credential: 'g',
      method: 'POST',
      url: 'https://api.allowed.test/v1/chat/completions?a=1',
      headers: [['Authorization', 'Bearer {{CREDENTIAL}}']],
      body: { kind: 'none' },
      literal: { url: true, headers: [['Content-Type', 'application/json']] },
    });
    expect(findPlaceholders(t)).toEqual([{ name: 'g', base64: false, placement: 'header' }]);
  });

  it("only the inject rule is a template: the client's URL and headers are sent as written", () => {
    const t = gatewayTemplate(CRED, {
      method: 'GET',
      path: '/{{CREDENTIAL:other}}',
      query: '?q={{CREDENTIAL:other}}&m={{credential',
      headers: [['X-Other', '{{CREDENTIAL:other}}'], ['X-Note', 'see {{ credential']],
    });
    expect(findPlaceholders(t)).toEqual([{ name: 'g', base64: false, placement: 'header' }]);
    const secrets = new Map([['g', enc.encode('g-value')], ['other', enc.encode('other-value')]]);
    const r = renderTemplate(t, secrets);
    expect(r.headers).toEqual([
      ['X-Other', '{{CREDENTIAL:other}}'],
      ['X-Note', 'see {{ credential'],
      ['Authorization', 'Bearer g-value'],
    ]);
    expect(r.url.href).toBe(
      'https://api.allowed.test/%7B%7BCREDENTIAL:other%7D%7D?q={{CREDENTIAL:other}}&m={{credential',
    );
  });

  it('refuses dot segments (also percent-encoded) and backslashes', () => {
    for (const path of ['/..', '/a/../b', '/%2e%2E/x', '/.%2e', '/./x', '/a\\b', 'x']) {
      expect(() => gatewayTemplate(CRED, { method: 'GET', path, query: '', headers: [] }), path)
        .toThrow(/gateway path/);
    }
  });

  it("whatever the path and query, the URL stays on the base URL's origin (property)", () => {
    const segment = fc.stringMatching(/^[A-Za-z0-9@:%._~!$&'()*+,;=-]{0,12}$/);
    fc.assert(
      fc.property(
        fc.array(segment, { maxLength: 5 }),
        fc.stringMatching(/^[^#\s]{0,20}$/),
        (segments, q) => {
          const path = segments.map((s) => `/${s}`).join('');
          let t;
          try {
            t = gatewayTemplate(CRED, {
              method: 'GET',
              path,
              query: q === '' ? '' : `?${q}`,
              headers: [],
            });
          } catch {
            return;
          }
          let url: URL;
          try {
            url = parseTargetUrl(t.url);
          } catch (e) {
            expect(e).toBeInstanceOf(TpError); // refused before anything is sent: fine
            return;
          }
          expect(url.origin).toBe('https://api.allowed.test');
        },
      ),
    );
  });
});

describe('forwardedHeaders and gatewayToken', () => {
  it('drops auth, hop-by-hop, routing, proxy, Connection-listed and serve headers; joins repeats', () => {
    const out = forwardedHeaders([
      ['X-Api-Key', 't'],
      ['api-key', 't'],
      ['X-Goog-Api-Key', 't'],
      ['Connection', 'keep-alive, X-Private'],
      ['X-Private', 'p'],
      ['Keep-Alive', '5'],
      ['TE', 'trailers'],
      ['Upgrade', 'h2c'],
      ['Proxy-Authorization', 'x'],
      ['X-Forwarded-Host', 'evil.test'],
      ['Forwarded', 'host=evil.test'],
      ['Via', 'x'],
      ['Origin', 'x'],
      ['Expect', '100-continue'],
      ['Accept-Encoding', 'br'],
      ['Trust-Protocol-Timeout', '1'],
      ['Cookie', 'a=1'],
      ['cookie', 'b=2'],
      ['X-Multi', '1'],
      ['x-multi', '2'],
      ['Inject-Me', 'client'],
    ], 'inject-me');
    expect(out).toEqual([['Cookie', 'a=1; b=2'], ['X-Multi', '1, 2']]);
  });

  it('reads the token from the first auth header present', () => {
    expect(gatewayToken([['authorization', 'Bearer tpat_a'], ['x-api-key', 'tpat_b']])).toBe(
      'tpat_a',
    );
    expect(gatewayToken([['Authorization', 'Basic eDp5'], ['X-Api-Key', 'tpat_b']])).toBe('tpat_b');
    expect(gatewayToken([['Api-Key', 'tpat_c']])).toBe('tpat_c');
    expect(gatewayToken([['x-goog-api-key', 'tpat_d']])).toBe('tpat_d');
    expect(gatewayToken([['x-other', 'tpat_e']])).toBeNull();
    expect(gatewayToken([['x-api-key', ' ']])).toBeNull();
  });
});
