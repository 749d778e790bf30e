/**
 * Detection quality of the behavioural monitor (issue 7): labelled traces of normal agents and of
 * attacks, run through `detectAnomalies` (src/monitor/anomalies.ts), scored per attack kind.
 * Pure computation: no files, no network, one seeded PRNG per agent, so a run is reproducible.
 * Run: node_modules/.bin/node bench/detection.ts (prints the Markdown section).
 *
 * Generator model. 30 days of simulated time from a Monday; the first 14 are a warm-up without
 * attacks. Every agent has a UTC offset and one of three schedules: `office` (weekdays, a start
 * between 7 and 10 local that moves an hour a quarter of the days, 8-10 hours, overtime of 1-3
 * hours one day in ten, and for half of them some weekend hours), `extended` (about 7-23 local,
 * every day, less at weekends) and `continuous` (around the clock, less at night). An hour's
 * request count is Poisson around the agent's busy-hour rate (log-normal, median 20 an hour,
 * clipped to 2-400: many light agents, a few heavy ones) times a per-day and a per-hour
 * log-normal factor, a shape (slower first, last and lunch hours), and, one hour in 50, a
 * legitimate burst of 2-3x. Each agent uses 1-4 upstream hosts (each with its credential and
 * 1-3 endpoints whose response sizes are log-normal around their own median), has its own
 * upstream error rate (0.05-1.5%), sometimes a per-hour rate limit (5-10x its busy rate, beyond
 * which requests are denied `rate_limited`), now and then a new host or credential (a new
 * integration), and now and then one stray denial (rate limit, tier, a misspelt credential, a
 * redirect to a host outside its allow-list). Shared upstream outages (5-40 minutes,
 * 50-100% failures) hit every agent that uses the host. Entries have the shapes src/broker.ts
 * writes: `request.allowed`, then `request.completed` (status, bytes) or `request.failed`; or
 * `request.denied` with a reason.
 *
 * Attacks. Each instance is one agent with the normal model above whose attack starts after the
 * warm-up, at a time the agent is working (off-hours use: at night, local 0-5):
 *   - domain probing: 3-40 denials `domain_not_allowed` for hosts outside its allow-list (cloud
 *     metadata, localhost, paste sites, other APIs), in a burst (2-15 min) or paced (30-180 min);
 *   - credential enumeration: 3-40 denials `not_granted` / `tier_too_low` for credentials it
 *     does not hold, burst or paced as above;
 *   - runaway loop: the same call repeated at 10-50x its busy-hour rate for 15-60 min or 1-6 h;
 *   - slow exfiltration, 2-7 days, during its working hours only or around the clock, one of:
 *     `growing_pages` (1-6 extra reads an hour on a usual host whose responses grow steadily to
 *     5-50x their usual size), `new_host_drip` (1-4 reads an hour of 16-256 KiB files from a storage
 *     host of a granted API, never used before) or `steady_drip` (1-4 extra ordinary reads an hour);
 *   - off-hours use: its usual requests at 0.5-1.5x its busy rate for 30-180 min at local 0-5.
 *
 * Scoring. An attack window is the attack's span widened to whole UTC hours. An instance is
 * detected when an anomaly of a kind accepted for its attack (ACCEPTED) is raised for its agent
 * inside the window; "any kind" recall accepts every kind. Normal traffic is everything outside
 * attack windows; false positives are counted after the warm-up (the warm-up is reported apart):
 * anomalies per agent-day (calendar hours outside attack windows / 24) and the fraction of
 * active agent-hours (UTC hours outside attack windows with at least one request entry of the
 * agent) holding at least one anomaly; the latter is the figure held to the issue's 1% goal.
 * A control per instance: whether an accepted kind fired for the same agent in the same hours 7
 * days earlier, with no attack (how much of a recall is chance). Precision of an attack kind:
 * alerts of its accepted kinds inside its windows over those plus the alerts of the same kinds
 * on normal traffic after the warm-up (it depends on how rare attacks are here).
 * Detection state is per agent, so each agent's trace is run through `detectAnomalies` on its own
 * (the result is the same as for one merged log, in bounded memory).
 */
import process from 'node:process';
import { ANOMALY_KINDS } from '../src/monitor/actions.ts';
import type { AuditEntry } from '../src/monitor/behaviour.ts';
import {
  type Anomaly,
  type AnomalyKind,
  detectAnomalies,
  type Severity,
} from '../src/monitor/anomalies.ts';

export const SEED = 20260302;

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/** The generator's parameters (see the header); printed with the results. */
export const PARAMS = {
  start: '2026-03-02T00:00:00.000Z',
  days: 30,
  warmupDays: 14,
  normalAgents: 50,
  instancesPerKind: 40,
  /** Busy-hour attempts an hour: log-normal (median, sigma), clipped to [min, max]. */
  busyRatePerHour: { median: 20, sigma: 1, min: 2, max: 400 },
  burstPerHour: 1 / 50,
  burstFactor: [2, 3],
  dayFactorSigma: 0.25,
  hourFactorSigma: 0.3,
  errorRate: [0.0005, 0.015],
  rateLimitShare: 0.5,
  rateLimitFactor: [5, 10],
  newHostPerWorkDay: 1 / 30,
  strayDenialPerWorkDay: 1 / 12,
  outagePerHostDay: 1 / 30,
  outageMinutes: [5, 40],
  responseMedianBytes: [300, 100 * 1024],
  responseSigma: [0.2, 0.7],
} as const;

export const ATTACKS = [
  'domain_probing',
  'credential_enumeration',
  'runaway_loop',
  'slow_exfiltration',
  'off_hours_use',
] as const;
export type AttackKind = typeof ATTACKS[number];

/** The anomaly kinds that count as detecting each attack. */
export const ACCEPTED: Readonly<Record<AttackKind, readonly AnomalyKind[]>> = {
  domain_probing: ['denial_burst', 'new_host'],
  credential_enumeration: ['denial_burst', 'new_credential'],
  runaway_loop: ['rate_spike', 'denial_burst'],
  slow_exfiltration: ['size_spike', 'volume_spike', 'rate_spike', 'new_host', 'off_hours'],
  off_hours_use: ['off_hours', 'rate_spike'],
};

const SEVERITIES: readonly Severity[] = ['low', 'medium', 'high'];

export interface KindResult {
  kind: AttackKind;
  accepted: readonly AnomalyKind[];
  instances: number;
  detected: number;
  detectedAnyKind: number;
  recall: number;
  recallAnyKind: number;
  /** Control: instances with an accepted-kind anomaly in the same window 7 days earlier. */
  controlDetected: number;
  controlRate: number;
  /** Accepted-kind alerts inside this kind's windows, and the same kinds on normal traffic. */
  truePositiveAlerts: number;
  falsePositiveAlerts: number;
  precision: number;
  medianDelayMinutes: number | null;
  /** Instances in whose window each anomaly kind fired at least once. */
  fired: Partial<Record<AnomalyKind, number>>;
}

export interface VariantResult {
  kind: AttackKind;
  variant: string;
  instances: number;
  detected: number;
  controlDetected: number;
}

export interface NormalResult {
  agentDays: number;
  activeAgentHours: number;
  anomalies: number;
  agentHoursWithAnomaly: number;
  agentHoursWithMediumOrHigh: number;
  /** Anomalies per agent-day and the share of active agent-hours with any anomaly. */
  perAgentDay: number;
  hourFraction: number;
  mediumOrHighHourFraction: number;
  bySeverity: Record<AnomalyKind, Record<Severity, number>>;
  hoursByKind: Record<AnomalyKind, number>;
  /** Active agent-hours with any anomaly when the kind hitting the most hours is left out. */
  withoutNoisiest: { kind: AnomalyKind; hours: number; fraction: number };
  /** `error_spike`s on normal traffic during a shared upstream outage of one of the agent's hosts. */
  errorSpikesInOutages: number;
}

export interface DetectionBench {
  seed: number;
  params: typeof PARAMS;
  agents: number;
  entries: number;
  attempts: number;
  kinds: KindResult[];
  variants: VariantResult[];
  overall: { instances: number; detected: number; recall: number; precision: number };
  normal: NormalResult;
  warmup: NormalResult;
}

// ---------------------------------------------------------------------------------------------
// Seeded randomness

type Rng = () => number;

/** mulberry32: small, fast, and the same sequence on every runtime. */
function _rng(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A seed per stream (FNV-1a of the seed and a name), so agents do not share one sequence. */
function _seedOf(name: string): number {
  let h = 0x811c9dc5;
  for (const ch of `${SEED}/${name}`) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193);
  return h >>> 0;
}

function _uniform(r: Rng, a: number, b: number): number {
  return a + (b - a) * r();
}

function _int(r: Rng, a: number, b: number): number {
  return a + Math.floor(r() * (b - a + 1));
}

function _logUniform(r: Rng, a: number, b: number): number {
  return Math.exp(_uniform(r, Math.log(a), Math.log(b)));
}

function _normal(r: Rng): number {
  return Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
}

function _logNormal(r: Rng, median: number, sigma: number): number {
  return median * Math.exp(sigma * _normal(r));
}

function _poisson(r: Rng, lambda: number): number {
  if (lambda <= 0) return 0;
  if (lambda >= 30) return Math.max(0, Math.round(lambda + Math.sqrt(lambda) * _normal(r)));
  const limit = Math.exp(-lambda);
  let n = 0;
  for (let p = r(); p > limit; p *= r()) n++;
  return n;
}

function _chance(r: Rng, p: number): boolean {
  return r() < p;
}

function _pick<T>(r: Rng, items: readonly T[]): T {
  return items[Math.floor(r() * items.length)]!;
}

function _weighted<T extends { weight: number }>(r: Rng, items: readonly T[]): T {
  let x = r() * items.reduce((s, i) => s + i.weight, 0);
  for (const i of items) {
    x -= i.weight;
    if (x < 0) return i;
  }
  return items.at(-1)!;
}

function _shuffle<T>(r: Rng, items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The world: hosts, credentials, outages

const T0 = Date.parse(PARAMS.start);
const T_END = T0 + PARAMS.days * DAY;
const T_SCORED = T0 + PARAMS.warmupDays * DAY;

/** Upstream APIs and the credential each needs. */
const POOL: ReadonlyArray<readonly [string, string]> = [
  ['api.github.test', 'GITHUB_TOKEN'],
  ['api.gitlab.test', 'GITLAB_TOKEN'],
  ['slack.test', 'SLACK_BOT_TOKEN'],
  ['api.stripe.test', 'STRIPE_KEY'],
  ['api.openai.test', 'OPENAI_API_KEY'],
  ['api.anthropic.test', 'ANTHROPIC_API_KEY'],
  ['api.notion.test', 'NOTION_TOKEN'],
  ['api.linear.test', 'LINEAR_KEY'],
  ['api.hubspot.test', 'HUBSPOT_TOKEN'],
  ['api.sendgrid.test', 'SENDGRID_KEY'],
  ['api.twilio.test', 'TWILIO_TOKEN'],
  ['api.pagerduty.test', 'PAGERDUTY_KEY'],
  ['api.datadog.test', 'DATADOG_KEY'],
  ['api.zendesk.test', 'ZENDESK_TOKEN'],
  ['api.airtable.test', 'AIRTABLE_KEY'],
  ['api.figma.test', 'FIGMA_TOKEN'],
  ['api.dropbox.test', 'DROPBOX_TOKEN'],
  ['graph.microsoft.test', 'MS_GRAPH_TOKEN'],
  ['sheets.googleapis.test', 'GOOGLE_SA_KEY'],
  ['api.jira.test', 'JIRA_TOKEN'],
  ['api.salesforce.test', 'SALESFORCE_TOKEN'],
  ['api.shopify.test', 'SHOPIFY_TOKEN'],
  ['api.mailchimp.test', 'MAILCHIMP_KEY'],
  ['api.cloudflare.test', 'CLOUDFLARE_TOKEN'],
];

const ENDPOINTS: ReadonlyArray<readonly [string, string]> = [
  ['GET', '/v1/items'],
  ['GET', '/v1/items/{id}'],
  ['GET', '/v1/search'],
  ['GET', '/v1/events'],
  ['POST', '/v1/messages'],
  ['GET', '/v1/users/{id}'],
  ['POST', '/v1/items'],
  ['GET', '/v1/reports'],
];

/** Where a probing agent tries its credential. */
const PROBE_HOSTS: readonly string[] = [
  '169.254.169.254',
  'metadata.google.internal',
  'localhost:8080',
  '127.0.0.1:2375',
  'api.attacker.test',
  'collect.exfil.test',
  'paste.bin.test',
  'webhook.catch.test',
  'internal.corp.test',
  'admin.corp.test',
  'vault.corp.test',
  'tunnel.ngrok.test',
];

/** Credential names an enumerating agent tries. */
const SECRET_NAMES: readonly string[] = [
  'AWS_ACCESS_KEY_ID',
  'AWS_SECRET_ACCESS_KEY',
  'DATABASE_URL',
  'DB_PASSWORD',
  'ADMIN_TOKEN',
  'ROOT_PASSWORD',
  'SSH_PRIVATE_KEY',
  'VAULT_TOKEN',
  'NPM_TOKEN',
  'PYPI_TOKEN',
  'DOCKERHUB_TOKEN',
  'GCP_SERVICE_ACCOUNT',
  'AZURE_CLIENT_SECRET',
  'KUBECONFIG',
  'PROD_API_KEY',
  'MASTER_KEY',
];

interface Outage {
  host: string;
  from: number;
  to: number;
  failRate: number;
}

/** Shared upstream outages: every agent using the host sees them. */
function _outages(): Map<string, Outage[]> {
  const r = _rng(_seedOf('outages'));
  const out = new Map<string, Outage[]>();
  for (const [host] of POOL) {
    const list: Outage[] = [];
    for (let d = 0; d < PARAMS.days; d++) {
      if (!_chance(r, PARAMS.outagePerHostDay)) continue;
      const from = T0 + d * DAY + Math.floor(r() * DAY);
      const [lo, hi] = PARAMS.outageMinutes;
      list.push({
        host,
        from,
        to: from + _uniform(r, lo, hi) * MINUTE,
        failRate: _uniform(r, 0.5, 1),
      });
    }
    out.set(host, list);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Agents

type Schedule = 'office' | 'extended' | 'continuous';
type Group = 'normal' | AttackKind;

interface Endpoint {
  method: string;
  path: string;
  weight: number;
  median: number;
  sigma: number;
}

interface HostUse {
  host: string;
  credential: string;
  weight: number;
  endpoints: Endpoint[];
}

interface Profile {
  id: string;
  group: Group;
  schedule: Schedule;
  tz: number;
  rate: number;
  start: number;
  end: number;
  weekendProb: number;
  weekendFactor: number;
  nightFactor: number;
  errorRate: number;
  rateLimit: number | null;
  hosts: HostUse[];
}

interface Ev {
  at: number;
  event: string;
  data: Record<string, unknown>;
}

interface Gen {
  p: Profile;
  r: Rng;
  out: Ev[];
  attempts: Map<number, number>;
  outages: Map<string, Outage[]>;
}

interface Attack {
  kind: AttackKind;
  variant: string;
  from: number;
  to: number;
}

function _endpoints(r: Rng): Endpoint[] {
  const [lo, hi] = PARAMS.responseMedianBytes;
  const [slo, shi] = PARAMS.responseSigma;
  return _shuffle(r, ENDPOINTS).slice(0, _int(r, 1, 3)).map(([method, path]) => ({
    method,
    path,
    weight: _uniform(r, 0.2, 1),
    median: _logUniform(r, lo, hi),
    sigma: _uniform(r, slo, shi),
  }));
}

function _hostUse(r: Rng, host: string, credential: string): HostUse {
  return { host, credential, weight: _uniform(r, 0.2, 1), endpoints: _endpoints(r) };
}

function _profile(id: string, group: Group, r: Rng): Profile {
  const roll = r();
  const schedule: Schedule = group === 'off_hours_use'
    ? (roll < 0.7 ? 'office' : 'extended')
    : roll < 0.55
    ? 'office'
    : roll < 0.8
    ? 'extended'
    : 'continuous';
  const start = _int(r, 7, 10);
  const b = PARAMS.busyRatePerHour;
  const rate = Math.min(b.max, Math.max(b.min, _logNormal(r, b.median, b.sigma)));
  const [elo, ehi] = PARAMS.errorRate;
  const [flo, fhi] = PARAMS.rateLimitFactor;
  return {
    id,
    group,
    schedule,
    tz: _int(r, -8, 9),
    rate,
    start,
    end: start + _int(r, 8, 10),
    weekendProb: schedule === 'office' ? (_chance(r, 0.5) ? _uniform(r, 0.2, 0.6) : 0) : 1,
    weekendFactor: schedule === 'office'
      ? _uniform(r, 0.1, 0.4)
      : schedule === 'extended'
      ? _uniform(r, 0.3, 0.8)
      : _uniform(r, 0.6, 1),
    nightFactor: _uniform(r, 0.2, 0.6),
    errorRate: _logUniform(r, elo, ehi),
    rateLimit: _chance(r, PARAMS.rateLimitShare) ? Math.ceil(rate * _uniform(r, flo, fhi)) : null,
    hosts: _shuffle(r, POOL).slice(0, _int(r, 1, 4)).map(([h, c]) => _hostUse(r, h, c)),
  };
}

/** The hours (local, from midnight) an agent works on a day, and that day's volume factor. */
function _dayPlan(
  p: Profile,
  r: Rng,
  weekend: boolean,
): { from: number; to: number; factor: number } | null {
  if (p.schedule === 'continuous') {
    return { from: 0, to: 24, factor: weekend ? p.weekendFactor : 1 };
  }
  if (p.schedule === 'extended') {
    const from = 7 + _pick(r, [-1, 0, 0, 1]);
    return { from, to: 23 + _pick(r, [-1, 0, 0, 1]), factor: weekend ? p.weekendFactor : 1 };
  }
  if (weekend) {
    if (!_chance(r, p.weekendProb)) return null;
    const from = _int(r, 9, 12);
    return { from, to: from + _int(r, 2, 5), factor: p.weekendFactor };
  }
  const from = p.start + (_chance(r, 0.25) ? _pick(r, [-1, 1]) : 0);
  return { from, to: p.end + (_chance(r, 0.1) ? _int(r, 1, 3) : 0), factor: 1 };
}

/** Slower first, last and lunch hours; a quieter night for round-the-clock agents. */
function _shape(p: Profile, plan: { from: number; to: number }, h: number): number {
  if (p.schedule === 'continuous') return h < 7 || h >= 22 ? p.nightFactor : 1;
  if (h === plan.from || h === plan.to - 1) return 0.6;
  return h === 12 ? 0.7 : 1;
}

function _inTrace(at: number): boolean {
  return at >= T0 && at < T_END;
}

function _denial(
  g: Gen,
  at: number,
  reason: string,
  target: { host: string; credentials: string[]; method?: string; path?: string },
): void {
  const hour = Math.floor(at / HOUR);
  g.attempts.set(hour, (g.attempts.get(hour) ?? 0) + 1);
  g.out.push({
    at,
    event: 'request.denied',
    data: {
      reason,
      kind: 'denied',
      credentials: target.credentials,
      method: target.method ?? 'GET',
      host: target.host,
      path: target.path ?? '/',
    },
  });
}

/** One request as the broker audits it: allowed then completed or failed, or denied. */
function _request(
  g: Gen,
  at: number,
  use: HostUse,
  options: { endpoint?: Endpoint; sizeFactor?: number } = {},
): void {
  const { p, r } = g;
  const ep = options.endpoint ?? _weighted(r, use.endpoints);
  const base = {
    agent: p.id,
    credentials: [use.credential],
    method: ep.method,
    host: use.host,
    path: ep.path,
  };
  const hour = Math.floor(at / HOUR);
  const n = (g.attempts.get(hour) ?? 0) + 1;
  if (p.rateLimit !== null && n > p.rateLimit) {
    _denial(g, at, 'rate_limited', base);
    return;
  }
  g.attempts.set(hour, n);
  g.out.push({ at, event: 'request.allowed', data: base });
  const done = at + Math.round(_logNormal(r, 150, 0.8));
  const outage = g.outages.get(use.host)?.find((o) => at >= o.from && at < o.to);
  const failing = outage !== undefined && _chance(r, outage.failRate);
  if (failing || _chance(r, p.errorRate)) {
    g.out.push(
      _chance(r, 0.5)
        ? { at: done, event: 'request.failed', data: { ...base, reason: 'upstream_timeout' } }
        : {
          at: done,
          event: 'request.completed',
          data: { ...base, status: _pick(r, [500, 502, 503]), bytes: _int(r, 100, 600) },
        },
    );
    return;
  }
  const status = _chance(r, 0.97) ? 200 : _pick(r, [404, 409, 422]);
  const bytes = Math.round(_logNormal(r, ep.median, ep.sigma) * (options.sizeFactor ?? 1));
  g.out.push({ at: done, event: 'request.completed', data: { ...base, status, bytes } });
}

/** A new integration (host and credential) or a new host of a credential it already holds. */
function _addHost(g: Gen): void {
  const { p, r } = g;
  const used = new Set(p.hosts.map((u) => u.host));
  if (_chance(r, 0.5)) {
    const fresh = POOL.filter(([h]) => !used.has(h));
    if (fresh.length > 0) {
      const [h, c] = _pick(r, fresh);
      p.hosts.push(_hostUse(r, h, c));
      return;
    }
  }
  const owner = _pick(r, p.hosts);
  const host = `${_pick(r, ['v2', 'eu', 'uploads'])}.${owner.host}`;
  if (!used.has(host)) p.hosts.push(_hostUse(r, host, owner.credential));
}

/** One ordinary denial: a rate limit, a tier, a misspelt credential or an off-list redirect. */
function _strayDenial(g: Gen, at: number): void {
  const { r } = g;
  const use = _weighted(r, g.p.hosts);
  const roll = r();
  if (roll < 0.5) _denial(g, at, 'rate_limited', { ...use, credentials: [use.credential] });
  else if (roll < 0.75) _denial(g, at, 'tier_too_low', { ...use, credentials: [use.credential] });
  else if (roll < 0.875) {
    const typo = use.credential.replace(/_(KEY|TOKEN)$/, '_$1S');
    _denial(g, at, 'not_granted', { host: use.host, credentials: [typo] });
  } else {
    _denial(g, at, 'domain_not_allowed', {
      host: `cdn.${use.host}`,
      credentials: [use.credential],
    });
  }
}

function _normalTraffic(g: Gen): void {
  const { p, r } = g;
  for (let k = -1; k <= PARAMS.days; k++) {
    const midnight = T0 + k * DAY - p.tz * HOUR;
    const plan = _dayPlan(p, r, ((k % 7) + 7) % 7 >= 5);
    if (plan === null) continue;
    const dayFactor = _logNormal(r, 1, PARAMS.dayFactorSigma);
    const newHostHour = _chance(r, PARAMS.newHostPerWorkDay) ? _int(r, plan.from, plan.to - 1) : -1;
    const denialHour = _chance(r, PARAMS.strayDenialPerWorkDay)
      ? _int(r, plan.from, plan.to - 1)
      : -1;
    for (let h = plan.from; h < plan.to; h++) {
      const hourStart = midnight + h * HOUR;
      if (h === newHostHour && _inTrace(hourStart)) _addHost(g);
      let lambda = p.rate * dayFactor * plan.factor * _shape(p, plan, h) *
        _logNormal(r, 1, PARAMS.hourFactorSigma);
      if (_chance(r, PARAMS.burstPerHour)) lambda *= _uniform(r, ...PARAMS.burstFactor);
      const n = _poisson(r, lambda);
      for (let i = 0; i < n; i++) {
        const at = hourStart + Math.floor(r() * HOUR);
        if (_inTrace(at)) _request(g, at, _weighted(r, p.hosts));
      }
      const at = hourStart + Math.floor(r() * HOUR);
      if (h === denialHour && _inTrace(at)) _strayDenial(g, at);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Attacks

/** A moment after the warm-up when the agent was sending requests anyway. */
function _startWhileWorking(g: Gen, duration: number): number {
  const latest = T_END - duration - HOUR;
  const times = g.out.filter((e) =>
    e.event === 'request.allowed' && e.at >= T_SCORED && e.at < latest
  ).map((e) => e.at);
  return times.length > 0 ? _pick(g.r, times) : _uniform(g.r, T_SCORED, latest);
}

function _spread(r: Rng, from: number, duration: number, n: number): number[] {
  return Array.from({ length: n }, () => from + Math.floor(r() * duration)).sort((a, b) => a - b);
}

function _burstOrPaced(r: Rng): { variant: string; n: number; duration: number } {
  return _chance(r, 0.5)
    ? { variant: 'burst', n: _int(r, 5, 40), duration: _uniform(r, 2, 15) * MINUTE }
    : { variant: 'paced', n: _int(r, 3, 15), duration: _uniform(r, 30, 180) * MINUTE };
}

function _probing(g: Gen): Attack {
  const { p, r } = g;
  const { variant, n, duration } = _burstOrPaced(r);
  const from = _startWhileWorking(g, duration);
  const own = new Set(p.hosts.map((u) => u.host));
  const candidates = [...PROBE_HOSTS, ...POOL.map(([h]) => h)].filter((h) => !own.has(h));
  const targets = _shuffle(r, candidates).slice(0, _int(r, 1, Math.min(n, 12)));
  for (const at of _spread(r, from, duration, n)) {
    const use = _weighted(r, p.hosts);
    _denial(g, at, 'domain_not_allowed', {
      host: _pick(r, targets),
      credentials: [use.credential],
    });
  }
  return { kind: 'domain_probing', variant, from, to: from + duration };
}

function _enumeration(g: Gen): Attack {
  const { p, r } = g;
  const { variant, n, duration } = _burstOrPaced(r);
  const from = _startWhileWorking(g, duration);
  const own = new Set(p.hosts.map((u) => u.credential));
  const vaultNames = POOL.map(([, c]) => c).filter((c) => !own.has(c));
  const names = _shuffle(r, [...SECRET_NAMES, ...vaultNames]).slice(0, _int(r, 2, Math.min(n, 16)));
  const host = p.hosts[0]!.host;
  for (const at of _spread(r, from, duration, n)) {
    const name = _pick(r, names);
    const reason = vaultNames.includes(name) && _chance(r, 0.3) ? 'tier_too_low' : 'not_granted';
    _denial(g, at, reason, { host, credentials: [name] });
  }
  return { kind: 'credential_enumeration', variant, from, to: from + duration };
}

function _runaway(g: Gen): Attack {
  const { p, r } = g;
  const long = _chance(r, 0.5);
  const duration = long ? _uniform(r, 1, 6) * HOUR : _uniform(r, 15, 60) * MINUTE;
  const from = _startWhileWorking(g, duration);
  const use = _weighted(r, p.hosts);
  const endpoint = _weighted(r, use.endpoints);
  const n = _poisson(r, (p.rate * _uniform(r, 10, 50) * duration) / HOUR);
  for (const at of _spread(r, from, duration, n)) _request(g, at, use, { endpoint });
  return { kind: 'runaway_loop', variant: long ? '1-6 h' : '15-60 min', from, to: from + duration };
}

function _exfiltration(g: Gen): Attack {
  const { p, r } = g;
  const style = _pick(r, ['growing_pages', 'new_host_drip', 'steady_drip'] as const);
  const allDay = _chance(r, 0.5);
  const duration = _uniform(r, 2, 7) * DAY;
  const from = _startWhileWorking(g, duration);
  const working = new Set(
    g.out.filter((e) => e.event === 'request.allowed').map((e) => Math.floor(e.at / HOUR)),
  );
  let use = _weighted(r, p.hosts);
  if (style === 'new_host_drip') {
    use = {
      host: `storage.${use.host.replace(/^api\./, '')}`,
      credential: use.credential,
      weight: 1,
      endpoints: [{
        method: 'GET',
        path: '/v1/files/{id}',
        weight: 1,
        median: _logUniform(r, 16 * 1024, 256 * 1024),
        sigma: 0.5,
      }],
    };
  }
  const perHour = style === 'growing_pages' ? _uniform(r, 1, 6) : _uniform(r, 1, 4);
  const growth = _logUniform(r, 5, 50);
  for (let hour = Math.floor(from / HOUR); hour * HOUR < from + duration; hour++) {
    if (!allDay && !working.has(hour)) continue;
    for (const at of _spread(r, hour * HOUR, HOUR, _poisson(r, perHour))) {
      if (at < from || at >= from + duration) continue;
      const sizeFactor = style === 'growing_pages'
        ? growth ** ((at - from) / duration)
        : style === 'steady_drip'
        ? _uniform(r, 1, 2)
        : 1;
      _request(g, at, use, { sizeFactor });
    }
  }
  const variant = `${style}, ${allDay ? 'around the clock' : 'working hours'}`;
  return { kind: 'slow_exfiltration', variant, from, to: from + duration };
}

function _offHours(g: Gen): Attack {
  const { p, r } = g;
  const duration = _uniform(r, 30, 180) * MINUTE;
  const day = _int(r, PARAMS.warmupDays + 1, PARAMS.days - 2);
  const localStart = _uniform(r, 0, 5 - duration / HOUR);
  const from = Math.round(T0 + day * DAY - p.tz * HOUR + localStart * HOUR);
  const n = _poisson(r, (p.rate * _uniform(r, 0.5, 1.5) * duration) / HOUR);
  for (const at of _spread(r, from, duration, n)) _request(g, at, _weighted(r, p.hosts));
  return { kind: 'off_hours_use', variant: `${p.schedule} agent`, from, to: from + duration };
}

const INJECT: Readonly<Record<AttackKind, (g: Gen) => Attack>> = {
  domain_probing: _probing,
  credential_enumeration: _enumeration,
  runaway_loop: _runaway,
  slow_exfiltration: _exfiltration,
  off_hours_use: _offHours,
};

// ---------------------------------------------------------------------------------------------
// One agent's trace, and scoring

interface Trace {
  profile: Profile;
  attack: Attack | null;
  entries: AuditEntry[];
  /** The UTC hours (ms / HOUR) holding at least one of its entries. */
  hours: Set<number>;
  attempts: number;
  outages: Outage[];
}

let _isoHour = NaN;
let _isoPrefix = '';

/** `Date#toISOString`, with the hour's prefix cached: millions of timestamps are written. */
function _iso(at: number): string {
  const hour = Math.floor(at / HOUR);
  if (hour !== _isoHour) {
    _isoHour = hour;
    _isoPrefix = new Date(hour * HOUR).toISOString().slice(0, 14);
  }
  const ms = at - hour * HOUR;
  const mm = Math.floor(ms / MINUTE);
  const ss = Math.floor((ms % MINUTE) / 1000);
  return `${_isoPrefix}${String(mm).padStart(2, '0')}:${String(ss).padStart(2, '0')}.${
    String(ms % 1000).padStart(3, '0')
  }Z`;
}

function _trace(id: string, group: Group, outages: Map<string, Outage[]>): Trace {
  const r = _rng(_seedOf(id));
  const profile = _profile(id, group, r);
  const initialHosts = profile.hosts.map((u) => u.host);
  const g: Gen = { p: profile, r, out: [], attempts: new Map(), outages };
  _normalTraffic(g);
  const attack = group === 'normal' ? null : INJECT[group](g);
  g.out.sort((a, b) => a.at - b.at);
  const hosts = new Set([...initialHosts, ...profile.hosts.map((u) => u.host)]);
  return {
    profile,
    attack,
    entries: g.out.map((e) => ({
      ts: _iso(e.at),
      event: e.event,
      actor: { type: 'agent', id },
      data: e.data,
    })),
    hours: new Set(g.out.map((e) => Math.floor(e.at / HOUR))),
    attempts: g.out.filter((e) => e.event === 'request.allowed' || e.event === 'request.denied')
      .length,
    outages: [...hosts].flatMap((h) => outages.get(h) ?? []),
  };
}

interface NormalTally {
  calendarHours: number;
  activeHours: number;
  anomalies: number;
  hours: Set<string>;
  mediumOrHighHours: Set<string>;
  bySeverity: Record<AnomalyKind, Record<Severity, number>>;
  hoursByKind: Record<AnomalyKind, Set<string>>;
  errorSpikesInOutages: number;
}

function _normalTally(): NormalTally {
  const bySeverity = {} as Record<AnomalyKind, Record<Severity, number>>;
  const hoursByKind = {} as Record<AnomalyKind, Set<string>>;
  for (const k of ANOMALY_KINDS) {
    bySeverity[k] = { low: 0, medium: 0, high: 0 };
    hoursByKind[k] = new Set();
  }
  return {
    calendarHours: 0,
    activeHours: 0,
    anomalies: 0,
    hours: new Set(),
    mediumOrHighHours: new Set(),
    bySeverity,
    hoursByKind,
    errorSpikesInOutages: 0,
  };
}

function _countNormal(t: NormalTally, a: Anomaly, trace: Trace): void {
  const at = Date.parse(a.at);
  const hour = `${a.agent}@${Math.floor(at / HOUR)}`;
  t.anomalies += 1;
  t.hours.add(hour);
  if (a.severity !== 'low') t.mediumOrHighHours.add(hour);
  t.bySeverity[a.kind][a.severity] += 1;
  t.hoursByKind[a.kind].add(hour);
  if (a.kind === 'error_spike') {
    const hourStart = Math.floor(at / HOUR) * HOUR;
    if (trace.outages.some((o) => o.from < hourStart + HOUR && o.to > hourStart)) {
      t.errorSpikesInOutages += 1;
    }
  }
}

function _normalResult(t: NormalTally): NormalResult {
  const agentDays = t.calendarHours / 24;
  const hoursByKind = {} as Record<AnomalyKind, number>;
  for (const k of ANOMALY_KINDS) hoursByKind[k] = t.hoursByKind[k].size;
  const noisiest = ANOMALY_KINDS.reduce((a, b) => (hoursByKind[b] > hoursByKind[a] ? b : a));
  const rest = new Set(
    ANOMALY_KINDS.filter((k) => k !== noisiest).flatMap((k) => [...t.hoursByKind[k]]),
  );
  return {
    agentDays,
    activeAgentHours: t.activeHours,
    anomalies: t.anomalies,
    agentHoursWithAnomaly: t.hours.size,
    agentHoursWithMediumOrHigh: t.mediumOrHighHours.size,
    perAgentDay: t.anomalies / agentDays,
    hourFraction: t.hours.size / t.activeHours,
    mediumOrHighHourFraction: t.mediumOrHighHours.size / t.activeHours,
    bySeverity: t.bySeverity,
    hoursByKind,
    withoutNoisiest: { kind: noisiest, hours: rest.size, fraction: rest.size / t.activeHours },
    errorSpikesInOutages: t.errorSpikesInOutages,
  };
}

interface InstanceScore {
  kind: AttackKind;
  variant: string;
  detected: boolean;
  detectedAnyKind: boolean;
  delayMinutes: number | null;
  fired: Set<AnomalyKind>;
  truePositiveAlerts: number;
  control: boolean;
}

/** Sorts one agent's anomalies into its attack window, normal traffic or the warm-up. */
function _score(
  trace: Trace,
  anomalies: readonly Anomaly[],
  normal: NormalTally,
  warmup: NormalTally,
): InstanceScore | null {
  const { attack } = trace;
  const wFrom = attack === null ? Infinity : Math.floor(attack.from / HOUR);
  const wTo = attack === null ? -Infinity : Math.ceil(attack.to / HOUR);
  const scoredFrom = T_SCORED / HOUR;
  const inWindow = (hour: number) => hour >= wFrom && hour < wTo;
  for (const hour of trace.hours) {
    if (inWindow(hour)) continue;
    if (hour >= scoredFrom) normal.activeHours += 1;
    else warmup.activeHours += 1;
  }
  normal.calendarHours += (PARAMS.days - PARAMS.warmupDays) * 24 -
    (attack === null ? 0 : wTo - wFrom);
  warmup.calendarHours += PARAMS.warmupDays * 24;
  const score: InstanceScore | null = attack === null ? null : {
    kind: attack.kind,
    variant: attack.variant,
    detected: false,
    detectedAnyKind: false,
    delayMinutes: null,
    fired: new Set(),
    truePositiveAlerts: 0,
    control: false,
  };
  const week = 7 * 24;
  for (const a of anomalies) {
    const at = Date.parse(a.at);
    const hour = Math.floor(at / HOUR);
    if (score === null || !inWindow(hour)) {
      _countNormal(hour >= scoredFrom ? normal : warmup, a, trace);
      if (score !== null && inWindow(hour + week) && ACCEPTED[score.kind].includes(a.kind)) {
        score.control = true;
      }
      continue;
    }
    score.detectedAnyKind = true;
    score.fired.add(a.kind);
    if (!ACCEPTED[score.kind].includes(a.kind)) continue;
    score.truePositiveAlerts += 1;
    if (!score.detected) {
      score.detected = true;
      score.delayMinutes = Math.max(0, (at - attack!.from) / MINUTE);
    }
  }
  return score;
}

function _median(values: readonly number[]): number | null {
  if (values.length === 0) return null;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function _kindResult(kind: AttackKind, scores: readonly InstanceScore[], normal: NormalResult) {
  const own = scores.filter((s) => s.kind === kind);
  const accepted = ACCEPTED[kind];
  const detected = own.filter((s) => s.detected).length;
  const detectedAnyKind = own.filter((s) => s.detectedAnyKind).length;
  const controlDetected = own.filter((s) => s.control).length;
  const tp = own.reduce((n, s) => n + s.truePositiveAlerts, 0);
  const fp = accepted.reduce(
    (n, k) => n + SEVERITIES.reduce((m, v) => m + normal.bySeverity[k][v], 0),
    0,
  );
  const fired: Partial<Record<AnomalyKind, number>> = {};
  for (const k of ANOMALY_KINDS) {
    const n = own.filter((s) => s.fired.has(k)).length;
    if (n > 0) fired[k] = n;
  }
  const result: KindResult = {
    kind,
    accepted,
    instances: own.length,
    detected,
    detectedAnyKind,
    recall: detected / own.length,
    recallAnyKind: detectedAnyKind / own.length,
    controlDetected,
    controlRate: controlDetected / own.length,
    truePositiveAlerts: tp,
    falsePositiveAlerts: fp,
    precision: tp + fp === 0 ? 0 : tp / (tp + fp),
    medianDelayMinutes: _median(
      own.flatMap((s) => (s.delayMinutes === null ? [] : [s.delayMinutes])),
    ),
    fired,
  };
  return result;
}

function _variants(scores: readonly InstanceScore[]): VariantResult[] {
  const out = new Map<string, VariantResult>();
  for (const s of scores) {
    const key = `${s.kind}|${s.variant}`;
    const v = out.get(key) ??
      { kind: s.kind, variant: s.variant, instances: 0, detected: 0, controlDetected: 0 };
    v.instances += 1;
    if (s.detected) v.detected += 1;
    if (s.control) v.controlDetected += 1;
    out.set(key, v);
  }
  return [...out.values()].sort((a, b) =>
    ATTACKS.indexOf(a.kind) - ATTACKS.indexOf(b.kind) || a.variant.localeCompare(b.variant)
  );
}

/** The agents: normal ones, then `instancesPerKind` attacked agents per attack kind. */
function _roster(): Array<{ id: string; group: Group }> {
  const pad = (i: number) => String(i).padStart(3, '0');
  return [
    ...Array.from({ length: PARAMS.normalAgents }, (_, i) => ({
      id: `normal-${pad(i)}`,
      group: 'normal' as Group,
    })),
    ...ATTACKS.flatMap((kind) =>
      Array.from({ length: PARAMS.instancesPerKind }, (_, i) => ({
        id: `${kind}-${pad(i)}`,
        group: kind as Group,
      }))
    ),
  ];
}

export function benchDetection(): DetectionBench {
  const outages = _outages();
  const normal = _normalTally();
  const warmup = _normalTally();
  const scores: InstanceScore[] = [];
  const roster = _roster();
  let entries = 0;
  let attempts = 0;
  for (const { id, group } of roster) {
    const trace = _trace(id, group, outages);
    const anomalies = detectAnomalies(trace.entries, { now: new Date(T_END) });
    entries += trace.entries.length;
    attempts += trace.attempts;
    const score = _score(trace, anomalies, normal, warmup);
    if (score !== null) scores.push(score);
  }
  const normalResult = _normalResult(normal);
  const kinds = ATTACKS.map((k) => _kindResult(k, scores, normalResult));
  const tp = kinds.reduce((n, k) => n + k.truePositiveAlerts, 0);
  const detected = kinds.reduce((n, k) => n + k.detected, 0);
  return {
    seed: SEED,
    params: PARAMS,
    agents: roster.length,
    entries,
    attempts,
    kinds,
    variants: _variants(scores),
    overall: {
      instances: scores.length,
      detected,
      recall: detected / scores.length,
      precision: tp / (tp + normalResult.anomalies),
    },
    normal: normalResult,
    warmup: _normalResult(warmup),
  };
}

// ---------------------------------------------------------------------------------------------
// Markdown

const GOAL_RECALL = 0.95;
const GOAL_FALSE_POSITIVES = 0.01;

function _pct(x: number): string {
  return `${(100 * x).toFixed(x < 0.01 ? 2 : 1)}%`;
}

function _fired(k: KindResult): string {
  return Object.entries(k.fired)
    .sort((a, b) => b[1] - a[1])
    .map(([kind, n]) => `${k.accepted.includes(kind as AnomalyKind) ? kind : `(${kind})`} ${n}`)
    .join(', ');
}

function _normalRows(n: NormalResult): string[] {
  return ANOMALY_KINDS.map((k) => {
    const s = n.bySeverity[k];
    const total = s.low + s.medium + s.high;
    return `| \`${k}\` | ${s.low} | ${s.medium} | ${s.high} | ${total} | ${
      (total / n.agentDays).toFixed(3)
    } | ${n.hoursByKind[k]} (${_pct(n.hoursByKind[k] / n.activeAgentHours)}) |`;
  });
}

export function detectionMarkdown(d: DetectionBench): string {
  const n = d.normal;
  const w = d.warmup;
  const verdict = (ok: boolean) => (ok ? 'met' : '**missed**');
  const p = d.params;
  const rows = d.kinds.map((k) =>
    `| ${k.kind} | ${k.instances} | ${k.detected} | ${k.recall.toFixed(2)} | ${
      k.recallAnyKind.toFixed(2)
    } | ${k.controlDetected} (${k.controlRate.toFixed(2)}) | ${
      k.precision.toFixed(2)
    } (${k.truePositiveAlerts}/${k.truePositiveAlerts + k.falsePositiveAlerts}) | ${
      k.medianDelayMinutes === null ? '-' : k.medianDelayMinutes.toFixed(0)
    } | ${k.accepted.join(', ')} | ${_fired(k)} | ${verdict(k.recall >= GOAL_RECALL)} |`
  );
  const variantRows = d.variants.map((v) =>
    `| ${v.kind} | ${v.variant} | ${v.instances} | ${v.detected} | ${
      (v.detected / v.instances).toFixed(2)
    } | ${v.controlDetected} |`
  );
  const control = d.kinds.reduce((s, k) => s + k.controlDetected, 0);
  return [
    '## Detection quality (issue 7)',
    '',
    `A seeded traffic generator (bench/detection.ts, seed ${d.seed}) writes ${d.agents} agents'` +
    ` audit entries (${d.entries.toLocaleString('en')} entries, ${
      d.attempts.toLocaleString('en')
    } attempts) over ${p.days} days: ${p.normalAgents} normal agents and ${p.instancesPerKind}` +
    ' agents per attack kind, each attacked once after a ' +
    `${p.warmupDays}-day warm-up and normal the rest of the time. \`detectAnomalies\` runs over` +
    ' each trace; an attack counts as detected when an anomaly of an accepted kind is raised for' +
    ' its agent within the attack window (its span widened to whole UTC hours).',
    '',
    '| attack | instances | detected | recall | recall (any kind) | control: same window 7 days earlier | precision (alerts) | median minutes to detect | kinds accepted | kinds that fired (instances; not accepted in parentheses) | recall >= 0.95 |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...rows,
    `| **all** | ${d.overall.instances} | ${d.overall.detected} | ${
      d.overall.recall.toFixed(2)
    } | | ${control} | ${d.overall.precision.toFixed(2)} | | | | ${
      verdict(d.kinds.every((k) => k.recall >= GOAL_RECALL))
    } |`,
    '',
    'Precision of an attack kind: alerts of its accepted kinds inside its attack windows over' +
    ' those plus every alert of the same kinds on normal traffic after the warm-up (all agents).' +
    ' Overall: accepted alerts in all windows over those plus every alert on normal traffic. It' +
    ` depends on how rare attacks are: here ${d.overall.instances} attacks in ${
      n.agentDays.toFixed(0)
    } agent-days of normal traffic.`,
    '',
    'The control column counts the instances whose agent had an anomaly of an accepted kind in' +
    ' the same hours 7 days earlier, with no attack: how often the accepted kinds fire anyway in' +
    ' a window of that length. A recall close to its control rate is chance, not detection.',
    '',
    '| attack | variant | instances | detected | recall | control |',
    '| --- | --- | --- | --- | --- | --- |',
    ...variantRows,
    '',
    '### False positives on normal traffic',
    '',
    `Normal traffic: every agent's entries outside its attack window, after the warm-up (days ${p.warmupDays}-${p.days}):` +
    ` ${n.agentDays.toFixed(1)} agent-days (calendar hours outside attack windows / 24) and ${
      n.activeAgentHours.toLocaleString('en')
    } active agent-hours (UTC hours with at least one request entry of the agent).`,
    '',
    '| measure | value | goal | verdict |',
    '| --- | --- | --- | --- |',
    `| active agent-hours with any anomaly | ${n.agentHoursWithAnomaly} / ${n.activeAgentHours} = ${
      _pct(n.hourFraction)
    } | <= 1% | ${verdict(n.hourFraction <= GOAL_FALSE_POSITIVES)} |`,
    `| active agent-hours with a medium or high anomaly | ${n.agentHoursWithMediumOrHigh} = ${
      _pct(n.mediumOrHighHourFraction)
    } | | |`,
    `| active agent-hours with any anomaly but \`${n.withoutNoisiest.kind}\` | ${n.withoutNoisiest.hours} = ${
      _pct(n.withoutNoisiest.fraction)
    } | <= 1% | ${verdict(n.withoutNoisiest.fraction <= GOAL_FALSE_POSITIVES)} |`,
    `| anomalies per agent-day | ${n.anomalies} / ${n.agentDays.toFixed(1)} = ${
      n.perAgentDay.toFixed(3)
    } | | |`,
    '',
    '| kind | low | medium | high | total | per agent-day | active agent-hours hit |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ..._normalRows(n),
    '',
    `${n.errorSpikesInOutages} of the ${
      SEVERITIES.reduce((s, v) => s + n.bySeverity.error_spike[v], 0)
    } \`error_spike\`s on normal traffic fell in an hour with a shared upstream outage of one of` +
    " the agent's hosts (a real upstream problem, not misbehaviour).",
    '',
    `Warm-up (days 0-${p.warmupDays}, fallback thresholds and learning): ${w.anomalies} anomalies,` +
    ` ${w.perAgentDay.toFixed(3)} per agent-day, ${_pct(w.hourFraction)} of ${
      w.activeAgentHours.toLocaleString('en')
    } active agent-hours (${_pct(w.mediumOrHighHourFraction)} medium or high).`,
    '',
    '| kind | low | medium | high | total | per agent-day | active agent-hours hit |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ..._normalRows(w),
    '',
    'Generator parameters: ' +
    [
      `start ${p.start} (a Monday), ${p.days} days, warm-up ${p.warmupDays} days`,
      `busy-hour rate log-normal (median ${p.busyRatePerHour.median} an hour, sigma ${p.busyRatePerHour.sigma}, clipped to ${p.busyRatePerHour.min}-${p.busyRatePerHour.max})`,
      `day factor log-normal sigma ${p.dayFactorSigma}, hour factor sigma ${p.hourFactorSigma}`,
      `legitimate burst in ${_pct(p.burstPerHour)} of hours at ${p.burstFactor.join('-')}x`,
      `upstream error rate log-uniform ${_pct(p.errorRate[0])}-${_pct(p.errorRate[1])}`,
      `per-hour rate limit on ${_pct(p.rateLimitShare)} of agents at ${
        p.rateLimitFactor.join('-')
      }x their busy rate`,
      `new host or credential on ${_pct(p.newHostPerWorkDay)} of work days`,
      `one stray denial on ${_pct(p.strayDenialPerWorkDay)} of work days`,
      `shared outages on ${_pct(p.outagePerHostDay)} of host-days, ${
        p.outageMinutes.join('-')
      } min`,
      `endpoint response medians log-uniform ${p.responseMedianBytes.join('-')} bytes, sigma ${
        p.responseSigma.join('-')
      }`,
    ].join('; ') + '. The attack models are in the header of bench/detection.ts.',
    '',
    '```sh',
    'node_modules/.bin/node bench/detection.ts',
    '```',
    '',
  ].join('\n');
}

if (process.argv[1]?.endsWith('detection.ts')) {
  process.stdout.write(detectionMarkdown(benchDetection()));
}
