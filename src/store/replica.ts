/**
 * The team store on PostgreSQL as a `StoreSync` (src/store/sync.ts): the home is this instance's
 * working copy, the database the shared record (schema 1, src/store/schema.ts). Design and what
 * it costs: docs/decisions.md, "The team store on PostgreSQL: the home as a working copy".
 *
 * - Audit appends take a transaction-scoped advisory lock (one writer at a time on every machine),
 *   bring in what others appended, and insert the batch; the commit is the durable record, and
 *   only then is the batch written to the home's log. The unique `seq` and `prev` refuse a writer
 *   that bypassed the lock instead of letting it fork the trail.
 * - Vault writes take a session advisory lock; each save is an UPDATE on that session, so the
 *   "change in flight" save is in the store before the change's audit entries, as on disk.
 * - Brakes: record and journal line in one transaction with `NOTIFY tp_changes`; serve LISTENs and
 *   also pulls every `intervalMs`, so a lost notification costs at most that long.
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { Buffer } from 'node:buffer';
import { appendReplicated, auditHome, lineDigest, trailHead } from '../audit.ts';
import { mergeStoredBrakes } from '../brakes.ts';
import { integrity, TpError } from '../errors.ts';
import { type Home, readStateFile, subdir, withLock, writeStateFile } from '../home.ts';
import { parseVault, VAULT_FILE } from '../vault.ts';
import { auditRow } from './image.ts';
import { checkSchema, connect, storeError } from './postgres.ts';
import { redactUrl } from './url.ts';
import type { StoreAppend, StoreSync, StoreVaultLock } from './sync.ts';

type Sql = import('postgres').Sql;
type Reserved = import('postgres').ReservedSql;

/** Advisory lock keys (store migrate takes 7219). */
const AUDIT_LOCK = 7220;
const VAULT_LOCK = 7221;
const BRAKE_LOCK = 7222;
const CHANNEL = 'tp_changes';
/** Entries brought in per query. */
const PAGE = 5000;
/** How long a pull waits for the home's vault lock before leaving the vault for the next. */
const VAULT_WAIT_MS = 1_000;

export async function openReplica(url: string): Promise<StoreSync> {
  const sql = await connect(url, { max: 8 });
  try {
    await checkSchema(sql);
  } catch (e) {
    await sql.end({ timeout: 1 }).catch(() => {});
    throw storeError(e, url);
  }
  return new PgReplica(url, sql);
}

class PgReplica implements StoreSync {
  readonly location: string;
  #url: string;
  #sql: Sql;

  constructor(url: string, sql: Sql) {
    this.#url = url;
    this.location = redactUrl(url);
    this.#sql = sql;
  }

  async pull(home: Home): Promise<void> {
    try {
      // Brakes first: they take no lock (they only narrow), so a vault writer waiting for the
      // store's lock (held by a hung process elsewhere, up to lock_timeout) never holds them up.
      await this.#pullBrakes(home);
      // The vault before the entries: every entry its head names is in the store before it was
      // saved, so the entries brought in next reach at least that far.
      const [row] = await this.#sql<{ document: string }[]>`
        SELECT document FROM vault WHERE id = 1`;
      if (row === undefined) throw integrity('store_tampered', 'the store has no vault row');
      try {
        await withLock(home, 'vault', () => _takeNewer(home, row.document), {
          timeoutMs: VAULT_WAIT_MS,
        });
      } catch (e) {
        // A vault writer of this home holds the lock: under the store's lock it brings the
        // store's document in itself. The home's stays as it is for now (older entries than
        // those pulled next name no more than it does); the next pull tries again.
        if (!(e instanceof TpError && e.code === 'lock_timeout')) throw e;
      }
      const dir = auditHome(home);
      subdir(home, 'audit', { create: true });
      await withLock(dir, 'audit', () => this.#pullAudit(this.#sql, dir), { timeoutMs: 30_000 });
    } catch (e) {
      throw storeError(e, this.#url);
    }
  }

  async appendLock(auditDir: Home): Promise<StoreAppend> {
    let conn: Reserved | null = null;
    let head = { seq: 0, digest: '' };
    try {
      conn = await this.#sql.reserve();
      await conn`BEGIN`;
      await conn`SELECT pg_advisory_xact_lock(${AUDIT_LOCK})`;
      head = await this.#pullAudit(conn, auditDir);
    } catch (e) {
      if (conn !== null) await _end(conn, false);
      throw storeError(e, this.#url);
    }
    const held = conn;
    let open = true;
    return {
      commit: async (lines) => {
        // The batch was chained on the home's log, which the agent can write while the lock is
        // held: it must continue the store's last entry as this lock found it, or a line the
        // agent slipped in would leave a gap in the shared trail that every instance refuses.
        const first = lines[0] === undefined ? null : auditRow(lines[0], null);
        if (first !== null && (first.seq !== head.seq + 1 || first.prev !== head.digest)) {
          throw integrity(
            'store_diverged',
            `this home's audit log changed while entry ${head.seq + 1} was being appended`,
            "check who writes the home's audit log; nothing was stored or written",
          );
        }
        try {
          for (let i = 0; i < lines.length; i += PAGE) {
            const rows = lines.slice(i, i + PAGE).map((line) => auditRow(line, null));
            await held`INSERT INTO audit_entries ${
              held(rows, 'seq', 'segment', 'prev', 'mac', 'line')
            }`;
          }
          await held`COMMIT`;
          open = false;
        } catch (e) {
          throw storeError(e, this.#url);
        }
      },
      release: async () => {
        await _end(held, open);
        open = false;
      },
    };
  }

  async vaultLock(home: Home, options: { entries: boolean }): Promise<StoreVaultLock> {
    let conn: Reserved | null = null;
    /** The store's generation: each save pushed under the lock must be newer. */
    let generation = -1;
    try {
      conn = await this.#sql.reserve();
      await conn`SELECT pg_advisory_lock(${VAULT_LOCK})`;
      const [row] = await conn<{ document: string }[]>`SELECT document FROM vault WHERE id = 1`;
      if (row === undefined) throw integrity('store_tampered', 'the store has no vault row');
      // Under both locks the store's document is the newest: it replaces the home's.
      generation = _generation(row.document);
      const local = readStateFile(home, VAULT_FILE);
      if (local === null || Buffer.from(local).toString('utf8') !== row.document) {
        writeStateFile(home, VAULT_FILE, row.document);
      }
      // And the entries: the rollback check on this document (changes recorded after its head)
      // reads them from the home, so the home must hold every entry the store has.
      if (options.entries) {
        const dir = auditHome(home);
        subdir(home, 'audit', { create: true });
        const reader = conn;
        await withLock(dir, 'audit', () => this.#pullAudit(reader, dir), { timeoutMs: 30_000 });
      }
    } catch (e) {
      if (conn !== null) await _unlock(conn);
      throw storeError(e, this.#url);
    }
    const held = conn;
    return {
      push: async (document, options) => {
        const text = Buffer.from(document).toString('utf8');
        // Every save under the lock starts from the store's document and moves the generation
        // on: an older one (vault.json replaced under the lock by an older copy) would roll every
        // instance back, and is refused instead.
        const next = _generation(text);
        if (next <= generation) {
          throw integrity(
            'vault_rollback',
            `the vault document to store (generation ${next}) is not newer than the store's (${generation})`,
            "vault.json was replaced while this change was made: check who wrote it; the store's document was kept",
          );
        }
        try {
          await held`BEGIN`;
          try {
            await held`UPDATE vault SET document = ${text} WHERE id = 1`;
            if (options.announce) await held`SELECT pg_notify(${CHANNEL}, 'vault')`;
            await held`COMMIT`;
          } catch (e) {
            await held`ROLLBACK`.catch(() => {});
            throw e;
          }
          generation = next;
        } catch (e) {
          throw storeError(e, this.#url);
        }
      },
      release: () => _unlock(held),
    };
  }

  async pushBrake(name: string, record: string, journalLine: string): Promise<void> {
    try {
      await this.#sql.begin(async (tx) => {
        await tx`SELECT pg_advisory_xact_lock(${BRAKE_LOCK})`;
        await tx`INSERT INTO brakes (name, record) VALUES (${name}, ${record})
                 ON CONFLICT (name) DO UPDATE SET record = EXCLUDED.record`;
        await tx`INSERT INTO brake_journal_present (id) VALUES (1) ON CONFLICT DO NOTHING`;
        await tx`INSERT INTO brake_journal (n, line)
                 SELECT coalesce(max(n), 0) + 1, ${journalLine} FROM brake_journal`;
        await tx`SELECT pg_notify(${CHANNEL}, 'brake')`;
      });
    } catch (e) {
      throw storeError(e, this.#url);
    }
  }

  async dropBrakes(names: readonly string[]): Promise<void> {
    if (names.length === 0) return;
    try {
      await this.#sql`DELETE FROM brakes WHERE name IN ${this.#sql(names as string[])}`;
    } catch (e) {
      throw storeError(e, this.#url);
    }
  }

  watch(
    home: Home,
    options: { intervalMs: number; onError(e: unknown): void },
  ): { ready: Promise<void>; stop(): Promise<void> } {
    const instance = `srv_${Buffer.from(randomBytes(8)).toString('hex')}`;
    // Registered at once, and seen again after every pull (`store status` shows when).
    const register = () =>
      this.#sql`
        INSERT INTO serve_registrations (instance, host, pid, started_at, seen_at)
        VALUES (${instance}, ${hostname()}, ${process.pid}, now(), now())
        ON CONFLICT (instance) DO UPDATE SET seen_at = now()`;
    const ready = register().then(() => {}, (e) => options.onError(storeError(e, this.#url)));
    let running: Promise<void> | null = null;
    let again = false;
    let stopped = false;
    const pull = () => {
      if (stopped) return;
      if (running !== null) {
        again = true;
        return;
      }
      running = (async () => {
        do {
          again = false;
          try {
            await this.pull(home);
            await register();
          } catch (e) {
            options.onError(e);
          }
        } while (again && !stopped);
        running = null;
      })();
    };
    // A brake announced is brought in at once, not behind a pull waiting for a lock.
    let braking: Promise<void> = Promise.resolve();
    const pullBrakes = () => {
      braking = braking.then(() => this.#pullBrakes(home)).catch((e) =>
        options.onError(storeError(e, this.#url))
      );
    };
    const timer = setInterval(pull, options.intervalMs);
    timer.unref?.();
    const announced = (payload: string) => {
      if (payload === 'brake') pullBrakes();
      pull();
    };
    const listening = this.#sql.listen(CHANNEL, announced).catch((e) => {
      options.onError(storeError(e, this.#url));
      return null;
    });
    return {
      ready,
      stop: async () => {
        stopped = true;
        clearInterval(timer);
        await (await listening)?.unlisten().catch(() => {});
        await ready;
        await running;
        await braking;
        await this.#sql`DELETE FROM serve_registrations WHERE instance = ${instance}`
          .catch(() => {});
      },
    };
  }

  async close(): Promise<void> {
    await this.#sql.end({ timeout: 1 }).catch(() => {});
  }

  /**
   * Under the home's audit lock: the store's entries after the home's last one, appended to the
   * home's log. The home's last entry must be the store's entry of that number: a home that was
   * written without the store (or a store rolled back) is refused, never merged. Returns the
   * store's last entry (number and digest) as found.
   */
  async #pullAudit(sql: Sql | Reserved, dir: Home): Promise<{ seq: number; digest: string }> {
    let head = trailHead(dir);
    if (head.seq > 0) {
      const [at] = await sql<{ line: string }[]>`
        SELECT line FROM audit_entries WHERE seq = ${head.seq}`;
      if (at === undefined || lineDigest(at.line) !== head.digest) {
        throw integrity(
          'store_diverged',
          at === undefined
            ? `this home's audit trail has entry ${head.seq}, which the store lacks`
            : `this home's audit entry ${head.seq} differs from the store's`,
          'the home was written without the store (or the store was rolled back): move the home aside and pull a fresh one (`--home NEW --store URL`), then compare them with `audit verify`',
        );
      }
    }
    for (;;) {
      const rows = await sql<{ line: string }[]>`
        SELECT line FROM audit_entries WHERE seq > ${head.seq} ORDER BY seq LIMIT ${PAGE}`;
      if (rows.length === 0) return head;
      appendReplicated(dir, rows.map((r) => r.line));
      // appendReplicated checked the rows continue the head one by one: the store's head now
      // (not the home's log read again: the agent may be writing it).
      const last = rows[rows.length - 1]!.line;
      head = { seq: head.seq + rows.length, digest: lineDigest(last) as string };
      if (rows.length < PAGE) return head;
    }
  }

  async #pullBrakes(home: Home): Promise<void> {
    const records = await this.#sql<{ name: string; record: string }[]>`
      SELECT name, record FROM brakes ORDER BY name`;
    const journal = await this.#sql<{ line: string }[]>`SELECT line FROM brake_journal ORDER BY n`;
    mergeStoredBrakes(home, records, journal.map((j) => j.line));
  }
}

/**
 * The store's vault document replaces the home's when it is newer: a higher generation, or the
 * same generation with other bytes. An older one (a pull that raced a save of this home) is left.
 */
function _takeNewer(home: Home, document: string): void {
  const local = readStateFile(home, VAULT_FILE);
  if (local !== null && Buffer.from(local).toString('utf8') === document) return;
  if (local !== null && _generation(document) < _generation(local)) return;
  writeStateFile(home, VAULT_FILE, document);
}

/** A vault document's generation, not authenticated (-1: not a vault document). */
function _generation(document: string | Uint8Array): number {
  try {
    return parseVault(typeof document === 'string' ? Buffer.from(document, 'utf8') : document)
      .body.generation;
  } catch {
    return -1;
  }
}

async function _end(conn: Reserved, rollback: boolean): Promise<void> {
  if (rollback) await conn`ROLLBACK`.catch(() => {});
  conn.release();
}

async function _unlock(conn: Reserved): Promise<void> {
  await conn`SELECT pg_advisory_unlock(${VAULT_LOCK})`.catch(() => {});
  conn.release();
}
