/**
 * The vault file (`vault.json`, format documented in docs/formats.md#vault): KDF parameters, the
 * data key wrapped under the password-derived key, credential metadata with encrypted values, agent
 * records, and an HMAC over all of it. Reading needs no password (early policy denials use the
 * unauthenticated view); nothing is trusted for an allow until `unseal` has checked the HMAC.
 */
import { hmacSha256Hex } from './crypto/hmac.ts';
import { type ActionConfig, ACTIONS, ANOMALY_KINDS } from './monitor/actions.ts';
import { Buffer } from 'node:buffer';
import {
  type AuditEvent,
  type Authenticated,
  authenticatedOnly,
  type FileAuditLog,
  type LogEntry,
} from './audit.ts';
import { brakeOrg, type BrakeScope, clearedKey, type FileBrakes, SCOPES } from './brakes.ts';
import type { StoreSync } from './store/sync.ts';
import { NAME_RE } from './grammar.ts';
import { checkOrgChange } from './orgs.ts';
import { canonicalJson } from './canonical.ts';
import { fromB64, fromHex, secretEqual, toB64, toHex, utf8, wipe } from './bytes.ts';
import { publicKeyOf } from './crypto/ed25519.ts';
import { open, randomBytes, randomKey, seal, subkey } from './crypto/aead.ts';
import { checkKdfParams, deriveKey, type KdfParams } from './crypto/kdf.ts';
import { integrity, TpError } from './errors.ts';
import { type EventName, VAULT_CHANGE_EVENTS, VAULT_SAVED_EVENTS } from './events.ts';
import { type Home, readStateFile, withLock, writeStateFile, writeStateFileAsync } from './home.ts';
import { type Tier, TIERS } from './tiers.ts';
import { arr, bool, int, obj, oneOf, str, strArr, strOrNull } from './validate.ts';
import { resealConfig } from './config.ts';
import { checkpointKey } from './checkpoint.ts';
import { type Admin, byAdmin, checkRole, ROLES } from './admins.ts';
import { linkAdmin, type OidcConfig, parseOidc } from './oidc/config.ts';
import {
  newSlot,
  openSlot,
  sealToSlot,
  type Slot,
  type SlotKdf,
  slotParams,
  slotWithKek,
} from './slots.ts';
import { type AuditKeyring, type OlderAuditKey, wipeMacKey } from './audit_keys.ts';

export const VAULT_FILE = 'vault.json';
export const VAULT_FORMAT = 'trust-protocol/vault';
/** Format 2 has key slots (#19); format 1 (one password) is read, and upgraded on its first change. */
export const VAULT_VERSION = 2;
/** Format 3 is format 2 with `body.audit_keys`, written by the first `vault rekey` (#19). */
export const VAULT_VERSION_REKEYED = 3;

export const PLACEMENTS = ['header', 'query', 'path', 'body'] as const;
export type Placement = (typeof PLACEMENTS)[number];

/** What the value's ciphertext is bound to: editing any of it makes decryption fail (exit 8). */
export interface CredentialMeta {
  name: string;
  allowed_domains: string[];
  any_domain: boolean;
  placements: Placement[];
  min_tier: Tier;
  base_url: string | null;
  inject: string | null;
  rate: string | null;
  /**
   * The provider preset it was added with (src/presets.ts): only which environment variables `run`
   * sets. Covered by the vault's MAC, not by the value's associated data (it decides nothing about
   * where the value may go), so records written before it existed keep their binding.
   */
  preset?: string;
  /**
   * The organisation it belongs to (src/orgs.ts); absent: instance-wide. Covered by the vault's
   * MAC, not by the value's associated data, as `preset` is.
   */
  org?: string;
}

export interface CredentialRecord extends CredentialMeta {
  created_at: string;
  updated_at: string;
  value: { nonce: string; ciphertext: string };
}

export const AGENT_STATES = ['active', 'suspended', 'revoked'] as const;
export type AgentState = (typeof AGENT_STATES)[number];

export interface AgentRecord {
  id: string;
  name: string;
  tier: Tier;
  state: AgentState;
  grants: string[];
  token_sha256: string | null;
  token_expires_at: string | null;
  /** Renewals by the agent itself since a human last issued its token (absent: none). */
  renewals?: number;
  /** The organisation it belongs to (src/orgs.ts); absent: instance-wide. */
  org?: string;
  created_at: string;
  updated_at: string;
}

export interface AuditHead {
  seq: number;
  hash: string;
}

export interface VaultBody {
  generation: number;
  created_at: string;
  credentials: CredentialRecord[];
  agents: AgentRecord[];
  audit_head: AuditHead | null;
  /** Ids of emergency brakes an operator cleared with the password (brakes.ts). */
  cleared_brakes: string[];
  /** Brakes a password holder has seen in force: they stay in force even if every record is deleted. */
  known_brakes: KnownBrake[];
  /** Trusted skill publishers (Ed25519 keys in minisign form); revoked ones stay, marked. */
  publishers: PublisherRecord[];
  /**
   * Set (and saved) just before a change's audit entries are written, cleared when the change is
   * saved: tells a crash in between (the change did not happen) from a restored older copy.
   */
  change_in_flight: boolean;
  /** What each anomaly kind makes the monitor do, where it differs from the defaults. */
  monitor_actions?: ActionConfig;
  /**
   * The Ed25519 key that signs audit checkpoints (issue #18): created at init, or on first use
   * with the password in an older vault. Its private half is encrypted like credential values.
   */
  audit_signing?: AuditSigning;
  /** Trusted OIDC issuers and identity-to-admin links (src/oidc/config.ts); absent: none. */
  oidc?: OidcConfig;
  /**
   * Format 3 (#19): the audit MAC keys of the data keys `vault rekey` replaced, oldest first,
   * each encrypted under the current credential key with the last entry it MACed.
   */
  audit_keys?: SealedAuditKey[];
  /**
   * Format 3: the public key of version-1 JSON checkpoints, which derives from the first data key;
   * kept by the first rekey so checkpoints signed before still verify (standard base64).
   */
  checkpoint_key?: string;
}

export interface SealedAuditKey {
  /** The number of the last entry MACed under this key: the `vault.rekeyed` entry. */
  through: number;
  nonce: string;
  ciphertext: string;
}

export interface AuditSigning {
  /** The checkpoint origin line and note key name, `trust-protocol/<random id>`, fixed here. */
  origin: string;
  /** The 32-byte Ed25519 public key, standard base64. */
  public_key: string;
  /** The 32-byte seed, AES-256-GCM under the credential key, bound to origin and public key. */
  private_key: { nonce: string; ciphertext: string };
  created_at: string;
}

export interface PublisherRecord {
  name: string;
  /** minisign key id: 8 bytes, hex, as minisign prints it (upper case). */
  key_id: string;
  /** The 32-byte Ed25519 public key, standard base64. */
  public_key: string;
  added_at: string;
  revoked_at: string | null;
  revoke_reason: string | null;
  /** The organisation it belongs to (src/orgs.ts); absent: instance-wide. */
  org?: string;
}

export interface KnownBrake {
  id: string;
  scope: BrakeScope;
  target: string | null;
  reason: string;
  activated_at: string;
}

export interface VaultFile {
  format: typeof VAULT_FORMAT;
  version: 1 | 2 | 3;
  /** Format 1 only: the one password's KDF parameters and the data key wrapped under it. */
  legacy?: { kdf: SlotKdf; key: { nonce: string; ciphertext: string } };
  /** Format 2: one key slot per admin (src/slots.ts); empty in format 1. */
  slots: Slot[];
  body: VaultBody;
  mac: string;
}

/** Keys derived from the data key once the vault is unsealed, and who unsealed it. */
export interface VaultKeys {
  credentials: Uint8Array;
  state: Uint8Array;
  audit: Uint8Array;
  /** `audit` and the audit keys of earlier data keys: what readers check entries with. */
  auditKeys: AuditKeyring;
  data: Uint8Array;
  /** The admin whose slot opened: every change is checked against its role (src/admins.ts). */
  admin: Admin;
  /** A format-1 vault's owner slot, made at unseal from its password: written by the first change. */
  upgrade?: Slot;
}

/** The owner of a format-1 vault, which had one password. */
export const LEGACY_OWNER: Admin = { name: 'owner', role: 'owner' };

export function deriveVaultKeys(dataKey: Uint8Array, admin: Admin): VaultKeys {
  const audit = subkey(dataKey, 'audit-mac');
  return {
    admin,
    data: dataKey,
    credentials: subkey(dataKey, 'credential-values'),
    state: subkey(dataKey, 'state-mac'),
    audit,
    auditKeys: { current: audit, older: [] },
  };
}

export function wipeKeys(keys: VaultKeys): void {
  wipe(keys.data, keys.credentials, keys.state, keys.audit);
  wipeMacKey(keys.auditKeys);
}

function _auditKeyAad(through: number): Uint8Array {
  return utf8.encode(canonicalJson({ v: 3, purpose: 'older-audit-key', through }));
}

function _sealAuditKey(keys: VaultKeys, older: OlderAuditKey): SealedAuditKey {
  const s = seal(keys.credentials, older.key, _auditKeyAad(older.through));
  return { through: older.through, nonce: toB64(s.nonce), ciphertext: toB64(s.ciphertext) };
}

/** The earlier audit keys of a verified vault (format 3), under its current credential key. */
function _openAuditKeys(file: VerifiedVault, keys: VaultKeys): OlderAuditKey[] {
  return (file.body.audit_keys ?? []).map((k) => {
    const key = open(
      keys.credentials,
      {
        nonce: fromB64(k.nonce, 'audit_keys.nonce'),
        ciphertext: fromB64(k.ciphertext, 'audit_keys.ciphertext'),
      },
      _auditKeyAad(k.through),
    );
    if (key === null || key.length !== 32) {
      throw integrity(
        'audit_keys',
        'an earlier audit key in vault.json does not open under the vault key: it was edited',
        'restore vault.json from a backup',
      );
    }
    return { through: k.through, key };
  });
}

/** Format 1's wrapping AAD names format 1: kept as it was, so format-1 files still open. */
function _v1WrapAad(kdf: SlotKdf): Uint8Array {
  return utf8.encode(canonicalJson({ format: VAULT_FORMAT, version: 1, kdf }));
}

/** The file as it is stored: format 1 keeps its layout (and MAC input) until it is upgraded. */
function _stored(file: Omit<VaultFile, 'mac'>): Record<string, unknown> {
  const { format, version, body } = file;
  if (version === 1) {
    const legacy = file.legacy as NonNullable<VaultFile['legacy']>;
    return { format, version, kdf: legacy.kdf, key: legacy.key, body };
  }
  return { format, version, slots: file.slots, body };
}

function _mac(file: Omit<VaultFile, 'mac'>, keys: VaultKeys): string {
  return hmacSha256Hex(keys.state, canonicalJson(_stored(file)));
}

/** Who may unseal: the slots, or a format-1 vault's one password as its owner. */
export function adminsOf(file: VaultFile): Array<Admin & { created_at: string }> {
  if (file.version === 1) return [{ ...LEGACY_OWNER, created_at: file.body.created_at }];
  return file.slots.map((s) => ({
    name: s.name,
    role: s.role,
    ...(s.org === undefined ? {} : { org: s.org }),
    created_at: s.created_at,
  }));
}

/** The KDF parameters of an admin's slot (format 1: of the one password). */
export function adminKdf(file: VaultFile, name: string): KdfParams | null {
  if (file.version === 1) {
    return name === LEGACY_OWNER.name && file.legacy !== undefined
      ? slotParams(file.legacy.kdf)
      : null;
  }
  const slot = file.slots.find((s) => s.name === name);
  return slot === undefined ? null : slotParams(slot.kdf);
}

export function createVault(
  password: Uint8Array,
  params: KdfParams,
  now: Date,
  options: { admin?: string } = {},
): { file: VaultFile; keys: VaultKeys } {
  const problem = checkKdfParams(params);
  if (problem !== null) {
    throw new TpError('usage', 'kdf_params', problem, {
      hint: 'the floor is 19 MiB and 2 iterations',
    });
  }
  const admin: Admin = { name: options.admin ?? LEGACY_OWNER.name, role: 'owner' };
  const keys = deriveVaultKeys(randomKey(), admin);
  const slot = newSlot(admin, password, params, keys.data, now.toISOString());
  const body: VaultBody = {
    generation: 1,
    created_at: now.toISOString(),
    credentials: [],
    agents: [],
    audit_head: null,
    cleared_brakes: [],
    known_brakes: [],
    publishers: [],
    change_in_flight: false,
  };
  body.audit_signing = newAuditSigning(keys, now);
  const unsigned: Omit<VaultFile, 'mac'> = {
    format: VAULT_FORMAT,
    version: VAULT_VERSION,
    slots: [slot],
    body,
  };
  return { file: { ...unsigned, mac: _mac(unsigned, keys) }, keys };
}

function _signingAad(origin: string, publicKey: string): Uint8Array {
  return utf8.encode(
    canonicalJson({ v: 1, purpose: 'audit-signing', origin, public_key: publicKey }),
  );
}

/** A fresh checkpoint signing key and origin for a vault (docs/formats.md#vaultjson-version-1). */
export function newAuditSigning(keys: VaultKeys, now: Date): AuditSigning {
  const seed = randomKey();
  const origin = `trust-protocol/${toHex(randomBytes(8))}`;
  const publicKey = toB64(publicKeyOf(seed));
  const s = seal(keys.credentials, seed, _signingAad(origin, publicKey));
  wipe(seed);
  return {
    origin,
    public_key: publicKey,
    private_key: { nonce: toB64(s.nonce), ciphertext: toB64(s.ciphertext) },
    created_at: now.toISOString(),
  };
}

/** The public key version-1 JSON checkpoints of this vault are signed with. */
export function legacyCheckpointKey(file: VerifiedVault, keys: VaultKeys): Uint8Array {
  return file.body.checkpoint_key === undefined
    ? checkpointKey(keys.data).publicKey
    : fromB64(file.body.checkpoint_key, 'body.checkpoint_key');
}

/** The checkpoint signing seed (the caller wipes it); integrity error if it was swapped. */
export function auditSigningSeed(keys: VaultKeys, signing: AuditSigning): Uint8Array {
  const seed = open(
    keys.credentials,
    {
      nonce: fromB64(signing.private_key.nonce, 'audit_signing.private_key.nonce'),
      ciphertext: fromB64(signing.private_key.ciphertext, 'audit_signing.private_key.ciphertext'),
    },
    _signingAad(signing.origin, signing.public_key),
  );
  if (seed === null || seed.length !== 32 || toB64(publicKeyOf(seed)) !== signing.public_key) {
    throw integrity(
      'audit_signing_key',
      'the audit signing key in vault.json does not match its encrypted half: it was edited',
      'restore vault.json from a backup',
    );
  }
  return seed;
}

function _unsealV1(file: VaultFile, password: Uint8Array): VaultKeys | null {
  const legacy = file.legacy as NonNullable<VaultFile['legacy']>;
  const kek = deriveKey(password, fromB64(legacy.kdf.salt, 'kdf.salt'), slotParams(legacy.kdf));
  try {
    const dataKey = open(
      kek,
      {
        nonce: fromB64(legacy.key.nonce, 'key.nonce'),
        ciphertext: fromB64(legacy.key.ciphertext, 'key.ciphertext'),
      },
      _v1WrapAad(legacy.kdf),
    );
    if (dataKey === null || dataKey.length !== 32) return null;
    const keys = deriveVaultKeys(dataKey, LEGACY_OWNER);
    // The owner slot that replaces the one password: same KDF salt, so the same wrapping key.
    keys.upgrade = slotWithKek(LEGACY_OWNER, legacy.kdf, kek, dataKey, file.body.created_at);
    return keys;
  } finally {
    wipe(kek);
  }
}

/**
 * Derives the key from the password and checks the whole file. `admin` names the slot to try;
 * without it every slot is tried in turn, one Argon2id each (a wrong password costs as many as
 * there are slots). Wrong password or unknown admin: exit 3; an edited slot: exit 8.
 */
export function unseal(
  file: VaultFile,
  password: Uint8Array,
  options: { admin?: string | undefined } = {},
): VaultKeys {
  const named = options.admin;
  if (named !== undefined && !adminsOf(file).some((a) => a.name === named)) {
    throw new TpError('sealed', 'unknown_admin', `no admin named "${named}" in this vault`, {
      hint: 'see `trust-protocol admin list`; --admin and TRUST_PROTOCOL_ADMIN name a key slot',
    });
  }
  let keys: VaultKeys | null = null;
  if (file.version === 1) {
    keys = _unsealV1(file, password);
  } else {
    for (const slot of file.slots) {
      if (named !== undefined && slot.name !== named) continue;
      const dataKey = openSlot(slot, password);
      if (dataKey !== null) {
        keys = deriveVaultKeys(dataKey, {
          name: slot.name,
          role: slot.role,
          ...(slot.org === undefined ? {} : { org: slot.org }),
        });
        break;
      }
    }
  }
  if (keys === null) {
    throw new TpError('sealed', 'wrong_password', 'wrong master password', {
      hint: named === undefined
        ? 'check the password source (--password-file, TRUST_PROTOCOL_PASSWORD or the prompt)'
        : `check the password source, and that it is the password of admin "${named}"`,
    });
  }
  verifyVault(file, keys);
  keys.auditKeys = { current: keys.audit, older: _openAuditKeys(file, keys) };
  return keys;
}

declare const verified: unique symbol;
/**
 * A vault file whose MAC was checked under the vault's keys: only such a file may grant, renew,
 * raise or lift anything. Every other `VaultFile` (read from disk, unchecked) may only narrow.
 */
export type VerifiedVault = VaultFile & { readonly [verified]: true };

export function verifyVault(file: VaultFile, keys: VaultKeys): asserts file is VerifiedVault {
  const expected = fromHex(_mac(file, keys), 'mac');
  let actual: Uint8Array;
  try {
    actual = fromHex(file.mac, 'mac');
  } catch {
    actual = new Uint8Array(0);
  }
  if (!secretEqual(expected, actual)) {
    throw integrity(
      'vault_mac',
      'the vault file was modified outside trust-protocol (its integrity check failed)',
      'restore vault.json from a backup; nothing was decrypted or sent',
    );
  }
}

export function loadVault(home: Home): VaultFile {
  const bytes = readStateFile(home, VAULT_FILE);
  if (bytes === null) {
    throw new TpError('sealed', 'no_vault', `no vault in ${home.dir}`, {
      hint: 'run `trust-protocol init` to create one',
    });
  }
  return parseVault(bytes);
}

function _sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);
}

function _deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) _deepFreeze(v);
  }
  return value;
}

export function vaultExists(home: Home): boolean {
  return readStateFile(home, VAULT_FILE) !== null;
}

/** Writes the vault, MACed; returns the document written (what the team store is sent). */
export function saveVault(home: Home, file: VaultFile, keys: VaultKeys): string {
  const { mac: _, ...unsigned } = file;
  const signed = { ..._stored(unsigned), mac: _mac(unsigned, keys) };
  const text = JSON.stringify(signed, null, 2) + '\n';
  writeStateFile(home, VAULT_FILE, text);
  return text;
}

/** `saveVault` with its fsyncs awaited off the event loop (the head writes of serve's keeper). */
async function _saveVaultAsync(home: Home, file: VaultFile, keys: VaultKeys): Promise<string> {
  const { mac: _, ...unsigned } = file;
  const signed: VaultFile = { ...unsigned, mac: _mac(unsigned, keys) };
  const text = JSON.stringify(signed, null, 2) + '\n';
  await writeStateFileAsync(home, VAULT_FILE, text);
  return text;
}

export interface Change<T> {
  result: T;
  /** Audit events for the change; made durable before the vault is written (fail closed). */
  events: AuditEvent[];
  /**
   * `vault rekey`: the keys of the new data key. The change's events (the `vault.rekeyed` entry
   * last) are MACed under the old audit key; the vault is then saved under the new keys with the
   * old audit key kept in `audit_keys`, and everything after is MACed under the new one.
   */
  rekey?: VaultKeys;
}

/** Adds brakes in force to the vault's known list (returns whether it changed). */
export function rememberBrakes(body: VaultBody, active: readonly KnownBrake[]): boolean {
  const fresh = active.filter((b) =>
    b.id.startsWith('brk_') && !body.known_brakes.some((k) => k.id === b.id)
  );
  body.known_brakes.push(
    ...fresh.map(({ id, scope, target, reason, activated_at }) => ({
      id,
      scope,
      target,
      reason,
      activated_at,
    })),
  );
  return fresh.length > 0;
}

/** Whether a brake in force is missing from the vault's known list (cheap: no I/O). */
export function hasUnknownBrakes(
  body: { known_brakes: readonly { id: string }[] },
  active: readonly { id: string }[],
): boolean {
  return active.some((b) =>
    b.id.startsWith('brk_') && !body.known_brakes.some((k) => k.id === b.id)
  );
}

function _rollbackError(missed: { seq: number; event: string }): TpError {
  return integrity(
    'vault_rollback',
    `vault.json is older than the audit trail: it lacks the change recorded at entry ${missed.seq} (${missed.event})`,
    'if vault.json was restored from an older copy, put the current one back; if a trust-protocol command was killed while making that change, run `trust-protocol audit resync` and redo it',
  );
}

export function credentialMeta(c: CredentialMeta): CredentialMeta {
  return {
    name: c.name,
    allowed_domains: [...c.allowed_domains],
    any_domain: c.any_domain,
    placements: [...c.placements],
    min_tier: c.min_tier,
    base_url: c.base_url,
    inject: c.inject,
    rate: c.rate,
  };
}

function _credentialAad(meta: CredentialMeta): Uint8Array {
  return utf8.encode(canonicalJson({ v: 1, ...credentialMeta(meta) }));
}

export function encryptValue(keys: VaultKeys, meta: CredentialMeta, value: Uint8Array) {
  const s = seal(keys.credentials, value, _credentialAad(meta));
  return { nonce: toB64(s.nonce), ciphertext: toB64(s.ciphertext) };
}

export function decryptValue(keys: VaultKeys, record: CredentialRecord): Uint8Array {
  const value = open(
    keys.credentials,
    {
      nonce: fromB64(record.value.nonce, 'nonce'),
      ciphertext: fromB64(record.value.ciphertext, 'ciphertext'),
    },
    _credentialAad(record),
  );
  if (value === null) {
    throw integrity(
      'credential_binding',
      `credential "${record.name}" does not match its encrypted value: its metadata was edited or swapped`,
      'restore vault.json from a backup, or remove and re-add the credential',
    );
  }
  return value;
}

function _parseAuditSigning(v: unknown): AuditSigning {
  const o = obj(v, 'body.audit_signing');
  const k = obj(o.private_key, 'audit_signing.private_key');
  return {
    origin: str(o.origin, 'audit_signing.origin'),
    public_key: str(o.public_key, 'audit_signing.public_key'),
    private_key: {
      nonce: str(k.nonce, 'audit_signing.private_key.nonce'),
      ciphertext: str(k.ciphertext, 'audit_signing.private_key.ciphertext'),
    },
    created_at: str(o.created_at, 'audit_signing.created_at'),
  };
}

export function parseVault(bytes: Uint8Array): VaultFile {
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw integrity('malformed_state', 'vault.json is not valid JSON', 'restore it from a backup');
  }
  const o = obj(raw, 'vault');
  if (o.format !== VAULT_FORMAT) {
    throw integrity('malformed_state', 'vault.json: not a trust-protocol vault');
  }
  if (o.version !== 1 && o.version !== 2 && o.version !== VAULT_VERSION_REKEYED) {
    throw integrity(
      'unsupported_version',
      `vault.json: format version ${String(o.version)} is not supported`,
      'upgrade trust-protocol',
    );
  }
  const body = obj(o.body, 'body');
  const head = body.audit_head === null ? null : obj(body.audit_head, 'body.audit_head');
  const file: VaultFile = {
    format: VAULT_FORMAT,
    version: o.version,
    ...(o.version === 1
      ? { legacy: { kdf: _parseKdf(o.kdf, 'kdf'), key: _parseSealed(o.key, 'key') }, slots: [] }
      : { slots: arr(o.slots, 'slots').map((v, i) => _parseSlot(v, i)) }),
    body: {
      generation: int(body.generation, 'body.generation'),
      created_at: str(body.created_at, 'body.created_at'),
      credentials: arr(body.credentials, 'body.credentials').map((c, i) => _parseCredential(c, i)),
      agents: arr(body.agents, 'body.agents').map((a, i) => _parseAgent(a, i)),
      audit_head: head === null
        ? null
        : { seq: int(head.seq, 'audit_head.seq'), hash: str(head.hash, 'audit_head.hash') },
      cleared_brakes: strArr(body.cleared_brakes, 'body.cleared_brakes'),
      known_brakes: arr(body.known_brakes, 'body.known_brakes').map((b, i) => {
        const k = obj(b, `known_brakes[${i}]`);
        return {
          id: str(k.id, `known_brakes[${i}].id`),
          scope: oneOf(
            k.scope,
            `known_brakes[${i}].scope`,
            SCOPES,
          ),
          target: strOrNull(k.target, `known_brakes[${i}].target`),
          reason: str(k.reason, `known_brakes[${i}].reason`),
          activated_at: str(k.activated_at, `known_brakes[${i}].activated_at`),
        };
      }),
      change_in_flight: bool(body.change_in_flight, 'body.change_in_flight'),
      ...(body.monitor_actions === undefined
        ? {}
        : { monitor_actions: _parseMonitorActions(body.monitor_actions) }),
      ...(body.audit_signing === undefined
        ? {}
        : { audit_signing: _parseAuditSigning(body.audit_signing) }),
      ...(body.oidc === undefined ? {} : { oidc: parseOidc(body.oidc) }),
      ...(o.version === VAULT_VERSION_REKEYED
        ? {
          audit_keys: arr(body.audit_keys, 'body.audit_keys').map((v, i) => ({
            through: int(obj(v, `audit_keys[${i}]`).through, `audit_keys[${i}].through`),
            ..._parseSealed(v, `audit_keys[${i}]`),
          })),
        }
        : {}),
      ...(o.version === VAULT_VERSION_REKEYED && body.checkpoint_key !== undefined
        ? { checkpoint_key: str(body.checkpoint_key, 'body.checkpoint_key') }
        : {}),
      publishers: arr(body.publishers, 'body.publishers').map((v, i) => {
        const p = obj(v, `publishers[${i}]`);
        return {
          name: str(p.name, `publishers[${i}].name`),
          key_id: str(p.key_id, `publishers[${i}].key_id`),
          public_key: str(p.public_key, `publishers[${i}].public_key`),
          added_at: str(p.added_at, `publishers[${i}].added_at`),
          revoked_at: strOrNull(p.revoked_at, `publishers[${i}].revoked_at`),
          revoke_reason: strOrNull(p.revoke_reason, `publishers[${i}].revoke_reason`),
          ..._org(p.org, `publishers[${i}].org`),
        };
      }),
    },
    mac: str(o.mac, 'mac'),
  };
  const kdfs = file.version === 1 ? [file.legacy!.kdf] : file.slots.map((s) => s.kdf);
  for (const kdf of kdfs) {
    const problem = checkKdfParams(slotParams(kdf));
    if (problem !== null) {
      throw integrity(
        'kdf_params',
        `vault.json asks for unsafe KDF parameters: ${problem}`,
        'restore vault.json from a backup',
      );
    }
  }
  if (file.version !== 1 && file.slots.length === 0) {
    throw integrity('malformed_state', 'vault.json has no key slot', 'restore it from a backup');
  }
  if (new Set(file.slots.map((s) => s.name)).size !== file.slots.length) {
    throw integrity('malformed_state', 'vault.json has two key slots with one name');
  }
  return file;
}

/** An optional organisation name (src/orgs.ts): absent in records made before organisations. */
function _org(v: unknown, f: string): { org?: string } {
  if (v === undefined) return {};
  const org = str(v, f);
  if (!NAME_RE.test(org)) throw integrity('malformed_state', `vault.json: ${f} is not a name`);
  return { org };
}

function _parseKdf(v: unknown, f: string): SlotKdf {
  const kdf = obj(v, f);
  return {
    algorithm: oneOf(kdf.algorithm, `${f}.algorithm`, ['argon2id'] as const),
    memory_kib: int(kdf.memory_kib, `${f}.memory_kib`),
    iterations: int(kdf.iterations, `${f}.iterations`),
    parallelism: int(kdf.parallelism, `${f}.parallelism`),
    salt: str(kdf.salt, `${f}.salt`),
  };
}

function _parseSealed(v: unknown, f: string): { nonce: string; ciphertext: string } {
  const o = obj(v, f);
  return { nonce: str(o.nonce, `${f}.nonce`), ciphertext: str(o.ciphertext, `${f}.ciphertext`) };
}

function _parseSlot(v: unknown, i: number): Slot {
  const f = `slots[${i}]`;
  const o = obj(v, f);
  const key = obj(o.key, `${f}.key`);
  return {
    name: str(o.name, `${f}.name`),
    role: oneOf(o.role, `${f}.role`, ROLES),
    ..._org(o.org, `${f}.org`),
    created_at: str(o.created_at, `${f}.created_at`),
    kdf: _parseKdf(o.kdf, `${f}.kdf`),
    public_key: str(o.public_key, `${f}.public_key`),
    private_key: _parseSealed(o.private_key, `${f}.private_key`),
    key: { ..._parseSealed(key, `${f}.key`), ephemeral: str(key.ephemeral, `${f}.key.ephemeral`) },
  };
}

function _parseCredential(v: unknown, i: number): CredentialRecord {
  const f = `credentials[${i}]`;
  const c = obj(v, f);
  const value = obj(c.value, `${f}.value`);
  return {
    name: str(c.name, `${f}.name`),
    allowed_domains: strArr(c.allowed_domains, `${f}.allowed_domains`),
    any_domain: bool(c.any_domain, `${f}.any_domain`),
    placements: arr(c.placements, `${f}.placements`).map((p, j) =>
      oneOf(p, `${f}.placements[${j}]`, PLACEMENTS)
    ),
    min_tier: oneOf(c.min_tier, `${f}.min_tier`, TIERS),
    base_url: strOrNull(c.base_url, `${f}.base_url`),
    inject: strOrNull(c.inject, `${f}.inject`),
    rate: strOrNull(c.rate, `${f}.rate`),
    ...(c.preset === undefined ? {} : { preset: str(c.preset, `${f}.preset`) }),
    ..._org(c.org, `${f}.org`),
    created_at: str(c.created_at, `${f}.created_at`),
    updated_at: str(c.updated_at, `${f}.updated_at`),
    value: {
      nonce: str(value.nonce, `${f}.value.nonce`),
      ciphertext: str(value.ciphertext, `${f}.value.ciphertext`),
    },
  };
}

function _parseMonitorActions(v: unknown): ActionConfig {
  const o = obj(v, 'body.monitor_actions');
  const out: ActionConfig = {};
  for (const [kind, actions] of Object.entries(o)) {
    out[oneOf(kind, 'body.monitor_actions', ANOMALY_KINDS)] = strArr(
      actions,
      `body.monitor_actions.${kind}`,
    ).map((a) => oneOf(a, `body.monitor_actions.${kind}`, ACTIONS));
  }
  return out;
}

function _parseAgent(v: unknown, i: number): AgentRecord {
  const f = `agents[${i}]`;
  const a = obj(v, f);
  return {
    id: str(a.id, `${f}.id`),
    name: str(a.name, `${f}.name`),
    tier: oneOf(a.tier, `${f}.tier`, TIERS),
    state: oneOf(a.state, `${f}.state`, AGENT_STATES),
    grants: strArr(a.grants, `${f}.grants`),
    token_sha256: strOrNull(a.token_sha256, `${f}.token_sha256`),
    token_expires_at: strOrNull(a.token_expires_at, `${f}.token_expires_at`),
    ...(a.renewals === undefined ? {} : { renewals: int(a.renewals, `${f}.renewals`) }),
    ..._org(a.org, `${f}.org`),
    created_at: str(a.created_at, `${f}.created_at`),
    updated_at: str(a.updated_at, `${f}.updated_at`),
  };
}

/**
 * One home's vault, as this process sees it (src/state.ts opens it). `read` gives the file as it
 * is on disk, unchecked: what it says may only narrow access. Everything that changes the vault
 * checks the file's MAC under the keys first, under the vault lock, and records the change in the
 * audit trail before the file is written.
 */
export class FileVault {
  readonly home: Home;
  #audit: FileAuditLog;
  #brakes: FileBrakes;
  /** serve reads before every request: the same frozen object while the bytes stay the same. */
  #cache: { bytes: Uint8Array; file: VaultFile } | null = null;
  #cached: boolean;
  #heads: HeadWrites | null = null;
  #sync: StoreSync | null;

  constructor(
    home: Home,
    audit: FileAuditLog,
    brakes: FileBrakes,
    options: { cached: boolean; sync?: StoreSync | null },
  ) {
    this.home = home;
    this.#audit = audit;
    this.#brakes = brakes;
    this.#cached = options.cached;
    this.#sync = options.sync ?? null;
  }

  /**
   * The vault lock: the home's and, on the team store, the store's, under which the store's
   * document replaces the home's first (it is the newest any instance saved). `push` sends each
   * save made under the lock to the store, in order, before the work goes on: the document as
   * saved, never vault.json read back (the agent can write that file at any moment, and what
   * the store holds every instance takes).
   */
  async #locked<T>(
    work: (push: (saved: string, announce?: boolean) => Promise<void>) => Promise<T> | T,
    options: { entries: boolean } = { entries: false },
  ): Promise<T> {
    const home = this.home;
    const sync = this.#sync;
    return await withLock(home, 'vault', async () => {
      if (sync === null) return await work(() => Promise.resolve());
      const held = await sync.vaultLock(home, options);
      try {
        return await work((saved, announce = true) =>
          held.push(new TextEncoder().encode(saved), { announce })
        );
      } finally {
        await held.release();
      }
    });
  }

  exists(): boolean {
    return readStateFile(this.home, VAULT_FILE) !== null;
  }

  /**
   * The vault as it is on disk now, MAC not checked (see `VerifiedVault`). Cached (serve): while
   * the bytes on disk stay the same it returns the same object, deeply frozen, so the caller can
   * remember what it already checked about it (its MAC) and nobody can change it by accident.
   */
  read(): VaultFile {
    if (!this.#cached) return loadVault(this.home);
    const bytes = readStateFile(this.home, VAULT_FILE);
    if (bytes === null) return loadVault(this.home);
    if (this.#cache === null || !_sameBytes(bytes, this.#cache.bytes)) {
      this.#cache = { bytes, file: _deepFreeze(parseVault(bytes)) };
    }
    return this.#cache.file;
  }

  /**
   * `init`: writes a new vault (from `createVault`) under the vault lock, its `vault.init` entry
   * first, and the brakes directory; refuses when a vault exists. Every later write is `update`.
   */
  async init(file: VaultFile, keys: VaultKeys, params: KdfParams): Promise<void> {
    const home = this.home;
    await withLock(home, 'vault', async () => {
      if (this.exists()) {
        throw new TpError('usage', 'already_initialized', `a vault already exists in ${home.dir}`);
      }
      file.body.audit_head = await this.#audit.writer({ macKey: keys.auditKeys }).append([{
        event: 'vault.init',
        actor: { type: 'operator', id: keys.admin.name },
        outcome: 'ok',
        data: {
          kdf: {
            memory_kib: params.memoryKib,
            iterations: params.iterations,
            parallelism: params.parallelism,
          },
        },
      }]);
      this.#brakes.createDir();
      saveVault(home, file, keys);
    });
  }

  /**
   * Read-modify-write under the vault lock, on a freshly read and re-verified file, so concurrent
   * processes never lose each other's changes. The change's audit entries are appended first: if
   * they cannot be made durable, the change does not happen. The vault then records the audit
   * head.
   */
  async update<T>(
    keys: VaultKeys,
    change: (body: VaultBody, file: VerifiedVault) => Change<T>,
    options: { acceptOlder?: boolean } = {},
  ): Promise<T> {
    const home = this.home;
    return await this.#locked(async (push) => {
      const file = loadVault(home);
      verifyVault(file, keys);
      // A change made on a restored older copy would make the rollback permanent: refuse it.
      const missed = options.acceptOlder || this.#interrupted(file, keys)
        ? []
        : this.missedChanges(file, keys);
      if (missed[0] !== undefined) throw _rollbackError(missed[0]);
      // A format-1 vault becomes format 2 with its first change by a password holder.
      const upgrade = file.version === 1 && keys.upgrade !== undefined;
      if (upgrade) {
        delete file.legacy;
        file.version = 2;
        file.slots = [keys.upgrade as Slot];
      }
      const before = structuredClone(file);
      const made = change(file.body, file);
      const result = made.result;
      // Checked here, where every change passes, on what the change would record: a command that
      // forgot its own check is still refused, and nothing has been written yet.
      checkRole(keys.admin, made.events);
      // An org-scoped admin's change may touch only its organisation's objects and brakes.
      // The brakes are read only when an org-scoped admin clears one.
      let brakes: ReturnType<FileBrakes['active']> | null = null;
      checkOrgChange(keys.admin, before.body, file.body, made.events, (id) => {
        brakes ??= this.#brakes.active(before.body);
        const b = brakes.find((x) => x.id === id || clearedKey(x) === id);
        return b === undefined ? undefined : brakeOrg(b, before.body);
      });
      const events = byAdmin(keys.admin, [
        ...(upgrade
          ? [{
            event: 'vault.upgraded' as const,
            actor: { type: 'operator' as const },
            outcome: 'ok' as const,
            data: { from: 1, to: 2, admins: [keys.admin.name] },
          }]
          : []),
        ...made.events,
      ]);
      rememberBrakes(file.body, this.#brakes.active(file.body));
      let audit = this.#audit.writer({ macKey: keys.auditKeys });
      if (events.length > 0) {
        // Audit first (fail closed), but say so in the vault: a crash before the final save then
        // reads as "this change did not happen", not as a vault restored from an older copy.
        before.body.change_in_flight = true;
        before.body.generation += 1;
        await push(saveVault(home, before, keys));
        file.body.audit_head = await audit.append(events);
      }
      file.body.change_in_flight = false;
      file.body.generation = before.body.generation + 1;
      let saveKeys = keys;
      if (made.rekey !== undefined && file.body.audit_head !== null) {
        // The rekey entry is the last entry MACed under the old audit key (decisions.md).
        const next = made.rekey;
        const older = [
          ...keys.auditKeys.older.map((o) => ({ through: o.through, key: o.key.slice() })),
          { through: file.body.audit_head.seq, key: keys.audit.slice() },
        ];
        next.auditKeys = { current: next.audit, older };
        file.body.audit_keys = older.map((o) => _sealAuditKey(next, o));
        file.version = VAULT_VERSION_REKEYED;
        saveKeys = next;
        audit = this.#audit.writer({ macKey: next.auditKeys });
      }
      await push(saveVault(home, file, saveKeys));
      if (events.length > 0) {
        // Evidence that this save happened: a vault copy taken while the change was in flight,
        // restored later, no longer passes for an interrupted change.
        await audit.append([{
          event: 'vault.saved',
          actor: { type: 'operator', id: keys.admin.name },
          outcome: 'ok',
          data: { generation: file.body.generation },
        }]);
      }
      return result;
    }, { entries: true });
  }

  /**
   * True when the vault lacks changes only because the process making them died between their
   * audit entries and the vault write: the vault says a change was in flight, and no later save
   * of the vault was recorded (`vault.saved` of this generation or newer). A copy taken while a
   * change was in flight and restored after it completed fails the second condition.
   */
  #interrupted(file: VaultFile, keys: VaultKeys): boolean {
    if (!file.body.change_in_flight) return false;
    return !this.#audit.entriesAfter(
      keys.auditKeys,
      file.body.audit_head?.seq ?? 0,
      VAULT_SAVED_EVENTS,
    ).some((e) =>
      e.event === 'vault.saved' && e.authenticated &&
      Number(e.data.generation) >= file.body.generation
    );
  }

  /**
   * Records a later audit head in the vault (only ever forwards), so a cut-off tail of the log is
   * detected by `audit verify`. Called by every password-holding process after it appends.
   * Concurrent requests in one process (serve) share writes: each waits for a write whose head is
   * at least its own, so a burst costs one or two vault writes, not one each.
   */
  recordHead(keys: VaultKeys, head: AuditHead): Promise<void> {
    let pending = this.#heads;
    if (pending === null) {
      pending = this.#heads = { want: head, waiters: [], running: false };
    } else if (head.seq > pending.want.seq) {
      pending.want = head;
    }
    const p = pending;
    return new Promise<void>((resolve, reject) => {
      p.waiters.push({ seq: head.seq, keys, resolve, reject });
      if (!p.running) void this.#writeHeads(p);
    });
  }

  async #writeHeads(p: HeadWrites): Promise<void> {
    const home = this.home;
    p.running = true;
    while (p.waiters.length > 0) {
      const head = p.want;
      const served = p.waiters.filter((w) => w.seq <= head.seq);
      p.waiters = p.waiters.filter((w) => w.seq > head.seq);
      const keys = (served[served.length - 1] as { keys: VaultKeys }).keys;
      try {
        // Under the lock for the whole write: the fsyncs are awaited (other requests go on
        // meanwhile), and the next vault writer, in this process or another, waits for the rename.
        await this.#locked(async (push) => {
          const file = loadVault(home);
          verifyVault(file, keys);
          if (file.body.audit_head !== null && file.body.audit_head.seq >= head.seq) return;
          // Moving the head of a restored older copy past the changes it lacks would hide them.
          const missed = this.#interrupted(file, keys)
            ? undefined
            : this.missedChanges(file, keys)[0];
          if (missed !== undefined) throw _rollbackError(missed);
          // A brake recorded only in the log counts while it is after the head: keep every brake
          // in force in the vault's list before moving the head past it, as every write does.
          rememberBrakes(file.body, this.#brakes.active(file.body));
          file.body.audit_head = head;
          file.body.generation += 1;
          const saved = await _saveVaultAsync(home, file, keys);
          // A head moving forward is nothing the other instances need at once.
          await push(saved, false);
        });
        for (const w of served) w.resolve();
      } catch (e) {
        for (const w of served) w.reject(e);
      }
    }
    p.running = false;
    this.#heads = null;
  }

  /** A password holder that saw brakes the vault does not know yet copies them in (brakes.ts). */
  async recordKnownBrakes(
    keys: VaultKeys,
    file: VaultFile,
    active: readonly KnownBrake[] = this.#brakes.active(file.body),
  ): Promise<void> {
    if (!hasUnknownBrakes(file.body, active)) return;
    const home = this.home;
    await this.#locked(async (push) => {
      const fresh = loadVault(home);
      verifyVault(fresh, keys);
      if (!rememberBrakes(fresh.body, this.#brakes.active(fresh.body))) return;
      fresh.body.generation += 1;
      await push(saveVault(home, fresh, keys), false);
    });
  }

  /**
   * Refuses a vault older than the audit trail: a change a password holder recorded after the
   * vault's audit head (say `agent.revoke`) means vault.json was replaced by an older copy. A
   * change being written right now looks the same for a moment, so the check is repeated under
   * the vault lock on a fresh read before it fails. Returns the file to decide on.
   */
  async ensureCurrent(file: VerifiedVault, keys: VaultKeys): Promise<VerifiedVault> {
    if (this.#interrupted(file, keys) || this.missedChanges(file, keys).length === 0) return file;
    const fresh = await this.#locked(() => loadVault(this.home));
    verifyVault(fresh, keys);
    const missed = this.#interrupted(fresh, keys) ? undefined : this.missedChanges(fresh, keys)[0];
    if (missed !== undefined) throw _rollbackError(missed);
    return fresh;
  }

  /** Vault changes that password holders recorded in the audit trail after this file's head. */
  missedChanges(file: VaultFile, keys: VaultKeys): Array<{ seq: number; event: string }> {
    // Only authenticated entries prove a change; the reader throws on a broken MAC, so none can
    // be hidden by editing it (and a null MAC is refused on these events).
    const changes: Array<Authenticated<LogEntry>> = authenticatedOnly(
      this.#audit.entriesAfter(keys.auditKeys, file.body.audit_head?.seq ?? 0, VAULT_CHANGE_EVENTS),
    );
    return changes.map((e) => ({ seq: e.seq, event: e.event })).reverse();
  }

  /**
   * `audit resync`: after a crash left the vault behind the audit trail, accept the trail as it
   * is (the vault's head moves past the changes it lacks) and return those changes, to redo.
   */
  async resync(
    file: VerifiedVault,
    keys: VaultKeys,
  ): Promise<Array<{ seq: number; event: string }>> {
    const missed = this.missedChanges(file, keys);
    if (missed.length === 0) return missed;
    await this.update(keys, () => ({
      result: undefined,
      events: [{
        event: 'vault.resync',
        actor: { type: 'operator' },
        outcome: 'ok',
        data: { missed },
      }],
    }), { acceptOlder: true });
    return missed;
  }

  /**
   * Replaces the acting admin's own slot with one for the new password (a fresh key pair sealing
   * the same data key); credentials are not re-encrypted, other slots are untouched.
   */
  async changePassword(
    keys: VaultKeys,
    newPassword: Uint8Array,
    params: KdfParams,
  ): Promise<void> {
    const problem = checkKdfParams(params);
    if (problem !== null) throw new TpError('usage', 'kdf_params', problem);
    const me = keys.admin;
    const created = this.read().slots.find((s) => s.name === me.name)?.created_at;
    const slot = newSlot(me, newPassword, params, keys.data, created ?? new Date().toISOString());
    await this.update(keys, (_body, file) => {
      const i = file.slots.findIndex((s) => s.name === me.name);
      if (i < 0) throw _unknownAdmin(me.name);
      file.slots[i] = { ...slot, created_at: (file.slots[i] as Slot).created_at };
      return {
        result: undefined,
        events: [{
          event: 'vault.password_changed',
          actor: { type: 'operator' },
          outcome: 'ok',
          data: { admin: me.name },
        }],
      };
    });
  }

  /**
   * `admin add`: a new key slot for `admin`, with their own password (one Argon2id). With `link`,
   * the same change links an OIDC identity to it (`linkAdmin`, as `admin link` does): one vault
   * write, one audit append (`admin.add`, `admin.link`), or nothing at all.
   */
  async addAdmin(
    keys: VaultKeys,
    admin: Admin,
    password: Uint8Array,
    params: KdfParams,
    now: Date,
    options: { link?: { issuer: string; subject: string } } = {},
  ): Promise<void> {
    const problem = checkKdfParams(params);
    if (problem !== null) throw new TpError('usage', 'kdf_params', problem);
    // Refused before the Argon2id, and again under the lock by update.
    const planned: EventName[] = options.link === undefined
      ? ['admin.add']
      : ['admin.add', 'admin.link'];
    checkRole(
      keys.admin,
      planned.map((event) => ({ event, actor: { type: 'operator' }, outcome: 'ok', data: {} })),
    );
    const slot = newSlot(admin, password, params, keys.data, now.toISOString());
    await this.update(keys, (body, file) => {
      if (adminsOf(file).some((a) => a.name === admin.name)) {
        throw new TpError(
          'usage',
          'admin_exists',
          `there is already an admin named "${admin.name}"`,
        );
      }
      file.slots.push(slot);
      const link = options.link === undefined
        ? []
        : linkAdmin(body, file, { admin: admin.name, ...options.link }).events;
      return {
        result: undefined,
        events: [{
          event: 'admin.add',
          actor: { type: 'operator' },
          outcome: 'ok',
          data: {
            name: admin.name,
            role: admin.role,
            ...(admin.org === undefined ? {} : { org: admin.org }),
          },
        }, ...link],
      };
    });
  }

  /**
   * `vault rekey` (#19): a new random data key. Every credential value and the checkpoint signing
   * key are encrypted again under it (the signing key is kept, so published verifier keys stay
   * valid), it is sealed to every slot's public key (no other admin's password needed), the old
   * audit keys are kept for the entries they MACed, and serve's sealed config.json is MACed again.
   * A removed admin's copy of an old slot or data key opens nothing written after. Returns the
   * admins whose slots now hold the new key.
   */
  async rekey(keys: VaultKeys): Promise<{ admins: string[]; credentials: number }> {
    // Refused before anything is computed, and again under the lock by update.
    checkRole(keys.admin, [{
      event: 'vault.rekeyed',
      actor: { type: 'operator' },
      outcome: 'ok',
      data: {},
    }]);
    const next = deriveVaultKeys(randomKey(), keys.admin);
    try {
      const result = await this.update(keys, (body, file) => {
        for (const c of body.credentials) {
          const value = decryptValue(keys, c);
          c.value = encryptValue(next, c, value);
          wipe(value);
        }
        const signing = body.audit_signing;
        if (signing !== undefined) {
          const seed = auditSigningSeed(keys, signing);
          const s = seal(next.credentials, seed, _signingAad(signing.origin, signing.public_key));
          wipe(seed);
          signing.private_key = { nonce: toB64(s.nonce), ciphertext: toB64(s.ciphertext) };
        }
        for (const slot of file.slots) slot.key = sealToSlot(slot, next.data);
        body.checkpoint_key ??= toB64(checkpointKey(keys.data).publicKey);
        const admins = file.slots.map((s) => s.name);
        return {
          result: { admins, credentials: body.credentials.length },
          events: [{
            event: 'vault.rekeyed',
            actor: { type: 'operator' },
            outcome: 'ok',
            data: {
              admins,
              credentials: body.credentials.length,
              rekeys: (body.audit_keys?.length ?? 0) + 1,
            },
          }],
          rekey: next,
        };
      });
      resealConfig(this.home, keys, next);
      return result;
    } finally {
      wipeKeys(next);
    }
  }

  /**
   * `admin remove`: deletes the slot. The data key stays the same until `vault rekey`: a copy of
   * the vault file taken before still opens with the removed admin's password (threat model).
   */
  async removeAdmin(keys: VaultKeys, name: string): Promise<void> {
    await this.update(keys, (_body, file) => {
      const slot = file.slots.find((s) => s.name === name);
      if (slot === undefined) throw _unknownAdmin(name);
      if (slot.role === 'owner' && file.slots.filter((s) => s.role === 'owner').length === 1) {
        throw new TpError(
          'usage',
          'last_owner',
          `"${name}" is the last owner and cannot be removed`,
          {
            hint: 'add another owner first (`trust-protocol admin add NAME --role owner`)',
          },
        );
      }
      file.slots = file.slots.filter((s) => s.name !== name);
      // Its OIDC links go with it: left behind, they would sign the old identity in as whoever
      // is added under this name later.
      const oidc = file.body.oidc;
      const links = oidc?.links.filter((l) => l.admin === name).length ?? 0;
      if (oidc !== undefined && links > 0) {
        file.body.oidc = { ...oidc, links: oidc.links.filter((l) => l.admin !== name) };
      }
      return {
        result: undefined,
        events: [{
          event: 'admin.remove',
          actor: { type: 'operator' },
          outcome: 'ok',
          data: { name, role: slot.role, ...(links > 0 ? { oidc_links: links } : {}) },
        }],
      };
    });
  }
}

function _unknownAdmin(name: string): TpError {
  return new TpError('usage', 'unknown_admin', `no admin named "${name}" in this vault`, {
    hint: 'see `trust-protocol admin list`',
  });
}

interface HeadWrites {
  want: AuditHead;
  /** Each waiter brings its own keys: a caller's copy may be wiped once it has been answered. */
  waiters: Array<
    { seq: number; keys: VaultKeys; resolve: () => void; reject: (e: unknown) => void }
  >;
  running: boolean;
}
