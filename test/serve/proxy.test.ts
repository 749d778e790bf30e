// deno-lint-ignore-file no-explicit-any -- audit lines and error bodies are read as raw JSON
/**
 * `POST /v1/proxy` (SPEC §8) against the canary fixture: the same checks as exec (URL tricks,
 * placement, redirects never followed, reflections redacted, also split across stream chunks),
 * each refusal with its HTTP status and error JSON, rate limits with Retry-After, brakes and
 * revocations by other processes applied to the next request, and curl as a client.
 */
import { Buffer } from 'node:buffer';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { request } from 'node:http';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newAgent } from '../helpers/cli.ts';
import { bearer, type Canary, newCanary, setupCanary } from '../helpers/canary.ts';
import {
  asRun,
  header,
  http,
  type HttpResult,
  json,
  scriptedUpstream,
  type Served,
  startServe,
} from '../helpers/serve.ts';

const up = scriptedUpstream();
let f: Canary;
let s: Served;

beforeAll(async () => {
  f = await setupCanary({
    canary: newCanary({ special: true }),
    allowedRaw: up.onConnection,
    credentials: [
      {
        name: 'limited',
        value: newCanary(),
        flags: ['--allowed-domains', 'api.allowed.test', '--rate', '2/h'],
      },
      { name: 'down', value: newCanary(), flags: ['--allowed-domains', 'down.allowed.test'] },
      { name: 'braked', value: newCanary(), flags: ['--allowed-domains', 'api.allowed.test'] },
      {
        name: 'ungranted',
        value: newCanary(),
        flags: ['--allowed-domains', 'api.allowed.test'],
        grant: false,
      },
    ],
  });
  s = await startServe(f.t, [
    '--listen',
    '127.0.0.1:0',
    '--cacert',
    f.caFile,
    ...f.routes.flatMap((r) => ['--connect-to', r]),
    '--connect-to',
    'down.allowed.test:443:127.0.0.1:1',
  ]);
});
afterAll(async () => {
  const e = await s.stop();
  expect(e.code, e.stderr).toBe(0);
  await f.close();
});

function _proxy(
  template: unknown,
  options: { token?: string | null; headers?: Record<string, string> } = {},
): Promise<HttpResult> {
  const token = options.token === undefined ? f.agent.token : options.token;
  return http(s, '/v1/proxy', {
    body: typeof template === 'string' ? template : JSON.stringify(template),
    headers: {
      'Content-Type': 'application/json',
      ...(token === null ? {} : { Authorization: `Bearer ${token}` }),
      ...options.headers,
    },
  });
}

function _received(marker: string) {
  return up.requests.filter((r) => r.headers['x-case'] === marker);
}

function _expectRefused(r: HttpResult, marker: string, statuses: number[], code?: string): void {
  expect(statuses, `HTTP ${r.status}: ${r.body}`).toContain(r.status);
  expect(json(r).error).toMatchObject({
    code: code ?? expect.any(String),
    kind: expect.any(String),
  });
  expect(f.receivedBy(marker)).toEqual([]);
  f.expectClean(asRun(r));
}

function _expectAllowed(r: HttpResult, marker: string): void {
  expect(r.status, r.body.toString()).toBe(200);
  expect(f.receivedBy(marker)).toEqual(['allowed']);
  const [got] = _received(marker);
  expect(got?.headers.authorization).toBe(`Bearer ${f.canary}`);
  f.expectClean(asRun(r));
}

function _audit(): any[] {
  return fs.readFileSync(path.join(f.t.home, 'audit', 'audit.log'), 'utf8').trim().split('\n')
    .map((l) => JSON.parse(l));
}

describe.concurrent('the same checks as exec', () => {
  it('an allowed request: the upstream gets the secret, the agent a redacted echo; audited', async () => {
    const m = f.marker();
    const r = await _proxy(bearer('https://api.allowed.test/echo?q=1', m));
    _expectAllowed(r, m);
    expect(json(r).headers.authorization).toBe('Bearer [REDACTED:k]');
    expect(json(r).path).toBe('/echo?q=1');
    const entries = _audit().filter((l) => l.data.path === '/echo');
    expect(entries.map((l) => l.event)).toEqual(['request.allowed', 'request.completed']);
    expect(entries[1].data).toMatchObject({
      agent: f.agent.id,
      status: 200,
      host: 'api.allowed.test',
    });
  });

  const DENIED = [
    'https://api.allowed.test@evil.test/',
    'https://evil.test#@api.allowed.test/',
    'https://\u0430pi.allowed.test/',
    'https://api.allowed.test./',
    'https://api.allowed.test:8443/',
    'http://api.allowed.test/',
    'https://api.allowed.test.evil.test/',
    'https://allowed.test/',
    'https://127.0.0.1/',
    'https://[::1]/',
    'https://localhost/',
    'ftp://api.allowed.test/',
  ];
  for (const url of DENIED) {
    it(`URL trick refused (403): ${JSON.stringify(url)}`, async () => {
      const m = f.marker();
      _expectRefused(await _proxy(bearer(url, m)), m, [403]);
    });
  }

  const MALFORMED = [
    'https://evil.test\\@api.allowed.test/',
    'https://api.allowed.test\n.evil.test/',
    'https://api.allowed.test\t.evil.test/',
    'https://api.allowed.test\u0000.evil.test/',
  ];
  for (const url of MALFORMED) {
    it(`malformed URL refused (400 or 403): ${JSON.stringify(url)}`, async () => {
      const m = f.marker();
      _expectRefused(await _proxy(bearer(url, m)), m, [400, 403]);
    });
  }

  for (
    const url of [
      'https://api%2Eallowed.test/n',
      'https://api\u3002allowed.test/n',
      'HTTPS://API.Allowed.TEST/n',
    ]
  ) {
    it(`normalised to the allowed host, sent there only: ${JSON.stringify(url)}`, async () => {
      const m = f.marker();
      _expectAllowed(await _proxy(bearer(url, m)), m);
    });
  }

  it('placement and template refusals: nothing is sent', async () => {
    const cases: Array<[unknown, number, string]> = [
      [bearer('https://api.allowed.test/?key={{CREDENTIAL}}', 'M'), 403, 'placement_not_allowed'],
      [bearer('https://api.allowed.test/{{CREDENTIAL}}', 'M'), 403, 'placement_not_allowed'],
      [bearer('https://{{CREDENTIAL}}.allowed.test/', 'M'), 400, 'placeholder_placement'],
      [
        { ...bearer('https://api.allowed.test/', 'M'), body: 'k={{CREDENTIAL}}', method: 'POST' },
        403,
        'placement_not_allowed',
      ],
      [
        {
          ...bearer('https://api.allowed.test/', 'M'),
          headers: { Authorization: 'Bearer {{ CREDENTIAL }}', 'X-Case': 'M' },
        },
        400,
        'bad_placeholder',
      ],
      [
        {
          ...bearer('https://api.allowed.test/', 'M'),
          headers: { Authorization: 'Bearer {{CREDENTIAL}}', Host: 'evil.test', 'X-Case': 'M' },
        },
        400,
        'forbidden_header',
      ],
      [{ ...bearer('https://api.allowed.test/', 'M'), extra: 1 }, 400, 'bad_template'],
      [
        { credential: 'k', url: 'https://api.allowed.test/', headers: { 'X-Case': 'M' } },
        400,
        'no_placeholder',
      ],
      ['{not json', 400, 'bad_template'],
    ];
    for (const [template, status, code] of cases) {
      const m = f.marker();
      const text = typeof template === 'string'
        ? template
        : JSON.stringify(template).replaceAll('"M"', `"${m}"`);
      _expectRefused(await _proxy(text), m, [status], code);
    }
  });

  for (const code of [301, 302, 307, 308]) {
    it(`a ${code} comes back as it is, never followed`, async () => {
      const m = f.marker();
      const r = await _proxy({
        credential: 'k',
        url: `https://api.allowed.test/r/${code}/absolute`,
        headers: { 'X-Api-Key': '{{CREDENTIAL}}', 'X-Case': m },
      });
      expect(r.status).toBe(code);
      expect(header(r, 'location')).toBe('https://evil.test/steal');
      expect(_received(m)).toHaveLength(1);
      expect(f.receivedBy(m)).toEqual(['allowed']);
      expect(up.requests.some((q) => q.path === '/steal')).toBe(false);
      f.expectClean(asRun(r));
    });
  }
});

describe.concurrent('reflections are redacted, streams included', () => {
  const CASES: Array<[string, RegExp]> = [
    ['raw', /^before \[REDACTED:k\] after$/],
    ['base64', /^b64=[A-Za-z0-9+/]{0,3}\[REDACTED:k\][A-Za-z0-9+/=]{0,8};$/],
    ['hex', /^hex=\[REDACTED:k\];$/],
    ['json', /^\{"echo":"\[REDACTED:k\]"\}$/],
    ['gzip', /^before \[REDACTED:k\] after$/],
    ['sse-half', /^data: \[REDACTED:k\]\n\n$/],
    ['sse-bytes', /^data: \[REDACTED:k\]\n\ndata: done\n\n$/],
  ];
  for (const [name, match] of CASES) {
    it(name, async () => {
      const r = await _proxy(bearer(`https://api.allowed.test/reflect/${name}`, f.marker()));
      expect(r.status).toBe(200);
      expect(r.body.toString('latin1')).toMatch(match);
      expect(header(r, 'transfer-encoding')).toBe('chunked');
      expect(header(r, 'content-encoding')).toBeUndefined();
      f.expectClean(asRun(r));
    });
  }

  it('in headers and the status text', async () => {
    const h = await _proxy(bearer('https://api.allowed.test/reflect/header', f.marker()));
    expect(header(h, 'x-echo')).toBe('[REDACTED:k]');
    f.expectClean(asRun(h));
    const st = await _proxy(bearer('https://api.allowed.test/reflect/status', f.marker()));
    expect(st.statusText).toBe('Echo [REDACTED:k] end');
    f.expectClean(asRun(st));
  });

  it('server-sent events reach the client as they come, not at the end', async () => {
    const body = JSON.stringify(bearer('https://api.allowed.test/reflect/sse-slow', f.marker()));
    const events: Array<[number, string]> = [];
    const started = Date.now();
    await new Promise<void>((resolve, reject) => {
      const req = request({
        host: '127.0.0.1',
        port: s.port as number,
        path: '/v1/proxy',
        method: 'POST',
        headers: {
          Authorization: `Bearer ${f.agent.token}`,
          'Content-Length': Buffer.byteLength(body),
        },
        agent: false,
      }, (res) => {
        res.on('data', (d: Buffer) => events.push([Date.now() - started, d.toString('latin1')]));
        res.on('end', resolve);
      });
      req.on('error', reject);
      req.end(body);
    });
    const first = events.find(([, d]) => d.includes('first'));
    const last = events[events.length - 1] as [number, string];
    expect(first?.[1]).toContain('data: first [REDACTED:k]\n\n');
    expect(last[1]).toContain('data: second');
    // Sent 1.5 s apart: buffered to the end, they would arrive together; half the gap is room
    // for a loaded machine delaying the first.
    expect(last[0] - (first?.[0] ?? Infinity)).toBeGreaterThanOrEqual(750);
  });
});

describe.concurrent('a client that goes away', () => {
  it('mid-stream: the upstream request is cut and audited as failed (aborted)', async () => {
    const m = f.marker();
    const body = JSON.stringify(bearer('https://api.allowed.test/reflect/sse-slow?gone', m));
    await new Promise<void>((resolve, reject) => {
      const req = request({
        host: '127.0.0.1',
        port: s.port as number,
        path: '/v1/proxy',
        method: 'POST',
        headers: {
          Authorization: `Bearer ${f.agent.token}`,
          'Content-Length': Buffer.byteLength(body),
        },
        agent: false,
      }, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', () => {});
      req.on('close', resolve);
      req.on('response', () => {});
      req.end(body);
      setTimeout(() => reject(new Error('no first event')), 5_000);
    });
    let failed: any;
    for (let i = 0; i < 50 && failed === undefined; i++) {
      await new Promise((r) => setTimeout(r, 100));
      failed = _audit().find((l) =>
        l.event === 'request.failed' && l.data.path === '/reflect/sse-slow'
      );
    }
    expect(failed?.data).toMatchObject({ reason: 'aborted', agent: f.agent.id });
    expect(_received(m)).toHaveLength(1);
  });
});

describe.concurrent('refusals map to HTTP statuses', () => {
  it('no token, a bad token: 401 with WWW-Authenticate', async () => {
    for (const token of [null, 'tpat_not-a-real-token']) {
      const m = f.marker();
      const r = await _proxy(bearer('https://api.allowed.test/', m), { token });
      _expectRefused(r, m, [401], token === null ? 'no_token' : 'bad_token');
      expect(header(r, 'www-authenticate')).toBe('Bearer');
    }
  });

  it('an ungranted credential: 403, the same answer as an unknown one', async () => {
    for (const name of ['ungranted', 'no-such-credential']) {
      const m = f.marker();
      const r = await _proxy({ ...bearer('https://api.allowed.test/', m), credential: name });
      _expectRefused(r, m, [403], 'not_granted');
    }
  });

  it('upstream unreachable: 502; timeout: 504; too large: 502', async () => {
    const down = await _proxy({ ...bearer('https://down.allowed.test/', 'x'), credential: 'down' });
    expect(down.status).toBe(502);
    expect(json(down).error).toMatchObject({ kind: 'upstream', code: 'connect' });
    const slow = await _proxy(bearer('https://api.allowed.test/slow', f.marker()), {
      headers: { 'Trust-Protocol-Timeout': '1' },
    });
    expect(slow.status).toBe(504);
    expect(json(slow).error).toMatchObject({ kind: 'upstream', code: 'timeout' });
    const big = await _proxy(bearer('https://api.allowed.test/big', f.marker()), {
      headers: { 'Trust-Protocol-Max-Response-Bytes': '5' },
    });
    expect(big.status).toBe(502);
    expect(json(big).error.code).toBe('response_too_large');
  });

  it("the limit headers can only lower serve's limits: a huge timeout is capped, not an error", async () => {
    const r = await _proxy(bearer('https://api.allowed.test/', f.marker()), {
      headers: {
        'Trust-Protocol-Timeout': '3000000',
        'Trust-Protocol-Max-Response-Bytes': '999999999999999',
      },
    });
    expect(r.status).toBe(200);
  });

  it('a failure part-way through the stream: the connection is cut, or a trailer with TE: trailers', async () => {
    const limit = { 'Trust-Protocol-Max-Response-Bytes': '50' };
    const cut = await _proxy(bearer('https://api.allowed.test/big-late', f.marker()), {
      headers: limit,
    });
    expect(cut.status).toBe(200);
    expect(cut.complete).toBe(false);
    const told = await _proxy(bearer('https://api.allowed.test/big-late', f.marker()), {
      headers: { ...limit, TE: 'trailers' },
    });
    expect(told.status).toBe(200);
    expect(told.complete).toBe(true);
    expect(JSON.parse(told.trailers['trust-protocol-error'] as string).error).toMatchObject({
      kind: 'upstream',
      code: 'response_too_large',
    });
  });

  it('a credential rate limit (2/h): 429 rate_limited with Retry-After; the upstream got two', async () => {
    const m = f.marker();
    const template = { ...bearer('https://api.allowed.test/rate', m), credential: 'limited' };
    expect((await _proxy(template)).status).toBe(200);
    expect((await _proxy(template)).status).toBe(200);
    const third = await _proxy(template);
    expect(third.status).toBe(429);
    expect(json(third).error.code).toBe('rate_limited');
    expect(Number(header(third, 'retry-after'))).toBeGreaterThan(3000);
    expect(_received(m)).toHaveLength(2);
  });

  it('an emergency brake set by another process: 423 on the next request; lifted: 200', async () => {
    const template = { ...bearer('https://api.allowed.test/brake', 'x'), credential: 'braked' };
    expect((await _proxy(template)).status).toBe(200);
    const on = await f.t.tp([
      'emergency',
      'activate',
      '--scope',
      'credential',
      '--credential-name',
      'braked',
      '--reason',
      'test',
    ]);
    expect(on.code, on.stderr).toBe(0);
    const braked = await _proxy(template);
    expect(braked.status).toBe(423);
    expect(json(braked).error).toMatchObject({ kind: 'brake', code: 'brake_credential' });
    const off = await f.t.tp([
      'emergency',
      'clear',
      '--scope',
      'credential',
      '--credential-name',
      'braked',
      '--password-file',
      f.t.passwordFile,
    ]);
    expect(off.code, off.stderr).toBe(0);
    expect((await _proxy(template)).status).toBe(200);
  });

  // The very next request, sent once the command has committed: stronger than SPEC's one second,
  // and not a timing (a request's own round trip on a loaded machine says nothing about it).
  it('revoke and suspend by another process apply to the very next request', async () => {
    const a = await newAgent(f.t, { name: 'short-lived', grants: ['k'] });
    const b = await newAgent(f.t, { name: 'paused', grants: ['k'] });
    for (const agent of [a, b]) {
      expect(
        (await _proxy(bearer('https://api.allowed.test/ok', 'x'), { token: agent.token })).status,
      )
        .toBe(200);
    }
    for (const [agent, verb] of [[a, 'revoke'], [b, 'suspend']] as const) {
      const changed = await f.t.tp(['agent', verb, agent.id, '--password-file', f.t.passwordFile]);
      expect(changed.code, changed.stderr).toBe(0);
      const m = f.marker();
      const r = await _proxy(bearer('https://api.allowed.test/after', m), { token: agent.token });
      _expectRefused(r, m, [401, 403]);
      expect(json(r).error.code).toMatch(
        verb === 'revoke' ? /agent_revoked|bad_token/ : /agent_suspended/,
      );
    }
  });
});

describe.concurrent('clients', () => {
  function _curl(args: string[]): Promise<{ code: number | null; stdout: Buffer }> {
    return new Promise((resolve) => {
      const child = spawn('curl', ['-sS', '-N', ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
      const out: Buffer[] = [];
      child.stdout.on('data', (d: Buffer) => out.push(d));
      child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out) }));
    });
  }

  it('curl through /v1/proxy, over TCP and over the unix socket', async () => {
    for (
      const where of [[`http://127.0.0.1:${s.port}/v1/proxy`], [
        '--unix-socket',
        s.socket,
        'http://localhost/v1/proxy',
      ]]
    ) {
      const m = f.marker();
      const file = f.t.file(
        `curl-${m}.json`,
        JSON.stringify(bearer('https://api.allowed.test/reflect/sse-bytes', m)),
      );
      const r = await _curl([
        '-H',
        `Authorization: Bearer ${f.agent.token}`,
        '-H',
        'Content-Type: application/json',
        '--data-binary',
        `@${file}`,
        ...where,
      ]);
      expect(r.code).toBe(0);
      expect(r.stdout.toString('latin1')).toBe('data: [REDACTED:k]\n\ndata: done\n\n');
      expect(f.receivedBy(m)).toEqual(['allowed']);
      f.expectClean({ code: 0, stdout: '', stderr: '', stdoutBytes: new Uint8Array(r.stdout) });
    }
  });
});

describe.concurrent('refusals name their audit entry (Trust-Protocol-Audit-Seq)', () => {
  function _deniedEntry(r: HttpResult, code: string): any {
    const seq = header(r, 'trust-protocol-audit-seq');
    expect(seq, `no audit seq on a ${r.status}`).toMatch(/^\d+$/);
    const entry = _audit().find((l) => l.seq === Number(seq));
    expect(entry).toMatchObject({ event: 'request.denied', data: { reason: code } });
    return entry;
  }

  it('no token (401), an ungranted credential (403), a URL trick (403)', async () => {
    const none = await _proxy(bearer('https://api.allowed.test/seq-none', 'm'), { token: null });
    expect(none.status).toBe(401);
    expect(_deniedEntry(none, 'no_token').actor).toEqual({ type: 'anyone' });
    const ungranted = await _proxy({
      ...bearer('https://api.allowed.test/seq-ungranted', 'm'),
      credential: 'ungranted',
    });
    expect(ungranted.status).toBe(403);
    expect(_deniedEntry(ungranted, 'not_granted').actor).toEqual({ type: 'agent', id: f.agent.id });
    const trick = await _proxy(bearer('https://api.allowed.test@evil.test/seq', 'm'));
    expect(trick.status).toBe(403);
    _deniedEntry(trick, json(trick).error.code);
  });

  it('a credential rate limit (429), decided after unseal: its entry too', async () => {
    const template = { ...bearer('https://api.allowed.test/seq-rate', 'm'), credential: 'limited' };
    let r = await _proxy(template);
    while (r.status === 200) r = await _proxy(template);
    expect(r.status).toBe(429);
    const entry = _deniedEntry(r, 'rate_limited');
    expect(entry.mac).toEqual(expect.any(String));
  });

  it('a request serve refuses without writing an entry carries no seq', async () => {
    const r = await http(s, '/v1/no-such-endpoint', { method: 'GET' });
    expect(r.status).toBe(404);
    expect(header(r, 'trust-protocol-audit-seq')).toBeUndefined();
  });
});

describe('per-agent rate limit', () => {
  it('--agent-rate 2/m: the third request in a minute is 429 agent_rate_limited, audited', async () => {
    const limited = await startServe(f.t, [
      '--agent-rate',
      '2/m',
      '--socket',
      path.join(f.t.dir, 'rate.sock'),
      '--cacert',
      f.caFile,
      ...f.routes.flatMap((r) => ['--connect-to', r]),
    ]);
    try {
      const a = await newAgent(f.t, { name: 'busy', grants: ['k'] });
      const m = f.marker();
      const ask = () =>
        http({ socket: limited.socket }, '/v1/proxy', {
          body: JSON.stringify(bearer('https://api.allowed.test/agent-rate', m)),
          headers: { Authorization: `Bearer ${a.token}` },
        });
      expect((await ask()).status).toBe(200);
      expect((await ask()).status).toBe(200);
      const third = await ask();
      expect(third.status).toBe(429);
      expect(json(third).error).toMatchObject({ kind: 'denied', code: 'agent_rate_limited' });
      const retry = Number(header(third, 'retry-after'));
      expect(retry).toBeGreaterThanOrEqual(1);
      expect(retry).toBeLessThanOrEqual(60);
      expect(_received(m)).toHaveLength(2);
      // Other agents have their own count.
      expect((await _proxy(bearer('https://api.allowed.test/other', 'x'))).status).toBe(200);
      const denied = _audit().filter((l) =>
        l.event === 'request.denied' && l.data.reason === 'agent_rate_limited'
      );
      expect(denied).toHaveLength(1);
      expect(denied[0]).toMatchObject({
        actor: { type: 'agent', id: a.id },
        mac: expect.any(String),
      });
      expect(header(third, 'trust-protocol-audit-seq')).toBe(String(denied[0].seq));
    } finally {
      expect((await limited.stop()).code).toBe(0);
    }
  });
});
