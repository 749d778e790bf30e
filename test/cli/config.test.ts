/**
 * HOME/config.json holds serve's defaults (issue 16). Some of them route credentials (connect-to,
 * cacert) and the home is the agent's to write, so serve uses the file only when sealed under the
 * vault's key: an agent that edits it, or the CA file it names, stops serve (exit 8) and sends
 * nothing anywhere.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addCredential, newAgent, newHome, run, type TestHome } from '../helpers/cli.ts';
import { type Listener, startHttpsListener, TEST_CA } from '../helpers/listeners.ts';
import { serveOnce, startServe } from '../helpers/serve.ts';

const CANARY = 'sk-config-canary-7c8d9e0f1a';
let t: TestHome;
let upstream: Listener;
let agent: { id: string; token: string };
let configPath: string;

function writeConfig(serve: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  fs.writeFileSync(
    configPath,
    JSON.stringify({ format: 'trust-protocol-config', version: 1, serve, ...extra }, null, 2),
    { mode: 0o600 },
  );
}

const routed = () => ({
  listen: '127.0.0.1:0',
  ttl: '2h',
  idle: '10m',
  cacert: path.join(t.dir, 'ca.pem'),
  'connect-to': [`api.allowed.test:443:127.0.0.1:${upstream.port}`],
});

async function seal() {
  const r = await t.tp(['config', 'seal', '--password-file', t.passwordFile]);
  expect(r.code, r.stderr).toBe(0);
}

beforeAll(async () => {
  t = await newHome();
  upstream = await startHttpsListener();
  t.file('ca.pem', TEST_CA);
  const added = await addCredential(t, 'k', CANARY, ['--allowed-domains', 'api.allowed.test']);
  expect(added.code, added.stderr).toBe(0);
  agent = await newAgent(t, { grants: ['k'] });
  configPath = path.join(t.home, 'config.json');
});

afterAll(async () => {
  await upstream.close();
});

async function execVia(url: string) {
  return await run([
    'exec',
    '--server',
    url,
    'https://api.allowed.test/v1',
    '-H',
    'X-Api-Key: {{CREDENTIAL}}',
    '--credential',
    'k',
  ], { env: { TRUST_PROTOCOL_TOKEN: agent.token } });
}

describe('config.json', () => {
  it('sealed, it gives serve its defaults: serve starts with no flags and routes as configured', async () => {
    writeConfig(routed());
    const shown = await t.tp(['config', 'show']);
    expect(shown.stdout).toContain('not sealed');
    await seal();
    expect(JSON.parse((await t.tp(['--json', 'config', 'show'])).stdout).sealed).toBe(true);
    const s = await startServe(t, []);
    try {
      expect(s.info.ttl_seconds).toBe(7200);
      expect(s.info.idle_seconds).toBe(600);
      expect(s.port).not.toBeNull();
      const before = upstream.requests.length;
      const r = await execVia(s.url);
      expect(r.code, r.stderr).toBe(0);
      expect(upstream.requests[before]?.headers['x-api-key']).toBe(CANARY);
    } finally {
      await s.stop();
    }
    // A flag overrides the file.
    const o = await startServe(t, ['--ttl', '1h']);
    try {
      expect(o.info.ttl_seconds).toBe(3600);
      expect(o.info.idle_seconds).toBe(600);
    } finally {
      await o.stop();
    }
  });

  it('an edit after sealing (a new route), or a swapped CA file, stops serve with exit 8', async () => {
    writeConfig(routed());
    await seal();
    const sealed = JSON.parse(fs.readFileSync(configPath, 'utf8'));
    // The agent routes the API host to a listener of its own, keeping the old MAC.
    const attacker = await startHttpsListener();
    try {
      sealed.serve['connect-to'] = [`api.allowed.test:443:127.0.0.1:${attacker.port}`];
      fs.writeFileSync(configPath, JSON.stringify(sealed));
      const edited = await serveOnce(t, []);
      expect(edited.code).toBe(8);
      expect(edited.stderr).toContain('config.json was changed since it was sealed');
      expect(attacker.requests).toHaveLength(0);
    } finally {
      await attacker.close();
    }
    writeConfig(routed());
    await seal();
    fs.appendFileSync(path.join(t.dir, 'ca.pem'), TEST_CA, { mode: 0o600 });
    const swapped = await serveOnce(t, []);
    expect(swapped.code).toBe(8);
    expect(swapped.stderr).toContain('is not the one config.json was sealed with');
    t.file('ca.pem', TEST_CA);
    // A MAC taken out is not a way around it either.
    const bare = JSON.parse(fs.readFileSync(configPath, 'utf8'));
    delete bare.mac;
    fs.writeFileSync(configPath, JSON.stringify(bare));
    const unsealed = await serveOnce(t, []);
    expect(unsealed.code).toBe(2);
    expect(unsealed.stderr).toContain('config.json is not sealed');
    expect(unsealed.stderr).toContain('trust-protocol config seal');
  });

  it('bad files are refused naming what is wrong', async () => {
    for (
      const [doc, message] of [
        [{ format: 'trust-protocol-config', version: 2, serve: {} }, 'has version 2'],
        [
          { format: 'trust-protocol-config', version: 1, serve: { tll: '1h' } },
          'unknown setting "serve.tll"',
        ],
        [
          { format: 'trust-protocol-config', version: 1, serve: { ttl: 3600 } },
          '"serve.ttl" is not a string',
        ],
        [{ version: 1, serve: {} }, 'needs "format": "trust-protocol-config"'],
      ] as const
    ) {
      fs.writeFileSync(configPath, JSON.stringify(doc));
      const r = await t.tp(['config', 'seal', '--password-file', t.passwordFile]);
      expect(r.code, message).toBe(2);
      expect(r.stderr, message).toContain(message);
    }
    fs.rmSync(configPath);
    const none = await t.tp(['config', 'show']);
    expect(none.stdout).toContain('No config.json');
  });
});
