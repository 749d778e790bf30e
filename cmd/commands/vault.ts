/** `init`, `status`, `passwd`, `vault rekey`. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { logTail } from '../../src/audit.ts';
import { SOCKET_NAME } from '../../src/serve/address.ts';
import { findServer } from '../../src/serve/client.ts';
import {
  checkKdfParams,
  KDF_DEFAULT,
  kdfImplementation,
  type KdfParams,
} from '../../src/crypto/kdf.ts';
import { usage } from '../../src/errors.ts';
import { type Home, openHome, readStateFile } from '../../src/home.ts';
import { openState } from '../../src/state.ts';
import { storeUrl } from '../store_sync.ts';
import { checkAdminName } from '../../src/admins.ts';
import { adminKdf, adminsOf, createVault, VAULT_FILE, wipeKeys } from '../../src/vault.ts';
import { type Command, type Ctx, PASSWORD_FILE_OPTION, str } from '../context.ts';
import { existingHome, unsealVault } from '../home_state.ts';
import { readPassword } from '../secrets.ts';

export function kdfParamsOf(ctx: Ctx): KdfParams {
  const parse = (name: string, fallback: number) => {
    const v = str(ctx, name);
    if (v === undefined) return fallback;
    if (!/^\d{1,9}$/.test(v)) {
      throw usage('bad_flag', `--${name} must be a whole number, got "${v}"`);
    }
    return Number(v);
  };
  return {
    memoryKib: parse('kdf-memory-mib', KDF_DEFAULT.memoryKib / 1024) * 1024,
    iterations: parse('kdf-iterations', KDF_DEFAULT.iterations),
    parallelism: 1,
  };
}

const init: Command = {
  words: ['init'],
  ownsStore: true,
  summary: 'create the encrypted vault',
  usage: 'init [--admin NAME] [--kdf-memory-mib N] [--kdf-iterations N] [--password-file PATH]',
  options: {
    'password-file': {
      type: 'string',
      value: 'PATH',
      help:
        'file holding the new master password (else TRUST_PROTOCOL_PASSWORD, else typed twice at a no-echo prompt); at least 8 bytes',
    },
    'kdf-memory-mib': {
      type: 'string',
      value: 'N',
      help: 'Argon2id memory in MiB (default 64, at least 19)',
    },
    'kdf-iterations': {
      type: 'string',
      value: 'N',
      help: 'Argon2id passes (default 3, at least 2)',
    },
  },
  examples: [
    'trust-protocol init',
    'trust-protocol init --password-file ~/.tp-password --kdf-memory-mib 256',
  ],
  args: { min: 0, max: 0 },
  async run(ctx) {
    if (storeUrl(ctx) !== null) {
      throw usage(
        'store_init',
        'a team store is not made by init',
        'init a home, then copy it into an empty database: `trust-protocol store migrate --to postgres://...`',
      );
    }
    const params = kdfParamsOf(ctx);
    const problem = checkKdfParams(params);
    if (problem !== null) {
      throw usage(
        'kdf_params',
        problem,
        'the floor is 19 MiB and 2 iterations; the default is 64 MiB and 3',
      );
    }
    const home = openHome(ctx.homeDir, { create: true });
    if (readStateFile(home, VAULT_FILE) !== null) {
      throw usage(
        'already_initialized',
        `a vault already exists in ${home.dir}`,
        'use `trust-protocol passwd` to change the password; nothing was changed',
      );
    }
    if (fs.existsSync(path.join(home.dir, 'audit', 'audit.log'))) {
      throw usage(
        'orphan_audit_log',
        `${home.dir} has an audit log but no vault`,
        'move the audit directory away (keep it as evidence) or use another --home',
      );
    }
    const password = await readPassword(ctx.io, {
      passwordFile: str(ctx, 'password-file'),
      isNew: true,
      prompt: 'New master password: ',
    });
    const admin = checkAdminName(str(ctx, 'admin') ?? 'owner');
    const { file, keys } = createVault(password, params, ctx.now(), { admin });
    password.fill(0);
    try {
      await openState(home).vault.init(file, keys, params);
    } finally {
      wipeKeys(keys);
    }
    return {
      json: {
        home: home.dir,
        kdf: {
          algorithm: 'argon2id',
          memory_mib: params.memoryKib / 1024,
          iterations: params.iterations,
          parallelism: 1,
        },
      },
      text: `Created the vault in ${home.dir} (Argon2id ${
        params.memoryKib / 1024
      } MiB, t=${params.iterations}).\n`,
      informational: true,
    };
  },
};

const status: Command = {
  words: ['status'],
  summary: 'show the state of the vault (no password needed)',
  usage: 'status',
  options: {},
  examples: ['trust-protocol status', 'trust-protocol status --json'],
  args: { min: 0, max: 0 },
  async run(ctx) {
    let initialized = false;
    let data: Record<string, unknown> = { home: ctx.homeDir, initialized };
    if (fs.existsSync(ctx.homeDir)) {
      const home = existingHome(ctx);
      initialized = readStateFile(home, VAULT_FILE) !== null;
      if (initialized) {
        const state = openState(home, { sync: ctx.sync ?? null });
        const file = state.vault.read();
        const anyDomain = file.body.credentials.filter((c) => c.any_domain).map((c) => c.name);
        const admins = adminsOf(file);
        const kdf = adminKdf(file, (admins[0] as { name: string }).name) as KdfParams;
        data = {
          home: home.dir,
          initialized,
          credentials: file.body.credentials.length,
          unrestricted_credentials: anyDomain,
          agents: file.body.agents.length,
          admins: admins.length,
          vault_format: file.version,
          active_agents: file.body.agents.filter((a) => a.state === 'active').length,
          audit: _auditStatus(home, file.body.audit_head),
          kdf: {
            algorithm: 'argon2id',
            memory_mib: kdf.memoryKib / 1024,
            iterations: kdf.iterations,
            implementation: kdfImplementation(),
          },
          brakes: state.brakes.active(file.body).map((b) => ({
            scope: b.scope,
            target: b.target,
            reason: b.reason,
            activated_at: b.activated_at,
          })),
          serve: await _serveStatus(home.dir),
        };
      } else {
        data = { home: home.dir, initialized };
      }
    }
    return { json: data, text: _statusText(data) };
  },
};

/** Whether a `serve` answers on the home's default socket (it needs no password to ask). */
async function _serveStatus(homeDir: string): Promise<{ socket: string } | null> {
  const socket = path.join(homeDir, SOCKET_NAME);
  if (!fs.existsSync(socket)) return null;
  return (await findServer(socket)) === null ? null : { socket };
}

/**
 * Read from the end of the log only (issue #16): the number of entries is the last complete
 * entry's sequence number (on an intact log, its number of lines; `audit verify` checks that).
 */
function _auditStatus(home: Home, head: { seq: number; hash: string } | null) {
  const { bytes, last } = logTail(home);
  const seq = last === null ? null : /^\{"v":\d+,"seq":(\d+),/.exec(last);
  return { entries: seq === null ? 0 : Number(seq[1]), bytes, recorded_head: head };
}

function _statusText(d: Record<string, unknown>): string {
  if (!d.initialized) return `home: ${d.home}\ninitialized: no (run \`trust-protocol init\`)\n`;
  const audit = d.audit as { entries: number; recorded_head: { seq: number; hash: string } | null };
  const kdf = d.kdf as { memory_mib: number; iterations: number; implementation: string };
  const unrestricted = d.unrestricted_credentials as string[];
  const head = audit.recorded_head;
  return [
    `home:        ${d.home}`,
    `initialized: yes`,
    `credentials: ${d.credentials}` +
    (unrestricted.length > 0 ? `  (UNRESTRICTED, any https host: ${unrestricted.join(', ')})` : ''),
    `agents:      ${d.agents} (${d.active_agents} active)`,
    `admins:      ${d.admins} (vault format ${d.vault_format})`,
    `audit:       ${audit.entries} entries; head recorded in the vault: ${
      head === null ? 'none' : `#${head.seq} ${head.hash.slice(0, 16)}…`
    }`,
    `brakes:      ${
      (d.brakes as Array<{ scope: string; target: string | null }>).map((b) =>
        b.scope === 'global' ? 'GLOBAL' : `${b.scope} ${b.target}`
      ).join(', ') || 'none'
    }`,
    `kdf:         argon2id ${kdf.memory_mib} MiB, t=${kdf.iterations} (${kdf.implementation})`,
    `serve:       ${
      d.serve === null ? 'not running' : `running on ${(d.serve as { socket: string }).socket}`
    }`,
  ].join('\n') + '\n';
}

/** `passwd` and `admin passwd`: the acting admin's own password (its key slot). */
export function passwdCommand(words: readonly string[]): Command {
  const name = words.join(' ');
  return {
    ...passwd,
    words,
    usage: passwd.usage.replace(/^passwd/, name),
    examples: passwd.examples.map((e) =>
      e.replace(/^trust-protocol passwd/, `trust-protocol ${name}`)
    ),
  };
}

const passwd: Command = {
  words: ['passwd'],
  summary: "change the acting admin's own password (credentials are not re-encrypted)",
  usage:
    'passwd [--password-file PATH] [--new-password-file PATH] [--kdf-memory-mib N] [--kdf-iterations N]',
  options: {
    'password-file': {
      type: 'string',
      value: 'PATH',
      help:
        'file holding the current master password (else TRUST_PROTOCOL_PASSWORD, else a no-echo prompt on a terminal)',
    },
    'new-password-file': {
      type: 'string',
      value: 'PATH',
      help:
        'file holding the new password (else typed twice at a no-echo prompt; never TRUST_PROTOCOL_PASSWORD)',
    },
    'kdf-memory-mib': {
      type: 'string',
      value: 'N',
      help:
        'new Argon2id memory in MiB (default 64, at least 19); with no --kdf flag the current settings stay',
    },
    'kdf-iterations': {
      type: 'string',
      value: 'N',
      help:
        'new Argon2id passes (default 3, at least 2); with no --kdf flag the current settings stay',
    },
  },
  examples: [
    'trust-protocol passwd',
    'trust-protocol passwd --password-file old.txt --new-password-file new.txt',
  ],
  args: { min: 0, max: 0 },
  async run(ctx) {
    const { state, file, keys } = await unsealVault(ctx);
    const params = (str(ctx, 'kdf-memory-mib') ?? str(ctx, 'kdf-iterations')) === undefined
      ? adminKdf(file, keys.admin.name) ?? KDF_DEFAULT
      : kdfParamsOf(ctx);
    const newFile = str(ctx, 'new-password-file');
    if (newFile === undefined && !ctx.io.isTerminal) {
      throw usage(
        'no_new_password',
        'the new password is needed: pass --new-password-file PATH or run in a terminal',
      );
    }
    const next = await readPassword({ ...ctx.io, env: {} }, {
      passwordFile: newFile,
      isNew: true,
      prompt: 'New master password: ',
    });
    try {
      await state.vault.changePassword(keys, next, params);
    } finally {
      next.fill(0);
      wipeKeys(keys);
    }
    return {
      json: { changed: true, admin: keys.admin.name },
      text: `Password of admin ${keys.admin.name} changed.\n`,
      informational: true,
    };
  },
};

const rekey: Command = {
  words: ['vault', 'rekey'],
  summary: 'replace the data key, after an admin was removed (owner only)',
  usage: 'vault rekey [--password-file PATH]',
  help: 'A new random data key: every credential value is encrypted again under it, and it is\n' +
    "sealed to every remaining admin's key slot (their passwords are unchanged and not needed).\n" +
    "A removed admin's copy of an older vault.json no longer opens anything added or rotated\n" +
    'afterwards; values they already saw stay known to them: rotate those at their providers.\n' +
    'Older audit entries stay verifiable (the vault keeps their key). Stop serve first and start\n' +
    'it again after: it holds the old keys. See docs/threat-model.md.',
  options: { ...PASSWORD_FILE_OPTION },
  examples: [
    'trust-protocol vault rekey',
    'trust-protocol vault rekey --password-file ~/.tp-password',
  ],
  args: { min: 0, max: 0 },
  async run(ctx) {
    // A running serve holds the old keys: what it appended after the rekey would not verify.
    const serve = await _serveStatus(ctx.homeDir);
    if (serve !== null) {
      throw usage(
        'serve_running',
        `serve is running on ${serve.socket}; nothing was changed`,
        'stop serve, run `trust-protocol vault rekey`, then start serve again',
      );
    }
    const { state, keys } = await unsealVault(ctx);
    let done: { admins: string[]; credentials: number };
    try {
      done = await state.vault.rekey(keys);
    } finally {
      wipeKeys(keys);
    }
    return {
      json: { rekeyed: true, admins: done.admins, credentials: done.credentials },
      text: `Vault rekeyed: ${done.credentials} credential(s) re-encrypted, new key sealed to ${
        done.admins.join(', ')
      }.\n`,
      informational: true,
    };
  },
};

export const vaultCommands: Command[] = [init, status, passwd, rekey];
