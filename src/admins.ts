/**
 * Admins and their roles (issue #19, SPEC §15). Each admin has a key slot in vault.json
 * (src/slots.ts); the role of the slot that unsealed the vault travels with the keys
 * (`VaultKeys.admin`), and `FileVault.update` checks every audit event of a change against this
 * table before anything is written. A change records at least one event, so a command that forgets
 * to check a role is still refused: an event missing from the table is owner-only (fail closed).
 *
 * Roles are enforced by this code, not by cryptography: every slot unwraps the same data key, so
 * an admin running a modified program could do anything the data key allows. They protect against
 * mistakes and against honest admins overstepping, not against a hostile admin (threat model).
 */
import { TpError, usage } from './errors.ts';
import type { AuditEvent } from './audit.ts';
import type { EventName } from './events.ts';

export const ROLES = ['owner', 'admin', 'operator', 'auditor'] as const;
export type Role = (typeof ROLES)[number];

/** Who unsealed the vault: the name and role of the key slot that opened. */
export interface Admin {
  name: string;
  role: Role;
  /** The organisation it is confined to (src/orgs.ts); absent: instance-wide. */
  org?: string;
}

export const ADMIN_ENV = 'TRUST_PROTOCOL_ADMIN';

/**
 * The administrative events each role may record; an owner may record every event. Changing
 * one's own password (`vault.password_changed`) is open to every role; `audit.key_created` is
 * written the first time an older vault's checkpoint key is needed, by whoever needs it.
 */
const MAY: Record<Exclude<Role, 'owner'>, readonly EventName[]> = {
  admin: [
    'credential.add',
    'credential.update',
    'credential.rotate',
    'credential.remove',
    'agent.register',
    'agent.grant',
    'agent.ungrant',
    'agent.promote',
    'agent.demote',
    'agent.token',
    'agent.renew',
    'agent.suspend',
    'agent.resume',
    'agent.revoke',
    'publisher.add',
    'publisher.revoke',
    'brake.clear',
    'monitor.actions',
    'vault.password_changed',
    'audit.key_created',
  ],
  // agent.demote only narrows; the monitor of a serve an operator started may demote.
  operator: [
    'brake.clear',
    'agent.suspend',
    'agent.resume',
    'agent.demote',
    'vault.password_changed',
    'audit.key_created',
  ],
  auditor: ['vault.password_changed', 'audit.key_created'],
};

export function roleMay(role: Role, event: string): boolean {
  return role === 'owner' || (MAY[role] as readonly string[]).includes(event);
}

/** The roles that may record `event`, from the most to the least powerful. */
export function rolesFor(event: string): Role[] {
  return ROLES.filter((r) => roleMay(r, event));
}

/**
 * Refuses a change whose events the admin's role may not record (exit 3, before anything is
 * written). An agent's own actions (its renewal through serve, actor type `agent`) are decided by
 * its token and the policy, not by the role of whoever unsealed.
 */
export function checkRole(admin: Admin, events: readonly AuditEvent[]): void {
  for (const e of events) {
    if (e.actor.type === 'agent' || roleMay(admin.role, e.event)) continue;
    const needed = rolesFor(e.event);
    throw new TpError(
      'sealed',
      'role_denied',
      `admin "${admin.name}" has role ${admin.role}, which may not do this (${e.event}); nothing was changed`,
      {
        hint: `this needs role ${
          [...needed.filter((r) => r !== 'owner'), 'owner'].join(' or ')
        }: ask an owner, or unseal as such an admin (--admin NAME)`,
      },
    );
  }
}

/**
 * Names every admin action's actor: `{type: 'operator', id: NAME}`; an org-scoped admin's
 * actions also name its organisation (`data.org`), as the objects it may touch are all of it.
 */
export function byAdmin(admin: Admin, events: readonly AuditEvent[]): AuditEvent[] {
  return events.map((e) =>
    e.actor.type === 'operator' && e.actor.id === undefined
      ? {
        ...e,
        actor: { type: 'operator', id: admin.name },
        ...(admin.org === undefined ? {} : { data: { ...e.data, org: admin.org } }),
      }
      : e
  );
}

export function checkAdminName(name: string): string {
  // Not `agt_...`: audit readers match an actor id against agent ids.
  if (!/^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$/.test(name) || name.startsWith('agt_')) {
    throw usage(
      'bad_admin_name',
      'an admin name is 1 to 64 letters, digits, "_", ".", "@" or "-", starting with a letter or digit, and not agt_...',
    );
  }
  return name;
}
