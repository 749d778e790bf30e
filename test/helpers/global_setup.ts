/**
 * vitest's globalSetup: one home initialised by the real CLI for the whole run, which newHome()
 * copies (test/helpers/cli.ts) instead of running `init` in every test. The workers inherit the
 * variable that names it.
 */
import { rmSync } from 'node:fs';
import * as path from 'node:path';
import { initTemplateHome, run, STORE_MODE, TEMPLATE_ENV, TEMPLATE_STORE_ENV } from './cli.ts';
import { findPostgres, SHARED_PG_ENV, startPostgres } from './postgres.ts';

export default async function setup(): Promise<() => void> {
  const home = await initTemplateHome();
  process.env[TEMPLATE_ENV] = home;
  if (!STORE_MODE) return () => rmSync(path.dirname(home), { recursive: true, force: true });
  // The store dimension (#19): one PostgreSQL for the run, and the template home in a database
  // that each newHome() copies (createdb -T) with the home.
  const found = findPostgres();
  if (found.bin === null) throw new Error(`TP_TEST_STORE=postgres needs PostgreSQL: ${found.why}`);
  const pg = startPostgres(found.bin);
  process.env[SHARED_PG_ENV] = JSON.stringify({ bin: found.bin, dir: pg.dir, user: pg.user });
  const url = pg.database();
  const r = await run([
    '--home',
    home,
    'store',
    'migrate',
    '--to',
    url,
    '--password-file',
    path.join(path.dirname(home), 'password'),
  ]);
  if (r.code !== 0) throw new Error(`store migrate of the template failed: ${r.stderr}`);
  process.env[TEMPLATE_STORE_ENV] = url;
  return () => {
    pg.stop();
    rmSync(path.dirname(home), { recursive: true, force: true });
  };
}
