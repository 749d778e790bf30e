/** `audit verify|show|export|checkpoint` (SPEC §10). */
import { Buffer } from 'node:buffer';
import { escapeControls } from '../../src/bytes.ts';
import { readAuditLog } from '../../src/audit.ts';
import { type Problem, verifyAuditLog, type VerifyResult } from '../../src/audit_verify.ts';
import { checkpointKey, createCheckpoint, readCheckpoint } from '../../src/checkpoint.ts';
import { TpError, usage } from '../../src/errors.ts';
import {
  loadVault,
  missedChanges,
  unseal,
  updateVault,
  type VaultKeys,
  wipeKeys,
} from '../../src/vault.ts';
import {
  type Command,
  type Ctx,
  existingHome,
  flag,
  list,
  PASSWORD_FILE_OPTION,
  str,
  tableText,
  unsealVault,
} from '../context.ts';
import { EVENT_FAMILIES, EVENTS } from '../../src/events.ts';
import type { Home } from '../../src/home.ts';
import { closest } from '../suggest.ts';
import { EXIT } from '../exit.ts';
import { readUserFile, write } from '../io.ts';
import { readPassword } from '../secrets.ts';

/** The password when a source exists; null (chain-only verification) when there is none. */
async function _optionalKeys(ctx: Ctx): Promise<VaultKeys | null> {
  const home = existingHome(ctx);
  let password: Uint8Array;
  try {
    password = await readPassword(ctx.io, { passwordFile: str(ctx, 'password-file') });
  } catch (e) {
    if (e instanceof TpError && e.code === 'no_password_source') return null;
    throw e;
  }
  try {
    return unseal(loadVault(home), password);
  } finally {
    password.fill(0);
  }
}

function _verifyText(r: VerifyResult): string {
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
  if (r.ok) return `audit log intact: ${r.entries} entries, ${head}; ${macs}\n`;
  const lines = r.problems.map((p: Problem) =>
    `  entry ${p.seq}: ${p.kind.replace('_', ' ')}: ${p.detail}`
  );
  return `audit log FAILED verification (${r.problems.length} problem(s)); ${macs}\n${
    lines.join('\n')
  }\n` +
    `first bad entry: ${r.problems[0]?.seq} (${r.problems[0]?.kind.replace('_', ' ')})\n`;
}

const verify: Command = {
  words: ['audit', 'verify'],
  summary: 'check the audit trail: hash chain, HMACs, recorded head, optional checkpoint',
  usage: 'audit verify [--checkpoint FILE] [--password-file PATH]',
  help:
    'Exit 0 only when the whole log is intact, 1 otherwise (naming the first bad entry and the kind).\n' +
    'Without a password source only the chain is checked, and the output says so.',
  options: { ...PASSWORD_FILE_OPTION, checkpoint: { type: 'string' } },
  args: { min: 0, max: 0 },
  async run(ctx) {
    const home = existingHome(ctx);
    const file = loadVault(home);
    const keys = await _optionalKeys(ctx);
    try {
      const checkpointPath = str(ctx, 'checkpoint');
      const checkpoint = checkpointPath === undefined ? null : readCheckpoint(
        Buffer.from(readUserFile(checkpointPath, 'checkpoint file', 64 * 1024)).toString('utf8'),
        keys === null ? null : checkpointKey(keys.data).publicKey,
      );
      const result = verifyAuditLog(readAuditLog(home), {
        macKey: keys?.audit ?? null,
        recordedHead: file.body.audit_head,
        checkpoint: checkpoint === null ? null : { seq: checkpoint.seq, hash: checkpoint.hash },
      });
      return {
        json: result,
        text: _verifyText(result),
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
  args: { min: 0, max: 0 },
  async run(ctx) {
    const home = existingHome(ctx);
    const file = loadVault(home);
    const keys = await _optionalKeys(ctx);
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
      const result = verifyAuditLog(readAuditLog(home), {
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

function _parseLines(bytes: Uint8Array): Shown[] {
  const text = Buffer.from(bytes).toString('utf8');
  const out: Shown[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    try {
      out.push(JSON.parse(line) as Shown);
    } catch {
      // Malformed lines are for `audit verify` to report; `show` lists what it can read.
    }
  }
  return out;
}

const show: Command = {
  words: ['audit', 'show'],
  summary: 'list audit entries (filters: --tail N --agent ID --event TYPE --since TIME)',
  usage: 'audit show [--tail N] [--agent ID] [--event TYPE]... [--since TIME] [--follow]',
  help: `--event takes an event (request.denied) or a family (request); repeat it for several.
--since takes a date or time (2026-01-31, 2026-01-31T12:00:00Z) or an age: 90s, 30m, 1h, 2d.
--follow keeps printing entries as they are appended, until Ctrl-C.
Examples:
  trust-protocol audit show --tail 20
  trust-protocol audit show --event request.denied --since 1h --follow`,
  options: {
    tail: { type: 'string' },
    agent: { type: 'string' },
    event: { type: 'string', multiple: true },
    since: { type: 'string' },
    follow: { type: 'boolean', short: 'f' },
  },
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
    const log = readAuditLog(home);
    let entries = _parseLines(log).filter(wanted);
    if (tail !== undefined) entries = entries.slice(-Number(tail));
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
      await _follow(ctx, home, log.length, wanted, entries, rows);
      return { json: undefined, text: '' };
    }
    if (ctx.json) {
      return { json: undefined, text: '', jsonLines: entries };
    }
    return {
      json: undefined,
      text: entries.length === 0 ? 'No entries.\n' : tableText([SHOW_HEADER, ...rows(entries)]),
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
  offset: number,
  wanted: (e: Shown) => boolean,
  first: Shown[],
  rows: (list: Shown[]) => string[][],
): Promise<never> {
  const print = async (list: Shown[], header: boolean) => {
    if (list.length === 0) return;
    const text = ctx.json
      ? list.map((e) => JSON.stringify(e) + '\n').join('')
      : tableText(header ? [SHOW_HEADER, ...rows(list)] : rows(list));
    await write(ctx.io.stdout, text);
  };
  await print(first, true);
  let header = first.length === 0;
  let pending = Buffer.alloc(0);
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 200));
    const log = readAuditLog(home);
    if (log.length < offset) offset = 0; // rotated or cut: `audit verify` says which
    const fresh = Buffer.concat([pending, Buffer.from(log.subarray(offset))]);
    offset = log.length;
    const end = fresh.lastIndexOf(0x0a) + 1;
    pending = fresh.subarray(end);
    const list = _parseLines(fresh.subarray(0, end)).filter(wanted);
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
  args: { min: 0, max: 0 },
  async run(ctx) {
    await write(ctx.io.stdout, readAuditLog(existingHome(ctx)));
    return { json: undefined, text: '' };
  },
};

const resync: Command = {
  words: ['audit', 'resync'],
  summary:
    'after a crash left vault.json behind the audit trail: accept the trail, list what to redo',
  usage: 'audit resync [--password-file PATH]',
  help:
    'Only for a vault.json that is behind because a command was killed between its audit entry\n' +
    'and its vault write. If vault.json was restored from an older copy, put the current one back instead.',
  options: { ...PASSWORD_FILE_OPTION },
  args: { min: 0, max: 0 },
  async run(ctx) {
    const { home, file, keys } = await unsealVault(ctx);
    try {
      const missed = missedChanges(home, file, keys);
      if (missed.length === 0) {
        return {
          json: { missed: [] },
          text: 'vault.json is current: nothing to resync.\n',
          informational: true,
        };
      }
      await updateVault(home, keys, () => ({
        result: undefined,
        events: [{
          event: 'vault.resync',
          actor: { type: 'operator' },
          outcome: 'ok',
          data: { missed },
        }],
      }), { acceptOlder: true });
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
