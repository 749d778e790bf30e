/**
 * Installing it (issue 16): the npm package installs and runs from a throwaway prefix, `deno
 * install` of the sources runs, and `make release` produces SHA256SUMS and a minisign signature
 * that `install.sh --from` checks before it installs anything.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

const ROOT = path.resolve(new URL('../..', import.meta.url).pathname);
const BINARY = path.join(ROOT, 'dist/trust-protocol');
/** The pinned Node 24 and Deno first: what a user of the package has on PATH. */
const PATH = [
  path.join(ROOT, 'node_modules/node/bin'),
  path.join(ROOT, 'node_modules/.bin'),
  process.env.PATH ?? '/usr/bin:/bin',
].join(':');
const HAS_MINISIGN = spawnSync('sh', ['-c', 'command -v minisign']).status === 0;
if (!HAS_MINISIGN) {
  console.warn('\n*** SKIPPING release checks: minisign is not installed (run `make tools`) ***\n');
}

function runFile(file: string, args: string[], env: Record<string, string> = {}, cwd = ROOT) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(file, args, {
      env: { PATH, HOME: tmpdir(), DENO_NO_UPDATE_CHECK: '1', NO_COLOR: '1', ...env },
      cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

// Each holds a copy of Node or an npm install (hundreds of MB): removed when the file ends.
const made: string[] = [];
afterAll(() => {
  for (const dir of made) fs.rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(tmpdir(), 'tp-pkg-'));
  made.push(dir);
  return dir;
}

/** A vault made and read by `cli`: the installed command does real work, not only --version. */
async function initAndStatus(cli: string) {
  const dir = tempDir();
  const password = path.join(dir, 'password');
  fs.writeFileSync(password, 'correct horse battery staple\n', { mode: 0o600 });
  const home = ['--home', path.join(dir, 'home')];
  const init = await runFile(cli, [
    ...home,
    'init',
    '--kdf-memory-mib',
    '19',
    '--kdf-iterations',
    '2',
    '--password-file',
    password,
  ]);
  expect(init.code, init.stderr).toBe(0);
  const status = await runFile(cli, [...home, '--json', 'status']);
  expect(status.code, status.stderr).toBe(0);
  expect(JSON.parse(status.stdout)).toMatchObject({ initialized: true });
}

describe('the npm package', () => {
  it('npm pack, then npm install -g of the tarball in a throwaway prefix, gives a working command', async () => {
    const dir = tempDir();
    const pack = await runFile('npm', ['pack', '--pack-destination', dir, '--loglevel=error']);
    expect(pack.code, pack.stderr).toBe(0);
    const tarball = path.join(dir, pack.stdout.trim().split('\n').at(-1)!);
    const listing = await runFile('tar', ['tzf', tarball]);
    expect(listing.stdout).toContain('package/dist/trust-protocol.cjs');
    // Loaded on first use (cmd/chunks/load.cjs).
    expect(listing.stdout).toContain('package/dist/chunks/mcp.cjs');
    expect(listing.stdout).toContain('package/dist/chunks/postgres.cjs');
    expect(listing.stdout).not.toContain('package/src/');
    const prefix = path.join(dir, 'prefix');
    // --offline: the package has no dependencies left to fetch (esbuild bundled them).
    const install = await runFile('npm', [
      'install',
      '-g',
      '--offline',
      '--no-audit',
      '--no-fund',
      '--prefix',
      prefix,
      tarball,
    ]);
    expect(install.code, install.stderr).toBe(0);
    const cli = path.join(prefix, 'bin', 'trust-protocol');
    const version = await runFile(cli, ['--version']);
    expect(version.code, version.stderr).toBe(0);
    expect(version.stdout).toMatch(/^trust-protocol \d+\.\d+\.\d+\n$/);
    await initAndStatus(cli);
  });

  it('deno install of the sources gives a working command', async () => {
    const root = tempDir();
    const install = await runFile('deno', [
      'install',
      '-g',
      '-A',
      '--root',
      root,
      '-n',
      'trust-protocol',
      // The project's config: it resolves packages from the checkout's node_modules.
      '--config',
      path.join(ROOT, 'deno.json'),
      path.join(ROOT, 'cmd/main.ts'),
    ]);
    expect(install.code, install.stderr).toBe(0);
    const cli = path.join(root, 'bin', 'trust-protocol');
    expect((await runFile(cli, ['--version'])).stdout).toMatch(/^trust-protocol /);
    await initAndStatus(cli);
  });
});

describe.skipIf(!HAS_MINISIGN)('make release and install.sh --from', () => {
  it('signs SHA256SUMS with skill sign; install.sh installs only what the key signed', async () => {
    const dir = tempDir();
    const password = path.join(dir, 'password');
    fs.writeFileSync(password, 'release key password\n', { mode: 0o600 });
    for (const name of ['release', 'other']) {
      const k = await runFile(BINARY, [
        'skill',
        'keygen',
        '--out',
        path.join(dir, name),
        '--kdf-memory-mib',
        '16',
        '--password-file',
        password,
      ]);
      expect(k.code, k.stderr).toBe(0);
    }
    const release = path.join(dir, 'release-dir');
    const make = await runFile('make', [
      '--no-print-directory',
      'release',
      `RELEASE_KEY=${path.join(dir, 'release.key')}`,
      `RELEASE_PASSWORD_FILE=${password}`,
      `RELEASE_DIR=${release}`,
    ]);
    expect(make.code, make.stdout + make.stderr).toBe(0);
    expect(fs.readdirSync(release).sort()).toEqual([
      'SHA256SUMS',
      'SHA256SUMS.minisig',
      'trust-protocol',
    ]);
    // Checked by the tools a user already has, not only by ours.
    expect((await runFile('sha256sum', ['--strict', '-c', 'SHA256SUMS'], {}, release)).code).toBe(
      0,
    );
    const pub = path.join(dir, 'release.pub');
    const verified = await runFile('minisign', [
      '-Vm',
      path.join(release, 'SHA256SUMS'),
      '-p',
      pub,
    ]);
    expect(verified.code, verified.stderr).toBe(0);

    const install = (from: string, key: string, prefix: string) =>
      runFile('sh', [
        path.join(ROOT, 'install.sh'),
        '--from',
        from,
        '--pubkey',
        key,
        '--prefix',
        prefix,
      ]);
    const good = await install(release, pub, path.join(dir, 'good'));
    expect(good.code, good.stderr).toBe(0);
    expect((await runFile(path.join(dir, 'good/bin/trust-protocol'), ['--version'])).code).toBe(0);

    const wrongKey = await install(release, path.join(dir, 'other.pub'), path.join(dir, 'wk'));
    expect(wrongKey.code).toBe(1);
    expect(wrongKey.stderr).toContain('is not signed by');
    expect(fs.existsSync(path.join(dir, 'wk/bin/trust-protocol'))).toBe(false);

    const tampered = path.join(dir, 'tampered');
    fs.cpSync(release, tampered, { recursive: true });
    fs.appendFileSync(path.join(tampered, 'trust-protocol'), 'x');
    const bad = await install(tampered, pub, path.join(dir, 'bad'));
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('does not match SHA256SUMS');
    expect(fs.existsSync(path.join(dir, 'bad/bin/trust-protocol'))).toBe(false);

    const noKey = await runFile('sh', [path.join(ROOT, 'install.sh'), '--from', release]);
    expect(noKey.code).toBe(2);
    expect(noKey.stderr).toContain('--from needs --pubkey');
  });
});

describe('the README without a network', () => {
  it('make upstream stands in for the API: exec with its printed flags works offline', async () => {
    const upstream = spawn(process.execPath, [path.join(ROOT, 'test/upstream.ts')], {
      env: { PATH, PORT: '0' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      let printed = '';
      await new Promise<void>((resolve) =>
        upstream.stdout!.on('data', (d) => {
          printed += d;
          if (printed.includes('--connect-to')) resolve();
        })
      );
      const offline = /--cacert \S+ --connect-to \S+/.exec(printed)![0].split(' ');
      const dir = tempDir();
      const pw = path.join(dir, 'password');
      fs.writeFileSync(pw, 'correct horse battery staple\n', { mode: 0o600 });
      const tp = (args: string[], input?: string) =>
        new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
          const child = spawn(BINARY, ['--home', path.join(dir, 'home'), ...args], {
            env: { PATH, HOME: dir },
          });
          let stdout = '';
          let stderr = '';
          child.stdout.on('data', (d) => (stdout += d));
          child.stderr.on('data', (d) => (stderr += d));
          child.on('close', (code) => resolve({ code, stdout, stderr }));
          child.stdin.end(input ?? '');
        });
      const secret = 'sk-offline-walkthrough-1234';
      expect((await tp(['init', '--password-file', pw])).code).toBe(0);
      const add = await tp(
        [
          'credential',
          'add',
          'github',
          '--allowed-domains',
          'api.allowed.test',
          '--password-file',
          pw,
        ],
        secret,
      );
      expect(add.code, add.stderr).toBe(0);
      const reg = await tp([
        '--json',
        'agent',
        'register',
        'ci-bot',
        '--tier',
        'COMPANION',
        '--password-file',
        pw,
      ]);
      const { token } = JSON.parse(reg.stdout);
      expect((await tp(['agent', 'grant', 'ci-bot', 'github', '--password-file', pw])).code).toBe(
        0,
      );
      const r = await new Promise<{ code: number | null; stdout: string }>((resolve) => {
        const child = spawn(BINARY, [
          '--home',
          path.join(dir, 'home'),
          'exec',
          'https://api.allowed.test/user',
          '-H',
          'Authorization: Bearer {{CREDENTIAL}}',
          '--credential',
          'github',
          '--password-file',
          pw,
          ...offline,
        ], { env: { PATH, HOME: dir, TRUST_PROTOCOL_TOKEN: token } });
        let stdout = '';
        child.stdout.on('data', (d) => (stdout += d));
        child.on('close', (code) => resolve({ code, stdout }));
      });
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({
        method: 'GET',
        path: '/user',
        headers: { authorization: 'Bearer [REDACTED:github]' },
      });
      expect(r.stdout).not.toContain(secret);
    } finally {
      upstream.kill();
    }
  });
});
