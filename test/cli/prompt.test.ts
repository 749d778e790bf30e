import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { baseEnv, command, newAgent, newHome } from '../helpers/cli.ts';

const PTY = path.resolve(new URL('../helpers/terminal.py', import.meta.url).pathname);

/** Runs the CLI in a pseudo-terminal and types the given answers at its prompts. */
function atTerminal(
  args: string[],
  script: Array<[string, string]>,
  env: Record<string, string | undefined> = {},
) {
  const { file, argv } = command(args);
  return new Promise<{ code: number; transcript: string }>((resolve, reject) => {
    const child = spawn('python3', [PTY, JSON.stringify(script), file, ...argv], {
      env: baseEnv(env),
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('error', reject);
    child.on('close', () => resolve(JSON.parse(out)));
  });
}

const NEW = 'typed-at-the-terminal-42';

describe('no-echo prompts at a terminal', () => {
  it('init asks twice and never echoes the password', async () => {
    const t = await newHome({ init: false });
    const r = await atTerminal([
      '--home',
      t.home,
      'init',
      '--kdf-memory-mib',
      '19',
      '--kdf-iterations',
      '2',
    ], [
      ['New master password:', `${NEW}\r`],
      ['Repeat the master password:', `${NEW}\r`],
    ]);
    expect(r.code, r.transcript).toBe(0);
    expect(r.transcript).not.toContain(NEW);
    expect(fs.existsSync(path.join(t.home, 'vault.json'))).toBe(true);
    const pw = t.file('typed', NEW);
    expect((await t.tp(['agent', 'register', 'x', '--password-file', pw])).code).toBe(0);
  });

  it('init refuses two different passwords', async () => {
    const t = await newHome({ init: false });
    const r = await atTerminal([
      '--home',
      t.home,
      'init',
      '--kdf-memory-mib',
      '19',
      '--kdf-iterations',
      '2',
    ], [
      ['New master password:', `${NEW}\r`],
      ['Repeat the master password:', `${NEW}-different\r`],
    ]);
    expect(r.code).toBe(2);
    expect(r.transcript).toContain('do not match');
    expect(fs.existsSync(path.join(t.home, 'vault.json'))).toBe(false);
  });

  it('init asks again after a too-short password, and then works', async () => {
    const t = await newHome({ init: false });
    const r = await atTerminal([
      '--home',
      t.home,
      'init',
      '--kdf-memory-mib',
      '19',
      '--kdf-iterations',
      '2',
    ], [
      ['New master password:', 'short\r'],
      ['try again', `${NEW}\r`],
      ['Repeat the master password:', `${NEW}\r`],
    ]);
    expect(r.code, r.transcript).toBe(0);
    expect(r.transcript).toContain('shorter than 8');
    expect(r.transcript.split('New master password:').length).toBe(3);
    expect(r.transcript).not.toContain(NEW);
    expect(fs.existsSync(path.join(t.home, 'vault.json'))).toBe(true);
  });

  it('init from a file or the environment still refuses a too-short password', async () => {
    const t = await newHome({ init: false });
    const init = ['init', '--kdf-memory-mib', '19', '--kdf-iterations', '2'];
    const file = await t.tp([...init, '--password-file', t.file('short', 'short\n')]);
    const env = await t.tp(init, { env: { TRUST_PROTOCOL_PASSWORD: 'short' } });
    for (const r of [file, env]) {
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('shorter than 8 bytes');
    }
    expect(fs.existsSync(path.join(t.home, 'vault.json'))).toBe(false);
  });

  it('credential add asks for the master password first, then for the named value', async () => {
    const t = await newHome();
    const password = fs.readFileSync(t.passwordFile, 'utf8').trim();
    const value = 'sk-typed-value-canary-78';
    const r = await atTerminal([
      '--home',
      t.home,
      'credential',
      'add',
      'typed',
      '--allowed-domains',
      'api.allowed.test',
    ], [
      ['Master password', `${password}\r`],
      ['Credential value for typed', `${value}\r`],
    ]);
    expect(r.code, r.transcript).toBe(0);
    const master = r.transcript.indexOf('Master password');
    const cred = r.transcript.indexOf('Credential value for typed');
    expect(master).toBeGreaterThanOrEqual(0);
    expect(cred).toBeGreaterThan(master);
    expect(r.transcript).not.toContain(value);
    expect(r.transcript).not.toContain(password);
  });

  it('a credential value typed at the prompt is not echoed', async () => {
    const t = await newHome();
    const value = 'sk-typed-value-canary-77';
    const r = await atTerminal([
      '--home',
      t.home,
      'credential',
      'add',
      'typed',
      '--allowed-domains',
      'api.allowed.test',
      '--password-file',
      t.passwordFile,
    ], [
      ['Credential value for typed', `${value}\r`],
    ]);
    expect(r.code, r.transcript).toBe(0);
    expect(r.transcript).not.toContain(value);
  });

  it('SACRED promotion: typed password and typed confirmation at a terminal', async () => {
    const t = await newHome();
    const { id } = await newAgent(t, { tier: 'GUARDIAN' });
    const password = fs.readFileSync(t.passwordFile, 'utf8').trim();
    const wrong = await atTerminal(['--home', t.home, 'agent', 'promote', id, 'SACRED'], [
      ['Master password', `${password}\r`],
      ['to confirm', 'yes\r'],
    ]);
    expect(wrong.code).toBe(4);
    expect(wrong.transcript).toContain('confirmation did not match');
    const ok = await atTerminal(['--home', t.home, 'agent', 'promote', id, 'SACRED'], [
      ['Master password', `${password}\r`],
      ['to confirm', `promote ${id} to SACRED\r`],
    ]);
    expect(ok.code, ok.transcript).toBe(0);
    expect(ok.transcript).not.toContain(password);
    const show = JSON.parse((await t.tp(['agent', 'show', id, '--json'])).stdout);
    expect(show.tier).toBe('SACRED');
  });
});

describe('emergency clear of an agent brake at a terminal (issue 16)', () => {
  it('asks whether to issue a new token: yes gives one once, the default keeps the old', async () => {
    const t = await newHome();
    const { id, token } = await newAgent(t);
    const brake = () =>
      t.tp(['emergency', 'activate', '--reason', 'drill', '--scope', 'agent', '--agent-id', id]);
    const clear = ['--home', t.home, 'emergency', 'clear', '--scope', 'agent', '--agent-id', id];
    const pw = ['--password-file', t.passwordFile];
    expect((await brake()).code).toBe(0);
    const kept = await atTerminal([...clear, ...pw], [['a new token', '\r']]);
    expect(kept.code, kept.transcript).toBe(0);
    expect(kept.transcript).toContain('The agent keeps its token');
    const tokens = () =>
      fs.readFileSync(path.join(t.home, 'audit', 'audit.log'), 'utf8').split('\n')
        .filter((l) => l.includes('"event":"agent.token"')).length;
    const before = tokens();
    expect((await brake()).code).toBe(0);
    const fresh = await atTerminal([...clear, ...pw], [['a new token', 'y\r']]);
    expect(fresh.code, fresh.transcript).toBe(0);
    expect(fresh.transcript).toMatch(/New token for agent .*\r?\ntpat_/);
    expect(fresh.transcript).not.toContain(token);
    expect(tokens()).toBe(before + 1);
  });
});

describe('colour at a terminal', () => {
  const ESC = '\x1b[';

  it('headings, errors and verdicts are coloured at a terminal', async () => {
    const t = await newHome();
    const env = { NO_COLOR: undefined };
    await newAgent(t);
    const table = await atTerminal(['--home', t.home, 'agent', 'list'], [], env);
    expect(table.code, table.transcript).toBe(0);
    expect(table.transcript).toContain(`${ESC}1mID`);
    const error = await atTerminal(['--home', t.home, 'statsu'], [], env);
    expect(error.code).toBe(2);
    expect(error.transcript).toContain(`${ESC}31m`);
    const verify = await atTerminal(
      [
        '--home',
        t.home,
        'audit',
        'verify',
        '--password-file',
        t.passwordFile,
      ],
      [],
      env,
    );
    expect(verify.code, verify.transcript).toBe(0);
    expect(verify.transcript).toContain(`${ESC}32m`);
  });

  it('never with NO_COLOR or --no-color', async () => {
    const t = await newHome();
    await newAgent(t);
    for (
      const [args, env] of [
        [['agent', 'list'], { NO_COLOR: '1' }],
        [['agent', 'list', '--no-color'], { NO_COLOR: undefined }],
        [['statsu'], { NO_COLOR: '1' }],
        [['--no-color', 'statsu'], { NO_COLOR: undefined }],
      ] as const
    ) {
      const r = await atTerminal(['--home', t.home, ...args], [], env);
      expect(r.transcript, args.join(' ')).not.toContain(ESC);
    }
  });
});
