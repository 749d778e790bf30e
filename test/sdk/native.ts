/**
 * The tests the Go and Rust SDKs share: each builds its example program (`example request
 * TEMPLATE | status | gateway CREDENTIAL`, server and token from TRUST_PROTOCOL_SERVER and
 * TRUST_PROTOCOL_TOKEN) once, then runs it against a real serve over the unix socket and loopback
 * TCP. Without the toolchain the suite is skipped, loudly, naming the Debian packages to install.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import process from 'node:process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { missingTool } from '../helpers/tools.ts';
import { expectNoCanary } from '../helpers/canary.ts';
import { type SdkFixture, startSdkFixture } from './fixture.ts';

export interface NativeSdk {
  name: string;
  /** A command that fails when the toolchain is missing, e.g. ['go', 'version']. */
  probe: string[];
  /** What to install (Debian) when it is missing. */
  install: string;
  /** Builds the example into `dir`; returns the program's path. */
  build(dir: string): string;
}

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function nativeSdkSuite(sdk: NativeSdk): void {
  const probe = spawnSync(sdk.probe[0] as string, sdk.probe.slice(1), { encoding: 'utf8' });
  if (probe.status !== 0) {
    missingTool(
      `the ${sdk.name} SDK tests`,
      `they need \`${
        sdk.probe.join(' ')
      }\`: apt-get install -y ${sdk.install} (or \`make tools\` as root)`,
    );
    return;
  }

  let f: SdkFixture;
  let program: string;

  beforeAll(async () => {
    program = sdk.build(mkdtempSync(path.join(tmpdir(), `tp-sdk-${sdk.name}-`)));
    f = await startSdkFixture();
  }, 600_000);

  afterAll(async () => {
    await f?.stop();
  });

  function start(server: string, args: string[], token = f.agent.token): ChildProcess {
    return spawn(program, args, {
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        TRUST_PROTOCOL_SERVER: server,
        TRUST_PROTOCOL_TOKEN: token,
        TRUST_PROTOCOL_HOME: path.join(f.t.dir, 'no-home'),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  }

  function finish(child: ChildProcess, onStdout: (all: string) => void = () => {}): Promise<Ran> {
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d) => onStdout(stdout += String(d)));
    child.stderr?.on('data', (d) => (stderr += String(d)));
    return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
  }

  const echo = JSON.stringify({
    credential: 'k',
    url: 'https://api.allowed.test/echo',
    headers: { Authorization: 'Bearer {{CREDENTIAL}}' },
  });

  describe.each([
    ['unix socket', () => `unix:${f.s.socket}`],
    ['loopback TCP', () => f.tcp],
  ])(`${sdk.name} SDK over the %s`, (_name, server) => {
    it('sends a template: the upstream got the key, the program printed none of it', async () => {
      const before = f.upstream.requests.length;
      const r = await finish(start(server(), ['request', echo]));
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(r.stdout).toBe('status 200\n{"path":"/echo","echo":"[REDACTED:k]"}');
      expectNoCanary(r.stdout + r.stderr, f.canary, `the ${sdk.name} program's output`);
      expect(f.upstream.requests.length).toBe(before + 1);
      expect(f.upstreamGotCanary()).toBe(true);
    });

    it('streams: the first event is printed before the upstream has finished', async () => {
      const child = start(server(), [
        'request',
        JSON.stringify({ ...JSON.parse(echo), url: 'https://api.allowed.test/stream' }),
      ]);
      let released = false;
      const r = await finish(child, (all) => {
        if (!released && all.includes('data: ')) {
          released = true;
          f.release();
        }
      });
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(r.stdout).toBe('status 200\ndata: {"echo":"[REDACTED:k]"}\n\n');
    });

    it('an upstream cut part-way surfaces serve error trailer after the partial body', async () => {
      const cut = JSON.stringify({ ...JSON.parse(echo), url: 'https://api.allowed.test/cut' });
      const r = await finish(start(server(), ['request', cut]));
      expect(r.code).toBe(1);
      const m = /^status 200\npartial error 502 (\w+): /.exec(r.stdout);
      expect(m, r.stdout).not.toBeNull();
      expect(m?.[1]).not.toBe('serve_cut');
    });

    it('a refusal surfaces serve error code', async () => {
      const foreign = JSON.stringify({ ...JSON.parse(echo), url: 'https://evil.test/steal' });
      const r = await finish(start(server(), ['request', foreign]));
      expect(r.code).toBe(1);
      expect(r.stdout).toMatch(/^error 403 domain_not_allowed: .*evil\.test/);
      const none = await finish(start(server(), ['request', echo], 'tpat_not_a_token'));
      expect(none.code).toBe(1);
      expect(none.stdout).toMatch(/^error 401 bad_token: /);
    });

    it('reads status', async () => {
      const r = await finish(start(server(), ['status']));
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(r.stdout).toMatch(/^status ok version \d+\.\d+\.\d+\S* expires \d{4}-\d\d-\d\dT/);
    });
  });

  describe(`${sdk.name} SDK gateway URL`, () => {
    it('over TCP: the credential gateway, usable with the agent token', async () => {
      const r = await finish(start(f.tcp, ['gateway', 'k']));
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(r.stdout).toBe(`${f.tcp}/v1/gateway/k\n`);
      const res = await fetch(`${r.stdout.trim()}/v1/models`, {
        headers: { Authorization: `Bearer ${f.agent.token}` },
      });
      const body = await res.text();
      expect(JSON.parse(body)).toEqual({ path: '/v1/models', echo: '[REDACTED:k]' });
    });

    it('with only a unix socket: no_tcp_server', async () => {
      const r = await finish(start(`unix:${f.s.socket}`, ['gateway', 'k']));
      expect(r.code).toBe(1);
      expect(r.stdout).toMatch(/^error 0 no_tcp_server: /);
    });
  });
}
