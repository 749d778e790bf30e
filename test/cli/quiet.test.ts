/**
 * `--quiet` prints only data, and colour never reaches a pipe (issue 16). Colour at a terminal is
 * tested in prompt.test.ts, which runs the CLI in a pseudo-terminal.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { addCredential, newHome, type TestHome } from '../helpers/cli.ts';

let t: TestHome;
beforeAll(async () => {
  t = await newHome();
  expect(
    (await addCredential(t, 'openai', 'sk-quiet-canary-0001', [
      '--allowed-domains',
      'api.openai.com',
    ])).code,
  ).toBe(0);
});

describe('--quiet', () => {
  it('agent register and agent token print only the token line', async () => {
    const reg = await t.tp([
      '--quiet',
      'agent',
      'register',
      'bot',
      '--password-file',
      t.passwordFile,
    ]);
    expect(reg.code, reg.stderr).toBe(0);
    expect(reg.stdout).toMatch(/^[^\s]+\n$/);
    const shown = JSON.parse((await t.tp(['agent', 'show', 'bot', '--json'])).stdout);
    const token = await t.tp(['agent', 'token', 'bot', '-q', '--password-file', t.passwordFile]);
    expect(token.code, token.stderr).toBe(0);
    expect(token.stdout).toMatch(/^[^\s]+\n$/);
    expect(token.stdout).not.toBe(reg.stdout);
    expect(token.stdout).not.toContain(shown.id);
  });

  it('lists print one name or id a line; confirmations print nothing', async () => {
    const agents = JSON.parse((await t.tp(['agent', 'list', '--json'])).stdout) as Array<
      { id: string }
    >;
    expect((await t.tp(['agent', 'list', '--quiet'])).stdout).toBe(
      agents.map((a) => a.id).join('\n') + '\n',
    );
    expect((await t.tp(['credential', 'list', '--quiet'])).stdout).toBe('openai\n');
    const upd = await t.tp([
      '--quiet',
      'credential',
      'update',
      'openai',
      '--min-tier',
      'PARTNER',
      '--password-file',
      t.passwordFile,
    ]);
    expect(upd.code, upd.stderr).toBe(0);
    expect(upd.stdout).toBe('');
  });
});

describe('colour', () => {
  it('never in a pipe, even without NO_COLOR', async () => {
    for (
      const args of [
        ['credential', 'list'],
        ['agent', 'list'],
        ['statsu'],
        ['audit', 'verify', '--password-file', t.passwordFile],
      ]
    ) {
      const r = await t.tp(args, { env: { NO_COLOR: undefined } });
      expect(r.stdout + r.stderr, args.join(' ')).not.toContain('\x1b[');
    }
  });
});
