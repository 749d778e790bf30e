/**
 * Provider presets (issue 15): `credential add NAME --preset P` fills in domains, base URL and
 * inject rule and records the preset; explicit flags override it; `credential presets` lists them;
 * `credential import --preset` applies one to a .env file's variables.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { addCredential, newHome, type TestHome } from '../helpers/cli.ts';
import { expectNoCanary, newCanary } from '../helpers/canary.ts';

let t: TestHome;

beforeAll(async () => {
  t = await newHome();
});

async function _shown(name: string) {
  const r = await t.tp(['--json', 'credential', 'show', name]);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
}

describe('credential add --preset', () => {
  it('openai: domains, base URL, inject rule and the preset are stored', async () => {
    const value = newCanary();
    const r = await addCredential(t, 'openai', value, ['--preset', 'openai']);
    expect(r.code, r.stderr).toBe(0);
    expect(await _shown('openai')).toMatchObject({
      allowed_domains: ['api.openai.com'],
      any_domain: false,
      base_url: 'https://api.openai.com/v1',
      inject: 'Authorization: Bearer {{CREDENTIAL}}',
      placements: ['header'],
      min_tier: 'COMPANION',
      preset: 'openai',
    });
    const list = await t.tp(['--json', 'credential', 'list']);
    const row = JSON.parse(list.stdout).find((c: { name: string }) => c.name === 'openai');
    expect(row.preset).toBe('openai');
    expectNoCanary(r.stdout + r.stderr + list.stdout, value);
  });

  it('anthropic and gemini use their own key headers', async () => {
    expect((await addCredential(t, 'claude', newCanary(), ['--preset', 'anthropic'])).code)
      .toBe(0);
    expect(await _shown('claude')).toMatchObject({
      allowed_domains: ['api.anthropic.com'],
      base_url: 'https://api.anthropic.com',
      inject: 'x-api-key: {{CREDENTIAL}}',
      preset: 'anthropic',
    });
    expect((await addCredential(t, 'gem', newCanary(), ['--preset', 'gemini'])).code).toBe(0);
    expect((await _shown('gem')).inject).toBe('x-goog-api-key: {{CREDENTIAL}}');
  });

  it('an explicit flag overrides the preset', async () => {
    const r = await addCredential(t, 'oai-proxy', newCanary(), [
      '--preset',
      'openai',
      '--allowed-domains',
      'llm.example.com',
      '--base-url',
      'https://llm.example.com/v1',
      '--min-tier',
      'PARTNER',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(await _shown('oai-proxy')).toMatchObject({
      allowed_domains: ['llm.example.com'],
      base_url: 'https://llm.example.com/v1',
      inject: 'Authorization: Bearer {{CREDENTIAL}}',
      min_tier: 'PARTNER',
      preset: 'openai',
    });
  });

  it('an unknown preset exits 2 with a suggestion, before any value is read', async () => {
    const r = await addCredential(t, 'x', newCanary(), ['--preset', 'opena']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('unknown preset "opena"');
    expect(r.stderr).toContain('did you mean --preset openai?');
    const far = await addCredential(t, 'x', newCanary(), ['--preset', 'nothing-like-it']);
    expect(far.code).toBe(2);
    expect(far.stderr).toContain('credential presets');
    expect((await t.tp(['credential', 'show', 'x'])).code).toBe(2);
  });

  it('credential update keeps the preset', async () => {
    const r = await t.tp([
      'credential',
      'update',
      'claude',
      '--rate',
      '10/m',
      '--password-file',
      t.passwordFile,
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(await _shown('claude')).toMatchObject({ preset: 'anthropic', rate: '10/m' });
  });
});

describe('credential presets', () => {
  it('lists every preset as a table and as JSON', async () => {
    const text = await t.tp(['credential', 'presets']);
    expect(text.code, text.stderr).toBe(0);
    for (const name of ['openai', 'anthropic', 'gemini', 'github', 'stripe']) {
      expect(text.stdout).toMatch(new RegExp(`^${name}\\s`, 'm'));
    }
    expect(text.stdout).toContain('OPENAI_BASE_URL OPENAI_API_KEY');
    const json = await t.tp(['--json', 'credential', 'presets']);
    const presets = JSON.parse(json.stdout);
    expect(presets.find((p: { name: string }) => p.name === 'anthropic')).toMatchObject({
      allowed_domains: ['api.anthropic.com'],
      base_url: 'https://api.anthropic.com',
      inject: 'x-api-key: {{CREDENTIAL}}',
      env: { base_url: 'ANTHROPIC_BASE_URL', token: 'ANTHROPIC_API_KEY' },
    });
    expect(presets.find((p: { name: string }) => p.name === 'github').env).toBeNull();
  });
});

describe('credential import --preset', () => {
  it('applies the preset to the imported variable', async () => {
    const value = newCanary();
    const env = t.file('preset.env', `OPENAI_API_KEY=${value}\nOTHER=${newCanary()}\n`);
    const r = await t.tp([
      'credential',
      'import',
      env,
      '--only',
      'OPENAI_API_KEY',
      '--preset',
      'openai',
      '--password-file',
      t.passwordFile,
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(await _shown('openai_api_key')).toMatchObject({
      allowed_domains: ['api.openai.com'],
      base_url: 'https://api.openai.com/v1',
      preset: 'openai',
    });
    expectNoCanary(r.stdout + r.stderr, value);
  });
});
