// deno-lint-ignore-file no-explicit-any -- audit lines are read as raw JSON
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  addCredential,
  baseEnv,
  command,
  newAgent,
  newHome,
  type RunOptions,
  type TestHome,
} from '../helpers/cli.ts';
import { type Listener, startHttpsListener, TEST_CA } from '../helpers/listeners.ts';

const CANARY = `sk-exec-canary-${Math.random().toString(16).slice(2, 10)}`;

let t: TestHome;
let agent: { id: string; token: string };
let upstream: Listener;
let ca: string;

beforeAll(async () => {
  t = await newHome();
  expect((await addCredential(t, 'k', CANARY, ['--allowed-domains', 'api.allowed.test'])).code)
    .toBe(0);
  expect(
    (await addCredential(t, 'limited', CANARY + 'L', [
      '--allowed-domains',
      'api.allowed.test',
      '--rate',
      '2/h',
    ])).code,
  ).toBe(0);
  agent = await newAgent(t, { tier: 'COMPANION', grants: ['k', 'limited'] });
  upstream = await startHttpsListener((req, res, rec) => {
    if (req.url?.startsWith('/status/')) {
      res.statusCode = Number(req.url.slice(8));
      res.end(`status ${res.statusCode}\n`);
      return;
    }
    res.setHeader('content-type', 'application/json');
    res.setHeader('x-echo', String(req.headers['authorization'] ?? ''));
    res.end(JSON.stringify({ path: rec.path, auth: req.headers['authorization'] ?? null }));
  });
  ca = t.file('ca.pem', TEST_CA);
});

afterAll(async () => {
  await upstream.close();
});

function route(): string[] {
  return [
    '--cacert',
    ca,
    '--connect-to',
    `api.allowed.test:443:127.0.0.1:${upstream.port}`,
    '--password-file',
    t.passwordFile,
  ];
}

function exec(args: string[], options: RunOptions = {}) {
  return t.tp(['exec', ...args, ...route()], {
    ...options,
    env: { TRUST_PROTOCOL_TOKEN: agent.token, ...options.env },
  });
}

function template(body: object): string {
  return t.file(`t-${Math.random().toString(16).slice(2)}.json`, JSON.stringify(body));
}

const AUTH = { Authorization: 'Bearer {{CREDENTIAL}}' };

function auditLines(): Array<Record<string, any>> {
  return fs.readFileSync(path.join(t.home, 'audit', 'audit.log'), 'utf8').trim().split('\n').map((
    l,
  ) => JSON.parse(l));
}

describe('exec', () => {
  it('prints the redacted body byte for byte; the upstream got the real value', async () => {
    const before = upstream.requests.length;
    const r = await exec([
      '--template',
      template({
        credential: 'k',
        url: 'https://api.allowed.test/v1/x?secret_query=1',
        headers: AUTH,
      }),
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      path: '/v1/x?secret_query=1',
      auth: 'Bearer [REDACTED:k]',
    });
    const got = upstream.requests[before]!;
    expect(got.headers['authorization']).toBe(`Bearer ${CANARY}`);
    expect(r.stdout + r.stderr).not.toContain(CANARY);
  });

  it('-i prints status line and redacted headers; --json gives status, headers, body', async () => {
    const tpl = template({ credential: 'k', url: 'https://api.allowed.test/h', headers: AUTH });
    const i = await exec(['-i', '--template', tpl]);
    expect(i.code).toBe(0);
    expect(i.stdout).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(i.stdout).toMatch(/x-echo: Bearer \[REDACTED:k\]\r\n/i);
    expect(i.stdout).not.toContain(CANARY);
    const j = await exec(['--json', '--template', tpl]);
    expect(j.code).toBe(0);
    const parsed = JSON.parse(j.stdout);
    expect(parsed).toMatchObject({ status: 200, body_encoding: 'utf8' });
    expect(parsed.headers['x-echo']).toBe('Bearer [REDACTED:k]');
    expect(JSON.parse(parsed.body).auth).toBe('Bearer [REDACTED:k]');
  });

  it('-o writes the body to a file; template from stdin with -', async () => {
    const out = path.join(t.dir, 'out.json');
    const r = await exec(['--template', '-', '-o', out], {
      input: JSON.stringify({ credential: 'k', url: 'https://api.allowed.test/o', headers: AUTH }),
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('');
    expect(JSON.parse(fs.readFileSync(out, 'utf8')).path).toBe('/o');
  });

  it('--fail exits 22 on HTTP >= 400 and prints no body; without it exit 0', async () => {
    const tpl = template({
      credential: 'k',
      url: 'https://api.allowed.test/status/404',
      headers: AUTH,
    });
    const f = await exec(['--fail', '--template', tpl]);
    expect(f.code).toBe(22);
    expect(f.stdout).toBe('');
    expect(f.stderr).toContain('HTTP 404');
    const plain = await exec(['--template', tpl]);
    expect(plain.code).toBe(0);
    expect(plain.stdout).toBe('status 404\n');
  });

  it('the curl-like form sends method, headers and data', async () => {
    const before = upstream.requests.length;
    const r = await exec([
      '-X',
      'PUT',
      'https://api.allowed.test/c',
      '-H',
      'X-Api-Key: {{CREDENTIAL}}',
      '-H',
      'X-Other: 1',
      '-d',
      'a=1',
      '--credential',
      'k',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const got = upstream.requests[before]!;
    expect(got.method).toBe('PUT');
    expect(got.headers['x-api-key']).toBe(CANARY);
    expect(got.headers['content-type']).toBe('application/x-www-form-urlencoded');
    expect(new TextDecoder().decode(got.body)).toBe('a=1');
  });

  it("curl-style with --credential and no placeholder uses the credential's inject rule (issue 16)", async () => {
    const added = await addCredential(t, 'injected', CANARY + 'I', [
      '--allowed-domains',
      'api.allowed.test',
      '--inject',
      'X-Api-Key: {{CREDENTIAL}}',
    ]);
    expect(added.code, added.stderr).toBe(0);
    const granted = await t.tp([
      'agent',
      'grant',
      agent.id,
      'injected',
      '--password-file',
      t.passwordFile,
    ]);
    expect(granted.code, granted.stderr).toBe(0);
    const before = upstream.requests.length;
    const r = await exec(['https://api.allowed.test/v1/models', '--credential', 'injected']);
    expect(r.code, r.stderr).toBe(0);
    expect(upstream.requests[before]!.headers['x-api-key']).toBe(CANARY + 'I');
    expect(r.stdout + r.stderr).not.toContain(CANARY);
    // A credential without a rule still needs a placeholder, and the hint says both ways.
    const none = await exec(['https://api.allowed.test/v1/models', '--credential', 'k']);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('--inject');
    expect(upstream.requests.length).toBe(before + 1);
  });

  it('with no password and no serve, it says no serve is running and how to start one (issue 16)', async () => {
    const before = upstream.requests.length;
    const r = await t.tp([
      '--json',
      'exec',
      'https://api.allowed.test/v1',
      '-H',
      'X-Api-Key: {{CREDENTIAL}}',
      '--credential',
      'k',
    ], { env: { TRUST_PROTOCOL_TOKEN: agent.token } });
    expect(r.code).toBe(3);
    const error = JSON.parse(r.stderr).error;
    expect(error).toMatchObject({ code: 'no_serve', kind: 'sealed' });
    expect(error.message).toContain('no serve is running');
    expect(error.hint).toContain('trust-protocol serve');
    // With --cacert or --connect-to exec never hands over to a serve: it says so instead.
    const oneShot = await t.tp([
      'exec',
      'https://api.allowed.test/v1',
      '-H',
      'X-Api-Key: {{CREDENTIAL}}',
      '--credential',
      'k',
      '--cacert',
      ca,
    ], { env: { TRUST_PROTOCOL_TOKEN: agent.token } });
    expect(oneShot.code).toBe(3);
    expect(oneShot.stderr).toContain('with --cacert, exec sends the request itself');
    expect(upstream.requests.length).toBe(before);
  });

  it('a template without any placeholder is a usage error', async () => {
    const r = await exec([
      '--template',
      template({ credential: 'k', url: 'https://api.allowed.test/' }),
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('{{CREDENTIAL}}');
  });

  it('a malformed template is exit 2, an unknown host is exit 7', async () => {
    expect((await exec(['--template', t.file('bad.json', '{not json')])).code).toBe(2);
    expect(
      (await exec([
        '--template',
        template({ credential: 'k', url: 'https://api.allowed.test/', headers: AUTH, extra: 1 }),
      ])).code,
    ).toBe(2);
    const dead = await t.tp([
      'exec',
      '--template',
      template({ credential: 'k', url: 'https://api.allowed.test/', headers: AUTH }),
      '--cacert',
      ca,
      '--connect-to',
      'api.allowed.test:443:127.0.0.1:1',
      '--password-file',
      t.passwordFile,
    ], { env: { TRUST_PROTOCOL_TOKEN: agent.token } });
    expect(dead.code).toBe(7);
  });

  it('--max-response-bytes and --timeout turn into exit 7', async () => {
    const tpl = template({ credential: 'k', url: 'https://api.allowed.test/big', headers: AUTH });
    const r = await exec(['--max-response-bytes', '5', '--template', tpl]);
    expect(r.code).toBe(7);
    expect(r.stderr).toMatch(/too large|larger/i);
  });

  it('audits allowed and denied requests with agent, credential, host and path but no query, token or secret', async () => {
    await exec([
      '--template',
      template({
        credential: 'k',
        url: 'https://api.allowed.test/audited?token=xyz',
        headers: AUTH,
      }),
    ]);
    await exec([
      '--template',
      template({ credential: 'k', url: 'https://evil.test/denied?q=1', headers: AUTH }),
    ]);
    const lines = auditLines();
    const text = fs.readFileSync(path.join(t.home, 'audit', 'audit.log'), 'utf8');
    expect(text).not.toContain(CANARY);
    expect(text).not.toContain(agent.token);
    expect(text).not.toContain('token=xyz');
    const allowed = lines.find((l) => l.event === 'request.allowed' && l.data.path === '/audited');
    expect(allowed).toMatchObject({
      actor: { type: 'agent', id: agent.id },
      data: { credentials: ['k'], host: 'api.allowed.test', method: 'GET' },
    });
    const completed = lines.find((l) =>
      l.event === 'request.completed' && l.data.path === '/audited'
    );
    expect(completed?.data).toMatchObject({ status: 200 });
    const denied = lines.find((l) => l.event === 'request.denied' && l.data.path === '/denied');
    expect(denied).toMatchObject({
      outcome: 'denied',
      data: { reason: 'domain_not_allowed', host: 'evil.test' },
    });
    for (let i = 1; i < lines.length; i++) expect(lines[i]!.seq).toBe(lines[i - 1]!.seq + 1);
  });

  it('a forged audit line with an old timestamp does not reset a rate limit; a cut log fails closed', async () => {
    const h = await newHome();
    expect(
      (await addCredential(h, 'once', CANARY + 'O', [
        '--allowed-domains',
        'api.allowed.test',
        '--rate',
        '1/h',
      ])).code,
    ).toBe(0);
    const a = await newAgent(h, { grants: ['once'] });
    const tpl = h.file(
      't.json',
      JSON.stringify({ credential: 'once', url: 'https://api.allowed.test/forged', headers: AUTH }),
    );
    const caFile = h.file('ca.pem', TEST_CA);
    const run = () =>
      h.tp([
        'exec',
        '--template',
        tpl,
        '--cacert',
        caFile,
        '--connect-to',
        `api.allowed.test:443:127.0.0.1:${upstream.port}`,
        '--password-file',
        h.passwordFile,
      ], { env: { TRUST_PROTOCOL_TOKEN: a.token } });
    expect((await run()).code).toBe(0);
    const log = path.join(h.home, 'audit', 'audit.log');
    const lines = fs.readFileSync(log, 'utf8').trimEnd().split('\n');
    const last = JSON.parse(lines.at(-1)!);
    const forged = `{"v":1,"seq":${
      last.seq + 1
    },"ts":"2000-01-01T00:00:00.000Z","event":"request.denied","actor":{"type":"anyone"},"outcome":"denied","data":{},"prev":"${
      '0'.repeat(64)
    }","mac":null}`;
    fs.appendFileSync(log, forged + '\n', { mode: 0o600 });
    // Its `prev` does not name the entry before it: the chain is broken, nothing is sent.
    const second = await run();
    expect(second.code, second.stderr).toBe(8);
    expect(second.stderr).toMatch(/chain is broken/);
    fs.writeFileSync(log, lines.slice(0, -2).join('\n') + '\n');
    const cut = await run();
    expect(cut.code, cut.stderr).toBe(8);
    expect(cut.stderr).toMatch(/audit log ends at entry/);
  });

  it('--fail under --json reports the error as JSON; --template refuses curl flags', async () => {
    const tpl = template({
      credential: 'k',
      url: 'https://api.allowed.test/status/500',
      headers: AUTH,
    });
    const r = await exec(['--json', '--fail', '--template', tpl]);
    expect(r.code).toBe(22);
    expect(JSON.parse(r.stderr)).toEqual({
      error: {
        code: 'http_status',
        kind: 'http_status',
        message: 'the upstream answered HTTP 500',
      },
    });
    const mixed = await exec(['--template', tpl, '-H', 'X: 1']);
    expect(mixed.code).toBe(2);
    expect(mixed.stderr).toContain('--header');
  });

  it('a wrong password during exec is audited', async () => {
    const bad = t.file('bad-pw', 'wrong password entirely\n');
    const r = await t.tp([
      'exec',
      '--template',
      template({ credential: 'k', url: 'https://api.allowed.test/pw', headers: AUTH }),
      '--cacert',
      ca,
      '--password-file',
      bad,
    ], { env: { TRUST_PROTOCOL_TOKEN: agent.token } });
    expect(r.code).toBe(3);
    expect(
      auditLines().some((l) =>
        l.event === 'vault.unseal_failed' && l.data.reason === 'wrong_password' &&
        l.actor.id === agent.id
      ),
    ).toBe(true);
  });

  it('a rate limit (2/h) refuses the third request with exit 4 and a retry hint; the upstream got two; a rotation in between does not reset it', async () => {
    const before = upstream.requests.length;
    const tpl = template({
      credential: 'limited',
      url: 'https://api.allowed.test/rate',
      headers: AUTH,
    });
    expect((await exec(['--template', tpl])).code).toBe(0);
    expect((await exec(['--template', tpl])).code).toBe(0);
    // The two allowed requests are now in a closed segment, the live log empty.
    expect((await t.tp(['audit', 'rotate'])).code).toBe(0);
    const third = await exec(['--template', tpl]);
    expect(third.code).toBe(4);
    expect(third.stderr).toMatch(/rate limit[\s\S]*hint: retry after \d+ s/);
    expect(upstream.requests.length - before).toBe(2);
    expect(
      auditLines().some((l) => l.event === 'request.denied' && l.data.reason === 'rate_limited'),
    ).toBe(true);
  });
});

/** Runs exec as an unprivileged user: root ignores file permissions. */
function runAs(
  uid: number,
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number | null; stderr: string }> {
  const { file, argv } = command(args);
  return new Promise((resolve) => {
    const child = spawn('setpriv', [
      `--reuid=${uid}`,
      `--regid=${uid}`,
      '--clear-groups',
      file,
      ...argv,
    ], { env: baseEnv(env) });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stderr }));
  });
}

describe('fail closed when the audit trail cannot be written (exit 6, nothing sent)', () => {
  it('a read-only audit directory', async () => {
    if (process.getuid?.() !== 0 || !fs.existsSync('/usr/bin/setpriv')) {
      console.warn(
        'SKIPPED LOUDLY: read-only audit test needs root and setpriv to drop to an unprivileged user',
      );
      return;
    }
    const h = await newHome();
    expect((await addCredential(h, 'k', CANARY, ['--allowed-domains', 'api.allowed.test'])).code)
      .toBe(0);
    const a = await newAgent(h, { grants: ['k'] });
    const nobody = 65534;
    fs.chmodSync(h.dir, 0o755);
    for (
      const p of [
        h.dir,
        h.home,
        path.join(h.home, 'audit'),
        path.join(h.home, 'audit', 'audit.log'),
        path.join(h.home, 'vault.json'),
        h.passwordFile,
      ]
    ) {
      fs.chownSync(p, nobody, nobody);
    }
    const tpl = path.join(h.dir, 't.json');
    fs.writeFileSync(
      tpl,
      JSON.stringify({ credential: 'k', url: 'https://api.allowed.test/ro', headers: AUTH }),
    );
    const caFile = path.join(h.dir, 'ca-ro.pem');
    fs.writeFileSync(caFile, TEST_CA, { mode: 0o644 });
    fs.chmodSync(path.join(h.home, 'audit'), 0o500);
    fs.chmodSync(path.join(h.home, 'audit', 'audit.log'), 0o400);
    const denoDir = fs.mkdtempSync(path.join(h.dir, 'deno-'));
    fs.chownSync(denoDir, nobody, nobody);
    const before = upstream.requests.length;
    const bytesBefore = upstream.rawBytes().length;
    const r = await runAs(nobody, [
      '--home',
      h.home,
      'exec',
      '--template',
      tpl,
      '--cacert',
      caFile,
      '--connect-to',
      `api.allowed.test:443:127.0.0.1:${upstream.port}`,
      '--password-file',
      h.passwordFile,
    ], {
      TRUST_PROTOCOL_TOKEN: a.token,
      HOME: h.dir,
      DENO_DIR: denoDir,
    });
    expect(r.code, r.stderr).toBe(6);
    expect(r.stderr).toContain('audit trail cannot be written');
    expect(upstream.requests.length).toBe(before);
    expect(upstream.rawBytes().length).toBe(bytesBefore);
  });

  it('a full disk (file size limit): exit 6', async () => {
    const h = await newHome();
    expect((await addCredential(h, 'k', CANARY, ['--allowed-domains', 'api.allowed.test'])).code)
      .toBe(0);
    const a = await newAgent(h, { grants: ['k'] });
    const tpl = h.file(
      't.json',
      JSON.stringify({ credential: 'k', url: 'https://api.allowed.test/full', headers: AUTH }),
    );
    const caFile = h.file('ca.pem', TEST_CA);
    const size = fs.statSync(path.join(h.home, 'audit', 'audit.log')).size;
    expect(size).toBeGreaterThan(1024);
    const { file, argv } = command([
      '--home',
      h.home,
      'exec',
      '--template',
      tpl,
      '--cacert',
      caFile,
      '--connect-to',
      `api.allowed.test:443:127.0.0.1:${upstream.port}`,
      '--password-file',
      h.passwordFile,
    ]);
    const quoted = [file, ...argv].map((x) => `'${x.replace(/'/g, `'\\''`)}'`).join(' ');
    const before = upstream.rawBytes().length;
    // Writes past 1 KiB fail with EFBIG, as on a full disk; SIGXFSZ is ignored so the write errors.
    const code = await new Promise<number | null>((resolve) => {
      const child = spawn('bash', ['-c', `trap '' XFSZ; ulimit -f 1; exec ${quoted}`], {
        env: baseEnv({ TRUST_PROTOCOL_TOKEN: a.token }),
        stdio: 'ignore',
      });
      child.on('close', resolve);
    });
    expect(code).toBe(6);
    expect(upstream.rawBytes().length).toBe(before);
  });
});
