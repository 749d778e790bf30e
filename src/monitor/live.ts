/**
 * Detection as requests happen (docs/monitoring.md#live-detection). A `Monitor` reads the audit
 * entries written since it last looked, feeds the agents' request events to an incremental
 * `Detector`, records each anomaly as a `monitor.anomaly` entry and carries out its actions.
 *
 * `exec` keeps the detector's state in `monitor.json` in the home between runs, MACed with the
 * vault's state key: a state that is missing or fails its MAC is rebuilt from the audit trail
 * (which is authoritative), and the rebuild is audited. `serve` keeps one Monitor in memory and
 * saves it when it stops.
 *
 * Entries written without the password (`"mac": null`, say denials before unsealing) may only add
 * anomalies, never hide one (issue #14): two detectors run side by side, one over every entry and
 * one over authenticated entries only (forged lines cannot shift its baselines or mark a host as
 * seen), and an anomaly either raises is acted on. Only an authenticated `monitor.anomaly` counts
 * as already recorded.
 */
import { hmacSha256Hex } from '../crypto/hmac.ts';
import {
  type AuditEvent,
  authenticatedOnly,
  type Checked,
  checkedEntries,
  type LogCursor,
  type LogEntry,
  readLogFrom,
} from '../audit.ts';
import { secretEqual } from '../bytes.ts';
import { canonicalJson } from '../canonical.ts';
import { demote } from '../agents.ts';
import { TpError } from '../errors.ts';
import { setInterval } from 'node:timers';
import type { State } from '../state.ts';
import { readStateFile, withLock, writeStateFile } from '../home.ts';
import { TIERS } from '../tiers.ts';
import type { VaultKeys } from '../vault.ts';
import { type Action, actionsFor } from './actions.ts';
import { type Anomaly, Detector, DETECTOR_VERSION, type DetectorState } from './anomalies.ts';
import { type AuditEntry, requestEvents } from './behaviour.ts';
import { Buffer } from 'node:buffer';

export const MONITOR_FILE = 'monitor.json';
export const MONITOR_FORMAT = 'trust-protocol/monitor';
export const MONITOR_VERSION = 2;
/** Anomalies older than this when first seen (a rebuild, a long-idle monitor) are not acted on. */
export const ACT_WINDOW_MS = 3600_000;
const END_OF_TIME = new Date(8.64e15);

interface SavedMonitor {
  format: typeof MONITOR_FORMAT;
  version: typeof MONITOR_VERSION;
  /** The last audit entry the detector has seen. */
  seq: number;
  /** Where to read on from in the log (offset after that entry's line, and its digest). */
  cursor: LogCursor | null;
  /** Fed every entry, and fed authenticated entries only (absent in version 1). */
  detector: DetectorState;
  trusted: DetectorState;
  mac: string;
}

export interface Acted {
  anomaly: Anomaly;
  actions: Action[];
}

export class Monitor {
  #seq: number;
  #cursor: LogCursor | null;
  #detector: Detector;
  #trusted: Detector;

  private constructor(
    seq: number,
    cursor: LogCursor | null,
    detectors: { all: Detector; trusted: Detector },
  ) {
    this.#seq = seq;
    this.#cursor = cursor;
    this.#detector = detectors.all;
    this.#trusted = detectors.trusted;
  }

  /** The saved state, or a rebuild from the audit trail when it is missing or fails its MAC. */
  static async load(state: State, keys: VaultKeys): Promise<Monitor> {
    const bytes = readStateFile(state.home, MONITOR_FILE);
    const saved = bytes === null ? null : _parse(bytes, keys);
    if (
      saved !== null && saved.version === MONITOR_VERSION &&
      saved.detector.v === DETECTOR_VERSION && saved.trusted?.v === DETECTOR_VERSION
    ) {
      return new Monitor(saved.seq, saved.cursor, {
        all: new Detector(saved.detector),
        trusted: new Detector(saved.trusted),
      });
    }
    await state.audit.writer({ macKey: keys.auditKeys }).append([{
      event: 'monitor.rebuild',
      actor: { type: 'system' },
      outcome: 'ok',
      data: {
        reason: bytes === null
          ? 'no saved state'
          : saved === null
          ? 'saved state failed its check'
          : saved.version !== MONITOR_VERSION
          ? `monitor.json version ${saved.version} replaced by ${MONITOR_VERSION}`
          : `detector version ${saved.detector.v} replaced by ${DETECTOR_VERSION}`,
      },
    }]);
    return new Monitor(0, null, { all: new Detector(), trusted: new Detector() });
  }

  /**
   * Feeds the entries written since the last look; records and acts on the anomalies they raise.
   * Skipped: anomalies another monitor already recorded (exec and serve may both look), and
   * anomalies older than `ACT_WINDOW_MS` (a rebuilt state replays the whole trail).
   */
  async catchUp(state: State, keys: VaultKeys, now: Date): Promise<Acted[]> {
    const entries = this.#read(state, keys);
    const recorded = new Set(
      authenticatedOnly(entries).filter((e) => e.event === 'monitor.anomaly').map((e) =>
        _key(e.data)
      ),
    );
    const acted: Acted[] = [];
    for (const anomaly of this.#feed(entries)) {
      if (recorded.has(_key(anomaly))) continue;
      recorded.add(_key(anomaly));
      if (now.getTime() - Date.parse(anomaly.at) > ACT_WINDOW_MS) continue;
      acted.push(await _act(state, keys, anomaly, now));
    }
    return acted;
  }

  save(state: State, keys: VaultKeys): void {
    const unsigned = {
      format: MONITOR_FORMAT,
      version: MONITOR_VERSION,
      seq: this.#seq,
      cursor: this.#cursor,
      detector: this.#detector.save(),
      trusted: this.#trusted.save(),
    } as const;
    // Not fsynced: a state lost in a crash is rebuilt from the audit trail.
    writeStateFile(
      state.home,
      MONITOR_FILE,
      JSON.stringify({ ...unsigned, mac: _mac(unsigned, keys) }),
      { durable: false },
    );
  }

  /**
   * The entries after the last one seen: read forward from the cursor, or, when the log does not
   * continue from it (cut, rewritten, repaired), the whole log again, keeping only newer entries.
   * A line whose MAC is wrong throws (integrity) before the cursor moves past it.
   */
  #read(state: State, keys: VaultKeys): Array<Checked<LogEntry>> {
    const read = readLogFrom(state.home, this.#cursor) ?? readLogFrom(state.home, null);
    const entries = checkedEntries(read?.lines ?? [], keys.auditKeys);
    this.#cursor = read?.cursor ?? null;
    return entries.filter((e) => e.seq > this.#seq);
  }

  /** The anomalies of either detector (the authenticated one first), one per key. */
  #feed(entries: ReadonlyArray<Checked<LogEntry>>): Anomaly[] {
    for (const e of entries) this.#seq = Math.max(this.#seq, e.seq);
    // Every entry read counts, whatever its time: the log, not the clock, says what happened.
    const observe = (detector: Detector, from: readonly AuditEntry[]) =>
      requestEvents(from, { now: END_OF_TIME }).flatMap((e) => detector.observe(e));
    return [
      ...observe(this.#trusted, authenticatedOnly(entries)),
      ...observe(this.#detector, entries),
    ];
  }
}

/**
 * One exec's turn: load the saved state, catch up, act, save; under the monitor lock. When the
 * lock is taken (a running serve holds it, or another exec), this turn is skipped at once:
 * whoever holds it, or the next turn, reads the same entries from the log.
 */
export async function monitorOnce(state: State, keys: VaultKeys, now: Date): Promise<Acted[]> {
  try {
    return await withLock(state.home, 'monitor', async () => {
      const monitor = await Monitor.load(state, keys);
      const acted = await monitor.catchUp(state, keys, now);
      monitor.save(state, keys);
      return acted;
    }, { timeoutMs: 0 });
  } catch (e) {
    if (e instanceof TpError && e.code === 'lock_timeout') return [];
    throw e;
  }
}

function _key(a: { agent?: unknown; kind?: unknown; evidence?: unknown; at?: unknown }): string {
  const hour = (a.evidence as { hour?: unknown } | undefined)?.hour;
  return `${String(a.agent)}|${String(a.kind)}|${String(hour ?? a.at)}`;
}

async function _act(state: State, keys: VaultKeys, anomaly: Anomaly, now: Date): Promise<Acted> {
  const body = state.vault.read().body;
  const agent = body.agents.find((a) => a.id === anomaly.agent);
  const actions = [...actionsFor(anomaly.kind, body.monitor_actions ?? {})];
  const audit = state.audit.writer({ macKey: keys.auditKeys });
  const done: Record<string, unknown> = {};
  if (actions.includes('brake')) {
    const brake = await state.brakes.activate({
      scope: 'agent',
      target: anomaly.agent,
      reason: `monitor: ${anomaly.kind} (${anomaly.severity}) at ${anomaly.at}`,
    }, now);
    await audit.append([{
      event: 'brake.activate',
      actor: { type: 'system' },
      outcome: 'ok',
      data: { brake: brake.id, scope: 'agent', target: anomaly.agent, reason: brake.reason },
    }]);
    done.brake = brake.id;
  }
  if (actions.includes('demote') && agent !== undefined) {
    const lower = TIERS[TIERS.indexOf(agent.tier) - 1];
    if (lower === undefined) {
      done.demote = 'already at the lowest tier';
    } else {
      await state.vault.update(keys, (b) => {
        const change = demote(b, { id: anomaly.agent, tier: lower, now });
        return { ...change, events: change.events.map(_bySystem) };
      });
      done.demote = lower;
    }
  }
  const entry: AuditEvent = {
    event: 'monitor.anomaly',
    actor: { type: 'system' },
    outcome: 'ok',
    data: { ...anomaly, actions, ...(Object.keys(done).length > 0 ? { done } : {}) },
  };
  await audit.append([entry]);
  return { anomaly, actions };
}

function _bySystem(e: AuditEvent): AuditEvent {
  return { ...e, actor: { type: 'system' }, data: { ...e.data, by: 'monitor' } };
}

function _mac(unsigned: Omit<SavedMonitor, 'mac'>, keys: VaultKeys): string {
  return hmacSha256Hex(keys.state, canonicalJson(unsigned));
}

function _parse(bytes: Uint8Array, keys: VaultKeys): SavedMonitor | null {
  try {
    const saved = JSON.parse(new TextDecoder().decode(bytes)) as SavedMonitor;
    // Version 1 (no authenticated-only detector) still parses, so its rebuild says why.
    if (saved.format !== MONITOR_FORMAT || (saved.version as number) > MONITOR_VERSION) return null;
    const { mac, ...unsigned } = saved;
    const want = Buffer.from(_mac(unsigned, keys), 'hex');
    if (typeof mac !== 'string' || !secretEqual(Buffer.from(mac, 'hex'), want)) return null;
    return saved;
  } catch {
    return null;
  }
}

export interface LiveMonitor {
  /** Catches up after a request; concurrent callers share one catch-up. */
  after(): Promise<void>;
  /** Waits for the last catch-up and saves the state. */
  stop(): Promise<void>;
}

/**
 * serve's monitor: one detector in memory for its whole life, saved when it stops. serve holds
 * the monitor lock all that time, so no per-request lock is needed; it catches up after each of
 * its requests and at least every second, which also covers entries other processes write (an
 * exec meanwhile skips its turn at once). A second serve in the same home finds the lock taken
 * and leaves monitoring to the first, which reads its entries from the log.
 */
export async function liveMonitor(
  state: State,
  keys: VaultKeys,
  now: () => Date,
): Promise<LiveMonitor> {
  let release: () => void = () => {};
  const held = new Promise<void>((resolve) => (release = resolve));
  let loaded: (m: Monitor) => void = () => {};
  const ready = new Promise<Monitor>((resolve) => (loaded = resolve));
  const lifetime = withLock(state.home, 'monitor', async () => {
    const m = await Monitor.load(state, keys);
    loaded(m);
    await held;
    m.save(state, keys);
  }, { timeoutMs: 0 });
  let monitor: Monitor | null;
  try {
    monitor = await Promise.race([ready, lifetime.then(() => null)]);
  } catch (e) {
    if (e instanceof TpError && e.code === 'lock_timeout') {
      return { after: () => Promise.resolve(), stop: () => Promise.resolve() };
    }
    throw e;
  }
  if (monitor === null) throw new Error('the monitor lock was released before use');
  const m = monitor;
  let running: Promise<void> = Promise.resolve();
  let queued: Promise<void> | null = null;
  const after = (): Promise<void> => {
    queued ??= running.catch(() => {}).then(() => {
      queued = null;
      return m.catchUp(state, keys, now()).then(() => {});
    });
    running = queued;
    return queued;
  };
  const tick = setInterval(() => void after().catch(() => {}), 1000);
  tick.unref();
  return {
    after,
    async stop() {
      clearInterval(tick);
      await running.catch(() => {});
      release();
      await lifetime;
    },
  };
}
