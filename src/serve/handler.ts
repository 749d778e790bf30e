/**
 * The serve API as a plain `request -> response` function, independent of the runtime's HTTP
 * server (src/serve/node_http.ts adapts node:http to it). Every request that could use a
 * credential goes through `execute()`, exactly as `exec` does: the same checks in the same order,
 * the same audit entries, the vault re-read (and re-verified with the held keys) on each request,
 * so revocations, suspensions and brakes set by other processes apply to the next request.
 *
 * Requests and responses are plain data rather than fetch's Request/Response: `Headers` trims
 * values and merges repeated names, and `Response` refuses some statuses an upstream may send.
 */
import { copyMacKey } from '../audit_keys.ts';
import { AUDIT_SEQ_HEADER, MAX_BYTES_HEADER, TIMEOUT_HEADER } from './protocol.ts';
import { FIELD_VALUE_RE, NAME_RE, TOKEN_RE } from '../grammar.ts';
import type { BrakeScope } from '../brakes.ts';
import { pullBrake } from '../emergency.ts';
import type { AuditEvent } from '../audit.ts';
import { type BrokerDeps, type BrokeredResponse, checkBrakes, execute } from '../broker.ts';
import { decodeUtf8Strict } from '../bytes.ts';
import { denied, TpError, usage, withAuditSeq } from '../errors.ts';
import type { State } from '../state.ts';
import {
  DEFAULT_MAX_RESPONSE_BYTES,
  DEFAULT_TIMEOUT_MS,
  send as httpSend,
  type SendOptions,
} from '../http/client.ts';
import { checkAgent, checkGrant, findAgentByToken } from '../policy.ts';
import {
  hasUnknownBrakes,
  type VaultFile,
  type VaultKeys,
  type VerifiedVault,
  verifyVault,
  wipeKeys,
} from '../vault.ts';
import { blockingBrake, type Brake, brakeError, orgsOf } from '../brakes.ts';
import type { AgentRateLimiter } from './agent_rate.ts';
import { type AppendAudit, type HeadRecorder, keyedAudit } from './audit.ts';
import type { LiveMonitor } from '../monitor/live.ts';
import { renewAgent } from '../monitor/renewal.ts';
import { type GatewayCredential, gatewayTemplate, gatewayToken } from './gateway.ts';
import {
  asServeError,
  ERROR_HEADER,
  errorHeaders,
  errorJson,
  errorStatus,
  headerJson,
} from './http_error.ts';
import { OPENAPI } from './openapi.ts';
import {
  type AgentApiDeps,
  agentCredentials,
  agentStatus,
  checkTemplate,
  isDecision,
} from './agent_api.ts';
import type { RedactionCache } from '../redact.ts';
import { adminApi } from './admin_api.ts';
import { OidcVerifier } from '../oidc/verify.ts';

export type HeaderList = ReadonlyArray<readonly [string, string]>;

export interface ServeRequest {
  method: string;
  /** The request target as received (origin form: path and query). */
  target: string;
  /** In the order received, names as received, repeated names kept. */
  headers: HeaderList;
  /** The whole body; refuses one larger than `limit` bytes (413). */
  body(limit: number): Promise<Uint8Array>;
  /** Aborted when the client goes away before its response is complete. */
  signal: AbortSignal;
  /** Host header values (lower case) the listener that took this request answers to. */
  hosts: ReadonlySet<string>;
  /** Which listener took it: only the unix socket's users may pull a brake (/v1/emergency). */
  via: 'unix' | 'tcp';
  /**
   * Tells the adapter that this connection carries a valid agent token, so it is not cut to make
   * room for new connections before token-less ones are (absent once it knows).
   */
  agent?: () => void;
}

export interface ServeResponse {
  status: number;
  statusText?: string;
  headers: Array<[string, string]>;
  /**
   * Bytes, nothing, or a stream the adapter iterates to its end even when the client has gone
   * (the broker audits the outcome when its stream ends); if it throws, the connection is cut.
   */
  body: Uint8Array | AsyncIterable<Uint8Array> | null;
  /** Trailer fields, read once the stream ended (chunked responses only). */
  trailers?: () => Array<[string, string]>;
}

export type ServeHandler = (request: ServeRequest) => Promise<ServeResponse>;

export interface HandlerOptions {
  /** The home's vault, audit log and brakes, opened once for serve's life (src/state.ts). */
  state: State;
  /** serve's own environment, checked at start: agents do not control it. */
  env: Readonly<Record<string, string | undefined>>;
  /** Unsealed once at start; serve wipes them when it stops. */
  keys: VaultKeys;
  /** Records audit heads in the vault off the request path (shared with serve's own entries). */
  heads: HeadRecorder;
  /** Compiled redactions shared by requests; serve drops (and wipes) them when it stops. */
  redactions: RedactionCache;
  /** Behaviour monitoring, caught up after every request. */
  monitor: LiveMonitor;
  /** The operator's --cacert, --connect-to, --timeout, --max-response-bytes. */
  sendOptions: SendOptions;
  /** Aborted when serve stops: in-flight upstream requests are cut, new ones refused. */
  stopping: AbortSignal;
  agentRate: { limiter: AgentRateLimiter; rate: string } | null;
  /** `tcpUrl` is set once the front listens (serve.ts begin()); port 0 is known only then. */
  info: { version: string; expiresAt: Date; tcpUrl?: string | null };
  now?: () => Date;
  send?: typeof httpSend;
}

/** Templates (/v1/proxy) and gateway bodies. */
export const MAX_BODY_BYTES = 10 * 1024 * 1024;

const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH']);
/** Request headers that lower serve's limits for one request (never raise them). */

export function serveHandler(options: HandlerOptions): ServeHandler {
  const now = options.now ?? (() => new Date());
  const append = keyedAudit(options.state, options.keys, options.heads, options.now);
  // Once serve stops, the held keys are about to be wiped: no entry may be MACed with them.
  const audit: AppendAudit = (events) =>
    options.stopping.aborted ? Promise.reject(_stoppingError()) : append(events);
  const ctx: _Ctx = {
    options,
    now,
    audit,
    verified: new WeakSet(),
    oidc: new OidcVerifier(options.sendOptions, {
      now,
      ...(options.send ? { send: options.send } : {}),
    }),
  };
  const handler: ServeHandler = async (request) => {
    try {
      _checkCaller(request);
      const q = request.target.indexOf('?');
      const path = q < 0 ? request.target : request.target.slice(0, q);
      const query = q < 0 ? '' : request.target.slice(q);
      if (path === '/v1/health') {
        _allow(request, ['GET', 'HEAD']);
        return _json(200, {
          status: 'ok',
          version: options.info.version,
          expires_at: options.info.expiresAt.toISOString(),
          tcp_url: options.info.tcpUrl ?? null,
        });
      }
      if (path === '/v1/openapi.json') {
        _allow(request, ['GET', 'HEAD']);
        return _json(200, OPENAPI);
      }
      if (path === '/v1/proxy') return await _proxy(ctx, request);
      if (path === '/v1/check') {
        _allow(request, ['POST']);
        return await _check(ctx, request);
      }
      if (path === '/v1/credentials') {
        _allow(request, ['GET', 'HEAD']);
        return _json(200, agentCredentials(_apiDeps(ctx), _bearer(request.headers)));
      }
      if (path === '/v1/agent/status') {
        _allow(request, ['GET', 'HEAD']);
        return _json(
          200,
          agentStatus(
            _apiDeps(ctx),
            _bearer(request.headers),
            options.agentRate?.rate ?? null,
          ),
        );
      }
      if (path === '/v1/mcp') return await _mcp(ctx, request, handler);
      if (path === '/v1/agent/renew') {
        _allow(request, ['POST']);
        return await _renew(ctx, request);
      }
      if (path === '/v1/emergency') {
        _allow(request, ['POST']);
        return await _brake(ctx, request);
      }
      if (path.startsWith('/v1/admin/')) return await _admin(ctx, request, path);
      const gateway = /^\/v1\/gateway\/([^/]+)(\/.*)?$/.exec(path);
      if (gateway !== null && NAME_RE.test(gateway[1] as string)) {
        return await _gateway(ctx, request, {
          name: gateway[1] as string,
          path: gateway[2] ?? '',
          query,
        });
      }
      throw usage(
        'not_found',
        'no such endpoint',
        'the endpoints are /v1/health, /v1/proxy, /v1/gateway/CRED/PATH, /v1/check, ' +
          '/v1/credentials, /v1/agent/status, /v1/agent/renew, /v1/mcp, /v1/emergency, /v1/admin/... and ' +
          '/v1/openapi.json',
      );
    } catch (e) {
      return errorResponse(asServeError(e));
    }
  };
  return handler;
}

export function errorResponse(e: TpError): ServeResponse {
  return _json(errorStatus(e), errorJson(e), errorHeaders(e));
}

interface _Ctx {
  options: HandlerOptions;
  now: () => Date;
  audit: AppendAudit;
  /** Vault files whose MAC was checked with the held keys. */
  verified: WeakSet<VaultFile>;
  /** Admins' OIDC tokens: the issuers' key sets, cached for serve's life. */
  oidc: OidcVerifier;
}

/**
 * `/v1/admin/...` (src/serve/admin_api.ts): admins signed in with an OIDC provider, on the unix
 * socket and the loopback port alike, after the same Host and Origin checks as every endpoint.
 */
async function _admin(ctx: _Ctx, request: ServeRequest, path: string): Promise<ServeResponse> {
  const api = _apiDeps(ctx);
  const answer = await adminApi({
    state: ctx.options.state,
    verifier: ctx.oidc,
    load: api.load,
    unsealedBy: ctx.options.keys.admin,
    keys: () => {
      if (ctx.options.stopping.aborted) throw _stoppingError();
      const keys = _copyKeys(ctx.options.keys);
      return { keys, release: () => wipeKeys(keys) };
    },
    audit: ctx.audit,
    now: ctx.now,
  }, {
    method: request.method,
    path: path.slice('/v1/admin'.length),
    bearer: _bearer(request.headers),
    body: () => request.body(64 * 1024),
  });
  return _json(answer.status, answer.json);
}

/**
 * `POST /v1/emergency`: anyone allowed on the unix socket may pull a brake, with no token and no
 * password (in the dedicated-user deployment, the agents' group: an agent braking only narrows
 * access). Over TCP, which every local user can reach, it is refused.
 */
async function _brake(ctx: _Ctx, request: ServeRequest): Promise<ServeResponse> {
  if (request.via !== 'unix') {
    throw denied(
      'brake_needs_socket',
      "brakes are pulled through serve's unix socket only",
      "run `trust-protocol emergency activate` on the socket's machine, as a user allowed on it",
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(
      new TextDecoder('utf-8', { fatal: true }).decode(await request.body(64 * 1024)),
    );
  } catch (e) {
    if (e instanceof TpError) throw e;
    throw usage(
      'bad_json',
      'the body must be JSON: {"scope", "agent_id"?, "credential_name"?, "org"?, "reason"}',
    );
  }
  const o = (typeof json === 'object' && json !== null ? json : {}) as Record<string, unknown>;
  const text = (v: unknown) => (typeof v === 'string' ? v : null);
  const scope = (text(o.scope) ?? 'global') as BrakeScope;
  const { brake, event } = await pullBrake(ctx.options.state, {
    scope,
    target: scope === 'agent'
      ? text(o.agent_id)
      : scope === 'credential'
      ? text(o.credential_name)
      : scope === 'org'
      ? text(o.org)
      : null,
    reason: text(o.reason) ?? '',
  }, ctx.now());
  await ctx.audit([event]);
  return _json(200, { ...brake });
}

/** Only clients on this machine that name this server: no DNS rebinding, no web pages. */
function _checkCaller(request: ServeRequest): void {
  const hosts = request.headers.filter(([n]) => n.toLowerCase() === 'host');
  if (
    hosts.length !== 1 ||
    !request.hosts.has((hosts[0] as readonly [string, string])[1].toLowerCase())
  ) {
    throw denied(
      'bad_host',
      'the Host header does not name this loopback server',
      `serve answers to ${
        [...request.hosts].join(', ')
      } (a web page reaching it under another name is refused)`,
    );
  }
  if (request.headers.some(([n]) => n.toLowerCase() === 'origin')) {
    throw denied(
      'origin_refused',
      'requests from web pages (with an Origin header) are refused',
      'call serve from a program, not from a browser',
    );
  }
  if (!request.target.startsWith('/')) {
    throw usage('bad_target', 'the request target must be a path (origin form)');
  }
}

function _allow(request: ServeRequest, methods: readonly string[]): void {
  if (!methods.includes(request.method)) {
    throw new TpError(
      'usage',
      'method_not_allowed',
      `this endpoint answers ${methods.join(' and ')} only`,
    );
  }
}

async function _proxy(ctx: _Ctx, request: ServeRequest): Promise<ServeResponse> {
  _allow(request, ['POST']);
  const token = _bearer(request.headers);
  _claimConnection(ctx, request, token);
  const bytes = await request.body(MAX_BODY_BYTES);
  await _admit(ctx, token, { route: 'proxy' });
  const json = _templateJson(bytes);
  const response = await execute(
    { template: { json }, token, sendOptions: _sendOptions(ctx, request) },
    _deps(ctx),
  );
  return _forward(response, _acceptsTrailers(request.headers));
}

/** The body of /v1/proxy and /v1/check: a JSON template (SPEC §5), checked later by the broker. */
function _templateJson(bytes: Uint8Array): unknown {
  const text = decodeUtf8Strict(bytes);
  try {
    if (text === null) throw new Error('not UTF-8');
    return JSON.parse(text);
  } catch {
    throw usage(
      'bad_template',
      'the request body is not a JSON template',
      'send {"credential", "method", "url", "headers", "body"} as in `trust-protocol exec --help`',
    );
  }
}

/**
 * `POST /v1/check`: the decision for a template, answered without sending it, decrypting or
 * auditing anything and without a turn of the monitor, so a check is never counted as probing
 * (docs/decisions.md). A token that names no agent is refused as on /v1/proxy (401); every other
 * refusal is the answer: `{"allowed": false, "code", "kind", "reason", "hint"}`.
 */
async function _check(ctx: _Ctx, request: ServeRequest): Promise<ServeResponse> {
  const token = _bearer(request.headers);
  const bytes = await request.body(MAX_BODY_BYTES);
  const deps = _apiDeps(ctx);
  const agents = deps.load().body.agents;
  if (token === null || findAgentByToken(agents, token) === null) {
    checkAgent(agents, token, deps.now);
  }
  try {
    const json = _templateJson(bytes);
    return _json(200, await checkTemplate(deps, token, json));
  } catch (e) {
    if (!isDecision(e)) throw e;
    return _json(200, {
      allowed: false,
      code: e.code,
      kind: e.kind,
      reason: e.message,
      ...(e.hint === undefined ? {} : { hint: e.hint }),
      ...(e.details.retryAfterSeconds === undefined
        ? {}
        : { retry_after: e.details.retryAfterSeconds }),
    });
  }
}

/**
 * What the read-only endpoints read: the vault once its MAC checked with the held keys, brakes
 * as a request reads them, and authenticated audit entries (for rate budgets).
 */
function _apiDeps(ctx: _Ctx): AgentApiDeps {
  const { options } = ctx;
  return {
    state: options.state,
    env: options.env,
    load: () => {
      if (options.stopping.aborted) throw _stoppingError();
      const file = options.state.vault.read();
      if (!ctx.verified.has(file)) {
        verifyVault(file, options.keys);
        ctx.verified.add(file);
      }
      // Checked above or for an earlier request: the frozen object has not changed since.
      return file as VerifiedVault;
    },
    sawBrakes: (file, active) => _rememberBrakes(ctx, file, active),
    recent: (since) => {
      if (options.stopping.aborted) throw _stoppingError();
      const keys = _copyKeys(options.keys);
      try {
        return options.state.audit.recent(keys.auditKeys, since);
      } finally {
        wipeKeys(keys);
      }
    },
    now: ctx.now(),
  };
}

/**
 * `/v1/mcp`: MCP over Streamable HTTP (stateless, JSON answers). The caller checks (Host, Origin)
 * have run; the token must name an active agent before the SDK sees anything. Each tool calls this
 * same handler for /v1/proxy, /v1/check, ... with the caller's token, so it gets exactly the checks
 * and audit entries of those endpoints. The SDK loads on the first MCP request only.
 */
async function _mcp(
  ctx: _Ctx,
  request: ServeRequest,
  handler: ServeHandler,
): Promise<ServeResponse> {
  _allow(request, ['GET', 'POST', 'DELETE']);
  const token = _bearer(request.headers);
  checkAgent(ctx.options.state.vault.read().body.agents, token, ctx.now());
  const body = request.method === 'POST' ? await request.body(MAX_BODY_BYTES) : null;
  const { serveMcpHttp } = await import('../mcp/http.ts');
  return await serveMcpHttp(request, body, {
    version: ctx.options.info.version,
    call: (method, path, json) => {
      const host = [...request.hosts][0] ?? 'localhost';
      const bytes = json === undefined
        ? new Uint8Array(0)
        : new TextEncoder().encode(JSON.stringify(json));
      return handler({
        method,
        target: path,
        headers: [
          ['Host', host],
          ['Authorization', `Bearer ${token}`],
          ['Content-Type', 'application/json'],
        ],
        body: (limit) =>
          bytes.length > limit
            ? Promise.reject(usage('body_too_large', 'the template is too large'))
            : Promise.resolve(bytes),
        signal: request.signal,
        hosts: request.hosts,
        via: request.via,
      });
    },
  });
}

async function _gateway(
  ctx: _Ctx,
  request: ServeRequest,
  route: { name: string; path: string; query: string },
): Promise<ServeResponse> {
  const token = gatewayToken(request.headers);
  _claimConnection(ctx, request, token);
  const body = await request.body(MAX_BODY_BYTES);
  await _admit(ctx, token, { route: 'gateway', credentials: [route.name] });
  const file = ctx.options.state.vault.read();
  const record = file.body.credentials.find((c) => c.name === route.name);
  if (record === undefined || record.base_url === null || record.inject === null) {
    return await _refuseGateway(ctx, { file, token, name: route.name, method: request.method });
  }
  if (body.length > 0 && /^(GET|HEAD)$/i.test(request.method)) {
    throw usage('bad_template', `a ${request.method} request cannot have a body`);
  }
  const credential = record as GatewayCredential;
  const template = gatewayTemplate(credential, {
    method: request.method,
    path: route.path,
    query: route.query,
    headers: request.headers,
  });
  const withBody = body.length > 0 || BODY_METHODS.has(request.method.toUpperCase());
  const send = ctx.options.send ?? httpSend;
  const response = await execute(
    { template: { parsed: template }, token, sendOptions: _sendOptions(ctx, request) },
    {
      ..._deps(ctx),
      // The vault as read a moment ago for the route: one read per request, as for /v1/proxy.
      load: () => file,
      // The body is opaque: it reaches the client exactly as received, never scanned.
      send: (rendered, sendOptions) =>
        send({ ...rendered, body: withBody ? body : null }, sendOptions),
    },
  );
  return _forward(response, false);
}

/**
 * A gateway credential that does not exist, or lacks a base URL or inject rule: answer what exec
 * would answer first (token, then grant), so only an agent allowed to use the credential learns
 * how it is set up. Nothing is sent either way.
 */
async function _refuseGateway(
  ctx: _Ctx,
  input: { file: VaultFile; token: string | null; name: string; method: string },
): Promise<never> {
  const { file, token, name } = input;
  const known = token === null ? null : findAgentByToken(file.body.agents, token);
  try {
    const active = ctx.options.state.brakes.active(file.body);
    await _rememberBrakes(ctx, file, active);
    const agentId = known?.id ?? null;
    const orgs = orgsOf(file.body, agentId, [name]);
    const brake = blockingBrake(active, { agentId, credentials: [name], orgs });
    if (brake !== null) throw brakeError(brake);
    const agent = checkAgent(file.body.agents, token, ctx.now());
    const record = checkGrant(agent, file.body.credentials, name);
    const missing = record.base_url === null ? 'base URL' : 'inject rule';
    throw usage(
      record.base_url === null ? 'no_base_url' : 'no_inject',
      `credential "${name}" has no ${missing}, so the gateway cannot forward to it`,
      record.base_url === null
        ? `the operator can run: trust-protocol credential update ${name} --base-url https://HOST`
        : `the operator can run: trust-protocol credential update ${name} --inject 'Authorization: Bearer {{CREDENTIAL}}'`,
    );
  } catch (e) {
    const error = asServeError(e);
    const head = await ctx.audit([{
      event: 'request.denied',
      actor: known === null ? { type: 'anyone' } : { type: 'agent', id: known.id },
      outcome: 'denied',
      data: {
        reason: error.code,
        kind: error.kind,
        route: 'gateway',
        credentials: [name],
        method: input.method,
      },
    }]);
    await ctx.options.monitor.after();
    throw withAuditSeq(error, head.seq);
  }
}

/**
 * Before a body is read: a token that names an active agent marks the connection as an agent's
 * (src/serve/node_http.ts keeps those when it makes room). Nothing is refused here: execute()
 * decides, and audits, as before.
 */
function _claimConnection(ctx: _Ctx, request: ServeRequest, token: string | null): void {
  if (request.agent === undefined || token === null) return;
  try {
    checkAgent(ctx.options.state.vault.read().body.agents, token, ctx.now());
  } catch {
    return;
  }
  request.agent();
}

/**
 * `--agent-rate`: counted per agent that the token names. An unknown token, or a braked request,
 * is execute()'s to refuse first.
 */
async function _admit(
  ctx: _Ctx,
  token: string | null,
  data: Record<string, unknown>,
): Promise<void> {
  const rate = ctx.options.agentRate;
  if (rate === null || token === null) return;
  const file = ctx.options.state.vault.read();
  const agent = findAgentByToken(file.body.agents, token);
  if (agent === null) return;
  try {
    checkBrakes(ctx.options.state, file, agent.id, []);
  } catch {
    return; // A brake comes first: execute() refuses the request and audits it.
  }
  const wait = rate.limiter.take(agent.id, ctx.now());
  if (wait === null) return;
  const error = new TpError(
    'denied',
    'agent_rate_limited',
    `agent ${agent.id} is over this serve's limit of ${rate.rate} requests`,
    { hint: `retry after ${wait} s`, details: { retryAfterSeconds: wait } },
  );
  const event: AuditEvent = {
    event: 'request.denied',
    actor: { type: 'agent', id: agent.id },
    outcome: 'denied',
    data: { reason: error.code, kind: error.kind, ...data },
  };
  withAuditSeq(error, (await ctx.audit([event])).seq);
  await ctx.options.monitor.after();
  throw error;
}

/**
 * `agent renew` for an agent holding only its token: serve holds the keys. Whatever the agent
 * sends in the body is ignored; the decision comes from the audit trail (src/monitor/renewal.ts).
 */
async function _renew(ctx: _Ctx, request: ServeRequest): Promise<ServeResponse> {
  if (ctx.options.stopping.aborted) throw _stoppingError();
  const keys = _copyKeys(ctx.options.keys);
  try {
    const issued = await renewAgent(ctx.options.state, keys, _bearer(request.headers), ctx.now());
    return _json(200, issued);
  } finally {
    wipeKeys(keys);
  }
}

function _deps(ctx: _Ctx): BrokerDeps {
  const { options } = ctx;
  return {
    state: options.state,
    env: options.env,
    recordHead: (_keys, head) => options.heads.record(head),
    afterRequest: () => options.monitor.after(),
    redactions: options.redactions,
    ...(options.now ? { now: options.now } : {}),
    ...(options.send ? { send: options.send } : {}),
    // Each request gets its own copy of the keys, wiped when it is done, so wiping the held keys
    // at stop can never leave a request in flight with zeroed keys.
    keysHeld: true,
    sawBrakes: (file, active) => _rememberBrakes(ctx, file, active),
    unseal: (file) => {
      if (options.stopping.aborted) return Promise.reject(_stoppingError());
      // The reader returns the same frozen object while the file is unchanged: check it once.
      if (!ctx.verified.has(file)) {
        verifyVault(file, options.keys);
        ctx.verified.add(file);
      }
      const keys = _copyKeys(options.keys);
      // Checked above or for an earlier request: the frozen object has not changed since.
      const verified = file as VerifiedVault;
      return Promise.resolve({ keys, file: verified, release: () => wipeKeys(keys) });
    },
  };
}

/**
 * serve holds the keys, so a brake it sees goes into the vault's MACed known list at once, before
 * it refuses anything: deleting the brake's own records afterwards lifts nothing (issue #14). A
 * stopping serve leaves it to its last head write, which copies the brakes in force as well.
 */
async function _rememberBrakes(
  ctx: _Ctx,
  file: VaultFile,
  active: readonly Brake[],
): Promise<void> {
  if (!hasUnknownBrakes(file.body, active) || ctx.options.stopping.aborted) return;
  const keys = _copyKeys(ctx.options.keys);
  try {
    await ctx.options.state.vault.recordKnownBrakes(keys, file, active);
  } finally {
    wipeKeys(keys);
  }
}

function _stoppingError(): TpError {
  return new TpError('sealed', 'serve_stopping', 'serve is stopping and drops its keys', {
    hint: 'start serve again, or run exec with the password',
  });
}

function _copyKeys(keys: VaultKeys): VaultKeys {
  const auditKeys = copyMacKey(keys.auditKeys);
  return {
    admin: keys.admin,
    data: keys.data.slice(),
    credentials: keys.credentials.slice(),
    state: keys.state.slice(),
    audit: auditKeys.current,
    auditKeys,
  };
}

function _sendOptions(ctx: _Ctx, request: ServeRequest): SendOptions {
  const base = ctx.options.sendOptions;
  const options: SendOptions = {
    ...base,
    signal: AbortSignal.any([request.signal, ctx.options.stopping]),
  };
  const timeout = _header(request.headers, TIMEOUT_HEADER);
  if (timeout !== null) {
    const seconds = Number(timeout);
    if (!/^\d+(\.\d+)?$/.test(timeout) || seconds <= 0) {
      throw usage('bad_flag', `${TIMEOUT_HEADER} must be a number of seconds`);
    }
    // The headers can only lower serve's own limits (its flags, else the client's defaults).
    options.timeoutMs = Math.min(Math.round(seconds * 1000), base.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  }
  const max = _header(request.headers, MAX_BYTES_HEADER);
  if (max !== null) {
    if (!/^\d{1,15}$/.test(max) || Number(max) < 1) {
      throw usage('bad_flag', `${MAX_BYTES_HEADER} must be a positive whole number`);
    }
    options.maxResponseBytes = Math.min(
      Number(max),
      base.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES,
    );
  }
  return options;
}

/**
 * The upstream's answer, redacted by execute(), streamed on. Headers a browser would act on
 * (CORS) and serve's own marker are never passed through. A stream that fails part-way cuts the
 * connection, unless the client asked for trailers (`TE: trailers`, as exec does): then it ends
 * with a `Trust-Protocol-Error` trailer naming the error.
 */
function _forward(response: BrokeredResponse, trailers: boolean): ServeResponse {
  const headers = response.headers.filter(([name, value]) =>
    TOKEN_RE.test(name) && FIELD_VALUE_RE.test(value) &&
    !/^(access-control-|trust-protocol-)/i.test(name)
  );
  if (response.auditSeq !== undefined) headers.push([AUDIT_SEQ_HEADER, String(response.auditSeq)]);
  const out: ServeResponse = {
    status: response.status,
    statusText: FIELD_VALUE_RE.test(response.statusText) ? response.statusText : '',
    headers,
    body: response.body,
  };
  if (!trailers) return out;
  let failure: TpError | null = null;
  out.body = (async function* () {
    try {
      yield* response.body;
    } catch (e) {
      failure = asServeError(e);
    }
  })();
  headers.push(['Trailer', ERROR_HEADER]);
  out.trailers = () => failure === null ? [] : [[ERROR_HEADER, headerJson(errorJson(failure))]];
  return out;
}

function _acceptsTrailers(headers: HeaderList): boolean {
  const te = _header(headers, 'te');
  return te !== null && te.split(',').some((t) => t.trim().toLowerCase() === 'trailers');
}

function _bearer(headers: HeaderList): string | null {
  const value = _header(headers, 'authorization');
  const m = value === null ? null : /^Bearer\s+(\S+)\s*$/i.exec(value);
  return m === null ? null : m[1] as string;
}

function _header(headers: HeaderList, name: string): string | null {
  const lower = name.toLowerCase();
  return headers.find(([n]) => n.toLowerCase() === lower)?.[1] ?? null;
}

function _json(
  status: number,
  value: unknown,
  extra: Array<[string, string]> = [],
): ServeResponse {
  return {
    status,
    headers: [
      ['Content-Type', 'application/json; charset=utf-8'],
      ['Cache-Control', 'no-store'],
      ['X-Content-Type-Options', 'nosniff'],
      ...extra,
    ],
    body: new TextEncoder().encode(JSON.stringify(value, null, 2) + '\n'),
  };
}
