/**
 * FileAuditLog.follow (serve's incremental `entriesAfter`): after every kind of change to the log, a
 * followed query must find every entry the full backward scan finds. The scan is run with a
 * RegExp of the same source but another object, which the follower does not answer.
 */
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { type AuditEvent, formatEntry, rotateAuditLog } from '../src/audit.ts';
import { openState } from '../src/state.ts';
import { BRAKE_EVENTS, type EventName, VAULT_CHANGE_EVENTS } from '../src/events.ts';
import { openHome } from '../src/home.ts';

const KEY = new Uint8Array(32).fill(7);
const OTHER_KEY = new Uint8Array(32).fill(8);

function event(name: EventName, i: number): AuditEvent {
  return { event: name, actor: { type: 'system' }, outcome: 'ok', data: { i, brake: `b${i}` } };
}

function setup() {
  const h = openHome(path.join(fs.mkdtempSync(path.join(tmpdir(), 'tp-follow-')), 'h'), {
    create: true,
  });
  const st = openState(h);
  const keyed = st.audit.writer({ macKey: KEY });
  const unkeyed = st.audit.writer({ macKey: null });
  const log = path.join(h.dir, 'audit', 'audit.log');
  const seqs = (found: Array<{ seq: number }>) => found.map((e) => e.seq);
  /** Both answers for each question serve asks, at the given head. */
  const compare = (after: number) => {
    for (const [key, re] of [[KEY, VAULT_CHANGE_EVENTS], [null, BRAKE_EVENTS]] as const) {
      const followed = seqs(st.audit.entriesAfter(key, after, re));
      const scanned = seqs(st.audit.entriesAfter(key, after, new RegExp(re.source)));
      expect(followed, `${re.source} after ${after}`).toEqual(scanned);
    }
  };
  return { h, st, keyed, unkeyed, log, compare, seqs };
}

describe('FileAuditLog.follow', () => {
  it('answers as the full scan does while other writers append, heads move and the log is cut, rewritten or torn', async () => {
    const { st, keyed, unkeyed, log, compare, seqs } = setup();
    for (let i = 0; i < 20; i++) {
      await keyed.append([event(i % 5 === 0 ? 'agent.revoke' : 'request.completed', i)]);
    }
    const stop = st.audit.follow(KEY, [BRAKE_EVENTS, VAULT_CHANGE_EVENTS]);
    try {
      compare(3);
      expect(seqs(st.audit.entriesAfter(KEY, 3, VAULT_CHANGE_EVENTS))).toEqual([16, 11, 6]);
      // New entries of every sort, keyed and not.
      await unkeyed.append([event('brake.activate', 21)]);
      await keyed.append([event('credential.add', 22), event('request.allowed', 23)]);
      compare(3);
      compare(10);
      compare(21);
      expect(seqs(st.audit.entriesAfter(null, 3, BRAKE_EVENTS))).toEqual([21]);
      expect(seqs(st.audit.entriesAfter(KEY, 10, VAULT_CHANGE_EVENTS))).toEqual([22, 16, 11]);
      // A head older than the first one asked about: scanned again.
      compare(0);
      // Cut: the last lines go, then others are written in their place.
      const lines = fs.readFileSync(log, 'utf8').trimEnd().split('\n');
      _rewrite(log, lines.slice(0, 18).join('\n') + '\n');
      compare(5);
      await keyed.append([event('agent.suspend', 19), event('brake.activate', 20)]);
      compare(5);
      expect(seqs(st.audit.entriesAfter(KEY, 5, VAULT_CHANGE_EVENTS))).toEqual([19, 16, 11, 6]);
      // Rewritten in the middle: a different entry 13 under the right key. The scan with the key
      // checks the chain (entry 14 names the old 13) and refuses; the follower, reading forward
      // from the unchanged tail, does not see an edit that keeps the length (audit verify does).
      const original = fs.readFileSync(log, 'utf8');
      const now = original.trimEnd().split('\n');
      const at = now.findIndex((l) => l.includes('"seq":13,'));
      const prev = JSON.parse(now[at]!).prev as string;
      now[at] = formatEntry({ ...event('agent.revoke', 13), seq: 13, ts: 'x', prev }, KEY).line;
      _rewrite(log, now.join('\n') + '\n');
      expect(() => st.audit.entriesAfter(KEY, 5, new RegExp(VAULT_CHANGE_EVENTS.source))).toThrow(
        expect.objectContaining({ kind: 'integrity', code: 'audit_forked' }),
      );
      _rewrite(log, original);
      compare(5);
      // A torn tail: the follower steps aside (the scan answers) until an append repairs it.
      _rewrite(log, fs.readFileSync(log, 'utf8') + '{"v":1,"seq":99,"ts":"x","event":"brake.acti');
      compare(5);
      await keyed.append([event('agent.revoke', 30)]);
      compare(5);
      compare(12);
    } finally {
      stop();
    }
  });

  it('answers as the full scan does across a rotation: entries after the head in a closed segment count', async () => {
    const { h, st, keyed, unkeyed, compare, seqs } = setup();
    for (let i = 0; i < 10; i++) await keyed.append([event('request.completed', i)]);
    const stop = st.audit.follow(KEY, [BRAKE_EVENTS, VAULT_CHANGE_EVENTS]);
    try {
      compare(5);
      await unkeyed.append([event('brake.activate', 11)]);
      await keyed.append([event('agent.revoke', 12)]);
      await rotateAuditLog(h);
      compare(5);
      await keyed.append([event('request.completed', 13)]);
      compare(5);
      expect(seqs(st.audit.entriesAfter(null, 5, BRAKE_EVENTS))).toEqual([11]);
      expect(seqs(st.audit.entriesAfter(KEY, 5, VAULT_CHANGE_EVENTS))).toEqual([12]);
      compare(12);
    } finally {
      stop();
    }
  });

  it('a line under another key throws in the scan and in the follower, also when it is not a followed event', async () => {
    for (const name of ['agent.grant', 'request.completed'] as const) {
      const { h, st, keyed } = setup();
      await keyed.append([event('agent.revoke', 1)]);
      const stop = st.audit.follow(KEY, [VAULT_CHANGE_EVENTS, BRAKE_EVENTS]);
      try {
        expect(st.audit.entriesAfter(KEY, 0, VAULT_CHANGE_EVENTS)).toHaveLength(1);
        // A writer refuses to follow a tail it cannot check (after a rekey, #19): this one knows
        // KEY for entry 1, as a rekey at entry 1 would, and writes under OTHER_KEY.
        const forger = { current: OTHER_KEY, older: [{ through: 1, key: KEY }] };
        await openState(h).audit.writer({ macKey: forger }).append([event(name, 2)]);
        for (const re of [VAULT_CHANGE_EVENTS, new RegExp(VAULT_CHANGE_EVENTS.source)]) {
          expect(() => st.audit.entriesAfter(KEY, 0, re), name).toThrow(
            expect.objectContaining({ kind: 'integrity', code: 'audit_mac_mismatch' }),
          );
        }
        // serve's brake query, keyless, goes through the follower, which holds the key: refused.
        expect(() => st.audit.entriesAfter(null, 0, BRAKE_EVENTS)).toThrow(/valid MAC/);
      } finally {
        stop();
      }
      // Without a key and a follower (password-less checks) nothing is authenticated or refused.
      expect(st.audit.entriesAfter(null, 0).map((e) => e.authenticated)).toEqual([false, false]);
    }
  });

  it('answers only the RegExp objects it follows, and nothing after it stops', async () => {
    const { st, keyed, seqs } = setup();
    await keyed.append([event('agent.revoke', 1)]);
    const stop = st.audit.follow(KEY, [VAULT_CHANGE_EVENTS]);
    expect(seqs(st.audit.entriesAfter(KEY, 0, VAULT_CHANGE_EVENTS))).toEqual([1]);
    stop();
    await keyed.append([event('agent.revoke', 2)]);
    expect(seqs(st.audit.entriesAfter(KEY, 0, VAULT_CHANGE_EVENTS))).toEqual([2, 1]);
  });
});

/** Replaces a state file's content, keeping it private (Deno's writeFileSync ignores the umask). */
function _rewrite(file: string, content: string | Uint8Array): void {
  fs.writeFileSync(file, content, { mode: 0o600 });
  fs.chmodSync(file, 0o600);
}
