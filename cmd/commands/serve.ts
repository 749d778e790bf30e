/** `serve`: a short-lived local proxy holding the unsealed vault (SPEC §8). */
import { STORE_ENV, storeUrl } from '../store_sync.ts';
import * as path from 'node:path';
import v8 from 'node:v8';
import { checkEnvironment } from '../../src/broker.ts';
import { SOCKET_NAME } from '../../src/serve/address.ts';
import { formatDuration } from '../../src/serve/duration.ts';
import { type Ready, startFront } from '../../src/serve/front.ts';
import type { StopReason } from '../../src/serve/serve.ts';
import { TpError, usage } from '../../src/errors.ts';
import { type Command, type Ctx, str } from '../context.ts';
import { SERVE_OPTIONS, type ServeFlags, serveFlags } from '../serve_flags.ts';
import { EXIT } from '../exit.ts';
import { write } from '../io.ts';
import { spawnKeeper } from '../keeper.ts';
import { noteIgnoredCaVariables } from '../send_options.ts';
import { readPassword } from '../secrets.ts';
import { checkCanDrop, dropPrivileges, lookupUser } from '../privileges.ts';
import { followReport, shipper } from '../ship.ts';
import type { Shipper } from '../../src/ship/shipper.ts';

const STOPPED: Record<StopReason, string> = {
  ttl: 'its time to live ran out',
  idle: 'it was idle',
  signal: 'it was asked to stop',
  front: 'it was asked to stop',
};

const HELP =
  `Unseals the vault once, then answers on a 0600 unix socket (default HOME/serve.sock, where
exec finds it) and, with --listen, on a loopback TCP address (127.0.0.0/8, [::1] or localhost;
port 0 picks a free one). Exits and wipes its keys after --ttl (default 8h, at most 24h), after
--idle without requests (default 30m), or on SIGINT/SIGTERM.
Endpoints: GET /v1/health, POST /v1/proxy (a template; Authorization: Bearer AGENT_TOKEN),
ANY /v1/gateway/CRED/PATH (the credential's --base-url + PATH with its --inject header; the
agent token in Authorization: Bearer, x-api-key, api-key or x-goog-api-key), GET /v1/openapi.json.
Durations: 90s, 30m, 8h, 1h30m. --agent-rate N/PERIOD limits each agent (e.g. 60/m).
A dedicated user (README): started by root with --user NAME, serve becomes that user before it
reads anything (and cannot be traced or read by other users afterwards); --socket-group GROUP
makes the socket 0660 for that group, the agents' (e.g. --socket /run/trust-protocol/serve.sock,
where exec looks by itself).
The keys live in a child process (the keeper); the process that parses HTTP never holds them.
Prints where it listens and when it exits on stderr (with --json: one JSON line on stdout).`;

const serve: Command = {
  words: ['serve'],
  summary: 'run a short-lived local proxy that holds the unsealed vault (loopback only)',
  usage:
    'serve [--listen 127.0.0.1:PORT] [--socket PATH] [--socket-group GROUP] [--user NAME] [--ttl 8h] [--idle 30m] [--agent-rate N/PERIOD] [--cacert FILE] [--connect-to H:P:A:P]... [--ship URL]',
  help: HELP,
  options: SERVE_OPTIONS,
  examples: [
    'trust-protocol serve',
    'trust-protocol serve --listen 127.0.0.1:8750 --ttl 2h --agent-rate 60/m',
  ],
  args: { min: 0, max: 0 },
  async run(ctx) {
    let flags = serveFlags(ctx);
    const user = str(ctx, 'user');
    const account = user === undefined ? null : lookupUser(user);
    if (account !== null) {
      if (ctx.values.home === undefined && !ctx.io.env.TRUST_PROTOCOL_HOME) {
        throw usage(
          'user_needs_home',
          "serve --user needs the service user's state directory",
          `pass --home DIR, e.g. --home /var/lib/trust-protocol`,
        );
      }
      checkCanDrop(account);
    }
    // serve's own environment, not an agent's, is checked for the requests it sends.
    checkEnvironment(ctx.io.env);
    // Checked before the password is asked for: a wrong URL or token file stops serve here.
    const toShip = _shipper(ctx);
    noteIgnoredCaVariables(ctx);
    // The keeper holds the keys; this process (the front) only ever parses HTTP. With --user it
    // is started before the front drops, and drops by itself first thing.
    const store = storeUrl(ctx);
    const child = spawnKeeper(
      _keeperArgs(ctx),
      store === null ? ctx.io.env : { ...ctx.io.env, [STORE_ENV]: store },
    );
    const exited = new Promise<number>((resolve) => {
      child.once('exit', (code, signal) => resolve(code ?? (signal === 'SIGKILL' ? 137 : 70)));
      child.once('error', () => resolve(EXIT.internal));
    });
    let promptError: unknown = null;
    const front = startFront({ input: child.stdout!, output: child.stdin! }, {
      password: () => readPassword(ctx.io, {}),
      passwordFailed: (e) => (promptError = e),
    });
    if (account !== null) dropPrivileges(account);
    if (!(await front.unsealed)) {
      const code = await exited;
      if (promptError !== null) throw promptError;
      // The keeper's own error is on stderr already: exit as it did.
      return { json: undefined, text: '', exitCode: code === 0 ? EXIT.internal : code };
    }
    // HOME/config.json's settings for the flags not given, as the keeper verified them.
    const settings = Object.entries(front.settings());
    if (settings.length > 0) {
      for (const [key, value] of settings) ctx.values[key] ??= value;
      flags = serveFlags(ctx);
    }
    // A long-lived process: V8's memory-saving mode keeps the resident set smaller
    // (docs/decisions.md).
    v8.setFlagsFromString('--optimize-for-size');
    const socket = flags.socket ?? path.join(ctx.homeDir, SOCKET_NAME);
    let ready: Ready;
    try {
      ready = await front.listen({ listen: flags.listen, socket, socketGroup: flags.socketGroup });
    } catch (e) {
      front.stop('signal');
      const code = await exited;
      if (e instanceof TpError && e.code === 'keeper_gone') {
        return { json: undefined, text: '', exitCode: code === 0 ? EXIT.internal : code };
      }
      throw e;
    }
    const onSignal = () => front.stop('signal');
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    // Shipping runs here, in the front, which holds no key (none is needed: entries go out as
    // written, MACs included), on its own loop reading the log file: never in a request's path.
    const shipping = new AbortController();
    void toShip?.follow(shipping.signal, followReport(ctx));
    try {
      await _announce(ctx, { ...ready, socket }, flags);
      const stopped = await front.stopped;
      if (stopped === null) {
        const code = await exited;
        // Fail closed: without its keeper serve holds no keys, so it stops (exit 3, sealed).
        throw new TpError(
          'sealed',
          'keeper_gone',
          `serve's keeper exited unexpectedly (${_exitOf(code)}); serve stopped listening`,
          { hint: 'see its message above, if any; start serve again' },
        );
      }
      if (stopped.error !== null) throw stopped.error;
      if (!ctx.json && !ctx.quiet) {
        ctx.io.stderr.write(
          `trust-protocol: serve stopped (${STOPPED[stopped.reason]}); its keys are wiped\n`,
        );
      }
    } finally {
      // A delivery in flight is not waited for: unaccepted, it is sent again by the next shipper.
      shipping.abort();
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      front.stop('signal');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000).unref())]);
    }
    return { json: undefined, text: '' };
  },
};

/** `--ship URL` as a shipper of the home's log, or null without it. */
function _shipper(ctx: Ctx): Shipper | null {
  const to = str(ctx, 'ship');
  if (to === undefined) return null;
  return shipper(ctx, { dir: path.resolve(ctx.homeDir) }, {
    to,
    cacert: str(ctx, 'ship-cacert'),
    tokenFile: str(ctx, 'ship-token-file'),
    timeout: undefined,
  });
}

function _exitOf(code: number): string {
  return code === 137 ? 'killed' : `exit ${code}`;
}

/** serve's flags as the keeper parses them again (the values, never a secret). */
function _keeperArgs(ctx: Ctx): string[] {
  const args = ['--home', path.resolve(ctx.homeDir)];
  if (ctx.json) args.push('--json');
  for (const name of Object.keys(SERVE_OPTIONS)) {
    const value = ctx.values[name];
    for (const v of Array.isArray(value) ? value : value === undefined ? [] : [value]) {
      if (typeof v === 'string') args.push(`--${name}`, v);
    }
  }
  return args;
}

async function _announce(
  ctx: Ctx,
  handle: Ready & { socket: string },
  flags: ServeFlags,
): Promise<void> {
  if (ctx.json) {
    await write(
      ctx.io.stdout,
      JSON.stringify({
        pid: process.pid,
        keeper_pid: handle.keeperPid,
        listen: handle.urls,
        socket: handle.socket,
        started_at: handle.startedAt.toISOString(),
        expires_at: handle.expiresAt.toISOString(),
        ttl_seconds: Math.round(flags.ttlMs / 1000),
        idle_seconds: Math.round(flags.idleMs / 1000),
        agent_rate: flags.agentRate,
      }) + '\n',
    );
    return;
  }
  ctx.io.stderr.write(
    `trust-protocol: serve listening on ${handle.urls.join(' and ')}\n` +
      `trust-protocol: exits at ${handle.expiresAt.toISOString()} (ttl ${
        formatDuration(flags.ttlMs)
      }), after ${formatDuration(flags.idleMs)} without requests, or on Ctrl-C\n`,
  );
}

export const serveCommands: Command[] = [serve];
