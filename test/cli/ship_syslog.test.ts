/**
 * `audit ship` to syslog: over TCP and over TLS (gtls, from Debian's rsyslog-gnutls) to a real
 * rsyslogd started by the test (imtcp on a loopback port it picks, messages written to a file),
 * and over TLS to a node:tls listener for a receiver that is down and then comes up.
 */
import { Buffer } from 'node:buffer';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:tls';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startRawListener, TEST_CA } from '../helpers/listeners.ts';
import { entryId, leafHash, logLines, shipHome } from '../helpers/ship.ts';

const cleanup: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function waitFor(what: string, cond: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** rsyslogd in the foreground with its own config; SD and MSG of each message, one per line. */
async function startRsyslog(
  dir: string,
  options: { tls?: boolean } = {},
): Promise<{ port: number; out: string }> {
  const out = path.join(dir, 'syslog.out');
  const portFile = path.join(dir, 'rsyslog.port');
  const conf = path.join(dir, 'rsyslog.conf');
  const fixture = (name: string) => new URL(`../../fixtures/tls/${name}`, import.meta.url).pathname;
  const tls = options.tls === true
    ? ` DefaultNetstreamDriver="gtls" DefaultNetstreamDriverCAFile="${fixture('ca.pem')}"
  DefaultNetstreamDriverCertFile="${fixture('server.pem')}"
  DefaultNetstreamDriverKeyFile="${fixture('server.key')}"`
    : '';
  const driver = options.tls === true
    ? ' StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon"'
    : '';
  writeFileSync(
    conf,
    `global(workDirectory="${dir}" maxMessageSize="256k"${tls})
module(load="imtcp"${driver})
input(type="imtcp" port="0" address="127.0.0.1" listenPortFileName="${portFile}")
template(name="raw" type="string" string="%structured-data% %msg%\\n")
*.* action(type="omfile" file="${out}" template="raw")
`,
  );
  const proc: ChildProcess = spawn(
    'rsyslogd',
    ['-n', '-f', conf, '-i', path.join(dir, 'rsyslog.pid')],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
  const exited = new Promise((r) => proc.on('close', r));
  cleanup.push(async () => {
    if (proc.exitCode === null) proc.kill('SIGTERM');
    await exited;
  });
  await waitFor(
    `rsyslogd to listen (${stderr})`,
    () => existsSync(portFile) && readFileSync(portFile, 'utf8').trim() !== '',
  );
  return { port: Number(readFileSync(portFile, 'utf8').trim()), out };
}

const SD = /^\[trust-protocol@32473 seq="(\d+)" leaf_hash="([0-9a-f]{64})" id="([0-9a-f]{64})"\] /;

function expectShipped(home: string, received: readonly string[]) {
  const lines = logLines(home);
  expect(received.length).toBe(lines.length);
  received.forEach((r, i) => {
    const m = SD.exec(r);
    expect(m).not.toBeNull();
    expect(Number(m![1])).toBe(i + 1);
    expect(m![2]).toBe(leafHash(lines[i]!));
    expect(m![3]).toBe(entryId(lines[i]!));
    expect(r.slice(m![0].length)).toBe(lines[i]);
  });
}

/** RFC 6587 octet-counted frames: `LEN SP MSG`. */
function frames(bytes: Uint8Array): string[] {
  const b = Buffer.from(bytes);
  const out: string[] = [];
  for (let at = 0; at < b.length;) {
    const sp = b.indexOf(0x20, at);
    const len = Number(b.toString('ascii', at, sp));
    out.push(b.toString('utf8', sp + 1, sp + 1 + len));
    at = sp + 1 + len;
  }
  return out;
}

describe('audit ship (syslog)', () => {
  it('syslog+tcp to rsyslogd: RFC 5424 messages, once each, in order, with seq and leaf hash', async () => {
    const t = await shipHome();
    const { port, out } = await startRsyslog(t.dir);
    await t.append(5);
    const args = ['audit', 'ship', '--to', `syslog+tcp://127.0.0.1:${port}`];
    const first = await t.tp(args);
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    await t.append(3);
    expect((await t.tp(args)).code).toBe(0);
    expect((await t.tp(args)).stdout).toBe('Nothing new to ship.\n');
    const received = () =>
      existsSync(out) ? readFileSync(out, 'utf8').split('\n').filter((l) => l !== '') : [];
    await waitFor('8 messages', () => received().length >= 8);
    expectShipped(t.home, received());
  });

  it('syslog+tls to rsyslogd (gtls): the receiver certificate checked against --cacert, once each, in order', async () => {
    const t = await shipHome();
    const { port, out } = await startRsyslog(t.dir, { tls: true });
    await t.append(4);
    const ca = t.file('ca.pem', TEST_CA);
    const args = ['audit', 'ship', '--to', `syslog+tls://localhost:${port}`];
    // Without the CA the receiver's certificate is not trusted: nothing is shipped.
    const untrusted = await t.tp(args);
    expect(untrusted.code).not.toBe(0);
    const shipped = await t.tp([...args, '--cacert', ca]);
    expect(shipped.stderr).toBe('');
    expect(shipped.code).toBe(0);
    const received = () =>
      existsSync(out) ? readFileSync(out, 'utf8').split('\n').filter((l) => l !== '') : [];
    await waitFor('the messages', () => received().length >= logLines(t.home).length);
    expectShipped(t.home, received());
  });

  it('syslog+tls (node:tls receiver): a receiver that is down keeps the cursor; later all arrive once', async () => {
    const t = await shipHome();
    await t.append(4);
    const receiver = await startRawListener(() => {}, { tls: true });
    const port = receiver.port;
    await receiver.close();
    const ca = t.file('ca.pem', TEST_CA);
    const args = ['audit', 'ship', '--to', `syslog+tls://localhost:${port}`, '--cacert', ca];
    const down = await t.tp(args);
    expect(down.code).toBe(7);
    expect(existsSync(path.join(t.home, 'ship'))).toBe(false);
    // The same port again (it was just freed), now listening.
    const got: Buffer[] = [];
    const server = createServer({
      key: readFileSync(new URL('../../fixtures/tls/server.key', import.meta.url)),
      cert: readFileSync(new URL('../../fixtures/tls/server.pem', import.meta.url)),
    }, (s) => s.on('data', (d: Buffer) => got.push(d)));
    await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
    cleanup.push(() => new Promise((r) => server.close(r)));
    expect((await t.tp(args)).code).toBe(0);
    await t.append(2);
    expect((await t.tp(args)).code).toBe(0);
    const messages = frames(Buffer.concat(got));
    expect(messages.every((m) => m.startsWith('<110>1 '))).toBe(true);
    // HEADER: PRI VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID, then SD and MSG.
    expect(messages[0]!.split(' ')[5]).toBe('request.denied');
    expectShipped(t.home, messages.map((m) => m.split(' ').slice(6).join(' ')));
  });
});
