/**
 * One brokered request, in the order SPEC §6 fixes: cheap refusals on the unauthenticated state
 * first (no password asked, nothing decrypted), then unseal and authenticate, decide again on the
 * authenticated state, make the audit entry durable, and only then decrypt, inject, send and
 * redact. Shared by `exec` and `serve`; it never touches the terminal.
 */
import { Buffer } from 'node:buffer';
import type { AuditEvent, AuditWriter } from './audit.ts';
import { blockingBrake, type Brake, brakeError, orgsOf } from './brakes.ts';
import { parseTargetUrl } from './domain.ts';
import { denied, integrity, TpError, usage, withAuditSeq } from './errors.ts';
import { send, type SendOptions, type UpstreamResponse } from './http/client.ts';
import { checkRates, decide, type Decision, findAgentByToken } from './policy.ts';
import { Redaction, type RedactionCache, Redactor, redactString, type Secret } from './redact.ts';
import { findPlaceholders, parseTemplate, renderTemplate, type Template } from './template.ts';
import {
  type AuditHead,
  type CredentialRecord,
  decryptValue,
  unseal,
  type VaultFile,
  type VaultKeys,
  type VerifiedVault,
  wipeKeys,
} from './vault.ts';
import type { State } from './state.ts';
import { wipe } from './bytes.ts';

export interface BrokerDeps {
  /** The home's vault, audit log and brakes (src/state.ts). */
  state: State;
  env: Readonly<Record<string, string | undefined>>;
  /**
   * Called only once every policy check has passed on the unauthenticated state: returns the keys
   * for this file and the file, its MAC checked (`exec`: derive from the password; `serve`: keys
   * held since start-up), and what to do with the keys after the request (wipe, or keep).
   */
  unseal: (
    file: VaultFile,
  ) => Promise<{ keys: VaultKeys; file: VerifiedVault; release: () => void }>;
  /** Reads the vault as it is on disk now; default `state.vault.read()`. */
  load?: () => VaultFile;
  /**
   * True when `unseal` returns keys already held (serve): it takes no time, so the brakes read
   * just before it still stand. Otherwise (a password typed, a key derived) they are read again.
   */
  keysHeld?: boolean;
  now?: () => Date;
  send?: typeof send;
  /**
   * Runs once the request's last audit entry is written, allowed or denied (the monitor, see
   * src/monitor/live.ts), with the keys when this process holds them, before they are wiped.
   */
  afterRequest?: (keys: VaultKeys | null) => Promise<void>;
  /**
   * How a new audit head reaches the vault; default: written before the append resolves, for a
   * request's last entry. When given, it also gets the `request.allowed` head, before the secret
   * is decrypted, and may refuse the request there (serve, once a deferred head write failed).
   */
  recordHead?: (keys: VaultKeys, head: AuditHead) => Promise<void>;
  /**
   * Called with the brakes in force as soon as they are read, before a brake refuses the request:
   * a process that already holds the keys (serve) copies the brakes the vault does not know into
   * it there and then, so deleting their records afterwards lifts nothing. If it throws (say the
   * vault's MAC is wrong), the request is refused with that error.
   */
  sawBrakes?: (file: VaultFile, active: readonly Brake[]) => Promise<void>;
  /** Compiled redactions kept across requests (serve); default: compiled for each request. */
  redactions?: RedactionCache;
}

export interface BrokerRequest {
  /** The template: JSON as the agent wrote it, or already parsed (the curl-like form). */
  template: { json: unknown } | { parsed: Template };
  token: string | null;
  sendOptions?: SendOptions;
}

export interface BrokeredResponse {
  status: number;
  statusText: string;
  headers: Array<[string, string]>;
  /** Redacted body; iterating it to the end records the completion in the audit trail. */
  body: AsyncIterable<Uint8Array>;
  /** The sequence number of the request's `request.allowed` audit entry (absent: not known). */
  auditSeq?: number;
}

/** Throws the brake error when a brake in force (per this file's cleared list) stops the request. */
export function checkBrakes(
  state: State,
  file: VaultFile,
  agentId: string | null,
  credentials: readonly string[],
): void {
  _stopIfBraked(state.brakes.active(file.body), file.body, agentId, credentials);
}

function _stopIfBraked(
  active: readonly Brake[],
  body: VaultFile['body'],
  agentId: string | null,
  credentials: readonly string[],
): void {
  // The organisations come from the vault: the early check reads it unchecked, the decisive one
  // after unsealing reads the MAC-checked file, so removing an org by hand evades neither.
  const orgs = orgsOf(body, agentId, credentials);
  const brake = blockingBrake(active, { agentId, credentials, orgs });
  if (brake !== null) throw brakeError(brake);
}

/**
 * Refuses a run whose environment switches certificate verification off: the client verifies
 * anyway, but such a setting says the caller expects unverified TLS, and that is never given.
 */
export function checkEnvironment(env: Readonly<Record<string, string | undefined>>): void {
  const value = env.NODE_TLS_REJECT_UNAUTHORIZED;
  if (value === undefined || value === '' || value === '1') return;
  throw denied(
    'tls_env',
    'NODE_TLS_REJECT_UNAUTHORIZED is set: it would switch TLS certificate verification off',
    'unset NODE_TLS_REJECT_UNAUTHORIZED; an operator can add trust explicitly with --cacert FILE',
  );
}

export async function execute(request: BrokerRequest, deps: BrokerDeps): Promise<BrokeredResponse> {
  const now = deps.now ?? (() => new Date());
  const { state } = deps;
  const earlyAudit = state.audit.writer({ macKey: null });
  const file = deps.load?.() ?? state.vault.read();
  let parsed: {
    template: Template;
    names: string[];
    url: URL;
    uses: ReturnType<typeof findPlaceholders>;
  } | null = null;
  let active: Brake[] = [];
  try {
    // Brakes first: a braked request stops before any password, decryption or network.
    const agentId = request.token === null
      ? null
      : findAgentByToken(file.body.agents, request.token)?.id ?? null;
    active = state.brakes.active(file.body);
    await deps.sawBrakes?.(file, active);
    _stopIfBraked(active, file.body, agentId, []);
    parsed = prepareTemplate(request.template);
    _stopIfBraked(active, file.body, agentId, parsed.names);
    checkEnvironment(deps.env);
    decide(file.body, { token: request.token, ...parsed }, now());
  } catch (e) {
    await _auditDenial(earlyAudit, e, request.token, file, parsed);
    await deps.afterRequest?.(null);
    throw e;
  }
  let unsealed: Awaited<ReturnType<BrokerDeps['unseal']>>;
  try {
    unsealed = await deps.unseal(file);
  } catch (e) {
    if (e instanceof TpError && (e.kind === 'sealed' || e.kind === 'integrity')) {
      const agent = findAgentByToken(file.body.agents, request.token ?? '');
      await earlyAudit.append([{
        event: 'vault.unseal_failed',
        actor: agent === null ? { type: 'anyone' } : { type: 'agent', id: agent.id },
        outcome: 'denied',
        data: { reason: e.code },
      }]);
    }
    throw e;
  }
  const { keys, release } = unsealed;
  try {
    let current: VerifiedVault;
    try {
      current = await state.vault.ensureCurrent(unsealed.file, keys);
    } catch (e) {
      await _auditDenial(earlyAudit, e, request.token, file, parsed);
      throw e;
    }
    // A brake placed while the password was typed or derived counts; so does a newer vault body.
    if (current !== file || deps.keysHeld !== true) active = state.brakes.active(current.body);
    return await _executeAuthenticated(
      { file: current, active },
      keys,
      release,
      request,
      parsed,
      deps,
      now,
    );
  } catch (e) {
    release();
    throw e;
  }
}

/** The `unseal` dependency for a one-shot process: password in, keys wiped after the request. */
export function unsealWithPassword(password: () => Promise<Uint8Array>): BrokerDeps['unseal'] {
  return async (file) => {
    const pw = await password();
    try {
      const keys = unseal(file, pw);
      // unseal checked the file's MAC under the keys it derived.
      return { keys, file: file as VerifiedVault, release: () => wipeKeys(keys) };
    } finally {
      pw.fill(0);
    }
  };
}

async function _executeAuthenticated(
  { file, active }: { file: VerifiedVault; active: readonly Brake[] },
  keys: VaultKeys,
  release: () => void,
  request: BrokerRequest,
  parsed: {
    template: Template;
    names: string[];
    url: URL;
    uses: ReturnType<typeof findPlaceholders>;
  },
  deps: BrokerDeps,
  now: () => Date,
): Promise<BrokeredResponse> {
  const { state } = deps;
  const keyed = state.audit.writer({
    macKey: keys.auditKeys,
    ...(deps.now ? { clock: deps.now } : {}),
  });
  // The last entry of a request is also recorded in the vault, so a cut-off log tail is detectable.
  const audit: AuditWriter = {
    async append(events, options) {
      const head = await keyed.append(events, options);
      await (deps.recordHead ?? ((k, h) => state.vault.recordHead(k, h)))(keys, head);
      return head;
    },
  };
  // The file is now authenticated (unseal checked its MAC): brakes and policy again, on it.
  let decision: Decision;
  try {
    const agentId = request.token === null
      ? null
      : findAgentByToken(file.body.agents, request.token)?.id ?? null;
    await state.vault.recordKnownBrakes(keys, file, active);
    _stopIfBraked(active, file.body, agentId, parsed.names);
    decision = decide(file.body, { token: request.token, ...parsed }, now());
  } catch (e) {
    await _auditDenial(audit, e, request.token, file, parsed);
    await deps.afterRequest?.(keys);
    throw e;
  }
  const summary = _summary(decision, parsed);
  const allowed: AuditEvent = {
    event: 'request.allowed',
    actor: { type: 'agent', id: decision.agent.id },
    outcome: 'allowed',
    data: summary,
  };
  let allowedHead: Awaited<ReturnType<typeof keyed.append>>;
  try {
    allowedHead = await keyed.append([allowed], {
      guard: (recent, tail) => {
        // The log only grows and the vault's head only moves forward: a shorter log was cut.
        const head = file.body.audit_head;
        if (head !== null && tail.seq >= head.seq && tail.digestAt(head.seq) !== head.hash) {
          throw integrity(
            'audit_forked',
            `the audit log no longer holds the entry ${head.seq} the vault recorded: it was rewritten`,
            'run `trust-protocol audit verify`; restore the log from a backup',
          );
        }
        if (head !== null && tail.seq < head.seq) {
          throw integrity(
            'audit_truncated',
            `the audit log ends at entry ${tail.seq} but the vault recorded entry ${head.seq}`,
            'run `trust-protocol audit verify`; restore the log from a backup',
          );
        }
        checkRates(decision.credentials, recent, now());
      },
    });
    // serve records every head (off the request path) and refuses here, before the secret is
    // decrypted, once a head write has failed; exec records only a request's last entry.
    await deps.recordHead?.(keys, allowedHead);
  } catch (e) {
    if (e instanceof TpError && (e.kind === 'denied' || e.kind === 'integrity')) {
      // After tampering, record the refusal but never move the vault's head onto that log.
      const head = await (e.kind === 'integrity' ? keyed : audit).append([{
        ...allowed,
        event: 'request.denied',
        outcome: 'denied',
        data: { ...summary, reason: e.code, kind: e.kind },
      }]);
      withAuditSeq(e, head.seq);
      if (e.kind === 'denied') await deps.afterRequest?.(keys);
    }
    throw e;
  }
  const secrets: Secret[] = decision.credentials.map((c) => ({
    name: c.name,
    value: decryptValue(keys, c),
  }));
  const values = new Map(secrets.map((s) => [s.name, s.value]));
  let upstream: UpstreamResponse;
  try {
    const rendered = renderTemplate(parsed.template, values);
    upstream = await (deps.send ?? send)(rendered, request.sendOptions);
  } catch (e) {
    for (const s of secrets) wipe(s.value);
    await _auditFailure(audit, decision, summary, e);
    await deps.afterRequest?.(keys);
    throw e;
  }
  const { redaction, release: releaseRedaction } = _redactionFor(
    secrets,
    decision.credentials,
    parsed.uses,
    deps.redactions,
  );
  let headers: Array<[string, string]>;
  let statusText: string;
  try {
    headers = upstream.headers
      .filter(([name]) => name.toLowerCase() !== 'content-length')
      .map(([name, value]) => [redactString(name, redaction), redactString(value, redaction)]);
    statusText = redactString(upstream.statusText, redaction);
  } catch (e) {
    releaseRedaction();
    throw e;
  }
  return {
    status: upstream.status,
    statusText,
    headers,
    auditSeq: allowedHead.seq,
    body: _redactedBody(upstream, redaction, async (bytes, error) => {
      try {
        if (error === null) {
          await audit.append([{
            event: 'request.completed',
            actor: { type: 'agent', id: decision.agent.id },
            outcome: 'ok',
            data: { ...summary, status: upstream.status, bytes },
          }]);
        } else {
          await _auditFailure(
            audit,
            decision,
            { ...summary, status: upstream.status, bytes },
            error,
          );
        }
        for (const s of secrets) wipe(s.value);
        await deps.afterRequest?.(keys);
      } finally {
        for (const s of secrets) wipe(s.value);
        releaseRedaction();
        release();
      }
    }),
  };
}

/**
 * What is redacted: each value as stored and, where the template sent it as `{{CREDENTIAL|base64}}`,
 * that base64 text as a value of its own, so its encoded echoes (percent-encoded in a path,
 * `\/`-escaped in JSON) are found too; the raw value's forms cover only whole base64 of it.
 */
function _redactionFor(
  secrets: readonly Secret[],
  records: readonly CredentialRecord[],
  uses: ReturnType<typeof findPlaceholders>,
  cache: RedactionCache | undefined,
): { redaction: Redaction; release: () => void } {
  const base64Sent = new Set(uses.filter((u) => u.base64).map((u) => u.name));
  const make = () => _compileRedaction(secrets, base64Sent);
  if (cache === undefined) return { redaction: make(), release: () => {} };
  // Named by the sealed values (a changed credential has a new nonce), never by the plaintext.
  const key = JSON.stringify(
    records.map((c) => [c.name, c.value.nonce, c.value.ciphertext, base64Sent.has(c.name)]),
  );
  return cache.acquire(key, make);
}

function _compileRedaction(secrets: readonly Secret[], base64Sent: ReadonlySet<string>): Redaction {
  const renderings = secrets.filter((s) => base64Sent.has(s.name)).map((s) => ({
    name: s.name,
    value: Buffer.from(Buffer.from(s.value).toString('base64'), 'latin1'),
  }));
  try {
    return new Redaction([...secrets, ...renderings]);
  } finally {
    for (const r of renderings) wipe(r.value);
  }
}

/**
 * The redacted body. Completion, failure, and a consumer that stops reading early (`return()`)
 * are each audited once, and the secrets are wiped in every case.
 */
async function* _redactedBody(
  upstream: UpstreamResponse,
  redaction: Redaction,
  done: (bytes: number, error: unknown) => Promise<void>,
): AsyncIterable<Uint8Array> {
  const redactor = new Redactor(redaction);
  let bytes = 0;
  // `done` runs once: it wipes the request's keys when it ends, so a second call (after the
  // completion entry failed to append) would MAC its entry under a wiped key.
  let called = false;
  const finish = async (error: unknown) => {
    if (called) return;
    called = true;
    await done(bytes, error);
  };
  try {
    for await (const chunk of upstream.body) {
      bytes += chunk.length;
      const out = redactor.push(chunk);
      if (out.length > 0) yield out;
    }
    const tail = redactor.end();
    if (tail.length > 0) yield tail;
    await finish(null);
  } catch (e) {
    await finish(e);
    throw e;
  } finally {
    await finish(new TpError('upstream', 'aborted', 'the response was not read to the end'));
  }
}

/**
 * The template parsed, with the credential names it uses and its URL parsed once; usage errors
 * (exit 2) and refused URLs (exit 4) are thrown here, before any credential is looked at.
 */
export function prepareTemplate(input: BrokerRequest['template']) {
  const template = 'parsed' in input ? input.parsed : parseTemplate(input.json);
  const uses = findPlaceholders(template);
  if (uses.length === 0) {
    throw usage(
      'no_placeholder',
      'the template uses no {{CREDENTIAL}} placeholder, so there is nothing to inject',
      'add {{CREDENTIAL}} where the secret goes, e.g. a header "Authorization": "Bearer {{CREDENTIAL}}"; ' +
        'or give the credential an inject rule (`credential update NAME --inject "Authorization: ' +
        'Bearer {{CREDENTIAL}}"`), which a URL with --credential then uses',
    );
  }
  const names = [
    ...new Set([
      ...(template.credential === null ? [] : [template.credential]),
      ...uses.map((u) => u.name),
    ]),
  ];
  const url = parseTargetUrl(template.url);
  return { template, names, url, uses };
}

function _summary(
  decision: Decision,
  parsed: { template: Template; url: URL },
): Record<string, unknown> {
  return {
    agent: decision.agent.id,
    credentials: decision.credentials.map((c) => c.name),
    method: parsed.template.method,
    host: parsed.url.host,
    // The template's path, never the rendered one: a path placement would put the secret there.
    path: parsed.url.pathname,
  };
}

async function _auditDenial(
  audit: AuditWriter,
  error: unknown,
  token: string | null,
  file: VaultFile,
  parsed: { template: Template; names: string[]; url: URL } | null,
): Promise<void> {
  if (!(error instanceof TpError)) return;
  const agent = token === null ? null : findAgentByToken(file.body.agents, token)?.id ?? null;
  const event: AuditEvent = {
    event: 'request.denied',
    actor: agent === null ? { type: 'anyone' } : { type: 'agent', id: agent },
    outcome: 'denied',
    data: {
      reason: error.code,
      kind: error.kind,
      ...(parsed === null ? {} : {
        credentials: parsed.names,
        method: parsed.template.method,
        host: parsed.url.host,
        path: parsed.url.pathname,
      }),
    },
  };
  withAuditSeq(error, (await audit.append([event])).seq);
}

async function _auditFailure(
  audit: AuditWriter,
  decision: Decision,
  summary: Record<string, unknown>,
  error: unknown,
): Promise<void> {
  const code = error instanceof TpError ? error.code : 'internal';
  await audit.append([{
    event: 'request.failed',
    actor: { type: 'agent', id: decision.agent.id },
    outcome: 'error',
    data: { ...summary, reason: code },
  }]);
}
