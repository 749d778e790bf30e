/**
 * Admins with their own key slots and roles (issue #19, SPEC §15), on the file store: each admin
 * unseals with their own password, a role lacking a capability is refused before anything changes,
 * slot records are under the vault MAC, and a format-1 vault is migrated without losing anything.
 */
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { addAdmin as addAdminAs, addCredential, newHome, type TestHome } from '../helpers/cli.ts';

const ROOT = path.resolve(new URL('../..', import.meta.url).pathname);

interface Admin {
  name: string;
  passwordFile: string;
}

async function addAdmin(t: TestHome, name: string, role: string): Promise<Admin> {
  return { name, passwordFile: await addAdminAs(t, name, role) };
}

function snapshot(t: TestHome): { vault: string; audit: string } {
  return {
    vault: fs.readFileSync(path.join(t.home, 'vault.json'), 'utf8'),
    audit: fs.readFileSync(path.join(t.home, 'audit', 'audit.log'), 'utf8'),
  };
}

async function auditEntries(t: TestHome): Promise<Array<Record<string, unknown>>> {
  const r = await t.tp(['--json', 'audit', 'show']);
  expect(r.code).toBe(0);
  return r.stdout.trim().split('\n').map((l) => JSON.parse(l));
}

describe('admins and key slots', () => {
  it('two admins each unseal with their own password; entries name the admin', async () => {
    const t = await newHome();
    const alice = await addAdmin(t, 'alice', 'admin');
    const list = await t.tp(['--json', 'admin', 'list']);
    expect(list.code).toBe(0);
    expect(
      JSON.parse(list.stdout).admins.map((a: { name: string; role: string }) => [
        a.name,
        a.role,
      ]),
    ).toEqual([['owner', 'owner'], ['alice', 'admin']]);
    const a = await addCredential(t, 'by-owner', 'tp-value-by-owner', [
      '--allowed-domains',
      'a.test',
    ]);
    expect(a.stderr).toBe('');
    expect(a.code).toBe(0);
    // alice without --admin: each slot is tried in turn.
    const b = await t.tp([
      'credential',
      'add',
      'by-alice-2',
      '--allowed-domains',
      'a.test',
      '--password-file',
      alice.passwordFile,
    ], { input: 'tp-value-by-alice-2' });
    expect(b.stderr).toBe('');
    expect(b.code).toBe(0);
    const c = await t.tp([
      'credential',
      'add',
      'by-alice-3',
      '--allowed-domains',
      'a.test',
      '--password-file',
      alice.passwordFile,
    ], { input: 'tp-value-by-alice-3', env: { TRUST_PROTOCOL_ADMIN: 'alice' } });
    expect(c.code).toBe(0);
    // Named the wrong slot: alice's password does not open owner's.
    const wrong = await t.tp([
      '--admin',
      'owner',
      'credential',
      'remove',
      'by-owner',
      '--password-file',
      alice.passwordFile,
    ]);
    expect(wrong.code).toBe(3);
    const entries = await auditEntries(t);
    const adds = entries.filter((e) => e.event === 'credential.add');
    expect(adds.map((e) => e.actor)).toEqual([
      { type: 'operator', id: 'owner' },
      { type: 'operator', id: 'alice' },
      { type: 'operator', id: 'alice' },
    ]);
    expect(entries.find((e) => e.event === 'admin.add')?.actor).toEqual({
      type: 'operator',
      id: 'owner',
    });
    expect(entries.find((e) => e.event === 'vault.init')?.actor).toEqual({
      type: 'operator',
      id: 'owner',
    });
  });

  it('an operator cannot add a credential but can clear a brake; an auditor verifies', async () => {
    const t = await newHome();
    const op = await addAdmin(t, 'olga', 'operator');
    const aud = await addAdmin(t, 'ada', 'auditor');
    const before = snapshot(t);
    const denied = await t.tp([
      'credential',
      'add',
      'nope',
      '--allowed-domains',
      'a.test',
      '--password-file',
      op.passwordFile,
    ], { input: 'tp-canary-operator-denied' });
    expect(denied.code).toBe(3);
    expect(denied.stderr).toMatch(/role operator/);
    expect(denied.stderr).toMatch(/hint: .*admin/);
    expect(snapshot(t)).toEqual(before);
    const addAsOp = await t.tp([
      'admin',
      'add',
      'eve',
      '--role',
      'owner',
      '--new-password-file',
      op.passwordFile,
      '--password-file',
      op.passwordFile,
    ]);
    expect(addAsOp.code).toBe(3);
    expect(snapshot(t)).toEqual(before);

    expect((await t.tp(['emergency', 'activate', '--reason', 'test'])).code).toBe(0);
    const clear = await t.tp([
      'emergency',
      'clear',
      '--confirmation',
      'CONFIRM_RESTORE_ACCESS',
      '--password-file',
      op.passwordFile,
    ]);
    expect(clear.stderr).toBe('');
    expect(clear.code).toBe(0);
    const cleared = (await auditEntries(t)).find((e) => e.event === 'brake.clear');
    expect(cleared?.actor).toEqual({ type: 'operator', id: 'olga' });

    const verify = await t.tp(['audit', 'verify', '--password-file', aud.passwordFile]);
    expect(verify.stderr).toBe('');
    expect(verify.code).toBe(0);
    expect(verify.stdout).toMatch(/HMACs checked/);
    const audAdd = await t.tp([
      'agent',
      'register',
      'x',
      '--password-file',
      aud.passwordFile,
    ]);
    expect(audAdd.code).toBe(3);
    expect(audAdd.stderr).toMatch(/role auditor/);
  });

  it('refuses to remove the last owner; a removed admin no longer unseals', async () => {
    const t = await newHome();
    const last = await t.tp(['admin', 'remove', 'owner', '--password-file', t.passwordFile]);
    expect(last.code).toBe(2);
    expect(last.stderr).toMatch(/last owner/);
    const bob = await addAdmin(t, 'bob', 'admin');
    const gone = await t.tp(['admin', 'remove', 'bob', '--password-file', t.passwordFile]);
    expect(gone.code).toBe(0);
    const r = await t.tp(['agent', 'register', 'x', '--password-file', bob.passwordFile]);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/password/);
    const removed = (await auditEntries(t)).find((e) => e.event === 'admin.remove');
    expect(removed?.data).toMatchObject({ name: 'bob' });
  });

  it('admin add --issuer --subject: the slot and the link in one change, one audit append', async () => {
    const t = await newHome();
    const issuer = 'https://login.example.test';
    const owner = (args: string[]) => t.tp([...args, '--password-file', t.passwordFile]);
    expect((await owner(['admin', 'oidc', 'add', '--issuer', issuer, '--client-id', 'tp'])).code)
      .toBe(0);
    const before = (await auditEntries(t)).length;
    const pw = t.file('pw-carol', 'carol password\n');
    const r = await owner([
      '--json',
      'admin',
      'add',
      'carol',
      '--role',
      'operator',
      '--org',
      'acme',
      '--issuer',
      issuer,
      '--subject',
      'sub-carol',
      '--new-password-file',
      pw,
    ]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      name: 'carol',
      role: 'operator',
      org: 'acme',
      link: { issuer, subject: 'sub-carol' },
    });
    // One vault change: both events in one append (one timestamp), then its one save.
    const added = (await auditEntries(t)).slice(before);
    expect(added.map((e) => e.event)).toEqual(['admin.add', 'admin.link', 'vault.saved']);
    expect(added[0]?.ts).toBe(added[1]?.ts);
    expect(added[0]?.data).toEqual({ name: 'carol', role: 'operator', org: 'acme' });
    expect(added[1]?.data).toEqual({ admin: 'carol', issuer, subject: 'sub-carol' });
    expect(added[1]?.actor).toEqual({ type: 'operator', id: 'owner' });
    const listed = JSON.parse((await t.tp(['--json', 'admin', 'oidc', 'list'])).stdout);
    expect(listed.links).toEqual([{ admin: 'carol', issuer, subject: 'sub-carol' }]);
    // carol's own password opens the vault with her role.
    const own = await t.tp(['agent', 'register', 'x', '--org', 'acme', '--password-file', pw]);
    expect(own.code).toBe(3);
    expect(own.stderr).toMatch(/role operator/);
    const verify = await owner(['audit', 'verify']);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
  });

  it("admin add --issuer --subject refuses what admin link refuses, before the new admin's password", async () => {
    const t = await newHome();
    const issuer = 'https://login.example.test';
    const owner = (args: string[]) => t.tp([...args, '--password-file', t.passwordFile]);
    expect((await owner(['admin', 'oidc', 'add', '--issuer', issuer, '--client-id', 'tp'])).code)
      .toBe(0);
    const alice = await addAdmin(t, 'alice', 'admin');
    expect((await owner(['admin', 'link', 'alice', '--issuer', issuer, '--subject', 'al'])).code)
      .toBe(0);
    const before = snapshot(t);
    // A --new-password-file that does not exist: a refusal that read it would say so instead.
    const missing = path.join(t.dir, 'no-such-password-file');
    const add = (extra: string[]) =>
      t.tp([
        '--json',
        'admin',
        'add',
        'dan',
        '--role',
        'operator',
        ...extra,
        '--new-password-file',
        missing,
        '--password-file',
        t.passwordFile,
      ]);
    const cases: Array<[string, string[], number, string]> = [
      ['unknown issuer', ['--issuer', 'https://other.test', '--subject', 'd'], 2, 'unknown_issuer'],
      ['linked to alice', ['--issuer', issuer, '--subject', 'al'], 2, 'subject_linked'],
      ['bad subject', ['--issuer', issuer, '--subject', 'has space'], 2, 'bad_flag'],
      ['no subject', ['--issuer', issuer], 2, 'bad_flag'],
      ['no issuer', ['--subject', 'd'], 2, 'bad_flag'],
    ];
    for (const [name, extra, code, reason] of cases) {
      const r = await add(extra);
      expect(r.code, `${name}: ${r.stderr}`).toBe(code);
      expect(JSON.parse(r.stderr).error.code, name).toBe(reason);
      expect(snapshot(t), name).toEqual(before);
    }
    // Owner only, as admin add and admin link are (refused before the Argon2id).
    const byAlice = await t.tp([
      '--json',
      'admin',
      'add',
      'dan',
      '--role',
      'operator',
      '--issuer',
      issuer,
      '--subject',
      'd',
      '--new-password-file',
      t.file('pw-dan', 'dan password\n'),
      '--password-file',
      alice.passwordFile,
    ]);
    expect(byAlice.code, byAlice.stderr).toBe(3);
    expect(JSON.parse(byAlice.stderr).error.code).toBe('role_denied');
    expect(snapshot(t)).toEqual(before);
    const taken = await add(['--issuer', issuer, '--subject', 'al']);
    expect(JSON.parse(taken.stderr).error.message).toMatch(/already signs in as admin "alice"/);
    // An owner is instance-wide, linked or not (the org rule of admin add).
    const ownerOrg = await add([
      '--issuer',
      issuer,
      '--subject',
      'd',
      '--org',
      'x',
      '--role',
      'owner',
    ]);
    expect(ownerOrg.code).toBe(2);
    expect(snapshot(t)).toEqual(before);

    // admin link refuses to take an identity from another admin too; it may repeat its own.
    const steal = await owner(['admin', 'link', 'owner', '--issuer', issuer, '--subject', 'al']);
    expect(steal.code).toBe(2);
    expect(steal.stderr).toMatch(/already signs in as admin "alice"/);
    expect(steal.stderr).toMatch(/hint: .*admin oidc remove --issuer/);
    expect(snapshot(t)).toEqual(before);
    const again = await owner(['admin', 'link', 'alice', '--issuer', issuer, '--subject', 'al']);
    expect(again.code, again.stderr).toBe(0);
  });

  it('admin passwd changes only the acting admin slot', async () => {
    const t = await newHome();
    const carol = await addAdmin(t, 'carol', 'admin');
    const next = t.file('carol-next', 'carols new password\n');
    const r = await t.tp([
      'admin',
      'passwd',
      '--password-file',
      carol.passwordFile,
      '--new-password-file',
      next,
    ]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect((await t.tp(['agent', 'register', 'x', '--password-file', carol.passwordFile])).code)
      .toBe(3);
    expect((await t.tp(['agent', 'register', 'y', '--password-file', next])).code).toBe(0);
    expect((await t.tp(['agent', 'register', 'z', '--password-file', t.passwordFile])).code)
      .toBe(0);
  });

  it('editing or swapping slot roles by hand is an integrity failure (exit 8)', async () => {
    const t = await newHome();
    const op = await addAdmin(t, 'olga', 'operator');
    const file = path.join(t.home, 'vault.json');
    const original = fs.readFileSync(file, 'utf8');
    const raised = JSON.parse(original);
    raised.slots[1].role = 'owner';
    fs.writeFileSync(file, JSON.stringify(raised, null, 2));
    const r = await t.tp(['agent', 'register', 'x', '--password-file', op.passwordFile]);
    expect(r.code).toBe(8);
    // Swapping the role fields between the two slots: the owner now reads as operator and back.
    const swapped = JSON.parse(original);
    swapped.slots[0].role = 'operator';
    swapped.slots[1].role = 'owner';
    fs.writeFileSync(file, JSON.stringify(swapped, null, 2));
    const s = await t.tp(['agent', 'register', 'x', '--password-file', op.passwordFile]);
    expect(s.code).toBe(8);
    const s2 = await t.tp(['agent', 'register', 'x', '--password-file', t.passwordFile]);
    expect(s2.code).toBe(8);
  });

  it('a format-1 vault made before key slots unseals and is migrated losing nothing', async () => {
    const t = await newHome({ init: false });
    fs.cpSync(path.join(ROOT, 'fixtures/vault-v1'), t.home, { recursive: true });
    fs.rmSync(path.join(t.home, 'brakes', '.keep'));
    fs.chmodSync(t.home, 0o700);
    const pw = t.file(
      'v1-password',
      fs.readFileSync(path.join(ROOT, 'fixtures/vault-v1.password'), 'utf8'),
    );
    const list = await t.tp(['--json', 'admin', 'list']);
    expect(list.code).toBe(0);
    expect(JSON.parse(list.stdout).admins).toMatchObject([{ name: 'owner', role: 'owner' }]);
    expect(JSON.parse(fs.readFileSync(path.join(t.home, 'vault.json'), 'utf8')).version).toBe(1);
    // A read with the key leaves the file as it is.
    expect((await t.tp(['audit', 'verify', '--password-file', pw])).code).toBe(0);
    expect(JSON.parse(fs.readFileSync(path.join(t.home, 'vault.json'), 'utf8')).version).toBe(1);
    // The first change with the password writes format 2, the same data key in one owner slot.
    const upd = await t.tp([
      'credential',
      'update',
      'demo',
      '--allowed-domains',
      'example.com,example.org',
      '--password-file',
      pw,
    ]);
    expect(upd.stderr).toBe('');
    expect(upd.code).toBe(0);
    const v2 = JSON.parse(fs.readFileSync(path.join(t.home, 'vault.json'), 'utf8'));
    expect(v2.version).toBe(2);
    expect(v2.kdf).toBeUndefined();
    expect(v2.slots.map((s: { name: string; role: string }) => [s.name, s.role])).toEqual([[
      'owner',
      'owner',
    ]]);
    expect(v2.body.agents.map((a: { name: string; grants: string[] }) => [a.name, a.grants]))
      .toEqual([['bot', ['demo']]]);
    const verify = await t.tp(['audit', 'verify', '--password-file', pw]);
    expect(verify.stderr).toBe('');
    expect(verify.code).toBe(0);
    const upgraded = (await auditEntries(t)).find((e) => e.event === 'vault.upgraded');
    expect(upgraded?.data).toMatchObject({ from: 1, to: 2 });
    expect(
      (await t.tp(['credential', 'rotate', 'demo', '--password-file', pw], {
        input: 'tp-canary-v1-rotated',
      })).code,
    ).toBe(0);
  });
});
