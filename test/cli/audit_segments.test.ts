// deno-lint-ignore-file no-explicit-any -- audit lines are read as raw JSON
/**
 * Closed segments of the audit log (issue #18, docs/formats.md#audit-segments): `audit rotate` and
 * the automatic rotation at a size limit; verify, show, export, prove and checkpoints across
 * segments; compressed and moved segments; a missing or altered segment named by its file; no
 * append lost while the log rotates.
 */
import { Buffer } from 'node:buffer';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { FileAuditLog, rotateAuditLog } from '../../src/audit.ts';
import { gzipSegment, SEGMENT_BYTES_ENV } from '../../src/audit_segments.ts';
import { spawn } from 'node:child_process';
import { baseEnv, command, newHome, type TestHome } from '../helpers/cli.ts';

const pw = (t: TestHome) => ['--password-file', t.passwordFile];
const segDir = (t: TestHome) => path.join(t.home, 'audit', 'segments');
const livePath = (t: TestHome) => path.join(t.home, 'audit', 'audit.log');

async function ok(t: TestHome, args: string[], env?: Record<string, string>): Promise<string> {
  const r = await t.tp(args, env === undefined ? {} : { env });
  expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
  return r.stdout;
}

/** Appends `n` password-less entries through the library's writer (the CLI is slow per entry). */
async function fill(t: TestHome, n: number, tag: string): Promise<void> {
  const log = new FileAuditLog({ dir: t.home });
  const writer = log.writer({ macKey: null });
  for (let i = 0; i < n; i++) {
    await writer.append([{
      event: 'request.denied',
      actor: { type: 'anyone' },
      outcome: 'denied',
      data: { reason: 'no_token', kind: 'denied', tag, i },
    }]);
  }
}

function segments(t: TestHome): any[] {
  return JSON.parse(fs.readFileSync(path.join(segDir(t), 'index.json'), 'utf8')).segments;
}

async function exported(t: TestHome, extra: string[] = []): Promise<any[]> {
  const text = await ok(t, ['audit', 'export', ...extra]);
  return text.trim().split('\n').map((l) => JSON.parse(l));
}

describe('audit segments', () => {
  it(
    'rotate, append, verify; show, export, prove and a checkpoint across segments',
    async () => {
      const t = await newHome();
      await fill(t, 20, 'one');
      const vkey = (await ok(t, ['audit', 'key', ...pw(t)])).trim();
      const c1 = t.file('c1.txt', await ok(t, ['audit', 'checkpoint', ...pw(t)]));
      const before = await exported(t);
      expect(await ok(t, ['audit', 'rotate'])).toMatch(/closed entries 1 to \d+ into/);
      // Right after a rotation the live log is empty: the tail readers find the last entry.
      expect(fs.statSync(livePath(t)).size).toBe(0);
      const status = JSON.parse(await ok(t, ['--json', 'status']));
      expect(status.audit.entries).toBe(before.length);
      const tail = await ok(t, ['audit', 'show', '--tail', '1']);
      expect(tail).toContain(`${before.length} `);
      await fill(t, 5, 'two');
      await ok(t, ['audit', 'rotate']);
      await fill(t, 3, 'three');

      const index = segments(t);
      expect(index).toHaveLength(2);
      expect(index[0].file).toBe(`000001-1-${before.length}.log`);
      expect(index[1].first_seq).toBe(before.length + 1);

      const n = before.length + 8;
      const verify = await ok(t, ['audit', 'verify', ...pw(t)]);
      expect(verify).toContain(`intact: ${n} entries`);
      expect(await ok(t, ['audit', 'verify'])).toContain(`intact: ${n} entries`);
      // export: one log, numbered 1..n, chained across the segment boundaries.
      const all = await exported(t);
      expect(all.map((e) => e.seq)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
      expect(all.slice(0, before.length)).toEqual(before);
      // show with a filter reads every segment; --tail crosses into the last one.
      const shown = (await ok(t, ['--json', 'audit', 'show', '--event', 'request.denied']))
        .trim().split('\n').map((l) => JSON.parse(l));
      expect(shown.map((e) => e.data.tag)).toEqual([
        ...Array(20).fill('one'),
        ...Array(5).fill('two'),
        ...Array(3).fill('three'),
      ]);
      const last5 = (await ok(t, ['--json', 'audit', 'show', '--tail', '5']))
        .trim().split('\n').map((l) => JSON.parse(l));
      expect(last5.map((e) => e.seq)).toEqual([n - 4, n - 3, n - 2, n - 1, n]);
      // A proof of an entry in the first segment, against the old checkpoint and a new one.
      for (const args of [['--checkpoint', c1], pw(t)]) {
        const proof = t.file('proof.json', await ok(t, ['audit', 'prove', '3', ...args]));
        expect(await ok(t, ['audit', 'verify-proof', proof, '--key', vkey])).toMatch(
          /entry 3 is in/,
        );
      }
      // The old checkpoint is extended by today's log, segments and all.
      expect(await ok(t, ['audit', 'verify', '--checkpoint', c1, '--key', vkey])).toMatch(
        /extended by today's log/,
      );
    },
    180_000,
  );

  it(
    'a gzipped or moved segment still verifies; a missing or altered one is named (exit 1)',
    async () => {
      const t = await newHome();
      await fill(t, 10, 'a');
      await ok(t, ['audit', 'rotate']);
      await fill(t, 10, 'b');
      await ok(t, ['audit', 'rotate']);
      await fill(t, 2, 'c');
      const [first, second] = segments(t).map((s) => s.file as string);
      // By hand, as an operator would with gzip(1).
      const p1 = path.join(segDir(t), first!);
      fs.writeFileSync(`${p1}.gz`, gzipSync(fs.readFileSync(p1)), { mode: 0o600 });
      fs.rmSync(p1);
      expect(await ok(t, ['audit', 'verify', ...pw(t)])).toMatch(/intact: \d+ entries/);
      // And by the command.
      expect(await ok(t, ['audit', 'rotate', '--compress'])).toContain(`${second}.gz`);
      expect(fs.existsSync(path.join(segDir(t), second!))).toBe(false);
      expect(await ok(t, ['audit', 'verify', ...pw(t)])).toMatch(/intact: \d+ entries/);
      const vkey = (await ok(t, ['audit', 'key', ...pw(t)])).trim();
      const proof = t.file('p.json', await ok(t, ['audit', 'prove', '4', ...pw(t)]));
      expect(await ok(t, ['audit', 'verify-proof', proof, '--key', vkey])).toMatch(/entry 4 is in/);

      // Moved elsewhere: missing, named; found again with --segments DIR.
      const archive = path.join(t.dir, 'archive');
      fs.mkdirSync(archive);
      fs.renameSync(path.join(segDir(t), `${second}.gz`), path.join(archive, `${second}.gz`));
      const missing = await t.tp(['audit', 'verify', ...pw(t)]);
      expect(missing.code).toBe(1);
      expect(missing.stderr).toContain(`audit segment ${second}`);
      expect(missing.stderr).toMatch(/missing/);
      expect(await ok(t, ['audit', 'verify', '--segments', archive, ...pw(t)])).toMatch(/intact/);
      expect((await exported(t, ['--segments', archive])).length).toBeGreaterThan(20);

      // Altered: one byte of the first segment's content.
      const gz = `${p1}.gz`;
      const plain = Buffer.from(
        (await import('node:zlib')).gunzipSync(fs.readFileSync(gz)).toString('utf8')
          .replace('"tag":"a"', '"tag":"A"'),
      );
      fs.writeFileSync(gz, gzipSync(plain));
      const altered = await t.tp(['audit', 'verify', '--segments', archive, ...pw(t)]);
      expect(altered.code).toBe(1);
      expect(altered.stderr).toContain(`audit segment ${first}.gz was altered`);
      // Deleted outright.
      fs.rmSync(gz);
      const deleted = await t.tp(['audit', 'verify', '--segments', archive]);
      expect(deleted.code).toBe(1);
      expect(deleted.stderr).toContain(`audit segment ${first} (entries 1 to `);
      expect(deleted.stderr).toMatch(/is missing/);
    },
    180_000,
  );

  it(
    'rotate --compress writes gzip members that say their sizes; a proof inflates one, holds in any, and an altered member is named',
    async () => {
      const t = await newHome();
      // About 2.5 MiB of entries: a segment of three 1 MiB gzip members.
      const writer = new FileAuditLog({ dir: t.home }).writer({ macKey: null });
      for (let b = 0; b < 20; b++) {
        await writer.append(Array.from({ length: 50 }, (_, i) => ({
          event: 'request.denied' as const,
          actor: { type: 'anyone' as const },
          outcome: 'denied' as const,
          data: { reason: 'no_token', kind: 'denied', tag: 'x'.repeat(2400), i: b * 50 + i },
        })));
      }
      expect(await ok(t, ['audit', 'rotate', '--compress'])).toMatch(/\.gz/);
      const seg = segments(t)[0];
      const gzFile = path.join(segDir(t), `${seg.file}.gz`);
      const gz = fs.readFileSync(gzFile);
      expect(gunzipSync(gz).length).toBe(seg.bytes);
      // Each member: gzip with FEXTRA, subfield "TP" version 1, its own size and what it holds.
      const members: Array<{ size: number; bytes: number }> = [];
      for (let at = 0; at < gz.length;) {
        expect([gz[at], gz[at + 1], gz[at + 3], gz[at + 12], gz[at + 13], gz[at + 16]])
          .toEqual([0x1f, 0x8b, 4, 0x54, 0x50, 1]);
        members.push({ size: gz.readUInt32LE(at + 17), bytes: gz.readUInt32LE(at + 21) });
        at += members[members.length - 1]!.size;
      }
      expect(members.length).toBe(3);
      expect(members.reduce((n, m) => n + m.bytes, 0)).toBe(seg.bytes);

      const vkey = (await ok(t, ['audit', 'key', ...pw(t)])).trim();
      const ckpt = t.file('c.ckpt', await ok(t, ['audit', 'checkpoint', ...pw(t)]));
      // Entries in the first, a middle (across a member boundary) and the last member.
      for (const seq of [2, 400, 990]) {
        const proof = t.file(
          `p${seq}.json`,
          await ok(t, ['audit', 'prove', String(seq), '--checkpoint', ckpt]),
        );
        expect(await ok(t, ['audit', 'verify-proof', proof, '--key', vkey]))
          .toMatch(new RegExp(`entry ${seq} is in`));
      }
      // The same layout around altered content: the members still add up, the proof does not.
      const content = gunzipSync(gz).toString('utf8');
      const i = content.indexOf('"i":400}');
      fs.writeFileSync(
        gzFile,
        gzipSegment(Buffer.from(content.slice(0, i) + '"i":401}' + content.slice(i + 8))),
      );
      const altered = await t.tp(['audit', 'prove', '400', '--checkpoint', ckpt]);
      expect(altered.code).toBe(1);
      expect(altered.stderr).toContain(`audit segment ${seg.file}.gz was altered`);
    },
    180_000,
  );

  it(
    `rotates by itself at the size limit (${SEGMENT_BYTES_ENV}); concurrent appends and rotations lose nothing`,
    async () => {
      const t = await newHome();
      await fill(t, 20, 'pre');
      const env = { [SEGMENT_BYTES_ENV]: '4096' };
      // The live log is over 4 KiB: the next append, by a CLI process with the limit, closes it.
      expect(fs.statSync(livePath(t)).size).toBeGreaterThan(4096);
      await ok(t, ['emergency', 'activate', '--reason', 'limit'], env);
      expect(segments(t)).toHaveLength(1);
      expect(fs.statSync(livePath(t)).size).toBe(0);
      const count = segments(t)[0].last_seq;

      // Appenders (each entry may cross the limit) and explicit rotations, all at once.
      const runs = [
        ...Array.from(
          { length: 6 },
          (_, i) => t.tp(['emergency', 'activate', '--reason', `c${i}`], { env }),
        ),
        ...Array.from({ length: 3 }, () => t.tp(['audit', 'rotate'], { env })),
      ];
      // And appends from this process, under the same small limit.
      process.env[SEGMENT_BYTES_ENV] = '4096';
      try {
        await fill(t, 20, 'during');
      } finally {
        delete process.env[SEGMENT_BYTES_ENV];
      }
      for (const r of await Promise.all(runs)) expect(r.code, r.stderr).toBe(0);
      const all = await exported(t);
      expect(all.map((e) => e.seq)).toEqual(Array.from({ length: all.length }, (_, i) => i + 1));
      expect(all.length).toBe(count + 6 + 20);
      const reasons = all.filter((e) => e.event === 'brake.activate').map((e) => e.data.reason);
      expect(reasons.sort()).toEqual(['c0', 'c1', 'c2', 'c3', 'c4', 'c5', 'limit']);
      expect(all.filter((e) => e.data.tag === 'during')).toHaveLength(20);
      expect(segments(t).length).toBeGreaterThan(2);
      expect(await ok(t, ['audit', 'verify', ...pw(t)])).toMatch(/intact/);
    },
    180_000,
  );

  it('audit show --follow goes on across a rotation, missing nothing', async () => {
    const t = await newHome();
    await fill(t, 3, 'before');
    const { file, argv } = command(['--home', t.home, '--json', 'audit', 'show', '--follow']);
    const proc = spawn(file, argv, { env: baseEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout.on('data', (d: Buffer) => (out += d.toString('utf8')));
    const exited = new Promise((r) => proc.on('close', r));
    const seen = (tag: string, n: number) => out.split(tag).length - 1 >= n;
    const waitFor = async (cond: () => boolean) => {
      for (let i = 0; i < 600 && !cond(); i++) await new Promise((r) => setTimeout(r, 50));
      expect(cond(), out).toBe(true);
    };
    try {
      await waitFor(() => seen('"before"', 3));
      // Appended and closed into a segment between two reads of the follower (every 200 ms).
      await fill(t, 2, 'gone');
      await rotateAuditLog({ dir: t.home });
      await fill(t, 2, 'after');
      await waitFor(() => seen('"after"', 2));
      expect(out.split('"gone"').length - 1).toBe(2);
    } finally {
      proc.kill('SIGKILL');
      await exited;
    }
  }, 60_000);
});
