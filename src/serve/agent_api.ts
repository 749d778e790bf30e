/**
 * What an agent may ask serve about itself, read-only (issue #15): whether a template would be
 * allowed (`POST /v1/check`), which credentials it may use (`GET /v1/credentials`), and its own
 * tier, expiry, brakes and rate budget (`GET /v1/agent/status`). Each answer is read from the
 * vault after its MAC was checked with serve's keys; brakes are read as for a request (a brake
 * record may only narrow). Nothing here decrypts a value, writes an audit entry, counts towards a
 * rate limit or the monitor, or changes any state: it can widen nothing (docs/decisions.md).
 */
import type { Authenticated, LogEntry } from '../audit.ts';
import { type Brake, orgsOf } from '../brakes.ts';
import { checkBrakes, checkEnvironment, prepareTemplate } from '../broker.ts';
import { parseRate } from '../credentials.ts';
import { TpError } from '../errors.ts';
import { checkAgent, checkGrant, checkRates, decide, findAgentByToken } from '../policy.ts';
import type { State } from '../state.ts';
import type { AgentRecord, CredentialRecord, VaultFile, VerifiedVault } from '../vault.ts';

export interface AgentApiDeps {
  state: State;
  env: Readonly<Record<string, string | undefined>>;
  /** The vault as on disk now, its MAC checked with serve's keys (throws integrity otherwise). */
  load: () => VerifiedVault;
  /** Called with the brakes in force as soon as they are read (serve records new ones). */
  sawBrakes: (file: VaultFile, active: readonly Brake[]) => Promise<void>;
  /** Authenticated audit entries since a time, newest first (read without the lock). */
  recent: (since: Date) => Array<Authenticated<LogEntry>>;
  now: Date;
}

export interface CheckAnswer {
  allowed: boolean;
  agent: string;
  credentials: string[];
}

/**
 * The decision `execute()` would reach before unsealing, on authenticated state, plus the
 * credential rate limits: throws the TpError a request would get. A token that names no agent
 * throws too; the caller answers it as an authentication failure, not as a decision.
 */
export async function checkTemplate(
  deps: AgentApiDeps,
  token: string | null,
  json: unknown,
): Promise<CheckAnswer> {
  const file = deps.load();
  const agentId = token === null ? null : findAgentByToken(file.body.agents, token)?.id ?? null;
  const active = deps.state.brakes.active(file.body);
  await deps.sawBrakes(file, active);
  checkBrakes(deps.state, file, agentId, []);
  const parsed = prepareTemplate({ json });
  checkBrakes(deps.state, file, agentId, parsed.names);
  checkEnvironment(deps.env);
  const decision = decide(file.body, { token, ...parsed }, deps.now);
  checkRates(decision.credentials, deps.recent, deps.now);
  return {
    allowed: true,
    agent: decision.agent.id,
    credentials: decision.credentials.map((c) => c.name),
  };
}

/**
 * The credentials granted to the agent (that exist): where each may go and how, never its value,
 * its length or any part of it. `usable` is false when the agent's tier is below the minimum.
 */
export function agentCredentials(deps: AgentApiDeps, token: string | null) {
  const file = deps.load();
  const agent = checkAgent(file.body.agents, token, deps.now);
  return {
    agent: agent.id,
    credentials: _granted(file, agent).map((c) => ({
      name: c.name,
      allowed_domains: c.any_domain ? [] : [...c.allowed_domains],
      any_domain: c.any_domain,
      placements: [...c.placements],
      base_url: c.base_url,
      gateway: c.base_url !== null && c.inject !== null ? `/v1/gateway/${c.name}/` : null,
      min_tier: c.min_tier,
      rate: c.rate,
      usable: _tierOk(agent, c),
    })),
  };
}

/** The agent's own tier and expiry, the brakes that stop it now, and each rate budget left. */
export function agentStatus(
  deps: AgentApiDeps,
  token: string | null,
  agentRate: string | null,
) {
  const file = deps.load();
  const agent = checkAgent(file.body.agents, token, deps.now);
  const granted = _granted(file, agent);
  const brakes = deps.state.brakes.active(file.body).filter((b) =>
    b.scope === 'global' || (b.scope === 'agent' && b.target === agent.id) ||
    (b.scope === 'credential' && agent.grants.includes(b.target ?? '')) ||
    (b.scope === 'org' && orgsOf(file.body, agent.id, agent.grants).includes(b.target ?? ''))
  );
  const rates = granted.filter((c) => c.rate !== null).map((c) => {
    const { count, periodSeconds } = parseRate(c.rate as string);
    const since = new Date(deps.now.getTime() - periodSeconds * 1000);
    const used = deps.recent(since).filter((e) =>
      e.event === 'request.allowed' && Array.isArray(e.data.credentials) &&
      e.data.credentials.includes(c.name)
    );
    const oldest = used[used.length - 1];
    return {
      credential: c.name,
      rate: c.rate,
      used: used.length,
      remaining: Math.max(0, count - used.length),
      resets_at: oldest === undefined
        ? null
        : new Date(Date.parse(oldest.ts) + periodSeconds * 1000).toISOString(),
    };
  });
  return {
    agent: {
      id: agent.id,
      name: agent.name,
      tier: agent.tier,
      state: agent.state,
      token_expires_at: agent.token_expires_at,
      grants: [...agent.grants],
    },
    brakes: brakes.map((b) => ({
      scope: b.scope,
      target: b.target,
      reason: b.reason,
      activated_at: b.activated_at,
    })),
    braked: brakes.length > 0,
    rate_limits: rates,
    agent_rate: agentRate,
  };
}

/** Kinds of refusal that are a decision about the template (the rest: serve cannot answer). */
export function isDecision(e: unknown): e is TpError {
  return e instanceof TpError && ['usage', 'denied', 'brake'].includes(e.kind);
}

function _granted(file: VaultFile, agent: AgentRecord): CredentialRecord[] {
  return file.body.credentials.filter((c) => agent.grants.includes(c.name));
}

function _tierOk(agent: AgentRecord, c: CredentialRecord): boolean {
  try {
    checkGrant(agent, [c], c.name);
    return true;
  } catch {
    return false;
  }
}
