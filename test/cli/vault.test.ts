import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { newHome, PASSWORD, run } from '../helpers/cli.ts';

const FLOOR = ['--kdf-memory-mib', '19', '--kdf-iterations', '2'];

describe('init, status, passwd', () => {
  it('creates a 0700 home with 0600 files, and refuses a second init', async () => {
    const t = await newHome();
    expect(fs.statSync(t.home).mode & 0o777).toBe(0o700);
    expect(fs.statSync(path.join(t.home, 'vault.json')).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.join(t.home, 'audit', 'audit.log')).mode & 0o777).toBe(0o600);
    const again = await t.tp(['init', ...FLOOR, '--password-file', t.passwordFile]);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('already exists');
  });

  it('refuses KDF parameters below the floor', async () => {
    const t = await newHome({ init: false });
    const r = await t.tp([
      'init',
      '--kdf-memory-mib',
      '18',
      '--kdf-iterations',
      '2',
      '--password-file',
      t.passwordFile,
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/floor/);
    const r2 = await t.tp([
      'init',
      '--kdf-memory-mib',
      '19',
      '--kdf-iterations',
      '1',
      '--password-file',
      t.passwordFile,
    ]);
    expect(r2.code).toBe(2);
    expect(fs.existsSync(t.home)).toBe(false);
  });

  it('never stores the password or a fast password hash', async () => {
    const t = await newHome();
    const vault = fs.readFileSync(path.join(t.home, 'vault.json'), 'utf8');
    expect(vault).not.toContain(PASSWORD);
    const parsed = JSON.parse(vault);
    expect(Object.keys(parsed).sort()).toEqual(['body', 'format', 'mac', 'slots', 'version']);
    expect(Object.keys(parsed.slots[0]).sort()).toEqual([
      'created_at',
      'kdf',
      'key',
      'name',
      'private_key',
      'public_key',
      'role',
    ]);
    expect(parsed.slots[0].kdf).toMatchObject({
      algorithm: 'argon2id',
      memory_kib: 19 * 1024,
      iterations: 2,
    });
  });

  it('with no password source and no terminal exits 3 with a hint', async () => {
    const t = await newHome({ init: false });
    const r = await t.tp(['init', ...FLOOR]);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/^trust-protocol: error: .*\nhint: .*--password-file/);
  });

  it('refuses the password on the command line without echoing it', async () => {
    const t = await newHome({ init: false });
    const r = await t.tp(['init', '--password', 'hunter2-secret']);
    expect(r.code).toBe(2);
    expect(r.stderr).not.toContain('hunter2-secret');
    const r2 = await t.tp(['init', '--password=hunter2-secret']);
    expect(r2.code).toBe(2);
    expect(r2.stderr).not.toContain('hunter2-secret');
  });

  it('status needs no password and reports counts', async () => {
    const t = await newHome();
    const r = await t.tp(['status', '--json']);
    expect(r.code).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s).toMatchObject({ initialized: true, credentials: 0, agents: 0 });
    const missing = await run(['--home', path.join(t.dir, 'nope'), 'status', '--json']);
    expect(JSON.parse(missing.stdout)).toMatchObject({ initialized: false });
  });

  it('wrong password exits 3; TRUST_PROTOCOL_PASSWORD works', async () => {
    const t = await newHome();
    const bad = t.file('bad', 'not the password\n');
    const r = await t.tp(['agent', 'register', 'x', '--password-file', bad]);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('wrong master password');
    const ok = await t.tp(['agent', 'register', 'x'], {
      env: { TRUST_PROTOCOL_PASSWORD: PASSWORD },
    });
    expect(ok.code).toBe(0);
  });

  it('passwd changes the password and keeps every credential', async () => {
    const t = await newHome();
    const add = await t.tp([
      'credential',
      'add',
      'k1',
      '--allowed-domains',
      'api.allowed.test',
      '--password-file',
      t.passwordFile,
    ], { input: 'sk-passwd-canary-1' });
    expect(add.code).toBe(0);
    const before = JSON.parse(fs.readFileSync(path.join(t.home, 'vault.json'), 'utf8'));
    const next = t.file('next', 'a whole new password\n');
    const r = await t.tp([
      'passwd',
      '--password-file',
      t.passwordFile,
      '--new-password-file',
      next,
    ]);
    expect(r.code).toBe(0);
    const after = JSON.parse(fs.readFileSync(path.join(t.home, 'vault.json'), 'utf8'));
    // Not re-encrypted: the credential ciphertext is unchanged, only the key wrap changed.
    expect(after.body.credentials[0].value).toEqual(before.body.credentials[0].value);
    expect(after.slots[0].key).not.toEqual(before.slots[0].key);
    expect((await t.tp(['agent', 'register', 'x', '--password-file', t.passwordFile])).code).toBe(
      3,
    );
    expect((await t.tp(['agent', 'register', 'x', '--password-file', next])).code).toBe(0);
  });

  it('refuses a group-writable home and a symlinked vault', async () => {
    const t = await newHome();
    fs.chmodSync(t.home, 0o770);
    const r = await t.tp(['status']);
    expect(r.code).toBe(8);
    expect(r.stderr).toMatch(/writable by group or others[\s\S]*hint: run: chmod go-w/);
    fs.chmodSync(t.home, 0o700);
    const real = path.join(t.dir, 'elsewhere.json');
    fs.renameSync(path.join(t.home, 'vault.json'), real);
    fs.symlinkSync(real, path.join(t.home, 'vault.json'));
    const r2 = await t.tp(['status']);
    expect(r2.code).toBe(8);
    expect(r2.stderr).toContain('symbolic link');
  });

  it('refuses a vault header asking for weaker or absurd KDF parameters (exit 8)', async () => {
    const t = await newHome();
    const p = path.join(t.home, 'vault.json');
    const original = fs.readFileSync(p, 'utf8');
    for (
      const [field, value] of [['memory_kib', 1024], ['iterations', 1], ['memory_kib', 1 << 30], [
        'iterations',
        1e6,
      ]] as const
    ) {
      const v = JSON.parse(original);
      v.slots[0].kdf[field] = value;
      fs.writeFileSync(p, JSON.stringify(v));
      const r = await t.tp(['agent', 'register', 'x', '--password-file', t.passwordFile]);
      expect(r.code, `${field}=${value}`).toBe(8);
      expect(r.stderr).toMatch(/KDF/);
    }
  });

  it('--version and --help work; global flags go before or after the command', async () => {
    const v = await run(['--version']);
    expect(v.code).toBe(0);
    expect(v.stdout).toMatch(/^trust-protocol \d+\.\d+\.\d+\n$/);
    const h = await run(['--help']);
    expect(h.code).toBe(0);
    expect(h.stdout).toContain('22  with --fail');
    const t = await newHome();
    const a = await run(['--json', '--home', t.home, 'agent', 'list']);
    const b = await run(['agent', 'list', '--home', t.home, '--json']);
    const c = await run(['agent', '--json', 'list', '--home', t.home]);
    expect(a.code).toBe(0);
    expect(a.stdout).toBe(b.stdout);
    expect(a.stdout).toBe(c.stdout);
    expect(JSON.parse(a.stdout)).toEqual([]);
  });

  it('--quiet drops confirmations but never data (ids, tokens)', async () => {
    const t = await newHome();
    const add = await t.tp([
      '-q',
      'credential',
      'add',
      'k',
      '--allowed-domains',
      'a.example.com',
      '--password-file',
      t.passwordFile,
    ], { input: 'sk-quiet-canary-1' });
    expect(add.code).toBe(0);
    expect(add.stdout).toBe('');
    const reg = await t.tp([
      'agent',
      'register',
      'q',
      '--quiet',
      '--password-file',
      t.passwordFile,
    ]);
    expect(reg.stdout).toMatch(/tpat_/);
    expect(reg.stdout).toMatch(/^tpat_\S+\n$/);
    // A list's data is its names, one a line, with no heading (issue 16).
    expect((await t.tp(['credential', 'list', '-q'])).stdout).toBe('k\n');
  });

  it('usage errors exit 2 and, under --json, stderr is JSON', async () => {
    const r = await run(['agent', 'frobnicate']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^trust-protocol: error: unknown command/);
    const j = await run(['--json', 'credential', 'add']);
    expect(j.code).toBe(2);
    expect(JSON.parse(j.stderr)).toMatchObject({ error: { code: 'bad_arguments' } });
  });
});
