/**
 * `audit ship` to HTTP receivers (JSON lines, OTLP/HTTP JSON, Splunk HEC), each a real local TLS
 * listener recording what it got: the cursor advances only past what a receiver accepted (2xx),
 * rejections, timeouts and 429 are retried without loss or duplicates, a SIGKILLed follower
 * resumes where the receiver last accepted, an edited cursor is detected, and no credential value
 * reaches a receiver.
 */
import { Buffer } from 'node:buffer';
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { addCredential, baseEnv, command, newHome } from '../helpers/cli.ts';
import { expectNoCanary, newCanary } from '../helpers/canary.ts';
import { type Recorded, startHttpsListener, TEST_CA } from '../helpers/listeners.ts';
import {
  cursorFile,
  entryId,
  jsonlReceived,
  leafHash,
  logLines,
  shipHome,
} from '../helpers/ship.ts';

interface OtlpRecord {
  body: { stringValue: string };
  attributes: Array<{ key: string; value: Record<string, unknown> }>;
}

const cleanup: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

/** A receiver answering each request with `answer(n)` (n counts from 0); `accepted` holds 2xx bodies. */
async function receiver(answer: (n: number, res: ServerResponse) => number | null = () => 200) {
  const accepted: Recorded[] = [];
  let n = 0;
  const listener = await startHttpsListener((_req, res, recorded) => {
    const status = answer(n++, res);
    if (status === null) return; // never answers
    if (status >= 200 && status < 300) accepted.push(recorded);
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end('{}');
  });
  cleanup.push(() => listener.close());
  return { listener, accepted };
}

function shipArgs(t: { home: string; file(n: string, c: string): string }, url: string) {
  return ['--home', t.home, 'audit', 'ship', '--to', url, '--cacert', t.file('ca.pem', TEST_CA)];
}

async function waitFor(what: string, cond: () => boolean, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function follow(args: string[]): { proc: ChildProcess; stderr: () => string } {
  const { file, argv } = command([...args, '--follow']);
  const proc = spawn(file, argv, { env: baseEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
  const exited = new Promise((r) => proc.on('close', r));
  cleanup.push(async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    await exited;
  });
  return { proc, stderr: () => stderr };
}

function expectExactly(t: { home: string }, accepted: readonly Recorded[], from = 1) {
  const got = jsonlReceived(accepted.map((r) => r.body));
  const lines = logLines(t.home).slice(from - 1);
  expect(got.map((e) => e.seq)).toEqual(lines.map((_, i) => from + i));
  expect(got.map((e) => e.entry)).toEqual(lines);
  expect(got.map((e) => e.leaf_hash)).toEqual(lines.map(leafHash));
  expect(got.map((e) => e.id)).toEqual(lines.map(entryId));
}

describe('audit ship (HTTP receivers)', () => {
  it('ships JSON lines once each, in order, with seq, leaf hash and id; resumes after the cursor', async () => {
    const t = await shipHome();
    const { listener, accepted } = await receiver();
    await t.append(5);
    const args = shipArgs(t, listener.url('/ingest'));
    const first = await t.tp(args.slice(2));
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(first.stdout).toContain('shipped 5 entries, up to #5');
    expectExactly(t, accepted);
    expect(listener.requests[0]!.headers['content-type']).toBe('application/x-ndjson');
    const cursor = cursorFile(t.home);
    expect(statSync(cursor).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(cursor, 'utf8'))).toMatchObject({
      format: 'trust-protocol-ship-cursor',
      v: 1,
      seq: 5,
      digest: entryId(logLines(t.home)[4]!),
    });

    await t.append(3);
    const second = await t.tp([...args.slice(2), '--json']);
    expect(JSON.parse(second.stdout)).toEqual({ count: 3, last: 8 });
    expectExactly(t, accepted);
    const again = await t.tp(args.slice(2));
    expect(again.stdout).toBe('Nothing new to ship.\n');
    expect(listener.requests.length).toBe(2);
  });

  it('a rotation between two runs (audit rotate) loses and repeats nothing', async () => {
    const t = await shipHome();
    const { listener, accepted } = await receiver();
    await t.append(4);
    const args = shipArgs(t, listener.url('/ingest')).slice(2);
    expect((await t.tp(args)).stdout).toContain('up to #4');
    await t.append(3);
    expect((await t.tp(['audit', 'rotate'])).code).toBe(0);
    await t.append(2);
    const second = await t.tp([...args, '--json']);
    expect(second.stderr).toBe('');
    expect(JSON.parse(second.stdout)).toEqual({ count: 5, last: 9 });
    const got = jsonlReceived(accepted.map((r) => r.body));
    expect(got.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect((await t.tp(['audit', 'rotate'])).code).toBe(0);
    expect((await t.tp(args)).stdout).toBe('Nothing new to ship.\n');
  });

  it('a receiver that rejects (400) or times out: exit 7, the cursor stays; later all arrive once', async () => {
    const t = await shipHome();
    let mode: 'reject' | 'hang' | 'ok' = 'reject';
    const { listener, accepted } = await receiver(() =>
      mode === 'reject' ? 400 : mode === 'hang' ? null : 200
    );
    await t.append(4);
    // The short --timeout only where the receiver hangs: a loaded machine's slow round trip must
    // not turn the rejection (or the final delivery) into a timeout.
    const args = shipArgs(t, listener.url('/')).slice(2);
    const rejected = await t.tp(args);
    expect(rejected.code).toBe(7);
    expect(rejected.stderr).toContain('HTTP 400');
    mode = 'hang';
    const hung = await t.tp([...args, '--timeout', '1']);
    expect(hung.code).toBe(7);
    expect(hung.stderr).toMatch(/timed out/);
    expect(listener.requests.length).toBe(2);
    expect(accepted).toEqual([]);
    mode = 'ok';
    await t.append(2);
    expect((await t.tp(args)).code).toBe(0);
    expectExactly(t, accepted);
  });

  it('--follow honours 429 Retry-After and ships everything once after recovery', async () => {
    const t = await shipHome();
    const { listener, accepted } = await receiver((n, res) => {
      if (n > 0) return 200;
      res.setHeader('retry-after', '1');
      return 429;
    });
    await t.append(3);
    const f = follow(shipArgs(t, listener.url('/')));
    await waitFor(
      'the entries accepted',
      () => jsonlReceived(accepted.map((r) => r.body)).length === 3,
    );
    await t.append(2);
    await waitFor('the new entries', () => jsonlReceived(accepted.map((r) => r.body)).length === 5);
    expect(f.stderr()).toContain('HTTP 429');
    expect(f.stderr()).toContain('the receiver accepts entries again');
    expectExactly(t, accepted);
  });

  it('audit ship --follow killed (SIGKILL) mid-delivery and restarted: no loss, no duplicate', async () => {
    const t = await shipHome();
    let hold = false;
    const held: ServerResponse[] = [];
    const { listener, accepted } = await receiver((_n, res) => {
      if (!hold) return 200;
      held.push(res);
      return null;
    });
    const args = shipArgs(t, listener.url('/'));
    await t.append(5);
    const first = follow(args);
    await waitFor('the first batch', () => accepted.length === 1);
    hold = true;
    await t.append(5);
    await waitFor('a delivery in flight', () => held.length === 1);
    first.proc.kill('SIGKILL');
    await new Promise((r) => first.proc.once('close', r));
    hold = false;
    await t.append(5);
    follow(args);
    await waitFor('all entries', () => jsonlReceived(accepted.map((r) => r.body)).length >= 15);
    // The killed delivery was never accepted; what was is not sent again.
    expectExactly(t, accepted);
  });

  it('an edited or garbled cursor is detected: shipping starts again from the first entry', async () => {
    const t = await shipHome();
    const { listener, accepted } = await receiver();
    await t.append(3);
    const args = shipArgs(t, listener.url('/')).slice(2);
    expect((await t.tp(args)).code).toBe(0);
    await t.append(3);
    const cursor = cursorFile(t.home);
    const stored = JSON.parse(readFileSync(cursor, 'utf8'));
    // Moved to the end of the log, as if all had been shipped, but with the old digest.
    const size = statSync(`${t.home}/audit/audit.log`).size;
    writeFileSync(cursor, JSON.stringify({ ...stored, seq: 6, offset: size }));
    const edited = await t.tp(args);
    expect(edited.code).toBe(0);
    expect(edited.stderr).toContain('does not match the audit log');
    const seqs = () => jsonlReceived(accepted.map((r) => r.body)).map((e) => e.seq);
    expect(seqs()).toEqual([1, 2, 3, 1, 2, 3, 4, 5, 6]);

    writeFileSync(cursor, 'not json');
    const garbled = await t.tp(args);
    expect(garbled.stderr).toContain('not a valid cursor');
    expect(seqs().slice(9)).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('OTLP/HTTP JSON logs with a bearer token; Splunk HEC with its token', async () => {
    const t = await shipHome();
    const { listener } = await receiver();
    await t.append(2);
    const token = t.file('token', 'tok-otlp-123\n');
    const otlpUrl = listener.url('/v1/logs').replace('https:', 'otlp+https:');
    expect((await t.tp([...shipArgs(t, otlpUrl).slice(2), '--token-file', token])).code).toBe(0);
    const otlp = listener.requests[0]!;
    expect(otlp.path).toBe('/v1/logs');
    expect(otlp.headers['authorization']).toBe('Bearer tok-otlp-123');
    const doc = JSON.parse(Buffer.from(otlp.body).toString('utf8'));
    const records: OtlpRecord[] = doc.resourceLogs[0].scopeLogs[0].logRecords;
    const lines = logLines(t.home);
    expect(records.map((r) => r.body.stringValue)).toEqual(lines);
    const attrs = Object.fromEntries(
      records[1].attributes.map((a) => [a.key, Object.values(a.value)[0]]),
    );
    expect(attrs).toEqual({
      'trust_protocol.seq': '2',
      'trust_protocol.event': 'request.denied',
      'trust_protocol.leaf_hash': leafHash(lines[1]!),
      'log.record.uid': entryId(lines[1]!),
    });

    const hecUrl = listener.url('/services/collector/event').replace('https:', 'splunk+https:');
    const noToken = await t.tp(shipArgs(t, hecUrl).slice(2));
    expect(noToken.code).toBe(2);
    const hecToken = t.file('hec', 'hec-token-456\n');
    expect((await t.tp([...shipArgs(t, hecUrl).slice(2), '--token-file', hecToken])).code).toBe(0);
    const hec = listener.requests[1]!;
    expect(hec.headers['authorization']).toBe('Splunk hec-token-456');
    const events = Buffer.from(hec.body).toString('utf8').split('\n').map((l) => JSON.parse(l));
    expect(events.map((e) => e.event)).toEqual(lines);
    expect(events[0].fields).toEqual({
      seq: 1,
      event: 'request.denied',
      leaf_hash: leafHash(lines[0]!),
      id: entryId(lines[0]!),
    });
  });

  it('refuses plain text to a remote host and a URL with a password, without printing it', async () => {
    const t = await shipHome();
    const plain = await t.tp(['audit', 'ship', '--to', 'syslog+tcp://siem.example.com:514']);
    expect(plain.code).toBe(2);
    expect(plain.stderr).toContain('not loopback');
    const secret = newCanary();
    const withPassword = await t.tp([
      'audit',
      'ship',
      '--to',
      `https://u:${secret}@siem.example.com/`,
    ]);
    expect(withPassword.code).toBe(2);
    expectNoCanary(withPassword.stderr, secret, 'stderr');
  });

  it('no credential value is ever shipped', async () => {
    const t = await newHome();
    const canary = newCanary();
    expect((await addCredential(t, 'k', canary, ['--allowed-domains', 'api.allowed.test'])).code)
      .toBe(0);
    expect(
      (await t.tp(['credential', 'rotate', 'k', '--password-file', t.passwordFile], {
        input: `${canary}-2`,
      })).code,
    ).toBe(0);
    const { listener, accepted } = await receiver();
    expect((await t.tp(shipArgs(t, listener.url('/')).slice(2))).code).toBe(0);
    expect(accepted.length).toBe(1);
    expectNoCanary(listener.rawBytes(), canary, 'the receiver');
    expectNoCanary(listener.rawBytes(), `${canary}-2`, 'the receiver');
  });
});
