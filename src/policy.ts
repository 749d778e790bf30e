/**
 * Access decisions (SPEC §4-§6) as pure functions over the vault body: who is asking (token),
 * may they use these credentials (state, grant, tier), and may the request go where it goes
 * (domain, scheme, port, placement). Each refusal is a `denied` TpError whose code is audited.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { Buffer } from 'node:buffer';
import { sha256, toHex, utf8 } from './bytes.ts';
import { matchTarget, parseDomainPattern } from './domain.ts';
import type { Authenticated, RecentEntry } from './audit.ts';
import { parseRate } from './credentials.ts';
import { denied, TpError } from './errors.ts';
import { sameOrg } from './orgs.ts';
import type { PlaceholderUse } from './template.ts';
import { tierRank } from './tiers.ts';
import type { AgentRecord, CredentialRecord } from './vault.ts';

export const TOKEN_PREFIX = 'tpat_';

export function newAgentToken(): { token: string; sha256: string } {
  const token = TOKEN_PREFIX + Buffer.from(randomBytes(32)).toString('base64url');
  return { token, sha256: tokenHash(token) };
}

export function tokenHash(token: string): string {
  return toHex(sha256(utf8.encode(token)));
}

/** Compares against every agent in constant time per comparison; the token is never stored. */
export function findAgentByToken(
  agents: readonly AgentRecord[],
  token: string,
): AgentRecord | null {
  const presented = sha256(utf8.encode(token));
  let found: AgentRecord | null = null;
  for (const agent of agents) {
    if (agent.token_sha256 === null) continue;
    // Two SHA-256 digests: equal lengths, so timingSafeEqual alone is constant time.
    const stored = Buffer.from(agent.token_sha256, 'hex');
    if (stored.length === presented.length && timingSafeEqual(presented, stored)) found = agent;
  }
  return found;
}

export function checkAgent(
  agents: readonly AgentRecord[],
  token: string | null,
  now: Date,
): AgentRecord {
  if (token === null || token === '') {
    throw denied(
      'no_token',
      'no agent token was presented',
      'set TRUST_PROTOCOL_TOKEN or pass --token-file PATH',
    );
  }
  const agent = findAgentByToken(agents, token);
  if (agent === null) {
    throw denied(
      'bad_token',
      'the agent token is not valid',
      'ask the operator for a token: `trust-protocol agent token ID`',
    );
  }
  if (agent.state !== 'active') {
    throw denied(`agent_${agent.state}`, `agent ${agent.id} is ${agent.state}`);
  }
  if (agent.token_expires_at === null || Date.parse(agent.token_expires_at) <= now.getTime()) {
    throw denied(
      'token_expired',
      `the token of agent ${agent.id} has expired`,
      `ask the operator for a fresh one: \`trust-protocol agent token ${agent.id}\``,
    );
  }
  return agent;
}

/** Unknown and ungranted credentials get the same answer, so an agent cannot enumerate names. */
export function checkGrant(
  agent: AgentRecord,
  credentials: readonly CredentialRecord[],
  name: string,
): CredentialRecord {
  const credential = credentials.find((c) => c.name === name);
  if (credential === undefined || !agent.grants.includes(name)) {
    throw denied(
      'not_granted',
      `agent ${agent.id} has no grant for credential "${name}"`,
      `the operator can run: trust-protocol agent grant ${agent.id} ${name}`,
    );
  }
  // A grant never crosses organisations, even one recorded before either object changed org.
  if (!sameOrg(agent, credential)) {
    throw denied(
      'org_mismatch',
      `agent ${agent.id} and credential "${name}" belong to different organisations`,
      "an agent may use only its own organisation's credentials",
    );
  }
  if (tierRank(agent.tier) < tierRank(credential.min_tier)) {
    throw denied(
      'tier_too_low',
      `credential "${name}" needs tier ${credential.min_tier}; agent ${agent.id} is ${agent.tier}`,
    );
  }
  return credential;
}

export function checkTarget(
  credential: CredentialRecord,
  url: URL,
  uses: readonly PlaceholderUse[],
): void {
  if (credential.any_domain) {
    if (url.protocol !== 'https:') {
      throw denied(
        'scheme_not_allowed',
        `credential "${credential.name}" may only be sent over https`,
      );
    }
  } else {
    const patterns = credential.allowed_domains.map((p) => parseDomainPattern(p));
    if (matchTarget(patterns, url) === null) {
      if (_plainHttpOnly(patterns, url)) {
        // The operator's mistake more often than an agent's probe: its own code (issue 16).
        throw denied(
          'scheme_not_allowed',
          `credential "${credential.name}" may not be sent to ${url.protocol}//${url.host}`,
          `the scheme is the reason: ${url.host} is allowed over https only; use https://, or ` +
            `allow plain http with http://${url.host} in --allowed-domains`,
        );
      }
      throw denied(
        'domain_not_allowed',
        `credential "${credential.name}" may not be sent to ${url.protocol}//${url.host}`,
        `allowed: ${credential.allowed_domains.join(', ')}`,
      );
    }
  }
  for (const use of uses) {
    if (use.name === credential.name && !credential.placements.includes(use.placement)) {
      throw denied(
        'placement_not_allowed',
        `credential "${credential.name}" may not be placed in the request ${use.placement}`,
        `allowed placements: ${credential.placements.join(', ')}`,
      );
    }
  }
}

/** The target is refused only because it is plain http: over https it would match. */
function _plainHttpOnly(patterns: Parameters<typeof matchTarget>[0], url: URL): boolean {
  if (url.protocol !== 'http:') return false;
  const https = new URL(url.href);
  https.protocol = 'https:';
  if (url.port === '') https.port = '';
  return matchTarget(patterns, https) !== null;
}

export interface Decision {
  agent: AgentRecord;
  credentials: CredentialRecord[];
}

/** Every credential the template names is checked on its own; all must pass. */
export function decide(
  state: { agents: readonly AgentRecord[]; credentials: readonly CredentialRecord[] },
  request: {
    token: string | null;
    names: readonly string[];
    url: URL;
    uses: readonly PlaceholderUse[];
  },
  now: Date,
): Decision {
  const agent = checkAgent(state.agents, request.token, now);
  const credentials = request.names.map((n) => checkGrant(agent, state.credentials, n));
  for (const c of credentials) checkTarget(c, request.url, request.uses);
  return { agent, credentials };
}

/**
 * Per-credential rate limits, counted from the audit trail's own `request.allowed` entries, so
 * every process (exec or serve) sees the same count. Runs under the audit lock (see AppendGuard).
 * Authenticated entries only: a count that lines written without the password could end early
 * would be a counter anyone can reset (issue #14).
 */
export function checkRates(
  credentials: readonly CredentialRecord[],
  recent: (since: Date) => Array<Authenticated<RecentEntry>>,
  now: Date,
): void {
  for (const c of credentials) {
    if (c.rate === null) continue;
    const { count, periodSeconds } = parseRate(c.rate);
    const since = new Date(now.getTime() - periodSeconds * 1000);
    const used = recent(since).filter((e) =>
      e.event === 'request.allowed' && Array.isArray(e.data.credentials) &&
      e.data.credentials.includes(c.name)
    );
    if (used.length >= count) {
      const oldest = used[used.length - 1] as RecentEntry;
      const retryAfter = Math.max(
        1,
        Math.ceil((Date.parse(oldest.ts) + periodSeconds * 1000 - now.getTime()) / 1000),
      );
      throw new TpError(
        'denied',
        'rate_limited',
        `credential "${c.name}" is over its rate limit of ${c.rate}`,
        { hint: `retry after ${retryAfter} s`, details: { retryAfterSeconds: retryAfter } },
      );
    }
  }
}
