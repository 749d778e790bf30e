/**
 * `agent renew` (docs/monitoring.md#renewal): an agent extends its own access with its current
 * token, no password of its own. Granted only before the token expires, within the tier's renewal
 * budget, with a behaviour score at or above the tier's threshold, and with no anomaly whose
 * action is `refuse_renewal` since a human last issued the agent a token. Everything is computed
 * from the audit trail, which must verify completely first; nothing the agent sends is a number
 * that counts. A renewal is a fresh token (the old one stops working) with the tier's lifetime.
 * Renewal widens access, so entries written without the password (`"mac": null`) only count
 * against the agent: they can lower its score and can never clear an anomaly (issue #14).
 */
import {
  type Authenticated,
  authenticatedOnly,
  type Checked,
  checkedEntries,
  readAuditLog,
} from '../audit.ts';
import { verifyAuditLog } from '../audit_verify.ts';
import { denied, integrity, type TpError } from '../errors.ts';
import type { State } from '../state.ts';
import { checkAgent, newAgentToken } from '../policy.ts';
import { TIER_RULES } from '../tiers.ts';
import { type AgentRecord, type VaultKeys, verifyVault } from '../vault.ts';
import type { IssuedToken } from '../agents.ts';
import { detectAnomalies } from './anomalies.ts';
import { type AuditEntry, behaviourOf } from './behaviour.ts';
import { scoreOf } from './report.ts';

export interface RenewalCheck {
  score: number;
  min_score: number;
  renewals: number;
  budget: number;
}

/** Renews or throws `denied` (exit 3) naming why; the outcome is audited either way. */
export async function renewAgent(
  state: State,
  keys: VaultKeys,
  token: string | null,
  now: Date,
): Promise<IssuedToken & RenewalCheck> {
  const file = state.vault.read();
  verifyVault(file, keys);
  const agent = checkAgent(file.body.agents, token, now);
  const bytes = readAuditLog(state.home);
  const verified = verifyAuditLog(bytes, {
    macKey: keys.auditKeys,
    recordedHead: file.body.audit_head,
  });
  if (!verified.ok) {
    throw integrity(
      'audit_not_intact',
      "the audit trail does not verify, so the agent's behaviour cannot be judged",
      'run `trust-protocol audit verify`; a human can issue a token with `trust-protocol agent token ID`',
    );
  }
  const entries = checkedEntries(bytes, keys.auditKeys);
  const check = renewalCheck(agent, entries, now);
  type Outcome = { refusal: TpError } | { issued: IssuedToken & RenewalCheck };
  const outcome = await state.vault.update<Outcome>(keys, (body) => {
    const a = body.agents.find((x) => x.id === agent.id) as AgentRecord;
    const refusal = check.refusal;
    if (refusal !== null) {
      return {
        result: { refusal },
        events: [_event(agent.id, 'denied', { reason: refusal.code, ...check.facts })],
      };
    }
    const { token: fresh, sha256 } = newAgentToken();
    a.token_sha256 = sha256;
    a.token_expires_at = new Date(now.getTime() + TIER_RULES[a.tier].tokenLifetimeMs)
      .toISOString();
    a.renewals = (a.renewals ?? 0) + 1;
    a.updated_at = now.toISOString();
    const facts = { ...check.facts, renewals: a.renewals };
    return {
      result: {
        issued: {
          id: a.id,
          name: a.name,
          tier: a.tier,
          token: fresh,
          expires_at: a.token_expires_at,
          ...facts,
        },
      },
      events: [_event(a.id, 'ok', { ...facts, expires_at: a.token_expires_at })],
    };
  });
  if ('refusal' in outcome) throw outcome.refusal;
  return outcome.issued;
}

/** The pure decision: the facts, and the refusal if there is one. */
export function renewalCheck(
  agent: AgentRecord,
  entries: ReadonlyArray<Checked<AuditEntry>>,
  now: Date,
): { facts: RenewalCheck; refusal: TpError | null } {
  const rules = TIER_RULES[agent.tier];
  const own = entries.filter((e) => e.data?.agent === agent.id || e.actor?.id === agent.id);
  const score = _score(agent.id, authenticatedOnly(own), own, now);
  const facts: RenewalCheck = {
    score,
    min_score: rules.minScore,
    renewals: agent.renewals ?? 0,
    budget: rules.renewals,
  };
  const hint = `a human can issue a token: trust-protocol agent token ${agent.id}`;
  if (facts.renewals >= facts.budget) {
    return {
      facts,
      refusal: denied(
        'renewal_budget_spent',
        `agent ${agent.id} has renewed ${facts.renewals} times, its ${agent.tier} budget`,
        hint,
      ),
    };
  }
  const blocking = _blockingAnomaly(agent.id, entries);
  if (blocking !== null) {
    return {
      facts,
      refusal: denied(
        'renewal_refused_anomaly',
        `agent ${agent.id} had a ${blocking} anomaly since its token was issued`,
        `${hint} (after looking at \`trust-protocol monitor report\`)`,
      ),
    };
  }
  if (score < rules.minScore) {
    return {
      facts,
      refusal: denied(
        'renewal_score_too_low',
        `agent ${agent.id} scores ${score}; ${agent.tier} renewal needs ${rules.minScore}`,
        hint,
      ),
    };
  }
  return { facts, refusal: null };
}

/**
 * The score of the authenticated entries, lowered but never raised by the others: unverified
 * lines count against the agent (its denials before unsealing) but can neither add good
 * behaviour nor, by shifting a baseline or marking a host as seen, hide an anomaly.
 */
function _score(
  id: string,
  trusted: ReadonlyArray<Authenticated<AuditEntry>>,
  all: ReadonlyArray<Checked<AuditEntry>>,
  now: Date,
): number {
  const of = (entries: readonly AuditEntry[]) =>
    scoreOf(
      behaviourOf(entries, { now }).get(id),
      detectAnomalies(entries, { now }).filter((a) => a.agent === id),
      { now },
    );
  return Math.min(of(trusted), of(all));
}

/**
 * The kind of the last `refuse_renewal` anomaly after the last token a human issued, or null.
 * Only an authenticated token or registration clears one; any anomaly entry blocks.
 */
function _blockingAnomaly(id: string, entries: ReadonlyArray<Checked<AuditEntry>>): string | null {
  let blocking: string | null = null;
  for (const e of entries) {
    if (
      e.authenticated && (e.event === 'agent.token' || e.event === 'agent.register') &&
      e.data?.agent === id
    ) {
      blocking = null;
    }
    const actions = e.data?.actions;
    if (
      e.event === 'monitor.anomaly' && e.data?.agent === id && Array.isArray(actions) &&
      actions.includes('refuse_renewal')
    ) {
      blocking = String(e.data.kind);
    }
  }
  return blocking;
}

function _event(id: string, outcome: 'ok' | 'denied', data: Record<string, unknown>) {
  return {
    event: 'agent.renew' as const,
    actor: { type: 'agent' as const, id },
    outcome,
    data: { agent: id, ...data },
  };
}
