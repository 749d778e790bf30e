// deno-lint-ignore-file no-explicit-any -- audit lines are read as raw JSON
/**
 * `exec` handing its template to a running serve (SPEC §7, §8): found through the default socket
 * in the home, --server or TRUST_PROTOCOL_SERVER; then no password is needed, and the output
 * (stdout byte for byte, stderr) and exit code are those of a one-shot exec that unseals itself.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { baseEnv, run, type RunOptions, type RunResult, RUNTIME } from '../helpers/cli.ts';
import { execFile } from 'node:child_process';
import { bearer, type Canary, setupCanary } from '../helpers/canary.ts';
import { scriptedUpstream, type Served, startServe } from '../helpers/serve.ts';

const up = scriptedUpstream();
let f: Canary;
let s: Served;

beforeAll(async () => {
  f = await setupCanary({ allowedRaw: up.onConnection });
  // No --socket: the default HOME/serve.sock, where exec looks by itself.
  s = await startServe(f.t, [
    '--listen',
    '127.0.0.1:0',
    '--cacert',
    f.caFile,
    ...f.routes.flatMap((r) => ['--connect-to', r]),
  ]);
  expect(s.socket).toBe(path.join(f.t.home, 'serve.sock'));
});
afterAll(async () => {
  const e = await s.stop();
  expect(e.code, e.stderr).toBe(0);
  await f.close();
});

function _template(body: unknown): string {
  return f.t.file(`t-${f.marker()}.json`, JSON.stringify(body));
}

/** A one-shot exec: password, --cacert and --connect-to (which also keep it from using serve). */
function _oneShot(args: string[], options: RunOptions = {}): Promise<RunResult> {
  return f.t.tp([
    'exec',
    ...args,
    '--password-file',
    f.t.passwordFile,
    '--cacert',
    f.caFile,
    ...f.routes.flatMap((r) => ['--connect-to', r]),
  ], { ...options, env: { TRUST_PROTOCOL_TOKEN: f.agent.token, ...options.env } });
}

/**
 * The same exec with no password, no TLS flags and a home that does not exist: only the serve can
 * carry it out (an exec that tried by itself would stop at the missing home, exit 3).
 */
function _delegated(args: string[], options: RunOptions = {}): Promise<RunResult> {
  return run([
    '--home',
    path.join(f.t.dir, 'no-home'),
    'exec',
    ...args,
    '--server',
    `unix:${s.socket}`,
  ], {
    ...options,
    env: { TRUST_PROTOCOL_TOKEN: f.agent.token, ...options.env },
  });
}

/** exec in the serve's home without a password: the default socket is how it gets served. */
function _inHome(args: string[], options: RunOptions = {}): Promise<RunResult> {
  return f.t.tp(['exec', ...args], {
    ...options,
    env: { TRUST_PROTOCOL_TOKEN: f.agent.token, ...options.env },
  });
}

function _same(a: RunResult, b: RunResult): void {
  expect(b.code, `delegated: ${b.stderr}`).toBe(a.code);
  expect(Buffer.from(b.stdoutBytes).toString('latin1')).toBe(
    Buffer.from(a.stdoutBytes).toString('latin1'),
  );
  expect(b.stderr).toBe(a.stderr);
  f.expectClean(a);
  f.expectClean(b);
}

function _completedBy(agent: string): number {
  return fs.readFileSync(path.join(f.t.home, 'audit', 'audit.log'), 'utf8').trim().split('\n')
    .map((l) => JSON.parse(l)).filter((l: any) =>
      l.event === 'request.completed' && l.data.agent === agent
    ).length;
}

describe.concurrent('the same output and exit code as a one-shot exec', () => {
  const CASES: Record<string, () => string[]> = {
    'a template': () => ['--template', _template(bearer('https://api.allowed.test/echo', 'x'))],
    '-i with a reflected secret in a header and the status text': () => [
      '-i',
      '--template',
      _template(bearer('https://api.allowed.test/reflect/status', 'x')),
    ],
    '--json': () => [
      '--json',
      '--template',
      _template(bearer('https://api.allowed.test/reflect/header', 'x')),
    ],
    'a server-sent event stream split byte by byte': () => [
      '--template',
      _template(bearer('https://api.allowed.test/reflect/sse-bytes', 'x')),
    ],
    'the curl-like form with data': () => [
      '-X',
      'PUT',
      'https://api.allowed.test/curl',
      '-H',
      'X-Api-Key: {{CREDENTIAL}}',
      '-d',
      'a=1',
      '--credential',
      'k',
    ],
    '--fail on a 404 (exit 22)': () => [
      '--fail',
      '--template',
      _template(bearer('https://api.allowed.test/status/404', 'x')),
    ],
    'a 404 without --fail (exit 0)': () => [
      '--template',
      _template(bearer('https://api.allowed.test/status/404', 'x')),
    ],
    'a redirect, unfollowed': () => [
      '-i',
      '--template',
      _template(bearer('https://api.allowed.test/r/302/absolute', 'x')),
    ],
    'a denied domain (exit 4)': () => ['--template', _template(bearer('https://evil.test/', 'x'))],
    'a denied domain under --json (exit 4, JSON error)': () => [
      '--json',
      '--template',
      _template(bearer('https://evil.test/', 'x')),
    ],
    'a placement refusal (exit 4)': () => [
      '--template',
      _template(bearer('https://api.allowed.test/?k={{CREDENTIAL}}', 'x')),
    ],
    'a malformed template (exit 2)': () => [
      '--template',
      _template({ ...bearer('https://api.allowed.test/', 'x'), extra: 1 }),
    ],
    'a bad placeholder (exit 2)': () => [
      '--template',
      _template({
        credential: 'k',
        url: 'https://api.allowed.test/',
        headers: { A: '{{ CREDENTIAL }}' },
      }),
    ],
    '--timeout (exit 7)': () => [
      '--timeout',
      '1',
      '--template',
      _template(bearer('https://api.allowed.test/slow', 'x')),
    ],
    '--max-response-bytes (exit 7)': () => [
      '--max-response-bytes',
      '5',
      '--template',
      _template(bearer('https://api.allowed.test/big', 'x')),
    ],
  };
  for (const [name, args] of Object.entries(CASES)) {
    it(name, async () => {
      const a = args();
      const [one, two] = await Promise.all([_oneShot(a), _delegated(a)]);
      _same(one, two);
    });
  }

  it('a failure part-way through the stream: the same exit code and message', async () => {
    const a = [
      '--max-response-bytes',
      '50',
      '--template',
      _template(bearer('https://api.allowed.test/big-late', 'x')),
    ];
    const [one, two] = await Promise.all([_oneShot(a), _delegated(a)]);
    expect(one.code).toBe(7);
    expect(two.code).toBe(one.code);
    expect(two.stderr).toBe(one.stderr);
  });

  it('no token, a bad token: exit 4 with the same message', async () => {
    const a = ['--template', _template(bearer('https://api.allowed.test/', 'x'))];
    for (const token of [undefined, 'tpat_bad']) {
      const env = { TRUST_PROTOCOL_TOKEN: token };
      const [one, two] = await Promise.all([_oneShot(a, { env }), _delegated(a, { env })]);
      expect(one.code).toBe(4);
      _same(one, two);
    }
  });

  it('-o FILE writes the same bytes', async () => {
    const tpl = _template(bearer('https://api.allowed.test/reflect/raw', 'x'));
    const [fa, fb] = [
      path.join(f.t.dir, `o1-${f.marker()}`),
      path.join(f.t.dir, `o2-${f.marker()}`),
    ];
    const [one, two] = await Promise.all([
      _oneShot(['--template', tpl, '-o', fa]),
      _delegated(['--template', tpl, '-o', fb]),
    ]);
    _same(one, two);
    expect(fs.readFileSync(fb, 'latin1')).toBe(fs.readFileSync(fa, 'latin1'));
    expect(fs.readFileSync(fb, 'latin1')).toBe('before [REDACTED:k] after');
  });
});

describe.concurrent('finding the serve', () => {
  const tpl = () => _template(bearer('https://api.allowed.test/find', 'x'));

  // What start-up loads, recorded by bench/loaded.ts (Node's module hooks: the Node pass only).
  it.skipIf(RUNTIME !== 'node')(
    'through serve, exec loads no vault, broker, monitor, template renderer or HTTPS client',
    async () => {
      const root = path.resolve(new URL('../..', import.meta.url).pathname);
      const out = path.join(f.t.dir, `loaded-${f.marker()}.json`);
      // Not spawnSync: the upstream listens in this process.
      const r = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
        execFile(
          process.execPath,
          [
            '--import',
            path.join(root, 'bench/loaded.ts'),
            path.join(root, 'cmd/main.ts'),
            '--home',
            f.t.home,
            'exec',
            '--template',
            tpl(),
          ],
          { env: baseEnv({ TRUST_PROTOCOL_TOKEN: f.agent.token, TP_BENCH_LOADED: out }) },
          (e, stdout, stderr) =>
            resolve({ code: e === null ? 0 : Number(e.code ?? 1), stdout, stderr }),
        );
      });
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout).path).toBe('/find');
      const loaded = JSON.parse(fs.readFileSync(out, 'utf8')) as {
        modules: string[];
        builtins: string[];
      };
      expect(loaded.modules).toContain('src/serve/client.ts');
      // Sources only: type stripping and the hooks load built-ins of their own here, so Node's
      // built-ins are counted on the bundle (bench/exec_serve.ts). src/bytes.ts loads node:crypto.
      const heavy =
        /^(src\/(vault|broker|state|audit|template|redact|policy|bytes)\.ts|src\/(monitor|crypto)\/|src\/http\/client\.ts|node_modules\/)/;
      expect(loaded.modules.filter((m) => heavy.test(m))).toEqual([]);
    },
  );

  it('no password anywhere: the default socket serves it, and serve audits it', async () => {
    const before = _completedBy(f.agent.id);
    const r = await _inHome(['--template', tpl()]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).path).toBe('/find');
    expect(_completedBy(f.agent.id)).toBeGreaterThan(before);
  });

  it('--server unix:PATH, --server http://localhost:PORT, TRUST_PROTOCOL_SERVER=http://127.0.0.1:PORT', async () => {
    // From a home that does not exist: only the named serve can answer.
    const away = (args: string[], env: Record<string, string> = {}) =>
      run(['--home', path.join(f.t.dir, 'no-home'), 'exec', '--template', tpl(), ...args], {
        env: { TRUST_PROTOCOL_TOKEN: f.agent.token, ...env },
      });
    for (
      const r of await Promise.all([
        away(['--server', `unix:${s.socket}`]),
        away(['--server', `http://localhost:${s.port}`]),
        away([], { TRUST_PROTOCOL_SERVER: s.url }),
      ])
    ) {
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toBe('');
      expect(JSON.parse(r.stdout).path).toBe('/find');
    }
  });

  it("NODE_TLS_REJECT_UNAUTHORIZED=0 in the agent's environment does not matter: serve's TLS is its own", async () => {
    const env = { NODE_EXTRA_CA_CERTS: '/etc/hostname', NODE_TLS_REJECT_UNAUTHORIZED: '0' };
    const one = await _oneShot(['--template', tpl()], { env });
    expect(one.code).toBe(4);
    const two = await _inHome(['--template', tpl()], { env });
    expect(two.code, two.stderr).toBe(0);
  });

  it('refuses a non-loopback --server, and --server with --cacert or --connect-to (exit 2)', async () => {
    for (
      const server of [
        'http://evil.test:80',
        'https://127.0.0.1:1',
        'http://10.0.0.1:8080',
        'ftp://x',
      ]
    ) {
      const r = await _inHome(['--template', tpl(), '--server', server]);
      expect(r.code, server).toBe(2);
      expect(r.stderr).toContain('serve address');
    }
    const r = await _inHome(['--template', tpl(), '--server', s.url, '--cacert', f.caFile]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--server cannot be combined with --cacert');
  });

  it('a serve that does not answer: exec unseals itself (a note says so), else exit 3', async () => {
    const gone = `unix:${path.join(f.t.dir, 'nobody.sock')}`;
    const withPassword = await f.t.tp([
      'exec',
      '--template',
      tpl(),
      '--server',
      gone,
      '--password-file',
      f.t.passwordFile,
    ], { env: { TRUST_PROTOCOL_TOKEN: f.agent.token } });
    // No --cacert here: unsealing itself, exec cannot verify the test upstream (exit 7).
    expect(withPassword.stderr).toContain(`note: no serve answers at ${gone}; unsealing here`);
    expect(withPassword.code).toBe(7);
    const without = await _inHome(['--template', tpl(), '--server', gone]);
    expect(without.code).toBe(3);
  });
});
