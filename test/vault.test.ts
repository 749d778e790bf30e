import { describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { KDF_FLOOR } from '../src/crypto/kdf.ts';
import { TpError } from '../src/errors.ts';
import { openHome } from '../src/home.ts';
import { openState } from '../src/state.ts';
import {
  createVault,
  type CredentialRecord,
  decryptValue,
  encryptValue,
  loadVault,
  saveVault,
  unseal,
} from '../src/vault.ts';

const pw = new TextEncoder().encode('vault unit test password');
const value = new TextEncoder().encode('sk-unit-canary-123456');

function fresh() {
  const home = openHome(path.join(mkdtempSync(path.join(tmpdir(), 'tp-vault-')), 'h'), {
    create: true,
  });
  const { file, keys } = createVault(pw, KDF_FLOOR, new Date());
  saveVault(home, file, keys);
  return { home, keys, st: openState(home) };
}

function record(keys: ReturnType<typeof fresh>['keys']): CredentialRecord {
  const meta = {
    name: 'k',
    allowed_domains: ['api.allowed.test'],
    any_domain: false,
    placements: ['header' as const],
    min_tier: 'COMPANION' as const,
    base_url: null,
    inject: null,
    rate: null,
  };
  return { ...meta, created_at: 'x', updated_at: 'x', value: encryptValue(keys, meta, value) };
}

function kindOf(fn: () => unknown): string {
  try {
    fn();
    return 'none';
  } catch (e) {
    return e instanceof TpError ? `${e.kind}:${e.code}` : 'other';
  }
}

describe('vault', () => {
  it('round-trips a credential value bound to its metadata', () => {
    const { keys } = fresh();
    expect(new TextDecoder().decode(decryptValue(keys, record(keys)))).toBe(
      'sk-unit-canary-123456',
    );
  });

  it.each([
    ['allowed_domains', (r: CredentialRecord) => r.allowed_domains.push('evil.test')],
    ['any_domain', (r: CredentialRecord) => {
      r.any_domain = true;
    }],
    ['placements', (r: CredentialRecord) => r.placements.push('query')],
    ['min_tier', (r: CredentialRecord) => {
      r.min_tier = 'NOVICE';
    }],
    ['name', (r: CredentialRecord) => {
      r.name = 'other';
    }],
    ['base_url', (r: CredentialRecord) => {
      r.base_url = 'https://evil.test';
    }],
    ['inject', (r: CredentialRecord) => {
      r.inject = 'X: {{CREDENTIAL}}';
    }],
  ])('detects an edit of %s through the AEAD binding (integrity error)', (_field, edit) => {
    const { keys } = fresh();
    const r = record(keys);
    edit(r);
    expect(kindOf(() => decryptValue(keys, r))).toBe('integrity:credential_binding');
  });

  it('a wrong password is "sealed", a changed body is "integrity"', async () => {
    const { home, keys, st } = fresh();
    expect(kindOf(() => unseal(loadVault(home), new TextEncoder().encode('nope')))).toBe(
      'sealed:wrong_password',
    );
    await st.vault.update(keys, (body) => {
      body.credentials.push(record(keys));
      return { result: null, events: [] };
    });
    const file = loadVault(home);
    expect(kindOf(() => unseal(file, pw))).toBe('none');
    file.body.credentials[0]!.min_tier = 'NOVICE';
    expect(kindOf(() => unseal(file, pw))).toBe('integrity:vault_mac');
  });

  it('refuses weakened KDF parameters before deriving anything', () => {
    const { home } = fresh();
    const file = loadVault(home);
    file.slots[0]!.kdf.iterations = 1;
    expect(kindOf(() => unseal(file, pw))).toBe('integrity:kdf_params');
  });
});

describe('recording the audit head', () => {
  it('concurrent records share vault writes, each resolves once a head at least its own is durable', async () => {
    const { home, keys, st } = fresh();
    const before = loadVault(home).body.generation;
    const heads = Array.from(
      { length: 200 },
      (_, i) => ({ seq: i + 1, hash: String(i + 1).padStart(64, '0') }),
    );
    await Promise.all(heads.map((h) => st.vault.recordHead(keys, h)));
    const after = loadVault(home);
    expect(after.body.audit_head).toEqual(heads[199]);
    expect(after.body.generation - before).toBeLessThan(20);
    expect(() => unseal(after, pw)).not.toThrow();
  });

  it("a head write leaves the event loop while it fsyncs: serve's requests are not blocked behind it", async () => {
    const { home, keys, st } = fresh();
    const file = path.join(home.dir, 'vault.json');
    const before = readFileSync(file);
    const head = { seq: 7, hash: '7'.repeat(64) };
    const written = st.vault.recordHead(keys, head);
    // Nothing replaced yet when the call returns: the fsyncs are awaited, not done in the call.
    expect(readFileSync(file).equals(before)).toBe(true);
    await written;
    expect(loadVault(home).body.audit_head).toEqual(head);
    expect(() => unseal(loadVault(home), pw)).not.toThrow();
    // The lock is released and no temp file is left behind.
    expect(readdirSync(home.dir).filter((n) => n.endsWith('.tmp') || n.endsWith('.lock'))).toEqual(
      [],
    );
  });

  it('a head is never recorded in a restored older copy: it would hide the changes the copy lacks', async () => {
    const { home, keys, st } = fresh();
    const file = path.join(home.dir, 'vault.json');
    const old = readFileSync(file);
    await st.vault.update(keys, () => ({
      result: null,
      events: [{ event: 'agent.revoke', actor: { type: 'operator' }, outcome: 'ok', data: {} }],
    }));
    const current = readFileSync(file);
    writeFileSync(file, old);
    const later = { seq: 1000, hash: 'f'.repeat(64) };
    await expect(st.vault.recordHead(keys, later)).rejects.toMatchObject({
      kind: 'integrity',
      code: 'vault_rollback',
    });
    expect(readFileSync(file).equals(old)).toBe(true);
    // The current copy, put back, takes the head.
    writeFileSync(file, current);
    await st.vault.recordHead(keys, later);
    expect(loadVault(home).body.audit_head).toEqual(later);
  });
});
