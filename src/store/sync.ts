/**
 * A home kept in step with the team store (#19): what the State's file stores call when the home
 * is a working copy of a shared PostgreSQL store (src/store/replica.ts implements it). Nothing
 * here loads the database client.
 *
 * Trust: everything a pull brings in becomes the home's files (the vault document, audit lines,
 * brake records and journal lines, byte for byte) and is read by the same code as any file, on the
 * same side of the line: `VaultFile` until its MAC is checked, audit entries `Checked<T>`, brakes
 * never authenticated. A database edit is therefore found as a file edit is (exit 8), and a row
 * the database adds can only narrow access, as a file the agent writes can.
 */
import type { Home } from '../home.ts';

/** The store's lock on the shared trail for one group commit (the audit lock's counterpart). */
export interface StoreAppend {
  /**
   * Inserts the batch's lines (numbered after what the pull brought in) and commits. Until it
   * returns nothing of the batch exists anywhere; when it throws (exit 6) nothing was committed.
   */
  commit(lines: readonly string[]): Promise<void>;
  /** Rolls back when not committed, and lets the next writer in. */
  release(): Promise<void>;
}

/** The store's vault lock (the vault lock's counterpart), held by one writer on any machine. */
export interface StoreVaultLock {
  /**
   * Writes the vault document as saved in the home (each save under the lock, in order); with
   * `announce`, every instance is told to pull now (a change, not a head moving forward).
   */
  push(document: Uint8Array, options: { announce: boolean }): Promise<void>;
  release(): Promise<void>;
}

export interface StoreSync {
  /** The store's location with any password removed: what messages show. */
  readonly location: string;
  /**
   * Brings the home up to the store: brake records and journal lines (no lock: they only narrow),
   * then the vault document (left for the next pull while a vault writer of this home holds its
   * lock), then the audit entries after the home's last one.
   */
  pull(home: Home): Promise<void>;
  /** Called under the home's audit lock: takes the store's, and brings in newer entries. */
  appendLock(auditDir: Home): Promise<StoreAppend>;
  /** Called under the home's vault lock: takes the store's, and brings in its vault document. */
  /**
   * With `entries`, the store's audit entries are brought in too (under the home's audit lock), so
   * a rollback check on the document sees every change recorded after its head: for changes.
   * Head writes go without (serve's appends bring the entries in with every batch).
   */
  vaultLock(home: Home, options: { entries: boolean }): Promise<StoreVaultLock>;
  /** A brake placed in the home: its record and journal line into the store, then a notification. */
  pushBrake(name: string, record: string, journalLine: string): Promise<void>;
  /** Lifted brake records tidied from the home are tidied from the store too. */
  dropBrakes(names: readonly string[]): Promise<void>;
  /**
   * serve: pulls when another instance announces a change (LISTEN) and at least every
   * `intervalMs`, so a brake reaches this home within one second; `onError` hears a failed pull.
   * `ready` settles once this instance is registered in the store (`store status` lists it), or
   * its registration failed (told to `onError`).
   */
  watch(home: Home, options: { intervalMs: number; onError(e: unknown): void }): {
    ready: Promise<void>;
    stop(): Promise<void>;
  };
  close(): Promise<void>;
}
