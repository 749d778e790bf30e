/**
 * Issue 16: agents are named by id or by name wherever an id is taken (names are unique among
 * agents that are not revoked; ambiguity is an error), a grant the tier can never use is refused
 * with what to promote, and a plain-http target names the scheme as the reason.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { addCredential, newHome, type TestHome } from '../helpers/cli.ts';

const CANARY = 'sk-names-canary-5e6f7a8b9c';
let t: TestHome;

beforeAll(async () => {
  t = await newHome();
  for (const [name, tier] of [['k1', 'NOVICE'], ['kt', 'COMPANION']]) {
    const r = await addCredential(t, name, `${CANARY}${name}`, [
      '--allowed-domains',
      'api.allowed.test',
      '--min-tier',
      tier,
    ]);
    expect(r.code, r.stderr).toBe(0);
  }
});

const pw = () => ['--password-file', t.passwordFile];

async function register(name: string, tier = 'NOVICE') {
  return await t.tp(['--json', 'agent', 'register', name, '--tier', tier, ...pw()]);
}

async function agents(): Promise<{ id: string; name: string; state: string; grants: string[] }[]> {
  const r = await t.tp(['--json', 'agent', 'list']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
}

describe('agents by name', () => {
  it('a name stands for its agent; a second live agent of that name is refused', async () => {
    const reg = await register('scout');
    expect(reg.code, reg.stderr).toBe(0);
    const { id } = JSON.parse(reg.stdout);
    const g = await t.tp(['agent', 'grant', 'scout', 'k1', ...pw()]);
    expect(g.code, g.stderr).toBe(0);
    expect((await agents()).find((a) => a.id === id)?.grants).toEqual(['k1']);

    const again = await register('scout');
    expect(again.code).toBe(2);
    expect(JSON.parse(again.stderr).error.code).toBe('agent_name_taken');
    const idLike = await register('agt_0123456789abcdef0123');
    expect(idLike.code).toBe(2);
    expect(JSON.parse(idLike.stderr).error.code).toBe('bad_agent_name');
    expect((await agents()).filter((a) => a.name === 'scout')).toHaveLength(1);
  });

  it('a revoked name can be taken again and then names the live agent; two revoked are ambiguous', async () => {
    const first = JSON.parse((await register('temp')).stdout).id;
    expect((await t.tp(['agent', 'revoke', 'temp', ...pw()])).code).toBe(0);
    const second = JSON.parse((await register('temp')).stdout).id;
    expect(second).not.toBe(first);
    expect((await t.tp(['agent', 'suspend', 'temp', ...pw()])).code).toBe(0);
    const states = Object.fromEntries((await agents()).map((a) => [a.id, a.state]));
    expect(states[first]).toBe('revoked');
    expect(states[second]).toBe('suspended');

    expect((await t.tp(['agent', 'revoke', 'temp', ...pw()])).code).toBe(0);
    const ambiguous = await t.tp(['--json', 'agent', 'resume', 'temp', ...pw()]);
    expect(ambiguous.code).toBe(2);
    const error = JSON.parse(ambiguous.stderr).error;
    expect(error.code).toBe('ambiguous_agent');
    expect(error.hint).toContain(first);
    expect(error.hint).toContain(second);

    const none = await t.tp(['agent', 'suspend', 'nobody', ...pw()]);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('no agent with id or name "nobody"');
  });
});

describe('grants the tier can never use', () => {
  it('are refused with the promotion to make, and nothing changes', async () => {
    const { id } = JSON.parse((await register('novice')).stdout);
    const r = await t.tp(['--json', 'agent', 'grant', 'novice', 'k1', 'kt', ...pw()]);
    expect(r.code).toBe(4);
    const error = JSON.parse(r.stderr).error;
    expect(error.code).toBe('tier_too_low');
    expect(error.message).toContain('needs tier COMPANION');
    expect(error.hint).toBe(`promote it first: trust-protocol agent promote ${id} COMPANION`);
    expect((await agents()).find((a) => a.id === id)?.grants).toEqual([]);

    expect((await t.tp(['agent', 'promote', 'novice', 'COMPANION', ...pw()])).code).toBe(0);
    const ok = await t.tp(['agent', 'grant', 'novice', 'k1', 'kt', ...pw()]);
    expect(ok.code, ok.stderr).toBe(0);
  });
});

describe('a plain-http target', () => {
  it('names the scheme as the reason in its hint', async () => {
    const reg = JSON.parse((await register('runner')).stdout);
    expect((await t.tp(['agent', 'grant', 'runner', 'k1', ...pw()])).code).toBe(0);
    const template = t.file(
      'plain.json',
      JSON.stringify({
        credential: 'k1',
        url: 'http://api.allowed.test/v1',
        headers: { Authorization: 'Bearer {{CREDENTIAL}}' },
      }),
    );
    const r = await t.tp(['--json', 'exec', '--template', template, ...pw()], {
      env: { TRUST_PROTOCOL_TOKEN: reg.token },
    });
    expect(r.code).toBe(4);
    const error = JSON.parse(r.stderr).error;
    expect(error.code).toBe('scheme_not_allowed');
    expect(error.hint).toContain('the scheme is the reason');
    expect(error.hint).toContain('http://api.allowed.test');
    expect(r.stderr + r.stdout).not.toContain(CANARY);
  });
});
