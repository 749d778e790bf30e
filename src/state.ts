/**
 * One home's state, opened once per process: the vault, the audit log and the brakes, with the
 * per-process machinery they share (the audit group-commit queue, the digests this process wrote
 * last, the log follower, the vault head writes). The broker and serve's handler receive it as a
 * dependency; a second implementation (the team store, #19) will plug in here.
 *
 * Which side of the trust boundary each read is on is in its type: `vault.read()` is a
 * `VaultFile` (unchecked: it may only narrow access), a file whose MAC was checked is a
 * `VerifiedVault`; audit entries are `Authenticated<T>` or `Unverified<T>`; brakes are never
 * authenticated and only ever narrow.
 */
import { FileAuditLog } from './audit.ts';
import { FileBrakes } from './brakes.ts';
import type { Home } from './home.ts';
import { FileVault } from './vault.ts';

export interface State {
  readonly home: Home;
  readonly vault: FileVault;
  readonly audit: FileAuditLog;
  readonly brakes: FileBrakes;
}

export interface StateOptions {
  /**
   * A long-lived process (serve) that reads the vault before every request: `vault.read()`
   * returns the same frozen object while the file is unchanged.
   */
  cached?: boolean;
}

export function openState(home: Home, options: StateOptions = {}): State {
  const audit = new FileAuditLog(home);
  const brakes = new FileBrakes(home, audit);
  const vault = new FileVault(home, audit, brakes, { cached: options.cached === true });
  return { home, vault, audit, brakes };
}
