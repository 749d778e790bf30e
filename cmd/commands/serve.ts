/** `serve`: a short-lived local proxy holding the unsealed vault (SPEC §8). */
import * as path from 'node:path';
import v8 from 'node:v8';
import { checkEnvironment } from '../../src/broker.ts';
import { formatRate, parseRate } from '../../src/credentials.ts';
import type { SendOptions } from '../../src/http/client.ts';
import { parseListen, SOCKET_NAME, type TcpAddress } from '../../src/serve/address.ts';
import { formatDuration, parseDuration } from '../../src/serve/duration.ts';
import { startServe, type StopReason } from '../../src/serve/serve.ts';
import { loadVault, unseal, type VaultKeys, wipeKeys } from '../../src/vault.ts';
import { verifyConfig } from '../../src/config.ts';
import { applyConfig, caTextBytes } from './config.ts';
import pkg from '../../package.json' with { type: 'json' };
import { usage } from '../../src/errors.ts';
import { type Command, type Ctx, existingHome, PASSWORD_FILE_OPTION, str } from '../context.ts';
import { write } from '../io.ts';
import { noteIgnoredCaVariables, sendOptions } from '../send_options.ts';
import { readPassword } from '../secrets.ts';
import { dropPrivileges, lookupGroup, lookupUser } from '../privileges.ts';

const HOUR = 3_600_000;
const MAX_TTL_MS = 24 * HOUR;

interface _Flags {
  listen: TcpAddress | null;
  socket: string | null;
  socketGroup: number | null;
  ttlMs: number;
  idleMs: number;
  agentRate: string | null;
  sendOptions: SendOptions;
}

/** Every flag is checked before the password is asked for. */
function _flags(ctx: Ctx): _Flags {
  const listen = str(ctx, 'listen');
  const socket = str(ctx, 'socket');
  const rate = str(ctx, 'agent-rate');
  const group = str(ctx, 'socket-group');
  return {
    listen: listen === undefined ? null : parseListen(listen),
    socket: socket === undefined ? null : path.resolve(socket),
    socketGroup: group === undefined ? null : lookupGroup(group),
    ttlMs: parseDuration(str(ctx, 'ttl') ?? '8h', '--ttl', MAX_TTL_MS),
    idleMs: parseDuration(str(ctx, 'idle') ?? '30m', '--idle', MAX_TTL_MS),
    agentRate: rate === undefined ? null : formatRate(parseRate(rate)),
    sendOptions: sendOptions(ctx),
  };
}

const STOPPED: Record<StopReason, string> = {
  ttl: 'its time to live ran out',
  idle: 'it was idle',
  signal: 'it was asked to stop',
};

const serve: Command = {
  words: ['serve'],
  summary: 'run a short-lived local proxy that holds the unsealed vault (loopback only)',
  usage:
    'serve [--listen 127.0.0.1:PORT] [--socket PATH] [--socket-group GROUP] [--user NAME] [--ttl 8h] [--idle 30m] [--agent-rate N/PERIOD] [--cacert FILE] [--connect-to H:P:A:P]...',
  help: `Unseals the vault once, then answers on a 0600 unix socket (default HOME/serve.sock, where
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
Prints where it listens and when it exits on stderr (with --json: one JSON line on stdout).`,
  options: {
    ...PASSWORD_FILE_OPTION,
    listen: { type: 'string' },
    socket: { type: 'string' },
    'socket-group': { type: 'string' },
    user: { type: 'string' },
    ttl: { type: 'string' },
    idle: { type: 'string' },
    'agent-rate': { type: 'string' },
    cacert: { type: 'string' },
    'connect-to': { type: 'string', multiple: true },
    timeout: { type: 'string' },
    'max-response-bytes': { type: 'string' },
  },
  args: { min: 0, max: 0 },
  async run(ctx) {
    const user = str(ctx, 'user');
    if (user !== undefined) {
      if (ctx.values.home === undefined && !ctx.io.env.TRUST_PROTOCOL_HOME) {
        throw usage(
          'user_needs_home',
          "serve --user needs the service user's state directory",
          `pass --home DIR, e.g. --home /var/lib/trust-protocol`,
        );
      }
      dropPrivileges(lookupUser(user));
    }
    // HOME/config.json fills the flags not given (read as the service user: it owns the home).
    const config = applyConfig(ctx);
    const flags = _flags(ctx);
    // serve's own environment, not an agent's, is checked for the requests it sends.
    checkEnvironment(ctx.io.env);
    noteIgnoredCaVariables(ctx);
    const home = existingHome(ctx);
    const file = loadVault(home);
    const password = await readPassword(ctx.io, { passwordFile: str(ctx, 'password-file') });
    let keys: VaultKeys;
    try {
      keys = unseal(file, password);
    } finally {
      password.fill(0);
    }
    if (config !== null) {
      // Nothing from config.json has been used yet; it is from here on, once its seal checks.
      try {
        const ca = config.applied.includes('cacert') && flags.sendOptions.ca !== undefined
          ? caTextBytes(flags.sendOptions.ca)
          : null;
        verifyConfig(config.config, keys, ca);
      } catch (e) {
        wipeKeys(keys);
        throw e;
      }
    }
    // A long-lived process: V8's memory-saving mode keeps serve's resident set about a third
    // smaller under load, for about a fifth of its throughput (docs/decisions.md).
    v8.setFlagsFromString('--optimize-for-size');
    const handle = await startServe({
      home,
      keys,
      env: ctx.io.env,
      listen: flags.listen,
      socket: flags.socket ?? path.join(home.dir, SOCKET_NAME),
      socketGroup: flags.socketGroup,
      ttlMs: flags.ttlMs,
      idleMs: flags.idleMs,
      sendOptions: flags.sendOptions,
      agentRate: flags.agentRate,
      version: pkg.version,
      now: ctx.now,
    });
    const onSignal = () => void handle.stop('signal');
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    try {
      await _announce(ctx, handle, flags);
      const stopped = await handle.stopped;
      if (stopped.auditError !== null) throw stopped.auditError;
      if (!ctx.json && !ctx.quiet) {
        ctx.io.stderr.write(
          `trust-protocol: serve stopped (${STOPPED[stopped.reason]}); its keys are wiped\n`,
        );
      }
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      await handle.stop('signal');
    }
    return { json: undefined, text: '' };
  },
};

async function _announce(
  ctx: Ctx,
  handle: Awaited<ReturnType<typeof startServe>>,
  flags: _Flags,
): Promise<void> {
  if (ctx.json) {
    await write(
      ctx.io.stdout,
      JSON.stringify({
        pid: process.pid,
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
