/**
 * Audit log verification: a pure function over the log's bytes (sigstore-style: load first, then
 * verify). It hashes raw line bytes and never needs JSON.parse for the chain or the MACs, so it is
 * bounded by hashing. Problems are reported by the sequence number where they are first visible.
 */
import { Buffer } from 'node:buffer';
import { hash, timingSafeEqual } from 'node:crypto';
import { GENESIS, MAC_MARKER, mayLackMac } from './audit.ts';
import { type MacKey, type SeqHmac, seqHmacer } from './audit_keys.ts';

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
  /** The audit HMAC key (or a vault's keys across rekeys); null checks the chain only. */
  macKey: MacKey | null;
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

/**
 * Constant-time equality of a computed MAC and a line's, both 64 characters (`_entry` reads
 * exactly 64): `secretEqual` hashes both sides to hide lengths, which cost more than the rest of
 * an entry's check put together (issue #16).
 */
function _macEqual(computed: string, found: string): boolean {
  return computed.length === found.length &&
    timingSafeEqual(Buffer.from(computed, 'latin1'), Buffer.from(found, 'latin1'));
}

/**
 * Verifies a log fed to it in blocks of any size (`update`), in one pass with memory bounded by
 * the problems found, not by the log's length (issue #16): per entry it keeps only what the next
 * entry needs (the last sequence number, digest and MAC verdict); sequence numbers seen are kept
 * as ranges (one range for an intact log). The result is the one `verifyAuditLog` gives for the
 * whole log's bytes.
 */
export class AuditVerifier {
  #mac: SeqHmac | null;
  #options: VerifyOptions;
  #want: Set<number>;
  #wanted = new Map<number, string>();
  /** An unfinished line from the previous block (copied: blocks may be reused buffers). */
  #carry: Buffer | null = null;
  #count = 0;
  #lastSeq = 0;
  #lastDigest: string | null = null;
  #firstIsGenesis = false;
  /** The previous entry's MAC verdict (see `#macs`): a chain break is blamed with it. */
  #lastMac = 0;
  #macGood = 0;
  #lastSealed = -1;
  #firstKeyedSeq: number | null = null;
  /** Entries whose MAC does not verify (index, seq), and keyed events without one (seq). */
  #macBad: Array<[number, number]> = [];
  #unmacked: number[] = [];
  /** Lines that are not entries: the seq before them, and how many entries came before. */
  #malformed: Array<[number, number]> = [];
  /** Adjacent entries n, n+1 that do not link: [index, seq, before, MAC bad here, bad before]. */
  #breaks: Array<[number, number, number, boolean, boolean]> = [];
  /** Sequence numbers seen, as sorted disjoint ranges [lo[i], hi[i]]. */
  #lo: number[] = [];
  #hi: number[] = [];
  #order: Problem[] = [];
  #reordered = false;

  constructor(options: VerifyOptions) {
    this.#options = options;
    this.#mac = options.macKey === null ? null : seqHmacer(options.macKey);
    this.#want = new Set(
      [options.recordedHead?.seq, options.checkpoint?.seq].filter((x) => x !== undefined),
    );
  }

  update(bytes: Uint8Array): this {
    const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    let start = 0;
    for (let nl = buf.indexOf(0x0a); nl >= 0; nl = buf.indexOf(0x0a, start)) {
      if (this.#carry === null) this.#line(buf.subarray(start, nl));
      else {
        this.#line(Buffer.concat([this.#carry, buf.subarray(start, nl)]));
        this.#carry = null;
      }
      start = nl + 1;
    }
    if (start < buf.length) {
      this.#carry = this.#carry === null
        ? Buffer.from(buf.subarray(start))
        : Buffer.concat([this.#carry, buf.subarray(start)]);
    }
    return this;
  }

  #line(line: Buffer): void {
    const e = _entry(line);
    if (e === null) {
      this.#malformed.push([this.#lastSeq, this.#count]);
      return;
    }
    const i = this.#count;
    const m = this.#mac === null
      ? 0
      : e.mac === null
      ? (e.unkeyed ? 0 : 3)
      : _macEqual(this.#mac(e.digest, e.seq), e.mac)
      ? 1
      : 2;
    if (i === 0) this.#firstIsGenesis = e.prev === GENESIS;
    else if (this.#lastSeq + 1 === e.seq && e.prev !== this.#lastDigest) {
      this.#breaks.push([i, e.seq, this.#lastSeq, m === 2, this.#lastMac === 2]);
    }
    if (i === 0 && e.seq === 1 && !this.#firstIsGenesis) this.#breaks.push([0, 1, 0, false, false]);
    this.#sequence(e.seq, i);
    if (m === 1) {
      this.#macGood++;
      this.#lastSealed = i;
    } else if (m === 2) this.#macBad.push([i, e.seq]);
    else if (m === 3) this.#unmacked.push(e.seq);
    if (m !== 0) this.#firstKeyedSeq ??= e.seq;
    if (this.#want.has(e.seq)) this.#wanted.set(e.seq, e.digest);
    this.#lastMac = m;
    this.#lastSeq = e.seq;
    this.#lastDigest = e.digest;
    this.#count++;
  }

  /** Duplicates are insertions and the first step backwards a reordering, in file order. */
  #sequence(seq: number, i: number): void {
    const lo = this.#lo;
    const hi = this.#hi;
    const n = lo.length;
    if (n > 0 && hi[n - 1]! + 1 === seq) {
      hi[n - 1] = seq;
      return;
    }
    // The first range whose end is at or after seq.
    let a = 0;
    let b = n;
    while (a < b) {
      const mid = (a + b) >> 1;
      if (hi[mid]! < seq) a = mid + 1;
      else b = mid;
    }
    if (a < n && lo[a]! <= seq) {
      this.#order.push({ seq, kind: 'inserted', detail: `a second entry numbered ${seq}` });
      return;
    }
    if (i > 0 && seq < this.#lastSeq && !this.#reordered) {
      this.#reordered = true;
      this.#order.push({
        seq,
        kind: 'reordered',
        detail: `entry ${seq} comes after entry ${this.#lastSeq}`,
      });
    }
    const joinsBefore = a > 0 && hi[a - 1]! + 1 === seq;
    const joinsAfter = a < n && lo[a]! - 1 === seq;
    if (joinsBefore && joinsAfter) {
      hi[a - 1] = hi[a]!;
      lo.splice(a, 1);
      hi.splice(a, 1);
    } else if (joinsBefore) hi[a - 1] = seq;
    else if (joinsAfter) lo[a] = seq;
    else {
      lo.splice(a, 0, seq);
      hi.splice(a, 0, seq);
    }
  }

  finish(): VerifyResult {
    // The last line has been read: the padded key is not needed any more.
    this.#mac?.wipe();
    const options = this.#options;
    const problems: Problem[] = [];
    const seqs = new Set<number>();
    const seqsNotKey = new Set<number>();
    const push = (p: Problem) => {
      problems.push(p);
      seqs.add(p.seq);
      if (p.kind !== 'wrong_key') seqsNotKey.add(p.seq);
    };
    const count = this.#count;
    const lastSeq = this.#lastSeq;
    if (this.#carry !== null) {
      push({
        seq: lastSeq + 1,
        kind: 'torn_tail',
        detail:
          `the log ends in ${this.#carry.length} bytes without a newline (a crash mid-write, or appended bytes)`,
      });
    }
    for (const [after, index] of this.#malformed) {
      push(
        index === count
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
    this.#order.forEach(push);
    // Gaps: the numbers from 1 to the largest seen that no entry carries.
    for (let r = 0, next = 1; r <= this.#lo.length; r++) {
      const lo = r < this.#lo.length ? this.#lo[r]! : null;
      const to = lo === null ? null : lo - 1;
      if (to !== null && to >= next) {
        push({
          seq: next,
          kind: 'deleted',
          detail: next === to ? `entry ${next} is missing` : `entries ${next} to ${to} are missing`,
        });
      }
      if (r < this.#hi.length) next = Math.max(next, this.#hi[r]! + 1);
    }
    let macBad = this.#macBad;
    if (macBad.length > 0 && this.#macGood === 0) {
      push({
        seq: this.#firstKeyedSeq ?? 1,
        kind: 'wrong_key',
        detail:
          "no entry verifies under this vault's audit key: the log belongs to another vault, or every MAC was rewritten",
      });
      macBad = [];
    }
    const head = options.recordedHead;
    // Either `before` changed after this entry recorded its digest, or this entry's prev was
    // changed: a MAC decides.
    const keyed = macBad.length > 0;
    for (const [i, seq, before, badHere, badBefore] of this.#breaks) {
      if (i === 0) {
        push({ seq: 1, kind: 'modified', detail: 'the first entry does not start the chain' });
        continue;
      }
      const culprit = keyed && badHere && !badBefore ? seq : before;
      push({
        seq: culprit,
        kind: head !== null && culprit > head.seq && culprit === seq ? 'inserted' : 'modified',
        detail: `entry ${seq} does not chain to entry ${before}`,
      });
    }
    for (const [, seq] of macBad) {
      if (seqsNotKey.has(seq)) continue;
      push(
        head !== null && seq > head.seq
          ? {
            seq,
            kind: 'inserted',
            detail:
              `entry ${seq} carries a MAC that does not verify: it was not written by a password holder`,
          }
          : { seq, kind: 'modified', detail: `entry ${seq} does not match its MAC` },
      );
    }
    for (const seq of this.#unmacked) {
      if (seqs.has(seq)) continue;
      push({
        seq,
        kind: head !== null && seq > head.seq ? 'inserted' : 'modified',
        detail: `entry ${seq} has no MAC, but its event is written only by a password holder`,
      });
    }
    for (
      const [recorded, what] of [[head, 'the vault'], [
        options.checkpoint ?? null,
        'the checkpoint',
      ]] as const
    ) {
      if (recorded === null) continue;
      const digest = this.#wanted.get(recorded.seq);
      if (digest === undefined && lastSeq < recorded.seq) {
        push({
          seq: lastSeq + 1,
          kind: 'truncated',
          detail: `${what} recorded entry ${recorded.seq}, but the log ends at ${lastSeq}`,
        });
      } else if (digest !== undefined && digest !== recorded.hash) {
        push({
          seq: recorded.seq,
          kind: 'forked',
          detail:
            `entry ${recorded.seq} is not the one ${what} recorded: the log was rewritten from there or earlier`,
        });
      }
    }
    problems.sort((a, b) => a.seq - b.seq);
    return {
      ok: problems.length === 0,
      entries: count,
      head: this.#lastDigest === null ? null : { seq: lastSeq, hash: this.#lastDigest },
      hmac_checked: this.#mac !== null,
      unsealed: this.#mac === null ? null : count - 1 - this.#lastSealed,
      problems: _dedupe(problems),
    };
  }
}

/** `AuditVerifier` over a whole log's bytes. */
export function verifyAuditLog(bytes: Uint8Array, options: VerifyOptions): VerifyResult {
  return new AuditVerifier(options).update(bytes).finish();
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
