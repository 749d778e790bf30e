/**
 * `POST /v1/emergency`: a brake pulled through serve's unix socket, with no token and no password
 * (the dedicated-user deployment's agents cannot write the home; test/binary/dedicated.test.ts
 * runs that with real OS users). Over TCP, which every local user reaches, it is refused.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../helpers/cli.ts';
import { http, json, servedCredential } from '../helpers/serve.ts';

type Setup = Awaited<ReturnType<typeof servedCredential>>;
let s: Setup;
const VALUE = 'tp-canary-emergency-0123456789';

beforeAll(async () => {
  s = await servedCredential(VALUE);
});
afterAll(async () => {
  await s?.stop();
});

function brakeFiles(): string[] {
  const dir = path.join(s.t.home, 'brakes');
  return fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.startsWith('brk_')) : [];
}

function proxy() {
  return http(s.s, '/v1/proxy', {
    headers: { Authorization: `Bearer ${s.agent.token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({
      credential: 'k',
      url: 'https://api.allowed.test/x',
      headers: { Authorization: 'Bearer {{CREDENTIAL}}' },
    }),
  });
}

describe('pulling a brake through serve', () => {
  it('is refused over TCP, and nothing is braked', async () => {
    const r = await http(s.s, '/v1/emergency', {
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ scope: 'global', reason: 'from tcp' }),
    });
    expect(r.status).toBe(403);
    expect(json(r).error.code).toBe('brake_needs_socket');
    expect(brakeFiles()).toEqual([]);
    expect((await proxy()).status).toBe(200);
  });

  it('refuses a malformed request, naming what is wrong', async () => {
    const r = await http({ socket: s.s.socket }, '/v1/emergency', {
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ scope: 'agent', reason: 'x' }),
    });
    expect(r.status).toBe(400);
    expect(json(r).error.message).toContain('agent');
    expect(brakeFiles()).toEqual([]);
  });

  it('`emergency activate --server unix:PATH` from a user without the home brakes every request', async () => {
    const elsewhere = path.join(s.t.dir, 'not-a-home');
    const r = await run([
      '--home',
      elsewhere,
      '--json',
      'emergency',
      'activate',
      '--scope',
      'agent',
      '--agent-id',
      s.agent.id,
      '--reason',
      'pulled through the socket',
      '--server',
      `unix:${s.s.socket}`,
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ scope: 'agent', target: s.agent.id });
    expect(brakeFiles()).toHaveLength(1);
    const before = s.upstream.requests.length;
    const refused = await proxy();
    expect(refused.status).toBe(423);
    expect(s.upstream.requests.length).toBe(before);
    const log = fs.readFileSync(path.join(s.t.home, 'audit', 'audit.log'), 'utf8');
    const entry = log.trim().split('\n').map((l) => JSON.parse(l))
      .find((e) => e.event === 'brake.activate');
    expect(entry).toMatchObject({ actor: { type: 'anyone' }, data: { target: s.agent.id } });
    expect(entry.mac).toMatch(/^[0-9a-f]{64}$/);
    expect(log).not.toContain(VALUE);
  });
});
