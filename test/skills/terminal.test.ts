import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { baseEnv, command, newHome } from '../helpers/cli.ts';
import { makeSkill } from './helpers.ts';

const PTY = path.resolve(new URL('../helpers/terminal.py', import.meta.url).pathname);
const TYPED = 'typed-key-password-42';

/** Runs the CLI in a pseudo-terminal and types the given answers at its prompts. */
function atTerminal(args: string[], script: Array<[string, string]>) {
  const { file, argv } = command(args);
  return new Promise<{ code: number; transcript: string }>((resolve, reject) => {
    const child = spawn('python3', [PTY, JSON.stringify(script), file, ...argv], {
      env: baseEnv(),
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('error', reject);
    child.on('close', () => resolve(JSON.parse(out)));
  });
}

describe('skill commands at a terminal', () => {
  it('keygen asks twice without echo, sign asks once, verify shows progress on stderr', async () => {
    const t = await newHome({ init: false });
    const prefix = path.join(t.dir, 'k');
    const gen = await atTerminal(['skill', 'keygen', '--out', prefix, '--kdf-memory-mib', '16'], [
      ['Password for the new key:', `${TYPED}\r`],
      ['Repeat the password:', `${TYPED}\r`],
    ]);
    expect(gen.code, gen.transcript).toBe(0);
    expect(gen.transcript).not.toContain(TYPED);

    const dir = makeSkill(path.join(t.dir, 'skill'));
    const sign = await atTerminal(['skill', 'sign', dir, '--key', `${prefix}.key`], [
      ['Key password:', `${TYPED}\r`],
    ]);
    expect(sign.code, sign.transcript).toBe(0);
    expect(sign.transcript).not.toContain(TYPED);
    expect(sign.transcript).toMatch(/hashing \d+\/6 files/);

    const home = ['--home', path.join(t.dir, 'no-home')];
    const verify = await atTerminal(
      [...home, 'skill', 'verify', dir, '--key', `${prefix}.pub`],
      [],
    );
    expect(verify.code, verify.transcript).toBe(0);
    expect(verify.transcript).toMatch(/hashing \d+\/6 files, \d+\/\d+ MiB/);
    expect(verify.transcript).toMatch(/OK: skill 0\.0\.0, 6 file\(s\)/);

    const json = await atTerminal([
      ...home,
      'skill',
      'verify',
      dir,
      '--key',
      `${prefix}.pub`,
      '--json',
    ], []);
    expect(json.code).toBe(0);
    expect(json.transcript).not.toMatch(/hashing/);
  });

  it('keygen refuses two different passwords and writes nothing', async () => {
    const t = await newHome({ init: false });
    const prefix = path.join(t.dir, 'k');
    const r = await atTerminal(['skill', 'keygen', '--out', prefix, '--kdf-memory-mib', '16'], [
      ['Password for the new key:', `${TYPED}\r`],
      ['Repeat the password:', 'something-else-entirely\r'],
    ]);
    expect(r.code).toBe(2);
    expect(r.transcript).toMatch(/do not match/);
    expect(existsSync(`${prefix}.key`)).toBe(false);
  });
});
