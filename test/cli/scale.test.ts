/**
 * Issue 16: read commands stay flat on a large log. A 200,000-entry log (about 90 MB) written
 * by bench/gen_log.ts in the real format; the tail readers give the right answers, and commands
 * that used to hold the whole log in memory run under a V8 heap smaller than the log. No timings.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateLog } from '../../bench/gen_log.ts';
import { spawn } from 'node:child_process';
import { baseEnv, command, newHome, PASSWORD, type TestHome } from '../helpers/cli.ts';

const ENTRIES = 200_000;
/** Well below the log's size: reading it whole into a string or an array cannot fit. */
const HEAP_MIB = 48;
/**
 * Each reader in that heap, with time for a whole-log read on a loaded machine: run() kills a
 * command after 30 s by default, and `audit verify` takes about 5 s of it on Deno when idle.
 */
const LARGE = { heapMiB: HEAP_MIB, timeoutMs: 150_000 };

describe('a 200,000-entry audit log', () => {
  let t: TestHome;
  let head: { seq: number; hash: string };
  let log: string;

  beforeAll(async () => {
    t = await newHome();
    head = await generateLog(t.home, PASSWORD, ENTRIES);
    log = path.join(t.home, 'audit', 'audit.log');
    expect(fs.statSync(log).size).toBeGreaterThan(HEAP_MIB * 1024 * 1024);
  }, 120_000);

  afterAll(() => fs.rmSync(t.dir, { recursive: true, force: true }));

  it('status, audit show --tail 5 and emergency status read the tail right', async () => {
    const status = await t.tp(['--json', 'status'], LARGE);
    expect(status.code, status.stderr).toBe(0);
    const audit = JSON.parse(status.stdout).audit;
    expect(audit).toEqual({ entries: head.seq, bytes: fs.statSync(log).size, recorded_head: head });

    const tail = await t.tp(['--json', 'audit', 'show', '--tail', '5'], LARGE);
    expect(tail.code, tail.stderr).toBe(0);
    const shown = tail.stdout.trim().split('\n').map((l) => JSON.parse(l));
    const last = fs.readFileSync(log, 'utf8').trimEnd().split('\n').slice(-5).map((l) =>
      JSON.parse(l)
    );
    expect(shown).toEqual(last);
    expect(shown.map((e) => e.seq)).toEqual([4, 3, 2, 1, 0].map((d) => head.seq - d));

    const none = await t.tp(['emergency', 'status'], LARGE);
    expect(none.code, none.stderr).toBe(0);
    expect(none.stdout).toContain('No emergency brakes are active.');
    const brake = await t.tp(['emergency', 'activate', '--reason', 'scale test']);
    expect(brake.code, brake.stderr).toBe(0);
    const active = await t.tp(['--json', 'emergency', 'status'], LARGE);
    expect(active.code, active.stderr).toBe(0);
    expect(JSON.parse(active.stdout).global).toMatchObject({ reason: 'scale test' });
    const after = await t.tp(['--json', 'status'], LARGE);
    expect(JSON.parse(after.stdout).audit.entries).toBe(head.seq + 1);
    expect(JSON.parse(after.stdout).brakes).toMatchObject([{ scope: 'global' }]);
  }, 120_000);

  it('whole-log readers run in a heap smaller than the log', async () => {
    const verify = await t.tp(
      ['--json', 'audit', 'verify', '--password-file', t.passwordFile],
      LARGE,
    );
    expect(verify.code, verify.stderr).toBe(0);
    expect(JSON.parse(verify.stdout)).toMatchObject({ ok: true, hmac_checked: true });
    expect(JSON.parse(verify.stdout).entries).toBeGreaterThan(ENTRIES);

    const report = await t.tp(['--json', 'monitor', 'report'], LARGE);
    expect(report.code, report.stderr).toBe(0);
    expect(JSON.parse(report.stdout).agents).toEqual([]);

    const denied = await t.tp(['audit', 'show', '--event', 'request.denied'], LARGE);
    expect(denied.code, denied.stderr).toBe(0);
    // One denial every 997 entries of the generator's traffic, listed under one header.
    expect(denied.stdout.split('\n').filter((l) => l.includes('request.denied')).length)
      .toBe(Math.floor((ENTRIES - 1) / 997) + 1);
    expect(denied.stdout.match(/^SEQ +TIME/gm)).toHaveLength(1);

    const exported = await t.tp(['audit', 'export'], LARGE);
    expect(exported.code, exported.stderr).toBe(0);
    expect(exported.stdoutBytes.length).toBe(fs.statSync(log).size);
  }, 300_000);

  it('audit show --follow starts at the end and reads only what is appended', async () => {
    const { file, argv } = command(
      ['--home', t.home, '--json', 'audit', 'show', '--follow', '--event', 'brake'],
      LARGE,
    );
    const child = spawn(file, argv, { env: baseEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const lines = () => out.trim().split('\n').filter((l) => l !== '').map((l) => JSON.parse(l));
    const until = async (ok: () => boolean) => {
      while (!ok()) {
        if (child.exitCode !== null) throw new Error(`follow exited: ${err}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    try {
      // The brakes so far (the earlier test pulled one), at most 10: nothing else of 200,000.
      await until(() => out.includes('\n'));
      const before = lines();
      expect(before.length).toBeGreaterThan(0);
      expect(before.every((e) => e.event.startsWith('brake.'))).toBe(true);
      const pulled = await t.tp(['emergency', 'activate', '--reason', 'followed']);
      expect(pulled.code, pulled.stderr).toBe(0);
      await until(() => lines().some((e) => e.data?.reason === 'followed'));
      expect(lines().at(-1)).toMatchObject({ event: 'brake.activate', seq: expect.any(Number) });
    } finally {
      child.kill();
    }
  }, 120_000);

  it('a forged entry at the tail is still caught', async () => {
    const text = fs.readFileSync(log, 'utf8');
    const lines = text.trimEnd().split('\n');
    const n = lines.length;
    // The last MACed response (a brake placed after it has no MAC).
    const i = lines.findLastIndex((l) => l.includes('"bytes":') && l.includes('"mac":"'));
    expect(i).toBeGreaterThan(n - 4); // after it: the brakes the tests above pulled
    try {
      // Its details changed, its MAC kept: `audit verify` names it.
      const edited = [...lines];
      edited[i] = lines[i]!.replace(/"bytes":\d+/, '"bytes":1');
      expect(edited[i]).not.toBe(lines[i]);
      fs.writeFileSync(log, edited.join('\n') + '\n');
      const verify = await t.tp(
        ['--json', 'audit', 'verify', '--password-file', t.passwordFile],
        LARGE,
      );
      expect(verify.code).toBe(1);
      expect(JSON.parse(verify.stdout).problems[0]).toMatchObject({ seq: i + 1, kind: 'modified' });
      // A vault change appended by hand with a made-up MAC: password commands refuse (exit 8).
      const forged = lines[i]!.replace(/"seq":\d+/, `"seq":${n + 1}`)
        .replace(/"event":"[^"]+"/, '"event":"vault.resync"')
        .replace(/"mac":"[0-9a-f]{64}"/, `"mac":"${'ab'.repeat(32)}"`);
      fs.writeFileSync(log, text + forged + '\n');
      const resync = await t.tp(['audit', 'resync', '--password-file', t.passwordFile], LARGE);
      expect(resync.code, resync.stderr).toBe(8);
      expect(resync.stderr).toMatch(new RegExp(`audit entry ${n + 1} does not carry a valid MAC`));
    } finally {
      fs.writeFileSync(log, text);
    }
  }, 300_000);
});
