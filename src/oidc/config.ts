/**
 * OIDC sign-in configuration (issue #19, SPEC §15; docs/formats.md#oidc): the identity providers
 * an owner trusts and which identity (issuer, subject) is which admin. It lives in the vault body,
 * under the vault MAC, so the agent, which can write the home, cannot add a provider of its own or
 * map an identity it controls to an admin: an edit fails the MAC (exit 8). A link names an existing
 * admin (a key slot): an identity gets that admin's role, or less, never a key.
 */
import { type Admin, type Role, ROLES } from '../admins.ts';
import type { AuditEvent } from '../audit.ts';
import { denied, TpError, usage } from '../errors.ts';
import { arr, obj, str, strOrNull } from '../validate.ts';
import type { Change, VaultBody, VaultFile, VerifiedVault } from '../vault.ts';

/**
 * Where `admin login` saves the signed-in admin's ID token in the home (mode 0600). A bearer
 * credential, not state: `store migrate` leaves it out of the copy.
 */
export const ADMIN_TOKEN_FILE = 'admin-token.json';

export interface OidcIssuer {
  /** The issuer identifier, exactly as the provider's tokens carry it in `iss` (https). */
  issuer: string;
  client_id: string;
  /** The `aud` tokens must carry; null: the client id (an ID token's audience). */
  audience: string | null;
  /** A claim naming the role (a string or a list of strings); null: the admin's own role. */
  role_claim: string | null;
  added_at: string;
}

export interface OidcLink {
  admin: string;
  issuer: string;
  subject: string;
}

export interface OidcConfig {
  issuers: OidcIssuer[];
  links: OidcLink[];
}

/** Who signed in: the linked admin with the role they act with, and the identity. */
export interface OidcIdentity {
  admin: Admin;
  /** The linked admin's own role (their key slot's). */
  slotRole: Role;
  issuer: string;
  subject: string;
  expiresAt: Date | null;
}

export function oidcOf(body: { oidc?: OidcConfig }): OidcConfig {
  return body.oidc ?? { issuers: [], links: [] };
}

/** An issuer identifier: https, no user info, query or fragment (OpenID Connect Discovery §3). */
export function checkIssuer(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw usage('bad_issuer', `not an issuer URL: ${JSON.stringify(text)}`);
  }
  if (
    url.protocol !== 'https:' || url.username !== '' || url.password !== '' || url.search !== '' ||
    url.hash !== '' || /[\s\\]/.test(text)
  ) {
    throw usage(
      'bad_issuer',
      `an issuer is an https URL without user, query or fragment: ${JSON.stringify(text)}`,
      "use the `issuer` value of the provider's /.well-known/openid-configuration",
    );
  }
  return text;
}

function _checkText(v: string, what: string): string {
  if (v === '' || v.length > 512 || !/^[\x21-\x7e]+$/.test(v)) {
    throw usage('bad_flag', `${what} must be 1 to 512 printable ASCII characters without spaces`);
  }
  return v;
}

/** `admin oidc add`: trusts an issuer (or replaces its settings). Owner only (not in the role table). */
export function addIssuer(
  body: VaultBody,
  input: Omit<OidcIssuer, 'added_at'>,
  now: Date,
): Change<OidcIssuer> {
  const record: OidcIssuer = {
    issuer: checkIssuer(input.issuer),
    client_id: _checkText(input.client_id, '--client-id'),
    audience: input.audience === null ? null : _checkText(input.audience, '--audience'),
    role_claim: input.role_claim === null ? null : _checkText(input.role_claim, '--role-claim'),
    added_at: now.toISOString(),
  };
  const config = oidcOf(body);
  body.oidc = {
    issuers: [...config.issuers.filter((i) => i.issuer !== record.issuer), record],
    links: config.links,
  };
  const { added_at: _, ...data } = record;
  return { result: record, events: [_event('admin.oidc_issuer', data)] };
}

/**
 * Refuses a link that cannot be made, before anything is written: an issuer that is not
 * configured, a malformed subject, or an identity that already signs in as another admin (moving
 * it takes `admin oidc remove --subject` first, so no command takes an identity from an admin
 * silently). `admin link`, and `admin add --issuer --subject` before it asks for a password.
 */
export function checkLink(file: VaultFile, link: OidcLink): OidcLink {
  const config = oidcOf(file.body);
  if (!config.issuers.some((i) => i.issuer === link.issuer)) {
    throw usage(
      'unknown_issuer',
      `issuer ${JSON.stringify(link.issuer)} is not configured`,
      'add it first: trust-protocol admin oidc add --issuer URL --client-id ID',
    );
  }
  const subject = _checkText(link.subject, '--subject');
  // A link whose admin was removed signs nobody in (`identify`): it may be replaced.
  const taken = linkedSlot(file, link.issuer, subject);
  if (taken !== undefined && taken.name !== link.admin) {
    throw new TpError(
      'usage',
      'subject_linked',
      `subject ${subject} of ${link.issuer} already signs in as admin "${taken.name}"; nothing was changed`,
      {
        hint:
          `to move it, remove that link first: trust-protocol admin oidc remove --issuer ${link.issuer} --subject ${subject}`,
      },
    );
  }
  return { admin: link.admin, issuer: link.issuer, subject };
}

/** `admin link`: the identity (issuer, subject) signs in as admin `name`. Owner only. */
export function linkAdmin(
  body: VaultBody,
  file: VaultFile,
  link: OidcLink,
): Change<OidcLink> {
  if (!file.slots.some((s) => s.name === link.admin)) {
    throw new TpError('usage', 'unknown_admin', `no admin named "${link.admin}" in this vault`, {
      hint: 'an identity links to an existing admin: see `trust-protocol admin list`',
    });
  }
  const record = checkLink(file, link);
  const config = oidcOf(body);
  body.oidc = {
    issuers: config.issuers,
    links: [
      ...config.links.filter((l) => !(l.issuer === record.issuer && l.subject === record.subject)),
      record,
    ],
  };
  return { result: record, events: [_event('admin.link', { ...record })] };
}

/**
 * `admin oidc remove`: one link (with `subject`), or the issuer and all its links. Owner only.
 * The next request with a token it covered is refused: serve reads the vault on every request.
 */
export function removeOidc(
  body: VaultBody,
  target: { issuer: string; subject: string | null },
): Change<{ issuers: number; links: number }> {
  const config = oidcOf(body);
  const linkGone = (l: OidcLink) =>
    l.issuer === target.issuer && (target.subject === null || l.subject === target.subject);
  const issuers = target.subject === null
    ? config.issuers.filter((i) => i.issuer !== target.issuer)
    : config.issuers;
  const links = config.links.filter((l) => !linkGone(l));
  const removed = {
    issuers: config.issuers.length - issuers.length,
    links: config.links.length - links.length,
  };
  if (removed.issuers + removed.links === 0) {
    throw usage('no_change', 'no such issuer or link; nothing was changed');
  }
  body.oidc = { issuers, links };
  return {
    result: removed,
    events: [_event('admin.oidc_remove', { issuer: target.issuer, subject: target.subject })],
  };
}

function _event(
  event: 'admin.oidc_issuer' | 'admin.link' | 'admin.oidc_remove',
  data: Record<string, unknown>,
) {
  return { event, actor: { type: 'operator' as const }, outcome: 'ok' as const, data };
}

/** The less powerful of two roles (ROLES runs from most to least powerful). */
export function lesserRole(a: Role, b: Role): Role {
  return ROLES.indexOf(a) >= ROLES.indexOf(b) ? a : b;
}

/** The key slot an identity is linked to; none when unlinked or when its admin was removed. */
export function linkedSlot(
  file: VaultFile,
  issuer: string,
  subject: string,
): VaultFile['slots'][number] | undefined {
  const link = oidcOf(file.body).links.find((l) => l.issuer === issuer && l.subject === subject);
  return link === undefined ? undefined : file.slots.find((s) => s.name === link.admin);
}

/**
 * The admin an identity verified by `verifyToken` signs in as, in a vault whose MAC was checked.
 * The role is the linked slot's, lowered by the role claim where the issuer has one (a claim can
 * never raise it), and by `cap` (the admin who unsealed serve: its role and its organisation).
 */
export function identify(
  file: VerifiedVault,
  issuer: OidcIssuer,
  claims: Record<string, unknown>,
  cap: Admin,
): OidcIdentity {
  const subject = typeof claims.sub === 'string' ? claims.sub : '';
  const slot = linkedSlot(file, issuer.issuer, subject);
  if (slot === undefined) {
    throw new TpError(
      'denied',
      'unlinked_identity',
      'this identity is not linked to an admin of this vault',
      { hint: 'an owner links it: trust-protocol admin link NAME --issuer URL --subject SUB' },
    );
  }
  // Confined as the slot is, and never outside the organisation of the admin who unsealed serve.
  if (cap.org !== undefined && slot.org !== undefined && slot.org !== cap.org) {
    throw denied(
      'org_denied',
      `admin "${slot.name}" belongs to organisation "${slot.org}"; this serve acts for "${cap.org}" only`,
      "sign in to a serve unsealed by an admin of the identity's organisation, or an instance-wide one",
    );
  }
  const org = cap.org ?? slot.org;
  let role = lesserRole(slot.role, cap.role);
  if (issuer.role_claim !== null) {
    const claimed = _claimedRole(claims[issuer.role_claim]);
    if (claimed === null) {
      throw denied(
        'no_role_claim',
        `the token's "${issuer.role_claim}" claim names no role (owner, admin, operator, auditor)`,
        'ask the identity provider to issue the role claim, or an owner to drop --role-claim',
      );
    }
    role = lesserRole(role, claimed);
  }
  return {
    admin: org === undefined ? { name: slot.name, role } : { name: slot.name, role, org },
    slotRole: slot.role,
    issuer: issuer.issuer,
    subject,
    expiresAt: typeof claims.exp === 'number' ? new Date(claims.exp * 1000) : null,
  };
}

/** The most powerful role a claim names (a string or a list); null when it names none. */
function _claimedRole(v: unknown): Role | null {
  const names = Array.isArray(v) ? v : [v];
  const roles = ROLES.filter((r) => names.includes(r));
  return roles[0] ?? null;
}

/** An OIDC admin's change: each event says it came through a sign-in, and by which identity. */
export function viaOidc(identity: OidcIdentity, events: readonly AuditEvent[]): AuditEvent[] {
  return events.map((e) => ({
    ...e,
    data: {
      ...e.data,
      via: { method: 'oidc', issuer: identity.issuer, subject: identity.subject },
    },
  }));
}

export function parseOidc(v: unknown): OidcConfig {
  const o = obj(v, 'body.oidc');
  return {
    issuers: arr(o.issuers, 'oidc.issuers').map((x, i) => {
      const f = `oidc.issuers[${i}]`;
      const r = obj(x, f);
      return {
        issuer: str(r.issuer, `${f}.issuer`),
        client_id: str(r.client_id, `${f}.client_id`),
        audience: strOrNull(r.audience, `${f}.audience`),
        role_claim: strOrNull(r.role_claim, `${f}.role_claim`),
        added_at: str(r.added_at, `${f}.added_at`),
      };
    }),
    links: arr(o.links, 'oidc.links').map((x, i) => {
      const f = `oidc.links[${i}]`;
      const r = obj(x, f);
      return {
        admin: str(r.admin, `${f}.admin`),
        issuer: str(r.issuer, `${f}.issuer`),
        subject: str(r.subject, `${f}.subject`),
      };
    }),
  };
}
