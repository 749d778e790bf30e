/**
 * A running serve: its listeners (always a unix socket, plus loopback TCP when asked), the keys it
 * unsealed at start, and the clocks that end it (TTL from start, idle time since the last request
 * ended). Stopping cuts in-flight upstream requests, closes every connection, records
 * `serve.stop`, and wipes the keys (best effort: JavaScript cannot guarantee no copy survives).
 */
import * as fs from 'node:fs';
import { connect } from 'node:net';
import { parseRate } from '../credentials.ts';
import { integrity, TpError, usage } from '../errors.ts';
import type { Home } from '../home.ts';
import { ioErrorCode } from '../home.ts';
import type { SendOptions } from '../http/client.ts';
import { followAuditLog } from '../audit.ts';
import { activeBrakes, BRAKE_EVENTS } from '../brakes.ts';
import { RedactionCache } from '../redact.ts';
import {
  hasUnknownBrakes,
  loadVault,
  recordKnownBrakes,
  VAULT_CHANGE_EVENTS,
  VAULT_SAVED_EVENTS,
  type VaultKeys,
  wipeKeys,
} from '../vault.ts';
import type { TcpAddress } from './address.ts';
import { agentRateLimiter } from './agent_rate.ts';
import { type AppendAudit, deferredHeads, type HeadRecorder, keyedAudit } from './audit.ts';
import { serveHandler } from './handler.ts';
import { ConnectionPool } from '../http/pool.ts';
import { type LiveMonitor, liveMonitor } from '../monitor/live.ts';
import { asServeError } from './http_error.ts';
import { type HttpListener, listenHttp } from './node_http.ts';

export interface ServeOptions {
  home: Home;
  /** Taken over: wiped when serve stops, or when it fails to start. */
  keys: VaultKeys;
  env: Readonly<Record<string, string | undefined>>;
  listen: TcpAddress | null;
  socket: string;
  /** The gid that may connect to the socket too (0660), or null for the owner only (0600). */
  socketGroup?: number | null;
  ttlMs: number;
  idleMs: number;
  sendOptions: SendOptions;
  /** `--agent-rate N/PERIOD`, or null for none. */
  agentRate: string | null;
  version: string;
  now?: () => Date;
}

export type StopReason = 'ttl' | 'idle' | 'signal';

export interface Stopped {
  reason: StopReason;
  /** Set when `serve.stop` could not be audited (the keys are wiped all the same). */
  auditError: TpError | null;
}

export interface ServeHandle {
  /** `http://127.0.0.1:PORT` and `unix:PATH`, in that order. */
  urls: string[];
  socket: string;
  startedAt: Date;
  expiresAt: Date;
  stop(reason: StopReason): Promise<Stopped>;
  /** Settles once serve has stopped for whatever reason. */
  stopped: Promise<Stopped>;
}

export async function startServe(options: ServeOptions): Promise<ServeHandle> {
  const now = options.now ?? (() => new Date());
  const listeners: HttpListener[] = [];
  let unfollow = () => {};
  let brakeWatch: { stop(): Promise<void> } | null = null;
  try {
    await _claimSocket(options.socket);
    const startedAt = now();
    const expiresAt = new Date(startedAt.getTime() + options.ttlMs);
    const stopping = new AbortController();
    const heads = deferredHeads(options.home, options.keys);
    // Brakes and vault changes recorded in the audit trail are checked before every request:
    // read what is new in the log, not the tail since the vault's head again each time.
    unfollow = followAuditLog(options.home, options.keys.audit, [
      BRAKE_EVENTS,
      VAULT_CHANGE_EVENTS,
      VAULT_SAVED_EVENTS,
    ]);
    // Kept-alive upstream connections, shared by every request of this serve.
    const pool = new ConnectionPool();
    const watch = _watchBrakes(options.home, options.keys);
    brakeWatch = watch;
    const monitor = await liveMonitor(options.home, options.keys, now);
    const redactions = new RedactionCache();
    const handler = serveHandler({
      home: options.home,
      env: options.env,
      keys: options.keys,
      heads,
      monitor,
      redactions,
      sendOptions: { ...options.sendOptions, pool },
      stopping: stopping.signal,
      agentRate: options.agentRate === null ? null : {
        limiter: agentRateLimiter(parseRate(options.agentRate)),
        rate: options.agentRate,
      },
      info: { version: options.version, expiresAt },
      ...(options.now ? { now: options.now } : {}),
    });
    const activity = _activity(options.idleMs, () => void stop('idle'));
    if (options.listen !== null) {
      listeners.push(
        await listenHttp(handler, { kind: 'tcp', address: options.listen }, activity),
      );
    }
    listeners.push(
      await listenHttp(handler, {
        kind: 'unix',
        path: options.socket,
        ...(options.socketGroup == null ? {} : { group: options.socketGroup }),
      }, activity),
    );
    const urls = listeners.map((l) => l.url);
    const audit = keyedAudit(options.home, options.keys, heads, options.now);
    await audit([{
      event: 'serve.start',
      actor: { type: 'operator' },
      outcome: 'ok',
      data: {
        listen: urls,
        pid: process.pid,
        ttl_seconds: Math.round(options.ttlMs / 1000),
        idle_seconds: Math.round(options.idleMs / 1000),
        expires_at: expiresAt.toISOString(),
        agent_rate: options.agentRate,
      },
    }]);
    let resolveStopped: (s: Stopped) => void = () => {};
    const stopped = new Promise<Stopped>((resolve) => (resolveStopped = resolve));
    let stopping_: Promise<Stopped> | null = null;
    const ttl = setTimeout(() => void stop('ttl'), options.ttlMs);
    const stop = (reason: StopReason): Promise<Stopped> => {
      stopping_ ??= _stop(reason, {
        ttl,
        activity,
        stopping,
        listeners,
        audit,
        heads,
        monitor,
        pool,
        unfollow,
        brakeWatch: watch,
        redactions,
        keys: options.keys,
      })
        .then((result) => {
          resolveStopped(result);
          return result;
        });
      return stopping_;
    };
    activity.start();
    return { urls, socket: options.socket, startedAt, expiresAt, stop, stopped };
  } catch (e) {
    await Promise.all(listeners.map((l) => l.close()));
    await brakeWatch?.stop();
    unfollow();
    wipeKeys(options.keys);
    throw e;
  }
}

async function _stop(
  reason: StopReason,
  parts: {
    ttl: ReturnType<typeof setTimeout>;
    activity: ReturnType<typeof _activity>;
    stopping: AbortController;
    listeners: HttpListener[];
    audit: AppendAudit;
    heads: HeadRecorder;
    monitor: LiveMonitor;
    pool: ConnectionPool;
    unfollow: () => void;
    brakeWatch: { stop(): Promise<void> };
    redactions: RedactionCache;
    keys: VaultKeys;
  },
): Promise<Stopped> {
  clearTimeout(parts.ttl);
  parts.activity.stop();
  // In-flight upstream requests are cut first, so closing the listeners does not wait on them.
  parts.stopping.abort();
  await Promise.all(parts.listeners.map((l) => l.close()));
  parts.pool.close();
  await parts.brakeWatch.stop();
  let auditError: TpError | null = null;
  try {
    await parts.monitor.stop();
    await parts.audit([{
      event: 'serve.stop',
      actor: reason === 'signal' ? { type: 'operator' } : { type: 'system' },
      outcome: 'ok',
      data: { reason, pid: process.pid, requests: parts.activity.count() },
    }]);
    await parts.heads.flush();
  } catch (e) {
    auditError = asServeError(e);
  }
  parts.unfollow();
  parts.redactions.clear();
  wipeKeys(parts.keys);
  return { reason, auditError };
}

/** How often serve looks for brakes by itself, between requests. */
const BRAKE_WATCH_MS = 1_000;

/**
 * A brake placed while no request comes is recorded in the vault within a second all the same,
 * so erasing its records before the next request does not lift it either (issue #14). A failure
 * is left to the next request, whose own checks fail closed on the same state.
 */
function _watchBrakes(home: Home, keys: VaultKeys): { stop(): Promise<void> } {
  let running: Promise<void> = Promise.resolve();
  const timer = setInterval(() => {
    running = running.then(async () => {
      const file = loadVault(home);
      const active = activeBrakes(home, file.body);
      if (hasUnknownBrakes(file.body, active)) await recordKnownBrakes(home, keys, file, active);
    }).catch(() => {});
  }, BRAKE_WATCH_MS);
  return {
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}

/**
 * The socket path must be free: a live serve there is refused, a stale socket (nobody listening)
 * left by a killed serve is removed, anything else at that path is left alone and refused.
 */
async function _claimSocket(socket: string): Promise<void> {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(socket);
  } catch (e) {
    if (ioErrorCode(e) === 'ENOENT') return;
    throw usage('cannot_listen', `cannot use ${socket} (${ioErrorCode(e) ?? 'error'})`);
  }
  if (st.isSymbolicLink()) {
    throw integrity('symlink', `${socket} is a symbolic link`, 'remove it, or pass --socket PATH');
  }
  if (!st.isSocket()) {
    throw usage(
      'socket_path_taken',
      `${socket} exists and is not a socket`,
      'remove it, or pass --socket PATH',
    );
  }
  if (await _answers(socket)) {
    throw usage(
      'serve_running',
      `a serve is already running on ${socket}`,
      'use it (exec finds it by itself), or stop it first; --socket PATH starts another',
    );
  }
  fs.unlinkSync(socket);
}

function _answers(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(socket);
    const done = (alive: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve(alive);
    };
    const timer = setTimeout(() => done(true), 2_000);
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/**
 * Idle time counts from the end of the last request that used the API: health checks and the
 * OpenAPI document do not keep serve alive.
 */
function _activity(idleMs: number, onIdle: () => void) {
  let active = 0;
  let total = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let running = false;
  const arm = () => {
    clearTimeout(timer);
    if (running && active === 0) timer = setTimeout(onIdle, idleMs);
  };
  return {
    onRequest(target: string): () => void {
      if (/^\/v1\/(health|openapi\.json)(\?|$)/.test(target)) return () => {};
      active += 1;
      total += 1;
      clearTimeout(timer);
      let ended = false;
      return () => {
        if (ended) return;
        ended = true;
        active -= 1;
        arm();
      };
    },
    start() {
      running = true;
      arm();
    },
    stop() {
      running = false;
      clearTimeout(timer);
    },
    count: () => total,
  };
}
