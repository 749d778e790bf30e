/**
 * `vault rekey` (issue #19): a new data key after an admin was removed. Credentials still inject,
 * the audit trail still verifies (older entries under the key they were MACed with), a rate limit
 * still counts entries from before the rekey, only an owner may rekey, and a removed admin's copy
 * of an older vault.json opens nothing rotated afterwards.
 */
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { addAdmin, addCredential, newHome, PASSWORD, type TestHome } from '../helpers/cli.ts';
import {
  ALLOWED_HOST,
  bearer,
  expectNoCanary,
  newCanary,
  requestsWith,
  setupCanary,
} from '../helpers/canary.ts';
import { utf8 } from '../../src/bytes.ts';
import { createCheckpoint } from '../../src/checkpoint.ts';
import { http, servedCredential, startServe, upstreamArgs } from '../helpers/serve.ts';
import { openHome } from '../../src/home.ts';
import { openState } from '../../src/state.ts';
import { decryptValue, parseVault, saveVault, unseal, wipeKeys } from '../../src/vault.ts';

const URL_ALLOWED = `https://${ALLOWED_HOST}/v1/x`;

function vaultPath(t: TestHome): string {
  return path.join(t.home, 'vault.json');
}

async function rekey(t: TestHome, passwordFile = t.passwordFile) {
  return await t.tp(['--json', 'vault', 'rekey', '--password-file', passwordFile]);
}

async function verify(t: TestHome) {
  const r = await t.tp(['--json', 'audit', 'verify', '--password-file', t.passwordFile]);
  return { ...r, json: r.stdout === '' ? null : JSON.parse(r.stdout) };
}

describe('vault rekey', { timeout: 120_000 }, () => {
  it('exec injects the value after one and two rekeys; audit verify stays intact; an older vault is refused', async () => {
    const c = await setupCanary();
    const { t } = c;
    try {
      const before = fs.readFileSync(vaultPath(t));
      const m1 = c.marker();
      const r1 = await c.exec(bearer(URL_ALLOWED, m1));
      expect(r1.code).toBe(0);
      const first = await rekey(t);
      expect(first.stderr).toBe('');
      expect(first.code).toBe(0);
      expect(JSON.parse(first.stdout)).toMatchObject({ rekeyed: true, admins: ['owner'] });
      const after1 = fs.readFileSync(vaultPath(t));
      const m2 = c.marker();
      const r2 = await c.exec(bearer(URL_ALLOWED, m2));
      expect(r2.stderr).toBe('');
      expect(r2.code).toBe(0);
      expect(requestsWith(c.allowed, m2)[0]?.headers.authorization).toBe(`Bearer ${c.canary}`);
      const v1 = await verify(t);
      expect(v1.code).toBe(0);
      expect(v1.json).toMatchObject({ ok: true, hmac_checked: true });

      const second = await rekey(t);
      expect(second.code).toBe(0);
      const m3 = c.marker();
      const r3 = await c.exec(bearer(URL_ALLOWED, m3));
      expect(r3.code).toBe(0);
      expect(requestsWith(c.allowed, m3)[0]?.headers.authorization).toBe(`Bearer ${c.canary}`);
      const v2 = await verify(t);
      expect(v2.code).toBe(0);
      expect(v2.json).toMatchObject({ ok: true, hmac_checked: true, unsealed: 0 });
      const stored = JSON.parse(fs.readFileSync(vaultPath(t), 'utf8'));
      expect(stored.version).toBe(3);
      expect(stored.body.audit_keys.map((k: { through: number }) => typeof k.through)).toEqual([
        'number',
        'number',
      ]);
      // The rekey entries name no key and no value.
      const log = fs.readFileSync(path.join(t.home, 'audit', 'audit.log'), 'utf8');
      const rekeyed = log.split('\n').filter((l) => l.includes('"vault.rekeyed"'));
      expect(rekeyed).toHaveLength(2);
      for (const r of [first, second, r2, r3, v1, v2]) c.expectClean(r);

      // Vault copies from before either rekey, put back: refused (exit 8), nothing sent.
      for (const old of [before, after1]) {
        const current = fs.readFileSync(vaultPath(t));
        fs.writeFileSync(vaultPath(t), old);
        const m = c.marker();
        const stale = await c.exec(bearer(URL_ALLOWED, m));
        expect(stale.code).toBe(8);
        expect(requestsWith(c.allowed, m)).toHaveLength(0);
        // audit verify reports it as a failed verification (exit 1): later entries' MACs do not
        // check under the old copy's keys.
        const v = await verify(t);
        expect(v.code).toBe(1);
        expect(v.json).toMatchObject({ ok: false });
        fs.writeFileSync(vaultPath(t), current);
      }
      expect((await verify(t)).code).toBe(0);
    } finally {
      await c.close();
    }
  });

  it('a rate limit counts the requests made before the rekey', async () => {
    const c = await setupCanary({
      credentials: [{
        name: 'r',
        value: newCanary(),
        flags: ['--allowed-domains', ALLOWED_HOST, '--rate', '2/h'],
      }],
    });
    const { t } = c;
    try {
      for (let i = 0; i < 2; i++) {
        const r = await c.exec({ ...bearer(URL_ALLOWED, c.marker()), credential: 'r' });
        expect(r.code).toBe(0);
      }
      expect((await rekey(t)).code).toBe(0);
      const m = c.marker();
      const third = await c.exec({ ...bearer(URL_ALLOWED, m), credential: 'r' });
      expect(third.stderr).toMatch(/rate/);
      expect(third.code).toBe(4);
      expect(requestsWith(c.allowed, m)).toHaveLength(0);
      // Another credential is not limited: the refusal is the count, not a broken trail.
      const other = await c.exec(bearer(URL_ALLOWED, c.marker()));
      expect(other.code).toBe(0);
      c.expectClean(third);
    } finally {
      await c.close();
    }
  });

  it('only an owner may rekey (exit 3, nothing changed)', async () => {
    const t = await newHome();
    const pw = t.file('pw-alice', 'password of alice for rekey\n');
    const add = await t.tp([
      'admin',
      'add',
      'alice',
      '--role',
      'admin',
      '--new-password-file',
      pw,
      '--password-file',
      t.passwordFile,
    ]);
    expect(add.code).toBe(0);
    const vault = fs.readFileSync(vaultPath(t), 'utf8');
    const log = fs.readFileSync(path.join(t.home, 'audit', 'audit.log'), 'utf8');
    const denied = await rekey(t, pw);
    expect(denied.code).toBe(3);
    expect(denied.stderr).toMatch(/role admin.*vault\.rekeyed/);
    expect(fs.readFileSync(vaultPath(t), 'utf8')).toBe(vault);
    expect(fs.readFileSync(path.join(t.home, 'audit', 'audit.log'), 'utf8')).toBe(log);
  });

  it('a rekey interrupted before or after the vault write leaves a home that verifies and works', async () => {
    const t = await newHome();
    const value = newCanary();
    expect((await addCredential(t, 'k', value, ['--allowed-domains', 'a.test'])).code).toBe(0);
    const logFile = path.join(t.home, 'audit', 'audit.log');
    const oldVault = fs.readFileSync(vaultPath(t));
    expect((await rekey(t)).code).toBe(0);
    const newVault = fs.readFileSync(vaultPath(t));
    const lines = fs.readFileSync(logFile, 'utf8').split('\n').filter((l) => l !== '');
    expect(lines[lines.length - 2]).toContain('"vault.rekeyed"');
    expect(lines[lines.length - 1]).toContain('"vault.saved"');
    const withoutSaved = lines.slice(0, -1).join('\n') + '\n';
    const copy = async () => {
      const c = await newHome({ init: false });
      fs.cpSync(t.home, c.home, { recursive: true });
      return c;
    };

    // Killed after the vault write, before its vault.saved entry: the new vault.
    const after = await copy();
    fs.writeFileSync(path.join(after.home, 'audit', 'audit.log'), withoutSaved);
    expect((await verify(after)).json).toMatchObject({ ok: true });
    expect((await rekey(after)).code).toBe(0);
    expect((await verify(after)).json).toMatchObject({ ok: true, unsealed: 0 });

    // Killed after the vault.rekeyed entry, before the vault write: the old vault as the rekey
    // left it just before its audit entries (change in flight), under the old keys.
    const before = await copy();
    fs.writeFileSync(path.join(before.home, 'audit', 'audit.log'), withoutSaved);
    const old = parseVault(oldVault);
    const keys = unseal(old, utf8.encode(PASSWORD));
    old.body.change_in_flight = true;
    old.body.generation += 1;
    saveVault(openHome(before.home, { create: false }), old, keys);
    wipeKeys(keys);
    const v = await verify(before);
    expect(v.stderr).toBe('');
    expect(v.json).toMatchObject({ ok: true, hmac_checked: true });
    // Changes go on under the old key (the interrupted change did not happen), and a rekey after.
    const rotate = await before.tp([
      'credential',
      'rotate',
      'k',
      '--password-file',
      before.passwordFile,
    ], {
      input: newCanary(),
    });
    expect(rotate.stderr).toBe('');
    expect(rotate.code).toBe(0);
    expect((await rekey(before)).code).toBe(0);
    expect((await verify(before)).json).toMatchObject({ ok: true, unsealed: 0 });
    expect(fs.readFileSync(vaultPath(t))).toEqual(newVault);
  });

  it('is refused while serve runs; serve started after the rekey injects the value', async () => {
    const value = newCanary();
    const { t, upstream, s, agent, stop } = await servedCredential(value);
    let again: Awaited<ReturnType<typeof startServe>> | null = null;
    try {
      const refused = await rekey(t);
      expect(refused.code).toBe(2);
      expect(refused.stderr).toMatch(/serve_running/);
      // serve itself writes the vault (its audit head), so compare what a rekey would change.
      expect(JSON.parse(fs.readFileSync(vaultPath(t), 'utf8')).version).toBe(2);
      expect(fs.readFileSync(path.join(t.home, 'audit', 'audit.log'), 'utf8')).not.toContain(
        'vault.rekeyed',
      );
      await s.stop();
      const done = await rekey(t);
      expect(done.code).toBe(0);
      again = await startServe(t, upstreamArgs(t, upstream.port));
      const proxy = () =>
        http(again!, '/v1/proxy', {
          body: JSON.stringify({
            credential: 'k',
            method: 'GET',
            url: `https://${ALLOWED_HOST}/v1/x`,
            headers: { Authorization: 'Bearer {{CREDENTIAL}}' },
          }),
          headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${agent.token}` },
        });
      for (let i = 0; i < 2; i++) {
        const r = await proxy();
        expect(r.status).toBe(200);
        expectNoCanary(r.body, value);
      }
      expect(upstream.requests.at(-1)?.headers.authorization).toBe(`Bearer ${value}`);
      for (const r of [refused, done]) expectNoCanary(r.stdout + r.stderr, value);
    } finally {
      await again?.stop();
      await stop();
    }
    expect((await verify(t)).json).toMatchObject({ ok: true, unsealed: 0 });
  });

  it('a process holding the keys from before the rekey cannot append under the retired key', async () => {
    const t = await newHome();
    const home = openHome(t.home, { create: false });
    const stale = unseal(parseVault(fs.readFileSync(vaultPath(t))), utf8.encode(PASSWORD));
    expect((await rekey(t)).code).toBe(0);
    const logFile = path.join(t.home, 'audit', 'audit.log');
    const log = fs.readFileSync(logFile, 'utf8');
    const append = openState(home).audit.writer({ macKey: stale.auditKeys }).append([{
      event: 'agent.suspend',
      actor: { type: 'operator', id: 'owner' },
      outcome: 'ok',
      data: {},
    }]);
    await expect(append).rejects.toThrow(/rekeyed since it was unsealed/);
    wipeKeys(stale);
    expect(fs.readFileSync(logFile, 'utf8')).toBe(log);
    expect((await verify(t)).json).toMatchObject({ ok: true, unsealed: 0 });
  });

  it('checkpoint keys stay: signed notes and version-1 checkpoints from before verify after', async () => {
    const t = await newHome();
    const pw = ['--password-file', t.passwordFile];
    const vkey = await t.tp(['audit', 'key', ...pw]);
    expect(vkey.code).toBe(0);
    const note = await t.tp(['audit', 'checkpoint', ...pw]);
    expect(note.code).toBe(0);
    const noteFile = t.file('note.txt', note.stdout);
    // A version-1 JSON checkpoint, as older releases wrote them (key derived from the data key).
    const file = parseVault(fs.readFileSync(vaultPath(t)));
    const keys = unseal(file, utf8.encode(PASSWORD));
    const v1 = createCheckpoint(file.body.audit_head!, keys.data, new Date());
    wipeKeys(keys);
    const v1File = t.file('v1.json', JSON.stringify(v1));
    expect((await rekey(t)).code).toBe(0);
    expect((await rekey(t)).code).toBe(0);
    const after = await t.tp(['audit', 'key', ...pw]);
    expect(after.stdout).toBe(vkey.stdout);
    for (
      const args of [['--checkpoint', noteFile, '--key', vkey.stdout.trim()], [
        '--checkpoint',
        v1File,
      ]]
    ) {
      const r = await t.tp(['audit', 'verify', ...args, ...pw]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
    }
    const later = await t.tp(['audit', 'checkpoint', ...pw]);
    const laterFile = t.file('later.txt', later.stdout);
    const r = await t.tp([
      'audit',
      'verify',
      '--checkpoint',
      laterFile,
      '--key',
      vkey.stdout.trim(),
    ]);
    expect(r.code).toBe(0);
  });

  it("a removed admin's old slot opens nothing rotated after the rekey; the others' passwords still open", async () => {
    const t = await newHome({ fresh: true });
    const malloryPw = await addAdmin(t, 'mallory', 'admin');
    const bobPw = await addAdmin(t, 'bob', 'owner');
    // A slot of an organisation: its org is bound into the seal, which the rekey must keep.
    const redPw = await addAdmin(t, 'red', 'operator', { org: 'acme' });
    const oldValue = newCanary();
    expect((await addCredential(t, 'k', oldValue, ['--allowed-domains', 'a.test'])).code).toBe(0);
    // What mallory keeps: vault.json while she is still an admin.
    const kept = fs.readFileSync(vaultPath(t));
    expect((await t.tp(['admin', 'remove', 'mallory', '--password-file', t.passwordFile])).code)
      .toBe(0);
    const r = await rekey(t);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).admins).toEqual(['owner', 'bob', 'red']);
    const newValue = newCanary();
    const rotate = await t.tp(['credential', 'rotate', 'k', '--password-file', bobPw], {
      input: newValue,
    });
    expect(rotate.stderr).toBe('');
    expect(rotate.code).toBe(0);
    // bob's and owner's passwords still open; mallory's no longer does.
    for (const pw of [bobPw, redPw, t.passwordFile]) {
      const v = await t.tp(['--json', 'audit', 'verify', '--password-file', pw]);
      expect(v.code).toBe(0);
      expect(JSON.parse(v.stdout)).toMatchObject({ ok: true, hmac_checked: true });
    }
    const refused = await t.tp(['audit', 'verify', '--password-file', malloryPw]);
    expect(refused.code).toBe(3);

    // Mallory's copy still opens with her password (it is her old slot) ...
    const password = utf8.encode(fs.readFileSync(malloryPw, 'utf8').trimEnd());
    const oldKeys = unseal(parseVault(kept), password, { admin: 'mallory' });
    const oldRecord = parseVault(kept).body.credentials[0]!;
    expect(Buffer.from(decryptValue(oldKeys, oldRecord)).toString()).toBe(oldValue);
    // ... but the data key it holds does not open the value rotated after the rekey.
    const current = parseVault(fs.readFileSync(vaultPath(t)));
    const rotated = current.body.credentials.find((c) => c.name === 'k')!;
    expect(() => decryptValue(oldKeys, rotated)).toThrow(/does not match its encrypted value/);
    // Nor does her password open the current vault, even naming her.
    expect(() => unseal(current, password, { admin: 'mallory' })).toThrow(/no admin named/);
    expect(() => unseal(current, password)).toThrow(/wrong master password/);
    // And the current vault opens as before with the owner's password.
    const ownerKeys = unseal(current, utf8.encode(PASSWORD));
    expect(Buffer.from(decryptValue(ownerKeys, rotated)).toString()).toBe(newValue);

    for (const res of [r, rotate, refused]) {
      expectNoCanary(res.stdout, newValue);
      expectNoCanary(res.stderr, newValue);
      expectNoCanary(res.stdout, oldValue);
    }
    for (const f of ['vault.json', path.join('audit', 'audit.log')]) {
      expectNoCanary(fs.readFileSync(path.join(t.home, f)), newValue, f);
    }
  });
});
