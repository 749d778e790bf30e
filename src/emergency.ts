/**
 * Pulling an emergency brake, as anyone may: `emergency activate` in the home, and serve's
 * `POST /v1/emergency` for the users allowed on its socket (the dedicated-user deployment, where
 * agents cannot write the home). A brake only narrows access, so it needs no password.
 */
import type { AuditEvent } from './audit.ts';
import { activateBrake, type Brake, type BrakeRequest, checkBrakeRequest } from './brakes.ts';
import { usage } from './errors.ts';
import type { Home } from './home.ts';
import { loadVault } from './vault.ts';

/**
 * Writes the brake's records (in force from then on) and returns the audit entry the caller must
 * append next: without a MAC from the command line, with serve's key from serve. If that entry
 * cannot be written, the brake stays. The vault is read without checking its MAC: it only decides
 * whether the named agent or credential exists, that is, whether to refuse.
 */
export function pullBrake(
  home: Home,
  request: BrakeRequest,
  now: Date,
): { brake: Brake; event: AuditEvent } {
  const req = checkBrakeRequest(request);
  const body = loadVault(home).body;
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
  const brake = activateBrake(home, req, now);
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
