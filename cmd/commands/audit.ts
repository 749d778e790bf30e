/** `audit verify|show|export|checkpoint` (SPEC §10). */
import { Buffer } from 'node:buffer';
import { paint } from '../color.ts';
import { escapeControls } from '../../src/bytes.ts';
import {
  lineDigest,
  type LogCursor,
  logTail,
  readLogChunks,
  readLogFrom,
  readLogLines,
  readLogLinesBackward,
} from '../../src/audit.ts';
import {
  AuditVerifier,
  type Problem,
  type VerifyOptions,
  type VerifyResult,
} from '../../src/audit_verify.ts';
import { checkpointKey, createCheckpoint, readCheckpoint } from '../../src/checkpoint.ts';
import { TpError, usage } from '../../src/errors.ts';
import { unseal, type VaultFile, type VaultKeys, wipeKeys } from '../../src/vault.ts';
import {
  type Command,
  type Ctx,
  flag,
  list,
  PASSWORD_FILE_OPTION,
  str,
  tableText,
} from '../context.ts';
import { existingHome, existingState, unsealVault } from '../home_state.ts';
import { EVENT_FAMILIES, EVENTS } from '../../src/events.ts';
import type { Home } from '../../src/home.ts';
import { closest } from '../suggest.ts';
import { EXIT } from '../exit.ts';
import { readUserFile, write } from '../io.ts';
import { readPassword } from '../secrets.ts';

/** Verifies the log block by block: memory does not grow with the log (issue #16). */
function _verify(home: Home, options: VerifyOptions): VerifyResult {
  const verifier = new AuditVerifier(options);
  for (const chunk of readLogChunks(home)) verifier.update(chunk);
  return verifier.finish();
}

/** The password when a source exists; null (chain-only verification) when there is none. */
async function _optionalKeys(ctx: Ctx, file: VaultFile): Promise<VaultKeys | null> {
  let password: Uint8Array;
  try {
    password = await readPassword(ctx.io, { passwordFile: str(ctx, 'password-file') });
  } catch (e) {
    if (e instanceof TpError && e.code === 'no_password_source') return null;
    throw e;
  }
  try {
    return unseal(file, password);
  } finally {
    password.fill(0);
  }
}

function _verifyText(r: VerifyResult, color: boolean): string {
  const head = r.head === null ? 'empty' : `head #${r.head.seq} ${r.head.hash.slice(0, 16)}…`;
  const macs = r.hmac_checked
    ? `HMACs checked${
      (r.unsealed ?? 0) > 0
        ? ` (${r.unsealed} newest entr${
          r.unsealed === 1 ? 'y' : 'ies'
        } not yet sealed by a password holder)`
        : ''
    }`
    : 'HMACs NOT checked (no password): only the hash chain was verified';
  if (r.ok) {
    return `audit log ${paint(color, 'green', 'intact')}: ${r.entries} entries, ${head}; ${macs}\n`;
  }
  const lines = r.problems.map((p: Problem) =>
    `  entry ${p.seq}: ${p.kind.replace('_', ' ')}: ${p.detail}`
  );
  return `audit log ${
    paint(color, 'red', 'FAILED')
  } verification (${r.problems.length} problem(s)); ${macs}\n${lines.join('\n')}\n` +
    `first bad entry: ${r.problems[0]?.seq} (${r.problems[0]?.kind.replace('_', ' ')})\n`;
}

const verify: Command = {
  words: ['audit', 'verify'],
  summary: 'check the audit trail: hash chain, HMACs, recorded head, optional checkpoint',
  usage: 'audit verify [--checkpoint FILE] [--password-file PATH]',
  help:
    'Exit 0 only when the whole log is intact, 1 otherwise (naming the first bad entry and the kind).\n' +
    'Without a password source only the chain is checked, and the output says so.',
  options: {
    'password-file': {
      type: 'string',
      value: 'PATH',
      help:
        'file holding the master password (else TRUST_PROTOCOL_PASSWORD, else a no-echo prompt on a terminal; with none, only the hash chain is checked)',
    },
    checkpoint: {
      type: 'string',
      value: 'FILE',
      help: 'also check that the log still holds the head this `audit checkpoint` signed',
    },
  },
  examples: [
    'trust-protocol audit verify',
    'trust-protocol audit verify --checkpoint checkpoint.json --password-file ~/.tp-password',
  ],
  args: { min: 0, max: 0 },
  async run(ctx) {
    const state = existingState(ctx);
    const home = state.home;
    const file = state.vault.read();
    const keys = await _optionalKeys(ctx, file);
    try {
      const checkpointPath = str(ctx, 'checkpoint');
      const checkpoint = checkpointPath === undefined ? null : readCheckpoint(
        Buffer.from(readUserFile(checkpointPath, 'checkpoint file', 64 * 1024)).toString('utf8'),
        keys === null ? null : checkpointKey(keys.data).publicKey,
      );
      const result = _verify(home, {
        macKey: keys?.audit ?? null,
        recordedHead: file.body.audit_head,
        checkpoint: checkpoint === null ? null : { seq: checkpoint.seq, hash: checkpoint.hash },
      });
      return {
        json: result,
        text: _verifyText(result, ctx.color),
        exitCode: result.ok ? EXIT.ok : EXIT.verification,
      };
    } finally {
      if (keys !== null) wipeKeys(keys);
    }
  },
};

const checkpoint: Command = {
  words: ['audit', 'checkpoint'],
  summary: 'print a signed head of the audit trail to keep somewhere else',
  usage: 'audit checkpoint [--password-file PATH] > checkpoint.json',
  options: { ...PASSWORD_FILE_OPTION },
  examples: ['trust-protocol audit checkpoint > checkpoint.json'],
  args: { min: 0, max: 0 },
  async run(ctx) {
    const state = existingState(ctx);
    const home = state.home;
    const file = state.vault.read();
    const keys = await _optionalKeys(ctx, file);
    if (keys === null) {
      throw new TpError(
        'sealed',
        'no_password_source',
        'a checkpoint is signed with a key in the vault: the password is needed',
        {
          hint: 'use --password-file PATH, TRUST_PROTOCOL_PASSWORD, or run in a terminal',
        },
      );
    }
    try {
      const result = _verify(home, {
        macKey: keys.audit,
        recordedHead: file.body.audit_head,
      });
      if (!result.ok || result.head === null) {
        throw new TpError(
          'verification',
          'audit_not_intact',
          result.head === null
            ? 'the audit log is empty'
            : 'the audit log does not verify; a checkpoint of it would be worthless',
          {
            hint: 'run `trust-protocol audit verify` to see the problems',
          },
        );
      }
      const c = createCheckpoint(result.head, keys.data, ctx.now());
      return { json: c, text: JSON.stringify(c, null, 2) + '\n' };
    } finally {
      wipeKeys(keys);
    }
  },
};

interface Shown {
  seq: number;
  ts: string;
  event: string;
  actor: { type: string; id?: string };
  outcome: string;
  data: Record<string, unknown>;
}

/** A line as an entry; null for a blank or malformed line (for `audit verify` to report). */
function _parse(line: string): Shown | null {
  if (line === '') return null;
  try {
    return JSON.parse(line) as Shown;
  } catch {
    return null;
  }
}

/** The last `n` wanted entries, oldest first, read backwards from the end of the log. */
function _lastEntries(home: Home, n: number, wanted: (e: Shown) => boolean): Shown[] {
  const out: Shown[] = [];
  for (const line of readLogLinesBackward(home)) {
    const e = _parse(line);
    if (e === null || !wanted(e)) continue;
    out.push(e);
    if (out.length === n) break;
  }
  return out.reverse();
}

/**
 * Every wanted entry, printed as it is read (issue #16: memory does not grow with the log). A
 * table needs its column widths first: one pass measures them, a second prints as many lines as
 * the first read (entries appended in between are left for the next `show`).
 */
async function _showAll(
  ctx: Ctx,
  home: Home,
  wanted: (e: Shown) => boolean,
  rows: (list: Shown[]) => string[][],
): Promise<string> {
  const out = new Batched(ctx);
  if (ctx.json) {
    for (const line of readLogLines(home)) {
      const e = _parse(line);
      if (e !== null && wanted(e)) await out.add(JSON.stringify(e) + '\n');
    }
    await out.flush();
    return '';
  }
  const widths = SHOW_HEADER.map((h) => h.length);
  let lines = 0;
  let shown = 0;
  for (const line of readLogLines(home)) {
    lines++;
    const e = _parse(line);
    if (e === null || !wanted(e)) continue;
    shown++;
    rows([e])[0]!.forEach((c, i) => widths[i] = Math.max(widths[i]!, c.length));
  }
  if (shown === 0) return 'No entries.\n';
  const text = (r: string[]) =>
    r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd() + '\n';
  await out.add(text(SHOW_HEADER));
  for (const line of readLogLines(home)) {
    if (lines-- === 0) break;
    const e = _parse(line);
    if (e !== null && wanted(e)) await out.add(text(rows([e])[0]!));
  }
  await out.flush();
  return '';
}

/** Output gathered into writes of about 64 KiB. */
class Batched {
  #ctx: Ctx;
  #text = '';
  constructor(ctx: Ctx) {
    this.#ctx = ctx;
  }
  async add(text: string): Promise<void> {
    this.#text += text;
    if (this.#text.length >= 64 * 1024) await this.flush();
  }
  async flush(): Promise<void> {
    const text = this.#text;
    this.#text = '';
    await write(this.#ctx.io.stdout, text);
  }
}

const show: Command = {
  words: ['audit', 'show'],
  summary: 'list audit entries (filters: --tail N --agent ID --event TYPE --since TIME)',
  usage: 'audit show [--tail N] [--agent ID] [--event TYPE]... [--since TIME] [--follow]',
  help: `--event takes an event (request.denied) or a family (request); repeat it for several.
--since takes a date or time (2026-01-31, 2026-01-31T12:00:00Z) or an age: 90s, 30m, 1h, 2d.
--follow prints the last 10 matching entries (or --tail N), then each one appended, until Ctrl-C.`,
  options: {
    tail: {
      type: 'string',
      value: 'N',
      help: 'only the last N matching entries (else all, or 10 with --follow; 0 means all)',
    },
    agent: {
      type: 'string',
      value: 'ID',
      help: 'only entries by or about this agent id (agt_...)',
    },
    event: {
      type: 'string',
      value: 'TYPE',
      help: 'only this event (request.denied) or family (request)',
      multiple: true,
    },
    since: {
      type: 'string',
      value: 'TIME',
      help: 'only entries from this date or time (2026-01-31T12:00:00Z) or age (30m, 2d) on',
    },
    follow: {
      type: 'boolean',
      short: 'f',
      help: 'keep printing matching entries as they are appended, until Ctrl-C',
    },
  },
  examples: [
    'trust-protocol audit show --tail 20',
    'trust-protocol audit show --event request.denied --since 1h --follow',
  ],
  args: { min: 0, max: 0 },
  async run(ctx) {
    const tail = str(ctx, 'tail');
    if (tail !== undefined && !/^\d{1,9}$/.test(tail)) {
      throw usage('bad_flag', `--tail must be a whole number, got "${escapeControls(tail)}"`);
    }
    const since = _since(str(ctx, 'since'), ctx.now());
    const agent = str(ctx, 'agent');
    const events = list(ctx, 'event');
    for (const ev of events) {
      if ((EVENTS as readonly string[]).includes(ev) || EVENT_FAMILIES.includes(ev)) continue;
      const near = closest(ev, [...EVENTS, ...EVENT_FAMILIES]);
      throw usage(
        'unknown_event',
        `unknown audit event "${escapeControls(ev)}"`,
        near === null
          ? `events: ${EVENT_FAMILIES.join(', ')} (each family has NAME.ACTION events)`
          : `did you mean --event ${near}?`,
      );
    }
    const wanted = (e: Shown) =>
      (agent === undefined || e.actor?.id === agent || e.data?.agent === agent) &&
      (events.length === 0 ||
        events.some((ev) => e.event === ev || e.event.startsWith(`${ev}.`))) &&
      (since === null || Date.parse(e.ts) >= since);
    const home = existingHome(ctx);
    const rows = (list: Shown[]) =>
      list.map((e) => [
        String(e.seq),
        e.ts,
        escapeControls(e.event),
        escapeControls(e.actor?.id ?? e.actor?.type ?? ''),
        escapeControls(e.outcome),
        escapeControls(_summary(e.data)),
      ]);
    if (flag(ctx, 'follow')) {
      // As `tail -f`: the last 10 matching entries (or --tail N), then what is appended.
      const end = logTail(home);
      const digest = end.last === null ? null : lineDigest(end.last);
      const cursor = digest === null ? null : { offset: end.bytes, digest };
      const n = tail === undefined || Number(tail) === 0 ? 10 : Number(tail);
      await _follow(ctx, home, cursor, wanted, _lastEntries(home, n, wanted), rows);
      return { json: undefined, text: '' };
    }
    // `--tail 0` has always meant no limit.
    if (tail === undefined || Number(tail) === 0) {
      return { json: undefined, text: await _showAll(ctx, home, wanted, rows) };
    }
    const entries = _lastEntries(home, Number(tail), wanted);
    if (ctx.json) {
      return { json: undefined, text: '', jsonLines: entries };
    }
    return {
      json: undefined,
      text: entries.length === 0
        ? 'No entries.\n'
        : tableText([SHOW_HEADER, ...rows(entries)], { color: ctx.color }),
    };
  },
};

const SHOW_HEADER = ['SEQ', 'TIME', 'EVENT', 'ACTOR', 'OUTCOME', 'DETAILS'];
const AGE_RE = /^(\d{1,6})(s|m|h|d)$/;
const AGE_UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** --since: a date or time, or an age before now (90s, 30m, 1h, 2d). */
function _since(text: string | undefined, now: Date): number | null {
  if (text === undefined) return null;
  const age = AGE_RE.exec(text);
  if (age !== null) return now.getTime() - Number(age[1]) * AGE_UNIT_MS[age[2] as string]!;
  const at = Date.parse(text);
  if (Number.isNaN(at)) {
    throw usage(
      'bad_flag',
      `--since must be a date or time such as 2026-01-31 or 2026-01-31T12:00:00Z, or an age ` +
        `such as 30m, 1h or 2d; got "${escapeControls(text)}"`,
    );
  }
  return at;
}

/**
 * `audit show --follow`: prints what is shown already, then every matching entry appended after
 * it, as it comes (the log is read from where the last read ended, every 200 ms), until the
 * process is stopped. A table's header is printed once.
 */
async function _follow(
  ctx: Ctx,
  home: Home,
  from: LogCursor | null,
  wanted: (e: Shown) => boolean,
  first: Shown[],
  rows: (list: Shown[]) => string[][],
): Promise<never> {
  const print = async (list: Shown[], header: boolean) => {
    if (list.length === 0) return;
    const text = ctx.json
      ? list.map((e) => JSON.stringify(e) + '\n').join('')
      : tableText(header ? [SHOW_HEADER, ...rows(list)] : rows(list), {
        color: ctx.color && header,
      });
    await write(ctx.io.stdout, text);
  };
  await print(first, true);
  let header = first.length === 0;
  let cursor = from;
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 200));
    // Only what was appended since the last read (issue #16: flat on a huge log); a log that no
    // longer continues from there (cut or rewritten: `audit verify` says which) is read again.
    const read = readLogFrom(home, cursor) ?? readLogFrom(home, null);
    if (read === null) continue;
    cursor = read.cursor;
    const list = read.lines.map(_parse).filter((e): e is Shown => e !== null && wanted(e));
    await print(list, header);
    if (list.length > 0) header = false;
  }
}

function _summary(data: Record<string, unknown>): string {
  const parts: string[] = [];
  for (
    const key of [
      'kind',
      'severity',
      'credential',
      'credentials',
      'method',
      'host',
      'path',
      'status',
      'bytes',
      'reason',
      'from',
      'to',
      'actions',
    ]
  ) {
    const v = data?.[key];
    if (v !== undefined) parts.push(`${key}=${Array.isArray(v) ? v.join(',') : String(v)}`);
  }
  // An anomaly's evidence: the figures that raised it.
  const evidence = data?.evidence;
  if (typeof evidence === 'object' && evidence !== null) {
    for (const [k, v] of Object.entries(evidence)) {
      if (typeof v !== 'object' || v === null) parts.push(`${k}=${String(v)}`);
    }
  }
  return parts.join(' ');
}

const exportCmd: Command = {
  words: ['audit', 'export'],
  summary: 'write the raw audit lines to standard output (for a SIEM)',
  usage: 'audit export',
  options: {},
  examples: ['trust-protocol audit export > audit.log'],
  args: { min: 0, max: 0 },
  async run(ctx) {
    // Block by block, each written before the next is read (they share one buffer).
    for (const chunk of readLogChunks(existingHome(ctx))) await write(ctx.io.stdout, chunk);
    return { json: undefined, text: '' };
  },
};

const resync: Command = {
  words: ['audit', 'resync'],
  summary:
    'after a crash left vault.json behind the audit trail: accept the trail, list what to redo',
  usage: 'audit resync [--password-file PATH]',
  examples: ['trust-protocol audit resync'],
  help:
    'Only for a vault.json that is behind because a command was killed between its audit entry\n' +
    'and its vault write. If vault.json was restored from an older copy, put the current one back instead.',
  options: { ...PASSWORD_FILE_OPTION },
  args: { min: 0, max: 0 },
  async run(ctx) {
    const { state, file, keys } = await unsealVault(ctx);
    try {
      const missed = await state.vault.resync(file, keys);
      if (missed.length === 0) {
        return {
          json: { missed: [] },
          text: 'vault.json is current: nothing to resync.\n',
          informational: true,
        };
      }
      return {
        json: { missed },
        text:
          'vault.json now follows the audit trail again. It lacks these changes; redo the ones you still want:\n' +
          missed.map((m) => `  entry ${m.seq}: ${m.event}`).join('\n') + '\n',
      };
    } finally {
      wipeKeys(keys);
    }
  },
};

export const auditCommands: Command[] = [verify, show, exportCmd, checkpoint, resync];
