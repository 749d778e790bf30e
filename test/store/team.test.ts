/**
 * The team store in use (#19): homes on several machines as working copies of one PostgreSQL
 * store, each running serve or commands with `--store`. Real CLI, real serve (keeper and front),
 * a real PostgreSQL per file (test/helpers/postgres.ts), a local HTTPS upstream; canary values.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { addCredential, newAgent, newHome, type TestHome } from '../helpers/cli.ts';
import { type Listener, startHttpsListener, TEST_CA } from '../helpers/listeners.ts';
import { expectNoCanary, newCanary } from '../helpers/canary.ts';
import { usePostgres } from '../helpers/postgres.ts';
import { header, http, type Served, startServe, upstreamArgs } from '../helpers/serve.ts';

const pg = usePostgres();
const CANARY = newCanary();

let t: TestHome;
let agent: { id: string; token: string };
let upstream: Listener;
let received = 0;

/** A working copy: a new, empty home directory on the store `url`. */
function replica(url: string, name: string): TestHome {
  const home = path.join(t.dir, `${name}-${Math.random().toString(16).slice(2, 8)}`);
  return {
    ...t,
    home,
    tp: (args, options) => t.tp(['--home', home, '--store', url, ...args], options),
  };
}

async function newStore(): Promise<string> {
  const url = pg.get().database();
  const r = await t.tp(['store', 'migrate', '--to', url, '--password-file', t.passwordFile]);
  expect(r.code, r.stderr).toBe(0);
  return url;
}

function proxy(s: Served, token = agent.token) {
  return http(s, '/v1/proxy', {
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({
      credential: 'k',
      url: 'https://api.allowed.test/v1/x',
      headers: { Authorization: 'Bearer {{CREDENTIAL}}' },
    }),
  });
}

function serveOn(r: TestHome, url: string): Promise<Served> {
  return startServe(r, upstreamArgs(r, upstream.port), { env: { TRUST_PROTOCOL_STORE: url } });
}

beforeAll(async () => {
  pg.setup();
  t = await newHome();
  expect((await addCredential(t, 'k', CANARY, ['--allowed-domains', 'api.allowed.test'])).code)
    .toBe(0);
  agent = await newAgent(t, { tier: 'COMPANION', grants: ['k'] });
  upstream = await startHttpsListener((_req, res) => {
    received++;
    res.end('{"ok":true}');
  });
}, 60_000);

afterAll(async () => {
  await upstream?.close();
  pg.teardown();
});

describe.skipIf(!pg.available)('two serves on one store', () => {
  it('number and chain every request of both into one trail, no fork, no loss', async () => {
    const url = await newStore();
    const a = await serveOn(replica(url, 'a'), url);
    const b = await serveOn(replica(url, 'b'), url);
    try {
      const answers = await Promise.all(
        Array.from({ length: 20 }, (_, i) => proxy(i % 2 === 0 ? a : b)),
      );
      for (const r of answers) expect(r.status, r.body.toString()).toBe(200);
      for (const r of answers) expectNoCanary(r.body.toString(), CANARY);
      const seqs = answers.map((r) => Number(header(r, 'trust-protocol-audit-seq')));
      expect(new Set(seqs).size).toBe(20);
      // Both serves have registered themselves in the store.
      const st = await t.tp(['--json', 'store', 'status'], { env: { TRUST_PROTOCOL_STORE: url } });
      expect(st.code, st.stderr).toBe(0);
      const serves = JSON.parse(st.stdout).serves as Array<{ pid: number }>;
      expect(serves.length).toBe(2);
    } finally {
      await a.stop();
      await b.stop();
    }
    // A third machine's fresh copy verifies the whole trail, entries of both serves in it.
    const c = replica(url, 'c');
    const v = await c.tp(['--json', 'audit', 'verify', '--password-file', t.passwordFile]);
    expect(v.code, v.stderr).toBe(0);
    const rows = await pg.get().sql(url, `SELECT line FROM audit_entries ORDER BY seq`) as Array<
      { line: string }
    >;
    const requests = rows.map((r) => JSON.parse(r.line)).filter((e) =>
      e.event === 'request.completed'
    );
    expect(requests.length).toBe(20);
    for (const r of rows) expectNoCanary(r.line, CANARY);
  }, 120_000);
});

/**
 * When, after the start, the change was seen: `check` is polled every 50 ms until it holds. Each
 * check counts from when it was sent, not when its answer came back, so a slow round trip is not
 * charged to the product: checks sent before `ms` may still see the old state; the first one sent
 * at `ms` or later decides (null: it still saw the old state).
 */
async function within(ms: number, check: () => Promise<boolean>): Promise<number | null> {
  const start = Date.now();
  for (;;) {
    const sent = Date.now() - start;
    if (await check()) return sent;
    if (sent >= ms) return null;
    await new Promise((r) => setTimeout(r, Math.max(0, Math.min(50, ms - (Date.now() - start)))));
  }
}

describe.skipIf(!pg.available)('one trail, one tree', () => {
  it(
    'two working copies sign the same checkpoint, and a proof from one verifies on the other',
    async () => {
      const url = await newStore();
      const a = replica(url, 'a');
      const b = replica(url, 'b');
      expect((await a.tp(['emergency', 'activate', '--reason', 'one'])).code).toBe(0);
      expect((await b.tp(['emergency', 'activate', '--reason', 'two'])).code).toBe(0);
      const pw = ['--password-file', t.passwordFile];
      const ca = await a.tp(['audit', 'checkpoint', ...pw]);
      const cb = await b.tp(['audit', 'checkpoint', ...pw]);
      expect(ca.code, ca.stderr).toBe(0);
      expect(cb.code, cb.stderr).toBe(0);
      // The note's body (origin, size, root) is the same; the signature lines may differ in time.
      const body = (note: string) => note.split('\n\n')[0];
      expect(body(ca.stdout)).toBe(body(cb.stdout));
      const ckpt = t.file(`ckpt-${Date.now()}`, cb.stdout);
      const key = (await a.tp(['audit', 'key', ...pw])).stdout.trim();
      const proof = await a.tp(['audit', 'prove', '1', '--checkpoint', ckpt, ...pw]);
      expect(proof.code, proof.stderr).toBe(0);
      const file = t.file(`proof-${Date.now()}`, proof.stdout);
      const v = await b.tp(['audit', 'verify-proof', file, '--key', key]);
      expect(v.code, v.stderr + v.stdout).toBe(0);
    },
    60_000,
  );
});

describe.skipIf(!pg.available)('what one instance changes, every instance obeys', () => {
  it('a brake placed on one machine stops requests on another within one second', async () => {
    const url = await newStore();
    const b = await serveOn(replica(url, 'b'), url);
    try {
      expect((await proxy(b)).status).toBe(200);
      const a = replica(url, 'a');
      const placed = await a.tp(['emergency', 'activate', '--reason', 'leak on machine a']);
      expect(placed.code, placed.stderr).toBe(0);
      const before = received;
      const took = await within(1000, async () => (await proxy(b)).status === 423);
      expect(took, 'serve on b still answered one second after the brake').not.toBeNull();
      const r = await proxy(b);
      expect(r.status).toBe(423);
      expect(r.body.toString()).toContain('brake');
      // Nothing reached the upstream once the brake was seen.
      const after = received;
      await proxy(b);
      expect(received).toBe(after);
      expect(after - before).toBeLessThanOrEqual(20);
    } finally {
      await b.stop();
    }
  }, 60_000);

  it('a brake pulled through one serve stops the other serve', async () => {
    const url = await newStore();
    const a = await serveOn(replica(url, 'a'), url);
    const b = await serveOn(replica(url, 'b'), url);
    try {
      expect((await proxy(b)).status).toBe(200);
      // Through a's unix socket, as `emergency activate` on a's machine would.
      const pulled = await http({ socket: a.socket as string }, '/v1/emergency', {
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ scope: 'agent', agent_id: agent.id, reason: 'stop me' }),
      });
      expect(pulled.status, pulled.body.toString()).toBeLessThan(300);
      const took = await within(1000, async () => (await proxy(b)).status === 423);
      expect(took).not.toBeNull();
    } finally {
      await a.stop();
      await b.stop();
    }
  }, 60_000);

  it(
    'an agent suspended on one machine is refused by serve on another within one second',
    async () => {
      const other = await newAgent(t, { name: `w${Date.now()}`, tier: 'COMPANION', grants: ['k'] });
      const url2 = await newStore();
      const b = await serveOn(replica(url2, 'b'), url2);
      try {
        expect((await proxy(b, other.token)).status).toBe(200);
        const a = replica(url2, 'a');
        const done = await a.tp(['agent', 'suspend', other.id, '--password-file', t.passwordFile]);
        expect(done.code, done.stderr).toBe(0);
        const took = await within(1000, async () => (await proxy(b, other.token)).status === 403);
        expect(took, 'the suspended agent was still served after one second').not.toBeNull();
        // The other agent goes on.
        expect((await proxy(b)).status).toBe(200);
      } finally {
        await b.stop();
      }
    },
    60_000,
  );
});

describe.skipIf(!pg.available)('the monitor on the team store', () => {
  it(
    "sees every machine's requests: probes split across two serves place one agent brake on both",
    async () => {
      const prober = await newAgent(t, {
        name: `p${Date.now()}`,
        tier: 'COMPANION',
        grants: ['k'],
      });
      const url = await newStore();
      const a = await serveOn(replica(url, 'a'), url);
      const b = await serveOn(replica(url, 'b'), url);
      const probe = (s: Served, host: string) =>
        http(s, '/v1/proxy', {
          headers: { Authorization: `Bearer ${prober.token}`, 'Content-Type': 'application/json' },
          body: JSON.stringify({
            credential: 'k',
            url: `https://${host}/x`,
            headers: { Authorization: 'Bearer {{CREDENTIAL}}' },
          }),
        });
      try {
        expect((await proxy(a, prober.token)).status).toBe(200);
        // Three probes on a, two on b: neither serve alone sees five.
        const hosts = ['evil.test', 'other.evil.test', 'third.evil.test', 'fourth.evil.test'];
        for (const [i, host] of [...hosts, 'fifth.evil.test'].entries()) {
          expect((await probe(i % 2 === 0 ? a : b, host)).status).toBe(403);
        }
        const braked = await within(
          5000,
          async () =>
            (await proxy(a, prober.token)).status === 423 &&
            (await proxy(b, prober.token)).status === 423,
        );
        expect(braked, 'no agent brake on both serves within 5 s').not.toBeNull();
        // The other agent goes on.
        expect((await proxy(b)).status).toBe(200);
      } finally {
        await a.stop();
        await b.stop();
      }
      const rows = await pg.get().sql(
        url,
        `SELECT line FROM audit_entries WHERE line LIKE '%"event":"monitor.anomaly"%'`,
      ) as Array<{ line: string }>;
      const kinds = rows.map((r) => JSON.parse(r.line)).filter((e) => e.data.agent === prober.id)
        .map((e) => e.data.kind);
      expect(kinds).toContain('denial_burst');
    },
    90_000,
  );
});

describe.skipIf(!pg.available)('a rotation on one machine', () => {
  it('is what the other serve sends within one second; the old value is sent no more', async () => {
    const url = await newStore();
    const b = await serveOn(replica(url, 'b'), url);
    const NEW = newCanary();
    try {
      expect((await proxy(b)).status).toBe(200);
      expect(upstream.requests.at(-1)?.headers.authorization).toBe(`Bearer ${CANARY}`);
      const a = replica(url, 'a');
      const rotated = await a.tp(['credential', 'rotate', 'k', '--password-file', t.passwordFile], {
        input: NEW,
      });
      expect(rotated.code, rotated.stderr).toBe(0);
      const took = await within(1000, async () => {
        const r = await proxy(b);
        expectNoCanary(r.body.toString(), NEW);
        return upstream.requests.at(-1)?.headers.authorization === `Bearer ${NEW}`;
      });
      expect(took, 'serve on b still sent the old value after one second').not.toBeNull();
      await proxy(b);
      expect(upstream.requests.at(-1)?.headers.authorization).toBe(`Bearer ${NEW}`);
    } finally {
      await b.stop();
    }
  }, 60_000);
});

describe.skipIf(!pg.available)('faults', () => {
  it(
    'the database restarted mid-load: refused while down, nothing acknowledged lost, back after',
    async () => {
      const url = await newStore();
      const b = await serveOn(replica(url, 'b'), url);
      // Each answer with the time its request was sent: one sent before the kill may be answered
      // after it (its commit made it in first); one sent while the database is down may not.
      const acknowledged: Array<{ sent: number; seq: number }> = [];
      let refused = 0;
      let running = true;
      const load = (async () => {
        while (running) {
          const sent = Date.now();
          const r = await proxy(b).catch(() => null);
          if (r === null) continue;
          if (r.status === 200) {
            acknowledged.push({ sent, seq: Number(header(r, 'trust-protocol-audit-seq')) });
          } else refused++;
          expect(r.body.toString()).not.toContain(CANARY);
        }
      })();
      try {
        await new Promise((r) => setTimeout(r, 500));
        // Both return once the server is down, or up (pg_ctl waits).
        pg.get().kill();
        const down = Date.now();
        await new Promise((r) => setTimeout(r, 2000));
        const up = Date.now();
        pg.get().start();
        expect(acknowledged.length, 'the load was answered before the kill').toBeGreaterThan(0);
        // While the database is gone, no request is answered as done.
        expect(acknowledged.filter((a) => a.sent > down && a.sent < up)).toEqual([]);
        let last = '';
        const back = await within(15_000, async () => {
          const r = await proxy(b);
          last = r.body.toString();
          return r.status === 200;
        });
        expect(back, `serve did not recover: ${last}`).not.toBeNull();
      } finally {
        running = false;
        await load;
        await b.stop();
      }
      expect(refused).toBeGreaterThan(0);
      const rows = await pg.get().sql(
        url,
        'SELECT seq, line FROM audit_entries ORDER BY seq',
      ) as Array<
        { seq: string; line: string }
      >;
      const seqs = new Set(rows.map((r) => Number(r.seq)));
      for (const { seq } of acknowledged) {
        expect(seqs.has(seq), `acknowledged entry ${seq} lost`).toBe(true);
      }
      const c = replica(url, 'c');
      const v = await c.tp(['audit', 'verify', '--password-file', t.passwordFile]);
      expect(v.code, v.stderr).toBe(0);
    },
    120_000,
  );

  it(
    'connections cut mid-load (group commits, the listener): nothing acknowledged lost, brakes still seen',
    async () => {
      const url = await newStore();
      const b = await serveOn(replica(url, 'b'), url);
      const acknowledged: number[] = [];
      let running = true;
      const load = (async () => {
        while (running) {
          const r = await proxy(b).catch(() => null);
          if (r?.status === 200) {
            acknowledged.push(Number(header(r, 'trust-protocol-audit-seq')));
          }
        }
      })();
      let cut = 0;
      try {
        for (let i = 0; i < 6; i++) {
          await new Promise((r) => setTimeout(r, 300));
          const rows = await pg.get().sql(
            url,
            `SELECT pg_terminate_backend(pid) AS done FROM pg_stat_activity
           WHERE application_name = 'trust-protocol' AND pid <> pg_backend_pid()`,
          ) as Array<{ done: boolean }>;
          cut += rows.filter((r) => r.done).length;
        }
        let last = '';
        const back = await within(15_000, async () => {
          const r = await proxy(b);
          last = r.body.toString();
          return r.status === 200;
        });
        expect(back, last).not.toBeNull();
      } finally {
        running = false;
        await load;
      }
      expect(cut).toBeGreaterThan(0);
      try {
        // The listener was cut too: a brake placed elsewhere still reaches b within one second.
        const a = replica(url, 'a');
        expect((await a.tp(['emergency', 'activate', '--reason', 'after the cuts'])).code).toBe(0);
        expect(await within(1000, async () => (await proxy(b)).status === 423)).not.toBeNull();
      } finally {
        await b.stop();
      }
      const rows = await pg.get().sql(url, 'SELECT seq FROM audit_entries') as Array<
        { seq: string }
      >;
      const seqs = new Set(rows.map((r) => Number(r.seq)));
      for (const s of acknowledged) expect(seqs.has(s), `acknowledged entry ${s} lost`).toBe(true);
      expect(acknowledged.length).toBeGreaterThan(0);
      const v = await replica(url, 'c').tp(['audit', 'verify', '--password-file', t.passwordFile]);
      expect(v.code, v.stderr).toBe(0);
    },
    120_000,
  );

  it('an audit row edited in the database is found by audit verify on any copy', async () => {
    const url = await newStore();
    const a = replica(url, 'a');
    expect((await a.tp(['audit', 'verify', '--password-file', t.passwordFile])).code).toBe(0);
    await pg.get().sql(
      url,
      `UPDATE audit_entries SET line = replace(line, '"outcome":"ok"', '"outcome":"denied"')
       WHERE seq = (SELECT max(seq) FROM audit_entries WHERE line LIKE '%"outcome":"ok"%')`,
    );
    const fresh = replica(url, 'fresh');
    const v = await fresh.tp(['--json', 'audit', 'verify', '--password-file', t.passwordFile]);
    // verify reports what it found (exit 1), as on a file home.
    expect(v.code, v.stderr).toBe(1);
    expect(JSON.parse(v.stdout).problems.length).toBeGreaterThan(0);
  }, 60_000);

  it('a vault document edited in the database is caught (exit 8)', async () => {
    const url = await newStore();
    await pg.get().sql(
      url,
      `UPDATE vault SET document = replace(document, '"COMPANION"', '"ADMIN"') WHERE id = 1`,
    );
    const a = replica(url, 'a');
    const x = await a.tp(['agent', 'suspend', agent.id, '--password-file', t.passwordFile]);
    expect(x.code, x.stderr).toBe(8);
  }, 60_000);

  it(
    'a vault row rolled back in the database is refused, on a working copy old or new (exit 8)',
    async () => {
      const other = await newAgent(t, { name: `r${Date.now()}`, tier: 'COMPANION', grants: ['k'] });
      const url = await newStore();
      const a = replica(url, 'a');
      const b = replica(url, 'b');
      expect((await execOn(b, other.token)).code).toBe(0);
      const [before] = await pg.get().sql(url, 'SELECT document FROM vault') as Array<
        { document: string }
      >;
      const pw = ['--password-file', t.passwordFile];
      expect((await a.tp(['agent', 'revoke', other.id, ...pw])).code).toBe(0);
      // The administrator puts the vault from before the revocation back.
      await pg.get().sql(
        url,
        `UPDATE vault SET document = '${before!.document.replaceAll("'", "''")}' WHERE id = 1`,
      );
      for (const copy of [b, replica(url, 'fresh')]) {
        const r = await execOn(copy, other.token);
        expect(r.code, r.stderr).toBe(8);
        expect(r.sent).toBe(false);
        const change = await copy.tp(['agent', 'suspend', agent.id, ...pw]);
        expect(change.code, change.stderr).toBe(8);
      }
    },
    60_000,
  );

  it('a home written without the store is refused, never merged (exit 8)', async () => {
    const url = await newStore();
    const a = replica(url, 'a');
    expect((await a.tp(['audit', 'verify', '--password-file', t.passwordFile])).code).toBe(0);
    // The same home, used without --store: its trail moves on alone.
    const alone = await t.tp(['--home', a.home, 'emergency', 'activate', '--reason', 'alone']);
    expect(alone.code, alone.stderr).toBe(0);
    await t.tp(['--home', a.home, 'emergency', 'clear', '--password-file', t.passwordFile]);
    const again = await a.tp(['emergency', 'activate', '--reason', 'on the store']);
    expect(again.code).toBe(8);
    expect(again.stderr).toContain('without the store');
  }, 60_000);
});

describe.skipIf(!pg.available)('refusals', () => {
  it('a password in --store is refused before anything is read', async () => {
    const r = await t.tp(['--store', 'postgres://u:secret-pw@/db?host=/nowhere', 'agent', 'list']);
    expect(r.code).toBe(2);
    expect(r.stderr).not.toContain('secret-pw');
  });

  it('init does not make a team store', async () => {
    const r = await t.tp(['--home', path.join(t.dir, 'x'), '--store', 'postgres://u@/db', 'init']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('store migrate');
  });

  it('a database that is not there is exit 6, with the password hidden', async () => {
    const r = await t.tp(['--home', path.join(t.dir, 'y'), 'agent', 'list'], {
      env: { TRUST_PROTOCOL_STORE: `postgres://u:hidden-pw@/nodb?host=${t.dir}` },
    });
    expect(r.code, r.stderr).toBe(6);
    expect(r.stderr).not.toContain('hidden-pw');
  });
});

/** One request from the CLI on a working copy (exec, unsealing there): its exit code and output. */
async function execOn(r: TestHome, token = agent.token) {
  const tpl = t.file(
    `t-${Math.random().toString(16).slice(2)}.json`,
    JSON.stringify({
      credential: 'k',
      url: 'https://api.allowed.test/v1/x',
      headers: { Authorization: 'Bearer {{CREDENTIAL}}' },
    }),
  );
  const before = received;
  const out = await r.tp([
    'exec',
    '--template',
    tpl,
    '--cacert',
    t.file('ca.pem', TEST_CA),
    '--connect-to',
    `api.allowed.test:443:127.0.0.1:${upstream.port}`,
    '--password-file',
    t.passwordFile,
  ], { env: { TRUST_PROTOCOL_TOKEN: token } });
  expectNoCanary(out.stdout + out.stderr, CANARY);
  return { code: out.code, stderr: out.stderr, sent: received > before };
}

describe.skipIf(!pg.available)('an agent that edits the files of a working copy', () => {
  it(
    'deleting the brake records and the brakes directory lifts nothing: the store puts them back',
    async () => {
      const url = await newStore();
      const a = replica(url, 'a');
      expect((await a.tp(['emergency', 'activate', '--reason', 'stop'])).code).toBe(0);
      fs.rmSync(path.join(a.home, 'brakes'), { recursive: true });
      const r = await execOn(a);
      expect(r.code, r.stderr).toBe(5);
      expect(r.sent).toBe(false);
      expect(fs.readdirSync(path.join(a.home, 'brakes')).some((f) => f.startsWith('brk_')))
        .toBe(true);
    },
    60_000,
  );

  it(
    "editing the home's vault.json to drop a brake lifts nothing (its MAC or the brake stops it)",
    async () => {
      const url = await newStore();
      const a = replica(url, 'a');
      expect((await a.tp(['emergency', 'activate', '--reason', 'stop'])).code).toBe(0);
      // A password holder copies the brake into the vault's known list.
      expect((await a.tp(['agent', 'list', '--password-file', t.passwordFile])).code).toBe(0);
      const other = replica(url, 'b');
      expect((await other.tp(['emergency', 'status'])).code).toBe(0);
      const vaultPath = path.join(a.home, 'vault.json');
      const v = JSON.parse(fs.readFileSync(vaultPath, 'utf8'));
      v.body.known_brakes = [];
      v.body.generation += 1000;
      fs.writeFileSync(vaultPath, JSON.stringify(v));
      fs.rmSync(path.join(a.home, 'brakes'), { recursive: true });
      const r = await execOn(a);
      expect([5, 8]).toContain(r.code);
      expect(r.sent).toBe(false);
    },
    60_000,
  );

  it(
    'cutting the log of a working copy loses nothing: the store brings the entries back',
    async () => {
      const url = await newStore();
      const a = replica(url, 'a');
      expect((await execOn(a)).code).toBe(0);
      const log = path.join(a.home, 'audit', 'audit.log');
      const whole = fs.readFileSync(log, 'utf8');
      const lines = whole.split('\n');
      fs.writeFileSync(log, lines.slice(0, -4).join('\n') + '\n');
      const v = await a.tp(['audit', 'verify', '--password-file', t.passwordFile]);
      expect(v.code, v.stderr).toBe(0);
      expect(fs.readFileSync(log, 'utf8').startsWith(whole)).toBe(true);
    },
    60_000,
  );
});
