/**
 * The team store's PostgreSQL side (#19), first slice: schema version 1, and a home image written
 * into an empty database or read back from one. The client (npm `postgres`) is imported here on
 * first use only, so no other command pays for loading it.
 *
 * The database is as untrusted as the disk: rows hold the files' bytes (ciphertext, MACed
 * documents, MACed or chained audit lines), never a plaintext value or a key.
 */
import { Buffer } from 'node:buffer';
import { TpError, usage } from '../errors.ts';
import type { AuditRow, HomeImage } from './image.ts';
import { SCHEMA_V1, SCHEMA_VERSION } from './schema.ts';
import { redactUrl, splitPassword } from './url.ts';

// The client's types, without loading the module.
type Sql = import('postgres').Sql;
type Tx = import('postgres').TransactionSql;

/** Removes a connection string's password from a driver's message, in every form it may take. */
function _scrub(message: string, url: string): string {
  const password = splitPassword(url)?.password ?? '';
  let out = message.replaceAll(url, redactUrl(url));
  if (password !== '') {
    let decoded = password;
    try {
      decoded = decodeURIComponent(password);
    } catch {
      // Not percent-encoded validly: the raw form is the one to hide.
    }
    for (const form of new Set([password, decoded])) out = out.replaceAll(form, '***');
  }
  return out;
}

/** A client for the store (no connection is made before the first query). */
export async function connect(url: string, options: { max: number }): Promise<Sql> {
  const { default: postgres } = await import('postgres');
  try {
    return postgres(url, {
      max: options.max,
      onnotice: () => {},
      connect_timeout: 10,
      // Only a loud failure: the client retries nothing on its own. A lock held by a process that
      // hangs (stopped, not dead: its session lives on) fails its waiters after 10 s (exit 6)
      // instead of stopping every writer for good; shorter than the home's own lock timeout
      // (30 s), so a writer of this home waiting on the store gives up, and releases the home's
      // lock, before the home's next writer (serve's head write) would fail for good.
      connection: { application_name: 'trust-protocol', lock_timeout: 10_000 },
    });
  } catch (e) {
    throw usage(
      'bad_store',
      `not a usable connection string: ${_scrub(_message(e), url)}`,
      'use postgres://USER@HOST/DATABASE or postgres://USER@/DATABASE?host=/socket/dir',
    );
  }
}

/** What the driver or the server threw, as exit 6 with the password removed; TpErrors pass. */
export function storeError(e: unknown, url: string): TpError {
  if (e instanceof TpError) return e;
  return new TpError(
    'audit',
    'store_unavailable',
    `the database at ${redactUrl(url)} failed: ${_scrub(_message(e), url)}`,
    {
      hint:
        'check that PostgreSQL is running and reachable; nothing was committed (the transaction rolled back)',
    },
  );
}

/**
 * Runs `work` with a connection, and turns what the driver or the server throws into exit 6: the
 * store cannot be used, nothing was committed (a transaction that did not commit rolled back).
 */
export async function withStore<T>(url: string, work: (sql: Sql) => Promise<T>): Promise<T> {
  const sql = await connect(url, { max: 1 });
  try {
    return await work(sql);
  } catch (e) {
    throw storeError(e, url);
  } finally {
    await sql.end({ timeout: 1 }).catch(() => {});
  }
}

function _message(e: unknown): string {
  const m = e instanceof Error ? e.message : String(e);
  const code = (e as { code?: unknown }).code;
  return typeof code === 'string' && !m.includes(code) ? `${m} (${code})` : m;
}

/** Names of the tables in the current schema: an empty database has none. */
async function _tables(sql: Sql | Tx): Promise<string[]> {
  const rows = await sql<{ tablename: string }[]>`
    SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename`;
  return rows.map((r) => r.tablename);
}

const CHUNK = 500;

/**
 * Creates schema version 1 and copies the image into it, in one transaction; `check` reads the
 * copy back inside that transaction, so a copy that does not verify is never committed.
 */
export async function writeDbImage(
  sql: Sql,
  image: HomeImage,
  check: (read: () => Promise<HomeImage>) => Promise<void>,
): Promise<void> {
  await sql.begin(async (tx) => {
    // Taken first, so that two migrations into one database cannot both find it empty.
    await tx`SELECT pg_advisory_xact_lock(7219)`;
    const existing = await _tables(tx);
    if (existing.length > 0) {
      throw usage(
        'store_not_empty',
        `the database is not empty (it has ${existing.length} table(s), e.g. ${existing[0]})`,
        'migrate into a new, empty database (createdb NAME); nothing was written',
      );
    }
    for (const statement of SCHEMA_V1) await tx.unsafe(statement);
    await tx`INSERT INTO schema_version (version) VALUES (${SCHEMA_VERSION})`;
    await tx`INSERT INTO vault (id, document) VALUES (1, ${image.vault})`;
    for (let i = 0; i < image.audit.length; i += CHUNK) {
      const rows = image.audit.slice(i, i + CHUNK).map((r) => ({
        seq: r.seq,
        segment: r.segment,
        prev: r.prev,
        mac: r.mac,
        line: r.line,
      }));
      await tx`INSERT INTO audit_entries ${tx(rows, 'seq', 'segment', 'prev', 'mac', 'line')}`;
    }
    if (image.segmentIndex !== null) {
      await tx`INSERT INTO audit_segment_index (id, document) VALUES (1, ${image.segmentIndex})`;
    }
    for (const t of image.tree) {
      await tx`INSERT INTO audit_tree (name, data) VALUES (${t.name}, ${Buffer.from(t.data)})`;
    }
    for (const b of image.brakes) {
      await tx`INSERT INTO brakes (name, record) VALUES (${b.name}, ${b.record})`;
    }
    if (image.journal !== null) {
      await tx`INSERT INTO brake_journal_present (id) VALUES (1)`;
      for (let n = 0; n < image.journal.length; n++) {
        await tx`INSERT INTO brake_journal (n, line) VALUES (${n + 1}, ${image.journal[n]!})`;
      }
    }
    for (const f of image.files) {
      await tx`INSERT INTO home_files (path, content) VALUES (${f.path}, ${
        Buffer.from(f.content)
      })`;
    }
    await check(() => _read(tx));
  });
}

export interface DbInfo {
  schemaVersion: number;
  image: HomeImage;
  /** The serves running on the store (`serve_registrations`), as they registered themselves. */
  instances: ServeInstance[];
}

export interface ServeInstance {
  instance: string;
  host: string;
  pid: number;
  started_at: string;
  seen_at: string;
}

/** Reads the whole store back as an image; a database without our schema is refused (exit 8). */
export async function readDbImage(sql: Sql): Promise<DbInfo> {
  return await sql.begin('isolation level repeatable read read only', async (tx) => {
    const schemaVersion = await checkSchema(tx);
    const instances = await tx<
      Array<{ instance: string; host: string; pid: number; started_at: Date; seen_at: Date }>
    >`
      SELECT instance, host, pid, started_at, seen_at FROM serve_registrations ORDER BY started_at`;
    return {
      schemaVersion,
      image: await _read(tx),
      instances: instances.map((i) => ({
        instance: i.instance,
        host: i.host,
        pid: i.pid,
        started_at: new Date(i.started_at).toISOString(),
        seen_at: new Date(i.seen_at).toISOString(),
      })),
    };
  });
}

/** The store's schema version, when it is the one this build reads; otherwise exit 8. */
export async function checkSchema(tx: Sql | Tx): Promise<number> {
  const tables = await _tables(tx);
  if (!tables.includes('schema_version')) {
    throw new TpError(
      'integrity',
      'store_schema',
      tables.length === 0
        ? 'the database holds no trust-protocol store (it is empty)'
        : 'the database holds no trust-protocol store (no schema_version table)',
      { hint: 'copy a home into it with `trust-protocol store migrate --to URL`' },
    );
  }
  const versions = await tx<{ version: number }[]>`SELECT version FROM schema_version`;
  const version = versions.length === 1 ? versions[0]!.version : -1;
  if (version !== SCHEMA_VERSION) {
    throw new TpError(
      'integrity',
      'store_schema',
      `the store's schema version is ${
        version < 0 ? 'missing' : version
      }, this trust-protocol reads ${SCHEMA_VERSION}`,
      { hint: 'use the trust-protocol version that wrote it, or upgrade' },
    );
  }
  return version;
}

async function _read(tx: Tx): Promise<HomeImage> {
  const vault = await tx<{ document: string }[]>`SELECT document FROM vault WHERE id = 1`;
  if (vault.length !== 1) {
    throw new TpError('integrity', 'store_tampered', 'the store has no vault row');
  }
  const audit = await tx<Array<Omit<AuditRow, 'seq'> & { seq: string }>>`
    SELECT seq, segment, prev, mac, line FROM audit_entries ORDER BY seq`;
  const index = await tx<{ document: string }[]>`
    SELECT document FROM audit_segment_index WHERE id = 1`;
  const tree = await tx<{ name: string; data: Uint8Array }[]>`
    SELECT name, data FROM audit_tree ORDER BY name COLLATE "C"`;
  const brakes = await tx<{ name: string; record: string }[]>`
    SELECT name, record FROM brakes ORDER BY name COLLATE "C"`;
  const journalPresent = await tx`SELECT 1 FROM brake_journal_present`;
  const journal = await tx<{ line: string }[]>`SELECT line FROM brake_journal ORDER BY n`;
  const files = await tx<{ path: string; content: Uint8Array }[]>`
    SELECT path, content FROM home_files ORDER BY path COLLATE "C"`;
  return {
    vault: vault[0]!.document,
    // bigint arrives as a string: seq stays below 2^53 (a safe integer), as in the file log.
    audit: audit.map((r) => ({ ...r, seq: Number(r.seq) })),
    segmentIndex: index.length === 0 ? null : index[0]!.document,
    tree: tree.map((t) => ({ name: t.name, data: new Uint8Array(t.data) })),
    brakes: brakes.map((b) => ({ name: b.name, record: b.record })),
    journal: journalPresent.length === 0 ? null : journal.map((j) => j.line),
    files: files.map((f) => ({ path: f.path, content: new Uint8Array(f.content) })),
  };
}
