/**
 * serve's keeper as a command: `serve-keeper`, an internal word (not in the help) that serve
 * starts as its child with the frame pipe on stdin and stdout (src/serve/keeper.ts). It unseals,
 * and serves the front's requests until the front says stop or goes away. Also how the front
 * finds the program to start: the binary itself, or the runtime with cmd/main.ts.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { checkEnvironment } from '../src/broker.ts';
import { usage } from '../src/errors.ts';
import { type KeeperLink, keeperLink } from '../src/serve/keeper.ts';
import { openState } from '../src/state.ts';
import { unseal, type VaultKeys, wipeKeys } from '../src/vault.ts';
import { verifyConfig } from '../src/config.ts';
import { applyConfig, caTextBytes } from './commands/config.ts';
import pkg from '../package.json' with { type: 'json' };
import { adminName, type Command, type Ctx, type Output, str } from './context.ts';
import { openStoreSync, STORE_ENV } from './store_sync.ts';
import type { StoreSync } from '../src/store/sync.ts';
import { existingHome } from './home_state.ts';
import { asTpError, EXIT } from './exit.ts';
import { dropPrivileges, lookupUser } from './privileges.ts';
import { PASSWORD_ENV, readPassword } from './secrets.ts';
import { SERVE_OPTIONS, serveFlags } from './serve_flags.ts';

export const KEEPER_WORD = 'serve-keeper';
/** The team store and the client's own settings (the password never goes on a command line). */
const STORE_KEPT_ENV = [STORE_ENV, 'PGPASSWORD', 'PGPASSFILE', 'PGSSLMODE', 'PGSSLROOTCERT'];
/** Set in the keeper's environment by the front; the keeper refuses to run without it. */
const KEEPER_ENV = 'TRUST_PROTOCOL_KEEPER';
/** What the keeper inherits of the front's environment (nothing else: no NODE_OPTIONS). */
const KEPT_ENV = [
  'PATH',
  'HOME',
  'LANG',
  'LC_ALL',
  'TZ',
  'TMPDIR',
  'DENO_DIR',
  'DENO_NO_UPDATE_CHECK',
  'NO_COLOR',
];

/**
 * Starts the keeper: the same program with the internal word. `args` are the serve flags it
 * needs (never a secret: the password travels in a file path, the environment or a frame).
 */
export function spawnKeeper(
  args: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): ChildProcess {
  const childEnv: Record<string, string> = { [KEEPER_ENV]: '1' };
  for (const name of [...KEPT_ENV, ...STORE_KEPT_ENV, PASSWORD_ENV, 'TRUST_PROTOCOL_DEBUG']) {
    const value = env[name];
    if (value !== undefined) childEnv[name] = value;
  }
  const [file, ...prefix] = _self();
  return spawn(file as string, [...prefix, KEEPER_WORD, ...args], {
    env: childEnv,
    // stdin and stdout carry the frames; the keeper's messages go to the shared stderr.
    stdio: ['pipe', 'pipe', 'inherit'],
  });
}

/** [program, ...arguments before the command words] that run this same CLI again. */
function _self(): string[] {
  const deno = (globalThis as { Deno?: { execPath(): string; mainModule: string } }).Deno;
  if (typeof deno === 'object') {
    return [deno.execPath(), 'run', '-A', '--quiet', fileURLToPath(deno.mainModule)];
  }
  // The single-executable binary runs its embedded bundle: no script path to pass.
  const sea = process.getBuiltinModule?.('node:sea') as { isSea?: () => boolean } | undefined;
  if (sea?.isSea?.() === true) return [process.execPath];
  return [process.execPath, ...keeperFlags(process.execArgv), process.argv[1] as string];
}

/** The front's Node flags the keeper may share: profiling and heap sizes. */
const SHARED_FLAGS = new Set([
  '--cpu-prof',
  '--cpu-prof-dir',
  '--cpu-prof-name',
  '--cpu-prof-interval',
  '--heap-prof',
  '--heap-prof-dir',
  '--heap-prof-name',
  '--heap-prof-interval',
  '--max-old-space-size',
  '--max-semi-space-size',
]);

/**
 * Of the front's command-line Node flags (never NODE_OPTIONS, which Node keeps out of execArgv
 * and the keeper's environment drops), those it shares: `node --cpu-prof cmd/main.ts serve`
 * profiles the keeper too. Nothing else: an inspector (--inspect, a debugging port into the
 * process that holds the keys) or a flag that loads code (--require, --import) stays the front's.
 */
export function keeperFlags(execArgv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const flag = execArgv[i] as string;
    const name = flag.split('=')[0] as string;
    if (!SHARED_FLAGS.has(name)) continue;
    out.push(flag);
    // `--cpu-prof-dir DIR`: the value is the next word.
    const separate = !flag.includes('=') && name !== '--cpu-prof' && name !== '--heap-prof';
    if (separate) out.push(execArgv[++i] as string);
  }
  return out;
}

/** The frame pipe: stdin and stdout are pipes (or socket pairs), and the front marked us. */
function _hasPipe(env: Readonly<Record<string, string | undefined>>): boolean {
  if (env[KEEPER_ENV] !== '1') return false;
  try {
    return [0, 1].every((fd) => {
      const st = fs.fstatSync(fd);
      return st.isFIFO() || st.isSocket();
    });
  } catch {
    return false;
  }
}

const keeper: Command = {
  words: [KEEPER_WORD],
  hidden: true,
  ownsStore: true,
  summary: "serve's key-holding child (internal: serve starts it)",
  usage: `${KEEPER_WORD} (internal)`,
  options: SERVE_OPTIONS,
  examples: [],
  args: { min: 0, max: 0 },
  async run(ctx) {
    if (!_hasPipe(ctx.io.env)) {
      throw usage(
        'internal_command',
        `${KEEPER_WORD} is started by serve itself, with its frame pipe`,
        'run `trust-protocol serve`',
      );
    }
    // A Ctrl-C reaches the whole process group: the front decides, and tells us.
    process.on('SIGINT', () => {});
    const link = keeperLink({ input: process.stdin, output: process.stdout });
    process.on('SIGTERM', () => link.stop('signal'));
    const user = str(ctx, 'user');
    // First thing, before reading anything: the uid change also clears our dumpable flag (the
    // front dropping would not: an execve after it would make this process dumpable again).
    if (user !== undefined) dropPrivileges(lookupUser(user));
    // HOME/config.json fills the flags not given; its seal is checked once unsealed (below).
    const config = applyConfig(ctx);
    const flags = serveFlags(ctx);
    checkEnvironment(ctx.io.env);
    // The team store, opened as the service user (after the drop above).
    const sync = await openStoreSync(ctx);
    try {
      return await _serve(ctx, link, config, flags, sync);
    } finally {
      await sync?.close();
    }
  },
};

async function _serve(
  ctx: Ctx,
  link: KeeperLink,
  config: ReturnType<typeof applyConfig>,
  flags: ReturnType<typeof serveFlags>,
  sync: StoreSync | null,
): Promise<Output> {
  const home = existingHome(ctx);
  const file = openState(home, { sync }).vault.read();
  const password = await _password(ctx, link);
  // The front could not prompt (it says why) or is gone: nothing to add.
  if (password === null) return { json: undefined, text: '', exitCode: EXIT.sealed };
  let keys: VaultKeys;
  try {
    keys = unseal(file, password, { admin: adminName(ctx) });
  } finally {
    password.fill(0);
  }
  const settings: Record<string, string | string[]> = {};
  if (config !== null) {
    // Nothing from config.json has been used yet; it is from here on, once its seal checks.
    try {
      const ca = config.applied.includes('cacert') && flags.sendOptions.ca !== undefined
        ? caTextBytes(flags.sendOptions.ca)
        : null;
      const verified = verifyConfig(config.config, keys, ca);
      for (const key of config.applied) {
        const value = verified.serve[key as keyof typeof verified.serve];
        if (value !== undefined) settings[key] = value;
      }
    } catch (e) {
      wipeKeys(keys);
      throw e;
    }
  }
  // Not V8's memory-saving mode (the front keeps it): in the keeper, which does the
  // per-request work, it cost more throughput than the memory it saved (docs/decisions.md).
  const stopped = await link.serve({
    home,
    keys,
    env: ctx.io.env,
    ttlMs: flags.ttlMs,
    idleMs: flags.idleMs,
    sendOptions: flags.sendOptions,
    agentRate: flags.agentRate,
    version: pkg.version,
    now: ctx.now,
    sync,
    onStoreError: (e) => {
      ctx.io.stderr.write(`trust-protocol: the team store: ${asTpError(e).message}\n`);
    },
  }, settings);
  // The front reports a stop that could not be audited; the exit code says it too.
  return {
    json: undefined,
    text: '',
    exitCode: stopped.auditError === null ? EXIT.ok : EXIT[stopped.auditError.kind],
  };
}

async function _password(ctx: Ctx, link: KeeperLink): Promise<Uint8Array | null> {
  const passwordFile = str(ctx, 'password-file');
  if (passwordFile !== undefined || ctx.io.env[PASSWORD_ENV] !== undefined) {
    return await readPassword(ctx.io, { passwordFile });
  }
  const password = await link.password();
  return password.length === 0 ? null : password;
}

export const keeperCommands: Command[] = [keeper];
