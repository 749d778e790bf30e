/**
 * `store migrate` and `store status` (#19, SPEC §15): a home copied between the file store and
 * the PostgreSQL team store, verified on arrival. The `postgres` client loads only through
 * src/store/postgres.ts, on first use: no other command loads it.
 */
import { Buffer } from 'node:buffer';
import { integrity, usage } from '../../src/errors.ts';
import { openHome } from '../../src/home.ts';
import {
  type HomeImage,
  imageDifference,
  readHomeImage,
  verifyImage,
  writeHomeImage,
} from '../../src/store/image.ts';
import {
  readDbImage,
  type ServeInstance,
  withStore,
  writeDbImage,
} from '../../src/store/postgres.ts';
import { hasPassword, isPostgresUrl, redactUrl } from '../../src/store/url.ts';
import { parseVault, unseal, verifyVault, wipeKeys } from '../../src/vault.ts';
import { adminName, type Command, type Ctx, PASSWORD_FILE_OPTION, str } from '../context.ts';
import { readPassword } from '../secrets.ts';

type Location = { kind: 'file'; dir: string } | { kind: 'postgres'; url: string };

const STORE_FLAG = {
  store: {
    type: 'string',
    value: 'URL',
    help:
      'the store to read: postgres://USER@HOST/DB (or ?host=/socket/dir) or file:DIR (default: TRUST_PROTOCOL_STORE, else the home); the password from PGPASSWORD, never in the URL',
  },
} as const;

/** Where the source store is named outside the command line (it may hold a password). */
const STORE_ENV = 'TRUST_PROTOCOL_STORE';

function _location(text: string, flag: string): Location {
  if (isPostgresUrl(text)) {
    // A command line is readable by every user's processes (ps): no secret goes there.
    if (flag !== STORE_ENV && hasPassword(text)) {
      throw usage(
        'store_password_in_argv',
        `${flag} names a database password, which other processes can read on the command line`,
        `leave it out of the URL and set PGPASSWORD${
          flag === '--store' ? ` (or name the whole source in ${STORE_ENV})` : ''
        }`,
      );
    }
    return { kind: 'postgres', url: text };
  }
  if (text.startsWith('file:') && text.length > 5) return { kind: 'file', dir: text.slice(5) };
  throw usage(
    'bad_store',
    `${flag} must be postgres://... or file:DIR`,
    'for example --to postgres://tp@db.internal/trust or --to file:/srv/tp-home',
  );
}

function _source(ctx: Ctx): Location {
  const s = str(ctx, 'store');
  if (s !== undefined) return _location(s, '--store');
  const env = ctx.io.env[STORE_ENV];
  return env === undefined || env === ''
    ? { kind: 'file', dir: ctx.homeDir }
    : _location(env, STORE_ENV);
}

function _where(l: Location): string {
  return l.kind === 'file' ? l.dir : redactUrl(l.url);
}

async function _read(
  l: Location,
): Promise<{ image: HomeImage; schemaVersion: number | null; instances: ServeInstance[] }> {
  if (l.kind === 'file') {
    const image = readHomeImage(openHome(l.dir, { create: false }));
    return { image, schemaVersion: null, instances: [] };
  }
  return await withStore(l.url, (sql) => readDbImage(sql));
}

function _sameCopy(source: HomeImage, copy: HomeImage): void {
  const diff = imageDifference(source, copy);
  if (diff !== null) {
    throw integrity(
      'store_copy_mismatch',
      `the copy read back differs from the source in ${diff}`,
      'nothing was committed; try again, and check the target',
    );
  }
}

const migrate: Command = {
  words: ['store', 'migrate'],
  ownsStore: true,
  summary: 'copy a home into an empty PostgreSQL database (or back to files) and verify the copy',
  usage: 'store migrate --to postgres://...|file:DIR [--store URL]',
  help: 'Copies the vault, the audit log (segments, tree), brakes and other state files as they\n' +
    'are: the database sees ciphertext and MACed rows only. The target must be empty. The copy\n' +
    'is read back and checked before it is committed: byte for byte against the source, then\n' +
    "the audit chain, the audit MACs and the vault's MAC (hence the password). A connection\n" +
    'string may hold a password: it is never printed. Serve does not run on PostgreSQL yet.',
  options: {
    ...PASSWORD_FILE_OPTION,
    to: { type: 'string', value: 'URL', help: 'the target: postgres://... or file:DIR' },
    ...STORE_FLAG,
  },
  examples: [
    'trust-protocol store migrate --to postgres://tp@db.internal/trust',
    'trust-protocol store migrate --store postgres://tp@db.internal/trust --to file:/srv/tp-home',
  ],
  args: { min: 0, max: 0 },
  async run(ctx) {
    const toText = str(ctx, 'to');
    if (toText === undefined) throw usage('bad_flag', '--to URL is required');
    const target = _location(toText, '--to');
    const source = _source(ctx);
    const { image } = await _read(source);
    const password = await readPassword(ctx.io, { passwordFile: str(ctx, 'password-file') });
    let keys;
    try {
      keys = unseal(parseVault(Buffer.from(image.vault, 'utf8')), password, {
        admin: adminName(ctx),
      });
    } finally {
      password.fill(0);
    }
    try {
      // Every audit key of the vault: entries up to a `vault rekey` are MACed under older ones.
      const macKey = keys.auditKeys;
      const { result } = verifyImage(image, macKey);
      const check = (copy: HomeImage) => {
        _sameCopy(image, copy);
        verifyImage(copy, macKey);
        // The copy's vault MAC, checked under the keys the source's vault gave.
        verifyVault(parseVault(Buffer.from(copy.vault, 'utf8')), keys);
      };
      if (target.kind === 'postgres') {
        await withStore(
          target.url,
          (sql) => writeDbImage(sql, image, async (readBack) => check(await readBack())),
        );
      } else {
        writeHomeImage(target.dir, image, (home) => check(readHomeImage(home)));
      }
      const where = _where(target);
      return {
        json: { from: _where(source), to: where, entries: result.entries, verified: true },
        text:
          `Copied ${_where(source)} to ${where}: ${result.entries} audit entr${
            result.entries === 1 ? 'y' : 'ies'
          }, ` +
          `the vault and the brakes; the copy verifies (chain, MACs, vault MAC).\n`,
        informational: true,
      };
    } finally {
      wipeKeys(keys);
    }
  },
};

const status: Command = {
  words: ['store', 'status'],
  ownsStore: true,
  summary: 'show where the state is and whether its audit chain holds (no password needed)',
  usage: 'store status [--store URL]',
  help: 'Reads the home (or --store) and checks the audit chain and the head the vault records,\n' +
    'without the password: the MACs are not checked (`store migrate` checks them).',
  options: { ...PASSWORD_FILE_OPTION, ...STORE_FLAG },
  examples: [
    'trust-protocol store status',
    'trust-protocol store status --store postgres://tp@db.internal/trust',
  ],
  args: { min: 0, max: 0 },
  async run(ctx) {
    const source = _source(ctx);
    const { image, schemaVersion, instances } = await _read(source);
    const { vault, result } = verifyImage(image, null);
    const segments = new Set(image.audit.map((r) => r.segment).filter((s) => s !== null)).size;
    const json = {
      store: { kind: source.kind, location: _where(source) },
      schema_version: schemaVersion,
      vault_format: vault.version,
      entries: image.audit.length,
      segments,
      brakes: image.brakes.length,
      ...(source.kind === 'postgres' ? { serves: instances } : {}),
      verification: {
        ok: result.ok,
        hmac_checked: false,
        head: result.head,
      },
    };
    const text = `Store:    ${source.kind} ${_where(source)}\n` +
      (schemaVersion === null ? '' : `Schema:   version ${schemaVersion}\n`) +
      `Vault:    format version ${vault.version}\n` +
      `Audit:    ${image.audit.length} entries${
        segments > 0 ? ` in ${segments} closed segment(s) and the live log` : ''
      }\n` +
      `Brakes:   ${image.brakes.length} record(s)\n` +
      (source.kind === 'postgres'
        ? `Serves:   ${instances.length} running${
          instances.map((i) =>
            `\n          ${i.host} pid ${i.pid} since ${i.started_at}, seen ${i.seen_at}`
          )
            .join('')
        }\n`
        : '') +
      `Verified: chain and recorded head intact (MACs not checked without the password)\n`;
    return { json, text };
  },
};

export const storeCommands: Command[] = [migrate, status];
