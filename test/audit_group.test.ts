import { Buffer } from 'node:buffer';
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { readAuditLog, readLogFrom } from '../src/audit.ts';
import { openState } from '../src/state.ts';
import { verifyAuditLog } from '../src/audit_verify.ts';
import { openHome } from '../src/home.ts';

const KEY = new Uint8Array(32).fill(9);

function home() {
  return openHome(path.join(fs.mkdtempSync(path.join(tmpdir(), 'tp-group-')), 'h'), {
    create: true,
  });
}

describe('group commit of concurrent appends', () => {
  it('2000 concurrent appends all become durable, each with its own sequence number, in one verifiable chain', async () => {
    const h = home();
    const w = openState(h).audit.writer({ macKey: KEY });
    const heads = await Promise.all(
      Array.from(
        { length: 2000 },
        (_, i) =>
          w.append([{
            event: 'serve.start',
            actor: { type: 'system' },
            outcome: 'ok',
            data: { i },
          }]),
      ),
    );
    expect(new Set(heads.map((x) => x.seq)).size).toBe(2000);
    const result = verifyAuditLog(readAuditLog(h), {
      macKey: KEY,
      recordedHead: heads.reduce((a, b) => (a.seq > b.seq ? a : b)),
    });
    expect(result).toMatchObject({ ok: true, entries: 2000, unsealed: 0 });
  });

  it('a guard sees the earlier appends of its own batch (a limit of 100 holds under concurrency)', async () => {
    const h = home();
    const w = openState(h).audit.writer({ macKey: KEY });
    const outcomes = await Promise.allSettled(
      Array.from({ length: 500 }, () =>
        w.append([{
          event: 'request.allowed',
          actor: { type: 'system' },
          outcome: 'allowed',
          data: {},
        }], {
          guard: (recent) => {
            if (
              recent(new Date(0)).filter((e) => e.event === 'request.allowed').length >= 100
            ) throw new Error('limit');
          },
        })),
    );
    expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(100);
    expect(outcomes.filter((o) => o.status === 'rejected' && String(o.reason).includes('limit')))
      .toHaveLength(400);
    expect(verifyAuditLog(readAuditLog(h), { macKey: KEY, recordedHead: null }).entries).toBe(100);
  });

  it('a failed write rejects every append of the batch and records nothing', async () => {
    const h = home();
    const w = openState(h).audit.writer({ macKey: KEY });
    await w.append([{ event: 'serve.start', actor: { type: 'system' }, outcome: 'ok', data: {} }]);
    const log = path.join(h.dir, 'audit', 'audit.log');
    fs.rmSync(log);
    fs.mkdirSync(log);
    const outcomes = await Promise.allSettled(
      Array.from(
        { length: 10 },
        () =>
          w.append([{ event: 'serve.stop', actor: { type: 'system' }, outcome: 'ok', data: {} }]),
      ),
    );
    expect(
      outcomes.every((o) =>
        o.status === 'rejected' && /audit trail cannot be written/.test(String(o.reason))
      ),
    ).toBe(true);
  });
});

describe('an append with a wiped key', () => {
  it('is refused, and the entries of the others in its batch are written and verify', async () => {
    const h = home();
    const state = openState(h);
    const wiped = new Uint8Array(32).fill(3);
    const good = state.audit.writer({ macKey: KEY });
    const bad = state.audit.writer({ macKey: wiped });
    const entry = {
      event: 'serve.start' as const,
      actor: { type: 'system' as const },
      outcome: 'ok' as const,
      data: {},
    };
    const first = good.append([entry]);
    wiped.fill(0);
    const [a, b, c] = await Promise.allSettled([first, bad.append([entry]), good.append([entry])]);
    expect(a.status).toBe('fulfilled');
    expect(b).toMatchObject({ status: 'rejected', reason: { code: 'audit_key_wiped' } });
    expect(c.status).toBe('fulfilled');
    expect(verifyAuditLog(readAuditLog(h), { macKey: KEY, recordedHead: null })).toMatchObject({
      ok: true,
      entries: 2,
    });
  });
});

describe('readLogFrom: a forward reader that keeps up', () => {
  const event = (i: number) => ({
    event: 'monitor.rebuild' as const,
    actor: { type: 'system' as const },
    outcome: 'ok' as const,
    data: { i },
  });
  const seqs = (lines: string[]) => lines.map((l) => JSON.parse(l).seq as number);

  it('reads only what was appended since the cursor; a torn tail is left for later', async () => {
    const h = home();
    expect(readLogFrom(h, null)).toEqual({ lines: [], cursor: null });
    const w = openState(h).audit.writer({ macKey: KEY });
    for (let i = 0; i < 3; i++) await w.append([event(i)]);
    const first = readLogFrom(h, null)!;
    expect(seqs(first.lines)).toEqual([1, 2, 3]);
    expect(readLogFrom(h, first.cursor)).toEqual({ lines: [], cursor: first.cursor });
    await w.append([event(3), event(4)]);
    const file = path.join(h.dir, 'audit', 'audit.log');
    fs.appendFileSync(file, '{"v":1,"seq":6,"ts":"partial');
    const second = readLogFrom(h, first.cursor)!;
    expect(seqs(second.lines)).toEqual([4, 5]);
    expect(second.cursor!.offset).toBe(
      fs.statSync(file).size - '{"v":1,"seq":6,"ts":"partial'.length,
    );
  });

  it('a log that no longer continues from the cursor (cut or rewritten) gives null', async () => {
    const h = home();
    const w = openState(h).audit.writer({ macKey: KEY });
    for (let i = 0; i < 4; i++) await w.append([event(i)]);
    const file = path.join(h.dir, 'audit', 'audit.log');
    const lines = fs.readFileSync(file, 'utf8').split('\n');
    const atTwo = readLogFrom(h, null)!;
    const cursorAfterTwo = {
      offset: Buffer.byteLength(lines.slice(0, 2).join('\n') + '\n'),
      digest: atTwo.cursor!.digest,
    };
    // The cursor names entry 4's digest at entry 2's offset: entry 3 does not continue from it.
    expect(readLogFrom(h, cursorAfterTwo)).toBeNull();
    fs.truncateSync(file, 10);
    expect(readLogFrom(h, atTwo.cursor)).toBeNull();
  });
});
