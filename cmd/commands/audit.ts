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
  rotateAuditLog,
  type TrailOptions,
} from '../../src/audit.ts';
import { type Problem, type VerifyResult } from '../../src/audit_verify.ts';
import { readCheckpoint } from '../../src/checkpoint.ts';
import { LeafStream } from '../../src/tlog/tree_store.ts';
import {
  type Checkpoint as NoteCheckpoint,
  openCheckpoint,
  parseVerifierKey,
  signCheckpoint,
  validCosigners,
  type VerifierKey,
} from '../../src/tlog/note.ts';
import { extendsTree } from '../../src/tlog/proof.ts';
import {
  logVerifierKey,
  SEGMENTS_OPTION,
  signingKey,
  tlogCommands,
  verifyLog,
} from './audit_tlog.ts';
import { auditSigningSeed } from '../../src/vault.ts';
import { TpError, usage } from '../../src/errors.ts';
import {
  legacyCheckpointKey,
  unseal,
  type VaultFile,
  type VaultKeys,
  type VerifiedVault,
  wipeKeys,
} from '../../src/vault.ts';
import {
  adminName,
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
import { DEFAULT_SEGMENT_BYTES, SEGMENT_BYTES_ENV } from '../../src/audit_segments.ts';
import type { Home } from '../../src/home.ts';
import { closest } from '../suggest.ts';
import { EXIT } from '../exit.ts';
import { readUserFile, write } from '../io.ts';
import { readPassword } from '../secrets.ts';

const _verify = verifyLog;

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
    return unseal(file, password, { admin: adminName(ctx) });
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
  usage:
    'audit verify [--checkpoint FILE [--key VERIFIER] [--witness VERIFIER]... [--quorum N]] [--segments DIR]... [--password-file PATH]',
  help:
    'Exit 0 only when the whole log is intact, 1 otherwise (naming the first bad entry and the kind).\n' +
    'Without a password source only the chain is checked, and the output says so.\n' +
    'With --checkpoint (a note from `audit checkpoint`), also proves by a consistency proof that\n' +
    "today's log extends the checkpoint's tree; --key is the log's verifier key (`audit key`),\n" +
    'needed without the password. --witness and --quorum N require N valid cosignatures.\n' +
    'Closed segments (`audit rotate`) are read first, checked against audit/segments/index.json;\n' +
    'a missing or altered one is named (exit 1). --segments DIR says where moved ones are.\n' +
    'A version 1 JSON checkpoint (before 0.4) is still read.',
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
      help: 'also prove that the log still extends the tree this `audit checkpoint` signed',
    },
    key: {
      type: 'string',
      value: 'VERIFIER',
      help: "the log's verifier key (NAME+KEYID+BASE64, from `audit key`) to check --checkpoint",
    },
    witness: {
      type: 'string',
      value: 'VERIFIER',
      multiple: true,
      help: "a witness's verifier key (from `audit witness-key`) whose cosignature counts",
    },
    quorum: {
      type: 'string',
      value: 'N',
      help: 'how many --witness cosignatures the checkpoint needs (default: 1 with --witness)',
    },
    ...SEGMENTS_OPTION,
  },
  examples: [
    'trust-protocol audit verify',
    'trust-protocol audit verify --checkpoint checkpoint.txt --key "$(cat log.vkey)"',
  ],
  args: { min: 0, max: 0 },
  async run(ctx) {
    const state = existingState(ctx);
    const home = state.home;
    const file = state.vault.read();
    const keys = await _optionalKeys(ctx, file);
    try {
      const checkpointPath = str(ctx, 'checkpoint');
      const text = checkpointPath === undefined ? null : Buffer.from(
        readUserFile(checkpointPath, 'checkpoint file', 1024 * 1024),
      ).toString('utf8');
      const witnesses = list(ctx, 'witness').map(parseVerifierKey);
      const quorum = _quorum(str(ctx, 'quorum'), witnesses.length);
      if (text === null && (witnesses.length > 0 || str(ctx, 'key') !== undefined)) {
        throw usage('bad_flag', '--key, --witness and --quorum check a --checkpoint FILE');
      }
      const legacy = text !== null && text.trimStart().startsWith('{');
      if (legacy && witnesses.length > 0) {
        throw usage('bad_flag', 'a version 1 JSON checkpoint has no cosignatures');
      }
      const old = legacy
        ? readCheckpoint(
          text!,
          // unseal checked the file's MAC under the keys.
          keys === null ? null : legacyCheckpointKey(file as VerifiedVault, keys),
        )
        : null;
      const note = text === null || legacy
        ? null
        : openCheckpoint(text, _logKey(ctx, file, keys !== null));
      const trail = { segments: list(ctx, 'segments') };
      const result = _verify(home, {
        macKey: keys?.auditKeys ?? null,
        recordedHead: file.body.audit_head,
        checkpoint: old === null ? null : { seq: old.seq, hash: old.hash },
      }, trail);
      const { tree, ...plain } = result;
      let extra = '';
      let ok = result.ok;
      let json: Record<string, unknown> = { ...plain, tree: _treeJson(tree) };
      if (note !== null) {
        const checked = await _checkNote(home, note, tree, text!, witnesses, quorum, trail);
        ok &&= checked.ok;
        extra = checked.text;
        const problems = checked.problem === null
          ? plain.problems
          : [...plain.problems, checked.problem];
        json = { ...json, ok, problems, checkpoint: checked.json };
      }
      return {
        json,
        text: _verifyText(result, ctx.color) + extra,
        exitCode: ok ? EXIT.ok : EXIT.verification,
      };
    } finally {
      if (keys !== null) wipeKeys(keys);
    }
  },
};

function _treeJson(tree: LeafStream): { size: number; root: string } {
  return { size: tree.size, root: Buffer.from(tree.root()).toString('base64') };
}

function _quorum(text: string | undefined, witnesses: number): number {
  if (text === undefined) return witnesses > 0 ? 1 : 0;
  if (!/^\d{1,3}$/.test(text) || Number(text) < 1 || Number(text) > witnesses) {
    throw usage(
      'bad_flag',
      `--quorum must be a number from 1 to the number of --witness keys (${witnesses}), got "${
        escapeControls(text)
      }"`,
    );
  }
  return Number(text);
}

/** The log key a checkpoint is checked with: --key, else the vault's (MAC-checked with the password). */
function _logKey(ctx: Ctx, file: VaultFile, unsealed: boolean): VerifierKey {
  const given = str(ctx, 'key');
  if (given !== undefined) return parseVerifierKey(given);
  if (unsealed && file.body.audit_signing !== undefined) {
    return parseVerifierKey(logVerifierKey(file.body.audit_signing));
  }
  throw usage(
    'bad_flag',
    "checking a checkpoint needs the log's verifier key",
    'pass --key VERIFIER (as `trust-protocol audit key` printed it), or a password source',
  );
}

async function _checkNote(
  home: Home,
  c: NoteCheckpoint,
  tree: LeafStream,
  text: string,
  witnesses: readonly VerifierKey[],
  quorum: number,
  trail: TrailOptions,
): Promise<{ ok: boolean; text: string; json: unknown; problem: Problem | null }> {
  const consistent = c.size <= tree.size &&
    await extendsTree(home, c, { size: tree.size, root: tree.root() }, trail);
  const cosigners = validCosigners(text, witnesses);
  const ok = consistent && cosigners.length >= quorum;
  const lines = [
    consistent
      ? `checkpoint ${c.origin} at ${c.size} entries: ${'extended'} by today's log (consistency proof to ${tree.size} entries)`
      : c.size > tree.size
      ? `checkpoint ${c.origin} at ${c.size} entries: FAILED: the log holds only ${tree.size}: it was cut or rolled back`
      : `checkpoint ${c.origin} at ${c.size} entries: FAILED: today's log does not extend it: history was rewritten`,
  ];
  if (witnesses.length > 0) {
    lines.push(
      `cosignatures: ${cosigners.length} valid of ${witnesses.length} witness(es), ${quorum} required` +
        (cosigners.length >= quorum ? '' : ': FAILED'),
    );
  }
  return {
    ok,
    text: lines.join('\n') + '\n',
    json: { origin: c.origin, size: c.size, consistent, cosigners, quorum },
    problem: consistent ? null : c.size > tree.size
      ? {
        seq: tree.size + 1,
        kind: 'truncated',
        detail: `the checkpoint covers ${c.size} entries, the log holds ${tree.size}`,
      }
      : {
        seq: c.size,
        kind: 'forked',
        detail: `the log's first ${c.size} entries are not the ones the checkpoint signed`,
      },
  };
}

const checkpoint: Command = {
  words: ['audit', 'checkpoint'],
  summary: 'print a signed checkpoint (C2SP tlog-checkpoint note) of the audit trail',
  usage: 'audit checkpoint [--password-file PATH] > checkpoint.txt',
  help: 'Verifies the whole log, computes its Merkle tree from it and signs size and root with\n' +
    "the vault's audit key (created on first use in an older vault). Keep the note elsewhere;\n" +
    'check it later with `audit verify --checkpoint FILE --key VERIFIER`.',
  options: { ...PASSWORD_FILE_OPTION },
  examples: ['trust-protocol audit checkpoint > checkpoint.txt'],
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
      const signing = await signingKey(state, file, keys, ctx.now());
      const result = _verify(home, {
        macKey: keys.auditKeys,
        recordedHead: state.vault.read().body.audit_head,
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
      const seed = auditSigningSeed(keys, signing);
      try {
        const note = signCheckpoint(signing.origin, result.tree.size, result.tree.root(), seed);
        return {
          json: { checkpoint: note, origin: signing.origin, size: result.tree.size },
          text: note,
        };
      } finally {
        seed.fill(0);
      }
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
  const trail = { segments: list(ctx, 'segments') };
  if (ctx.json) {
    for (const line of readLogLines(home, trail)) {
      const e = _parse(line);
      if (e !== null && wanted(e)) await out.add(JSON.stringify(e) + '\n');
    }
    await out.flush();
    return '';
  }
  const widths = SHOW_HEADER.map((h) => h.length);
  let lines = 0;
  let shown = 0;
  for (const line of readLogLines(home, trail)) {
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
  for (const line of readLogLines(home, trail)) {
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
  usage:
    'audit show [--tail N] [--agent ID] [--event TYPE]... [--since TIME] [--follow] [--segments DIR]...',
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
    ...SEGMENTS_OPTION,
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
  usage: 'audit export [--segments DIR]...',
  help: 'The closed segments (checked against their index) first, then the live log: one log.',
  options: { ...SEGMENTS_OPTION },
  examples: ['trust-protocol audit export > audit.log'],
  args: { min: 0, max: 0 },
  async run(ctx) {
    // Block by block, each written before the next is read (they share one buffer).
    const trail = { segments: list(ctx, 'segments') };
    for (const chunk of readLogChunks(existingHome(ctx), trail)) await write(ctx.io.stdout, chunk);
    return { json: undefined, text: '' };
  },
};

const rotate: Command = {
  words: ['audit', 'rotate'],
  summary: 'close the live audit log into a segment now (optionally gzip the closed segments)',
  usage: 'audit rotate [--compress]',
  help:
    'The live log audit/audit.log becomes audit/segments/NNNNNN-FIRST-LAST.log, listed with its\n' +
    'size and SHA-256 in audit/segments/index.json, and a new live log continues the chain.\n' +
    `This also happens by itself when the live log reaches ${
      DEFAULT_SEGMENT_BYTES / 1024 / 1024
    } MiB (${SEGMENT_BYTES_ENV}\n` +
    'sets another limit in bytes). Closed segments may be gzipped (--compress, or gzip by hand)\n' +
    'and moved elsewhere: `audit verify --segments DIR` finds them there. No password needed.',
  options: {
    compress: { type: 'boolean', help: 'also gzip every closed segment (NAME.log.gz)' },
  },
  examples: ['trust-protocol audit rotate --compress'],
  args: { min: 0, max: 0 },
  async run(ctx) {
    const { segment, compressed } = await rotateAuditLog(existingHome(ctx), {
      compress: flag(ctx, 'compress'),
    });
    const text =
      (segment === null
        ? 'The live audit log is empty: nothing to close.\n'
        : `closed entries ${segment.first_seq} to ${segment.last_seq} into audit/segments/${segment.file}\n`) +
      compressed.map((f) => `compressed audit/segments/${f}\n`).join('');
    return { json: { segment, compressed }, text, informational: true };
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

const ship: Command = {
  words: ['audit', 'ship'],
  summary: 'send audit entries to a SIEM (syslog, OTLP, Splunk HEC, HTTPS JSON lines)',
  usage:
    'audit ship --to URL [--once|--follow] [--cacert FILE] [--token-file PATH] [--timeout SECONDS]',
  help: `Sends the entries not yet shipped to URL, then advances a cursor kept in the home
(HOME/ship/), only once the receiver accepted them: a restart resumes with no loss and no duplicate.
URL: syslog+tls://HOST:PORT (RFC 5424, octet counting), otlp+https://HOST:PORT/v1/logs,
splunk+https://HOST:PORT/services/collector/event (needs --token-file), https://HOST/PATH (JSON lines).
Plain syslog+tcp://, otlp+http://, http:// only to 127.0.0.1, ::1 or localhost.
Each message carries the entry as written, its seq, its RFC 9162 leaf hash and its id (the entry hash).
--once (the default) ships what is there and exits (7 if the receiver did not accept);
--follow keeps shipping as entries are appended, backing off while the receiver fails, until Ctrl-C.`,
  options: {
    to: {
      type: 'string',
      value: 'URL',
      help: 'where to send (required; the scheme names the protocol)',
    },
    once: { type: 'boolean', help: 'ship what is there now, then exit (the default)' },
    follow: {
      type: 'boolean',
      help: 'keep shipping new entries until Ctrl-C, retrying while the receiver fails',
    },
    cacert: {
      type: 'string',
      value: 'FILE',
      help: "PEM CA certificates that replace the bundled roots for the receiver's TLS",
    },
    'token-file': {
      type: 'string',
      value: 'PATH',
      help: 'file holding the Splunk HEC token, or a bearer token for OTLP and HTTPS (else none)',
    },
    timeout: {
      type: 'string',
      value: 'SECONDS',
      help: 'limit on each delivery (else 30)',
    },
  },
  examples: [
    'trust-protocol audit ship --to syslog+tls://siem.example.com:6514 --follow',
    'trust-protocol audit ship --to splunk+https://splunk.example.com:8088/services/collector/event --token-file ~/.hec-token',
  ],
  args: { min: 0, max: 0 },
  async run(ctx) {
    const to = str(ctx, 'to');
    if (to === undefined) throw usage('bad_flags', 'audit ship needs --to URL');
    if (flag(ctx, 'once') && flag(ctx, 'follow')) {
      throw usage('bad_flags', '--once and --follow cannot be used together');
    }
    const home = existingHome(ctx);
    // Loaded here: the transports bring node:net and node:tls, which no other audit command needs.
    const { followReport, shipper } = await import('../ship.ts');
    const s = shipper(ctx, home, {
      to,
      cacert: str(ctx, 'cacert'),
      tokenFile: str(ctx, 'token-file'),
      timeout: str(ctx, 'timeout'),
    });
    if (flag(ctx, 'follow')) {
      const stop = new AbortController();
      const onSignal = () => stop.abort();
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      try {
        await s.follow(stop.signal, followReport(ctx));
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
      return { json: undefined, text: '' };
    }
    const shipped = await s.once();
    return {
      json: shipped,
      text: shipped.count === 0
        ? 'Nothing new to ship.\n'
        : `shipped ${shipped.count} entr${
          shipped.count === 1 ? 'y' : 'ies'
        }, up to #${shipped.last}\n`,
      informational: true,
    };
  },
};

export const auditCommands: Command[] = [
  verify,
  show,
  exportCmd,
  rotate,
  checkpoint,
  resync,
  ship,
  ...tlogCommands,
];
