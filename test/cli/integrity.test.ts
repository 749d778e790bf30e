// deno-lint-ignore-file no-explicit-any -- these tests edit raw vault JSON by hand
import { describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  addCredential,
  baseEnv,
  command,
  newAgent,
  newHome,
  sharedHome,
  type TestHome,
} from '../helpers/cli.ts';
import { startHttpsListener, TEST_CA } from '../helpers/listeners.ts';

const CANARY = 'sk-integrity-canary-9d8e7f6a';

/** A credential and an agent, set up once for the file and copied for each test. */
const setupHome = sharedHome(async (t) => {
  expect((await addCredential(t, 'k', CANARY, ['--allowed-domains', 'api.allowed.test'])).code)
    .toBe(0);
  return await newAgent(t, { tier: 'COMPANION', grants: ['k'] });
});

async function setup() {
  const { t, value: agent } = await setupHome();
  return { t, agent };
}

function vaultPath(t: TestHome): string {
  return path.join(t.home, 'vault.json');
}

function editVault(t: TestHome, edit: (v: any) => void): void {
  const v = JSON.parse(fs.readFileSync(vaultPath(t), 'utf8'));
  edit(v);
  fs.writeFileSync(vaultPath(t), JSON.stringify(v, null, 2));
}

describe('hand-edited state never widens access', () => {
  const edits: Array<[string, (v: any, agentId: string) => void, string]> = [
    [
      'allowed domains widened',
      (v) => v.body.credentials[0].allowed_domains.push('evil.test'),
      'evil.test',
    ],
    ['any_domain switched on', (v) => {
      v.body.credentials[0].any_domain = true;
    }, 'evil.test'],
    ['min tier lowered', (v) => {
      v.body.credentials[0].min_tier = 'NOVICE';
    }, 'api.allowed.test'],
    ['agent tier raised', (v, id) => {
      v.body.agents.find((a: any) => a.id === id).tier = 'GUARDIAN';
    }, 'api.allowed.test'],
    ['grant added', (v, id) => {
      v.body.agents.find((a: any) => a.id === id).grants.push('other');
    }, 'api.allowed.test'],
    [
      'placement widened',
      (v) => v.body.credentials[0].placements.push('query'),
      'api.allowed.test',
    ],
    ['token expiry extended', (v, id) => {
      v.body.agents.find((a: any) => a.id === id).token_expires_at = '2099-01-01T00:00:00.000Z';
    }, 'api.allowed.test'],
  ];

  it.each(edits)('%s: exit 8, nothing sent', async (_name, edit, host) => {
    const { t, agent } = await setup();
    const allowed = await startHttpsListener();
    const attacker = await startHttpsListener();
    try {
      editVault(t, (v) => edit(v, agent.id));
      const ca = t.file('ca.pem', TEST_CA);
      const template = t.file(
        't.json',
        JSON.stringify({
          credential: 'k',
          url: `https://${host}/x?q=1`,
          headers: { Authorization: 'Bearer {{CREDENTIAL}}' },
        }),
      );
      const r = await t.tp([
        'exec',
        '--template',
        template,
        '--cacert',
        ca,
        '--password-file',
        t.passwordFile,
        '--connect-to',
        `api.allowed.test:443:127.0.0.1:${allowed.port}`,
        '--connect-to',
        `evil.test:443:127.0.0.1:${attacker.port}`,
      ], { env: { TRUST_PROTOCOL_TOKEN: agent.token } });
      expect(r.code, r.stderr).toBe(8);
      expect(r.stderr).toMatch(/modified outside trust-protocol/);
      expect(Buffer.from(attacker.rawBytes()).includes(CANARY)).toBe(false);
      expect(allowed.requests).toHaveLength(0);
      expect(attacker.requests).toHaveLength(0);
    } finally {
      await allowed.close();
      await attacker.close();
    }
  });

  it('a swapped credential ciphertext is detected even by admin commands', async () => {
    const { t } = await setup();
    expect((await addCredential(t, 'k2', CANARY + '-two', ['--allowed-domains', 'evil.test'])).code)
      .toBe(0);
    editVault(t, (v) => {
      const [a, b] = v.body.credentials;
      [a.value, b.value] = [b.value, a.value];
    });
    const r = await t.tp([
      'credential',
      'update',
      'k',
      '--min-tier',
      'PARTNER',
      '--password-file',
      t.passwordFile,
    ]);
    expect(r.code).toBe(8);
  });

  it('a truncated or garbage vault fails closed with exit 8', async () => {
    const { t, agent } = await setup();
    const original = fs.readFileSync(vaultPath(t));
    for (
      const bad of [
        original.subarray(0, original.length / 2),
        Buffer.from('garbage'),
        Buffer.from('{}'),
      ]
    ) {
      fs.writeFileSync(vaultPath(t), bad);
      const r = await t.tp(['agent', 'token', agent.id, '--password-file', t.passwordFile]);
      expect(r.code, r.stderr).toBe(8);
      expect(r.stderr).toMatch(/vault/);
    }
  });
});

describe('rollback of vault.json alone', () => {
  it('restoring a copy from before `agent revoke` does not bring the agent back (exit 8, nothing sent)', async () => {
    const { t, agent } = await setup();
    const upstream = await startHttpsListener();
    try {
      const old = fs.readFileSync(vaultPath(t));
      expect((await t.tp(['agent', 'revoke', agent.id, '--password-file', t.passwordFile])).code)
        .toBe(0);
      fs.writeFileSync(vaultPath(t), old);
      const ca = t.file('ca.pem', TEST_CA);
      const template = t.file(
        't.json',
        JSON.stringify({
          credential: 'k',
          url: 'https://api.allowed.test/x',
          headers: { Authorization: 'Bearer {{CREDENTIAL}}' },
        }),
      );
      const r = await t.tp([
        'exec',
        '--template',
        template,
        '--cacert',
        ca,
        '--password-file',
        t.passwordFile,
        '--connect-to',
        `api.allowed.test:443:127.0.0.1:${upstream.port}`,
      ], { env: { TRUST_PROTOCOL_TOKEN: agent.token } });
      expect(r.code, r.stderr).toBe(8);
      expect(r.stderr).toMatch(/older than the audit trail[\s\S]*agent\.revoke/);
      expect(upstream.requests).toHaveLength(0);
      // The operator accepts the trail and redoes the change with the password.
      expect((await t.tp(['audit', 'resync', '--password-file', t.passwordFile])).code).toBe(0);
      expect((await t.tp(['agent', 'revoke', agent.id, '--password-file', t.passwordFile])).code)
        .toBe(0);
      const again = await t.tp([
        'exec',
        '--template',
        template,
        '--cacert',
        ca,
        '--password-file',
        t.passwordFile,
        '--connect-to',
        `api.allowed.test:443:127.0.0.1:${upstream.port}`,
      ], { env: { TRUST_PROTOCOL_TOKEN: agent.token } });
      expect(again.code).toBe(4);
    } finally {
      await upstream.close();
    }
  });

  it('admin commands refuse a restored vault.json; `audit resync` lists what it lacks', async () => {
    const { t, agent } = await setup();
    const old = fs.readFileSync(vaultPath(t));
    expect((await t.tp(['agent', 'revoke', agent.id, '--password-file', t.passwordFile])).code)
      .toBe(0);
    fs.writeFileSync(vaultPath(t), old);
    const add = await t.tp([
      'credential',
      'add',
      'later',
      '--allowed-domains',
      'api.allowed.test',
      '--password-file',
      t.passwordFile,
    ], { input: CANARY + 'later' });
    expect(add.code).toBe(8);
    expect(add.stderr).toMatch(/older than the audit trail[\s\S]*audit resync/);
    const resync = await t.tp(['--json', 'audit', 'resync', '--password-file', t.passwordFile]);
    expect(resync.code, resync.stderr).toBe(0);
    expect(JSON.parse(resync.stdout).missed).toEqual([
      expect.objectContaining({ event: 'agent.revoke' }),
    ]);
    expect((await t.tp(['agent', 'revoke', agent.id, '--password-file', t.passwordFile])).code)
      .toBe(0);
    expect((await t.tp(['audit', 'verify', '--password-file', t.passwordFile])).code).toBe(0);
  });

  it('a cut audit log refilled past the recorded head is refused (exit 8, nothing sent)', async () => {
    const { t, agent } = await setup();
    const upstream = await startHttpsListener();
    try {
      const ca = t.file('ca.pem', TEST_CA);
      const template = t.file(
        't.json',
        JSON.stringify({
          credential: 'k',
          url: 'https://api.allowed.test/x',
          headers: { Authorization: 'Bearer {{CREDENTIAL}}' },
        }),
      );
      const exec = (token: string) =>
        t.tp([
          'exec',
          '--template',
          template,
          '--cacert',
          ca,
          '--password-file',
          t.passwordFile,
          '--connect-to',
          `api.allowed.test:443:127.0.0.1:${upstream.port}`,
        ], { env: { TRUST_PROTOCOL_TOKEN: token } });
      expect((await exec(agent.token)).code).toBe(0);
      const log = path.join(t.home, 'audit', 'audit.log');
      const lines = fs.readFileSync(log, 'utf8').trimEnd().split('\n');
      fs.writeFileSync(log, lines.slice(0, -3).join('\n') + '\n');
      for (let i = 0; i < 5; i++) expect((await exec('tpat_wrong')).code).toBe(4);
      const before = upstream.requests.length;
      const r = await exec(agent.token);
      expect(r.code, r.stderr).toBe(8);
      expect(r.stderr).toMatch(/rewritten/);
      expect(upstream.requests.length).toBe(before);
      expect((await t.tp(['audit', 'verify', '--password-file', t.passwordFile])).code).toBe(1);
    } finally {
      await upstream.close();
    }
  });

  it('malformed encodings in vault.json are integrity failures (exit 8), not crashes', async () => {
    const { t } = await setup();
    editVault(t, (v) => {
      v.slots[0].private_key.nonce = '!!not base64!!';
    });
    const r = await t.tp(['agent', 'register', 'x', '--password-file', t.passwordFile]);
    expect(r.code).toBe(8);
    expect(r.stderr).toMatch(/private_key\.nonce: expected standard base64/);
  });

  it('a symlinked audit directory is refused (exit 8)', async () => {
    const { t } = await setup();
    const real = path.join(t.dir, 'audit-elsewhere');
    fs.renameSync(path.join(t.home, 'audit'), real);
    fs.symlinkSync(real, path.join(t.home, 'audit'));
    const r = await t.tp(['agent', 'register', 'x', '--password-file', t.passwordFile]);
    expect(r.code).toBe(8);
    expect(r.stderr).toContain('symbolic link');
  });

  it('a state file readable by others is tightened back to 0600 when read', async () => {
    const { t } = await setup();
    fs.chmodSync(vaultPath(t), 0o644);
    expect((await t.tp(['credential', 'list'])).code).toBe(0);
    expect(fs.statSync(vaultPath(t)).mode & 0o777).toBe(0o600);
  });
});

describe('a FIFO in place of a state file is refused, never waited on', () => {
  // Opening a FIFO to read blocks until a writer comes: a process (serve, holding the keys)
  // would hang past its TTL.
  // [what, path in the home, exit code, what stderr says]
  const cases: Array<[string, string, number, string]> = [
    ['vault.json', 'vault.json', 8, 'not a regular file'],
    ['the audit log', 'audit/audit.log', 6, 'cannot be written (not_a_file)'],
    ['the brake journal', 'brakes/journal.log', 5, 'journal is not a regular file'],
    [
      'a brake file',
      'brakes/brk_0123456789abcdef.json',
      5,
      'brk_0123456789abcdef.json cannot be read',
    ],
  ];
  it.concurrent.each(cases)('%s', async (_what, name, code, message) => {
    const { t, agent } = await setup();
    const fifo = path.join(t.home, name);
    fs.rmSync(fifo, { force: true });
    expect(spawnSync('mkfifo', ['-m', '600', fifo]).status).toBe(0);
    const template = t.file(
      'template.json',
      JSON.stringify({
        credential: 'k',
        url: 'https://api.allowed.test/x',
        headers: { Authorization: 'Bearer {{CREDENTIAL}}' },
      }),
    );
    // A hang would end in the helper's kill, with another exit code than these.
    const r = await t.tp(
      ['exec', '--template', template, '--password-file', t.passwordFile],
      { env: { TRUST_PROTOCOL_TOKEN: agent.token } },
    );
    expect(r.code, r.stderr).toBe(code);
    expect(r.stderr).toContain(message);
    expect(r.stderr).not.toContain(CANARY);
  });

  it('vault.lock: an empty lock file is broken after 2 s, as when its owner died', async () => {
    const { t } = await setup();
    expect(spawnSync('mkfifo', ['-m', '600', path.join(t.home, 'vault.lock')]).status).toBe(0);
    const r = await t.tp(['agent', 'register', 'x', '--password-file', t.passwordFile]);
    expect(r.code, r.stderr).toBe(0);
    expect(fs.existsSync(path.join(t.home, 'vault.lock'))).toBe(false);
  });
});

/** Runs the CLI with its second rename (the vault's final save) failing: a crash in that window. */
function failSecondRename(args: string[]): Promise<number | null> {
  const { file, argv } = command(args);
  return new Promise((resolve) => {
    const child = spawn('strace', [
      '-f',
      '-o',
      '/dev/null',
      '-e',
      'trace=rename,renameat,renameat2',
      '-e',
      'inject=rename,renameat,renameat2:error=EIO:when=2',
      file,
      ...argv,
    ], { env: baseEnv(), stdio: 'ignore' });
    child.on('close', resolve);
  });
}

describe('a change interrupted between its audit entry and its vault write', () => {
  it('did not happen, and nothing is blocked: the next commands and requests work', async () => {
    if (!fs.existsSync('/usr/bin/strace')) throw new Error('strace is missing: run `make tools`');
    const { t, agent } = await setup();
    expect(
      await failSecondRename([
        '--home',
        t.home,
        'agent',
        'revoke',
        agent.id,
        '--password-file',
        t.passwordFile,
      ]),
    ).not.toBe(0);
    expect(JSON.parse(fs.readFileSync(vaultPath(t), 'utf8')).body.change_in_flight).toBe(true);
    // The revoke did not happen: the agent still works, and so does every admin command.
    const upstream = await startHttpsListener();
    try {
      const ca = t.file('ca.pem', TEST_CA);
      const template = t.file(
        't.json',
        JSON.stringify({
          credential: 'k',
          url: 'https://api.allowed.test/x',
          headers: { Authorization: 'Bearer {{CREDENTIAL}}' },
        }),
      );
      const r = await t.tp([
        'exec',
        '--template',
        template,
        '--cacert',
        ca,
        '--password-file',
        t.passwordFile,
        '--connect-to',
        `api.allowed.test:443:127.0.0.1:${upstream.port}`,
      ], { env: { TRUST_PROTOCOL_TOKEN: agent.token } });
      expect(r.code, r.stderr).toBe(0);
    } finally {
      await upstream.close();
    }
    expect((await t.tp(['agent', 'register', 'next', '--password-file', t.passwordFile])).code)
      .toBe(0);
    expect((await t.tp(['audit', 'verify', '--password-file', t.passwordFile])).code).toBe(0);
  });

  it('but a copy taken while a change was in flight, restored later, is refused (exit 8)', async () => {
    if (!fs.existsSync('/usr/bin/strace')) throw new Error('strace is missing: run `make tools`');
    const { t, agent } = await setup();
    expect(
      await failSecondRename([
        '--home',
        t.home,
        'agent',
        'register',
        'other',
        '--password-file',
        t.passwordFile,
      ]),
    ).not.toBe(0);
    const inFlight = fs.readFileSync(vaultPath(t));
    expect((await t.tp(['agent', 'revoke', agent.id, '--password-file', t.passwordFile])).code)
      .toBe(0);
    fs.writeFileSync(vaultPath(t), inFlight);
    const r = await t.tp(['agent', 'token', agent.id, '--password-file', t.passwordFile]);
    expect(r.code).toBe(8);
    expect(r.stderr).toMatch(/older than the audit trail/);
  });
});

describe('crash safety', () => {
  it('kill -9 during credential add leaves a vault that opens with all earlier credentials', async () => {
    const t = await newHome();
    for (let i = 0; i < 3; i++) {
      expect(
        (await addCredential(t, `keep${i}`, `${CANARY}${i}`, [
          '--allowed-domains',
          'api.allowed.test',
        ])).code,
      ).toBe(0);
    }
    for (const delayMs of [5, 30, 60, 90, 120, 180, 250]) {
      const { file, argv } = command([
        '--home',
        t.home,
        'credential',
        'add',
        `new${delayMs}`,
        '--allowed-domains',
        'api.allowed.test',
        '--password-file',
        t.passwordFile,
      ]);
      const child = spawn(file, argv, { env: baseEnv(), stdio: ['pipe', 'ignore', 'ignore'] });
      const closed = new Promise((r) => child.on('close', r));
      child.stdin.end(`${CANARY}-new`);
      await new Promise((r) => setTimeout(r, delayMs));
      child.kill('SIGKILL');
      await closed;
      const list = await t.tp(['credential', 'list', '--json']);
      expect(list.code, list.stderr).toBe(0);
      const names = JSON.parse(list.stdout).map((c: { name: string }) => c.name);
      expect(names).toEqual(expect.arrayContaining(['keep0', 'keep1', 'keep2']));
      // The vault still authenticates: a write with the password succeeds.
      const again = await t.tp([
        'agent',
        'register',
        `a${delayMs}`,
        '--password-file',
        t.passwordFile,
      ]);
      expect(again.code, again.stderr).toBe(0);
    }
    const leftovers = fs.readdirSync(t.home).filter((f) => f.endsWith('.tmp'));
    expect(leftovers.length).toBeLessThanOrEqual(7);
  });
});
