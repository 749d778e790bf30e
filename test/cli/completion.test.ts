/**
 * `trust-protocol completion bash|zsh|fish` (issue 16): the scripts come from the command table,
 * and the bash one completes in a real bash, names included (asked lazily of the CLI itself).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { addCredential, command, newAgent, newHome, run, type TestHome } from '../helpers/cli.ts';

let t: TestHome;
let bashScript: string;
beforeAll(async () => {
  t = await newHome();
  const r = await run(['completion', 'bash']);
  if (r.code !== 0) throw new Error(`completion bash failed: ${r.stderr}`);
  bashScript = t.file('completion.bash', r.stdout);
  // A `trust-protocol` on PATH, as an installed one would be, for the names the script asks for.
  const { file, argv } = command([]);
  const bin = path.join(t.dir, 'bin');
  fs.mkdirSync(bin);
  const quoted = [file, ...argv].map((a) => `'${a}'`).join(' ');
  fs.writeFileSync(path.join(bin, 'trust-protocol'), `#!/bin/sh\nexec ${quoted} "$@"\n`, {
    mode: 0o755,
  });
});

/** Completes `line` (the cursor at its end) in a real bash; returns the candidates, sorted. */
function completeInBash(line: string): string[] {
  const words = line.split(' ');
  const script = `
source ${JSON.stringify(bashScript)}
COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')})
COMP_CWORD=${words.length - 1}
COMP_LINE=${JSON.stringify(line)}
COMP_POINT=${line.length}
_trust_protocol trust-protocol "${words.at(-1)}" "${words.at(-2)}"
printf '%s\\n' "\${COMPREPLY[@]}"
`;
  const r = spawnSync('bash', ['--norc', '--noprofile', '-c', script], {
    encoding: 'utf8',
    env: {
      PATH: `${path.join(t.dir, 'bin')}:${process.env.PATH}`,
      HOME: t.dir,
      TRUST_PROTOCOL_HOME: t.home,
      NO_COLOR: '1',
      DENO_NO_UPDATE_CHECK: '1',
    },
  });
  if (r.status !== 0) throw new Error(`bash failed: ${r.stderr}`);
  return r.stdout.split('\n').filter((l) => l !== '').sort();
}

describe('completion', () => {
  it('bash: commands, subcommands and flags from the command table', () => {
    expect(completeInBash('trust-protocol cred')).toEqual(['credential']);
    expect(completeInBash('trust-protocol agent grant --pass')).toEqual(['--password-file']);
    expect(completeInBash('trust-protocol credential a')).toEqual(['add']);
    expect(completeInBash('trust-protocol --home /x credential add k --allowed')).toEqual([
      '--allowed-domains',
    ]);
    expect(completeInBash('trust-protocol completion ')).toEqual(['bash', 'fish', 'zsh']);
    expect(completeInBash('trust-protocol agent promote bot G')).toEqual(['GUARDIAN']);
  });

  it('bash: credential and agent names, asked of the CLI without a password', async () => {
    expect(
      (await addCredential(t, 'openai', 'sk-completion-canary-1', [
        '--allowed-domains',
        'api.openai.com',
      ])).code,
    ).toBe(0);
    await newAgent(t, { name: 'scraper' });
    expect(completeInBash('trust-protocol agent grant scraper o')).toEqual(['openai']);
    expect(completeInBash('trust-protocol agent grant s')).toEqual(['scraper']);
    expect(completeInBash('trust-protocol credential show ')).toEqual(['openai']);
  });

  for (const shell of ['zsh', 'fish'] as const) {
    it(`${shell}: a script is printed, and is valid ${shell} where ${shell} is installed`, async () => {
      const r = await run(['completion', shell]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain('trust-protocol');
      expect(r.stdout).toContain('password-file');
      const installed = spawnSync(shell, ['-c', 'true']).error === undefined;
      if (!installed) {
        console.warn(`SKIPPED: ${shell} is not installed here; its completion script is unchecked`);
        return;
      }
      const file = t.file(`completion.${shell}`, r.stdout);
      const check = spawnSync(shell, ['-n', file], { encoding: 'utf8' });
      expect(check.status, check.stderr).toBe(0);
    });
  }

  it('an unknown shell is a usage error', async () => {
    const r = await run(['completion', 'tcsh']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('bash, zsh or fish');
  });
});
