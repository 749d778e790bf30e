/**
 * `store migrate` and `store status` (#19) on the real CLI and a real PostgreSQL: a file home goes
 * into an empty database and back, byte for byte, and the home that comes back still works.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { addCredential, newAgent, newHome, type TestHome } from '../helpers/cli.ts';
import { type Listener, startHttpsListener, TEST_CA } from '../helpers/listeners.ts';
import { expectNoCanary, newCanary } from '../helpers/canary.ts';
import { usePostgres } from '../helpers/postgres.ts';

const pg = usePostgres();
const CANARY = newCanary();
/** A connection password: trust authentication ignores it, but it must never be printed. */
const DB_PASSWORD = `pw-${Math.random().toString(16).slice(2, 12)}`;

let t: TestHome;
let agent: { id: string; token: string };
let upstream: Listener;
let ca: string;

function withPassword(url: string): string {
  return url.replace('@/', `:${DB_PASSWORD}@/`);
}

async function execRequest(home: string, token: string) {
  const tpl = t.file(
    `t-${Math.random().toString(16).slice(2)}.json`,
    JSON.stringify({
      credential: 'k',
      url: 'https://api.allowed.test/v1/x',
      headers: { Authorization: 'Bearer {{CREDENTIAL}}' },
    }),
  );
  return await t.tp([
    '--home',
    home,
    'exec',
    '--template',
    tpl,
    '--cacert',
    ca,
    '--connect-to',
    `api.allowed.test:443:127.0.0.1:${upstream.port}`,
    '--password-file',
    t.passwordFile,
  ], { env: { TRUST_PROTOCOL_TOKEN: token } });
}

beforeAll(async () => {
  pg.setup();
  t = await newHome();
  expect((await addCredential(t, 'k', CANARY, ['--allowed-domains', 'api.allowed.test'])).code)
    .toBe(0);
  agent = await newAgent(t, { tier: 'COMPANION', grants: ['k'] });
  upstream = await startHttpsListener((_req, res) => res.end('{"ok":true}'));
  ca = t.file('ca.pem', TEST_CA);
  for (let i = 0; i < 3; i++) expect((await execRequest(t.home, agent.token)).code).toBe(0);
}, 60_000);

afterAll(async () => {
  await upstream?.close();
  pg.teardown();
});

/**
 * A connection string's password never goes on the command line (the CLI refuses it): the target's
 * goes in PGPASSWORD, a source named with one goes whole in TRUST_PROTOCOL_STORE.
 */
function _bare(url: string): { url: string; password: string | null } {
  const m = /^(postgres:\/\/[^:/?]*):(.*)@(\/.*)$/.exec(url);
  return m === null ? { url, password: null } : { url: `${m[1]}@${m[3]}`, password: m[2]! };
}

function migrate(to: string, from: string[] = []) {
  const target = _bare(to);
  const env: Record<string, string> = {};
  if (target.password !== null) env.PGPASSWORD = target.password;
  const at = from.indexOf('--store');
  const source = at === -1 ? null : from[at + 1]!;
  if (source !== null && _bare(source).password !== null) {
    env.TRUST_PROTOCOL_STORE = source;
    from = from.filter((_, i) => i !== at && i !== at + 1);
  }
  return t.tp(
    ['store', 'migrate', '--to', target.url, ...from, '--password-file', t.passwordFile],
    { env },
  );
}

function status(url: string, json = true) {
  const bare = _bare(url);
  return bare.password === null
    ? t.tp([...(json ? ['--json'] : []), 'store', 'status', '--store', url])
    : t.tp([...(json ? ['--json'] : []), 'store', 'status'], {
      env: { TRUST_PROTOCOL_STORE: url },
    });
}

function auditLines(home: string): number {
  return fs.readFileSync(path.join(home, 'audit', 'audit.log'), 'utf8').trim().split('\n').length;
}

describe.skipIf(!pg.available)('store migrate and status (PostgreSQL)', () => {
  it('copies a home into PostgreSQL and back; the home that comes back works', async () => {
    const url = withPassword(pg.get().database());
    const up = await migrate(url);
    expect(up.code, up.stderr).toBe(0);

    const shown = await status(url);
    expect(shown.code, shown.stderr).toBe(0);
    const s = JSON.parse(shown.stdout);
    expect(s.store.kind).toBe('postgres');
    // The connection string is shown, its password replaced.
    expect(s.store.location).toBe(url.replace(`:${DB_PASSWORD}@`, ':***@'));
    expect(s.schema_version).toBe(1);
    expect(s.entries).toBe(auditLines(t.home));
    expect(s.vault_format).toBe(2);
    expect(s.verification.ok).toBe(true);
    expect(s.verification.hmac_checked).toBe(false);

    const back = path.join(t.dir, 'back');
    const down = await migrate(`file:${back}`, ['--store', url]);
    expect(down.code, down.stderr).toBe(0);
    for (const f of ['vault.json', 'audit/audit.log', 'brakes/journal.log']) {
      const original = path.join(t.home, f);
      if (!fs.existsSync(original)) continue;
      expect(fs.readFileSync(path.join(back, f)).equals(fs.readFileSync(original)), f).toBe(true);
    }

    const before = upstream.requests.length;
    const r = await execRequest(back, agent.token);
    expect(r.code, r.stderr).toBe(0);
    expect(upstream.requests[before]!.headers['authorization']).toBe(`Bearer ${CANARY}`);
    expectNoCanary(r.stdout + r.stderr, CANARY);
    const verify = await t.tp([
      '--home',
      back,
      'audit',
      'verify',
      '--password-file',
      t.passwordFile,
    ]);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);

    for (const out of [up, shown, down]) {
      expect(out.stdout + out.stderr).not.toContain(DB_PASSWORD);
      expectNoCanary(out.stdout + out.stderr, CANARY);
    }
    const rows = await pg.get().sql(url, 'SELECT line FROM audit_entries ORDER BY seq');
    expect(rows.length).toBe(auditLines(t.home));
    expect(JSON.stringify(rows)).not.toContain(DB_PASSWORD);
    const all = await pg.get().sql(url, 'SELECT document FROM vault');
    expectNoCanary(JSON.stringify(all), CANARY, 'the vault row');
  });

  it('refuses a database that is not empty (exit 2) and a file: target that is not empty', async () => {
    const url = pg.get().database();
    expect((await migrate(url)).code).toBe(0);
    const again = await migrate(url);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/not empty/);
    expect(again.stderr).toMatch(/hint:/);

    const full = path.join(t.dir, `full-${Math.random().toString(16).slice(2)}`);
    fs.mkdirSync(full);
    fs.writeFileSync(path.join(full, 'something'), 'x');
    const down = await migrate(`file:${full}`, ['--store', url]);
    expect(down.code).toBe(2);
    expect(fs.readdirSync(full)).toEqual(['something']);
  });

  it('a row edited in the database is an integrity failure (exit 8)', async () => {
    const url = pg.get().database();
    expect((await migrate(url)).code).toBe(0);
    await pg.get().sql(
      url,
      `UPDATE audit_entries SET line = replace(line, '"outcome":"allowed"', '"outcome":"denied"') WHERE seq = (SELECT min(seq) FROM audit_entries WHERE line LIKE '%"outcome":"allowed"%')`,
    );
    const status = await t.tp(['store', 'status', '--store', url]);
    expect(status.code, status.stdout + status.stderr).toBe(8);
    const back = path.join(t.dir, `tampered-${Math.random().toString(16).slice(2)}`);
    const down = await migrate(`file:${back}`, ['--store', url]);
    expect(down.code, down.stderr).toBe(8);
    expect(fs.existsSync(path.join(back, 'vault.json'))).toBe(false);

    const url2 = pg.get().database();
    expect((await migrate(url2)).code).toBe(0);
    await pg.get().sql(
      url2,
      `UPDATE vault SET document = replace(document, '"tier": "COMPANION"', '"tier": "AUTONOMOUS"')`,
    );
    const down2 = await migrate(`file:${back}`, ['--store', url2]);
    expect(down2.code, down2.stderr).toBe(8);
    expect(fs.existsSync(path.join(back, 'vault.json'))).toBe(false);
  });

  it('names from the database that leave the target directory are refused (exit 8)', async () => {
    // The database is untrusted: a row naming `../x` must not make the copy back write outside DIR.
    for (
      const [n, edit] of [
        ['file', `INSERT INTO home_files (path, content) VALUES ('../escaped-file', 'x')`],
        ['nested', `INSERT INTO home_files (path, content) VALUES ('a/../../escaped-nested', 'x')`],
        ['brake', `INSERT INTO brakes (name, record) VALUES ('../escaped-brake', '{}')`],
        ['tree', `INSERT INTO audit_tree (name, data) VALUES ('../escaped-tree', 'x')`],
        ['segment', `UPDATE audit_entries SET segment = '../escaped-segment' WHERE seq = 1`],
      ] as const
    ) {
      const url = pg.get().database();
      expect((await migrate(url)).code).toBe(0);
      await pg.get().sql(url, edit);
      const parent = path.join(t.dir, `escape-${n}-${Math.random().toString(16).slice(2)}`);
      fs.mkdirSync(parent);
      const back = path.join(parent, 'back');
      const down = await migrate(`file:${back}`, ['--store', url]);
      expect(down.code, `${n}: ${down.stderr}`).toBe(8);
      expect(fs.readdirSync(parent), n).toEqual([]);
      expect(fs.existsSync(path.join(t.dir, `escaped-${n}`)), n).toBe(false);
    }
  });

  it('a dead server or a connection lost mid-way fails closed (exit 6) and leaves the target empty', async () => {
    const dead = withPassword(
      `postgres://nobody@/nothing?host=${encodeURIComponent(path.join(t.dir, 'no-server'))}`,
    );
    const r = await migrate(dead);
    expect(r.code, r.stderr).toBe(6);
    expect(r.stderr).toMatch(/database/);
    expect(r.stderr).not.toContain(DB_PASSWORD);
    const s = await status(dead, false);
    expect(s.code).toBe(6);
    expect(s.stdout + s.stderr).not.toContain(DB_PASSWORD);

    // The server drops the connection once the schema is made, inside the copy's transaction.
    const url = withPassword(pg.get().database());
    await pg.get().sql(
      url,
      `CREATE FUNCTION cut() RETURNS event_trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands()
                    WHERE object_identity = 'public.audit_entries') THEN
           PERFORM pg_terminate_backend(pg_backend_pid());
         END IF;
       END $$;
       CREATE EVENT TRIGGER cut ON ddl_command_end EXECUTE FUNCTION cut();`,
    );
    const cut = await migrate(url);
    expect(cut.code, cut.stderr).toBe(6);
    expect(cut.stderr).not.toContain(DB_PASSWORD);
    const tables = await pg.get().sql(
      url,
      "SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
    );
    expect(tables).toEqual([]);
  });
});

describe.skipIf(!pg.available)('store migrate: adversarial review (#19)', () => {
  it('does not copy the saved admin sign-in token (a bearer credential) into the database', async () => {
    // `admin login` saves an ID token that acts as the admin until it expires: the database,
    // untrusted like the disk of another machine, must never receive it.
    const h = await newHome();
    const token = newCanary();
    fs.writeFileSync(
      path.join(h.home, 'admin-token.json'),
      JSON.stringify({ issuer: 'https://idp.test', id_token: token }) + '\n',
      { mode: 0o600 },
    );
    const url = pg.get().database();
    const up = await h.tp(['store', 'migrate', '--to', url, '--password-file', h.passwordFile]);
    expect(up.code, up.stderr).toBe(0);
    const files = await pg.get().sql(
      url,
      "SELECT path, convert_from(content, 'UTF8') AS c FROM home_files",
    );
    expectNoCanary(JSON.stringify(files), token, 'the home_files rows');
    expect(JSON.stringify(files)).not.toContain('admin-token.json');
  });

  it('a connection password with @ or # in it is never printed, not even in part', async () => {
    // The client takes the password up to the last @ before the path (and # is no delimiter
    // there): the redaction must cut where the client cuts.
    for (const sep of ['@', '#']) {
      const tail = `tail${Math.random().toString(16).slice(2, 12)}`;
      const url = pg.get().database().replace('@/', `:pw${sep}${tail}@/`);
      const up = await migrate(url);
      expect(up.code, up.stderr).toBe(0);
      const shown = await status(url);
      expect(shown.code, shown.stderr).toBe(0);
      for (const out of [up, shown]) expect(out.stdout + out.stderr).not.toContain(tail);
      expect(JSON.parse(shown.stdout).store.location).toMatch(/^postgres:\/\/[^:]+:\*\*\*@\/.+/);
    }
  });

  it('a password in --to or --store is refused (exit 2) and never printed; nothing is written', async () => {
    const url = withPassword(pg.get().database());
    const viaTo = await t.tp([
      'store',
      'migrate',
      '--to',
      url,
      '--password-file',
      t.passwordFile,
    ]);
    const viaStore = await t.tp(['store', 'status', '--store', url]);
    // A working copy's --store, on any other command (cmd/store_sync.ts).
    const dir = path.join(t.dir, `copy-${Date.now()}`);
    const viaCopy = await t.tp(['--home', dir, '--store', url, 'emergency', 'status']);
    for (const r of [viaTo, viaStore, viaCopy]) {
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toContain('PGPASSWORD');
      expect(r.stdout + r.stderr).not.toContain(DB_PASSWORD);
    }
    const tables = await pg.get().sql(
      url,
      "SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
    );
    expect(tables).toEqual([]);
    expect(fs.existsSync(dir)).toBe(false);
  });

  it('copies a home whose vault was rekeyed (entries before the rekey are under the old audit key)', async () => {
    const h = await newHome();
    expect((await addCredential(h, 'k2', CANARY, ['--allowed-domains', 'api.allowed.test'])).code)
      .toBe(0);
    const rekey = await h.tp(['vault', 'rekey', '--password-file', h.passwordFile]);
    expect(rekey.code, rekey.stderr).toBe(0);
    const back = path.join(h.dir, 'copy');
    const r = await h.tp([
      'store',
      'migrate',
      '--to',
      `file:${back}`,
      '--password-file',
      h.passwordFile,
    ]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const url = pg.get().database();
    const up = await h.tp(['store', 'migrate', '--to', url, '--password-file', h.passwordFile]);
    expect(up.code, up.stdout + up.stderr).toBe(0);
  });
});
