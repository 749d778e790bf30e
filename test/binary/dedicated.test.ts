/**
 * The dedicated-user deployment, for real: install.sh --system creates a service user and an
 * agents group, serve is started by root with --user and drops to the service user, and an agent
 * runs as another OS user in the agents group. The agent's requests work through the socket (and
 * exec finds /run/trust-protocol/serve.sock by itself); the agent can neither read nor write the
 * state directory, nor trace serve or read its memory. Needs root (CI runs as root); the binary
 * only, since that is what install.sh installs.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PASSWORD } from '../helpers/cli.ts';
import { echoHandler, type Listener, startHttpsListener, TEST_CA } from '../helpers/listeners.ts';

const ROOT = path.resolve(new URL('../..', import.meta.url).pathname);
const IS_ROOT = process.getuid?.() === 0;
const SOCKET_DIR = '/run/trust-protocol';
const SOCKET = path.join(SOCKET_DIR, 'serve.sock');
const CANARY = `tp-canary-dedicated-${randomBytes(8).toString('hex')}`;
const PATH_ENV = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

if (!IS_ROOT) {
  console.warn(
    '\n*** SKIPPED: the dedicated-user tests need root (useradd, setuid); CI runs them as root ***\n',
  );
}

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runAs(
  user: string | null,
  file: string,
  args: readonly string[],
  options: { env?: Record<string, string>; input?: string } = {},
): Promise<Ran> {
  // setpriv keeps the environment we give it (runuser would reset parts of it) and sets the
  // user's supplementary groups, as a login would.
  const [cmd, argv] = user === null
    ? [file, args]
    : ['setpriv', ['--reuid', user, '--regid', user, '--init-groups', '--', file, ...args]];
  return new Promise((resolve) => {
    const child = spawn(cmd as string, argv as string[], {
      env: { PATH: PATH_ENV, HOME: '/nonexistent', NO_COLOR: '1', ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(options.input ?? '');
  });
}

function idOf(kind: 'passwd' | 'group', name: string): number {
  const line = fs.readFileSync(`/etc/${kind}`, 'utf8').split('\n').find((l) =>
    l.startsWith(`${name}:`)
  );
  if (line === undefined) throw new Error(`no ${kind} entry for ${name}`);
  return Number(line.split(':')[2]);
}

describe.skipIf(!IS_ROOT)('a dedicated user: serve as a system user, agents as other users', () => {
  const suffix = randomBytes(3).toString('hex');
  const svc = `tps-${suffix}`;
  const agents = `tpa-${suffix}`;
  const agentUser = `tpg-${suffix}`;
  const outsider = `tpo-${suffix}`;
  let base = '';
  let bin = '';
  let state = '';
  let passwordFile = '';
  let token = '';
  let upstream: Listener;
  let serve: ReturnType<typeof spawn> | null = null;
  let servePid = 0;
  let createdSocketDir = false;

  const admin = (args: readonly string[], input?: string) =>
    runAs(svc, bin, ['--home', state, ...args, '--password-file', passwordFile], {
      env: { HOME: state },
      ...(input === undefined ? {} : { input }),
    });
  const agentExec = (user: string) =>
    runAs(user, bin, [
      'exec',
      'https://api.allowed.test/echo',
      '-H',
      'Authorization: Bearer {{CREDENTIAL}}',
      '--credential',
      'canary',
    ], { env: { HOME: path.join(base, 'agent-home'), TRUST_PROTOCOL_TOKEN: token } });

  beforeAll(async () => {
    if (fs.existsSync(SOCKET_DIR)) {
      // Left by an interrupted run of this test (its owner is a tps- user or gone)? Else refuse.
      const owner = fs.statSync(SOCKET_DIR).uid;
      const name = fs.readFileSync('/etc/passwd', 'utf8').split('\n')
        .find((l) => l.split(':')[2] === String(owner))?.split(':')[0];
      if (name !== undefined && !name.startsWith('tps-')) {
        throw new Error(`${SOCKET_DIR} belongs to a real deployment (${name}); not touching it`);
      }
      fs.rmSync(SOCKET_DIR, { recursive: true, force: true });
    }
    createdSocketDir = true;
    base = fs.mkdtempSync('/tmp/tp-system-');
    fs.chmodSync(base, 0o755);
    state = path.join(base, 'state');
    bin = path.join(base, 'bin', 'trust-protocol');
    const installed = await runAs(null, 'sh', [
      path.join(ROOT, 'install.sh'),
      '--system',
      '--prefix',
      base,
      '--user',
      svc,
      '--agents-group',
      agents,
      '--state-dir',
      state,
      '--socket-dir',
      SOCKET_DIR,
    ], { env: { HOME: base } });
    expect(installed.code, installed.stderr).toBe(0);
    expect(installed.stdout).toContain(`set up the dedicated user "${svc}"`);
    for (const [user, groups] of [[agentUser, ['-G', agents]], [outsider, []]] as const) {
      const r = await runAs(null, 'useradd', [
        '--no-create-home',
        '--shell',
        '/usr/sbin/nologin',
        ...groups,
        user,
      ]);
      expect(r.code, r.stderr).toBe(0);
    }
    fs.mkdirSync(path.join(base, 'agent-home'), { mode: 0o777 });
    fs.chmodSync(path.join(base, 'agent-home'), 0o777);
    passwordFile = path.join(base, 'password');
    fs.writeFileSync(passwordFile, PASSWORD + '\n', { mode: 0o600 });
    fs.chownSync(passwordFile, idOf('passwd', svc), idOf('group', svc));
    const ca = path.join(base, 'ca.pem');
    fs.writeFileSync(ca, TEST_CA, { mode: 0o644 });

    const init = await admin(['init', '--kdf-memory-mib', '19', '--kdf-iterations', '2']);
    expect(init.code, init.stderr).toBe(0);
    const add = await admin(
      ['credential', 'add', 'canary', '--allowed-domains', 'api.allowed.test'],
      CANARY,
    );
    expect(add.code, add.stderr).toBe(0);
    const reg = await admin(['--json', 'agent', 'register', 'bot', '--tier', 'COMPANION']);
    expect(reg.code, reg.stderr).toBe(0);
    const agent = JSON.parse(reg.stdout) as { id: string; token: string };
    token = agent.token;
    const grant = await admin(['agent', 'grant', agent.id, 'canary']);
    expect(grant.code, grant.stderr).toBe(0);

    upstream = await startHttpsListener(echoHandler);
    serve = spawn(bin, [
      '--home',
      state,
      '--json',
      'serve',
      '--user',
      svc,
      '--socket',
      SOCKET,
      '--socket-group',
      agents,
      '--password-file',
      passwordFile,
      '--cacert',
      ca,
      '--connect-to',
      `api.allowed.test:443:127.0.0.1:${upstream.port}`,
      '--ttl',
      '10m',
    ], { env: { PATH: PATH_ENV, HOME: '/root' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    serve.stderr!.on('data', (d) => (err += d));
    servePid = await new Promise<number>((resolve, reject) => {
      let out = '';
      serve!.stdout!.on('data', (d) => {
        out += d;
        if (out.includes('\n')) resolve((JSON.parse(out.split('\n')[0]!) as { pid: number }).pid);
      });
      serve!.on('close', (code) => reject(new Error(`serve exited ${code}: ${err}`)));
    });
  }, 120_000);

  afterAll(async () => {
    if (serve !== null && serve.exitCode === null) {
      const closed = new Promise((r) => serve!.on('close', r));
      serve.kill('SIGTERM');
      await closed;
    }
    await upstream?.close();
    for (const user of [agentUser, outsider, svc]) await runAs(null, 'userdel', [user]);
    await runAs(null, 'groupdel', [agents]);
    await runAs(null, 'groupdel', [svc]);
    if (createdSocketDir) fs.rmSync(SOCKET_DIR, { recursive: true, force: true });
    if (base !== '') fs.rmSync(base, { recursive: true, force: true });
  }, 60_000);

  it('serve runs as the service user with every id dropped, and is not dumpable', () => {
    const status = fs.readFileSync(`/proc/${servePid}/status`, 'utf8');
    const uid = idOf('passwd', svc);
    const gid = idOf('group', svc);
    expect(status).toMatch(new RegExp(`^Uid:\\s+${uid}\\s+${uid}\\s+${uid}\\s+${uid}$`, 'm'));
    expect(status).toMatch(new RegExp(`^Gid:\\s+${gid}\\s+${gid}\\s+${gid}\\s+${gid}$`, 'm'));
    // The kernel gives a non-dumpable process's /proc files to root instead of its own uid.
    expect(fs.statSync(`/proc/${servePid}/mem`).uid).toBe(0);
    expect(fs.statSync(`/proc/${servePid}/environ`).uid).toBe(0);
  });

  it('its socket is 0660 for the agents group; the state directory is 0700 for the service user', () => {
    const sock = fs.statSync(SOCKET);
    expect(sock.isSocket()).toBe(true);
    expect(sock.mode & 0o777).toBe(0o660);
    expect(sock.gid).toBe(idOf('group', agents));
    const home = fs.statSync(state);
    expect(home.mode & 0o777).toBe(0o700);
    expect(home.uid).toBe(idOf('passwd', svc));
  });

  it('an agent user gets its request through the system socket, found by itself', async () => {
    const before = upstream.requests.length;
    const r = await agentExec(agentUser);
    expect(r.code, r.stderr).toBe(0);
    expect(upstream.requests.length).toBe(before + 1);
    expect(upstream.requests.at(-1)!.headers.authorization).toBe(`Bearer ${CANARY}`);
    expect(r.stdout + r.stderr).not.toContain(CANARY);
    expect(r.stdout).toContain('[REDACTED:canary]');
  });

  it('a user outside the agents group cannot reach serve, and nothing is sent', async () => {
    const before = upstream.requests.length;
    const r = await agentExec(outsider);
    expect(r.code).not.toBe(0);
    expect(upstream.requests.length).toBe(before);
    expect(r.stdout + r.stderr).not.toContain(CANARY);
  });

  it('the agent user can neither read nor write the state directory', async () => {
    for (
      const script of [
        `cat ${state}/vault.json`,
        `ls ${state}`,
        `touch ${state}/planted`,
        `cat ${state}/audit/audit.log`,
        `echo x >> ${state}/audit/audit.log`,
      ]
    ) {
      const r = await runAs(agentUser, 'sh', ['-c', script]);
      expect(r.code, script).not.toBe(0);
      expect(r.stderr, script).toMatch(/Permission denied/);
    }
    expect(fs.existsSync(path.join(state, 'planted'))).toBe(false);
  });

  it('the agent user can neither trace serve nor read its memory or environment', async () => {
    const traced = await runAs(agentUser, 'strace', ['-p', String(servePid), '-e', 'none']);
    expect(traced.code).not.toBe(0);
    expect(traced.stderr).toMatch(/Operation not permitted/);
    for (const file of ['mem', 'environ', 'maps']) {
      const r = await runAs(agentUser, 'sh', ['-c', `head -c 16 /proc/${servePid}/${file}`]);
      expect(r.code, file).not.toBe(0);
      expect(r.stderr, file).toMatch(/Permission denied/);
    }
  });

  it('serve --user refuses to start unless root, and without a state directory', async () => {
    const notRoot = await runAs(agentUser, bin, ['--home', state, 'serve', '--user', svc], {
      env: { HOME: path.join(base, 'agent-home') },
    });
    expect(notRoot.code).toBe(2);
    expect(notRoot.stderr).toContain('must be started by root');
    const noHome = await runAs(null, bin, ['serve', '--user', svc], { env: { HOME: '/root' } });
    expect(noHome.code).toBe(2);
    expect(noHome.stderr).toContain('--home');
  });

  // Last: it leaves a global brake on.
  it('an agent user can pull a brake through the socket; one outside the group cannot', async () => {
    const env = { HOME: path.join(base, 'agent-home') };
    const args = ['emergency', 'activate', '--reason', 'agent saw something odd'];
    const refused = await runAs(outsider, bin, args, { env });
    expect(refused.code).not.toBe(0);
    expect(fs.readdirSync(path.join(state, 'brakes')).filter((f) => f.startsWith('brk_')))
      .toEqual([]);
    const pulled = await runAs(agentUser, bin, ['--json', ...args], { env });
    expect(pulled.code, pulled.stderr).toBe(0);
    expect(JSON.parse(pulled.stdout)).toMatchObject({ scope: 'global', reason: args[3] });
    const before = upstream.requests.length;
    const r = await agentExec(agentUser);
    expect(r.code, r.stderr).toBe(5);
    expect(upstream.requests.length).toBe(before);
    const status = await runAs(svc, bin, ['--home', state, '--json', 'emergency', 'status'], {
      env: { HOME: state },
    });
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout).global).toMatchObject({ reason: args[3] });
  });
});
