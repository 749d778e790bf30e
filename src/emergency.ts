/**
 * Pulling an emergency brake, as anyone may: `emergency activate` in the home, and serve's
 * `POST /v1/emergency` for the users allowed on its socket (the dedicated-user deployment, where
 * agents cannot write the home). A brake only narrows access, so it needs no password.
 */
import { type IssuedToken, issueToken } from './agents.ts';
import type { AuditEvent } from './audit.ts';
import {
  type Brake,
  type BrakeRequest,
  type BrakeScope,
  checkBrakeRequest,
  clearedKey,
} from './brakes.ts';
import { usage } from './errors.ts';
import type { State } from './state.ts';
import type { VaultKeys } from './vault.ts';

/**
 * Writes the brake's records (in force from then on) and returns the audit entry the caller must
 * append next: without a MAC from the command line, with serve's key from serve. If that entry
 * cannot be written, the brake stays. The vault is read without checking its MAC: it only decides
 * whether the named agent or credential exists, that is, whether to refuse.
 */
export async function pullBrake(
  state: State,
  request: BrakeRequest,
  now: Date,
): Promise<{ brake: Brake; event: AuditEvent }> {
  const req = checkBrakeRequest(request);
  const body = state.vault.read().body;
  if (req.scope === 'agent' && !body.agents.some((a) => a.id === req.target)) {
    throw usage(
      'no_such_agent',
      `no agent with id "${req.target}"`,
      'see `trust-protocol agent list`',
    );
  }
  if (req.scope === 'credential' && !body.credentials.some((c) => c.name === req.target)) {
    throw usage(
      'no_such_credential',
      `no credential named "${req.target}"`,
      'see `trust-protocol credential list`',
    );
  }
  if (
    req.scope === 'org' && ![...body.credentials, ...body.agents, ...body.publishers]
      .some((o) => o.org === req.target) &&
    !state.vault.read().slots.some((s) => s.org === req.target)
  ) {
    throw usage(
      'no_such_org',
      `no credential, agent, publisher or admin belongs to organisation "${req.target}"`,
      'see `trust-protocol agent list` and `trust-protocol admin list`',
    );
  }
  const brake = await state.brakes.activate(req, now);
  return {
    brake,
    event: {
      event: 'brake.activate',
      actor: { type: 'anyone' },
      outcome: 'ok',
      data: { brake: brake.id, scope: req.scope, target: req.target, reason: brake.reason },
    },
  };
}

/**
 * Lifts the brakes in force on one scope and target (password needed): their ids go into the
 * vault's MACed cleared list, one `brake.clear` entry each, then their records are tidied away.
 * With `newToken`, the braked agent gets a fresh token in the same change (its old one may have
 * leaked); otherwise it keeps its token.
 */
export async function clearBrakes(
  state: State,
  keys: VaultKeys,
  input: { scope: BrakeScope; target: string | null; newToken: boolean; now: Date },
): Promise<{ lifted: Brake[]; issued: IssuedToken | null }> {
  const { scope, target } = input;
  const tidy: string[] = [];
  const cleared = await state.vault.update(keys, (body) => {
    const active = state.brakes.active(body);
    const lifted = active.filter((b) => b.scope === scope && b.target === target);
    if (lifted.length === 0) throw usage('not_active', 'the brake was lifted meanwhile');
    for (const b of lifted) {
      if (b.id === 'unreadable') continue;
      // Another record under this id with another scope (written without the password): lift
      // this record only, so clearing one agent's brake never lifts a global or org brake.
      if (active.some((x) => x.id === b.id && (x.scope !== b.scope || x.target !== b.target))) {
        body.cleared_brakes.push(clearedKey(b));
      } else {
        body.cleared_brakes.push(b.id);
        tidy.push(b.id);
      }
    }
    const events: AuditEvent[] = lifted.map((b) => ({
      event: 'brake.clear',
      actor: { type: 'operator' },
      outcome: 'ok',
      data: { brake: b.id, scope, target },
    }));
    const token = input.newToken && scope === 'agent'
      ? issueToken(body, { id: target as string, now: input.now })
      : null;
    return {
      result: { lifted, issued: token?.result ?? null },
      events: [...events, ...(token?.events ?? [])],
    };
  });
  await state.brakes.tidyCleared(tidy, scope === 'global');
  return cleared;
}
