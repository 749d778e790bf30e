/**
 * Issue #14: `skill verify --key` must not take a publisher name or the absence of a revocation
 * from a vault.json that nobody checked. The agent can write that file without the password.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { Buffer } from 'node:buffer';
import { readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { newHome, type TestHome } from '../helpers/cli.ts';
import { makeSkill } from './helpers.ts';

let t: TestHome;
let vaultPath: string;

async function signedSkill(name: string): Promise<{ pub: string; skill: string }> {
  const out = path.join(t.dir, name);
  const k = await t.tp([
    'skill',
    'keygen',
    '--out',
    out,
    '--password-file',
    t.passwordFile,
    '--kdf-memory-mib',
    '16',
  ]);
  if (k.code !== 0) throw new Error(`keygen failed: ${k.stderr}`);
  const skill = makeSkill(path.join(t.dir, `${name}-skill`));
  const s = await t.tp([
    'skill',
    'sign',
    skill,
    '--key',
    `${out}.key`,
    '--name',
    'weather',
    '--password-file',
    t.passwordFile,
  ]);
  if (s.code !== 0) throw new Error(`sign failed: ${s.stderr}`);
  return { pub: `${out}.pub`, skill };
}

/** Runs `change` on the parsed vault.json as the agent would, without the password. */
function editVault(
  change: (vault: { body: { publishers: Array<Record<string, unknown>> } }) => void,
) {
  const vault = JSON.parse(readFileSync(vaultPath, 'utf8'));
  change(vault);
  writeFileSync(vaultPath, JSON.stringify(vault, null, 2));
}

beforeAll(async () => {
  t = await newHome();
  vaultPath = path.join(t.home, 'vault.json');
});

describe('skill verify --key against a hand-edited vault.json', () => {
  it('never shows a planted publisher name as the signer', async () => {
    const mallory = await signedSkill('mallory');
    // A minisign public key line is "Ed", the 8-byte key id, then the 32-byte Ed25519 key.
    const line = readFileSync(mallory.pub, 'utf8').split('\n')[1] as string;
    const publicKey = Buffer.from(line, 'base64').subarray(10).toString('base64');
    const keyId = /minisign public key ([0-9A-F]{16})/.exec(readFileSync(mallory.pub, 'utf8'))?.[1];
    const original = readFileSync(vaultPath);
    editVault((v) =>
      v.body.publishers.push({
        name: 'trusted-corp',
        key_id: keyId,
        public_key: publicKey,
        added_at: '2026-01-01T00:00:00.000Z',
        revoked_at: null,
        revoke_reason: null,
      })
    );
    const noPassword = await t.tp(['skill', 'verify', mallory.skill, '--key', mallory.pub]);
    const json = await t.tp(['skill', 'verify', mallory.skill, '--key', mallory.pub, '--json']);
    const withPassword = await t.tp([
      'skill',
      'verify',
      mallory.skill,
      '--key',
      mallory.pub,
      '--password-file',
      t.passwordFile,
    ]);
    writeFileSync(vaultPath, original);
    for (const r of [noPassword, json, withPassword]) {
      expect(r.stdout + r.stderr).not.toContain('trusted-corp');
      expect(r.code).not.toBe(0);
    }
    // Without the password the list cannot be checked (exit 3); with it the edit shows (exit 8).
    expect([noPassword.code, json.code, withPassword.code]).toEqual([3, 3, 8]);
  });

  it('a revocation deleted by hand still refuses the key', async () => {
    const acme = await signedSkill('acme');
    const add = await t.tp([
      'publisher',
      'add',
      'acme',
      acme.pub,
      '--password-file',
      t.passwordFile,
    ]);
    expect(add.code, add.stderr).toBe(0);
    const revoke = await t.tp([
      'publisher',
      'revoke',
      'acme',
      '--reason',
      'key leaked',
      '--password-file',
      t.passwordFile,
    ]);
    expect(revoke.code, revoke.stderr).toBe(0);
    const sealed = readFileSync(vaultPath);
    const results = [];
    for (
      const lift of [
        (p: Record<string, unknown>) => Object.assign(p, { revoked_at: null, revoke_reason: null }),
        (p: Record<string, unknown>) => Object.assign(p, { key_id: '0000000000000000' }),
      ]
    ) {
      editVault((v) => v.body.publishers.filter((p) => p.name === 'acme').forEach(lift));
      results.push(await t.tp(['skill', 'verify', acme.skill, '--key', acme.pub]));
      results.push(
        await t.tp([
          'skill',
          'verify',
          acme.skill,
          '--key',
          acme.pub,
          '--password-file',
          t.passwordFile,
        ]),
      );
      writeFileSync(vaultPath, sealed);
    }
    editVault((v) => {
      v.body.publishers = v.body.publishers.filter((p) => p.name !== 'acme');
    });
    results.push(await t.tp(['skill', 'verify', acme.skill, '--key', acme.pub]));
    writeFileSync(vaultPath, sealed);
    expect(results.map((r) => r.code)).toEqual([3, 8, 3, 8, 3]);

    // Untouched, the sealed list refuses the revoked key by its authenticated record.
    const intact = await t.tp([
      'skill',
      'verify',
      acme.skill,
      '--key',
      acme.pub,
      '--password-file',
      t.passwordFile,
      '--json',
    ]);
    expect(intact.code).toBe(1);
    expect(JSON.parse(intact.stdout)).toMatchObject({
      ok: false,
      publisher: 'acme',
      problems: [{ kind: 'revoked_publisher' }],
    });
  });
});
