/**
 * Credential management (SPEC §3): validation of names, values, domain patterns, placements,
 * base URL, inject rule and rate, and the vault changes for add/update/rotate/remove.
 * No function here returns or logs a value.
 */
import { NAME_RE } from './grammar.ts';
import { decodeUtf8Strict, escapeControls } from './bytes.ts';
import { formatDomainPattern, matchTarget, parseDomainPattern, parseTargetUrl } from './domain.ts';
import { TpError, usage } from './errors.ts';
import type { EventName } from './events.ts';
import { findPlaceholders, parseTemplate } from './template.ts';
import { parseTier } from './tiers.ts';
import {
  type Change,
  type CredentialMeta,
  credentialMeta,
  type CredentialRecord,
  encryptValue,
  type Placement,
  PLACEMENTS,
  type VaultBody,
  type VaultKeys,
} from './vault.ts';

export const VALUE_MIN_BYTES = 8;
export const VALUE_MAX_BYTES = 64 * 1024;

export function checkCredentialName(name: string): string {
  if (!NAME_RE.test(name)) {
    throw usage(
      'bad_credential_name',
      `invalid credential name "${escapeControls(name)}"`,
      'use 1-64 of A-Z a-z 0-9 _ . - starting with a letter or digit',
    );
  }
  return name;
}

/** Checks a secret value without ever echoing it. One trailing newline (LF or CRLF) is dropped. */
export function checkCredentialValue(raw: Uint8Array): Uint8Array {
  let end = raw.length;
  if (end > 0 && raw[end - 1] === 0x0a) end -= 1;
  if (end > 0 && raw[end - 1] === 0x0d && end < raw.length) end -= 1;
  const value = raw.slice(0, end);
  const hint = 'provide the value with --value-file PATH, on standard input, or at the prompt';
  if (value.length < VALUE_MIN_BYTES) {
    throw usage(
      'bad_value',
      `the credential value is too short (${value.length} bytes; at least ${VALUE_MIN_BYTES})`,
      hint,
    );
  }
  if (value.length > VALUE_MAX_BYTES) {
    throw usage(
      'bad_value',
      `the credential value is too long (${value.length} bytes; at most ${VALUE_MAX_BYTES})`,
      hint,
    );
  }
  for (const b of value) {
    if (b === 0x0d || b === 0x0a || b === 0x00) {
      throw usage('bad_value', 'the credential value contains a CR, LF or NUL byte', hint);
    }
  }
  const isSpace = (b: number | undefined) => b === 0x20 || b === 0x09;
  if (isSpace(value[0]) || isSpace(value[value.length - 1])) {
    throw usage('bad_value', 'the credential value starts or ends with white space', hint);
  }
  if (decodeUtf8Strict(value) === null) {
    throw usage('bad_value', 'the credential value is not valid UTF-8', hint);
  }
  return value;
}

export interface CredentialSpec {
  allowedDomains?: string[];
  anyDomain?: boolean;
  minTier?: string;
  placements?: string[];
  baseUrl?: string | null;
  inject?: string | null;
  rate?: string | null;
  /** The preset whose values filled the fields not given (recorded for `run`). */
  preset?: string;
}

/** Builds validated metadata; `base` supplies the current values on update. */
export function buildMeta(
  name: string,
  spec: CredentialSpec,
  base?: CredentialMeta,
): CredentialMeta {
  checkCredentialName(name);
  let allowed = base?.allowed_domains ?? [];
  let anyDomain = base?.any_domain ?? false;
  if (spec.allowedDomains !== undefined && spec.anyDomain) {
    throw usage('conflicting_flags', '--allowed-domains and --any-domain cannot be used together');
  }
  if (spec.allowedDomains !== undefined) {
    if (spec.allowedDomains.length === 0) {
      throw usage('bad_domain_pattern', '--allowed-domains needs at least one pattern');
    }
    allowed = [
      ...new Set(spec.allowedDomains.map((p) => formatDomainPattern(parseDomainPattern(p.trim())))),
    ];
    anyDomain = false;
  }
  if (spec.anyDomain) {
    allowed = [];
    anyDomain = true;
  }
  if (!anyDomain && allowed.length === 0) {
    throw usage(
      'no_domains',
      'a credential needs --allowed-domains PATTERN[,PATTERN...] (or the explicit --any-domain)',
      'for example: --allowed-domains api.openai.com',
    );
  }
  const meta: CredentialMeta = {
    name,
    allowed_domains: allowed,
    any_domain: anyDomain,
    placements: spec.placements === undefined
      ? (base?.placements ?? ['header'])
      : _placements(spec.placements),
    min_tier: spec.minTier === undefined
      ? (base?.min_tier ?? 'COMPANION')
      : parseTier(spec.minTier),
    base_url: spec.baseUrl === undefined ? (base?.base_url ?? null) : spec.baseUrl,
    inject: spec.inject === undefined ? (base?.inject ?? null) : spec.inject,
    rate: spec.rate === undefined
      ? (base?.rate ?? null)
      : (spec.rate === null ? null : formatRate(parseRate(spec.rate))),
  };
  const preset = spec.preset ?? base?.preset;
  if (preset !== undefined) meta.preset = preset;
  if (meta.base_url !== null) _checkBaseUrl(meta);
  if (meta.inject !== null) _checkInject(meta);
  return meta;
}

function _placements(list: string[]): Placement[] {
  const out = new Set<Placement>();
  for (const p of list) {
    const v = p.trim().toLowerCase();
    if (!(PLACEMENTS as readonly string[]).includes(v)) {
      throw usage(
        'bad_placement',
        `unknown placement "${escapeControls(p)}"`,
        `use a comma-separated list of ${PLACEMENTS.join(', ')}`,
      );
    }
    out.add(v as Placement);
  }
  if (out.size === 0) {
    throw usage('bad_placement', '--placement needs at least one of header, query, path, body');
  }
  return PLACEMENTS.filter((p) => out.has(p));
}

function _checkBaseUrl(meta: CredentialMeta): void {
  const raw = meta.base_url ?? '';
  let url: URL;
  try {
    url = parseTargetUrl(raw);
  } catch (e) {
    throw usage(
      'bad_base_url',
      `--base-url is not a usable URL: ${e instanceof Error ? e.message : String(e)}`,
    );
  }
  if (url.search !== '' || url.hash !== '' || raw.includes('?') || raw.includes('#')) {
    throw usage('bad_base_url', '--base-url may not contain a query or fragment');
  }
  const allowed = meta.any_domain
    ? url.protocol === 'https:'
    : matchTarget(meta.allowed_domains.map((p) => parseDomainPattern(p)), url) !== null;
  if (!allowed) {
    throw usage(
      'bad_base_url',
      `--base-url ${url.origin} is not within the credential's allowed domains`,
      `allowed: ${meta.any_domain ? 'any https host' : meta.allowed_domains.join(', ')}`,
    );
  }
}

/** An inject rule (`Name: value with {{CREDENTIAL}}`) as the header it adds; null if malformed. */
export function injectHeader(rule: string): [string, string] | null {
  const colon = rule.indexOf(':');
  if (colon <= 0) return null;
  return [rule.slice(0, colon), rule.slice(colon + 1).replace(/^ /, '')];
}

function _checkInject(meta: CredentialMeta): void {
  const header = injectHeader(meta.inject ?? '');
  if (header === null) {
    throw usage('bad_inject', '--inject must look like "Header-Name: value with {{CREDENTIAL}}"');
  }
  const [name, value] = header;
  const template = parseTemplate({
    credential: meta.name,
    url: meta.base_url ?? 'https://inject.invalid/',
    headers: { [name]: value },
  });
  const uses = findPlaceholders(template);
  if (uses.length === 0 || uses.some((u) => u.name !== meta.name || u.placement !== 'header')) {
    throw usage(
      'bad_inject',
      '--inject must use {{CREDENTIAL}} (this credential) in the header value',
    );
  }
}

const PERIODS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

export interface Rate {
  count: number;
  periodSeconds: number;
}

export function parseRate(text: string): Rate {
  const m = /^(\d{1,9})\/(\d{0,6})(s|m|h|d)$/.exec(text.trim());
  const count = m === null ? NaN : Number(m[1]);
  const mult = m === null ? NaN : (m[2] === '' ? 1 : Number(m[2]));
  if (m === null || count < 1 || mult < 1) {
    throw usage(
      'bad_rate',
      `invalid rate "${escapeControls(text)}"`,
      'use N/PERIOD with PERIOD s, m, h or d (e.g. 60/m, 1000/h, 5/10s)',
    );
  }
  return { count, periodSeconds: mult * (PERIODS[m[3] as string] as number) };
}

export function formatRate(r: Rate): string {
  for (const unit of ['d', 'h', 'm', 's']) {
    const size = PERIODS[unit] as number;
    if (r.periodSeconds % size === 0) {
      const n = r.periodSeconds / size;
      return `${r.count}/${n === 1 ? '' : n}${unit}`;
    }
  }
  return `${r.count}/${r.periodSeconds}s`;
}

export function addCredential(
  body: VaultBody,
  keys: VaultKeys,
  input: { name: string; spec: CredentialSpec; value: Uint8Array; now: Date; org?: string },
): Change<CredentialMeta> {
  const meta = buildMeta(input.name, input.spec);
  if (body.credentials.some((c) => c.name === meta.name)) {
    throw usage(
      'credential_exists',
      `a credential named "${meta.name}" already exists`,
      `use \`trust-protocol credential update ${meta.name}\` or \`rotate\``,
    );
  }
  const ts = input.now.toISOString();
  body.credentials.push({
    ...meta,
    created_at: ts,
    updated_at: ts,
    value: encryptValue(keys, meta, input.value),
    ...(input.org === undefined ? {} : { org: input.org }),
  });
  const made = _event('credential.add', meta);
  const org = input.org === undefined ? {} : { org: input.org };
  return { result: meta, events: [{ ...made, data: { ...made.data, ...org } }] };
}

/** Update re-binds the unchanged value to the new metadata (decrypt with the old, seal with the new). */
export function updateCredential(
  body: VaultBody,
  keys: VaultKeys,
  input: {
    name: string;
    spec: CredentialSpec;
    decrypt: (r: CredentialRecord) => Uint8Array;
    now: Date;
  },
): Change<CredentialMeta> {
  const record = _find(body, input.name);
  const meta = buildMeta(input.name, input.spec, record);
  const value = input.decrypt(record);
  Object.assign(record, meta, {
    updated_at: input.now.toISOString(),
    value: encryptValue(keys, meta, value),
  });
  value.fill(0);
  return { result: meta, events: [_event('credential.update', meta)] };
}

export function rotateCredential(
  body: VaultBody,
  keys: VaultKeys,
  input: { name: string; value: Uint8Array; now: Date },
): Change<CredentialMeta> {
  const record = _find(body, input.name);
  record.value = encryptValue(keys, record, input.value);
  record.updated_at = input.now.toISOString();
  return { result: credentialMeta(record), events: [_event('credential.rotate', record)] };
}

export function removeCredential(body: VaultBody, name: string): Change<CredentialMeta> {
  const record = _find(body, name);
  body.credentials = body.credentials.filter((c) => c !== record);
  for (const agent of body.agents) agent.grants = agent.grants.filter((g) => g !== name);
  return { result: credentialMeta(record), events: [_event('credential.remove', record)] };
}

export function findCredential(body: VaultBody, name: string): CredentialRecord {
  return _find(body, name);
}

function _find(body: VaultBody, name: string): CredentialRecord {
  const record = body.credentials.find((c) => c.name === name);
  if (record === undefined) {
    throw new TpError(
      'usage',
      'no_such_credential',
      `no credential named "${escapeControls(name)}"`,
      {
        hint: 'see `trust-protocol credential list`',
      },
    );
  }
  return record;
}

function _event(event: EventName, meta: CredentialMeta) {
  return {
    event,
    actor: { type: 'operator' as const },
    outcome: 'ok' as const,
    data: {
      credential: meta.name,
      allowed_domains: meta.any_domain ? ['*any*'] : meta.allowed_domains,
      min_tier: meta.min_tier,
      placements: meta.placements,
    },
  };
}
