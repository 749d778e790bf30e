/**
 * `run -- CMD` (issue 15): the child gets serve's gateway URL and the agent token in its SDK's
 * variables (from the credential's preset, --env, or TP_NAME_*), never a credential value or the
 * master password; unmodified `openai` and `@anthropic-ai/sdk` clients started by `run` with no
 * options reach a local upstream through the gateway; exit status and signals pass through.
 */
import { Buffer } from 'node:buffer';
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  addCredential,
  baseEnv,
  command,
  newAgent,
  newHome,
  PASSWORD,
  type RunOptions,
  type TestHome,
} from '../helpers/cli.ts';
import { expectNoCanary, newCanary } from '../helpers/canary.ts';
import { type Listener, type Recorded, startHttpsListener } from '../helpers/listeners.ts';
import { type Served, startServe, upstreamArgs } from '../helpers/serve.ts';

const ROOT = path.resolve(new URL('../..', import.meta.url).pathname);
const NODE = path.join(ROOT, 'node_modules/.bin/node');
const require = createRequire(import.meta.url);

const OPENAI_KEY = `sk-proj-${newCanary().slice(10)}`;
const ANTHROPIC_KEY = `sk-ant-api03-${newCanary().slice(10)}`;
const PLAIN_KEY = newCanary();
const KEYS = [OPENAI_KEY, ANTHROPIC_KEY, PLAIN_KEY];

let t: TestHome;
let agent: { id: string; token: string };
let upstream: Listener;
let s: Served;

/** Imitates chat completions and messages, echoing the key each got. */
function _api(req: IncomingMessage, res: ServerResponse, rec: Recorded): void {
  const body = JSON.parse(Buffer.from(rec.body).toString('utf8') || '{}');
  const host = String(rec.headers.host);
  res.writeHead(200, { 'content-type': 'application/json' });
  if (host === 'openai.allowed.test' && rec.path === '/v1/chat/completions') {
    const key = String(req.headers.authorization ?? '').replace(/^Bearer /, '');
    res.end(JSON.stringify({
      id: 'chatcmpl-1',
      object: 'chat.completion',
      created: 1,
      model: body.model,
      choices: [{
        index: 0,
        message: { role: 'assistant', content: `echo: ${key}` },
        finish_reason: 'stop',
      }],
      usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
    }));
    return;
  }
  if (host === 'anthropic.allowed.test' && rec.path === '/v1/messages') {
    res.end(JSON.stringify({
      id: 'msg_1',
      type: 'message',
      role: 'assistant',
      model: body.model,
      content: [{ type: 'text', text: `echo: ${String(req.headers['x-api-key'] ?? '')}` }],
      stop_reason: 'end_turn',
      stop_sequence: null,
      usage: { input_tokens: 1, output_tokens: 1 },
    }));
    return;
  }
  res.end('{}');
}

beforeAll(async () => {
  t = await newHome();
  upstream = await startHttpsListener(_api);
  // The presets' own hosts are not the test upstream's: the domains and base URLs are given
  // explicitly (they override the preset), the inject rule and the variable names come from it.
  for (
    const [name, key, flags] of [
      ['openai', OPENAI_KEY, [
        '--preset',
        'openai',
        '--allowed-domains',
        'openai.allowed.test',
        '--base-url',
        'https://openai.allowed.test/v1',
      ]],
      ['claude', ANTHROPIC_KEY, [
        '--preset',
        'anthropic',
        '--allowed-domains',
        'anthropic.allowed.test',
        '--base-url',
        'https://anthropic.allowed.test',
      ]],
      ['plain.key', PLAIN_KEY, [
        '--allowed-domains',
        'api.allowed.test',
        '--base-url',
        'https://api.allowed.test',
        '--inject',
        'Authorization: Bearer {{CREDENTIAL}}',
      ]],
    ] as const
  ) {
    const r = await addCredential(t, name, key, flags);
    expect(r.code, r.stderr).toBe(0);
  }
  agent = await newAgent(t, { grants: ['openai', 'claude', 'plain.key'] });
  s = await startServe(
    t,
    upstreamArgs(t, upstream.port, ['openai.allowed.test', 'anthropic.allowed.test']),
  );
});

afterAll(async () => {
  await s?.stop();
  await upstream?.close();
});

function _run(args: readonly string[], options: RunOptions = {}) {
  return t.tp(['run', ...args], {
    ...options,
    env: { TRUST_PROTOCOL_TOKEN: agent.token, ...options.env },
  });
}

function _envOf(stdout: string): Record<string, string> {
  return Object.fromEntries(
    stdout.split('\0').filter((l) => l.includes('=')).map((l) => {
      const eq = l.indexOf('=');
      return [l.slice(0, eq), l.slice(eq + 1)];
    }),
  );
}

const PRINT_ENV = [
  '--',
  NODE,
  '-e',
  'for (const [k, v] of Object.entries(process.env)) ' +
  "process.stdout.write(k + '=' + v + '\\0')",
];

describe('run: the environment the child gets', () => {
  it('every granted gateway credential, in its preset variables or TP_NAME_*', async () => {
    const r = await _run(PRINT_ENV, {
      env: { TRUST_PROTOCOL_PASSWORD: PASSWORD, ANTHROPIC_AUTH_TOKEN: 'stale-auth-token' },
    });
    expect(r.code, r.stderr).toBe(0);
    const env = _envOf(r.stdout);
    const gateway = `http://127.0.0.1:${s.port}/v1/gateway`;
    expect(env.OPENAI_BASE_URL).toBe(`${gateway}/openai`);
    expect(env.OPENAI_API_KEY).toBe(agent.token);
    expect(env.ANTHROPIC_BASE_URL).toBe(`${gateway}/claude`);
    expect(env.ANTHROPIC_API_KEY).toBe(agent.token);
    expect(env.TP_PLAIN_KEY_BASE_URL).toBe(`${gateway}/plain.key`);
    expect(env.TP_PLAIN_KEY_TOKEN).toBe(agent.token);
    // The password never reaches the agent; a key the SDK would send first is removed.
    expect(env.TRUST_PROTOCOL_PASSWORD).toBeUndefined();
    expect(r.stdout).not.toContain(PASSWORD);
    expect(env.ANTHROPIC_AUTH_TOKEN).toBeUndefined();
    for (const key of KEYS) expectNoCanary(r.stdout + r.stderr, key, 'the child environment');
  });

  it('--credential picks; --env names a variable; the token may come from --token-file', async () => {
    const tokenFile = t.file('token', agent.token + '\n');
    const r = await _run(
      [
        '--credential',
        'plain.key',
        '--env',
        'MY_URL=openai:base_url',
        '--env',
        'MY_KEY=openai:token',
        '--token-file',
        tokenFile,
        ...PRINT_ENV,
      ],
      { env: { TRUST_PROTOCOL_TOKEN: undefined } },
    );
    expect(r.code, r.stderr).toBe(0);
    const env = _envOf(r.stdout);
    expect(env.TP_PLAIN_KEY_TOKEN).toBe(agent.token);
    expect(env.MY_URL).toBe(`http://127.0.0.1:${s.port}/v1/gateway/openai`);
    expect(env.MY_KEY).toBe(agent.token);
    expect(env.OPENAI_BASE_URL).toBeUndefined();
    expect(env.ANTHROPIC_BASE_URL).toBeUndefined();
  });

  it("the child's own flags after -- are its own (--json, --token=...)", async () => {
    const r = await _run(['--', 'sh', '-c', 'echo "$1 $2"', 'sh', '--json', '--token=abc']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('--json --token=abc\n');
  });

  it('refusals: no --, an unknown credential, a bad --env, no token', async () => {
    const noDash = await _run(['sh', '-c', 'true']);
    expect(noDash.code).toBe(2);
    const unknown = await _run(['--credential', 'nope', '--', 'true']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('no credential named "nope"');
    const badEnv = await _run(['--env', 'X=openai:value', '--', 'true']);
    expect(badEnv.code).toBe(2);
    expect(badEnv.stderr).toContain('--env takes VAR=CREDENTIAL:base_url');
    const noToken = await _run(['--', 'true'], { env: { TRUST_PROTOCOL_TOKEN: undefined } });
    expect(noToken.code).toBe(4);
  });
});

describe('run: unmodified SDKs through the gateway', () => {
  it('openai: `new OpenAI()` reads OPENAI_BASE_URL and OPENAI_API_KEY', async () => {
    const script = t.file(
      'openai.cjs',
      `const { OpenAI } = require(${JSON.stringify(require.resolve('openai'))});
new OpenAI().chat.completions.create({
  model: 'gpt-4o-mini',
  messages: [{ role: 'user', content: 'hi' }],
}).then((c) => console.log(c.choices[0].message.content));
`,
    );
    const before = upstream.requests.length;
    const r = await _run(['--credential', 'openai', '--', NODE, script]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('echo: [REDACTED:openai]\n');
    const got = upstream.requests.slice(before);
    expect(got).toHaveLength(1);
    expect(got[0]?.path).toBe('/v1/chat/completions');
    expect(got[0]?.headers.authorization).toBe(`Bearer ${OPENAI_KEY}`);
    expect(Buffer.from(got[0]?.raw ?? []).includes(agent.token)).toBe(false);
    for (const key of KEYS) expectNoCanary(r.stdout + r.stderr, key, 'the SDK script output');
  });

  it('anthropic: `new Anthropic()` reads ANTHROPIC_BASE_URL and ANTHROPIC_API_KEY', async () => {
    const script = t.file(
      'anthropic.cjs',
      `const { Anthropic } = require(${JSON.stringify(require.resolve('@anthropic-ai/sdk'))});
new Anthropic().messages.create({
  model: 'claude-test',
  max_tokens: 16,
  messages: [{ role: 'user', content: 'hi' }],
}).then((m) => console.log(m.content[0].text));
`,
    );
    const before = upstream.requests.length;
    const r = await _run(['--', NODE, script]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('echo: [REDACTED:claude]\n');
    const got = upstream.requests.slice(before);
    expect(got).toHaveLength(1);
    expect(got[0]?.path).toBe('/v1/messages');
    expect(got[0]?.headers['x-api-key']).toBe(ANTHROPIC_KEY);
    expect(got[0]?.headers.authorization).toBeUndefined();
    for (const key of KEYS) expectNoCanary(r.stdout + r.stderr, key, 'the SDK script output');
  });
});

describe('run: exit status and signals', () => {
  it('passes the exit status through; 128 + N for a signal; 127 for no such command', async () => {
    expect((await _run(['--', 'sh', '-c', 'exit 3'])).code).toBe(3);
    expect((await _run(['--', 'sh', '-c', 'kill -TERM $$'])).code).toBe(143);
    const missing = await _run(['--', 'no-such-command-tp-test']);
    expect(missing.code).toBe(127);
    expect(missing.stderr).toContain('command not found: no-such-command-tp-test');
  });

  it('forwards SIGTERM to the child and exits as the child does', async () => {
    const ready = path.join(t.dir, 'ready');
    const got = path.join(t.dir, 'got');
    const { file, argv } = command([
      '--home',
      t.home,
      'run',
      '--credential',
      'plain.key',
      '--',
      'sh',
      '-c',
      `trap 'echo TERM > "${got}"; exit 7' TERM; : > "${ready}"; while :; do sleep 0.05; done`,
    ]);
    // Its own process group, so that a child left behind by a failure is ended below.
    const proc = spawn(file, argv, {
      env: baseEnv({ TRUST_PROTOCOL_TOKEN: agent.token }),
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let stderr = '';
    proc.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    // 'exit', not 'close': a child left behind would hold the pipes open.
    let code: number | null | undefined;
    const exited = new Promise<number | null>((resolve) =>
      proc.on('exit', (c) => resolve(code = c))
    );
    try {
      while (!fs.existsSync(ready)) {
        // run failing before it starts the child must fail the test with its reason, not hang it.
        expect(code, `run exited before starting the child: ${stderr}`).toBeUndefined();
        await new Promise((r) => setTimeout(r, 50));
      }
      process.kill(proc.pid as number, 'SIGTERM');
      expect(await exited, stderr).toBe(7);
      expect(fs.readFileSync(got, 'utf8')).toBe('TERM\n');
    } finally {
      try {
        process.kill(-(proc.pid as number), 'SIGKILL');
      } catch { /* the group has ended */ }
    }
  });
});

describe('run without a serve', () => {
  it('exits 3 and says how to start one', async () => {
    const bare = await newHome({ init: false });
    const r = await bare.tp(['run', '--credential', 'x', '--', 'true'], {
      env: { TRUST_PROTOCOL_TOKEN: agent.token },
    });
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('no trust-protocol serve is running');
    expect(r.stderr).toContain('trust-protocol serve --listen');
  });
});
