/**
 * Anomaly detection over each agent's own history (docs/monitoring.md). Events are replayed in
 * time order and every check uses only what came before, so the result is deterministic and the
 * same state could be kept incrementally. Counting is per UTC hour; a baseline is the median and
 * the MAD of the agent's earlier active hours (hours with at least one event), or a fixed
 * fallback threshold while there is too little history to learn from.
 */
import {
  type AuditEntry,
  hourKey,
  isAttempt,
  isUpstreamError,
  type RequestEvent,
  requestEvents,
} from './behaviour.ts';

export type AnomalyKind =
  | 'rate_spike'
  | 'error_spike'
  | 'denial_burst'
  | 'new_host'
  | 'new_credential'
  | 'off_hours'
  | 'size_spike';

export type Severity = 'low' | 'medium' | 'high';

export interface Anomaly {
  agent: string;
  kind: AnomalyKind;
  severity: Severity;
  at: string;
  evidence: Record<string, unknown>;
}

/** Below this many earlier active hours (or responses) the fixed fallbacks apply. */
export const MIN_HISTORY_HOURS = 24;
export const MIN_HISTORY_RESPONSES = 20;
/** Off-hours needs this many distinct active days to know when an agent works. */
export const MIN_HISTORY_DAYS = 7;
/** A new agent's first hosts and credentials are not news during its first day. */
export const LEARNING_MS = 24 * 3600_000;
/** Baselines look back at most this many active hours or responses. */
const WINDOW = 24 * 14;
/** How many robust standard deviations above the median count as a spike. */
const K = 6;

export const FALLBACK = {
  requestsPerHour: 600,
  errorsPerHour: 10,
  denialsPerHour: 4,
  responseBytes: 10 * 1024 * 1024,
} as const;

interface Hour {
  key: string;
  attempts: number;
  outcomes: number;
  errors: number;
  denials: number;
  denied: Set<string>;
  flagged: Set<AnomalyKind>;
  limits: { rate: number; errors: number; denials: number; size: number; history: number };
}

interface AgentState {
  firstAt: number;
  attempts: number[];
  errors: number[];
  denials: number[];
  sizes: number[];
  histogram: number[];
  days: Set<string>;
  hosts: Set<string>;
  credentials: Set<string>;
  hour: Hour | null;
}

/** Every anomaly in the trail up to `now`, in time order. */
export function detectAnomalies(
  entries: readonly AuditEntry[],
  options: { now: Date },
): Anomaly[] {
  const detector = new Detector();
  return requestEvents(entries, options).flatMap((e) => detector.observe(e));
}

/** Format version of `DetectorState` (docs/formats.md#monitor-state). */
export const DETECTOR_VERSION = 1;

/** A detector's learned state as plain JSON, so `exec` can keep it between runs. */
export interface DetectorState {
  v: typeof DETECTOR_VERSION;
  agents: Record<string, SavedAgent>;
}

type SavedAgent =
  & Omit<AgentState, 'days' | 'hosts' | 'credentials' | 'hour'>
  & { days: string[]; hosts: string[]; credentials: string[]; hour: SavedHour | null };
type SavedHour = Omit<Hour, 'denied' | 'flagged'> & { denied: string[]; flagged: AnomalyKind[] };

/**
 * The incremental form of `detectAnomalies`: feed request events in time order, one at a time,
 * and get the anomalies each one raises. `exec` saves its state in the home between runs; `serve`
 * keeps one in memory.
 */
export class Detector {
  #agents = new Map<string, AgentState>();

  constructor(saved?: DetectorState) {
    if (saved === undefined) return;
    if (saved.v !== DETECTOR_VERSION) throw new Error(`detector state version ${saved.v}`);
    for (const [agent, a] of Object.entries(saved.agents)) {
      this.#agents.set(agent, {
        ...a,
        days: new Set(a.days),
        hosts: new Set(a.hosts),
        credentials: new Set(a.credentials),
        hour: a.hour === null
          ? null
          : { ...a.hour, denied: new Set(a.hour.denied), flagged: new Set(a.hour.flagged) },
      });
    }
  }

  observe(e: RequestEvent): Anomaly[] {
    let s = this.#agents.get(e.agent);
    if (s === undefined) {
      s = _state(e.at);
      this.#agents.set(e.agent, s);
    }
    const out: Anomaly[] = [];
    _observe(
      s,
      e,
      (kind, severity, evidence) =>
        out.push({ agent: e.agent, kind, severity, at: e.ts, evidence }),
    );
    return out;
  }

  save(): DetectorState {
    const agents: Record<string, SavedAgent> = {};
    for (const [agent, a] of this.#agents) {
      agents[agent] = {
        ...a,
        days: [...a.days],
        hosts: [...a.hosts],
        credentials: [...a.credentials],
        hour: a.hour === null
          ? null
          : { ...a.hour, denied: [...a.hour.denied], flagged: [...a.hour.flagged] },
      };
    }
    return { v: DETECTOR_VERSION, agents };
  }
}

/** Median and median absolute deviation. */
export function robust(values: readonly number[]): { median: number; mad: number } {
  const median = _median(values);
  return { median, mad: _median(values.map((v) => Math.abs(v - median))) };
}

function _median(values: readonly number[]): number {
  if (values.length === 0) return 0;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/**
 * The spike threshold: K robust standard deviations (1.4826 × MAD, at least `floor`) above the
 * median, and at least `factor` × the median and `min`; `fallback` when history is short.
 */
function _limit(
  history: readonly number[],
  minHistory: number,
  o: { floor: number; factor: number; min: number; fallback: number },
): number {
  if (history.length < minHistory) return o.fallback;
  const { median, mad } = robust(history);
  return Math.max(median + K * Math.max(1.4826 * mad, o.floor), o.factor * median, o.min);
}

function _state(at: number): AgentState {
  return {
    firstAt: at,
    attempts: [],
    errors: [],
    denials: [],
    sizes: [],
    histogram: new Array<number>(24).fill(0),
    days: new Set(),
    hosts: new Set(),
    credentials: new Set(),
    hour: null,
  };
}

function _push(list: number[], value: number): void {
  list.push(value);
  if (list.length > WINDOW) list.shift();
}

function _closeHour(s: AgentState): void {
  const h = s.hour;
  if (h === null) return;
  if (h.outcomes > 0) _push(s.errors, h.errors);
  if (h.attempts === 0) return;
  _push(s.attempts, h.attempts);
  _push(s.denials, h.denials);
  s.histogram[Number(h.key.slice(11, 13))]! += h.attempts;
  s.days.add(h.key.slice(0, 10));
}

function _openHour(s: AgentState, key: string): Hour {
  const history = s.attempts.length;
  return {
    key,
    attempts: 0,
    outcomes: 0,
    errors: 0,
    denials: 0,
    denied: new Set(),
    flagged: new Set(),
    limits: {
      history,
      rate: _limit(s.attempts, MIN_HISTORY_HOURS, {
        floor: 1,
        factor: 3,
        min: 10,
        fallback: FALLBACK.requestsPerHour,
      }),
      errors: _limit(s.errors, MIN_HISTORY_HOURS, {
        floor: 1,
        factor: 3,
        min: 5,
        fallback: FALLBACK.errorsPerHour,
      }),
      size: _limit(s.sizes, MIN_HISTORY_RESPONSES, {
        floor: 1024,
        factor: 4,
        min: 0,
        fallback: FALLBACK.responseBytes,
      }),
      denials: _limit(s.denials, MIN_HISTORY_HOURS, {
        floor: 0.5,
        factor: 3,
        min: FALLBACK.denialsPerHour,
        fallback: FALLBACK.denialsPerHour,
      }),
    },
  };
}

type Emit = (kind: AnomalyKind, severity: Severity, evidence: Record<string, unknown>) => void;

function _observe(s: AgentState, e: RequestEvent, emit: Emit): void {
  const key = hourKey(e.at);
  if (s.hour?.key !== key) {
    _closeHour(s);
    s.hour = _openHour(s, key);
  }
  const h = s.hour;
  const once: Emit = (kind, severity, evidence) => {
    if (h.flagged.has(kind)) return;
    h.flagged.add(kind);
    emit(kind, severity, { hour: `${h.key}:00Z`, ...evidence });
  };
  if (isAttempt(e)) {
    h.attempts += 1;
    if (h.attempts > h.limits.rate) {
      once('rate_spike', h.attempts >= 3 * h.limits.rate ? 'high' : 'medium', {
        requests: h.attempts,
        threshold: h.limits.rate,
        history_hours: h.limits.history,
      });
    }
    _offHours(s, e, once);
    _firstSeen(s, e, emit);
  }
  if (e.kind === 'denied') _denial(h, e, once);
  if (e.kind === 'completed' || e.kind === 'failed') {
    h.outcomes += 1;
    if (isUpstreamError(e)) h.errors += 1;
    // A share of errors too: a busy agent's few errors are not a spike.
    if (h.errors > h.limits.errors && h.errors / h.outcomes >= 0.25) {
      once('error_spike', h.errors >= 3 * h.limits.errors ? 'high' : 'medium', {
        errors: h.errors,
        responses: h.outcomes,
        threshold: h.limits.errors,
      });
    }
  }
  if (e.kind === 'completed' && e.bytes !== null) _size(s, e, once);
}

function _offHours(s: AgentState, e: RequestEvent, once: Emit): void {
  const hourOfDay = new Date(e.at).getUTCHours();
  if (s.days.size < MIN_HISTORY_DAYS || s.histogram[hourOfDay]! > 0) return;
  once('off_hours', 'low', { hour_of_day: hourOfDay, days_of_history: s.days.size });
}

function _firstSeen(s: AgentState, e: RequestEvent, emit: Emit): void {
  const learning = e.at - s.firstAt < LEARNING_MS;
  const severity: Severity = e.kind === 'denied' ? 'medium' : 'low';
  if (e.host !== null && !s.hosts.has(e.host)) {
    s.hosts.add(e.host);
    if (!learning) emit('new_host', severity, { host: e.host, outcome: e.kind });
  }
  for (const c of e.credentials) {
    if (s.credentials.has(c)) continue;
    s.credentials.add(c);
    if (!learning) emit('new_credential', severity, { credential: c, outcome: e.kind });
  }
}

function _denial(h: Hour, e: RequestEvent, once: Emit): void {
  h.denials += 1;
  if (e.host !== null) h.denied.add(`host:${e.host}`);
  for (const c of e.credentials) h.denied.add(`credential:${c}`);
  if (h.denials <= h.limits.denials) return;
  // Denials spread over several hosts or credentials are probing, not one misconfigured call.
  const probing = h.denied.size >= 3;
  once('denial_burst', probing || h.denials > 2 * h.limits.denials ? 'high' : 'medium', {
    denials: h.denials,
    threshold: h.limits.denials,
    distinct_targets: h.denied.size,
    last_reason: e.reason,
  });
}

function _size(s: AgentState, e: RequestEvent, once: Emit): void {
  const bytes = e.bytes as number;
  const limit = s.hour?.limits.size as number;
  if (bytes > limit) {
    once('size_spike', bytes >= 10 * limit ? 'high' : 'medium', {
      bytes,
      threshold: Math.round(limit),
      history_responses: s.sizes.length,
    });
  }
  _push(s.sizes, bytes);
}
