import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { addCredential, newHome } from '../helpers/cli.ts';

const CANARY = 'sk-cred-canary-5f1c2a9e';

describe('credential', () => {
  it('adds, lists, shows, updates, rotates and removes without ever printing the value', async () => {
    const t = await newHome();
    const add = await addCredential(t, 'openai', CANARY, [
      '--allowed-domains',
      'api.openai.com,*.Example.COM:8443',
      '--placement',
      'header,query',
    ]);
    expect(add.code, add.stderr).toBe(0);
    const list = await t.tp(['credential', 'list', '--json']);
    expect(JSON.parse(list.stdout)).toEqual([expect.objectContaining({
      name: 'openai',
      allowed_domains: ['api.openai.com', '*.example.com:8443'],
      placements: ['header', 'query'],
      min_tier: 'COMPANION',
      any_domain: false,
    })]);
    const show = await t.tp(['credential', 'show', 'openai']);
    expect(show.stdout).toContain('api.openai.com');
    const upd = await t.tp([
      'credential',
      'update',
      'openai',
      '--min-tier',
      'PARTNER',
      '--password-file',
      t.passwordFile,
    ]);
    expect(upd.code, upd.stderr).toBe(0);
    const rot = await t.tp(['credential', 'rotate', 'openai', '--password-file', t.passwordFile], {
      input: 'sk-rotated-canary-77',
    });
    expect(rot.code, rot.stderr).toBe(0);
    const vault = fs.readFileSync(path.join(t.home, 'vault.json'), 'utf8');
    const audit = fs.readFileSync(path.join(t.home, 'audit', 'audit.log'), 'utf8');
    for (const out of [add, list, show, upd, rot]) {
      expect(out.stdout + out.stderr).not.toContain(CANARY);
    }
    for (const text of [vault, audit]) {
      expect(text).not.toContain(CANARY);
      expect(text).not.toContain('sk-rotated-canary-77');
    }
    expect(audit).toContain('"credential.rotate"');
    const rm = await t.tp(['credential', 'remove', 'openai', '--password-file', t.passwordFile]);
    expect(rm.code).toBe(0);
    expect(JSON.parse((await t.tp(['credential', 'list', '--json'])).stdout)).toEqual([]);
  });

  it('reads the value from --value-file (one trailing newline dropped)', async () => {
    const t = await newHome();
    const f = t.file('value', CANARY + '\n');
    const r = await t.tp([
      'credential',
      'add',
      'k',
      '--allowed-domains',
      'api.allowed.test',
      '--value-file',
      f,
      '--password-file',
      t.passwordFile,
    ]);
    expect(r.code, r.stderr).toBe(0);
  });

  it.each([
    ['short', 'abc'],
    ['inner newline', 'abcdefgh\nijkl'],
    ['carriage return', 'abcdefgh\rijkl'],
    ['NUL', 'abcdefgh\0ijkl'],
    ['leading space', ' abcdefghij'],
    ['trailing space', 'abcdefghij '],
    ['too long', 'x'.repeat(64 * 1024 + 1)],
  ])('rejects a bad value (%s) at add, without echoing it', async (_name, value) => {
    const t = await newHome();
    const r = await addCredential(t, 'k', value, ['--allowed-domains', 'api.allowed.test']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/credential value/);
    if (value.length > 4) expect(r.stderr).not.toContain(value.trim().slice(0, 8));
  });

  it.each([
    ['*'],
    ['*.com'],
    ['a*.example.com'],
    ['*.*.example.com'],
    ['example.com/path'],
    ['user@example.com'],
    ['exa mple.com'],
    ['example.com:0'],
    ['example.com:99999'],
    ['http://'],
  ])('refuses the domain pattern %s', async (pattern) => {
    const t = await newHome();
    const r = await addCredential(t, 'k', CANARY, ['--allowed-domains', pattern]);
    expect(r.code).toBe(2);
  });

  it('needs a domain rule; --any-domain is explicit and flagged loudly', async () => {
    const t = await newHome();
    const none = await addCredential(t, 'k', CANARY, []);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('--allowed-domains');
    const any = await addCredential(t, 'k', CANARY, ['--any-domain']);
    expect(any.code).toBe(0);
    expect(any.stdout).toMatch(/UNRESTRICTED/);
    const status = await t.tp(['status']);
    expect(status.stdout).toMatch(/UNRESTRICTED.*k/);
    const list = await t.tp(['credential', 'list']);
    expect(list.stdout).toMatch(/ANY \(unrestricted\)/);
  });

  it('validates names, placements, tiers, base URL, inject and rate', async () => {
    const t = await newHome();
    const cases: Array<[string, string[]]> = [
      ['-bad', ['--allowed-domains', 'a.example.com']],
      ['x'.repeat(65), ['--allowed-domains', 'a.example.com']],
      ['ok', ['--allowed-domains', 'a.example.com', '--placement', 'header,cookie']],
      ['ok', ['--allowed-domains', 'a.example.com', '--min-tier', 'ROOT']],
      ['ok', ['--allowed-domains', 'a.example.com', '--base-url', 'https://b.example.com/v1']],
      ['ok', ['--allowed-domains', 'a.example.com', '--base-url', 'https://a.example.com/v1?x=1']],
      ['ok', ['--allowed-domains', 'a.example.com', '--inject', 'Authorization: Bearer']],
      ['ok', ['--allowed-domains', 'a.example.com', '--inject', 'Host: {{CREDENTIAL}}']],
      ['ok', ['--allowed-domains', 'a.example.com', '--rate', 'ten/m']],
    ];
    for (const [name, flags] of cases) {
      const r = await addCredential(t, name, CANARY, flags);
      expect(r.code, `${name} ${flags.join(' ')}: ${r.stderr}`).toBe(2);
    }
    const good = await addCredential(t, 'ok', CANARY, [
      '--allowed-domains',
      'api.example.com',
      '--base-url',
      'https://api.example.com/v1',
      '--inject',
      'Authorization: Bearer {{CREDENTIAL}}',
      '--rate',
      '60/m',
      '--min-tier',
      'novice',
    ]);
    expect(good.code, good.stderr).toBe(0);
    const shown = JSON.parse((await t.tp(['credential', 'show', 'ok', '--json'])).stdout);
    expect(shown).toMatchObject({
      base_url: 'https://api.example.com/v1',
      rate: '60/m',
      min_tier: 'NOVICE',
    });
  });

  it('8 parallel adds lose nothing', async () => {
    const t = await newHome();
    const results = await Promise.all(
      Array.from(
        { length: 8 },
        (_, i) =>
          addCredential(t, `k${i}`, `${CANARY}-${i}`, ['--allowed-domains', 'api.allowed.test']),
      ),
    );
    for (const r of results) expect(r.code, r.stderr).toBe(0);
    const names = JSON.parse((await t.tp(['credential', 'list', '--json'])).stdout).map((
      c: { name: string },
    ) => c.name).sort();
    expect(names).toEqual(['k0', 'k1', 'k2', 'k3', 'k4', 'k5', 'k6', 'k7']);
    const audit = fs.readFileSync(path.join(t.home, 'audit', 'audit.log'), 'utf8').trim().split(
      '\n',
    );
    expect(audit.filter((l) => l.includes('"credential.add"'))).toHaveLength(8);
    expect(audit.map((l) => JSON.parse(l).seq)).toEqual(audit.map((_, i) => i + 1));
  });
});
