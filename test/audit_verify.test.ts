import { describe, expect, it } from 'vitest';
import { type AuditEvent, formatEntry, GENESIS } from '../src/audit.ts';
import { AuditVerifier, verifyAuditLog } from '../src/audit_verify.ts';

const KEY = new Uint8Array(32).fill(7);
const OTHER_KEY = new Uint8Array(32).fill(8);

function event(i: number): AuditEvent {
  return {
    event: 'request.allowed',
    actor: { type: 'agent', id: `agt_${i}` },
    outcome: 'allowed',
    data: { path: `/p/${i}` },
  };
}

/** A log of n entries; `unkeyed` lists entries written without the password (mac null). */
function build(n: number, options: { key?: Uint8Array; unkeyed?: number[] } = {}) {
  const lines: string[] = [];
  const digests: string[] = [];
  let prev = GENESIS;
  for (let seq = 1; seq <= n; seq++) {
    const key = options.unkeyed?.includes(seq) ? null : (options.key ?? KEY);
    const { line, digest } = formatEntry({
      ...event(seq),
      // Written without the password: one of the events that may be (UNKEYED_EVENTS).
      ...(key === null ? { event: 'request.denied', outcome: 'denied' as const } : {}),
      seq,
      ts: `2026-01-01T00:00:${String(seq % 60).padStart(2, '0')}.000Z`,
      prev,
    }, key);
    lines.push(line);
    digests.push(digest);
    prev = digest;
  }
  return { lines, head: { seq: n, hash: digests[n - 1] as string }, digests };
}

const bytes = (lines: string[], trailing = '\n') =>
  new TextEncoder().encode(lines.join('\n') + trailing);

function verify(
  lines: string[],
  head: { seq: number; hash: string } | null,
  extra: {
    trailing?: string;
    key?: Uint8Array | null;
    checkpoint?: { seq: number; hash: string };
  } = {},
) {
  const log = bytes(lines, extra.trailing ?? '\n');
  const options = {
    macKey: extra.key === undefined ? KEY : extra.key,
    recordedHead: head,
    checkpoint: extra.checkpoint ?? null,
  };
  const whole = verifyAuditLog(log, options);
  // Streamed in blocks of any size (issue 16), lines cut anywhere: the same report.
  for (const size of [1, 7, 100, 4096]) {
    const streamed = new AuditVerifier(options);
    for (let at = 0; at < log.length; at += size) streamed.update(log.subarray(at, at + size));
    expect(streamed.finish()).toEqual(whole);
  }
  return whole;
}

function first(r: ReturnType<typeof verify>) {
  return r.problems[0] === undefined ? null : { seq: r.problems[0].seq, kind: r.problems[0].kind };
}

describe('audit verify', () => {
  it('accepts an intact log with and without the key', () => {
    const { lines, head } = build(20);
    expect(verify(lines, head)).toMatchObject({
      ok: true,
      entries: 20,
      hmac_checked: true,
      unsealed: 0,
      head,
    });
    expect(verify(lines, head, { key: null })).toMatchObject({
      ok: true,
      hmac_checked: false,
      unsealed: null,
    });
    expect(verify([], null, { trailing: '' })).toMatchObject({ ok: true, entries: 0, head: null });
  });

  it('entries written without the password are sealed by the next keyed entry', () => {
    const { lines, head } = build(10, { unkeyed: [3, 4, 9, 10] });
    expect(verify(lines, head)).toMatchObject({ ok: true, unsealed: 2 });
  });

  it('a null MAC on an event only a password holder writes is a problem (forged, or stripped)', () => {
    const { lines, head } = build(10);
    const strip = (line: string) => line.slice(0, line.lastIndexOf(',"mac":')) + ',"mac":null}';
    lines[4] = strip(lines[4] as string);
    expect(verify(lines, head).problems).toEqual([
      expect.objectContaining({ seq: 5, kind: 'modified' }),
    ]);
    // Without the key nothing tells a stripped MAC from a password-less entry.
    expect(verify(lines, head, { key: null }).ok).toBe(true);
    const after = build(10);
    after.lines[9] = strip(after.lines[9] as string);
    expect(first(verify(after.lines, { seq: 9, hash: after.digests[8] as string }))).toEqual({
      seq: 10,
      kind: 'inserted',
    });
  });

  it.each([0, 4, 9])('one changed byte in entry %i+1 is "modified" at that entry', (i) => {
    const { lines, head } = build(10);
    lines[i] = (lines[i] as string).replace(`/p/${i + 1}`, `/q/${i + 1}`);
    expect(first(verify(lines, head))).toEqual({ seq: i + 1, kind: 'modified' });
    // Without the key the chain (or, for the last entry, the recorded head) still catches it.
    expect(first(verify(lines, head, { key: null }))).toEqual({
      seq: i + 1,
      kind: i === 9 ? 'forked' : 'modified',
    });
  });

  it('a deleted middle line is "deleted"', () => {
    const { lines, head } = build(10);
    lines.splice(4, 1);
    expect(first(verify(lines, head))).toEqual({ seq: 5, kind: 'deleted' });
  });

  it('two swapped lines are "reordered"', () => {
    const { lines, head } = build(10);
    [lines[3], lines[4]] = [lines[4] as string, lines[3] as string];
    expect(first(verify(lines, head))).toEqual({ seq: 4, kind: 'reordered' });
  });

  it('a forged line is "inserted", whether it reuses a number or is appended with a bad MAC', () => {
    const { lines, head, digests } = build(10);
    const forged = formatEntry({
      ...event(99),
      seq: 6,
      ts: '2026-01-01T00:00:00.000Z',
      prev: digests[4] as string,
    }, OTHER_KEY).line;
    const dup = [...lines.slice(0, 6), forged, ...lines.slice(6)];
    expect(verify(dup, head).problems.map((p) => p.kind)).toContain('inserted');
    const appended = formatEntry({
      ...event(11),
      seq: 11,
      ts: '2026-01-01T00:00:11.000Z',
      prev: digests[9] as string,
    }, OTHER_KEY).line;
    expect(first(verify([...lines, appended], head))).toEqual({ seq: 11, kind: 'inserted' });
  });

  it('cutting the last lines is "truncated" against the head the vault recorded', () => {
    const { lines, head } = build(10);
    expect(first(verify(lines.slice(0, 7), head))).toEqual({ seq: 8, kind: 'truncated' });
    expect(first(verify(lines.slice(0, 7), head, { key: null }))).toEqual({
      seq: 8,
      kind: 'truncated',
    });
  });

  it('a whole log replaced by a valid-looking one is caught (truncated, wrong key, forked)', () => {
    const { head } = build(10);
    const shorter = build(6, { unkeyed: [1, 2, 3, 4, 5, 6] });
    expect(first(verify(shorter.lines, head))).toEqual({ seq: 7, kind: 'truncated' });
    const otherVault = build(12, { key: OTHER_KEY });
    expect(first(verify(otherVault.lines, head))).toEqual({ seq: 1, kind: 'wrong_key' });
    // Same length, rechained without MACs: only the recorded head can tell, and does.
    let prev = GENESIS;
    const rewritten = Array.from({ length: 10 }, (_, i) => {
      const { line, digest } = formatEntry({
        ...event(i + 1),
        actor: { type: 'agent', id: 'evil' },
        seq: i + 1,
        ts: 't',
        prev,
      }, null);
      prev = digest;
      return line;
    });
    expect(first(verify(rewritten, head, { key: null }))).toEqual({ seq: 10, kind: 'forked' });
  });

  it('garbage appended: torn tail without a newline, inserted with one', () => {
    const { lines, head } = build(5);
    expect(first(verify([...lines, 'garbage'], head, { trailing: '' }))).toEqual({
      seq: 6,
      kind: 'torn_tail',
    });
    expect(first(verify([...lines, 'garbage'], head))).toEqual({ seq: 6, kind: 'inserted' });
    const torn = (lines[4] as string).slice(0, 40);
    expect(
      first(
        verify([...lines.slice(0, 4), torn], { seq: 4, hash: build(5).digests[3] as string }, {
          trailing: '',
        }),
      ),
    )
      .toEqual({ seq: 5, kind: 'torn_tail' });
  });

  it('a log under another key is "wrong key"', () => {
    const { lines, head } = build(5, { key: OTHER_KEY });
    expect(first(verify(lines, head))).toEqual({ seq: 1, kind: 'wrong_key' });
  });

  it('a checkpoint catches a log and vault rolled back together', () => {
    const { lines, head } = build(10);
    const older = build(6);
    expect(verify(lines, head, { checkpoint: head }).ok).toBe(true);
    expect(first(verify(older.lines, older.head, { checkpoint: head }))).toEqual({
      seq: 7,
      kind: 'truncated',
    });
  });
});

describe('audit line format', () => {
  it('escapes line breaks, terminal controls and bidi overrides; the value round-trips', () => {
    const nasty = 'a\nb\r\u001b[2J\u009b31m\u202eevil\u2028\u2066x\u007f';
    const { line } = formatEntry({
      event: 'serve.start',
      actor: { type: 'anyone' },
      outcome: 'ok',
      data: { reason: nasty },
      seq: 1,
      ts: 't',
      prev: GENESIS,
    }, KEY);
    // deno-lint-ignore no-control-regex -- matching control characters is the point
    expect(line).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/);
    expect(JSON.parse(line).data.reason).toBe(nasty);
    expect(
      verifyAuditLog(new TextEncoder().encode(line + '\n'), { macKey: KEY, recordedHead: null }).ok,
    ).toBe(true);
  });
});

describe("the verifier's HMAC", () => {
  it('equals node:crypto HMAC-SHA256 over the digest for keys of every length', async () => {
    const { createHmac, randomBytes } = await import('node:crypto');
    const { digestHmacer } = await import('../src/crypto/hmac.ts');
    for (const len of [1, 16, 32, 63, 64, 65, 100]) {
      const key = randomBytes(len);
      const digest = randomBytes(32).toString('hex');
      expect(digestHmacer(key)(digest)).toBe(
        createHmac('sha256', key).update(Buffer.from(digest, 'hex')).digest('hex'),
      );
    }
  });

  it('wipe() zeroes its padded keys: a wiped hasher refuses to run', async () => {
    const { digestHmacer } = await import('../src/crypto/hmac.ts');
    const mac = digestHmacer(new Uint8Array(32).fill(7));
    const digest = '00'.repeat(32);
    expect(mac(digest)).toMatch(/^[0-9a-f]{64}$/);
    mac.wipe();
    expect(() => mac(digest)).toThrow(/after wipe/);
  });
});
