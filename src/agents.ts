/**
 * Agent management (SPEC §4): registration, grants within the tier's limit, tier changes, tokens
 * (stored only as SHA-256 hashes), suspension and revocation. Pure changes to the vault body.
 */
import { NAME_RE } from './grammar.ts';
import { randomBytes } from 'node:crypto';
import { Buffer } from 'node:buffer';
import { escapeControls } from './bytes.ts';
import { denied, TpError, usage } from './errors.ts';
import type { EventName } from './events.ts';
import { sameOrg } from './orgs.ts';
import { newAgentToken } from './policy.ts';
import { type Tier, TIER_RULES, tierRank } from './tiers.ts';
import type { AgentRecord, Change, VaultBody } from './vault.ts';

export interface IssuedToken {
  id: string;
  name: string;
  tier: Tier;
  token: string;
  expires_at: string;
}

/** An agent by its id, or by its name when exactly one agent has it. */
export function findAgent(body: VaultBody, idOrName: string): AgentRecord {
  const byId = body.agents.find((a) => a.id === idOrName);
  if (byId !== undefined) return byId;
  // A revoked agent's name may be taken again; it names the revoked one only when no other has it.
  const all = body.agents.filter((a) => a.name === idOrName);
  const live = all.filter((a) => a.state !== 'revoked');
  const named = live.length > 0 ? live : all;
  if (named.length === 1) return named[0] as AgentRecord;
  if (named.length > 1) {
    throw usage(
      'ambiguous_agent',
      `${named.length} agents are named "${escapeControls(idOrName)}"`,
      `name one by its id: ${named.map((a) => a.id).join(', ')}`,
    );
  }
  throw new TpError(
    'usage',
    'no_such_agent',
    `no agent with id or name "${escapeControls(idOrName)}"`,
    { hint: 'see `trust-protocol agent list`' },
  );
}

export function registerAgent(
  body: VaultBody,
  input: { name: string; tier: Tier; now: Date; org?: string },
): Change<IssuedToken> {
  if (!NAME_RE.test(input.name)) {
    throw usage(
      'bad_agent_name',
      'invalid agent name',
      'use 1-64 of A-Z a-z 0-9 _ . - starting with a letter or digit',
    );
  }
  // Names stand for agents wherever an id is taken: unique, and never mistaken for an id.
  if (input.name.startsWith('agt_')) {
    throw usage('bad_agent_name', 'an agent name may not start with "agt_" (ids do)');
  }
  if (body.agents.some((a) => a.name === input.name && a.state !== 'revoked')) {
    throw usage(
      'agent_name_taken',
      `an agent named "${input.name}" exists already`,
      'choose another name, or revoke the other agent first',
    );
  }
  if (input.tier === 'SACRED') {
    throw usage(
      'sacred_register',
      'an agent cannot be registered as SACRED',
      'register it at a lower tier, then `agent promote ID SACRED` at a terminal',
    );
  }
  const id = `agt_${Buffer.from(randomBytes(10)).toString('hex')}`;
  const ts = input.now.toISOString();
  const { token, sha256 } = newAgentToken();
  const expires = new Date(input.now.getTime() + TIER_RULES[input.tier].tokenLifetimeMs)
    .toISOString();
  body.agents.push({
    id,
    name: input.name,
    tier: input.tier,
    state: 'active',
    grants: [],
    token_sha256: sha256,
    token_expires_at: expires,
    created_at: ts,
    updated_at: ts,
    ...(input.org === undefined ? {} : { org: input.org }),
  });
  const org = input.org === undefined ? {} : { org: input.org };
  return {
    result: { id, name: input.name, tier: input.tier, token, expires_at: expires },
    events: [_event('agent.register', id, { name: input.name, tier: input.tier, ...org })],
  };
}

export function issueToken(body: VaultBody, input: { id: string; now: Date }): Change<IssuedToken> {
  const agent = findAgent(body, input.id);
  if (agent.state === 'revoked') {
    throw denied('agent_revoked', `agent ${agent.id} is revoked; it cannot get a token`);
  }
  const { token, sha256 } = newAgentToken();
  agent.token_sha256 = sha256;
  agent.token_expires_at = new Date(input.now.getTime() + TIER_RULES[agent.tier].tokenLifetimeMs)
    .toISOString();
  // A token a human issued restarts the agent's renewal budget.
  delete agent.renewals;
  agent.updated_at = input.now.toISOString();
  return {
    result: {
      id: agent.id,
      name: agent.name,
      tier: agent.tier,
      token,
      expires_at: agent.token_expires_at,
    },
    events: [_event('agent.token', agent.id, { expires_at: agent.token_expires_at })],
  };
}

export function grant(
  body: VaultBody,
  input: { id: string; credentials: string[]; now: Date },
): Change<AgentRecord> {
  const agent = findAgent(body, input.id);
  if (agent.state === 'revoked') throw denied('agent_revoked', `agent ${agent.id} is revoked`);
  for (const name of input.credentials) {
    if (!body.credentials.some((c) => c.name === name)) {
      throw usage(
        'no_such_credential',
        `no credential named "${escapeControls(name)}"`,
        'see `trust-protocol credential list`',
      );
    }
  }
  for (const name of input.credentials) {
    const c = body.credentials.find((x) => x.name === name) as { org?: string };
    if (!sameOrg(agent, c)) {
      throw denied(
        'org_mismatch',
        `credential "${escapeControls(name)}" is ${
          c.org === undefined ? 'instance-wide' : `of organisation ${c.org}`
        }; agent ${agent.id} is ${
          agent.org === undefined ? 'instance-wide' : `of organisation ${agent.org}`
        }`,
        'an agent may be granted only credentials of its own organisation',
      );
    }
  }
  for (const name of input.credentials) {
    const c = body.credentials.find((x) => x.name === name) as { min_tier: Tier };
    if (tierRank(agent.tier) < tierRank(c.min_tier)) {
      throw denied(
        'tier_too_low',
        `credential "${escapeControls(name)}" needs tier ${c.min_tier}; agent ${agent.id} is ` +
          `${agent.tier}, so it could never use it`,
        `promote it first: trust-protocol agent promote ${agent.id} ${c.min_tier}`,
      );
    }
  }
  const next = [...new Set([...agent.grants, ...input.credentials])];
  const limit = TIER_RULES[agent.tier].maxGrants;
  if (next.length > limit) {
    throw denied(
      'grant_limit',
      `a ${agent.tier} agent may hold ${limit} grant(s); this would make ${next.length}`,
      `promote the agent first, or ungrant something`,
    );
  }
  agent.grants = next;
  agent.updated_at = input.now.toISOString();
  return {
    result: agent,
    events: [_event('agent.grant', agent.id, { credentials: input.credentials })],
  };
}

export function ungrant(
  body: VaultBody,
  input: { id: string; credentials: string[]; now: Date },
): Change<AgentRecord> {
  const agent = findAgent(body, input.id);
  const missing = input.credentials.filter((c) => !agent.grants.includes(c));
  if (missing.length > 0) {
    throw usage(
      'not_granted',
      `agent ${agent.id} has no grant for: ${missing.map((m) => JSON.stringify(m)).join(', ')}`,
    );
  }
  agent.grants = agent.grants.filter((g) => !input.credentials.includes(g));
  agent.updated_at = input.now.toISOString();
  return {
    result: agent,
    events: [_event('agent.ungrant', agent.id, { credentials: input.credentials })],
  };
}

/**
 * Promotion raises the tier only; SACRED additionally needs `confirmedAtTerminal`, which only the
 * command line's interactive prompt can set.
 */
export function promote(
  body: VaultBody,
  input: { id: string; tier: Tier; now: Date; confirmedAtTerminal: boolean },
): Change<AgentRecord> {
  const agent = findAgent(body, input.id);
  if (agent.state === 'revoked') throw denied('agent_revoked', `agent ${agent.id} is revoked`);
  if (tierRank(input.tier) <= tierRank(agent.tier)) {
    throw usage(
      'not_a_promotion',
      `agent ${agent.id} is ${agent.tier}; ${input.tier} is not higher`,
      'use `agent demote` to lower a tier',
    );
  }
  if (input.tier === 'SACRED' && !input.confirmedAtTerminal) {
    throw denied(
      'sacred_needs_terminal',
      'promotion to SACRED needs a human at a terminal (password and typed confirmation)',
      'run the command in an interactive terminal; passwords from files or variables are not accepted for it',
    );
  }
  const from = agent.tier;
  agent.tier = input.tier;
  agent.updated_at = input.now.toISOString();
  return { result: agent, events: [_event('agent.promote', agent.id, { from, to: input.tier })] };
}

/**
 * Demotion always succeeds (a security-reducing action must never be blocked): grants beyond the
 * new tier's limit are removed, most recent first, and a token outliving the new lifetime is cut.
 */
export function demote(
  body: VaultBody,
  input: { id: string; tier: Tier; now: Date },
): Change<{ agent: AgentRecord; removedGrants: string[] }> {
  const agent = findAgent(body, input.id);
  if (tierRank(input.tier) >= tierRank(agent.tier)) {
    throw usage(
      'not_a_demotion',
      `agent ${agent.id} is ${agent.tier}; ${input.tier} is not lower`,
      'use `agent promote` to raise a tier',
    );
  }
  const from = agent.tier;
  const rules = TIER_RULES[input.tier];
  const removedGrants = agent.grants.slice(rules.maxGrants);
  agent.grants = agent.grants.slice(0, rules.maxGrants);
  const cap = input.now.getTime() + rules.tokenLifetimeMs;
  if (agent.token_expires_at !== null && Date.parse(agent.token_expires_at) > cap) {
    agent.token_expires_at = new Date(cap).toISOString();
  }
  agent.tier = input.tier;
  agent.updated_at = input.now.toISOString();
  return {
    result: { agent, removedGrants },
    events: [
      _event('agent.demote', agent.id, { from, to: input.tier, removed_grants: removedGrants }),
    ],
  };
}

export function setAgentState(
  body: VaultBody,
  input: { id: string; action: 'suspend' | 'resume' | 'revoke'; now: Date },
): Change<AgentRecord> {
  const agent = findAgent(body, input.id);
  if (agent.state === 'revoked') {
    throw denied(
      'agent_revoked',
      `agent ${agent.id} is revoked; revocation is permanent`,
      'register a new agent',
    );
  }
  const target = input.action === 'suspend'
    ? 'suspended'
    : input.action === 'resume'
    ? 'active'
    : 'revoked';
  if (agent.state === target) throw usage('no_change', `agent ${agent.id} is already ${target}`);
  agent.state = target;
  if (target === 'revoked') {
    agent.token_sha256 = null;
    agent.token_expires_at = null;
  }
  agent.updated_at = input.now.toISOString();
  return { result: agent, events: [_event(`agent.${input.action}`, agent.id, {})] };
}

/** What `agent list/show` print: never the token hash. */
export function agentView(a: AgentRecord) {
  return {
    id: a.id,
    name: a.name,
    tier: a.tier,
    state: a.state,
    grants: a.grants,
    token_expires_at: a.token_expires_at,
    created_at: a.created_at,
    updated_at: a.updated_at,
    org: a.org ?? null,
  };
}

function _event(event: EventName, id: string, data: Record<string, unknown>) {
  return {
    event,
    actor: { type: 'operator' as const },
    outcome: 'ok' as const,
    data: { agent: id, ...data },
  };
}
