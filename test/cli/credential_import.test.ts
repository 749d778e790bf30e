/**
 * `credential import FILE` (issue 16): a `.env` file's variables become credentials, and no value
 * ever reaches the output, an error or the audit trail; `credential add --value-file` refuses a
 * `.env` line instead of storing `NAME=value` as the value.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { newAgent, newHome, type RunResult, type TestHome } from '../helpers/cli.ts';
import { type Listener, startHttpsListener, TEST_CA } from '../helpers/listeners.ts';

const canary = (tag: string) => `sk-${tag}-canary-${randomBytes(8).toString('hex')}`;
const OPENAI = canary('openai');
const ANTHROPIC = canary('anthropic');
const GITHUB = canary('github');
const SKIPPED = canary('skipped');
const HASH = `${canary('hash')}#not-a-comment`;
const ALL = [OPENAI, ANTHROPIC, GITHUB, SKIPPED, HASH];

const ENV_FILE = `# keys for the demo
OPENAI_API_KEY=${OPENAI}

export ANTHROPIC_API_KEY="${ANTHROPIC}"   # double-quoted, exported
GITHUB_TOKEN = '${GITHUB}'
UNUSED_SECRET=${SKIPPED} # an inline comment
HASH_KEY="${HASH}"
`;

let t: TestHome;
let upstream: Listener;
let ca: string;

beforeAll(async () => {
  t = await newHome();
  upstream = await startHttpsListener((req, res) => {
    res.end(JSON.stringify({ auth: req.headers['authorization'] ?? null }));
  });
  ca = t.file('ca.pem', TEST_CA);
});

afterAll(async () => {
  await upstream.close();
});

function expectNoValues(results: RunResult[]) {
  const audit = fs.readFileSync(path.join(t.home, 'audit', 'audit.log'), 'utf8');
  const vault = fs.readFileSync(path.join(t.home, 'vault.json'), 'utf8');
  for (const value of ALL) {
    for (const r of results) expect(r.stdout + r.stderr).not.toContain(value);
    expect(audit).not.toContain(value);
    expect(vault).not.toContain(value);
  }
}

async function names(): Promise<string[]> {
  const list = await t.tp(['credential', 'list', '--json']);
  return (JSON.parse(list.stdout) as Array<{ name: string }>).map((c) => c.name).sort();
}

describe('credential import', () => {
  it('adds the chosen variables, with domains per variable, and the right value is sent', async () => {
    const env = t.file('keys.env', ENV_FILE);
    const r = await t.tp([
      'credential',
      'import',
      env,
      '--only',
      'OPENAI_API_KEY,ANTHROPIC_API_KEY,GITHUB_TOKEN,HASH_KEY',
      '--domains',
      'OPENAI_API_KEY=openai.allowed.test',
      '--domains',
      'ANTHROPIC_API_KEY=anthropic.allowed.test',
      '--allowed-domains',
      'github.allowed.test',
      '--password-file',
      t.passwordFile,
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('openai_api_key');
    expect(await names()).toEqual([
      'anthropic_api_key',
      'github_token',
      'hash_key',
      'openai_api_key',
    ]);
    const show = JSON.parse(
      (await t.tp(['credential', 'show', 'openai_api_key', '--json'])).stdout,
    );
    expect(show.allowed_domains).toEqual(['openai.allowed.test']);
    const gh = JSON.parse((await t.tp(['credential', 'show', 'github_token', '--json'])).stdout);
    expect(gh.allowed_domains).toEqual(['github.allowed.test']);

    const agent = await newAgent(t, {
      grants: ['openai_api_key', 'anthropic_api_key', 'github_token', 'hash_key'],
    });
    const sent: RunResult[] = [];
    for (
      const [credential, host, value] of [
        ['openai_api_key', 'openai.allowed.test', OPENAI],
        ['anthropic_api_key', 'anthropic.allowed.test', ANTHROPIC],
        ['github_token', 'github.allowed.test', GITHUB],
        ['hash_key', 'github.allowed.test', HASH],
      ] as const
    ) {
      const before = upstream.requests.length;
      const tpl = t.file(
        `${credential}.json`,
        JSON.stringify({
          credential,
          url: `https://${host}/v1/x`,
          headers: { Authorization: 'Bearer {{CREDENTIAL}}' },
        }),
      );
      const e = await t.tp([
        'exec',
        '--template',
        tpl,
        '--cacert',
        ca,
        '--connect-to',
        `${host}:443:127.0.0.1:${upstream.port}`,
        '--password-file',
        t.passwordFile,
      ], { env: { TRUST_PROTOCOL_TOKEN: agent.token } });
      expect(e.code, e.stderr).toBe(0);
      expect(upstream.requests[before]?.headers['authorization']).toBe(`Bearer ${value}`);
      sent.push(e);
    }
    expectNoValues([r, ...sent]);
  });

  it('refuses, storing nothing, a variable without domains, a bad line, a bad value', async () => {
    const before = await names();
    const env = t.file('more.env', ENV_FILE);
    const noDomains = await t.tp([
      'credential',
      'import',
      env,
      '--only',
      'UNUSED_SECRET',
      '--password-file',
      t.passwordFile,
    ]);
    expect(noDomains.code).toBe(2);
    expect(noDomains.stderr).toContain('UNUSED_SECRET');
    expect(noDomains.stderr).toContain('--domains UNUSED_SECRET=');

    const missing = await t.tp([
      'credential',
      'import',
      env,
      '--only',
      'NOT_THERE',
      '--allowed-domains',
      'x.test',
      '--password-file',
      t.passwordFile,
    ]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('NOT_THERE');
    // A value pasted where a variable name belongs is not echoed back.
    const pasted = await t.tp([
      'credential',
      'import',
      env,
      '--only',
      SKIPPED,
      '--domains',
      `${OPENAI}=x.test`,
      '--password-file',
      t.passwordFile,
    ]);
    expect(pasted.code).toBe(2);

    const bad = t.file(
      'bad.env',
      `GOOD_KEY=${canary('good')}\nthis line ${SKIPPED} is not NAME=value\n`,
    );
    const badLine = await t.tp([
      'credential',
      'import',
      bad,
      '--allowed-domains',
      'x.test',
      '--password-file',
      t.passwordFile,
    ]);
    expect(badLine.code).toBe(2);
    expect(badLine.stderr).toContain('line 2');

    const short = t.file('short.env', `SHORT_KEY="abc"\nLONG_KEY=${SKIPPED}\n`);
    const tooShort = await t.tp([
      'credential',
      'import',
      short,
      '--allowed-domains',
      'x.test',
      '--password-file',
      t.passwordFile,
    ]);
    expect(tooShort.code).toBe(2);
    expect(tooShort.stderr).toContain('SHORT_KEY');
    expect(tooShort.stderr).not.toContain('abc');

    expect(await names()).toEqual(before);
    expectNoValues([noDomains, missing, pasted, badLine, tooShort]);
  });

  it('credential add --value-file refuses a .env line and points at import', async () => {
    for (const line of [`OPENAI_API_KEY=${OPENAI}\n`, `export GITHUB_TOKEN="${GITHUB}"\n`]) {
      const f = t.file('line.env', line);
      const r = await t.tp([
        'credential',
        'add',
        'dotenv_line',
        '--allowed-domains',
        'openai.allowed.test',
        '--value-file',
        f,
        '--password-file',
        t.passwordFile,
      ]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('credential import');
      expectNoValues([r]);
    }
    expect(await names()).not.toContain('dotenv_line');
  });
});
