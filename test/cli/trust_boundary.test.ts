/**
 * The trust boundary of the audit trail, against the real CLI: an agent that can edit every file
 * in the home but has no password. What it writes (`"mac": null` entries, any edit of a line) may
 * only narrow access; an entry whose MAC is present but wrong is an integrity failure (exit 8 for
 * exec, 503 for serve), never an entry to skip. Issue #14.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AuditEvent, formatEntry, lineDigest } from '../../src/audit.ts';
import { openHome } from '../../src/home.ts';
import { openState } from '../../src/state.ts';
import { unseal, wipeKeys } from '../../src/vault.ts';
import { addCredential, newAgent, PASSWORD, sharedHome, type TestHome } from '../helpers/cli.ts';
import { seedHistory, workingHours } from '../helpers/history.ts';
import { type Listener, startHttpsListener, TEST_CA } from '../helpers/listeners.ts';
import { http, json, servedCredential } from '../helpers/serve.ts';

const CANARY = 'sk-boundary-canary-5b1e9c70d2';
const AUTH = { Authorization: 'Bearer {{CREDENTIAL}}' };
const DAY = 24 * 3600_000;

let upstream: Listener;
beforeAll(async () => {
  upstream = await startHttpsListener();
});
afterAll(async () => {
  await upstream.close();
});

const logFile = (t: TestHome) => path.join(t.home, 'audit', 'audit.log');
const vaultFile = (t: TestHome) => path.join(t.home, 'vault.json');

function lines(t: TestHome): string[] {
  return fs.readFileSync(logFile(t), 'utf8').trimEnd().split('\n');
}

/** Replaces a state file's content, keeping it private (Deno's writeFileSync ignores the umask). */
function rewrite(file: string, content: string | Uint8Array): void {
  fs.writeFileSync(file, content, { mode: 0o600 });
  fs.chmodSync(file, 0o600);
}

/** What the agent can do: append entries without a MAC, chained to the log's last line. */
function forge(t: TestHome, events: ReadonlyArray<AuditEvent & { ts?: string }>): void {
  const all = lines(t);
  let seq = JSON.parse(all.at(-1)!).seq as number;
  let prev = lineDigest(all.at(-1)!)!;
  let out = '';
  for (const e of events) {
    seq += 1;
    const { line, digest } = formatEntry(
      { ...e, seq, ts: e.ts ?? new Date().toISOString(), prev },
      null,
    );
    out += line + '\n';
    prev = digest;
  }
  fs.appendFileSync(logFile(t), out, { mode: 0o600 }); // Deno applies the default 0666 otherwise
}

/**
 * Flips the last hex digit of the MAC of every MACed line `which` selects, or strips the MAC
 * (`"mac": null`, as if written without the password).
 */
function breakMacs(
  t: TestHome,
  which: (entry: { seq: number; event: string }) => boolean,
  how: 'flip' | 'strip' = 'flip',
): number {
  let broken = 0;
  const out = lines(t).map((line) => {
    if (line.endsWith(',"mac":null}') || !which(JSON.parse(line))) return line;
    broken += 1;
    if (how === 'strip') return line.slice(0, line.lastIndexOf(',"mac":')) + ',"mac":null}';
    const at = line.length - 3;
    return line.slice(0, at) + (line[at] === '0' ? '1' : '0') + line.slice(at + 1);
  });
  rewrite(logFile(t), out.join('\n') + '\n');
  return broken;
}

/** Deletes whole entries (each intact, MAC and all) from the log; returns how many. */
function deleteEntries(
  t: TestHome,
  which: (entry: { seq: number; event: string }) => boolean,
): number {
  const all = lines(t);
  const kept = all.filter((line) => !which(JSON.parse(line)));
  rewrite(logFile(t), kept.join('\n') + '\n');
  return all.length - kept.length;
}

/** A password holder's entry with an earlier time, written as the monitor would have. */
async function recordAsSystem(t: TestHome, event: AuditEvent, at: Date): Promise<void> {
  const home = openHome(t.home, { create: false });
  const st = openState(home);
  const keys = unseal(st.vault.read(), new TextEncoder().encode(PASSWORD));
  try {
    const head = await st.audit.writer({ macKey: keys.audit, clock: () => at }).append([
      event,
    ]);
    await st.vault.recordHead(keys, head);
  } finally {
    wipeKeys(keys);
  }
}

/** A credential (added with `flags`) and an agent, set up once per `flags` and copied per test. */
const homes = new Map<string, ReturnType<typeof sharedHome<{ id: string; token: string }>>>();

async function setup(flags: readonly string[] = []) {
  const key = flags.join(' ');
  if (!homes.has(key)) {
    homes.set(
      key,
      sharedHome(async (t) => {
        const added = await addCredential(t, 'k', CANARY, [
          '--allowed-domains',
          'api.allowed.test',
          ...flags,
        ]);
        expect(added.code, added.stderr).toBe(0);
        return await newAgent(t, { tier: 'COMPANION', grants: ['k'] });
      }),
    );
  }
  const { t, value: agent } = await homes.get(key)!();
  const ca = t.file('ca.pem', TEST_CA);
  const exec = (url = 'https://api.allowed.test/boundary') =>
    t.tp([
      'exec',
      '--template',
      t.file(
        `t-${Math.random().toString(16).slice(2)}.json`,
        JSON.stringify({ credential: 'k', url, headers: AUTH }),
      ),
      '--cacert',
      ca,
      '--connect-to',
      `api.allowed.test:443:127.0.0.1:${upstream.port}`,
      '--password-file',
      t.passwordFile,
    ], { env: { TRUST_PROTOCOL_TOKEN: agent.token } });
  const renew = () =>
    t.tp(['--json', 'agent', 'renew', '--password-file', t.passwordFile], {
      env: { TRUST_PROTOCOL_TOKEN: agent.token },
    });
  const sent = () => upstream.requests.filter((r) => r.path === '/boundary').length;
  return { t, agent, exec, renew, sent };
}

/** With the password, a forged line is an integrity problem: verify exits 1, renewal exits 8. */
async function expectRefusedAsForged(t: TestHome, renew: () => ReturnType<TestHome['tp']>) {
  const forgedSeq = JSON.parse(lines(t).at(-1)!).seq as number;
  const verify = await t.tp(['--json', 'audit', 'verify', '--password-file', t.passwordFile]);
  expect(verify.code).toBe(1);
  expect(JSON.parse(verify.stdout).problems).toContainEqual(
    expect.objectContaining({ seq: forgedSeq, kind: 'inserted' }),
  );
  const after = await renew();
  expect(after.code, after.stderr).toBe(8);
  expect(after.stdout).not.toMatch(/tpat_/);
}

describe('password-less entries never count as good behaviour', () => {
  it('a forged `agent.token` does not clear a refuse_renewal anomaly', async () => {
    const { t, agent, renew } = await setup();
    // An anomaly recorded eight days ago: too old to lower the score, still blocking renewal.
    const at = new Date(Date.now() - 8 * DAY);
    await recordAsSystem(t, {
      event: 'monitor.anomaly',
      actor: { type: 'system' },
      outcome: 'ok',
      data: {
        agent: agent.id,
        kind: 'denial_burst',
        severity: 'high',
        at: at.toISOString(),
        evidence: {},
        actions: ['record', 'refuse_renewal'],
      },
    }, at);
    const before = await renew();
    expect(before.code, before.stderr).toBe(4);
    expect(before.stderr).toMatch(/denial_burst anomaly/);

    forge(t, [{
      event: 'agent.token',
      actor: { type: 'operator' },
      outcome: 'ok',
      data: { agent: agent.id, expires_at: new Date(Date.now() + DAY).toISOString() },
    }]);
    // Chained, but a null MAC on an event only a password holder writes: forged.
    await expectRefusedAsForged(t, renew);
  }, 60_000);

  it(
    'forged `request.allowed` entries do not raise the score; real password-less denials lower it',
    async () => {
      const { t, agent, exec, renew } = await setup();
      expect((await exec()).code).toBe(0);
      for (const host of ['evil.test', 'other.evil.test']) {
        expect((await exec(`https://${host}/x`)).code).toBe(4);
      }
      const low = await renew();
      expect(low.code).toBe(4);
      expect(low.stderr).toMatch(/scores \d+; COMPANION renewal needs 75/);

      const actor = { type: 'agent' as const, id: agent.id };
      const data = { credentials: ['k'], method: 'GET', host: 'api.allowed.test', path: '/x' };
      const good: AuditEvent[] = [];
      for (let i = 0; i < 100; i++) {
        good.push({ event: 'request.allowed', actor, outcome: 'allowed', data });
        good.push({
          event: 'request.completed',
          actor,
          outcome: 'ok',
          data: { ...data, status: 200, bytes: 10 },
        });
      }
      forge(t, good);
      await expectRefusedAsForged(t, renew);
    },
    60_000,
  );
});

describe('password-less entries never hide an anomaly from the live monitor', () => {
  it('a forged denial in the learning day does not make a new host old news', async () => {
    const { t, agent } = await setup();
    const added = await addCredential(t, 'k2', CANARY + '2', [
      '--allowed-domains',
      'files.allowed.test',
    ]);
    expect(added.code, added.stderr).toBe(0);
    const granted = await t.tp([
      'agent',
      'grant',
      agent.id,
      'k2',
      '--password-file',
      t.passwordFile,
    ]);
    expect(granted.code, granted.stderr).toBe(0);
    const history = workingHours(new Date());
    await seedHistory(t, agent.id, history);
    // A denial the agent "had" during its first day, for the host and credential it will use.
    forge(t, [{
      event: 'request.denied',
      actor: { type: 'agent', id: agent.id },
      outcome: 'denied',
      data: {
        reason: 'forged',
        kind: 'denied',
        credentials: ['k2'],
        method: 'GET',
        host: 'files.allowed.test',
        path: '/x',
      },
      ts: new Date(history[0]!.at.getTime() + 3600_000).toISOString(),
    }]);
    const r = await t.tp([
      'exec',
      '--template',
      t.file(
        'k2.json',
        JSON.stringify({ credential: 'k2', url: 'https://files.allowed.test/x', headers: AUTH }),
      ),
      '--cacert',
      t.file('ca2.pem', TEST_CA),
      '--connect-to',
      `files.allowed.test:443:127.0.0.1:${upstream.port}`,
      '--password-file',
      t.passwordFile,
    ], { env: { TRUST_PROTOCOL_TOKEN: agent.token } });
    expect(r.code, r.stderr).toBe(0);
    const kinds = lines(t).map((l) => JSON.parse(l)).filter((e) =>
      e.event === 'monitor.anomaly' && e.data.agent === agent.id
    ).map((e) => e.data.kind);
    expect(kinds).toContain('new_host');
    expect(kinds).toContain('new_credential');
  }, 60_000);
});

describe('a MAC present but wrong is an integrity failure, never skipped', () => {
  it.each(['flip', 'strip'] as const)(
    'breaking (%s) the MACs of earlier requests does not reset a rate limit (exit 8, the upstream got 2)',
    async (how) => {
      const { t, exec, sent } = await setup(['--rate', '2/h']);
      const before = sent();
      expect((await exec()).code).toBe(0);
      expect((await exec()).code).toBe(0);
      expect(breakMacs(t, (e) => e.event === 'request.allowed', how)).toBe(2);
      for (let i = 0; i < 2; i++) {
        const r = await exec();
        expect(r.code, r.stderr).toBe(8);
        expect(r.stderr).toMatch(/MAC/);
        expect(r.stderr).not.toContain(CANARY);
      }
      expect(sent() - before).toBe(2);
    },
    60_000,
  );

  it(
    'deleting the entries of earlier requests, each intact, does not reset a rate limit (exit 8, the upstream got 2)',
    async () => {
      const { t, exec, sent } = await setup(['--rate', '2/h']);
      const before = sent();
      expect((await exec()).code).toBe(0);
      expect((await exec()).code).toBe(0);
      // A later change moves the vault's head past them, so the log's tail still matches it.
      const later = await t.tp(['agent', 'list', '--password-file', t.passwordFile]);
      expect(later.code).toBe(0);
      expect(
        (await t.tp([
          'monitor',
          'actions',
          'new_host',
          'record',
          '--password-file',
          t.passwordFile,
        ]))
          .code,
      ).toBe(0);
      expect(deleteEntries(t, (e) => e.event.startsWith('request.'))).toBe(4);
      const r = await exec();
      expect(r.code, r.stderr).toBe(8);
      expect(r.stderr).not.toContain(CANARY);
      expect(sent() - before).toBe(2);
    },
    60_000,
  );

  it(
    'a vault.json restored from before `agent revoke`, the revocation deleted from the log: exit 8, nothing sent',
    async () => {
      const { t, agent, exec, sent } = await setup();
      const old = fs.readFileSync(vaultFile(t));
      expect((await t.tp(['agent', 'revoke', agent.id, '--password-file', t.passwordFile])).code)
        .toBe(0);
      // A later keyed entry that is no vault change (the refusal) keeps the tail past the old head.
      expect((await exec()).code).toBe(4);
      rewrite(vaultFile(t), old);
      expect(deleteEntries(t, (e) => e.event === 'agent.revoke' || e.event === 'vault.saved'))
        .toBeGreaterThan(0);
      const before = sent();
      const r = await exec();
      expect(r.code, r.stderr).toBe(8);
      expect(sent()).toBe(before);
    },
    60_000,
  );

  it(
    'a vault.json restored from before `agent revoke`, with the later MACs broken: exit 8, nothing sent',
    async () => {
      const { t, agent, exec, sent } = await setup();
      const old = fs.readFileSync(vaultFile(t));
      const head = JSON.parse(old.toString('utf8')).body.audit_head.seq as number;
      expect((await t.tp(['agent', 'revoke', agent.id, '--password-file', t.passwordFile])).code)
        .toBe(0);
      rewrite(vaultFile(t), old);
      expect(breakMacs(t, (e) => e.seq > head)).toBeGreaterThan(0);
      const before = sent();
      const r = await exec();
      expect(r.code, r.stderr).toBe(8);
      expect(sent()).toBe(before);
    },
    60_000,
  );

  it(
    "a brake in the vault's known list is not lifted by a restored vault and broken MACs",
    async () => {
      const { t, agent, exec, sent } = await setup();
      const old = fs.readFileSync(vaultFile(t));
      const head = JSON.parse(old.toString('utf8')).body.audit_head.seq as number;
      const on = await t.tp([
        'emergency',
        'activate',
        '--scope',
        'agent',
        '--agent-id',
        agent.id,
        '--reason',
        'incident',
      ]);
      expect(on.code, on.stderr).toBe(0);
      // A password holder runs and copies the brake into the vault's list.
      await newAgent(t, { name: 'other' });
      expect(JSON.parse(fs.readFileSync(vaultFile(t), 'utf8')).body.known_brakes).toHaveLength(1);
      // The agent deletes the brake's files, renames its password-less audit entry, restores the
      // vault from before the brake, and breaks the MACs of everything after that vault's head.
      const brakes = path.join(t.home, 'brakes');
      for (const name of fs.readdirSync(brakes)) fs.rmSync(path.join(brakes, name));
      rewrite(
        logFile(t),
        lines(t).map((l) => l.replace('"event":"brake.activate"', '"event":"brake.activatf"'))
          .join('\n') + '\n',
      );
      rewrite(vaultFile(t), old);
      expect(breakMacs(t, (e) => e.seq > head)).toBeGreaterThan(0);
      const before = sent();
      const r = await exec();
      expect(r.code, r.stderr).toBe(8);
      expect(sent()).toBe(before);
    },
    60_000,
  );

  it(
    'serve: a restored vault.json and the revocation deleted from the log: 503, nothing sent',
    async () => {
      const served = await servedCredential(CANARY);
      const { t, s, agent } = served;
      try {
        const request = () =>
          http(s, '/v1/proxy', {
            body: JSON.stringify({
              credential: 'k',
              url: 'https://api.allowed.test/x',
              headers: AUTH,
            }),
            headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${agent.token}` },
          });
        expect((await request()).status).toBe(200);
        const old = fs.readFileSync(vaultFile(t));
        const revoked = await t.tp([
          'agent',
          'revoke',
          agent.id,
          '--password-file',
          t.passwordFile,
        ]);
        expect(revoked.code, revoked.stderr).toBe(0);
        // A refusal after the revocation keeps the log's tail past the old head.
        expect((await request()).status).toBe(401);
        rewrite(vaultFile(t), old);
        expect(deleteEntries(t, (e) => e.event === 'agent.revoke' || e.event === 'vault.saved'))
          .toBeGreaterThan(0);
        const count = served.upstream.requests.length;
        const r = await request();
        expect(r.status).toBe(503);
        expect(served.upstream.requests).toHaveLength(count);
      } finally {
        await served.stop();
      }
    },
    60_000,
  );

  it('serve: a restored vault.json and broken MACs after its head: 503, nothing sent', async () => {
    const served = await servedCredential(CANARY);
    const { t, s, agent } = served;
    try {
      const request = () =>
        http(s, '/v1/proxy', {
          body: JSON.stringify({
            credential: 'k',
            url: 'https://api.allowed.test/x',
            headers: AUTH,
          }),
          headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${agent.token}` },
        });
      expect((await request()).status).toBe(200);
      const old = fs.readFileSync(vaultFile(t));
      const head = JSON.parse(old.toString('utf8')).body.audit_head.seq as number;
      const revoked = await t.tp(['agent', 'revoke', agent.id, '--password-file', t.passwordFile]);
      expect(revoked.code, revoked.stderr).toBe(0);
      rewrite(vaultFile(t), old);
      expect(breakMacs(t, (e) => e.seq > head)).toBeGreaterThan(0);
      const count = served.upstream.requests.length;
      for (let i = 0; i < 2; i++) {
        const r = await request();
        expect(r.status).toBe(503);
        // serve records heads off the request path: whether the restored vault's head is behind
        // the log (rollback) or the broken MACs are read first depends on when that write landed.
        expect(['audit_mac_mismatch', 'vault_rollback']).toContain(json(r).error.code);
      }
      expect(served.upstream.requests).toHaveLength(count);
    } finally {
      await served.stop();
    }
  }, 60_000);
});
