/**
 * One home's state, opened once per process: the vault, the audit log and the brakes, with the
 * per-process machinery they share (the audit group-commit queue, the digests this process wrote
 * last, the log follower, the vault head writes). The broker and serve's handler receive it as a
 * dependency. On the team store (#19) the home is a working copy of a shared PostgreSQL store:
 * `sync` (src/store/sync.ts) brings what other instances wrote into the home's files and sends
 * this process's writes to the store under the store's locks, so the same code reads and checks
 * both stores.
 *
 * Which side of the trust boundary each read is on is in its type: `vault.read()` is a
 * `VaultFile` (unchecked: it may only narrow access), a file whose MAC was checked is a
 * `VerifiedVault`; audit entries are `Authenticated<T>` or `Unverified<T>`; brakes are never
 * authenticated and only ever narrow.
 */
import { FileAuditLog } from './audit.ts';
import { FileBrakes } from './brakes.ts';
import type { Home } from './home.ts';
import type { StoreSync } from './store/sync.ts';
import { FileVault } from './vault.ts';

export interface State {
  readonly home: Home;
  readonly vault: FileVault;
  readonly audit: FileAuditLog;
  readonly brakes: FileBrakes;
  /** The team store this home is kept in step with; null: the home's files are the store. */
  readonly sync: StoreSync | null;
}

export interface StateOptions {
  /**
   * A long-lived process (serve) that reads the vault before every request: `vault.read()`
   * returns the same frozen object while the file is unchanged.
   */
  cached?: boolean;
  /** The team store (cmd/store_sync.ts opens it); absent: the file store. */
  sync?: StoreSync | null;
}

export function openState(home: Home, options: StateOptions = {}): State {
  const sync = options.sync ?? null;
  const audit = new FileAuditLog(home, { sync });
  const brakes = new FileBrakes(home, audit, sync);
  const vault = new FileVault(home, audit, brakes, { cached: options.cached === true, sync });
  return { home, vault, audit, brakes, sync };
}
