/**
 * A real PostgreSQL for the team store's tests (#19): one server per test file, run as an
 * unprivileged user (PostgreSQL refuses root) in a temporary directory it owns, listening on a unix
 * socket in that directory only, torn down after. Each test takes its own database.
 *
 * The binaries are Debian's (`make tools`), in /usr/lib/postgresql/<version>/bin, which is not on
 * PATH: found by listing that directory. Without them `findPostgres()` returns null and the caller
 * skips its tests with a warning that says why.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { missingTool } from './tools.ts';

export interface Postgres {
  /** The directory holding the socket (and the data directory). */
  dir: string;
  user: string;
  /** A new, empty database (or a copy of `template`'s); its connection URL over the socket. */
  database(template?: string): string;
  /** Runs SQL as the database owner (a test tampering with rows, or checking them). */
  sql(url: string, statement: string): Promise<unknown[]>;
  stop(): void;
  /** Stops the server at once (as a crash would); `start()` brings it back on the same socket. */
  kill(): void;
  start(): void;
}

const ROOT = '/usr/lib/postgresql';

/** The newest installed PostgreSQL's bin directory, or null with the reason it was not found. */
export function findPostgres(): { bin: string } | { bin: null; why: string } {
  let versions: string[] = [];
  try {
    versions = readdirSync(ROOT).filter((v) => /^\d+$/.test(v)).sort((a, b) => +b - +a);
  } catch {
    return { bin: null, why: `${ROOT} does not exist (run \`make tools\`)` };
  }
  for (const v of versions) {
    const bin = path.join(ROOT, v, 'bin');
    if (existsSync(path.join(bin, 'initdb')) && existsSync(path.join(bin, 'pg_ctl'))) {
      return { bin };
    }
  }
  return { bin: null, why: `no initdb/pg_ctl under ${ROOT}/<version>/bin (run \`make tools\`)` };
}

/** The user the server runs as: `nobody` when we are root, else ourselves. */
function _user(): { name: string; asUser: (argv: string[]) => [string, string[]] } {
  const uid = process.getuid?.() ?? -1;
  if (uid !== 0) {
    const name = execFileSync('id', ['-un']).toString().trim();
    return { name, asUser: (argv) => [argv[0]!, argv.slice(1)] };
  }
  return { name: 'nobody', asUser: (argv) => ['runuser', ['-u', 'nobody', '--', ...argv]] };
}

let _counter = 0;

/**
 * `password`: the server asks for it (scram-sha-256 on the socket too) instead of trusting the
 * socket's user; the helper's own commands pass it in PGPASSWORD.
 */
export function startPostgres(bin: string, options: { password?: string } = {}): Postgres {
  const { name, asUser } = _user();
  // /tmp/tp-pg-XXXXXX: short, as a unix socket path must stay under 108 bytes.
  const dir = mkdtempSync(path.join(tmpdir(), 'tp-pg-'));
  const data = path.join(dir, 'data');
  if (process.getuid?.() === 0) {
    const uid = Number(execFileSync('id', ['-u', name]).toString().trim());
    const gid = Number(execFileSync('id', ['-g', name]).toString().trim());
    chownSync(dir, uid, gid);
  }
  chmodSync(dir, 0o700);
  const pwEnv = options.password === undefined
    ? process.env
    : { ...process.env, PGPASSWORD: options.password };
  const exec = (argv: string[]) => {
    const [file, args] = asUser(argv);
    const r = spawnSync(file, args, { cwd: dir, encoding: 'utf8', env: pwEnv });
    if (r.status !== 0) {
      throw new Error(`${argv[0]} failed (${r.status}): ${r.stderr}${r.stdout}`);
    }
  };
  exec([
    path.join(bin, 'initdb'),
    '-D',
    data,
    '-U',
    name,
    ...(options.password === undefined
      ? ['--auth=trust']
      : ['--auth=scram-sha-256', `--pwfile=${_pwfile(dir, options.password)}`]),
    '--no-sync',
    '-E',
    'UTF8',
    '--locale=C',
  ]);
  rmSync(path.join(dir, 'pwfile'), { force: true });
  const start = () =>
    exec([
      path.join(bin, 'pg_ctl'),
      '-D',
      data,
      '-w',
      '-s',
      '-l',
      path.join(dir, 'log'),
      '-o',
      `-c listen_addresses='' -c unix_socket_directories='${dir}' -c fsync=off -c max_connections=40`,
      'start',
    ]);
  const stopWith = (mode: string) => {
    try {
      exec([path.join(bin, 'pg_ctl'), '-D', data, '-s', '-m', mode, 'stop']);
    } catch {
      // Already stopped.
    }
  };
  start();
  return {
    dir,
    user: name,
    ..._databases(bin, dir, name, exec, options.password),
    stop() {
      stopWith('immediate');
      rmSync(dir, { recursive: true, force: true });
    },
    kill: () => stopWith('immediate'),
    start,
  };
}

/**
 * For a test file: `const pg = usePostgres(); describe.skipIf(!pg.available)(...)`, with
 * `beforeAll(pg.setup)` and `afterAll(pg.teardown)`. Missing binaries: test/helpers/tools.ts.
 */
export function usePostgres(options: { password?: string } = {}): {
  available: boolean;
  setup: () => void;
  teardown: () => void;
  get: () => Postgres;
} {
  const found = findPostgres();
  if (found.bin === null) missingTool('the PostgreSQL tests', found.why);
  let server: Postgres | null = null;
  return {
    available: found.bin !== null,
    setup: () => {
      if (found.bin !== null) server = startPostgres(found.bin, options);
    },
    teardown: () => server?.stop(),
    get: () => {
      if (server === null) throw new Error('PostgreSQL was not started');
      return server;
    },
  };
}

function _databases(
  bin: string,
  dir: string,
  name: string,
  exec: (argv: string[]) => void,
  password?: string,
): Pick<Postgres, 'database' | 'sql'> {
  return {
    database(template) {
      const db = `t${process.pid}_${++_counter}`;
      const from = template === undefined ? [] : ['-T', /\/([^/?]+)\?/.exec(template)![1]!];
      exec([path.join(bin, 'createdb'), '-h', dir, '-U', name, ...from, db]);
      return `postgres://${name}@/${db}?host=${encodeURIComponent(dir)}`;
    },
    async sql(url, statement) {
      const { default: postgres } = await import('postgres');
      const client = postgres(url, {
        max: 1,
        onnotice: () => {},
        ...(password === undefined ? {} : { password }),
      });
      try {
        return [...await client.unsafe(statement)];
      } finally {
        await client.end({ timeout: 1 });
      }
    },
  };
}

/** Set by test/helpers/global_setup.ts for the store dimension: the run's one server. */
export const SHARED_PG_ENV = 'TP_TEST_PG';

/** The server the global set-up started (the store dimension), from a test worker. */
export function sharedPostgres(): Pick<Postgres, 'database' | 'sql'> {
  const info = JSON.parse(process.env[SHARED_PG_ENV] ?? 'null') as
    | { bin: string; dir: string; user: string }
    | null;
  if (info === null) throw new Error(`${SHARED_PG_ENV} is not set: the global set-up did not run`);
  const { asUser } = _user();
  const exec = (argv: string[]) => {
    const [file, args] = asUser(argv);
    const r = spawnSync(file, args, { cwd: info.dir, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${argv[0]} failed (${r.status}): ${r.stderr}${r.stdout}`);
  };
  return _databases(info.bin, info.dir, info.user, exec);
}

/** The initial superuser's password for initdb, in a file the server's user can read, then gone. */
function _pwfile(dir: string, password: string): string {
  const file = path.join(dir, 'pwfile');
  writeFileSync(file, password + '\n', { mode: 0o644 });
  return file;
}
