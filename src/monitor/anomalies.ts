/**
 * Anomaly detection over each agent's own history (docs/monitoring.md). Events are replayed in
 * time order and every check uses only what came before, so the result is deterministic and the
 * same state could be kept incrementally. Counting is per UTC hour; a baseline is robust
 * statistics (median, MAD, 90th percentile) of the agent's earlier active hours (hours with at
 * least one event), or a fixed fallback threshold while there is too little history to learn from.
 * Response sizes are judged per host, on log(bytes), by each hour's largest response.
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
  | 'size_spike'
  | 'volume_spike';

export type Severity = 'low' | 'medium' | 'high';

export interface Anomaly {
  agent: string;
  kind: AnomalyKind;
  severity: Severity;
  at: string;
  evidence: Record<string, unknown>;
}

/** Below this many earlier active hours (of the agent, or of a host for sizes) fallbacks apply. */
export const MIN_HISTORY_HOURS = 24;
/** Off-hours needs this many distinct active days to know when an agent works. */
export const MIN_HISTORY_DAYS = 7;
/** A new agent's first hosts and credentials are not news during its first day. */
export const LEARNING_MS = 24 * 3600_000;
/**
 * Off-hours: an hour of day this many hours (circularly) or more from every hour of day the agent
 * used on `OFF_HOURS_USUAL_DAYS` days or more (and never used itself).
 */
export const OFF_HOURS_DISTANCE = 2;
export const OFF_HOURS_USUAL_DAYS = 2;
/**
 * The refusals a denial burst counts: an agent reaching for what it was not given (a foreign
 * domain or a URL trick to reach one, an ungranted, unknown or higher-tier credential, a
 * placement, a bad token). Usage errors, the operator's environment, rate limits, brakes and
 * upstream failures are recorded but are not probing, so they never brake an agent (issue 16).
 */
export const PROBING_REASONS: ReadonlySet<string> = new Set([
  'domain_not_allowed',
  'userinfo',
  'trailing_dot',
  'bad_host',
  'not_granted',
  'unknown_credential',
  'no_such_credential',
  'tier_too_low',
  'placement_not_allowed',
  'bad_token',
]);
const HOUR_MS = 3600_000;
/** Baselines look back at most this many active hours (rates) or hours of time (sizes). */
const WINDOW = 24 * 14;
/** How many robust standard deviations above the median count as a spike. */
const K = 6;
/** rate_spike: at least this many times the agent's 90th-percentile active hour. */
const RATE_BUSY_FACTOR = 3.5;
/** rate_spike is high when the hour's pace at the crossing projects to 3 × the threshold. */
const RATE_HIGH_FACTOR = 3;
/** size_spike on ln(bytes): this many robust deviations over the median of hourly maxima. */
const K_SIZE = 4;
/** The robust deviation of ln(bytes) is at least this (so the factor is at least e^(K_SIZE × 0.25)). */
const SIZE_FLOOR = 0.25;
/** size_spike is high only at 10 × the threshold and with this many hours of the host learned. */
const SIZE_HIGH_FACTOR = 10;
const SIZE_HIGH_HOURS = 72;
const DAY_MS = 24 * HOUR_MS;
/** volume_spike: a host's days of the last 28 days of time, once it has 7 of them. */
export const VOLUME_WINDOW_DAYS = 28;
export const VOLUME_MIN_DAYS = 7;
/** Totals are judged against days of the same kind (weekend or weekday, UTC) when 5 exist. */
const VOLUME_SAME_KIND_DAYS = 5;
/** Robust deviations of ln(daily total) over the median: a spike, and an elevated day. */
const K_VOLUME = 3.5;
const K_ELEVATED = 1.5;
/** The robust deviation of ln(daily total) is at least this. */
const VOLUME_FLOOR = 0.25;
/** A third elevated day in a row (the two days before elevated) is sustained volume. */
const VOLUME_STREAK = 2;
/** Mean response size: robust deviations of ln(mean bytes) over the median, and its floor. */
const K_MEAN = 5;
const MEAN_FLOOR = 0.1;
/** A day is judged after this many responses from the host (the mean after `MEAN_MIN`). */
const VOLUME_MIN_RESPONSES = 5;
const MEAN_MIN_RESPONSES = 10;
/** volume_spike is high on a third flagged day in a row, with 14 days of the host learned. */
const VOLUME_HIGH_DAYS = 14;

export const FALLBACK = {
  requestsPerHour: 600,
  errorsPerHour: 10,
  denialsPerHour: 4,
  responseBytes: 10 * 1024 * 1024,
} as const;

interface SizeLimit {
  /** ln(bytes) above which a response is a spike. */
  log: number;
  /** Earlier hours of the host it was learned from (0 to 23: the fallback applies). */
  hours: number;
}

interface Hour {
  key: string;
  /** Time of the hour's first attempt (ms), for the pace of a rate spike. */
  firstAt: number | null;
  attempts: number;
  outcomes: number;
  errors: number;
  denials: number;
  denied: Set<string>;
  flagged: Set<AnomalyKind>;
  limits: { rate: number; errors: number; denials: number; history: number };
  /** Per host: the hour's largest response, ln(bytes), and the threshold it is judged by. */
  sizes: Record<string, number>;
  sizeLimits: Record<string, SizeLimit>;
}

/**
 * One host's traffic on one UTC day: [day index (days since the epoch), response bytes without
 * the day's largest response, responses, 2 if volume_spike fired that day, else 1 if the day
 * ended elevated (over a lower bar), else 0].
 */
type DayVolume = [number, number, number, number];

interface VolumeLimit {
  /** ln(bytes) and ln(responses) a day's running total must exceed to be a spike. */
  bytes: number;
  responses: number;
  /** The lower bars: a day over one of them is elevated. */
  bytesLow: number;
  responsesLow: number;
  /** ln(mean response bytes) of the host's days: median, robust deviation, median responses. */
  mean: number;
  meanDev: number;
  typical: number;
  /** Consecutive elevated (or flagged) days of the host just before this one, and flagged ones. */
  streak: number;
  flaggedStreak: number;
  /** Earlier active days of the host in the window. */
  days: number;
}

interface HostDay {
  /** Response bytes and the day's largest response (judged without it). */
  bytes: number;
  largest: number;
  responses: number;
  limit: VolumeLimit | null;
  flagged: boolean;
}

interface Day {
  index: number;
  hosts: Record<string, HostDay>;
  /** A rate_spike fired this day: its excess volume is that anomaly's, not judged again. */
  rateSpike: boolean;
}

interface AgentState {
  firstAt: number;
  attempts: number[];
  errors: number[];
  denials: number[];
  /** Per host: [hour index, ln(largest response)] of its active hours in the last 14 days. */
  sizes: Record<string, Array<[number, number]>>;
  /** Per host: its active days (with a response) of the last 28 days, oldest first. */
  volumes: Record<string, DayVolume[]>;
  /** The open UTC day's per-host volumes. */
  day: Day | null;
  /** Per UTC hour of day: on how many days the agent made an attempt in it. */
  hourDays: number[];
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
export const DETECTOR_VERSION = 3;

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
  return _quantile(values, 0.5);
}

/** The q-quantile, interpolated between the nearest ranks; 0 for no values. */
function _quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return 0;
  const s = [...values].sort((a, b) => a - b);
  const pos = q * (s.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return s[lo]! + (s[hi]! - s[lo]!) * (pos - lo);
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
    sizes: {},
    volumes: {},
    day: null,
    hourDays: new Array<number>(24).fill(0),
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

function _hourIndex(key: string): number {
  return Math.floor(Date.parse(`${key}:00:00Z`) / HOUR_MS);
}

function _closeHour(s: AgentState): void {
  const h = s.hour;
  if (h === null) return;
  const index = _hourIndex(h.key);
  for (const [host, max] of Object.entries(h.sizes)) {
    (s.sizes[host] ??= []).push([index, Math.round(max * 1000) / 1000]);
  }
  // Time-based: a host's sizes of more than 14 days ago are forgotten, and the host with them.
  for (const [host, list] of Object.entries(s.sizes)) {
    while (list.length > 0 && list[0]![0] <= index - WINDOW) list.shift();
    if (list.length === 0) delete s.sizes[host];
  }
  if (h.outcomes > 0) _push(s.errors, h.errors);
  if (h.attempts === 0) return;
  _push(s.attempts, h.attempts);
  _push(s.denials, h.denials);
  s.hourDays[Number(h.key.slice(11, 13))]! += 1;
  s.days.add(h.key.slice(0, 10));
}

/**
 * rate_spike: 4 × the 90th percentile of the agent's earlier active hours (its busy hours, so a
 * quiet start or lunch hour does not set the bar), and K robust deviations over the median, and
 * at least 10.
 */
function _rateLimit(history: readonly number[]): number {
  if (history.length < MIN_HISTORY_HOURS) return FALLBACK.requestsPerHour;
  const { median, mad } = robust(history);
  return Math.max(
    RATE_BUSY_FACTOR * _quantile(history, 0.9),
    median + K * Math.max(1.4826 * mad, 1),
    10,
  );
}

function _openHour(s: AgentState, key: string): Hour {
  const history = s.attempts.length;
  return {
    key,
    firstAt: null,
    attempts: 0,
    outcomes: 0,
    errors: 0,
    denials: 0,
    denied: new Set(),
    flagged: new Set(),
    limits: {
      history,
      rate: _rateLimit(s.attempts),
      errors: _limit(s.errors, MIN_HISTORY_HOURS, {
        floor: 1,
        factor: 3,
        min: 5,
        fallback: FALLBACK.errorsPerHour,
      }),
      denials: _limit(s.denials, MIN_HISTORY_HOURS, {
        floor: 0.5,
        factor: 3,
        min: FALLBACK.denialsPerHour,
        fallback: FALLBACK.denialsPerHour,
      }),
    },
    sizes: {},
    sizeLimits: {},
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
    h.firstAt ??= e.at;
    if (h.attempts > h.limits.rate) _rate(h, e, once);
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
  if (e.kind === 'completed' && e.bytes !== null) _size(s, h, e, once);
  if (e.kind === 'completed' && e.host !== null) {
    _volume(s, e, e.host, h.flagged.has('rate_spike'), emit);
  }
}

/**
 * One rate_spike per hour, at the attempt that crosses the threshold; high when the pace since
 * the hour's first attempt would reach 3 × the threshold in an hour (the threshold was crossed
 * within 20 minutes). The severity is decided at the crossing: a later escalation in the same
 * hour would share the anomaly's key (agent, kind, hour), which live detection records once.
 */
function _rate(h: Hour, e: RequestEvent, once: Emit): void {
  // At least a minute, so that a handful of requests in one second is not a pace of thousands.
  const elapsed = Math.max(e.at - (h.firstAt ?? e.at), 60_000);
  const pace = Math.round((h.attempts * HOUR_MS) / elapsed);
  once('rate_spike', pace >= RATE_HIGH_FACTOR * h.limits.rate ? 'high' : 'medium', {
    requests: h.attempts,
    threshold: h.limits.rate,
    pace_per_hour: pace,
    history_hours: h.limits.history,
  });
}

/**
 * Off-hours: an hour of day never used before, and more than `OFF_HOURS_DISTANCE - 1` hours
 * from every usual one (used on `OFF_HOURS_USUAL_DAYS` days or more). Starting an hour earlier
 * than ever is not flagged; a night's first hour does not make the next one usual.
 */
function _offHours(s: AgentState, e: RequestEvent, once: Emit): void {
  const hourOfDay = new Date(e.at).getUTCHours();
  if (s.days.size < MIN_HISTORY_DAYS || s.hourDays[hourOfDay]! > 0) return;
  for (let d = 1 - OFF_HOURS_DISTANCE; d < OFF_HOURS_DISTANCE; d++) {
    if (s.hourDays[(hourOfDay + d + 24) % 24]! >= OFF_HOURS_USUAL_DAYS) return;
  }
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
  if (!PROBING_REASONS.has(e.reason ?? '')) return;
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

/**
 * The size threshold of a host, in ln(bytes): K robust deviations (at least `SIZE_FLOOR`) over
 * the median of its earlier hours' largest responses in the last 14 days; the fixed fallback
 * with fewer than `MIN_HISTORY_HOURS` such hours.
 */
function _sizeLimit(s: AgentState, host: string, index: number): SizeLimit {
  const history = (s.sizes[host] ?? []).filter(([i]) => i > index - WINDOW).map(([, v]) => v);
  if (history.length < MIN_HISTORY_HOURS) {
    return { log: Math.log(FALLBACK.responseBytes), hours: history.length };
  }
  const { median, mad } = robust(history);
  return {
    // Never below an hour already seen: a host's rare large endpoint does not alarm every time.
    log: Math.max(median + K_SIZE * Math.max(1.4826 * mad, SIZE_FLOOR), Math.max(...history)),
    hours: history.length,
  };
}

/**
 * size_spike: the hour's largest response from a host against that host's earlier hours'
 * largest responses. Medium; high only at 10 × its threshold with 72 hours of the host learned.
 */
function _size(s: AgentState, h: Hour, e: RequestEvent, once: Emit): void {
  const bytes = e.bytes as number;
  const host = e.host ?? '';
  const log = Math.log(Math.max(bytes, 1));
  const limit = h.sizeLimits[host] ??= _sizeLimit(s, host, _hourIndex(h.key));
  h.sizes[host] = Math.max(h.sizes[host] ?? -Infinity, log);
  if (log <= limit.log) return;
  const high = limit.hours >= SIZE_HIGH_HOURS && log >= limit.log + Math.log(SIZE_HIGH_FACTOR);
  once('size_spike', high ? 'high' : 'medium', {
    host,
    bytes,
    threshold: Math.round(Math.exp(limit.log)),
    history_hours: limit.hours,
  });
}

function _weekend(index: number): boolean {
  const dow = (index + 4) % 7; // day 0 (1970-01-01) was a Thursday; 0 is Sunday
  return dow === 0 || dow === 6;
}

function _ln(x: number): number {
  return Math.log(Math.max(x, 1));
}

/** Moves the closed day's per-host totals into the history; forgets days older than 28. */
function _closeDay(s: AgentState): void {
  const d = s.day;
  if (d === null) return;
  for (const [host, v] of Object.entries(d.hosts)) {
    const l = v.limit;
    const rest = v.bytes - v.largest;
    const elevated = l !== null && (_ln(rest) > l.bytesLow || _ln(v.responses) > l.responsesLow);
    (s.volumes[host] ??= []).push([d.index, rest, v.responses, v.flagged ? 2 : elevated ? 1 : 0]);
  }
  for (const [host, list] of Object.entries(s.volumes)) {
    while (list.length > 0 && list[0]![0] <= d.index - VOLUME_WINDOW_DAYS) list.shift();
    if (list.length === 0) delete s.volumes[host];
  }
}

/**
 * A host's daily thresholds, from its earlier active days in the last 28 (null under 7): totals
 * on ln scale against days of the same kind (weekend or weekday) when there are 5, else all;
 * the mean response size against all.
 */
function _volumeLimit(s: AgentState, host: string, index: number): VolumeLimit | null {
  const all = (s.volumes[host] ?? []).filter(([i]) => i > index - VOLUME_WINDOW_DAYS);
  if (all.length < VOLUME_MIN_DAYS) return null;
  const same = all.filter(([i]) => _weekend(i) === _weekend(index));
  const totals = same.length >= VOLUME_SAME_KIND_DAYS ? same : all;
  const bar = (values: number[], k: number) => {
    const { median, mad } = robust(values);
    return median + k * Math.max(1.4826 * mad, VOLUME_FLOOR);
  };
  const bytes = totals.map(([, b]) => _ln(b));
  const responses = totals.map(([, , n]) => _ln(n));
  const mean = robust(all.map(([, b, n]) => _ln(b) - _ln(n)));
  const run = (level: number) => {
    let n = 0;
    for (let j = all.length - 1; j >= 0; j--) {
      if (all[j]![0] !== index - 1 - n || all[j]![3] < level) break;
      n += 1;
    }
    return n;
  };
  return {
    bytes: bar(bytes, K_VOLUME),
    responses: bar(responses, K_VOLUME),
    bytesLow: bar(bytes, K_ELEVATED),
    responsesLow: bar(responses, K_ELEVATED),
    mean: mean.median,
    meanDev: 1.4826 * mean.mad,
    typical: _median(all.map(([, , n]) => n)),
    streak: run(1),
    flaggedStreak: run(2),
    days: all.length,
  };
}

/**
 * volume_spike: a host's running totals of the UTC day (response bytes without the day's
 * largest response, or responses) over their thresholds; or its mean response size (without the
 * largest) over its threshold (the deviation widened by sqrt(typical day's responses / responses
 * so far): a mean of few responses varies more); or a third elevated day in a row. Once per
 * agent, host and day, at the response that crosses, from the 5th response of the day; not on
 * a day the agent had a rate_spike (the loop's volume is already reported). High
 * when the host was flagged on the two days before too (and 14 days are learned).
 */
function _volume(
  s: AgentState,
  e: RequestEvent,
  host: string,
  rateSpike: boolean,
  emit: Emit,
): void {
  const index = Math.floor(e.at / DAY_MS);
  if (s.day?.index !== index) {
    _closeDay(s);
    s.day = { index, hosts: {}, rateSpike: false };
  }
  if (rateSpike) s.day.rateSpike = true;
  const v = s.day.hosts[host] ??= {
    bytes: 0,
    largest: 0,
    responses: 0,
    limit: _volumeLimit(s, host, index),
    flagged: false,
  };
  v.bytes += e.bytes ?? 0;
  v.largest = Math.max(v.largest, e.bytes ?? 0);
  v.responses += 1;
  const l = v.limit;
  if (v.flagged || l === null || v.responses < VOLUME_MIN_RESPONSES || s.day.rateSpike) return;
  // Without the largest response: one outsized response is size_spike's, not a volume.
  const rest = v.bytes - v.largest;
  const bytes = _ln(rest);
  const responses = _ln(v.responses);
  const widen = Math.sqrt(Math.max(1, l.typical / v.responses));
  const meanLimit = l.mean + K_MEAN * Math.max(l.meanDev * widen, MEAN_FLOOR);
  const reasons = [
    ...(bytes > l.bytes ? ['bytes'] : []),
    ...(responses > l.responses ? ['responses'] : []),
    ...(v.responses >= MEAN_MIN_RESPONSES && bytes - _ln(v.responses - 1) > meanLimit
      ? ['mean_size']
      : []),
    ...(l.streak >= VOLUME_STREAK && (bytes > l.bytesLow || responses > l.responsesLow)
      ? ['sustained']
      : []),
  ];
  if (reasons.length === 0) return;
  v.flagged = true;
  const high = l.days >= VOLUME_HIGH_DAYS && l.flaggedStreak >= VOLUME_STREAK;
  emit('volume_spike', high ? 'high' : 'medium', {
    host,
    day: new Date(index * DAY_MS).toISOString().slice(0, 10),
    reasons,
    bytes: v.bytes,
    responses: v.responses,
    threshold_bytes: Math.round(Math.exp(l.bytes)),
    threshold_responses: Math.round(Math.exp(l.responses)),
    mean_bytes: Math.round(rest / (v.responses - 1)),
    threshold_mean_bytes: Math.round(Math.exp(meanLimit)),
    elevated_days_before: l.streak,
    flagged_days_before: l.flaggedStreak,
    history_days: l.days,
  });
}
