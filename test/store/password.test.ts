/**
 * The team store behind a server that asks for a password (scram-sha-256), as a real deployment's
 * would (#19): the password comes from PGPASSWORD, never the command line; serve's key-holding
 * child gets it through its environment; a wrong or missing one is exit 6, and no form of it is
 * ever printed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as path from 'node:path';
import { addCredential, newAgent, newHome, type TestHome } from '../helpers/cli.ts';
import { type Listener, startHttpsListener } from '../helpers/listeners.ts';
import { newCanary } from '../helpers/canary.ts';
import { usePostgres } from '../helpers/postgres.ts';
import { http, startServe, upstreamArgs } from '../helpers/serve.ts';

const DB_PASSWORD = `db-${newCanary().slice(0, 12)}`;
const pg = usePostgres({ password: DB_PASSWORD });
const CANARY = newCanary();

let t: TestHome;
let agent: { id: string; token: string };
let upstream: Listener;
let url: string;

beforeAll(async () => {
  pg.setup();
  t = await newHome();
  expect((await addCredential(t, 'k', CANARY, ['--allowed-domains', 'api.allowed.test'])).code)
    .toBe(0);
  agent = await newAgent(t, { tier: 'COMPANION', grants: ['k'] });
  upstream = await startHttpsListener();
  url = pg.get().database();
  const m = await t.tp(['store', 'migrate', '--to', url, '--password-file', t.passwordFile], {
    env: { PGPASSWORD: DB_PASSWORD },
  });
  expect(m.code, m.stderr).toBe(0);
}, 60_000);

afterAll(async () => {
  await upstream?.close();
  pg.teardown();
});

describe.skipIf(!pg.available)('a store whose server asks for a password', () => {
  it('a command on a working copy uses PGPASSWORD', async () => {
    const home = path.join(t.dir, 'copy-cli');
    const r = await t.tp(['--home', home, '--store', url, '--json', 'agent', 'list'], {
      env: { PGPASSWORD: DB_PASSWORD },
    });
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).map((a: { id: string }) => a.id)).toContain(agent.id);
  });

  it('no password or a wrong one: exit 6, and neither password is printed', async () => {
    const wrong = `wrong-${newCanary().slice(0, 10)}`;
    for (const env of [{}, { PGPASSWORD: wrong }]) {
      const r = await t.tp(
        ['--home', path.join(t.dir, 'copy-x'), '--store', url, 'agent', 'list'],
        {
          env,
        },
      );
      expect(r.code, r.stderr).toBe(6);
      expect(r.stderr + r.stdout).not.toContain(wrong);
      expect(r.stderr + r.stdout).not.toContain(DB_PASSWORD);
    }
  });

  it(
    "serve's key-holding child gets the password through its environment and answers",
    async () => {
      const copy: TestHome = { ...t, home: path.join(t.dir, 'copy-serve') };
      const s = await startServe(copy, upstreamArgs(copy, upstream.port), {
        env: { TRUST_PROTOCOL_STORE: url, PGPASSWORD: DB_PASSWORD },
      });
      try {
        const r = await http(s, '/v1/proxy', {
          headers: { Authorization: `Bearer ${agent.token}`, 'Content-Type': 'application/json' },
          body: JSON.stringify({
            credential: 'k',
            url: 'https://api.allowed.test/v1/x',
            headers: { Authorization: 'Bearer {{CREDENTIAL}}' },
          }),
        });
        expect(r.status, r.body.toString()).toBe(200);
        expect(upstream.requests.at(-1)?.headers.authorization).toBe(`Bearer ${CANARY}`);
      } finally {
        await s.stop();
      }
      expect(s.stderr()).not.toContain(DB_PASSWORD);
    },
    60_000,
  );
});
