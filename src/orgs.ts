/**
 * Organisations (issue #19, SPEC §15): credentials, agents and publishers may belong to one (an
 * optional `org` on their records), and so may an admin (an optional `org` on its key slot). An
 * admin with no org is instance-wide, as every admin was before; an admin with an org sees and
 * changes only the objects of that org. Like roles, this is enforced by this code, not by
 * cryptography (every slot unwraps the same data key): see docs/threat-model.md.
 *
 * Changes are checked in `FileVault.update` on what the change did to the vault body, before
 * anything is written, so a command that forgets its own check is still refused (fail closed).
 */
import type { AuditEvent } from './audit.ts';
import { canonicalJson } from './canonical.ts';
import { TpError, usage } from './errors.ts';
import { NAME_RE } from './grammar.ts';

/** Who acts: an admin's name, and its organisation when it has one. */
export interface OrgScoped {
  name: string;
  org?: string;
}

export function checkOrgName(name: string): string {
  if (!NAME_RE.test(name)) {
    throw usage(
      'bad_org_name',
      'an organisation name is 1-64 of A-Z a-z 0-9 _ . - starting with a letter or digit',
    );
  }
  return name;
}

/** Whether an object (its `org`, absent: instance-wide) and an admin or agent are in one org. */
export function sameOrg(a: { org?: string }, b: { org?: string }): boolean {
  return (a.org ?? null) === (b.org ?? null);
}

/** Whether `admin` may see `object`: instance-wide admins see everything. */
export function sees(admin: { org?: string } | null, object: { org?: string }): boolean {
  return admin === null || admin.org === undefined || admin.org === object.org;
}

function _orgDenied(admin: OrgScoped, what: string): TpError {
  return new TpError(
    'sealed',
    'org_denied',
    `admin "${admin.name}" belongs to organisation ${admin.org}, and ${what} does not; nothing was changed`,
    {
      hint:
        "an organisation's admin sees and changes only its own organisation's objects; ask an instance-wide admin or owner",
    },
  );
}

/** Refuses to show an object of another organisation to an org-scoped admin (exit 3). */
export function checkSees(
  admin: OrgScoped | null,
  kind: string,
  name: string,
  object: { org?: string },
): void {
  if (admin !== null && !sees(admin, object)) {
    throw _orgDenied(admin, `${kind} ${name}`);
  }
}

interface OrgBody {
  credentials: ReadonlyArray<{ name: string; org?: string }>;
  agents: ReadonlyArray<{ id: string; org?: string }>;
  publishers: ReadonlyArray<{ name: string; org?: string }>;
  cleared_brakes: readonly string[];
  monitor_actions?: unknown;
}

/** The body fields an org-scoped admin's change may touch besides its own org's objects. */
const BOOKKEEPING = new Set([
  'generation',
  'created_at',
  'audit_head',
  'change_in_flight',
  'known_brakes',
  'audit_signing',
  'credentials',
  'agents',
  'publishers',
  'cleared_brakes',
]);

/**
 * New objects made by an org-scoped admin get its org; then every credential, agent and publisher
 * the change added, removed or altered must belong to the admin's org, before and after. Changes
 * to instance-wide settings (the monitor's actions, anything not listed) are refused. Brakes
 * cleared must be brakes on the admin's org or its objects (`brakeOrg` says whose a brake is).
 * Changes whose events are all an agent's own (its renewal through serve) are decided by its token,
 * and the monitor's (a demote) only narrow.
 */
export function checkOrgChange(
  admin: OrgScoped,
  before: OrgBody,
  after: OrgBody,
  events: readonly AuditEvent[],
  brakeOrg: (id: string) => string | null | undefined,
): void {
  const org = admin.org;
  if (org === undefined) return;
  // The monitor's own changes (actor `system`: a demote, which only narrows) act on any agent
  // whoever's password unsealed; no admin command records a `system` actor.
  if (
    events.length > 0 && events.every((e) => e.actor.type === 'agent' || e.actor.type === 'system')
  ) {
    return;
  }
  for (const list of ['credentials', 'agents', 'publishers'] as const) {
    const key = (o: { name?: string; id?: string }) => (list === 'agents' ? o.id : o.name) ?? '';
    const old = new Map<string, { org?: string }>(
      (before[list] as Array<{ name?: string; id?: string; org?: string }>).map((o) => [key(o), o]),
    );
    const seen = new Set<string>();
    for (const o of after[list] as Array<{ name?: string; id?: string; org?: string }>) {
      const k = key(o);
      seen.add(k);
      const was = old.get(k);
      if (was === undefined && o.org === undefined) o.org = org;
      if (was !== undefined && canonicalJson(was) === canonicalJson(o)) continue;
      const kind = list.slice(0, -1);
      if (o.org !== org) throw _orgDenied(admin, `${kind} ${k}`);
      if (was !== undefined && was.org !== org) throw _orgDenied(admin, `${kind} ${k}`);
      // A grant names a credential: it must be the org's too (the agent's check says so again).
      const grants = (o as { grants?: string[] }).grants ?? [];
      const had = (was as { grants?: string[] } | undefined)?.grants ?? [];
      for (const g of grants.filter((x) => !had.includes(x))) {
        if (!after.credentials.some((c) => c.name === g && c.org === org)) {
          throw _orgDenied(admin, `credential ${g}`);
        }
      }
    }
    for (const [k, was] of old) {
      if (!seen.has(k) && was.org !== org) throw _orgDenied(admin, `${list.slice(0, -1)} ${k}`);
    }
  }
  for (const id of after.cleared_brakes) {
    if (!before.cleared_brakes.includes(id) && brakeOrg(id) !== org) {
      throw _orgDenied(admin, `brake ${id}`);
    }
  }
  const b = before as unknown as Record<string, unknown>;
  const a = after as unknown as Record<string, unknown>;
  for (const field of new Set([...Object.keys(b), ...Object.keys(a)])) {
    if (BOOKKEEPING.has(field)) continue;
    if (canonicalJson(b[field] ?? null) !== canonicalJson(a[field] ?? null)) {
      throw _orgDenied(admin, `the instance-wide setting ${field}`);
    }
  }
}
