/**
 * Redirects (SPEC §6): a 3xx goes back to the agent as it is and is never followed, whether the
 * secret is in Authorization (which fetch would drop cross-origin) or in a custom header or the
 * body (which fetch would re-send).
 */
import { Buffer } from 'node:buffer';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunResult } from '../helpers/cli.ts';
import { type Canary, requestsWith, setupCanary } from '../helpers/canary.ts';

const CODES = [301, 302, 303, 307, 308];
const LOCATIONS: Record<string, string> = {
  absolute: 'https://evil.test/steal',
  relative: '/steal',
  'protocol-relative': '//evil.test/steal',
  'plain-http': 'http://evil.test/steal',
};

let f: Canary;

/** `/r/CODE/KIND` answers CODE with the Location of that kind; anything else answers 200. */
function _redirector(req: IncomingMessage, res: ServerResponse): void {
  const m = /^\/r\/(\d{3})\/([a-z-]+)/.exec(req.url ?? '');
  if (m === null) {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('not a redirect');
    return;
  }
  res.writeHead(Number(m[1]), {
    location: LOCATIONS[m[2]],
    'content-type': 'text/plain',
  });
  res.end('moved');
}

beforeAll(async () => {
  f = await setupCanary({ placements: ['header', 'body'], allowedHandler: _redirector });
});
afterAll(() => f.close());

function _template(
  code: number,
  kind: string,
  where: 'authorization' | 'x-api-key',
  marker: string,
) {
  const secretHeader = where === 'authorization'
    ? { Authorization: 'Bearer {{CREDENTIAL}}' }
    : { 'X-Api-Key': '{{CREDENTIAL}}' };
  return {
    credential: 'k',
    url: `https://api.allowed.test/r/${code}/${kind}`,
    headers: { ...secretHeader, 'X-Case': marker },
  };
}

/** The redirect reached the agent unfollowed: one request upstream, nothing for the attacker. */
function _expectNotFollowed(r: RunResult, marker: string): void {
  expect(requestsWith(f.allowed, marker)).toHaveLength(1);
  expect(f.receivedBy(marker)).toEqual(['allowed']);
  expect(f.attacker.rawBytes().length, 'the TLS attacker received bytes').toBe(0);
  expect(f.plainAttacker.rawBytes().length, 'the plain attacker received bytes').toBe(0);
  expect(f.allowed.requests.some((q) => q.path.startsWith('/steal'))).toBe(false);
  f.expectClean(r);
}

describe.concurrent('redirects are returned, never followed', () => {
  for (const code of CODES) {
    for (const where of ['authorization', 'x-api-key'] as const) {
      it(`${code} to evil.test, secret in ${where}: -i --fail shows the 3xx, exit 0`, async () => {
        const m = f.marker();
        const r = await f.exec(_template(code, 'absolute', where, m), { args: ['-i', '--fail'] });
        expect(r.code, r.stderr).toBe(0);
        expect(r.stdout).toMatch(new RegExp(`^HTTP/1\\.1 ${code}\\b`));
        expect(r.stdout).toMatch(/^location: https:\/\/evil\.test\/steal\r?$/im);
        expect(r.stdout).toContain('moved');
        _expectNotFollowed(r, m);
      });
    }

    for (const kind of ['relative', 'protocol-relative', 'plain-http']) {
      it(`${code} with a ${kind} Location, secret in x-api-key: --json shows it`, async () => {
        const m = f.marker();
        const r = await f.exec(_template(code, kind, 'x-api-key', m), { args: ['--json'] });
        expect(r.code, r.stderr).toBe(0);
        const out = JSON.parse(r.stdout) as { status: number; headers: Record<string, unknown> };
        expect(out.status).toBe(code);
        expect(out.headers.location).toBe(LOCATIONS[kind]);
        _expectNotFollowed(r, m);
      });
    }
  }

  for (const code of [307, 308]) {
    it(`${code} on a POST with the secret in the body: not re-sent anywhere`, async () => {
      const m = f.marker();
      const r = await f.exec({
        credential: 'k',
        method: 'POST',
        url: `https://api.allowed.test/r/${code}/absolute`,
        headers: { 'X-Case': m, 'Content-Type': 'application/json' },
        body: { key: '{{CREDENTIAL}}' },
      }, { args: ['-i'] });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^HTTP/1\\.1 ${code}\\b`));
      const [req] = requestsWith(f.allowed, m);
      expect(JSON.parse(Buffer.from(req.body).toString('utf8'))).toEqual({ key: f.canary });
      _expectNotFollowed(r, m);
    });
  }

  it('the curl form does not follow either (curl follows only with -L)', async () => {
    const m = f.marker();
    const r = await f.exec([
      '-H',
      'X-Api-Key: {{CREDENTIAL}}',
      '-H',
      `X-Case: ${m}`,
      '--credential',
      'k',
      '-i',
      'https://api.allowed.test/r/302/absolute',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^HTTP\/1\.1 302\b/);
    _expectNotFollowed(r, m);
  });
});
