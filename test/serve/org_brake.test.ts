/**
 * An organisation brake (issue #19) stops a running serve's requests for that organisation's
 * agents and credentials, and no others: a real upstream records what arrives, so a braked
 * request is shown not to have been sent, and the organisation's value never to have left.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addCredential, newAgent, newHome, type TestHome } from '../helpers/cli.ts';
import { expectNoCanary, newCanary } from '../helpers/canary.ts';
import { type Listener, startHttpsListener } from '../helpers/listeners.ts';
import { http, json, type Served, startServe, upstreamArgs } from '../helpers/serve.ts';

const ACME = newCanary();
const SHARED = newCanary();

let t: TestHome;
let upstream: Listener;
let s: Served;
let acmeBot: { id: string; token: string };
let wideBot: { id: string; token: string };

beforeAll(async () => {
  t = await newHome();
  upstream = await startHttpsListener();
  for (
    const [name, value, org] of [['ka', ACME, ['--org', 'acme']], ['k', SHARED, []]] as const
  ) {
    const r = await addCredential(t, name, value, [
      '--allowed-domains',
      'api.allowed.test',
      ...org,
    ]);
    expect(r.code, r.stderr).toBe(0);
  }
  const reg = await t.tp([
    '--json',
    'agent',
    'register',
    'acmebot',
    '--tier',
    'COMPANION',
    '--org',
    'acme',
    '--password-file',
    t.passwordFile,
  ]);
  expect(reg.code, reg.stderr).toBe(0);
  acmeBot = JSON.parse(reg.stdout);
  const g = await t.tp(['agent', 'grant', acmeBot.id, 'ka', '--password-file', t.passwordFile]);
  expect(g.code, g.stderr).toBe(0);
  wideBot = await newAgent(t, { name: 'widebot', grants: ['k'] });
  s = await startServe(t, upstreamArgs(t, upstream.port));
}, 120_000);

afterAll(async () => {
  await s?.stop();
  await upstream?.close();
});

function proxy(token: string, credential: string, marker: string) {
  return http(s, '/v1/proxy', {
    body: JSON.stringify({
      credential,
      url: `https://api.allowed.test/${marker}`,
      headers: { Authorization: 'Bearer {{CREDENTIAL}}' },
    }),
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
  });
}

const arrived = (marker: string) => upstream.requests.filter((r) => r.path === `/${marker}`);

describe('an organisation brake through serve', () => {
  it("stops the organisation's requests within a second, and no one else's", async () => {
    const before = await proxy(acmeBot.token, 'ka', 'acme-before');
    expect(before.status, before.body.toString()).toBe(200);
    expect(arrived('acme-before')[0]?.headers.authorization).toBe(`Bearer ${ACME}`);

    const brake = await t.tp([
      'emergency',
      'activate',
      '--scope',
      'org',
      '--org',
      'acme',
      '--reason',
      'acme incident',
    ]);
    expect(brake.code, brake.stderr).toBe(0);

    // serve sees a brake within a second (SPEC section 8); a few tries bound the wait.
    let refused = null;
    for (let i = 0; i < 20 && refused === null; i++) {
      const r = await proxy(acmeBot.token, 'ka', `acme-after-${i}`);
      if (r.status !== 200) refused = { r, i };
      else await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(refused, 'serve never refused the braked organisation').not.toBeNull();
    expect(refused!.r.status).toBe(423);
    expect(json(refused!.r).error.code).toMatch(/brake/);
    expect(arrived(`acme-after-${refused!.i}`)).toEqual([]);
    expectNoCanary(refused!.r.body.toString(), ACME, 'the refusal');

    const wide = await proxy(wideBot.token, 'k', 'wide-after');
    expect(wide.status, wide.body.toString()).toBe(200);
    expect(arrived('wide-after')[0]?.headers.authorization).toBe(`Bearer ${SHARED}`);
  }, 60_000);

  it("is pulled through serve's socket too (POST /v1/emergency with org)", async () => {
    const pulled = await http({ socket: s.socket }, '/v1/emergency', {
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ scope: 'org', org: 'acme', reason: 'through the socket' }),
    });
    expect(pulled.status, pulled.body.toString()).toBe(200);
    const status = JSON.parse((await t.tp(['--json', 'emergency', 'status'])).stdout);
    expect(status.orgs.map((b: { reason: string }) => b.reason)).toContain('through the socket');
    const r = await proxy(acmeBot.token, 'ka', 'acme-socket');
    expect(r.status).toBe(423);
    expect(arrived('acme-socket')).toEqual([]);
  }, 60_000);
});
