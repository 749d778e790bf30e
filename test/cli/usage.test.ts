/**
 * The command line's manners (issue 16): unknown commands and flags exit 2 everywhere with "did
 * you mean", help for one command, --password-file accepted by every command, secret files that
 * others can read refused, and `audit show`'s event names, ages and --follow.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { baseEnv, command, newAgent, newHome, run, type TestHome } from '../helpers/cli.ts';

let t: TestHome;
beforeAll(async () => {
  t = await newHome();
});

describe('unknown commands and flags', () => {
  it('exit 2, also with no command, naming what was wrong', async () => {
    for (
      const [args, message] of [
        [['--bogus'], 'unknown option --bogus'],
        [['--home'], '--home needs a value'],
        [['statsu'], 'unknown command "statsu"'],
        [['agent', 'lsit'], 'unknown command "agent lsit"'],
        [['agent', 'list', '--jsno'], 'unknown option --jsno'],
        [['agent', 'list', '--json=yes'], '--json takes no value'],
        [['audit', 'show', '--tail'], '--tail needs a value'],
      ] as const
    ) {
      const r = await t.tp(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toContain(`trust-protocol: error: ${message}`);
      expect(r.stdout, args.join(' ')).toBe('');
    }
  });

  it('suggest the closest command or flag', async () => {
    for (
      const [args, hint] of [
        [['statsu'], 'did you mean `trust-protocol status`?'],
        [['credential', 'ad'], 'did you mean `trust-protocol credential add`?'],
        [['agent', 'lsit'], 'did you mean `trust-protocol agent list`?'],
        [['credential', 'add', 'k', '--allowed-domain', 'x'], 'did you mean --allowed-domains?'],
        [['agent', 'list', '--jsno'], 'did you mean --json?'],
      ] as const
    ) {
      const r = await t.tp(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toContain(`hint: ${hint}`);
    }
    const list = await t.tp(['--json', 'credential', 'list']);
    expect(JSON.parse(list.stdout)).toEqual([]);
  });

  it('under --json the error is JSON with its code', async () => {
    const r = await run(['--json', '--bogus']);
    expect(r.code).toBe(2);
    expect(JSON.parse(r.stderr).error.code).toBe('unknown_flag');
  });
});

describe('help', () => {
  it('`help CMD` and `CMD --help` print the same help: flags and examples, no exit-code table', async () => {
    const a = await run(['help', 'audit', 'show']);
    const b = await run(['audit', 'show', '--help']);
    expect(a.code).toBe(0);
    expect(a.stdout).toBe(b.stdout);
    expect(a.stdout).toContain('--follow');
    expect(a.stdout).toContain('Examples:');
    expect(a.stdout).not.toContain('Exit codes:');
    const top = await run(['--help']);
    expect(top.stdout).toContain('Exit codes:');
    expect(top.stdout).toContain('trust-protocol help COMMAND');
  });
});

describe('secret files and --password-file', () => {
  it('every command accepts --password-file, those that need none ignore it', async () => {
    for (
      const args of [
        ['emergency', 'status'],
        ['status'],
        ['agent', 'list'],
        ['audit', 'show', '--tail', '1'],
      ]
    ) {
      const r = await t.tp([...args, '--password-file', t.passwordFile]);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
    }
    const before = await t.tp(['--password-file', t.passwordFile, 'status']);
    expect(before.code, before.stderr).toBe(0);
  });

  it('a password or token file that group or others can read is refused, with the chmod', async () => {
    const loose = t.file('loose-password', 'correct horse battery staple\n', 0o644);
    const r = await t.tp(['credential', 'list', '--password-file', loose]);
    expect(r.code).toBe(0); // needs no password: not read
    const p = await t.tp(['agent', 'register', 'x', '--password-file', loose]);
    expect(p.code).toBe(2);
    expect(p.stderr).toContain('accessible by group or others (mode 644)');
    expect(p.stderr).toContain(`hint: run: chmod 600 ${loose}`);
    const token = t.file('loose-token', 'tpat_whatever\n', 0o640);
    const e = await t.tp(['exec', 'https://api.allowed.test/', '--token-file', token]);
    expect(e.code).toBe(2);
    expect(e.stderr).toContain('token file');
    expect(e.stderr).toContain('chmod 600');
  });
});

describe('audit show', () => {
  it('names a misspelt event, with the closest one', async () => {
    const r = await t.tp(['audit', 'show', '--event', 'reqest.denied']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('unknown audit event "reqest.denied"');
    expect(r.stderr).toContain('did you mean --event request.denied?');
    expect((await t.tp(['audit', 'show', '--event', 'request'])).code).toBe(0);
  });

  it('takes an age for --since', async () => {
    const all = await t.tp(['--json', 'audit', 'show', '--since', '1h']);
    expect(all.code, all.stderr).toBe(0);
    expect(all.stdout.trim().split('\n').length).toBeGreaterThanOrEqual(1);
    const future = await t.tp(['--json', 'audit', 'show', '--since', '2000-01-01']);
    expect(future.stdout).toBe(all.stdout);
    const none = await t.tp(['audit', 'show', '--since', '0s']);
    expect(none.stdout).toBe('No entries.\n');
    const bad = await t.tp(['audit', 'show', '--since', '5x']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('an age such as 30m, 1h or 2d');
  });

  it("shows an anomaly's kind, evidence and actions", async () => {
    const u = await newHome();
    const log = path.join(u.home, 'audit', 'audit.log');
    const last = JSON.parse(fs.readFileSync(log, 'utf8').trim().split('\n').at(-1)!);
    fs.appendFileSync(
      log,
      JSON.stringify({
        v: 1,
        seq: last.seq + 1,
        ts: new Date().toISOString(),
        event: 'monitor.anomaly',
        actor: { type: 'system' },
        outcome: 'ok',
        data: {
          agent: 'agt_x',
          kind: 'denial_burst',
          severity: 'high',
          evidence: { denials: 5, window_minutes: 10 },
          actions: ['record', 'brake'],
        },
        prev: '0'.repeat(64),
        mac: null,
      }) + '\n',
    );
    const r = await u.tp(['audit', 'show', '--event', 'monitor']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(
      /kind=denial_burst severity=high actions=record,brake denials=5 window_minutes=10/,
    );
  });

  it('--follow prints entries as they are appended', async () => {
    const u = await newHome();
    const agent = await newAgent(u, { name: 'watched' });
    const { file, argv } = command([
      '--home',
      u.home,
      '--json',
      'audit',
      'show',
      '--follow',
      '--event',
      'brake',
    ]);
    const child = spawn(file, argv, { env: baseEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const seen = new Promise<void>((resolve) => {
      child.stdout.on('data', (d) => {
        out += d;
        if (out.includes('brake.activate')) resolve();
      });
    });
    try {
      // Only entries appended after it started: none yet.
      await new Promise((r) => setTimeout(r, 500));
      expect(out).toBe('');
      const b = await u.tp([
        'emergency',
        'activate',
        '--scope',
        'agent',
        '--agent-id',
        agent.id,
        '--reason',
        'followed',
      ]);
      expect(b.code, b.stderr).toBe(0);
      await seen;
      const line = JSON.parse(out.trim().split('\n')[0]!);
      expect(line).toMatchObject({ event: 'brake.activate', data: { reason: 'followed' } });
    } finally {
      child.kill('SIGTERM');
    }
  });
});
