/**
 * serve's handler as a plain function (issue #14): given a State and the held keys, a request
 * object in, a response object out, with no process, socket or front in between (as hono tests
 * its app with `app.request`). The upstream is a real local TLS listener; the audit trail, the
 * vault and the brakes are the real files of a temporary home.
 */
import { Buffer } from 'node:buffer';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerAgent } from '../../src/agents.ts';
import { readLogLines } from '../../src/audit.ts';
import { addCredential } from '../../src/credentials.ts';
import { KDF_FLOOR } from '../../src/crypto/kdf.ts';
import { openHome } from '../../src/home.ts';
import { parseConnectTo } from '../../src/http/connect_to.ts';
import { liveMonitor } from '../../src/monitor/live.ts';
import { RedactionCache } from '../../src/redact.ts';
import { deferredHeads } from '../../src/serve/audit.ts';
import { type ServeHandler, serveHandler, type ServeRequest } from '../../src/serve/handler.ts';
import { openState, type State } from '../../src/state.ts';
import { createVault, type VaultKeys, wipeKeys } from '../../src/vault.ts';
import { ALLOWED_HOST, expectNoCanary, newCanary } from '../helpers/canary.ts';
import { type Listener, startHttpsListener, TEST_CA } from '../helpers/listeners.ts';

let upstream: Listener;
let state: State;
let keys: VaultKeys;
let token: string;
let handler: ServeHandler;
let stop: () => Promise<void>;
const canary = newCanary();

beforeAll(async () => {
  upstream = await startHttpsListener();
  const home = openHome(path.join(mkdtempSync(path.join(tmpdir(), 'tp-mem-')), 'h'), {
    create: true,
  });
  state = openState(home, { cached: true });
  const made = createVault(
    new TextEncoder().encode('a long enough password'),
    KDF_FLOOR,
    new Date(),
  );
  await state.vault.init(made.file, made.keys, KDF_FLOOR);
  keys = made.keys;
  await state.vault.update(keys, (body) =>
    addCredential(body, keys, {
      name: 'k',
      spec: { allowedDomains: [ALLOWED_HOST], minTier: 'NOVICE' },
      value: new TextEncoder().encode(canary),
      now: new Date(),
    }));
  token = await state.vault.update(keys, (body) => {
    const change = registerAgent(body, { name: 'bot', tier: 'NOVICE', now: new Date() });
    body.agents.at(-1)!.grants.push('k');
    return change;
  }).then((issued) => issued.token);
  const heads = deferredHeads(state, keys);
  const monitor = await liveMonitor(state, keys, () => new Date());
  const stopping = new AbortController();
  handler = serveHandler({
    state,
    env: {},
    keys,
    heads,
    redactions: new RedactionCache(),
    monitor,
    sendOptions: {
      ca: TEST_CA,
      connectTo: [parseConnectTo(`${ALLOWED_HOST}:443:127.0.0.1:${upstream.port}`)],
    },
    stopping: stopping.signal,
    agentRate: null,
    info: { version: 'test', expiresAt: new Date(Date.now() + 3600_000) },
  });
  stop = async () => {
    stopping.abort();
    await monitor.stop();
    await heads.flush();
    wipeKeys(keys);
  };
});

afterAll(async () => {
  await stop();
  await upstream.close();
});

function request(target: string, init: { token?: string; json?: unknown } = {}): ServeRequest {
  const body = init.json === undefined ? new Uint8Array(0) : Buffer.from(JSON.stringify(init.json));
  return {
    method: init.json === undefined ? 'GET' : 'POST',
    target,
    headers: [
      ['Host', 'localhost'],
      ...(init.token === undefined ? [] : [['Authorization', `Bearer ${init.token}`] as const]),
    ],
    body: () => Promise.resolve(body),
    signal: new AbortController().signal,
    hosts: new Set(['localhost']),
    via: 'unix',
  };
}

async function text(body: Uint8Array | AsyncIterable<Uint8Array> | null): Promise<string> {
  if (body === null) return '';
  if (body instanceof Uint8Array) return Buffer.from(body).toString('utf8');
  const parts: Uint8Array[] = [];
  for await (const chunk of body) parts.push(chunk);
  return Buffer.concat(parts).toString('utf8');
}

describe('the serve handler with a State, in memory', () => {
  it('brokers a template: the upstream gets the value, the answer is redacted and audited', async () => {
    const template = {
      credential: 'k',
      method: 'GET',
      url: `https://${ALLOWED_HOST}/v1/echo`,
      headers: { Authorization: 'Bearer {{CREDENTIAL}}' },
    };
    const r = await handler(request('/v1/proxy', { token, json: template }));
    const answer = await text(r.body);
    expect(r.status).toBe(200);
    expect(Buffer.from(upstream.requests.at(-1)!.raw).toString('latin1')).toContain(canary);
    expectNoCanary(answer, canary, 'the redacted answer');
    expect(answer).toContain('[REDACTED:k]');
    const seq = r.headers.find(([n]) => n.toLowerCase() === 'trust-protocol-audit-seq')?.[1];
    const events = [...readLogLines(state.home)].map((l) => JSON.parse(l));
    expect(events.find((e) => e.seq === Number(seq))?.event).toBe('request.allowed');
    expect(events.at(-1).event).toBe('request.completed');
  });

  it('a foreign host is refused before anything is decrypted, and the refusal is audited', async () => {
    const before = upstream.requests.length;
    const r = await handler(request('/v1/proxy', {
      token,
      json: { credential: 'k', url: 'https://evil.example/x', headers: { A: '{{CREDENTIAL}}' } },
    }));
    expect(r.status).toBe(403);
    expect(JSON.parse(await text(r.body)).error.code).toBe('domain_not_allowed');
    expect(upstream.requests.length).toBe(before);
    const last = JSON.parse([...readLogLines(state.home)].at(-1)!);
    expect([last.event, last.data.reason]).toEqual(['request.denied', 'domain_not_allowed']);
  });

  it('a brake pulled in the same State stops the next request', async () => {
    const brake = await state.brakes.activate(
      { scope: 'agent', target: state.vault.read().body.agents[0]!.id, reason: 'test' },
      new Date(),
    );
    const r = await handler(request('/v1/proxy', {
      token,
      json: {
        credential: 'k',
        url: `https://${ALLOWED_HOST}/v1`,
        headers: { A: '{{CREDENTIAL}}' },
      },
    }));
    expect(r.status).toBe(423);
    expect(JSON.parse(await text(r.body)).error.code).toBe('brake_agent');
    // serve holds the keys: the brake it saw is in the vault's MACed list from then on.
    expect(state.vault.read().body.known_brakes.map((b) => b.id)).toContain(brake.id);
  });
});
