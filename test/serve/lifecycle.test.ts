// deno-lint-ignore-file no-explicit-any -- audit lines are read as raw JSON
/**
 * serve's life (SPEC §8): what it refuses at start (non-loopback addresses,
 * NODE_TLS_REJECT_UNAUTHORIZED=0, bad durations; CA variables are ignored, see
 * test/canary/environment.test.ts), what it prints, the 0600 socket, and the ways it ends (TTL, idle
 * time, SIGTERM), each exiting 0 with `serve.stop` in the audit trail and the socket removed.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newHome, type TestHome } from '../helpers/cli.ts';
import { http, json, type Served, serveOnce, startServe } from '../helpers/serve.ts';

let t: TestHome;
const running: Served[] = [];

beforeAll(async () => {
  t = await newHome();
});
afterAll(async () => {
  await Promise.all(running.map((s) => s.stop()));
});

async function _start(args: string[]): Promise<Served> {
  const s = await startServe(t, args);
  running.push(s);
  return s;
}

function _socket(name: string): string {
  return path.join(t.dir, `${name}.sock`);
}

function _audit(): any[] {
  return fs.readFileSync(path.join(t.home, 'audit', 'audit.log'), 'utf8').trim().split('\n')
    .map((l) => JSON.parse(l));
}

function _stopOf(pid: number): any {
  const start = _audit().find((l) => l.event === 'serve.start' && l.data.pid === pid);
  expect(start, `serve.start of pid ${pid}`).toBeDefined();
  return _audit().find((l) => l.event === 'serve.stop' && l.data.pid === pid);
}

describe.concurrent('refused at start, before anything listens', () => {
  const NOT_LOOPBACK = [
    '0.0.0.0:0',
    '192.0.2.1:8080',
    '10.0.0.1:0',
    '[::]:0',
    ':8080',
    'example.com:8080',
    '[::ffff:127.0.0.1]:0',
    '[fe80::1]:0',
  ];
  for (const listen of NOT_LOOPBACK) {
    it(`--listen ${listen}: exit 2`, async () => {
      const r = await serveOnce(t, ['--listen', listen, '--socket', _socket('refused')]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(/not a loopback address|must be HOST:PORT/);
      expect(r.stderr).toMatch(/hint: serve listens on loopback only/);
      expect(fs.existsSync(_socket('refused'))).toBe(false);
    });
  }

  it('--listen without a port, and bad durations: exit 2', async () => {
    for (
      const args of [
        ['--listen', '127.0.0.1'],
        ['--ttl', '0s'],
        ['--ttl', '25h'],
        ['--idle', 'soon'],
        ['--agent-rate', 'many'],
      ]
    ) {
      const r = await serveOnce(t, [...args, '--socket', _socket('refused')]);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
    }
  });

  it('TLS verification switched off by the environment: exit 4, naming the variable', async () => {
    const env = { NODE_TLS_REJECT_UNAUTHORIZED: '0', NODE_EXTRA_CA_CERTS: '/etc/hostname' };
    const r = await serveOnce(t, ['--socket', _socket('refused')], { env });
    expect(r.code, r.stderr).toBe(4);
    expect(r.stderr).toContain('NODE_TLS_REJECT_UNAUTHORIZED');
  });

  it('a wrong password: exit 3; no password source: exit 3', async () => {
    const wrong = t.file('wrong-password', 'not the password\n');
    const r = await serveOnce(t, ['--socket', _socket('refused'), '--password-file', wrong], {
      password: false,
    });
    expect(r.code, r.stderr).toBe(3);
    const none = await serveOnce(t, ['--socket', _socket('refused')], { password: false });
    expect(none.code, none.stderr).toBe(3);
  });
});

describe.concurrent('running and stopping', () => {
  it('prints one JSON line, listens on TCP and a 0600 socket, stops on SIGTERM (exit 0, audited, socket removed)', async () => {
    const s = await _start(['--listen', '127.0.0.1:0', '--socket', _socket('term')]);
    expect(s.info.listen).toEqual([`http://127.0.0.1:${s.port}`, `unix:${_socket('term')}`]);
    expect(Date.parse(s.info.expires_at) - Date.parse(s.info.started_at)).toBe(8 * 3600 * 1000);
    expect(s.info.idle_seconds).toBe(1800);
    expect(fs.statSync(_socket('term')).mode & 0o777).toBe(0o600);
    expect(fs.statSync(_socket('term')).isSocket()).toBe(true);
    for (const to of [s, { socket: s.socket }]) {
      const h = await http(to, '/v1/health');
      expect(h.status).toBe(200);
      expect(json(h)).toMatchObject({ status: 'ok', expires_at: s.info.expires_at });
    }
    const e = await s.stop();
    expect(e.code, e.stderr).toBe(0);
    expect(e.stdout.trim().split('\n')).toHaveLength(1);
    expect(fs.existsSync(_socket('term'))).toBe(false);
    expect(_stopOf(s.info.pid)?.data).toMatchObject({ reason: 'signal' });
  });

  it('`status` says whether a serve answers on the default socket', async () => {
    const h = await newHome();
    expect(JSON.parse((await h.tp(['status', '--json'])).stdout).serve).toBeNull();
    const s = await startServe(h, []);
    try {
      const st = JSON.parse((await h.tp(['status', '--json'])).stdout);
      expect(st.serve).toEqual({ socket: path.join(h.home, 'serve.sock') });
      expect((await h.tp(['status'])).stdout).toMatch(/serve: +running on /);
    } finally {
      await s.stop();
    }
    expect(JSON.parse((await h.tp(['status', '--json'])).stdout).serve).toBeNull();
  });

  it('the TTL ends it (2s): exit 0, serve.stop with reason ttl', async () => {
    const started = Date.now();
    const s = await _start(['--ttl', '2s', '--socket', _socket('ttl')]);
    const e = await s.exited;
    expect(e.code, e.stderr).toBe(0);
    expect(Date.now() - started).toBeGreaterThanOrEqual(2_000);
    expect(_stopOf(s.info.pid)?.data).toMatchObject({ reason: 'ttl' });
    expect(fs.existsSync(_socket('ttl'))).toBe(false);
  });

  it('idle time ends it (2s); health checks do not keep it alive', async () => {
    const s = await _start(['--idle', '2s', '--socket', _socket('idle')]);
    const listening = Date.now();
    const poll = setInterval(() => void http(s, '/v1/health').catch(() => {}), 300);
    const e = await s.exited;
    clearInterval(poll);
    expect(e.code, e.stderr).toBe(0);
    // Kept alive by the polls it would never exit (the 300 ms polls outpace 2 s): a bound on a
    // loaded machine's shutdown, not a timing.
    expect(Date.now() - listening).toBeLessThan(15_000);
    expect(_stopOf(s.info.pid)?.data).toMatchObject({ reason: 'idle', requests: 0 });
  });

  it('a request postpones the idle exit', async () => {
    // 5 s idle, a request after 2: unpostponed, serve would exit about 3 s after the answer;
    // postponed, 5 s after it. Seconds of margin either way on a loaded machine.
    const s = await _start(['--idle', '5s', '--socket', _socket('busy')]);
    const listening = Date.now();
    await new Promise((r) => setTimeout(r, 2_000));
    const r = await http(s, '/v1/proxy', {
      body: JSON.stringify({
        credential: 'k',
        url: 'https://api.allowed.test/',
        headers: { Authorization: 'Bearer {{CREDENTIAL}}' },
      }),
    });
    expect(r.status).toBe(401);
    const asked = Date.now();
    const e = await s.exited;
    expect(e.code, e.stderr).toBe(0);
    expect(Date.now() - asked).toBeGreaterThanOrEqual(4_000);
    expect(Date.now() - listening).toBeGreaterThanOrEqual(6_000);
    expect(_stopOf(s.info.pid)?.data).toMatchObject({ reason: 'idle', requests: 1 });
  });

  it('a second serve on a live socket is refused; a stale socket is replaced', async () => {
    const s = await _start(['--socket', _socket('twice')]);
    const again = await serveOnce(t, ['--socket', _socket('twice')]);
    expect(again.code, again.stderr).toBe(2);
    expect(again.stderr).toContain('already running');
    expect((await http(s, '/v1/health')).status).toBe(200);
    await s.stop();
    // A socket nobody listens on any more (as a killed serve leaves it) is taken over.
    const { createServer } = await import('node:net');
    const stale = createServer();
    await new Promise<void>((r) => stale.listen(_socket('stale'), r));
    fs.renameSync(_socket('stale'), _socket('stale2'));
    await new Promise<void>((r) => stale.close(() => r()));
    expect(fs.statSync(_socket('stale2')).isSocket()).toBe(true);
    const taken = await _start(['--socket', _socket('stale2')]);
    expect((await http(taken, '/v1/health')).status).toBe(200);
    await taken.stop();
  });

  it('without --json it says where it listens and when it exits, on stderr', async () => {
    const { spawn } = await import('node:child_process');
    const { command, baseEnv } = await import('../helpers/cli.ts');
    const { file, argv } = command([
      '--home',
      t.home,
      'serve',
      '--ttl',
      '1s',
      '--socket',
      _socket('text'),
      '--password-file',
      t.passwordFile,
    ]);
    const child = spawn(file, argv, { env: baseEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const code = await new Promise((r) => child.on('close', r));
    expect(code, err).toBe(0);
    expect(out).toBe('');
    expect(err).toContain(`serve listening on unix:${_socket('text')}`);
    expect(err).toMatch(/exits at \d{4}-\d\d-\d\dT[\d:.]+Z \(ttl 1s\), after 30m without requests/);
    expect(err).toContain('serve stopped (its time to live ran out)');
  });
});
