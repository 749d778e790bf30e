/**
 * Audit log verification: a pure function over the log's bytes (sigstore-style: load first, then
 * verify). It hashes raw line bytes and never needs JSON.parse for the chain or the MACs, so it is
 * bounded by hashing. Problems are reported by the sequence number where they are first visible.
 */
import { Buffer } from 'node:buffer';
import { hash } from 'node:crypto';
import { secretEqual } from './bytes.ts';
import { digestHmacer, GENESIS, MAC_MARKER, mayLackMac } from './audit.ts';

export type ProblemKind =
  | 'modified'
  | 'inserted'
  | 'deleted'
  | 'reordered'
  | 'truncated'
  | 'forked'
  | 'torn_tail'
  | 'wrong_key';

export interface Problem {
  seq: number;
  kind: ProblemKind;
  detail: string;
}

export interface Head {
  seq: number;
  hash: string;
}

export interface VerifyOptions {
  /** The audit HMAC key; null checks the chain only. */
  macKey: Uint8Array | null;
  /** The head the vault recorded (catches a cut-off tail and a rewritten log). */
  recordedHead: Head | null;
  /** A head the user kept elsewhere (`audit checkpoint`); the log must still contain and extend it. */
  checkpoint?: Head | null;
}

export interface VerifyResult {
  ok: boolean;
  entries: number;
  head: Head | null;
  hmac_checked: boolean;
  /** Entries after the last one with a valid MAC: chained, but sealed by no password holder yet. */
  unsealed: number | null;
  problems: Problem[];
}

interface Entry {
  seq: number;
  prev: string;
  digest: string;
  mac: string | null;
  /** For a null MAC: whether the event is one written without the password. */
  unkeyed: boolean;
}

const START = Buffer.from('{"v":1,"seq":');
const MARKER = Buffer.from(MAC_MARKER);
const PREV_FIELD = Buffer.from('"prev":"');
const NULL_TAIL = Buffer.from('null}');

/**
 * Parses the fixed layout of one line straight from its bytes; null when it is not a well-formed
 * entry. Hex fields are not validated here: a non-hex `prev` or `mac` can never equal a computed
 * digest or MAC, so it fails the chain or MAC check and is reported there.
 */
function _entry(line: Buffer): Entry | null {
  if (line.length < START.length || line.compare(START, 0, START.length, 0, START.length) !== 0) {
    return null;
  }
  let seq = 0;
  let i = START.length;
  for (; i < line.length && i < START.length + 15; i++) {
    const c = line[i] as number;
    if (c < 0x30 || c > 0x39) break;
    seq = seq * 10 + (c - 0x30);
  }
  if (i === START.length || line[i] !== 0x2c) return null;
  const at = line.lastIndexOf(MARKER);
  const prevAt = at - 65 - PREV_FIELD.length;
  if (
    prevAt < i ||
    line.compare(PREV_FIELD, 0, PREV_FIELD.length, prevAt, prevAt + PREV_FIELD.length) !== 0
  ) return null;
  const tailAt = at + MARKER.length;
  let mac: string | null;
  if (
    line.length - tailAt === NULL_TAIL.length &&
    line.compare(NULL_TAIL, 0, NULL_TAIL.length, tailAt) === 0
  ) mac = null;
  else if (
    line.length - tailAt === 67 && line[tailAt] === 0x22 && line[line.length - 2] === 0x22 &&
    line[line.length - 1] === 0x7d
  ) {
    mac = line.toString('latin1', tailAt + 1, tailAt + 65);
  } else return null;
  return {
    seq,
    prev: line.toString('latin1', at - 65, at - 1),
    digest: hash('sha256', line.subarray(0, at), 'hex'),
    unkeyed: mac === null && mayLackMac(line.toString('utf8', 0, Math.min(line.length, 512))),
    mac,
  };
}

/** Per-entry facts kept after the single pass: no strings, so a million entries stay cheap. */
interface Scan {
  seqs: number[];
  /**
   * 0: no MAC, 1: MAC verifies, 2: MAC does not verify (or not checked: 0), 3: no MAC on an event
   * only a password holder writes (forged, or its MAC stripped).
   */
  macs: number[];
  /** Whether the entry's prev is the digest of the entry before it in the file. */
  linked: boolean[];
  firstIsGenesis: boolean;
  /** Digests of the entries the recorded head and the checkpoint name, and of the last one. */
  wanted: Map<number, string>;
  lastDigest: string | null;
}

export function verifyAuditLog(bytes: Uint8Array, options: VerifyOptions): VerifyResult {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const problems: Problem[] = [];
  const mac = options.macKey === null ? null : digestHmacer(options.macKey);
  const want = new Set(
    [options.recordedHead?.seq, options.checkpoint?.seq].filter((x) => x !== undefined),
  );
  const scan: Scan = {
    seqs: [],
    macs: [],
    linked: [],
    firstIsGenesis: false,
    wanted: new Map(),
    lastDigest: null,
  };
  const malformed: number[] = [];
  let start = 0;
  while (start < buf.length) {
    const nl = buf.indexOf(0x0a, start);
    if (nl < 0) {
      problems.push({
        seq: (scan.seqs.at(-1) ?? 0) + 1,
        kind: 'torn_tail',
        detail: `the log ends in ${
          buf.length - start
        } bytes without a newline (a crash mid-write, or appended bytes)`,
      });
      break;
    }
    const e = _entry(buf.subarray(start, nl));
    start = nl + 1;
    if (e === null) {
      malformed.push(scan.seqs.length);
      continue;
    }
    if (scan.seqs.length === 0) scan.firstIsGenesis = e.prev === GENESIS;
    scan.linked.push(e.prev === scan.lastDigest);
    scan.seqs.push(e.seq);
    scan.macs.push(
      mac === null
        ? 0
        : e.mac === null
        ? (e.unkeyed ? 0 : 3)
        : secretEqual(Buffer.from(mac(e.digest)), Buffer.from(e.mac))
        ? 1
        : 2,
    );
    if (want.has(e.seq)) scan.wanted.set(e.seq, e.digest);
    scan.lastDigest = e.digest;
  }
  const { seqs, macs } = scan;
  for (const index of malformed) {
    const after = seqs[index - 1] ?? 0;
    problems.push(
      index === seqs.length
        ? {
          seq: after + 1,
          kind: 'inserted',
          detail: `a line that is not an audit entry follows entry ${after}`,
        }
        : {
          seq: after + 1,
          kind: 'modified',
          detail: `the line after entry ${after} is not a well-formed audit entry`,
        },
    );
  }
  _sequenceProblems(seqs, problems);
  let macGood = 0;
  let lastSealed = -1;
  macs.forEach((m, i) => {
    if (m === 1) {
      macGood++;
      lastSealed = i;
    }
  });
  const macBadIndex = new Set<number>();
  macs.forEach((m, i) => m === 2 && macBadIndex.add(i));
  if (macBadIndex.size > 0 && macGood === 0) {
    problems.push({
      seq: seqs[macs.findIndex((m) => m !== 0)] ?? 1,
      kind: 'wrong_key',
      detail:
        "no entry verifies under this vault's audit key: the log belongs to another vault, or every MAC was rewritten",
    });
    macBadIndex.clear();
  }
  _chainProblems(scan, macBadIndex, options.recordedHead, problems);
  for (const i of macBadIndex) {
    const seq = seqs[i] as number;
    if (problems.some((p) => p.seq === seq && p.kind !== 'wrong_key')) continue;
    problems.push(
      options.recordedHead !== null && seq > options.recordedHead.seq
        ? {
          seq,
          kind: 'inserted',
          detail:
            `entry ${seq} carries a MAC that does not verify: it was not written by a password holder`,
        }
        : { seq, kind: 'modified', detail: `entry ${seq} does not match its MAC` },
    );
  }
  macs.forEach((m, i) => {
    const seq = seqs[i] as number;
    if (m !== 3 || problems.some((p) => p.seq === seq)) return;
    problems.push({
      seq,
      kind: options.recordedHead !== null && seq > options.recordedHead.seq
        ? 'inserted'
        : 'modified',
      detail: `entry ${seq} has no MAC, but its event is written only by a password holder`,
    });
  });
  const lastSeq = seqs.at(-1) ?? 0;
  for (
    const [head, what] of [[options.recordedHead, 'the vault'], [
      options.checkpoint ?? null,
      'the checkpoint',
    ]] as const
  ) {
    if (head === null) continue;
    const digest = scan.wanted.get(head.seq);
    if (digest === undefined && lastSeq < head.seq) {
      problems.push({
        seq: lastSeq + 1,
        kind: 'truncated',
        detail: `${what} recorded entry ${head.seq}, but the log ends at ${lastSeq}`,
      });
    } else if (digest !== undefined && digest !== head.hash) {
      problems.push({
        seq: head.seq,
        kind: 'forked',
        detail:
          `entry ${head.seq} is not the one ${what} recorded: the log was rewritten from there or earlier`,
      });
    }
  }
  problems.sort((a, b) => a.seq - b.seq);
  return {
    ok: problems.length === 0,
    entries: seqs.length,
    head: scan.lastDigest === null ? null : { seq: lastSeq, hash: scan.lastDigest },
    hmac_checked: mac !== null,
    unsealed: mac === null ? null : seqs.length - 1 - lastSealed,
    problems: _dedupe(problems),
  };
}

/** Duplicates are insertions, a permutation out of order is a reordering, gaps are deletions. */
function _sequenceProblems(seqs: readonly number[], problems: Problem[]): void {
  if (seqs.every((seq, i) => seq === i + 1)) return;
  const seen = new Set<number>();
  let reordered = false;
  for (let i = 0; i < seqs.length; i++) {
    const seq = seqs[i] as number;
    const before = seqs[i - 1];
    if (seen.has(seq)) {
      problems.push({ seq, kind: 'inserted', detail: `a second entry numbered ${seq}` });
    } else if (before !== undefined && seq < before && !reordered) {
      reordered = true;
      problems.push({ seq, kind: 'reordered', detail: `entry ${seq} comes after entry ${before}` });
    }
    seen.add(seq);
  }
  let max = 0;
  for (const seq of seen) if (seq > max) max = seq;
  for (let s = 1; s <= max; s++) {
    if (!seen.has(s)) {
      let to = s;
      while (to + 1 <= max && !seen.has(to + 1)) to++;
      problems.push({
        seq: s,
        kind: 'deleted',
        detail: s === to ? `entry ${s} is missing` : `entries ${s} to ${to} are missing`,
      });
      s = to;
    }
  }
}

/** Between entries numbered n and n+1 in file order, n+1's prev must be n's digest. */
function _chainProblems(
  scan: Scan,
  macBad: ReadonlySet<number>,
  head: Head | null,
  problems: Problem[],
): void {
  const { seqs, linked } = scan;
  for (let i = 0; i < seqs.length; i++) {
    const seq = seqs[i] as number;
    if (i === 0) {
      if (seq === 1 && !scan.firstIsGenesis) {
        problems.push({
          seq: 1,
          kind: 'modified',
          detail: 'the first entry does not start the chain',
        });
      }
      continue;
    }
    const before = seqs[i - 1] as number;
    if (before + 1 !== seq || linked[i]) continue;
    // Either `before` changed after this entry recorded its digest, or this entry's prev was
    // changed: a MAC decides.
    const culprit = macBad.has(i) && !macBad.has(i - 1) ? seq : before;
    problems.push({
      seq: culprit,
      kind: head !== null && culprit > head.seq && culprit === seq ? 'inserted' : 'modified',
      detail: `entry ${seq} does not chain to entry ${before}`,
    });
  }
}

function _dedupe(problems: Problem[]): Problem[] {
  const seen = new Set<string>();
  return problems.filter((p) => {
    const key = `${p.seq}:${p.kind}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
