// deno-lint-ignore-file no-explicit-any -- audit lines and answers are read as raw JSON
/**
 * OIDC sign-in to serve's admin API (issue #19, SPEC §15), against a real OpenID provider run here
 * (test/helpers/oidc.ts): `admin login` with the device flow and with the authorization code flow
 * (PKCE, loopback redirect) gets an ID token; serve verifies it (signature against the issuer's
 * JWKS, iss, aud, exp) and acts within the linked admin's role, through the vault's role check, so
 * the audit entry names the admin. Every refused token changes nothing but the audit trail: one
 * MACed `admin.denied` entry per refusal, naming the reason and never the token.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  addAdmin,
  addCredential,
  baseEnv,
  command,
  newAgent,
  newHome,
  type TestHome,
} from '../helpers/cli.ts';
import { echoHandler, type Listener, startHttpsListener, TEST_CA } from '../helpers/listeners.ts';
import { CLIENT_ID, startProvider, type TestProvider } from '../helpers/oidc.ts';
import {
  header,
  http,
  type HttpResult,
  json,
  type Served,
  startServe,
  upstreamArgs,
} from '../helpers/serve.ts';

let t: TestHome;
let p: TestProvider;
let up: Listener;
let s: Served;
let ca: string;
const agents: Record<string, { id: string; token: string }> = {};

async function ok(args: string[]): Promise<string> {
  const r = await t.tp([...args, '--password-file', t.passwordFile]);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout;
}

beforeAll(async () => {
  p = await startProvider();
  up = await startHttpsListener(echoHandler);
  t = await newHome();
  ca = t.file('ca.pem', TEST_CA);
  expect(
    (await addCredential(t, 'k', 'canary-value', [
      '--allowed-domains',
      'api.allowed.test',
      '--placement',
      'header',
    ])).code,
  ).toBe(0);
  for (const name of ['bot', 'other', 'third']) {
    agents[name] = await newAgent(t, { name, grants: ['k'] });
  }
  await addAdmin(t, 'ops', 'operator');
  await addAdmin(t, 'audi', 'auditor');
  await ok(['admin', 'oidc', 'add', '--issuer', p.issuer, '--client-id', CLIENT_ID]);
  await ok(['admin', 'link', 'ops', '--issuer', p.issuer, '--subject', 'alice']);
  await ok(['admin', 'link', 'audi', '--issuer', p.issuer, '--subject', 'bob']);
  s = await startServe(t, upstreamArgs(t, up.port));
}, 120_000);

afterAll(async () => {
  await s?.stop();
  await up?.close();
  await p?.close();
});

function admin(pathName: string, token: string | null, method = 'POST') {
  return http(s, pathName, {
    method,
    headers: token === null ? {} : { Authorization: `Bearer ${token}` },
    ...(method === 'POST' ? { body: '{}' } : {}),
  });
}

async function agentState(id: string): Promise<string> {
  const r = await t.tp(['--json', 'agent', 'show', id]);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout).state;
}

async function auditLines(): Promise<any[]> {
  const r = await t.tp(['--json', 'audit', 'show', '--password-file', t.passwordFile]);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.trim().split('\n').map((l) => JSON.parse(l));
}

/**
 * The `admin.denied` entries of refusals, found by the seq each answer names
 * (Trust-Protocol-Audit-Seq): one per refusal, MACed, its reason the answer's error code.
 */
async function deniedEntries(h: TestHome, refusals: readonly HttpResult[]): Promise<any[]> {
  const r = await h.tp(['--json', 'audit', 'show', '--password-file', h.passwordFile]);
  expect(r.code, r.stderr).toBe(0);
  const bySeq = new Map<number, any>(
    r.stdout.trim().split('\n').map((l) => JSON.parse(l)).map((e) => [e.seq, e]),
  );
  const seqs = refusals.map((res) => Number(header(res, 'Trust-Protocol-Audit-Seq')));
  expect(new Set(seqs).size, 'one entry per refusal').toBe(refusals.length);
  return refusals.map((res, i) => {
    const entry = bySeq.get(seqs[i] as number);
    expect(entry, `${res.status} ${res.body.toString()}`).toBeDefined();
    expect(entry.event).toBe('admin.denied');
    expect(entry.outcome).toBe('denied');
    expect(entry.mac).toMatch(/^[0-9a-f]{64}$/);
    expect(entry.data.reason).toBe(json(res).error.code);
    expect(entry.data.kind).toBe(json(res).error.kind);
    return entry;
  });
}

/** `audit verify` with the password: the chain and every MAC, the new entries included. */
async function expectAuditVerifies(h: TestHome): Promise<void> {
  const r = await h.tp(['audit', 'verify', '--password-file', h.passwordFile]);
  expect(r.code, r.stdout + r.stderr).toBe(0);
}

/** No token, and no part of one (JWT header, payload, signature), anywhere in the audit trail. */
function expectNoTokenBytes(h: TestHome, tokens: readonly string[]): void {
  const dir = path.join(h.home, 'audit');
  const trail = fs.readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((f) => f.isFile())
    .map((f) => fs.readFileSync(path.join(f.parentPath, f.name), 'latin1'))
    .join('\n');
  expect(trail).toContain('admin.denied');
  for (const [i, token] of tokens.entries()) {
    for (const [j, part] of [token, ...token.split('.')].entries()) {
      // The message names the part, never its bytes: a test log is a log too.
      if (part !== '') expect(trail.includes(part), `token ${i}, part ${j}`).toBe(false);
    }
  }
}

/** Runs `admin login` until it prints where to go; the browser step is the test's. */
function login(args: string[]): {
  proc: ChildProcess;
  url: Promise<string>;
  done: Promise<{ code: number | null; stdout: string; stderr: string }>;
} {
  const { file, argv } = command([
    '--home',
    t.home,
    'admin',
    'login',
    '--issuer',
    p.issuer,
    '--client-id',
    CLIENT_ID,
    '--cacert',
    ca,
    ...args,
  ]);
  const proc = spawn(file, argv, { env: baseEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let found: (u: string) => void;
  const url = new Promise<string>((resolve) => (found = resolve));
  proc.stdout?.on('data', (d) => (stdout += d.toString()));
  proc.stderr?.on('data', (d) => {
    stderr += d.toString();
    // The device flow's complete URI carries the code; the PKCE flow prints one URL.
    const m = /(https:\/\/127\.0\.0\.1:\d+\/\S+)\n/.exec(
      args.includes('--device') ? stderr.replace(/^.*enter the code.*$/m, '') : stderr,
    );
    if (m !== null) found((m[1] as string).replace(/\)$/, ''));
  });
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    proc.on('close', (code) => resolve({ code, stdout, stderr }))
  );
  return { proc, url, done };
}

function tokenFile(): string {
  return path.join(t.home, 'admin-token.json');
}

describe('admin login and the admin API', () => {
  it(
    'device flow: an operator signs in, suspends an agent through serve; its exec is refused',
    async () => {
      p.account = 'alice';
      const l = login(['--device']);
      const page = await p.browse(await l.url);
      expect(page.status, page.body).toBe(200);
      const r = await l.done;
      expect(r.code, r.stderr).toBe(0);
      expect(fs.statSync(tokenFile()).mode & 0o777).toBe(0o600);
      const token = JSON.parse(fs.readFileSync(tokenFile(), 'utf8')).id_token as string;
      // The token is a credential: never printed without --print.
      expect(r.stdout + r.stderr).not.toContain(token);

      const who = await t.tp(['--json', 'admin', 'whoami', '--server', s.url]);
      expect(who.code, who.stderr).toBe(0);
      expect(JSON.parse(who.stdout)).toMatchObject({
        admin: 'ops',
        role: 'operator',
        issuer: p.issuer,
        subject: 'alice',
      });

      const listed = await admin('/v1/admin/agents', token, 'GET');
      expect(listed.status).toBe(200);
      expect(JSON.stringify(json(listed))).not.toContain(agents.bot!.token);
      expect(json(listed).agents.map((a: any) => a.name)).toContain('bot');

      const res = await admin(`/v1/admin/agents/${agents.bot!.id}/suspend`, token);
      expect(res.status, res.body.toString()).toBe(200);
      expect(await agentState(agents.bot!.id)).toBe('suspended');

      const before = up.requests.length;
      const exec = await t.tp([
        'exec',
        '--server',
        s.url,
        'https://api.allowed.test/after-suspend',
        '-H',
        'Authorization: Bearer {{CREDENTIAL}}',
        '--credential',
        'k',
      ], { env: { TRUST_PROTOCOL_TOKEN: agents.bot!.token } });
      expect(exec.code, exec.stderr).toBe(4);
      expect(exec.stderr).toContain('suspended');
      expect(up.requests.length).toBe(before);

      const entry = (await auditLines()).find((e) =>
        e.event === 'agent.suspend' && e.data.agent === agents.bot!.id
      );
      expect(entry.actor).toEqual({ type: 'operator', id: 'ops' });
      expect(entry.data.via).toEqual({ method: 'oidc', issuer: p.issuer, subject: 'alice' });

      const resumed = await admin(`/v1/admin/agents/${agents.bot!.id}/resume`, token);
      expect(resumed.status).toBe(200);
      expect(await agentState(agents.bot!.id)).toBe('active');
    },
    120_000,
  );

  it('authorization code with PKCE on a loopback redirect', async () => {
    p.account = 'alice';
    const l = login(['--print']);
    const authorize = new URL(await l.url);
    expect(authorize.searchParams.get('code_challenge_method')).toBe('S256');
    expect(authorize.searchParams.get('redirect_uri')).toMatch(
      /^http:\/\/127\.0\.0\.1:\d+\/callback$/,
    );
    expect(authorize.searchParams.get('state')).toMatch(/.{16,}/);
    expect(authorize.searchParams.get('nonce')).toMatch(/.{16,}/);
    const page = await p.browse(authorize.href);
    expect(page.status, page.body).toBe(200);
    const r = await l.done;
    expect(r.code, r.stderr).toBe(0);
    const token = r.stdout.trim();
    const who = await admin('/v1/admin/whoami', token, 'GET');
    expect(who.status).toBe(200);
    expect(json(who)).toMatchObject({ admin: 'ops', role: 'operator', via: 'oidc' });
  }, 120_000);

  it('a callback with the wrong state is refused, and login fails', async () => {
    const l = login(['--print']);
    const authorize = new URL(await l.url);
    const redirect = authorize.searchParams.get('redirect_uri') as string;
    const r1 = await fetch(`${redirect}?code=forged&state=not-the-state`);
    expect(r1.status).toBe(400);
    const r = await l.done;
    expect(r.code).not.toBe(0);
    expect(r.stdout).toBe('');
  }, 60_000);

  it('an auditor is refused a suspend (403), nothing changes; the refusal is audited', async () => {
    const token = await p.sign({ sub: 'bob' });
    const who = await admin('/v1/admin/whoami', token, 'GET');
    expect(json(who)).toMatchObject({ admin: 'audi', role: 'auditor' });
    const lines = (await auditLines()).length;
    const res = await admin(`/v1/admin/agents/${agents.other!.id}/suspend`, token);
    expect(res.status).toBe(403);
    expect(json(res).error.code).toBe('role_denied');
    expect(await agentState(agents.other!.id)).toBe('active');
    const entries = await auditLines();
    expect(entries.slice(lines).map((e) => e.event)).toEqual(['admin.denied']);
    const [entry] = await deniedEntries(t, [res]);
    expect(entry.actor).toEqual({ type: 'operator', id: 'audi' });
    expect(entry.data).toEqual({
      reason: 'role_denied',
      kind: 'sealed',
      route: '/v1/admin/agents/{id}/suspend',
      method: 'POST',
      issuer: p.issuer,
      subject: 'bob',
      admin: 'audi',
      agent: agents.other!.id,
    });
    await expectAuditVerifies(t);
    expectNoTokenBytes(t, [token]);
  }, 60_000);

  it(
    'refuses expired, wrongly signed, wrong-audience, unknown-issuer, unsigned and agent tokens (401), each audited',
    async () => {
      const now = Math.floor(Date.now() / 1000);
      const { privateKey: other } = await generateKeyPair('RS256');
      const cases: Record<string, string> = {
        expired: await p.sign({ sub: 'alice', iat: now - 7200, exp: now - 3600 }),
        not_yet_valid: await p.sign({ sub: 'alice', nbf: now + 3600 }),
        wrong_key: await p.sign({ sub: 'alice' }, other),
        wrong_key_other_kid: await p.sign({ sub: 'alice' }, other, 'another-key'),
        wrong_audience: await p.sign({ sub: 'alice', aud: 'someone-else' }),
        // OIDC Core 3.1.3.7: several audiences need azp naming this client.
        shared_audience_no_azp: await p.sign({ sub: 'alice', aud: [CLIENT_ID, 'someone-else'] }),
        azp_another_client: await p.sign({ sub: 'alice', azp: 'someone-else' }),
        unknown_issuer: await p.sign({ sub: 'alice', iss: 'https://127.0.0.1:1' }),
        unlinked_subject: await p.sign({ sub: 'mallory' }),
        unsigned: `${btoa(JSON.stringify({ alg: 'none' })).replace(/=+$/, '')}.${
          btoa(JSON.stringify({ iss: p.issuer, aud: CLIENT_ID, sub: 'alice', exp: now + 600 }))
            .replace(/=+$/, '')
        }.`,
        hs256_with_public_key: await new SignJWT({ iss: p.issuer, aud: CLIENT_ID, sub: 'alice' })
          .setProtectedHeader({ alg: 'HS256', kid: 'test-key' })
          .setIssuedAt()
          .setExpirationTime('10m')
          .sign(new TextEncoder().encode('a shared secret anyone could pick')),
        agent_token: agents.third!.token,
      };
      const lines = (await auditLines()).length;
      const refusals: Array<{ name: string; res: HttpResult; route: string }> = [];
      for (const [name, token] of Object.entries(cases)) {
        const res = await admin(`/v1/admin/agents/${agents.third!.id}/suspend`, token);
        expect(res.status, `${name}: ${res.body.toString()}`).toBe(401);
        expect(JSON.stringify(json(res))).not.toContain(token);
        const who = await admin('/v1/admin/whoami', token, 'GET');
        expect(who.status, name).toBe(401);
        refusals.push({ name, res, route: '/v1/admin/agents/{id}/suspend' });
        refusals.push({ name, res: who, route: '/v1/admin/whoami' });
      }
      const bare = await admin('/v1/admin/whoami', null, 'GET');
      expect(bare.status).toBe(401);
      refusals.push({ name: 'no token', res: bare, route: '/v1/admin/whoami' });
      expect(await agentState(agents.third!.id)).toBe('active');

      // Nothing changed but the trail: one MACed admin.denied per refusal, in order.
      const added = (await auditLines()).slice(lines);
      expect(added.map((e) => e.event)).toEqual(refusals.map(() => 'admin.denied'));
      const entries = await deniedEntries(t, refusals.map((r) => r.res));
      const reasons: Record<string, string> = {};
      for (const [i, { name, route }] of refusals.entries()) {
        const entry = entries[i];
        reasons[name] = entry.data.reason;
        expect(entry.data.route, name).toBe(route);
        if (name === 'unlinked_subject') {
          // The token verified: its issuer and subject are the provider's word, not the caller's.
          expect(entry.actor, name).toEqual({ type: 'anyone' });
          expect(entry.data, name).toMatchObject({ issuer: p.issuer, subject: 'mallory' });
          expect(entry.data.admin, name).toBeUndefined();
        } else {
          expect(entry.actor, name).toEqual({ type: 'anyone' });
          expect(Object.keys(entry.data), name).toEqual(['reason', 'kind', 'route', 'method']);
        }
      }
      expect(reasons).toMatchObject({
        expired: 'admin_token_expired',
        wrong_key: 'admin_token_invalid',
        wrong_audience: 'admin_token_invalid',
        unknown_issuer: 'unknown_issuer',
        unlinked_subject: 'unlinked_identity',
        unsigned: 'admin_token_invalid',
        hs256_with_public_key: 'admin_token_invalid',
        agent_token: 'admin_token_invalid',
        'no token': 'admin_token_invalid',
      });
      await expectAuditVerifies(t);
      expectNoTokenBytes(t, Object.values(cases));
    },
    120_000,
  );

  it('a role claim counts only where configured, and never raises the role', async () => {
    const owner = await p.sign({ sub: 'alice', tp_role: 'owner' });
    const auditor = await p.sign({ sub: 'alice', tp_role: 'auditor' });
    expect(json(await admin('/v1/admin/whoami', auditor, 'GET')).role).toBe('operator');
    await ok([
      'admin',
      'oidc',
      'add',
      '--issuer',
      p.issuer,
      '--client-id',
      CLIENT_ID,
      '--role-claim',
      'tp_role',
    ]);
    try {
      expect(json(await admin('/v1/admin/whoami', auditor, 'GET')).role).toBe('auditor');
      expect(json(await admin('/v1/admin/whoami', owner, 'GET')).role).toBe('operator');
      const none = await p.sign({ sub: 'alice' });
      const unclaimed = await admin('/v1/admin/whoami', none, 'GET');
      expect(unclaimed.status).toBe(403);
      const res = await admin(`/v1/admin/agents/${agents.other!.id}/suspend`, auditor);
      expect(res.status).toBe(403);
      expect(await agentState(agents.other!.id)).toBe('active');
      const [noClaim, lowered] = await deniedEntries(t, [unclaimed, res]);
      expect(noClaim.data).toMatchObject({
        reason: 'no_role_claim',
        route: '/v1/admin/whoami',
        issuer: p.issuer,
        subject: 'alice',
        admin: 'ops',
      });
      expect(lowered.data).toMatchObject({ reason: 'role_denied', admin: 'ops' });
      expectNoTokenBytes(t, [owner, auditor, none]);
    } finally {
      await ok(['admin', 'oidc', 'add', '--issuer', p.issuer, '--client-id', CLIENT_ID]);
    }
  }, 60_000);

  it('an operator pulls a brake through the admin API; an auditor may not', async () => {
    const body = JSON.stringify({
      scope: 'agent',
      agent_id: agents.third!.id,
      reason: 'oidc test',
    });
    const auditor = await p.sign({ sub: 'bob' });
    const refused = await http(s, '/v1/admin/brake', {
      method: 'POST',
      headers: { Authorization: `Bearer ${auditor}`, 'Content-Type': 'application/json' },
      body,
    });
    expect(refused.status).toBe(403);
    const [denial] = await deniedEntries(t, [refused]);
    expect(denial.data).toMatchObject({
      reason: 'role_denied',
      route: '/v1/admin/brake',
      method: 'POST',
      admin: 'audi',
    });
    const statusBefore = await t.tp(['--json', 'emergency', 'status']);
    expect(statusBefore.stdout).not.toContain(agents.third!.id);
    const operator = await p.sign({ sub: 'alice' });
    const pulled = await http(s, '/v1/admin/brake', {
      method: 'POST',
      headers: { Authorization: `Bearer ${operator}`, 'Content-Type': 'application/json' },
      body,
    });
    expect(pulled.status, pulled.body.toString()).toBe(200);
    const entry = (await auditLines()).find((e) =>
      e.event === 'brake.activate' && e.data.brake === json(pulled).id
    );
    expect(entry.actor).toEqual({ type: 'operator', id: 'ops' });
    expect(entry.data.via).toEqual({ method: 'oidc', issuer: p.issuer, subject: 'alice' });
    expect(entry.mac).not.toBeNull();
  }, 60_000);

  it('with --audience, JWT access tokens for that audience sign in, ID tokens do not', async () => {
    const access = await p.sign({ sub: 'alice', aud: 'https://tp.example/admin' });
    const idToken = await p.sign({ sub: 'alice' });
    expect((await admin('/v1/admin/whoami', access, 'GET')).status).toBe(401);
    await ok([
      'admin',
      'oidc',
      'add',
      '--issuer',
      p.issuer,
      '--client-id',
      CLIENT_ID,
      '--audience',
      'https://tp.example/admin',
    ]);
    try {
      expect((await admin('/v1/admin/whoami', access, 'GET')).status).toBe(200);
      expect((await admin('/v1/admin/whoami', idToken, 'GET')).status).toBe(401);
    } finally {
      await ok(['admin', 'oidc', 'add', '--issuer', p.issuer, '--client-id', CLIENT_ID]);
    }
  }, 60_000);

  it('removing a link refuses that identity at its next request (401)', async () => {
    const token = await p.sign({ sub: 'bob' });
    expect((await admin('/v1/admin/whoami', token, 'GET')).status).toBe(200);
    await ok(['admin', 'oidc', 'remove', '--issuer', p.issuer, '--subject', 'bob']);
    try {
      const res = await admin('/v1/admin/whoami', token, 'GET');
      expect(res.status).toBe(401);
      expect(json(res).error.code).toBe('unlinked_identity');
    } finally {
      await ok(['admin', 'link', 'audi', '--issuer', p.issuer, '--subject', 'bob']);
    }
  }, 60_000);

  it('the admin API refuses web pages and other host names', async () => {
    const token = await p.sign({ sub: 'alice' });
    const origin = await http(s, '/v1/admin/whoami', {
      headers: { Authorization: `Bearer ${token}`, Origin: 'https://evil.test' },
    });
    expect(origin.status).toBe(403);
    const host = await http(s, '/v1/admin/whoami', {
      headers: { Authorization: `Bearer ${token}` },
      host: 'evil.test',
    });
    expect(host.status).toBe(403);
  }, 60_000);
});

describe('OIDC configuration is the owner’s, under the vault MAC', () => {
  it('an operator cannot add an issuer or link an identity (exit 3)', async () => {
    const h = await newHome();
    const pw = h.file('pw-op', 'operator password\n');
    const r0 = await h.tp([
      'admin',
      'add',
      'op',
      '--role',
      'operator',
      '--new-password-file',
      pw,
      '--password-file',
      h.passwordFile,
    ]);
    expect(r0.code, r0.stderr).toBe(0);
    const add = await h.tp([
      'admin',
      'oidc',
      'add',
      '--issuer',
      'https://127.0.0.1:9/',
      '--client-id',
      'x',
      '--admin',
      'op',
      '--password-file',
      pw,
    ]);
    expect(add.code, add.stderr).toBe(3);
    expect(add.stderr).toMatch(/role operator, which may not do this \(admin\.oidc_issuer\)/);
  }, 60_000);

  it(
    "serve fetches the issuer's keys with its own --cacert only, not the environment's",
    async () => {
      const h = await newHome();
      const run = async (args: string[]) => {
        const r = await h.tp([...args, '--password-file', h.passwordFile]);
        expect(r.code, r.stderr).toBe(0);
      };
      await run(['admin', 'oidc', 'add', '--issuer', p.issuer, '--client-id', CLIENT_ID]);
      await run(['admin', 'link', 'owner', '--issuer', p.issuer, '--subject', 'carol']);
      const caFile = h.file('ca.pem', TEST_CA);
      const bare = await startServe(h, ['--listen', '127.0.0.1:0'], {
        env: { NODE_EXTRA_CA_CERTS: caFile, SSL_CERT_FILE: caFile, DENO_CERT: caFile },
      });
      try {
        const token = await p.sign({ sub: 'carol' });
        const r = await http(bare, '/v1/admin/whoami', {
          headers: { Authorization: `Bearer ${token}` },
        });
        expect(r.status).toBe(502);
        expect(json(r).error.code).toBe('oidc_discovery');
      } finally {
        await bare.stop();
      }
    },
    60_000,
  );

  it(
    "removing an admin drops its links: a later admin of the same name is not the old identity's",
    async () => {
      const h = await newHome();
      const run = async (args: string[]) => {
        const r = await h.tp([...args, '--password-file', h.passwordFile]);
        expect(r.code, r.stderr).toBe(0);
      };
      await run(['admin', 'oidc', 'add', '--issuer', p.issuer, '--client-id', CLIENT_ID]);
      await run([
        'admin',
        'add',
        'sam',
        '--role',
        'auditor',
        '--new-password-file',
        h.file('pw-a', 'first sam password\n'),
      ]);
      await run(['admin', 'link', 'sam', '--issuer', p.issuer, '--subject', 'frank']);
      await run(['admin', 'remove', 'sam']);
      // Another person, another role, the same name: frank's old link must not reach it.
      await run([
        'admin',
        'add',
        'sam',
        '--role',
        'admin',
        '--new-password-file',
        h.file('pw-b', 'second sam password\n'),
      ]);
      const served = await startServe(h, [
        '--listen',
        '127.0.0.1:0',
        '--cacert',
        h.file('ca.pem', TEST_CA),
      ]);
      try {
        const r = await http(served, '/v1/admin/whoami', {
          headers: { Authorization: `Bearer ${await p.sign({ sub: 'frank' })}` },
        });
        expect(r.status, r.body.toString()).toBe(401);
        expect(json(r).error.code).toBe('unlinked_identity');
      } finally {
        await served.stop();
      }
    },
    60_000,
  );

  it('an admin added already linked (admin add --issuer --subject) signs in to serve', async () => {
    const h = await newHome();
    const run = async (args: string[]) => {
      const r = await h.tp([...args, '--password-file', h.passwordFile]);
      expect(r.code, r.stderr).toBe(0);
    };
    await run(['admin', 'oidc', 'add', '--issuer', p.issuer, '--client-id', CLIENT_ID]);
    await run([
      'admin',
      'add',
      'erin',
      '--role',
      'auditor',
      '--issuer',
      p.issuer,
      '--subject',
      'erin',
      '--new-password-file',
      h.file('pw-erin', 'erin password\n'),
    ]);
    const served = await startServe(h, [
      '--listen',
      '127.0.0.1:0',
      '--cacert',
      h.file('ca.pem', TEST_CA),
    ]);
    try {
      const r = await http(served, '/v1/admin/whoami', {
        headers: { Authorization: `Bearer ${await p.sign({ sub: 'erin' })}` },
      });
      expect(r.status, r.body.toString()).toBe(200);
      expect(json(r)).toMatchObject({ admin: 'erin', role: 'auditor', subject: 'erin' });
    } finally {
      await served.stop();
    }
  }, 60_000);

  it('nobody signs in above the role of the admin who unsealed serve', async () => {
    const h = await newHome();
    const run = async (args: string[]) => {
      const r = await h.tp([...args, '--password-file', h.passwordFile]);
      expect(r.code, r.stderr).toBe(0);
    };
    const pw = h.file('pw-op', 'operator password\n');
    await run(['admin', 'add', 'op', '--role', 'operator', '--new-password-file', pw]);
    await run(['admin', 'oidc', 'add', '--issuer', p.issuer, '--client-id', CLIENT_ID]);
    await run(['admin', 'link', 'owner', '--issuer', p.issuer, '--subject', 'carol']);
    const caFile = h.file('ca.pem', TEST_CA);
    const byOperator = await startServe(h, [
      '--listen',
      '127.0.0.1:0',
      '--cacert',
      caFile,
      '--admin',
      'op',
      '--password-file',
      pw,
    ], { password: false });
    try {
      const token = await p.sign({ sub: 'carol' });
      const r = await http(byOperator, '/v1/admin/whoami', {
        headers: { Authorization: `Bearer ${token}` },
      });
      expect(r.status, r.body.toString()).toBe(200);
      expect(json(r)).toMatchObject({ admin: 'owner', role: 'operator', slot_role: 'owner' });
    } finally {
      await byOperator.stop();
    }
  }, 60_000);

  it('an org admin signed in acts only within its organisation', async () => {
    const h = await newHome({ fresh: true });
    const run = async (args: string[]) => {
      const r = await h.tp([...args, '--password-file', h.passwordFile]);
      expect(r.code, r.stderr).toBe(0);
      return r.stdout;
    };
    const pw = h.file('pw-red', 'red operator password\n');
    await run([
      'admin',
      'add',
      'redops',
      '--role',
      'operator',
      '--org',
      'red',
      '--new-password-file',
      pw,
    ]);
    const red = JSON.parse(await run(['--json', 'agent', 'register', 'redbot', '--org', 'red']));
    const wide = JSON.parse(await run(['--json', 'agent', 'register', 'widebot']));
    await run(['admin', 'oidc', 'add', '--issuer', p.issuer, '--client-id', CLIENT_ID]);
    await run(['admin', 'link', 'redops', '--issuer', p.issuer, '--subject', 'dave']);
    const served = await startServe(h, [
      '--listen',
      '127.0.0.1:0',
      '--cacert',
      h.file('ca.pem', TEST_CA),
    ]);
    const state = async (id: string) =>
      JSON.parse((await h.tp(['--json', 'agent', 'show', id])).stdout).state;
    try {
      const token = await p.sign({ sub: 'dave' });
      const call = (route: string, method = 'POST') =>
        http(served, route, {
          method,
          headers: { Authorization: `Bearer ${token}` },
          ...(method === 'POST' ? { body: '{}' } : {}),
        });
      const listed = json(await call('/v1/admin/agents', 'GET')).agents.map((a: { id: string }) =>
        a.id
      );
      expect(listed).toEqual([red.id]);
      const denied = await call(`/v1/admin/agents/${wide.id}/suspend`);
      expect(denied.status, denied.body.toString()).toBe(403);
      expect(await state(wide.id)).toBe('active');
      const allowed = await call(`/v1/admin/agents/${red.id}/suspend`);
      expect(allowed.status, allowed.body.toString()).toBe(200);
      expect(await state(red.id)).toBe('suspended');

      // Brakes too: an org operator stops its own organisation, never everyone or another's agent.
      const brake = (body: Record<string, unknown>) =>
        http(served, '/v1/admin/brake', {
          method: 'POST',
          headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
          body: JSON.stringify({ reason: 'org test', ...body }),
        });
      const braked = async () => JSON.parse((await h.tp(['--json', 'emergency', 'status'])).stdout);
      const refusals = [denied];
      for (const body of [{ scope: 'global' }, { scope: 'agent', agent_id: wide.id }]) {
        const r = await brake(body);
        expect(r.status, `${JSON.stringify(body)}: ${r.body.toString()}`).toBe(403);
        refusals.push(r);
      }
      expect(await braked()).toMatchObject({ global: null, agents: [] });
      const entries = await deniedEntries(h, refusals);
      for (const e of entries) {
        expect(e.actor).toEqual({ type: 'operator', id: 'redops' });
        expect(e.data).toMatchObject({
          reason: 'org_denied',
          issuer: p.issuer,
          subject: 'dave',
          admin: 'redops',
          org: 'red',
        });
      }
      expect(entries.map((e) => e.data.route)).toEqual([
        '/v1/admin/agents/{id}/suspend',
        '/v1/admin/brake',
        '/v1/admin/brake',
      ]);
      expect(entries[0].data.agent).toBe(wide.id);
      await expectAuditVerifies(h);
      expectNoTokenBytes(h, [token]);
      const own = await brake({ scope: 'org' });
      expect(own.status, own.body.toString()).toBe(200);
      expect(json(own)).toMatchObject({ scope: 'org', target: 'red' });
      const mine = await brake({ scope: 'agent', agent_id: red.id });
      expect(mine.status, mine.body.toString()).toBe(200);
    } finally {
      await served.stop();
    }
  }, 120_000);

  it('an issuer written into vault.json by hand stops serve (exit 8)', async () => {
    const h = await newHome();
    const file = path.join(h.home, 'vault.json');
    const v = JSON.parse(fs.readFileSync(file, 'utf8'));
    v.body.oidc = {
      issuers: [{
        issuer: 'https://127.0.0.1:9',
        client_id: 'x',
        audience: null,
        role_claim: null,
        added_at: v.body.created_at,
      }],
      links: [{ admin: 'owner', issuer: 'https://127.0.0.1:9', subject: 'agent' }],
    };
    fs.writeFileSync(file, JSON.stringify(v));
    const start = await startServe(h, ['--listen', '127.0.0.1:0']).then(
      (x) => x.stop().then(() => 0),
      (e: Error) => String(e.message),
    );
    expect(String(start)).toMatch(/exited with 8/);
  }, 60_000);
});
