import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { addCredential, newAgent, newHome } from '../helpers/cli.ts';

const CANARY = 'sk-agent-canary-0a1b2c3d';

describe('agent', () => {
  it('register prints id, token, tier, expires_at; the token is stored only as a hash', async () => {
    const t = await newHome();
    const r = await t.tp(['--json', 'agent', 'register', 'bot', '--password-file', t.passwordFile]);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({
      id: expect.stringMatching(/^agt_[0-9a-f]{20}$/),
      token: expect.stringMatching(/^tpat_/),
      tier: 'NOVICE',
    });
    const lifetime = Date.parse(out.expires_at) - Date.now();
    expect(lifetime).toBeGreaterThan(3500_000);
    expect(lifetime).toBeLessThanOrEqual(3600_000);
    const vault = fs.readFileSync(path.join(t.home, 'vault.json'), 'utf8');
    const audit = fs.readFileSync(path.join(t.home, 'audit', 'audit.log'), 'utf8');
    expect(vault).not.toContain(out.token);
    expect(audit).not.toContain(out.token);
    const list = await t.tp(['agent', 'list', '--json']);
    expect(list.stdout).not.toContain(out.token);
    expect(list.stdout).not.toContain('token_sha256');
  });

  it('enforces the grant limit per tier and token lifetimes per tier', async () => {
    const t = await newHome();
    for (let i = 0; i < 6; i++) {
      expect(
        (await addCredential(t, `c${i}`, `${CANARY}${i}`, [
          '--allowed-domains',
          'api.allowed.test',
          '--min-tier',
          'NOVICE',
        ])).code,
      ).toBe(0);
    }
    const { id } = await newAgent(t, { tier: 'NOVICE' });
    expect((await t.tp(['agent', 'grant', id, 'c0', '--password-file', t.passwordFile])).code).toBe(
      0,
    );
    const over = await t.tp(['agent', 'grant', id, 'c1', '--password-file', t.passwordFile]);
    expect(over.code).toBe(4);
    expect(over.stderr).toMatch(/NOVICE agent may hold 1/);
    expect(
      (await t.tp(['agent', 'promote', id, 'COMPANION', '--password-file', t.passwordFile])).code,
    ).toBe(0);
    expect(
      (await t.tp([
        'agent',
        'grant',
        id,
        'c1',
        'c2',
        'c3',
        'c4',
        '--password-file',
        t.passwordFile,
      ])).code,
    ).toBe(0);
    expect((await t.tp(['agent', 'grant', id, 'c5', '--password-file', t.passwordFile])).code).toBe(
      4,
    );
    const tok = JSON.parse(
      (await t.tp(['--json', 'agent', 'token', id, '--password-file', t.passwordFile])).stdout,
    );
    expect(Date.parse(tok.expires_at) - Date.now()).toBeGreaterThan(4 * 3600_000 - 60_000);
    const dem = await t.tp([
      '--json',
      'agent',
      'demote',
      id,
      'NOVICE',
      '--password-file',
      t.passwordFile,
    ]);
    expect(dem.code, dem.stderr).toBe(0);
    const after = JSON.parse(dem.stdout);
    expect(after.grants).toEqual(['c0']);
    expect(after.removed_grants).toEqual(['c1', 'c2', 'c3', 'c4']);
    expect(Date.parse(after.token_expires_at) - Date.now()).toBeLessThanOrEqual(3600_000);
  });

  it('a fresh token replaces the old one', async () => {
    const t = await newHome();
    const { id, token } = await newAgent(t);
    const r = await t.tp(['--json', 'agent', 'token', id, '--password-file', t.passwordFile]);
    const fresh = JSON.parse(r.stdout).token;
    expect(fresh).not.toBe(token);
  });

  it('SACRED needs a terminal: refused from a password file or variable, nothing changes', async () => {
    const t = await newHome();
    const { id } = await newAgent(t, { tier: 'GUARDIAN' });
    const r = await t.tp(['agent', 'promote', id, 'SACRED', '--password-file', t.passwordFile]);
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(/terminal/);
    const r2 = await t.tp(['agent', 'promote', id, 'SACRED'], {
      env: { TRUST_PROTOCOL_PASSWORD: 'x' },
    });
    expect(r2.code).toBe(4);
    const reg = await t.tp([
      'agent',
      'register',
      'holy',
      '--tier',
      'SACRED',
      '--password-file',
      t.passwordFile,
    ]);
    expect(reg.code).toBe(2);
    const show = JSON.parse((await t.tp(['agent', 'show', id, '--json'])).stdout);
    expect(show.tier).toBe('GUARDIAN');
  });

  it('suspend, resume and revoke; revocation is permanent', async () => {
    const t = await newHome();
    const { id } = await newAgent(t);
    const pw = ['--password-file', t.passwordFile];
    expect((await t.tp(['agent', 'suspend', id, ...pw])).code).toBe(0);
    expect((await t.tp(['agent', 'suspend', id, ...pw])).code).toBe(2);
    expect((await t.tp(['agent', 'resume', id, ...pw])).code).toBe(0);
    expect((await t.tp(['agent', 'revoke', id, ...pw])).code).toBe(0);
    expect((await t.tp(['agent', 'resume', id, ...pw])).code).toBe(4);
    expect((await t.tp(['agent', 'token', id, ...pw])).code).toBe(4);
    const show = JSON.parse((await t.tp(['agent', 'show', id, '--json'])).stdout);
    expect(show).toMatchObject({ state: 'revoked', token_expires_at: null });
    expect((await t.tp(['agent', 'show', 'agt_nope'])).code).toBe(2);
  });
});
