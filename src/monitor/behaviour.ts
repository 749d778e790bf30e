/**
 * Per-agent behaviour computed from trust-protocol's own audit trail (docs/monitoring.md): only
 * `request.*` entries whose actor is an agent count, never a number an agent submitted.
 */

/** An audit entry as parsed from a line (docs/formats.md#audit); unknown fields are ignored. */
export interface AuditEntry {
  ts: string;
  event: string;
  actor?: { type?: string; id?: string };
  data?: Record<string, unknown>;
}

export type RequestKind = 'allowed' | 'completed' | 'failed' | 'denied';

/** One request event of one agent, normalised; `at` is milliseconds since the epoch. */
export interface RequestEvent {
  agent: string;
  kind: RequestKind;
  at: number;
  ts: string;
  host: string | null;
  credentials: string[];
  status: number | null;
  bytes: number | null;
  reason: string | null;
}

export interface Behaviour {
  agent: string;
  first_seen: string;
  last_seen: string;
  /** Attempts: allowed plus denied (completed and failed are outcomes of allowed ones). */
  requests: number;
  allowed: number;
  completed: number;
  failed: number;
  denied: number;
  requests_last_hour: number;
  requests_last_day: number;
  /** Attempts per UTC hour (`YYYY-MM-DDTHH`) and per UTC day (`YYYY-MM-DD`). */
  per_hour: Record<string, number>;
  per_day: Record<string, number>;
  days_active: number;
  /** Upstream errors: status >= 500 or `request.failed`. */
  errors: number;
  error_rate: number;
  denials_by_reason: Record<string, number>;
  /** Hosts and credentials attempted, each with the time it was first seen. */
  hosts: Record<string, string>;
  credentials: Record<string, string>;
  bytes: number;
  /** Attempts per UTC hour of day, 0..23. */
  hour_histogram: number[];
}

const KINDS: Readonly<Record<string, RequestKind>> = {
  'request.allowed': 'allowed',
  'request.completed': 'completed',
  'request.failed': 'failed',
  'request.denied': 'denied',
};

/** The agents' request events up to `now`, oldest first (stable for equal times). */
export function requestEvents(
  entries: readonly AuditEntry[],
  options: { now: Date },
): RequestEvent[] {
  const limit = options.now.getTime();
  const out: RequestEvent[] = [];
  for (const e of entries) {
    const r = requestEventOf(e, limit);
    if (r !== null) out.push(r);
  }
  return out.map((e, i) => [e, i] as const).sort((a, b) => a[0].at - b[0].at || a[1] - b[1])
    .map(([e]) => e);
}

/** An entry as an agent's request event at or before `limit` (ms); null for anything else. */
export function requestEventOf(e: AuditEntry, limit: number): RequestEvent | null {
  const kind = KINDS[e.event];
  const agent = e.actor?.type === 'agent' ? e.actor.id : undefined;
  const at = Date.parse(e.ts);
  if (kind === undefined || typeof agent !== 'string' || Number.isNaN(at) || at > limit) {
    return null;
  }
  const d = e.data ?? {};
  return {
    agent,
    kind,
    at,
    ts: new Date(at).toISOString(),
    host: typeof d.host === 'string' ? d.host : null,
    credentials: Array.isArray(d.credentials)
      ? d.credentials.filter((c): c is string => typeof c === 'string')
      : [],
    status: typeof d.status === 'number' ? d.status : null,
    bytes: typeof d.bytes === 'number' && d.bytes >= 0 ? d.bytes : null,
    reason: typeof d.reason === 'string' ? d.reason : null,
  };
}

export function isAttempt(e: RequestEvent): boolean {
  return e.kind === 'allowed' || e.kind === 'denied';
}

export function isUpstreamError(e: RequestEvent): boolean {
  return e.kind === 'failed' || (e.kind === 'completed' && (e.status ?? 0) >= 500);
}

export function hourKey(at: number): string {
  return new Date(at).toISOString().slice(0, 13);
}

/** Per-agent metrics over the whole trail up to `now`, keyed by agent id. */
export function behaviourOf(
  entries: readonly AuditEntry[],
  options: { now: Date },
): Map<string, Behaviour> {
  const counter = new BehaviourCounter(options);
  for (const e of requestEvents(entries, options)) counter.observe(e);
  return counter.result();
}

/** `behaviourOf` fed one request event at a time, oldest first (a streamed log, issue #16). */
export class BehaviourCounter {
  #now: number;
  #out = new Map<string, Behaviour>();

  constructor(options: { now: Date }) {
    this.#now = options.now.getTime();
  }

  observe(e: RequestEvent): void {
    const now = this.#now;
    let b = this.#out.get(e.agent);
    if (b === undefined) {
      b = _empty(e.agent, e.ts);
      this.#out.set(e.agent, b);
    }
    b.last_seen = e.ts;
    b[e.kind] += 1;
    if (isUpstreamError(e)) b.errors += 1;
    if (e.bytes !== null && e.kind !== 'allowed') b.bytes += e.bytes;
    if (e.kind === 'denied') {
      const reason = e.reason ?? 'unknown';
      b.denials_by_reason[reason] = (b.denials_by_reason[reason] ?? 0) + 1;
    }
    if (!isAttempt(e)) return;
    b.requests += 1;
    if (now - e.at < 3600_000) b.requests_last_hour += 1;
    if (now - e.at < 86400_000) b.requests_last_day += 1;
    const hour = hourKey(e.at);
    b.per_hour[hour] = (b.per_hour[hour] ?? 0) + 1;
    b.per_day[hour.slice(0, 10)] = (b.per_day[hour.slice(0, 10)] ?? 0) + 1;
    b.hour_histogram[new Date(e.at).getUTCHours()]! += 1;
    if (e.host !== null) b.hosts[e.host] ??= e.ts;
    for (const c of e.credentials) b.credentials[c] ??= e.ts;
  }

  result(): Map<string, Behaviour> {
    for (const b of this.#out.values()) {
      b.days_active = Object.keys(b.per_day).length;
      const outcomes = b.completed + b.failed;
      b.error_rate = outcomes === 0 ? 0 : b.errors / outcomes;
    }
    return this.#out;
  }
}

function _empty(agent: string, ts: string): Behaviour {
  return {
    agent,
    first_seen: ts,
    last_seen: ts,
    requests: 0,
    allowed: 0,
    completed: 0,
    failed: 0,
    denied: 0,
    requests_last_hour: 0,
    requests_last_day: 0,
    per_hour: {},
    per_day: {},
    days_active: 0,
    errors: 0,
    error_rate: 0,
    denials_by_reason: {},
    hosts: {},
    credentials: {},
    bytes: 0,
    hour_histogram: new Array<number>(24).fill(0),
  };
}
