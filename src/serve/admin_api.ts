/**
 * serve's admin API, `/v1/admin/...` (issue #19, SPEC §15): for admins signed in with an OpenID
 * Connect provider (`trust-protocol admin login`), who send their token as `Authorization:
 * Bearer`. serve holds the vault's keys, so it acts for them: each change goes through
 * `FileVault.update` with keys naming the linked admin and the role they act with, so the role
 * table (src/admins.ts) decides, and the audit entry names the admin and the identity. An agent
 * token is not an admin credential (401). Every refusal (401, 403) leaves one MACed `admin.denied`
 * entry: the route and the reason, and the identity only once its token verified; never the token
 * (docs/decisions.md, "OIDC sign-in"). The caller checks (Host, no Origin) have run already.
 */
import { agentView, setAgentState } from '../agents.ts';
import { type Admin, roleMay } from '../admins.ts';
import type { AuditEvent } from '../audit.ts';
import type { BrakeScope } from '../brakes.ts';
import { pullBrake } from '../emergency.ts';
import { TpError, usage, withAuditSeq } from '../errors.ts';
import { identify, linkedSlot, type OidcIdentity, viaOidc } from '../oidc/config.ts';
import type { OidcVerifier } from '../oidc/verify.ts';
import { invalidToken } from '../oidc/verify.ts';
import { checkSees, sees } from '../orgs.ts';
import { TOKEN_PREFIX } from '../policy.ts';
import type { State } from '../state.ts';
import type { VaultKeys, VerifiedVault } from '../vault.ts';
import { errorStatus } from './http_error.ts';

export interface AdminApiDeps {
  state: State;
  verifier: OidcVerifier;
  /** The vault, its MAC checked with serve's keys. */
  load: () => VerifiedVault;
  /** The role of the admin who unsealed serve: nobody signs in above it. */
  unsealedBy: Admin;
  /** A copy of serve's keys, wiped by the caller's `release`. */
  keys: () => { keys: VaultKeys; release: () => void };
  /** Appends with serve's audit key (for brakes, which are not vault changes). */
  audit: (events: AuditEvent[]) => Promise<{ seq: number }>;
  now: () => Date;
}

export interface AdminRequest {
  method: string;
  /** The path after `/v1/admin`. */
  path: string;
  bearer: string | null;
  body: () => Promise<Uint8Array>;
}

const AGENT_ROUTE = /^\/agents\/([^/]+)\/(suspend|resume)$/;

/** What is known of a refused request's caller, filled in as its sign-in gets further. */
interface _Seen {
  /** The token's issuer and subject, once its signature and claims verified. */
  identity: { issuer: string; subject: string } | null;
  /** The admin that identity is linked to, and its organisation once signed in. */
  admin: { name: string; org?: string } | null;
  /** The agent a suspend or resume named, when it is one of the vault's. */
  agent: string | null;
}

/**
 * The answer's status and JSON body; a refusal is thrown as a TpError, and a 401 or 403 is
 * audited first (`admin.denied`): if that entry cannot be written, its error is thrown instead.
 */
export async function adminApi(
  deps: AdminApiDeps,
  request: AdminRequest,
): Promise<{ status: number; json: unknown }> {
  const seen: _Seen = { identity: null, admin: null, agent: null };
  try {
    return await _answer(deps, request, seen);
  } catch (e) {
    if (!(e instanceof TpError) || ![401, 403].includes(errorStatus(e))) throw e;
    throw withAuditSeq(e, (await deps.audit([_denied(request, seen, e)])).seq);
  }
}

/**
 * One entry per refusal, with what serve itself decided or verified: the route's template (never
 * the path as sent, which the caller chooses), the method, the reason; the issuer and subject of
 * a verified token only. Never the token or a part of it, nor an unverified claim.
 */
function _denied(request: AdminRequest, seen: _Seen, error: TpError): AuditEvent {
  const { admin, identity } = seen;
  return {
    event: 'admin.denied',
    actor: admin === null ? { type: 'anyone' } : { type: 'operator', id: admin.name },
    outcome: 'denied',
    data: {
      reason: error.code,
      kind: error.kind,
      route: _route(request.path),
      method: request.method,
      ...(identity === null ? {} : { issuer: identity.issuer, subject: identity.subject }),
      ...(admin === null ? {} : { admin: admin.name }),
      ...(admin?.org === undefined ? {} : { org: admin.org }),
      ...(seen.agent === null ? {} : { agent: seen.agent }),
    },
  };
}

function _route(path: string): string {
  if (path === '/whoami' || path === '/agents' || path === '/brake') return `/v1/admin${path}`;
  const m = AGENT_ROUTE.exec(path);
  return m === null ? 'other' : `/v1/admin/agents/{id}/${m[2]}`;
}

async function _answer(
  deps: AdminApiDeps,
  request: AdminRequest,
  seen: _Seen,
): Promise<{ status: number; json: unknown }> {
  const who = await _signIn(deps, request.bearer, seen);
  const route = request.path;
  if (route === '/whoami') {
    _allow(request, 'GET');
    return {
      status: 200,
      json: {
        admin: who.admin.name,
        role: who.admin.role,
        slot_role: who.slotRole,
        via: 'oidc',
        issuer: who.issuer,
        subject: who.subject,
        expires_at: who.expiresAt?.toISOString() ?? null,
      },
    };
  }
  if (route === '/agents') {
    _allow(request, 'GET');
    const agents = deps.load().body.agents.filter((a) => sees(who.admin, a));
    return { status: 200, json: { agents: agents.map(agentView) } };
  }
  const m = AGENT_ROUTE.exec(route);
  if (m !== null) {
    _allow(request, 'POST');
    const id = decodeURIComponent(m[1] as string);
    if (deps.load().body.agents.some((a) => a.id === id)) seen.agent = id;
    const action = m[2] as 'suspend' | 'resume';
    const agent = await _change(deps, who, (body) => {
      const made = setAgentState(body, { id, action, now: deps.now() });
      return { result: made.result, events: made.events };
    });
    return { status: 200, json: { agent: agentView(agent) } };
  }
  if (route === '/brake') {
    _allow(request, 'POST');
    return { status: 200, json: await _brake(deps, who, await request.body()) };
  }
  throw usage(
    'not_found',
    'no such admin endpoint',
    'the admin endpoints are /v1/admin/whoami, /v1/admin/agents, ' +
      '/v1/admin/agents/ID/suspend, /v1/admin/agents/ID/resume and /v1/admin/brake',
  );
}

async function _signIn(
  deps: AdminApiDeps,
  token: string | null,
  seen: _Seen,
): Promise<OidcIdentity> {
  if (token === null) {
    throw new TpError('denied', 'admin_token_invalid', 'the admin API needs a bearer token', {
      hint: 'sign in: trust-protocol admin login --issuer URL --client-id ID',
    });
  }
  const file = deps.load();
  // An agent's token names an agent, never an admin: say so rather than "not a JWT".
  if (token.startsWith(TOKEN_PREFIX)) {
    throw invalidToken('an agent token is not an admin credential');
  }
  const { issuer, claims } = await deps.verifier.verify(token, file);
  const subject = typeof claims.sub === 'string' ? claims.sub : '';
  seen.identity = { issuer: issuer.issuer, subject };
  const slot = linkedSlot(file, issuer.issuer, subject);
  if (slot !== undefined) seen.admin = { name: slot.name };
  const who = identify(file, issuer, claims as Record<string, unknown>, deps.unsealedBy);
  seen.admin = who.admin.org === undefined
    ? { name: who.admin.name }
    : { name: who.admin.name, org: who.admin.org };
  return who;
}

/** One vault change as the signed-in admin: role checked, entries naming admin and identity. */
async function _change<T>(
  deps: AdminApiDeps,
  who: OidcIdentity,
  change: (body: Parameters<Parameters<State['vault']['update']>[1]>[0]) => {
    result: T;
    events: AuditEvent[];
  },
): Promise<T> {
  const { keys, release } = deps.keys();
  try {
    return await deps.state.vault.update({ ...keys, admin: who.admin }, (body) => {
      const made = change(body);
      return { result: made.result, events: viaOidc(who, made.events) };
    });
  } finally {
    release();
  }
}

async function _brake(
  deps: AdminApiDeps,
  who: OidcIdentity,
  bytes: Uint8Array,
): Promise<Record<string, unknown>> {
  // Pulling a brake is the operators' (SPEC §15): an auditor only reads.
  if (!roleMay(who.admin.role, 'agent.suspend')) {
    throw new TpError(
      'denied',
      'role_denied',
      `admin "${who.admin.name}" has role ${who.admin.role}, which may not pull a brake; nothing was changed`,
    );
  }
  let o: Record<string, unknown> = {};
  try {
    const json = bytes.length === 0 ? {} : JSON.parse(new TextDecoder('utf-8', { fatal: true })
      .decode(bytes));
    if (typeof json === 'object' && json !== null) o = json as Record<string, unknown>;
  } catch {
    throw usage(
      'bad_json',
      'the body must be JSON: {"scope", "agent_id"?, "credential_name"?, "org"?, "reason"}',
    );
  }
  const text = (v: unknown) => (typeof v === 'string' ? v : null);
  const scope = (text(o.scope) ?? 'global') as BrakeScope;
  const target = scope === 'agent'
    ? text(o.agent_id)
    : scope === 'credential'
    ? text(o.credential_name)
    : scope === 'org'
    ? text(o.org) ?? who.admin.org ?? null
    : null;
  // An org-scoped admin stops its own organisation's objects only, as it changes only those:
  // not every organisation (global) nor another's agent or credential.
  const body = deps.load().body;
  checkSees(who.admin, `the ${scope} brake on`, target ?? 'everything', {
    ...(scope === 'org' && target !== null ? { org: target } : {}),
    ...(scope === 'agent' ? { org: body.agents.find((a) => a.id === target)?.org } : {}),
    ...(scope === 'credential'
      ? { org: body.credentials.find((c) => c.name === target)?.org }
      : {}),
  });
  const { brake, event } = await pullBrake(deps.state, {
    scope,
    target,
    reason: text(o.reason) ?? '',
  }, deps.now());
  const [named] = viaOidc(who, [{ ...event, actor: { type: 'operator', id: who.admin.name } }]);
  await deps.audit([named as AuditEvent]);
  return { ...brake };
}

function _allow(request: AdminRequest, method: string): void {
  if (request.method !== method) {
    throw new TpError('usage', 'method_not_allowed', `this endpoint answers ${method} only`);
  }
}
