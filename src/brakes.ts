/**
 * Emergency brakes (SPEC §9, format in docs/formats.md#brakes). Anyone at the keyboard can place
 * one, without the password: it is written three times, as `brakes/<id>.json`, as a line of the
 * append-only `brakes/journal.log` and as a `brake.activate` audit entry, and a brake is in force
 * while any of these records exists. Only the
 * password lifts it: the vault (MACed) records the ids of cleared brakes, and every password holder
 * copies the brakes it sees into the vault too, so from then on deleting every record changes
 * nothing. Deleting or editing brake files by hand never lifts a brake; a record that cannot be
 * read counts as a global brake (fail closed), and so does a missing or unreadable directory.
 */
import { NAME_RE } from './grammar.ts';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { Buffer } from 'node:buffer';
import type { FileAuditLog } from './audit.ts';
import type { StoreSync } from './store/sync.ts';
import { escapeControls } from './bytes.ts';
import { integrity, TpError, usage } from './errors.ts';
import { BRAKE_EVENTS } from './events.ts';
import { fsyncDir, type Home, ioErrorCode, READ_FLAGS, subdir, writeStateFile } from './home.ts';

export const BRAKES_DIR = 'brakes';
export const JOURNAL = 'journal.log';
export const BRAKE_FORMAT = 'trust-protocol/brake';
export const BRAKE_VERSION = 1;
export const SCOPES = ['global', 'agent', 'credential', 'org'] as const;
export type BrakeScope = (typeof SCOPES)[number];

export interface Brake {
  id: string;
  scope: BrakeScope;
  /** The agent id, credential name or organisation name; null for global. */
  target: string | null;
  reason: string;
  activated_at: string;
}

const ID_RE = /^brk_[0-9a-f]{16}$/;
export const REASON_MAX = 1000;

/** Creates the brakes directory (at `init`), so that its later absence means tampering. */
export function createBrakesDir(home: Home): void {
  subdir(home, BRAKES_DIR, { create: true });
}

function _failClosed(why: string): Brake {
  return {
    id: 'unreadable',
    scope: 'global',
    target: null,
    reason: `fail closed: ${why}`,
    activated_at: new Date(0).toISOString(),
  };
}

function _parseBrake(raw: unknown): Brake | null {
  if (typeof raw !== 'object' || raw === null) return null;
  const b = raw as Record<string, unknown>;
  const scope = b.scope as BrakeScope;
  if (typeof b.id !== 'string' || !ID_RE.test(b.id) || !SCOPES.includes(scope)) return null;
  if (
    scope === 'global' ? b.target !== null : typeof b.target !== 'string' || !NAME_RE.test(b.target)
  ) return null;
  if (typeof b.reason !== 'string' || typeof b.activated_at !== 'string') return null;
  return {
    id: b.id,
    scope,
    target: b.target as string | null,
    reason: b.reason,
    activated_at: b.activated_at,
  };
}

/**
 * One home's brakes (src/state.ts opens it). Its records are written by anyone without the
 * password, so nothing read here is authenticated: a brake only ever narrows access, and only
 * the vault's MACed cleared list lifts one.
 */
export class FileBrakes {
  readonly home: Home;
  #audit: FileAuditLog;
  #sync: StoreSync | null;

  constructor(home: Home, audit: FileAuditLog, sync: StoreSync | null = null) {
    this.home = home;
    this.#audit = audit;
    this.#sync = sync;
  }

  /**
   * Every brake in force: the union of the vault's known list, brake files, journal activations
   * and `brake.activate` entries after the vault's head, less the ids the vault says were
   * cleared. Unreadable records become global brakes with a reason saying so.
   */
  active(vault: {
    cleared_brakes: readonly string[];
    known_brakes: readonly Brake[];
    audit_head: { seq: number } | null;
  }): Brake[] {
    const cleared = vault.cleared_brakes;
    const found = new Map<string, Brake>();
    const add = (b: Brake) => found.set(`${b.id}:${b.scope}:${b.target}`, b);
    for (const b of vault.known_brakes) add(b);
    for (const b of _recordedBrakes(this.home)) add(b);
    for (const b of _auditedBrakes(this.#audit, vault.audit_head?.seq ?? 0)) add(b);
    return [...found.values()].filter((b) =>
      b.id === 'unreadable' || !(cleared.includes(b.id) || cleared.includes(clearedKey(b)))
    );
  }

  createDir(): void {
    createBrakesDir(this.home);
  }

  /**
   * Places a brake: the record file first, then the journal line, each made durable; on the team
   * store then both into the store, which tells every instance. In force here once the file is
   * written, whatever the store does (a store that cannot be reached throws after that: exit 6).
   */
  async activate(req: BrakeRequest, now: Date): Promise<Brake> {
    const { brake, record, journalLine } = _activate(this.home, req, now);
    await this.#sync?.pushBrake(`${brake.id}.json`, record, journalLine);
    return brake;
  }

  /** After a clear: tidy the lifted records away (the vault's cleared list is what counts). */
  async tidyCleared(ids: readonly string[], quarantine: boolean): Promise<void> {
    _tidyCleared(this.home, ids, quarantine);
    await this.#sync?.dropBrakes(ids.map((id) => `${id}.json`));
  }
}

/**
 * The cleared-list entry that lifts this one record and no other. A brake's id is not bound to its
 * scope (records are written without the password): when the agent writes a record on itself under
 * another brake's id, lifting the id would lift both, so such a clear names the record instead.
 */
export function clearedKey(b: Pick<Brake, 'id' | 'scope' | 'target'>): string {
  return `${b.id}:${b.scope}:${b.target ?? ''}`;
}

/** The third record: `brake.activate` entries written since the head the vault last recorded. */
function _auditedBrakes(audit: FileAuditLog, afterSeq: number): Brake[] {
  const out: Brake[] = [];
  for (const e of audit.entriesAfter(null, afterSeq, BRAKE_EVENTS)) {
    const b = _parseBrake({
      id: e.data.brake,
      scope: e.data.scope,
      target: e.data.target,
      reason: e.data.reason,
      activated_at: e.ts,
    });
    if (b !== null) out.push(b);
  }
  return out;
}

function _recordedBrakes(home: Home): Brake[] {
  let dir: Home | null;
  try {
    dir = subdir(home, BRAKES_DIR, { create: false });
  } catch (e) {
    return [
      _failClosed(
        `the brakes directory cannot be used (${e instanceof Error ? e.message : String(e)})`,
      ),
    ];
  }
  if (dir === null) {
    return [_failClosed(`the brakes directory ${path.join(home.dir, BRAKES_DIR)} is missing`)];
  }
  let names: string[];
  try {
    names = fs.readdirSync(dir.dir);
  } catch (e) {
    return [_failClosed(`the brakes directory cannot be read (${ioErrorCode(e) ?? 'error'})`)];
  }
  const out: Brake[] = [];
  for (const name of names) {
    if (name === JOURNAL || name.startsWith('.') || name.endsWith('.corrupt')) continue;
    out.push(
      _readRecord(path.join(dir.dir, name)) ?? _failClosed(`the brake file ${name} cannot be read`),
    );
  }
  return [...out, ..._readJournal(path.join(dir.dir, JOURNAL))];
}

function _readRecord(file: string): Brake | null {
  try {
    const fd = fs.openSync(file, READ_FLAGS);
    try {
      if (!fs.fstatSync(fd).isFile()) return null;
      const raw = JSON.parse(fs.readFileSync(fd, 'utf8')) as Record<string, unknown>;
      return raw.format === BRAKE_FORMAT && raw.version === BRAKE_VERSION ? _parseBrake(raw) : null;
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return null;
  }
}

function _readJournal(file: string): Brake[] {
  let text: string;
  try {
    const fd = fs.openSync(file, READ_FLAGS);
    try {
      if (!fs.fstatSync(fd).isFile()) {
        return [_failClosed('the brake journal is not a regular file')];
      }
      text = fs.readFileSync(fd, 'utf8');
    } finally {
      fs.closeSync(fd);
    }
  } catch (e) {
    return ioErrorCode(e) === 'ENOENT' ? [] : [_failClosed('the brake journal cannot be read')];
  }
  const out: Brake[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    let raw: Record<string, unknown>;
    try {
      raw = JSON.parse(line) as Record<string, unknown>;
    } catch {
      out.push(_failClosed('the brake journal has a line that cannot be read'));
      continue;
    }
    const b = raw.v === BRAKE_VERSION && raw.op === 'activate' ? _parseBrake(raw) : null;
    out.push(b ?? _failClosed('the brake journal has a line that cannot be read'));
  }
  return out;
}

export interface BrakeRequest {
  scope: BrakeScope;
  target: string | null;
  reason: string;
}

export function checkBrakeRequest(req: BrakeRequest): BrakeRequest {
  if (!SCOPES.includes(req.scope)) {
    throw usage(
      'bad_scope',
      `unknown brake scope "${String(req.scope)}"`,
      'use global, agent, credential or org',
    );
  }
  if (req.scope === 'global' && req.target !== null) {
    throw usage(
      'bad_target',
      'a global brake takes no --agent-id, --credential-name or --org',
    );
  }
  if (req.scope !== 'global' && (req.target === null || !NAME_RE.test(req.target))) {
    throw usage(
      'bad_target',
      req.scope === 'agent'
        ? 'an agent brake needs --agent-id ID'
        : req.scope === 'org'
        ? 'an organisation brake needs --org ORG'
        : 'a credential brake needs --credential-name NAME',
    );
  }
  if (req.reason.trim() === '') {
    throw usage(
      'bad_reason',
      'a brake needs --reason TEXT (what happened, for the incident record)',
    );
  }
  if (req.reason.length > REASON_MAX) {
    throw usage('bad_reason', `--reason is longer than ${REASON_MAX} characters`);
  }
  return req;
}

function _activate(
  home: Home,
  req: BrakeRequest,
  now: Date,
): { brake: Brake; record: string; journalLine: string } {
  checkBrakeRequest(req);
  const dir = subdir(home, BRAKES_DIR, { create: true }) as Home;
  const brake: Brake = {
    id: `brk_${Buffer.from(randomBytes(8)).toString('hex')}`,
    scope: req.scope,
    target: req.target,
    reason: req.reason,
    activated_at: now.toISOString(),
  };
  const record =
    JSON.stringify({ format: BRAKE_FORMAT, version: BRAKE_VERSION, ...brake }, null, 2) +
    '\n';
  const journalLine = JSON.stringify({ v: BRAKE_VERSION, op: 'activate', ...brake });
  writeStateFile(dir, `${brake.id}.json`, record);
  const fd = fs.openSync(
    path.join(dir.dir, JOURNAL),
    fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW |
      fs.constants.O_NONBLOCK,
    0o600,
  );
  try {
    if (!fs.fstatSync(fd).isFile()) {
      throw integrity(
        'not_a_file',
        `the brake journal ${path.join(dir.dir, JOURNAL)} is not a regular file`,
      );
    }
    fs.writeSync(fd, journalLine + '\n');
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fsyncDir(dir.dir);
  return { brake, record, journalLine };
}

/**
 * The brake that stops this request, most general first; null when none applies. `orgs` are the
 * organisations of the agent and credentials involved, as the MAC-checked vault says.
 */
export function blockingBrake(
  active: readonly Brake[],
  who: { agentId: string | null; credentials: readonly string[]; orgs?: readonly string[] },
): Brake | null {
  const orgs = who.orgs ?? [];
  return active.find((b) => b.scope === 'global') ??
    active.find((b) => b.scope === 'org' && b.target !== null && orgs.includes(b.target)) ??
    active.find((b) => b.scope === 'agent' && b.target === who.agentId) ??
    active.find((b) =>
      b.scope === 'credential' && b.target !== null && who.credentials.includes(b.target)
    ) ??
    null;
}

/** The organisations of the agent and credentials a request involves (for `blockingBrake`). */
export function orgsOf(
  body: {
    agents: ReadonlyArray<{ id: string; org?: string }>;
    credentials: ReadonlyArray<{ name: string; org?: string }>;
  },
  agentId: string | null,
  credentials: readonly string[],
): string[] {
  const out = new Set<string>();
  const agent = body.agents.find((a) => a.id === agentId);
  if (agent?.org !== undefined) out.add(agent.org);
  for (const c of body.credentials) {
    if (c.org !== undefined && credentials.includes(c.name)) out.add(c.org);
  }
  return [...out];
}

/** The organisation a brake concerns (null: instance-wide, a global brake). */
export function brakeOrg(
  b: Brake,
  body: {
    agents: ReadonlyArray<{ id: string; org?: string }>;
    credentials: ReadonlyArray<{ name: string; org?: string }>;
  },
): string | null {
  if (b.scope === 'org') return b.target;
  if (b.scope === 'agent') return body.agents.find((a) => a.id === b.target)?.org ?? null;
  if (b.scope === 'credential') {
    return body.credentials.find((c) => c.name === b.target)?.org ?? null;
  }
  return null;
}

export function brakeError(b: Brake): TpError {
  const what = b.scope === 'global'
    ? 'the global emergency brake'
    : b.scope === 'org'
    ? `an emergency brake on organisation ${b.target}`
    : `an emergency brake on ${b.scope} ${b.target}`;
  return new TpError(
    'brake',
    `brake_${b.scope}`,
    `blocked by ${what}: ${escapeControls(b.reason)}`,
    {
      hint: b.id === 'unreadable'
        ? 'an operator can inspect the brakes directory, then run `trust-protocol emergency clear --scope global --confirmation CONFIRM_RESTORE_ACCESS`'
        : 'an operator can lift it with `trust-protocol emergency clear` (password needed)',
    },
  );
}

function _tidyCleared(home: Home, ids: readonly string[], quarantine: boolean): void {
  const dir = subdir(home, BRAKES_DIR, { create: true }) as Home;
  for (const id of ids) fs.rmSync(path.join(dir.dir, `${id}.json`), { force: true });
  if (!quarantine) return;
  // Clearing the global brake also lifts unreadable records: set them aside as evidence.
  for (const name of fs.readdirSync(dir.dir)) {
    if (name === JOURNAL || name.startsWith('.') || name.endsWith('.corrupt')) continue;
    if (_readRecord(path.join(dir.dir, name)) === null) {
      fs.renameSync(path.join(dir.dir, name), path.join(dir.dir, `${name}.corrupt`));
    }
  }
  const journal = path.join(dir.dir, JOURNAL);
  if (_readJournal(journal).some((b) => b.id === 'unreadable')) {
    const good = fs.readFileSync(journal, 'utf8').split('\n').filter((l) => {
      try {
        const raw = JSON.parse(l) as Record<string, unknown>;
        return raw.v === BRAKE_VERSION && raw.op === 'activate' && _parseBrake(raw) !== null;
      } catch {
        return false;
      }
    });
    fs.renameSync(journal, `${journal}.${Date.now()}.corrupt`);
    writeStateFile(dir, JOURNAL, good.map((l) => l + '\n').join(''));
  }
}

/** A brake record's file name, as `activate` writes it (and nothing a path could escape with). */
const RECORD_NAME = /^brk_[0-9a-f]{16}\.json$/;

/**
 * The team store's pull (#19): brake records and journal lines from the store become the home's
 * files, as if placed here. Records the home has that the store lacks stay (a brake only narrows);
 * a record whose name is not one `activate` writes is refused (exit 8), nothing written.
 */
export function mergeStoredBrakes(
  home: Home,
  records: ReadonlyArray<{ name: string; record: string }>,
  journal: readonly string[],
): void {
  for (const r of records) {
    if (!RECORD_NAME.test(r.name)) {
      throw integrity(
        'store_tampered',
        `the store names a brake record ${JSON.stringify(escapeControls(r.name))}`,
        'a database administrator (or a bug) wrote it: see `trust-protocol store status`',
      );
    }
  }
  const dir = subdir(home, BRAKES_DIR, { create: true }) as Home;
  for (const r of records) {
    let present: string | null = null;
    try {
      present = fs.readFileSync(path.join(dir.dir, r.name), { encoding: 'utf8', flag: READ_FLAGS });
    } catch {
      // Absent (or not readable: rewritten below).
    }
    if (present !== r.record) writeStateFile(dir, r.name, r.record);
  }
  const file = path.join(dir.dir, JOURNAL);
  let known: Set<string>;
  try {
    known = new Set(fs.readFileSync(file, { encoding: 'utf8', flag: READ_FLAGS }).split('\n'));
  } catch {
    known = new Set();
  }
  const missing = journal.filter((line) => !known.has(line) && !line.includes('\n'));
  if (missing.length === 0) return;
  const fd = fs.openSync(
    file,
    fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW |
      fs.constants.O_NONBLOCK,
    0o600,
  );
  try {
    if (!fs.fstatSync(fd).isFile()) {
      throw integrity('not_a_file', `the brake journal ${file} is not a regular file`);
    }
    fs.writeSync(fd, missing.join('\n') + '\n');
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
