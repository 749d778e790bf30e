/**
 * `--store URL` (or TRUST_PROTOCOL_STORE) for every command but `store` and `init` (#19): the home
 * becomes this machine's working copy of the team store. Opened before the command runs, after
 * a pull that brings the home up to the store; closed after it. The database client is loaded
 * only when a store is named.
 */
import { usage } from '../src/errors.ts';
import { openHome } from '../src/home.ts';
import type { StoreSync } from '../src/store/sync.ts';
import { hasPassword, isPostgresUrl } from '../src/store/url.ts';
import { type Ctx, str } from './context.ts';

export const STORE_ENV = 'TRUST_PROTOCOL_STORE';

/** The team store named by `--store`, else TRUST_PROTOCOL_STORE; null: the home's files. */
export function storeUrl(ctx: Ctx): string | null {
  const flag = str(ctx, 'store');
  const env = ctx.io.env[STORE_ENV];
  const text = flag ?? (env === '' ? undefined : env);
  if (text === undefined) return null;
  const where = flag !== undefined ? '--store' : STORE_ENV;
  if (!isPostgresUrl(text)) {
    throw usage(
      'bad_store',
      `${where} must be postgres://... for this command`,
      text.startsWith('file:') ? 'a file store is a home: use --home DIR' : undefined,
    );
  }
  // A command line is readable by every user's processes (ps): no secret goes there.
  if (flag !== undefined && hasPassword(text)) {
    throw usage(
      'store_password_in_argv',
      '--store names a database password, which other processes can read on the command line',
      `leave it out of the URL and set PGPASSWORD (or name the whole store in ${STORE_ENV})`,
    );
  }
  return text;
}

/** Opens the team store when one is named, and brings the home (created if need be) up to it. */
export async function openStoreSync(ctx: Ctx): Promise<StoreSync | null> {
  const url = storeUrl(ctx);
  if (url === null) return null;
  const { openReplica } = await import('../src/store/replica.ts');
  const sync = await openReplica(url);
  try {
    await sync.pull(openHome(ctx.homeDir, { create: true }));
  } catch (e) {
    await sync.close();
    throw e;
  }
  return sync;
}
