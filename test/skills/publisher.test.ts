import { beforeAll, describe, expect, it } from 'vitest';
import { Buffer } from 'node:buffer';
import { readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { newHome, type TestHome } from '../helpers/cli.ts';
import { makeSkill } from './helpers.ts';

let t: TestHome;
let pub: string;
let skill: string;

async function keygen(name: string): Promise<{ key: string; pub: string }> {
  const out = path.join(t.dir, name);
  const r = await t.tp([
    'skill',
    'keygen',
    '--out',
    out,
    '--password-file',
    t.passwordFile,
    '--kdf-memory-mib',
    '16',
  ]);
  if (r.code !== 0) throw new Error(`keygen failed: ${r.stderr}`);
  return { key: `${out}.key`, pub: `${out}.pub` };
}

function kinds(stdout: string): string[] {
  return (JSON.parse(stdout) as { problems: Array<{ kind: string }> }).problems.map((p) => p.kind);
}

async function auditEntries(): Promise<
  Array<{ event: string; outcome: string; data: Record<string, unknown> }>
> {
  const r = await t.tp(['audit', 'show', '--json', '--event', 'skill', '--event', 'publisher']);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.trim().split('\n').filter((l) => l !== '').map((l) => JSON.parse(l));
}

beforeAll(async () => {
  t = await newHome();
  const k = await keygen('acme');
  pub = k.pub;
  skill = makeSkill(path.join(t.dir, 'weather'));
  const s = await t.tp(['skill', 'sign', skill, '--key', k.key, '--password-file', t.passwordFile]);
  if (s.code !== 0) throw new Error(`sign failed: ${s.stderr}`);
});

describe('publisher add, list, revoke and skill verify --publisher', () => {
  it('adds with the password, lists without it, and verifies against the registered key', async () => {
    expect((await t.tp(['publisher', 'add', 'acme', pub])).code).toBe(3);
    const add = await t.tp([
      'publisher',
      'add',
      'acme',
      pub,
      '--password-file',
      t.passwordFile,
      '--json',
    ]);
    expect(add.code, add.stderr).toBe(0);
    const record = JSON.parse(add.stdout);
    expect(record).toMatchObject({ name: 'acme', revoked_at: null });
    expect(readFileSync(pub, 'utf8')).toContain(record.key_id);

    const list = await t.tp(['publisher', 'list', '--json']);
    expect(JSON.parse(list.stdout)).toEqual([record]);
    expect((await t.tp(['publisher', 'list'])).stdout).toMatch(/acme\s+[0-9A-F]{16}\s+trusted/);

    const ok = await t.tp([
      'skill',
      'verify',
      skill,
      '--publisher',
      'acme',
      '--password-file',
      t.passwordFile,
      '--json',
    ]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({
      ok: true,
      publisher: 'acme',
      name: 'weather',
      version: '0.0.0',
    });
    // --key with a registered key names the publisher too, from the list checked with the
    // password; without the password that list is not read at all (#14).
    const byKey = await t.tp([
      'skill',
      'verify',
      skill,
      '--key',
      pub,
      '--password-file',
      t.passwordFile,
      '--json',
    ]);
    expect(JSON.parse(byKey.stdout)).toMatchObject({ ok: true, publisher: 'acme' });
    expect((await t.tp(['skill', 'verify', skill, '--key', pub])).code).toBe(3);
  });

  it('refuses duplicates, re-adding a key under another name, and small-order keys', async () => {
    const again = await t.tp(['publisher', 'add', 'acme', pub, '--password-file', t.passwordFile]);
    expect([again.code, /already exists/.test(again.stderr)]).toEqual([2, true]);
    const alias = await t.tp(['publisher', 'add', 'acme2', pub, '--password-file', t.passwordFile]);
    expect([alias.code, /already trusted as publisher acme/.test(alias.stderr)]).toEqual([2, true]);
    const identity = Buffer.alloc(42);
    identity.write('Ed');
    identity[10] = 1;
    const weak = t.file('weak.pub', `untrusted comment: weak\n${identity.toString('base64')}\n`);
    const r = await t.tp(['publisher', 'add', 'weak', weak, '--password-file', t.passwordFile]);
    expect([r.code, /small-order/.test(r.stderr)]).toEqual([2, true]);
  });

  it('--publisher needs the password: an edited publisher list must not widen trust', async () => {
    const r = await t.tp(['skill', 'verify', skill, '--publisher', 'acme']);
    expect(r.code).toBe(3);
    // Planting a publisher in vault.json by hand is detected (state integrity, exit 8).
    const mallory = await keygen('mallory');
    const vaultPath = path.join(t.home, 'vault.json');
    const original = readFileSync(vaultPath, 'utf8');
    const vault = JSON.parse(original);
    vault.body.publishers.push({
      ...vault.body.publishers[0],
      name: 'mallory',
      public_key: readFileSync(mallory.pub, 'utf8').split('\n')[1],
    });
    writeFileSync(vaultPath, JSON.stringify(vault, null, 2));
    const planted = await t.tp([
      'skill',
      'verify',
      skill,
      '--publisher',
      'mallory',
      '--password-file',
      t.passwordFile,
    ]);
    writeFileSync(vaultPath, original);
    expect(planted.code).toBe(8);
  });

  it('unknown publisher, then revocation: verdicts fail from then on, by name and by key', async () => {
    const unknown = await t.tp([
      'skill',
      'verify',
      skill,
      '--publisher',
      'nobody',
      '--password-file',
      t.passwordFile,
      '--json',
    ]);
    expect([unknown.code, kinds(unknown.stdout)]).toEqual([1, ['unknown_publisher']]);

    expect((await t.tp(['publisher', 'revoke', 'acme', '--password-file', t.passwordFile])).code)
      .toBe(2);
    const vaultPath = path.join(t.home, 'vault.json');
    const beforeRevoke = readFileSync(vaultPath);
    const revoke = await t.tp([
      'publisher',
      'revoke',
      'acme',
      '--reason',
      'key leaked in CI logs',
      '--password-file',
      t.passwordFile,
      '--json',
    ]);
    expect(revoke.code, revoke.stderr).toBe(0);
    expect(JSON.parse(revoke.stdout)).toMatchObject({
      name: 'acme',
      revoke_reason: 'key leaked in CI logs',
    });

    const byName = await t.tp([
      'skill',
      'verify',
      skill,
      '--publisher',
      'acme',
      '--password-file',
      t.passwordFile,
      '--json',
    ]);
    expect([byName.code, kinds(byName.stdout)]).toEqual([1, ['revoked_publisher']]);
    // Rolling vault.json back to its (validly sealed) state before the revocation is detected.
    const current = readFileSync(vaultPath);
    writeFileSync(vaultPath, beforeRevoke);
    const rolledBack = await t.tp([
      'skill',
      'verify',
      skill,
      '--publisher',
      'acme',
      '--password-file',
      t.passwordFile,
    ]);
    writeFileSync(vaultPath, current);
    expect([rolledBack.code, /older than the audit trail/.test(rolledBack.stderr)]).toEqual([
      8,
      true,
    ]);
    const byKey = await t.tp([
      'skill',
      'verify',
      skill,
      '--key',
      pub,
      '--password-file',
      t.passwordFile,
      '--json',
    ]);
    expect([byKey.code, kinds(byKey.stdout)]).toEqual([1, ['revoked_publisher']]);
    expect(JSON.parse(byKey.stdout).problems[0].detail).toMatch(/key leaked in CI logs/);

    const readd = await t.tp([
      'publisher',
      'add',
      'acme-new',
      pub,
      '--password-file',
      t.passwordFile,
    ]);
    expect([readd.code, /revoked/.test(readd.stderr)]).toEqual([2, true]);
    expect((await t.tp(['publisher', 'list'])).stdout).toMatch(/acme\s+[0-9A-F]{16}\s+revoked/);
  });

  it('audits every verification and publisher change, and the trail stays intact', async () => {
    const entries = await auditEntries();
    const verifies = entries.filter((e) => e.event === 'skill.verify');
    expect(verifies.map((e) => e.outcome)).toEqual(['ok', 'ok', 'denied', 'denied', 'denied']);
    expect(verifies[0]?.data).toMatchObject({
      name: 'weather',
      version: '0.0.0',
      publisher: 'acme',
      problems: [],
    });
    expect(verifies[3]?.data.problems).toEqual(['revoked_publisher']);
    expect(entries.filter((e) => e.event.startsWith('publisher.')).map((e) => e.event))
      .toEqual(['publisher.add', 'publisher.revoke']);
    const audit = await t.tp(['audit', 'verify', '--password-file', t.passwordFile]);
    expect(audit.code, audit.stdout + audit.stderr).toBe(0);
  });
});
