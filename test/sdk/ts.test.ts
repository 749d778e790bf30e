/**
 * The TypeScript SDK (sdk/ts/index.ts, `trust-protocol/sdk`) against a real serve, over its unix
 * socket and loopback TCP: the upstream gets the key, the SDK's Response never holds it, bodies
 * stream, refusals throw TrustProtocolError with serve's code and hint, the gateway URL works with
 * plain fetch, discovery finds the home's socket, the esbuild bundle runs with no dependency, and
 * the SDK's types name only fields that serve's OpenAPI document has.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import process from 'node:process';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Health,
  type ServeErrorBody,
  type Template,
  TrustProtocol,
  TrustProtocolError,
} from '../../sdk/ts/index.ts';
import { expectNoCanary } from '../helpers/canary.ts';
import { type SdkFixture, startSdkFixture, text } from './fixture.ts';

let f: SdkFixture;

beforeAll(async () => {
  f = await startSdkFixture();
});

afterAll(async () => {
  await f.stop();
});

function _echo(): Template {
  return {
    credential: 'k',
    url: 'https://api.allowed.test/echo',
    headers: { Authorization: 'Bearer {{CREDENTIAL}}' },
  };
}

async function _refusal(p: Promise<unknown>): Promise<TrustProtocolError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(TrustProtocolError);
    return e as TrustProtocolError;
  }
  throw new Error('expected a TrustProtocolError');
}

describe.each([
  ['unix socket', () => `unix:${f.s.socket}`],
  ['loopback TCP', () => f.tcp],
])('over the %s', (_name, server) => {
  it('request() returns a standard Response: the upstream got the key, the body is redacted', async () => {
    const tp = new TrustProtocol({ token: f.agent.token, server: server() });
    const res = await tp.request(_echo());
    expect(res).toBeInstanceOf(Response);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json');
    const body = await res.text();
    expect(JSON.parse(body)).toEqual({ path: '/echo', echo: '[REDACTED:k]' });
    expectNoCanary(body, f.canary, 'the SDK response');
    expect(f.upstreamGotCanary()).toBe(true);
  });

  it('the body streams: the first event arrives before the upstream has finished', async () => {
    const tp = new TrustProtocol({ token: f.agent.token, server: server() });
    const res = await tp.request({ ..._echo(), url: 'https://api.allowed.test/stream' });
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const first = await reader.read();
    expect(first.done).toBe(false);
    let all = text(first.value as Uint8Array);
    f.release();
    for (let r = await reader.read(); !r.done; r = await reader.read()) all += text(r.value);
    expect(all).toBe('data: {"echo":"[REDACTED:k]"}\n\n');
  });

  it('an upstream cut part-way errors the body stream with serve error code', async () => {
    const tp = new TrustProtocol({ token: f.agent.token, server: server() });
    const res = await tp.request({ ..._echo(), url: 'https://api.allowed.test/cut' });
    expect(res.status).toBe(200);
    const e = await _refusal(res.text());
    expect(e.kind).toBe('upstream');
    expect(e.code).not.toBe('serve_cut');
  });

  it('a refusal throws TrustProtocolError with serve code, message and hint', async () => {
    const tp = new TrustProtocol({ token: f.agent.token, server: server() });
    const e = await _refusal(tp.request({ ..._echo(), url: 'https://evil.test/steal' }));
    expect(e.code).toBe('domain_not_allowed');
    expect(e.kind).toBe('denied');
    expect(e.status).toBe(403);
    expect(e.message).toContain('evil.test');
    expect(e.hint).toBeTypeOf('string');
    expectNoCanary(JSON.stringify({ ...e, message: e.message }), f.canary, 'the error');
  });

  it('with no token serve answers 401 no_token', async () => {
    const saved = process.env.TRUST_PROTOCOL_TOKEN;
    delete process.env.TRUST_PROTOCOL_TOKEN;
    try {
      const e = await _refusal(new TrustProtocol({ server: server() }).request(_echo()));
      expect([e.status, e.code]).toEqual([401, 'no_token']);
    } finally {
      if (saved !== undefined) process.env.TRUST_PROTOCOL_TOKEN = saved;
    }
  });

  it('status() is serve health', async () => {
    const health = await new TrustProtocol({ server: server() }).status();
    expect(health.status).toBe('ok');
    expect(health.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(Date.parse(health.expires_at)).toBeGreaterThan(0);
  });
});

describe('gatewayUrl', () => {
  it('is the TCP gateway of the credential, usable by plain fetch with the agent token', async () => {
    const tp = new TrustProtocol({ token: f.agent.token, server: f.tcp });
    const base = tp.gatewayUrl('k');
    expect(base).toBe(`${f.tcp}/v1/gateway/k`);
    const res = await fetch(`${base}/v1/models`, {
      headers: { Authorization: `Bearer ${f.agent.token}` },
    });
    const body = await res.text();
    expect(res.status).toBe(200);
    expect(JSON.parse(body)).toEqual({ path: '/v1/models', echo: '[REDACTED:k]' });
    expectNoCanary(body, f.canary, 'the gateway response');
  });

  it('with a unix socket only, says serve needs --listen', () => {
    const tp = new TrustProtocol({ token: f.agent.token, server: `unix:${f.s.socket}` });
    expect(() => tp.gatewayUrl('k')).toThrow(/loopback TCP/);
    expect(() => new TrustProtocol({ server: f.tcp }).gatewayUrl('../x')).toThrow(
      TrustProtocolError,
    );
  });
});

describe('server discovery and environment', () => {
  it('finds the socket in TRUST_PROTOCOL_HOME and takes the token from TRUST_PROTOCOL_TOKEN', async () => {
    const saved = { ...process.env };
    delete process.env.TRUST_PROTOCOL_SERVER;
    process.env.TRUST_PROTOCOL_HOME = f.t.home;
    process.env.TRUST_PROTOCOL_TOKEN = f.agent.token;
    try {
      const res = await new TrustProtocol().request(_echo());
      expect(res.status).toBe(200);
      expectNoCanary(await res.text(), f.canary, 'the SDK response');
    } finally {
      for (const k of ['TRUST_PROTOCOL_HOME', 'TRUST_PROTOCOL_TOKEN', 'TRUST_PROTOCOL_SERVER']) {
        if (saved[k] === undefined) delete process.env[k];
        else process.env[k] = saved[k];
      }
    }
  });

  it('with no serve, a clear no_serve error', async () => {
    const saved = process.env.TRUST_PROTOCOL_HOME;
    process.env.TRUST_PROTOCOL_HOME = f.t.dir;
    try {
      const e = await _refusal(new TrustProtocol({ token: 'tpat_x' }).status());
      expect(e.code).toBe('no_serve');
      expect(e.hint).toContain('trust-protocol serve');
    } finally {
      if (saved === undefined) delete process.env.TRUST_PROTOCOL_HOME;
      else process.env.TRUST_PROTOCOL_HOME = saved;
    }
  });

  it('refuses a server address that is not loopback', () => {
    for (const server of ['http://example.com:80', 'https://127.0.0.1:1', 'http://10.0.0.1:80']) {
      expect(() => new TrustProtocol({ server })).toThrow(/not a serve address/);
    }
  });
});

it('the esbuild bundle (what `trust-protocol/sdk` ships) imports with no dependency', async () => {
  const out = path.join(mkdtempSync(path.join(tmpdir(), 'tp-sdk-')), 'sdk.mjs');
  execFileSync('node_modules/.bin/esbuild', [
    'sdk/ts/index.ts',
    '--bundle',
    '--platform=node',
    '--format=esm',
    '--log-level=warning',
    `--outfile=${out}`,
  ]);
  const bundled = readFileSync(out, 'utf8');
  expect(bundled.match(/from ["']([^"']+)["']/g)?.every((m) => /["']node:/.test(m))).toBe(true);
  const sdk = await import(pathToFileURL(out).href) as typeof import('../../sdk/ts/index.ts');
  const health = await new sdk.TrustProtocol({ server: f.tcp }).status();
  expect(health.status).toBe('ok');
});

describe('the types match serve OpenAPI document (docs/openapi.json)', () => {
  const doc = JSON.parse(
    readFileSync(new URL('../../docs/openapi.json', import.meta.url), 'utf8'),
  );
  const schemas = doc.components.schemas;
  // Required<...> and excess-property checks make tsc fail if a field is added or dropped here
  // without the SDK type changing too.
  const template: Required<Template> = {
    credential: 'k',
    method: 'GET',
    url: 'https://x.test',
    headers: {},
    body: null,
  };
  const error: Required<ServeErrorBody> = {
    code: 'c',
    kind: 'denied',
    message: 'm',
    hint: 'h',
    retry_after: 1,
  };
  const health: Required<Health> = { status: 'ok', version: '1', expires_at: '', tcp_url: null };

  it('Template', () => {
    expect(Object.keys(template).sort()).toEqual(Object.keys(schemas.Template.properties).sort());
    expect(schemas.Template.required).toEqual(['url']);
  });
  it('Error', () => {
    const e = schemas.Error.properties.error;
    expect(Object.keys(error).sort()).toEqual(Object.keys(e.properties).sort());
    expect(e.required.sort()).toEqual(['code', 'kind', 'message']);
  });
  it('Health', () => {
    expect(Object.keys(health).sort()).toEqual(Object.keys(schemas.Health.properties).sort());
    expect(schemas.Health.required.sort()).toEqual(Object.keys(health).sort());
  });
  it('the paths the SDK calls', () => {
    expect(doc.paths['/v1/proxy'].post).toBeDefined();
    expect(doc.paths['/v1/health'].get).toBeDefined();
    expect(doc.paths['/v1/gateway/{credential}/{path}'].get).toBeDefined();
  });
});
