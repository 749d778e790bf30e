/**
 * A running serve's core, as its keeper holds it (src/serve/keeper.ts): the keys it unsealed at
 * start, the handler, and the clocks that end it (TTL from start, idle time since the last request
 * ended). The listeners live in the front process (src/serve/front.ts), which never sees the keys.
 * Stopping cuts in-flight upstream requests, lets their responses end, records `serve.stop`, and
 * wipes the keys (best effort: JavaScript cannot guarantee no copy survives).
 */
import type { StoreSync } from '../store/sync.ts';
import { parseRate } from '../credentials.ts';
import type { TpError } from '../errors.ts';
import type { Home } from '../home.ts';
import type { SendOptions } from '../http/client.ts';
import { BRAKE_EVENTS, VAULT_CHANGE_EVENTS, VAULT_SAVED_EVENTS } from '../events.ts';
import { RedactionCache } from '../redact.ts';
import { openState, type State } from '../state.ts';
import { hasUnknownBrakes, type VaultKeys, wipeKeys } from '../vault.ts';
import { agentRateLimiter } from './agent_rate.ts';
import { deferredHeads, keyedAudit } from './audit.ts';
import { type HandlerOptions, type ServeHandler, serveHandler } from './handler.ts';
import { ConnectionPool } from '../http/pool.ts';
import { liveMonitor } from '../monitor/live.ts';
import { asServeError } from './http_error.ts';

export interface ServeOptions {
  home: Home;
  /** Taken over: wiped when serve stops, or when it fails to start. */
  keys: VaultKeys;
  env: Readonly<Record<string, string | undefined>>;
  ttlMs: number;
  idleMs: number;
  sendOptions: SendOptions;
  /** `--agent-rate N/PERIOD`, or null for none. */
  agentRate: string | null;
  version: string;
  now?: () => Date;
  /** The team store (#19) the home is kept in step with; absent: the file store. */
  sync?: StoreSync | null;
  /** A pull from the team store failed (appends then fail too: requests are refused). */
  onStoreError?(e: unknown): void;
}

/** How often serve pulls from the team store when no notification came. */
const STORE_PULL_MS = 500;

/** `front`: the front's pipe closed without a word (it was killed). */
export type StopReason = 'ttl' | 'idle' | 'signal' | 'front';

export interface Stopped {
  reason: StopReason;
  /** Set when `serve.stop` could not be audited (the keys are wiped all the same). */
  auditError: TpError | null;
}

export interface ServeCore {
  handler: ServeHandler;
  /** Called as each request arrives; the function it returns is called once its response is done. */
  onRequest(target: string): () => void;
  startedAt: Date;
  expiresAt: Date;
  /** Audits `serve.start` once the front listens on `urls`, and starts the clocks. */
  begin(started: { urls: string[]; pid: number }): Promise<void>;
  /**
   * Stops once (later calls return the first outcome): `beforeAudit` runs after in-flight upstream
   * requests were cut and before `serve.stop` is recorded (the keeper waits there for the
   * responses still streaming). Before `begin`, nothing is audited: the keys are just wiped.
   */
  stop(reason: StopReason): Promise<Stopped>;
  /** Settles once serve has stopped for whatever reason. */
  stopped: Promise<Stopped>;
}

export async function openServe(
  options: ServeOptions,
  hooks: {
    /** The TTL or idle clock ran out (stop follows at once). */
    onClock(reason: StopReason): void;
    beforeAudit(reason: StopReason): Promise<void>;
  },
): Promise<ServeCore> {
  const now = options.now ?? (() => new Date());
  let unfollow = () => {};
  let brakeWatch: { stop(): Promise<void> } | null = null;
  let storeWatch: ReturnType<StoreSync['watch']> | null = null;
  try {
    const startedAt = now();
    const expiresAt = new Date(startedAt.getTime() + options.ttlMs);
    const stopping = new AbortController();
    const state = openState(options.home, { cached: true, sync: options.sync ?? null });
    // On the team store: what other instances write (brakes first of all) is brought into the
    // home when they announce it, and at least twice a second (SPEC §15: within one second).
    storeWatch = options.sync?.watch(options.home, {
      intervalMs: STORE_PULL_MS,
      onError: (e) => options.onStoreError?.(e),
    }) ?? null;
    // Listed by `store status` before serve says it is listening.
    await storeWatch?.ready;
    const heads = deferredHeads(state, options.keys);
    // Brakes and vault changes recorded in the audit trail are checked before every request:
    // read what is new in the log, not the tail since the vault's head again each time.
    unfollow = state.audit.follow(options.keys.auditKeys, [
      BRAKE_EVENTS,
      VAULT_CHANGE_EVENTS,
      VAULT_SAVED_EVENTS,
    ]);
    // Kept-alive upstream connections, shared by every request of this serve.
    const pool = new ConnectionPool();
    // The keeper holds the keys, so it is the one that records brakes, between requests too.
    const watch = _watchBrakes(state, options.keys);
    brakeWatch = watch;
    const monitor = await liveMonitor(state, options.keys, now);
    const redactions = new RedactionCache();
    const info: HandlerOptions['info'] = { version: options.version, expiresAt, tcpUrl: null };
    const handler = serveHandler({
      state,
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
      info,
      ...(options.now ? { now: options.now } : {}),
    });
    const clock = (reason: StopReason) => {
      hooks.onClock(reason);
      void stop(reason);
    };
    const activity = _activity(options.idleMs, () => clock('idle'));
    const audit = keyedAudit(state, options.keys, heads, options.now);
    let ttl: ReturnType<typeof setTimeout> | undefined;
    let frontPid: number | null = null;
    let resolveStopped: (s: Stopped) => void = () => {};
    const stopped = new Promise<Stopped>((resolve) => (resolveStopped = resolve));
    let stopping_: Promise<Stopped> | null = null;
    const stop = (reason: StopReason): Promise<Stopped> => {
      stopping_ ??= (async (): Promise<Stopped> => {
        clearTimeout(ttl);
        activity.stop();
        // In-flight upstream requests are cut first, so their responses end soon.
        stopping.abort();
        let auditError: TpError | null = null;
        try {
          await hooks.beforeAudit(reason);
          pool.close();
          await watch.stop();
          await monitor.stop();
          if (frontPid !== null) {
            await audit([{
              event: 'serve.stop',
              actor: reason === 'signal' ? { type: 'operator' } : { type: 'system' },
              outcome: 'ok',
              data: { reason, pid: frontPid, keeper_pid: process.pid, requests: activity.count() },
            }]);
          }
          await heads.flush();
        } catch (e) {
          auditError = asServeError(e);
        }
        await storeWatch?.stop();
        unfollow();
        redactions.clear();
        wipeKeys(options.keys);
        return { reason, auditError };
      })().then((result) => {
        resolveStopped(result);
        return result;
      });
      return stopping_;
    };
    return {
      handler,
      onRequest: (target) => activity.onRequest(target),
      startedAt,
      expiresAt,
      async begin(started) {
        await audit([{
          event: 'serve.start',
          actor: { type: 'operator' },
          outcome: 'ok',
          data: {
            listen: started.urls,
            pid: started.pid,
            keeper_pid: process.pid,
            ttl_seconds: Math.round(options.ttlMs / 1000),
            idle_seconds: Math.round(options.idleMs / 1000),
            expires_at: expiresAt.toISOString(),
            agent_rate: options.agentRate,
          },
        }]);
        frontPid = started.pid;
        info.tcpUrl = started.urls.find((u) => u.startsWith('http://')) ?? null;
        ttl = setTimeout(() => clock('ttl'), Math.max(0, expiresAt.getTime() - now().getTime()));
        activity.start();
      },
      stop,
      stopped,
    };
  } catch (e) {
    await brakeWatch?.stop();
    await storeWatch?.stop();
    unfollow();
    wipeKeys(options.keys);
    throw e;
  }
}

/** How often serve looks for brakes by itself, between requests. */
const BRAKE_WATCH_MS = 1_000;

/**
 * A brake placed while no request comes is recorded in the vault within a second all the same,
 * so erasing its records before the next request does not lift it either (issue #14). A failure
 * is left to the next request, whose own checks fail closed on the same state.
 */
function _watchBrakes(state: State, keys: VaultKeys): { stop(): Promise<void> } {
  let running: Promise<void> = Promise.resolve();
  const timer = setInterval(() => {
    running = running.then(async () => {
      const file = state.vault.read();
      const active = state.brakes.active(file.body);
      if (hasUnknownBrakes(file.body, active)) {
        await state.vault.recordKnownBrakes(keys, file, active);
      }
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
