/**
 * Runs the real command line as a user would: `node cmd/main.ts`, `deno run cmd/main.ts`, or the
 * built binary (TP_CLI=binary), in a clean environment (nothing of the test runner's leaks in).
 */
import { sharedPostgres } from './postgres.ts';
import { spawn } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

const ROOT = path.resolve(new URL('../..', import.meta.url).pathname);
const isDeno = typeof (globalThis as { Deno?: unknown }).Deno === 'object';

export type Runtime = 'node' | 'deno' | 'binary';
export const RUNTIME: Runtime = process.env.TP_CLI === 'binary'
  ? 'binary'
  : isDeno
  ? 'deno'
  : 'node';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  stdoutBytes: Uint8Array;
}

export interface RunOptions {
  env?: Record<string, string | undefined>;
  input?: string | Uint8Array;
  timeoutMs?: number;
  /** The runtime's V8 heap limit (old space, MiB): bounds what a command may hold in memory. */
  heapMiB?: number;
}

export function command(
  args: readonly string[],
  options: { heapMiB?: number; nodeFlags?: readonly string[] } = {},
): { file: string; argv: string[] } {
  const heap = options.heapMiB === undefined ? [] : [`--max-old-space-size=${options.heapMiB}`];
  if (RUNTIME === 'binary') {
    return { file: path.join(ROOT, 'dist/trust-protocol'), argv: [...args] };
  }
  if (RUNTIME === 'deno') {
    return {
      file: process.execPath,
      argv: [
        'run',
        '--quiet',
        '-A',
        ...heap.map((f) => `--v8-flags=${f}`),
        path.join(ROOT, 'cmd/main.ts'),
        ...args,
      ],
    };
  }
  return {
    file: process.execPath,
    argv: [...heap, ...(options.nodeFlags ?? []), path.join(ROOT, 'cmd/main.ts'), ...args],
  };
}

export function baseEnv(extra: Record<string, string | undefined> = {}): Record<string, string> {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: tmpdir(),
    NO_COLOR: '1',
    // The Deno runtime itself checks for a newer Deno now and then, through any proxy variable
    // (CONNECT dl.deno.land): not our request, but it would reach the tests' attacker proxies.
    ...(RUNTIME === 'deno' ? { DENO_NO_UPDATE_CHECK: '1' } : {}),
    // Node strips the sources' types on every start; its compile cache keeps the result, as Deno's
    // DENO_DIR (under HOME) does for Deno. About half of each CLI call's time in the tests; the
    // code run is the same. Test-only: the product sets no cache (docs/decisions.md).
    ...(RUNTIME === 'node'
      ? { NODE_COMPILE_CACHE: path.join(tmpdir(), 'tp-test-node-cache') }
      : {}),
  };
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

export function run(args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const { file, argv } = command(args, options);
  return new Promise((resolve, reject) => {
    const env = baseEnv({ ...storeEnv(args), ...options.env });
    const child = spawn(file, argv, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000);
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const stdoutBytes = Buffer.concat(out);
      resolve({
        code: code ?? (signal === 'SIGKILL' ? 137 : 128),
        stdout: stdoutBytes.toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        stdoutBytes: new Uint8Array(stdoutBytes),
      });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(options.input ?? '');
  });
}

export const PASSWORD = 'correct horse battery staple';

/** A fresh home with a vault at the KDF floor (tests never use less), and a password file. */
export interface TestHome {
  dir: string;
  home: string;
  passwordFile: string;
  /** Runs the CLI with --home and the password file's env already set. */
  tp(args: readonly string[], options?: RunOptions): Promise<RunResult>;
  file(name: string, content: string | Uint8Array, mode?: number): string;
}

/**
 * The initialised home that newHome() copies: `init` (the real CLI, at the KDF floor) runs once per
 * test run (test/helpers/global_setup.ts, named by TP_TEST_TEMPLATE_HOME), or else once per test
 * process, instead of once per test: a CLI start and an Argon2id derivation were the largest share
 * of many tests' set-up (on Deno the derivation alone is about a third of a second). Copies share
 * the vault's key and salt: a test that needs two unrelated vaults asks for `fresh`.
 */
export const TEMPLATE_ENV = 'TP_TEST_TEMPLATE_HOME';

let _template: Promise<string> | undefined;

const INIT_FLOOR = ['init', '--kdf-memory-mib', '19', '--kdf-iterations', '2'];

/** Runs `init` on a new home in a new temporary directory; returns the home. */
export async function initTemplateHome(): Promise<string> {
  const dir = mkdtempSync(path.join(tmpdir(), 'tp-template-'));
  const home = path.join(dir, 'home');
  const passwordFile = path.join(dir, 'password');
  writeFileSync(passwordFile, PASSWORD + '\n', { mode: 0o600 });
  const r = await run(['--home', home, ...INIT_FLOOR, '--password-file', passwordFile]);
  if (r.code !== 0) throw new Error(`init failed: ${r.stderr}`);
  return home;
}

function _templateHome(): Promise<string> {
  const shared = process.env[TEMPLATE_ENV];
  _template ??= shared !== undefined && shared !== '' && existsSync(shared)
    ? Promise.resolve(shared)
    : initTemplateHome();
  return _template;
}

/**
 * The team store as a dimension of the suites (#19): with TP_TEST_STORE=postgres every home
 * newHome() initialises is a working copy of its own database on the run's one PostgreSQL
 * (test/helpers/global_setup.ts), and every CLI and serve run on that home gets
 * TRUST_PROTOCOL_STORE. Homes made with `init: false` stay file homes.
 */
export const STORE_MODE = process.env.TP_TEST_STORE === 'postgres';
/** Set by the global set-up in the store dimension: the template home's database. */
export const TEMPLATE_STORE_ENV = 'TP_TEST_TEMPLATE_STORE';
const _stores = new Map<string, string>();

/** The store of the home named by the last `--home` in `args`, as an environment to add. */
export function storeEnv(args: readonly string[]): Record<string, string> {
  if (!STORE_MODE) return {};
  const dash = args.indexOf('--');
  const own = dash < 0 ? args : args.slice(0, dash);
  const at = own.lastIndexOf('--home');
  const store = at < 0 ? undefined : _stores.get(own[at + 1] ?? '');
  return store === undefined ? {} : { TRUST_PROTOCOL_STORE: store };
}

/** The database of a home in the store dimension (undefined: a file home). */
export function storeOf(home: string): string | undefined {
  return _stores.get(home);
}

export async function newHome(
  options: { init?: boolean; fresh?: boolean } = {},
): Promise<TestHome> {
  const t = await _newHome(options);
  if (!STORE_MODE || options.init === false) return t;
  if (options.fresh === true) {
    const url = sharedPostgres().database();
    const r = await t.tp(['store', 'migrate', '--to', url, '--password-file', t.passwordFile]);
    if (r.code !== 0) throw new Error(`store migrate failed: ${r.stderr}`);
    _stores.set(t.home, url);
  } else {
    _stores.set(t.home, sharedPostgres().database(process.env[TEMPLATE_STORE_ENV]));
  }
  return t;
}

async function _newHome(
  options: { init?: boolean; fresh?: boolean },
): Promise<TestHome> {
  const dir = mkdtempSync(path.join(tmpdir(), 'tp-test-'));
  const home = path.join(dir, 'home');
  const passwordFile = path.join(dir, 'password');
  writeFileSync(passwordFile, PASSWORD + '\n', { mode: 0o600 });
  const t: TestHome = {
    dir,
    home,
    passwordFile,
    tp: (args, o = {}) => run(['--home', home, ...args], o),
    file(name, content, mode = 0o600) {
      const p = path.join(dir, name);
      writeFileSync(p, content, { mode });
      chmodSync(p, mode);
      return p;
    },
  };
  if (options.init === false) return t;
  if (options.fresh === true) {
    const r = await t.tp([...INIT_FLOOR, '--password-file', passwordFile]);
    if (r.code !== 0) throw new Error(`init failed: ${r.stderr}`);
    return t;
  }
  // A copy of what `init` wrote, modes and all (the home is 0700, its files 0600).
  cpSync(await _templateHome(), home, { recursive: true });
  chmodSync(home, 0o700);
  return t;
}

/**
 * A home that `build` sets up once per test process (the real CLI, on a home from newHome()),
 * copied afresh for each call with what `build` returned (agent ids and tokens): for a set-up
 * many tests of a file share, which each test may then change in its own copy. Copies share the
 * vault's keys (newHome).
 */
export function sharedHome<T>(
  build: (t: TestHome) => Promise<T>,
): () => Promise<{ t: TestHome; value: T }> {
  let template: Promise<{ t: TestHome; value: T }> | undefined;
  return async () => {
    template ??= newHome().then(async (t) => ({ t, value: await build(t) }));
    const source = await template;
    const t = await newHome({ init: false });
    cpSync(source.t.home, t.home, { recursive: true });
    chmodSync(t.home, 0o700);
    const store = storeOf(source.t.home);
    if (store !== undefined) _stores.set(t.home, sharedPostgres().database(store));
    // Default agent names go on from the template's (bot, bot2...): names are unique in a home.
    _agentsMade.set(t, _agentsMade.get(source.t) ?? 0);
    return { t, value: source.value };
  };
}

/** Adds a credential with a value given on stdin; returns the CLI result. */
export function addCredential(
  t: TestHome,
  name: string,
  value: string,
  flags: readonly string[],
): Promise<RunResult> {
  return t.tp(['credential', 'add', name, ...flags, '--password-file', t.passwordFile], {
    input: value,
  });
}

/** Registers an agent, grants it credentials (promoting first if needed) and returns id and token. */
const _agentsMade = new WeakMap<TestHome, number>();

/** Agent names are unique in a home: bot, bot2, bot3... */
function _defaultName(t: TestHome): string {
  const n = (_agentsMade.get(t) ?? 0) + 1;
  _agentsMade.set(t, n);
  return n === 1 ? 'bot' : `bot${n}`;
}

/**
 * `admin add NAME --role ROLE [--org ORG]` by the home's owner, the new admin's password in a file
 * of its own; returns that file.
 */
export async function addAdmin(
  t: TestHome,
  name: string,
  role: string,
  options: { org?: string } = {},
): Promise<string> {
  const passwordFile = t.file(`pw-${name}`, `password of ${name} ${Math.random()}\n`);
  const r = await t.tp([
    'admin',
    'add',
    name,
    '--role',
    role,
    ...(options.org === undefined ? [] : ['--org', options.org]),
    '--new-password-file',
    passwordFile,
    '--password-file',
    t.passwordFile,
  ]);
  if (r.code !== 0 || r.stderr !== '') throw new Error(`admin add failed (${r.code}): ${r.stderr}`);
  return passwordFile;
}

export async function newAgent(
  t: TestHome,
  options: { name?: string; tier?: string; grants?: readonly string[] } = {},
): Promise<{ id: string; token: string }> {
  const reg = await t.tp([
    '--json',
    'agent',
    'register',
    options.name ?? _defaultName(t),
    '--tier',
    options.tier ?? 'COMPANION',
    '--password-file',
    t.passwordFile,
  ]);
  if (reg.code !== 0) throw new Error(`register failed: ${reg.stderr}`);
  const { id, token } = JSON.parse(reg.stdout) as { id: string; token: string };
  if ((options.grants ?? []).length > 0) {
    const g = await t.tp([
      'agent',
      'grant',
      id,
      ...(options.grants ?? []),
      '--password-file',
      t.passwordFile,
    ]);
    if (g.code !== 0) throw new Error(`grant failed: ${g.stderr}`);
  }
  return { id, token };
}
