/**
 * serve keeps each credential's compiled redaction between requests (src/redact.ts
 * RedactionCache), keyed by the sealed value. A value rotated by another process must be redacted
 * from the next response on, and the `{{CREDENTIAL|base64}}` rendering a gateway inject rule sends
 * must be redacted whichever form of the same credential was compiled first. The upstream echoes
 * the credential back in its body (as received, and percent-encoded) and in a response header.
 */
import { Buffer } from 'node:buffer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectNoCanary, newCanary } from '../helpers/canary.ts';
import { addCredential, newAgent, newHome, type TestHome } from '../helpers/cli.ts';
import { type Listener, type Recorded, startHttpsListener } from '../helpers/listeners.ts';
import {
  asRun,
  http,
  type HttpResult,
  type Served,
  startServe,
  upstreamArgs,
} from '../helpers/serve.ts';

let t: TestHome;
let upstream: Listener;
let s: Served;
let agent: { id: string; token: string };
const first = newCanary({ special: true });

beforeAll(async () => {
  t = await newHome();
  upstream = await startHttpsListener((_req, res, recorded: Recorded) => {
    const auth = String(recorded.headers.authorization ?? '');
    res.writeHead(200, { 'content-type': 'application/json', 'x-echo': auth });
    // Percent-encoded too, as in a URL: only the redaction of the base64 text sent catches that
    // echo of a `|base64` rendering (the stored value's forms hold only its whole base64).
    res.end(JSON.stringify({ headers: recorded.headers, encoded: encodeURIComponent(auth) }));
  });
  for (
    const [name, inject] of [['plain', 'Bearer {{CREDENTIAL}}'], [
      'basic',
      'Basic {{CREDENTIAL|base64}}',
    ]]
  ) {
    const added = await addCredential(t, name, first, [
      '--allowed-domains',
      'api.allowed.test',
      '--base-url',
      'https://api.allowed.test',
      '--inject',
      `Authorization: ${inject}`,
    ]);
    expect(added.code, added.stderr).toBe(0);
  }
  agent = await newAgent(t, { name: 'worker', grants: ['plain', 'basic'] });
  s = await startServe(t, upstreamArgs(t, upstream.port));
});
afterAll(async () => {
  await s?.stop();
  await upstream?.close();
});

function _proxy(name: string, value: string): Promise<HttpResult> {
  return http(s, '/v1/proxy', {
    body: JSON.stringify({
      credential: name,
      url: 'https://api.allowed.test/echo',
      headers: { Authorization: value },
    }),
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${agent.token}` },
  });
}

const _gateway = (name: string) =>
  http(s, `/v1/gateway/${name}/echo`, { headers: { Authorization: `Bearer ${agent.token}` } });

/** What the upstream received last, and that the agent saw none of the value's forms. */
function _check(r: HttpResult, value: string, sent: string): void {
  expect(r.status).toBe(200);
  expect(upstream.requests.at(-1)?.headers.authorization).toBe(sent);
  const seen = asRun(r).stdout;
  expect(r.headers.find(([k]) => k.toLowerCase() === 'x-echo')?.[1]).toMatch(/\[REDACTED:\w+\]/);
  expectNoCanary(seen, value, 'the response');
  expectNoCanary(seen, Buffer.from(value).toString('base64'), 'the response');
}

const b64 = (v: string) => Buffer.from(v).toString('base64');

describe('serve: redactions kept between requests', () => {
  it('the same credential as a bearer value and as base64, in either order, through both routes', async () => {
    _check(await _gateway('basic'), first, `Basic ${b64(first)}`);
    _check(await _gateway('plain'), first, `Bearer ${first}`);
    _check(await _proxy('basic', 'Bearer {{CREDENTIAL}}'), first, `Bearer ${first}`);
    _check(await _proxy('plain', 'Basic {{CREDENTIAL|base64}}'), first, `Basic ${b64(first)}`);
    // Again, now that every combination was compiled once.
    _check(await _gateway('basic'), first, `Basic ${b64(first)}`);
    _check(await _proxy('plain', 'Basic {{CREDENTIAL|base64}}'), first, `Basic ${b64(first)}`);
  });

  it('a value rotated by another process is sent and redacted from the next request on', async () => {
    let value = first;
    for (let round = 0; round < 2; round++) {
      const next = newCanary({ special: round === 0 });
      const rotated = await t.tp([
        'credential',
        'rotate',
        'basic',
        '--password-file',
        t.passwordFile,
      ], {
        input: next,
      });
      expect(rotated.code, rotated.stderr).toBe(0);
      const viaGateway = await _gateway('basic');
      _check(viaGateway, next, `Basic ${b64(next)}`);
      // The old value is no longer sent, so an echo of it is no longer expected to be hidden.
      expect(upstream.requests.at(-1)?.headers.authorization).not.toContain(b64(value));
      _check(await _proxy('basic', 'Bearer {{CREDENTIAL}}'), next, `Bearer ${next}`);
      value = next;
    }
    // The other credential, still holding the first value, is unaffected.
    _check(await _gateway('plain'), first, `Bearer ${first}`);
  });
});
