/** `skill keygen|sign|verify` (SPEC §11): signed skill folders, checkable with minisign too. */
import { Buffer } from 'node:buffer';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { paint } from '../color.ts';
import type { AuditEvent } from '../../src/audit.ts';
import { escapeControls, wipe } from '../../src/bytes.ts';
import { TpError, usage } from '../../src/errors.ts';
import { type Home, openHome } from '../../src/home.ts';
import { openState, type State } from '../../src/state.ts';
import { checkName, checkVersion, parseExpiry } from '../../src/skills/comment.ts';
import {
  formatPublicKey,
  formatSecretKey,
  generateKey,
  keyIdHex,
  limitsForMemory,
  MIN_KDF_MEMORY,
  MINISIGN_KDF,
  openSecretKey,
  parseSecretKey,
  type SecretKey,
} from '../../src/skills/keys.ts';
import { MANIFEST_FILE, SIGNATURE_FILE } from '../../src/skills/manifest.ts';
import { loadSigned, type ScanProgress, scanSkill } from '../../src/skills/scan.ts';
import { signSkill, writeSigned } from '../../src/skills/sign.ts';
import { trustFromKeyFile, trustFromPublisher } from '../../src/skills/trust.ts';
import { type Trust, type Verdict, verifySkill } from '../../src/skills/verify.ts';
import { type VaultKeys, wipeKeys } from '../../src/vault.ts';
import { type Command, type Ctx, str } from '../context.ts';
import { unsealVault } from '../home_state.ts';
import { EXIT } from '../exit.ts';
import { dropTrailingNewline, promptHidden, readUserFile } from '../io.ts';
import { PASSWORD_ENV } from '../secrets.ts';

const MIN_KEY_PASSWORD = 8;

const keygen: Command = {
  words: ['skill', 'keygen'],
  summary: 'create a signing key pair: PREFIX.key (password-encrypted) and PREFIX.pub (minisign)',
  usage: 'skill keygen --out PREFIX [--password-file PATH] [--kdf-memory-mib N]',
  help: "Both files are in minisign's format: `minisign -S -s PREFIX.key` signs with the key.\n" +
    'The password is asked twice at the prompt (or read from --password-file or\n' +
    `${PASSWORD_ENV}). scrypt uses minisign's cost (1024 MiB) unless --kdf-memory-mib says less\n` +
    '(at least 16). Existing files are never overwritten.',
  options: {
    'password-file': {
      type: 'string',
      value: 'PATH',
      help:
        "file holding the signing key's password (else TRUST_PROTOCOL_PASSWORD, else a no-echo prompt, asked twice)",
    },
    out: {
      type: 'string',
      value: 'PREFIX',
      help: 'write PREFIX.key and PREFIX.pub (required; existing files are never overwritten)',
    },
    'kdf-memory-mib': {
      type: 'string',
      value: 'N',
      help: "scrypt memory for the key's encryption, 16 to 1024 MiB (default 1024, minisign's)",
    },
  },
  examples: [
    'trust-protocol skill keygen --out acme',
    'trust-protocol skill keygen --out ci-signer --password-file key-password.txt --kdf-memory-mib 64',
  ],
  args: { min: 0, max: 0 },
  async run(ctx) {
    const prefix = str(ctx, 'out');
    if (prefix === undefined || prefix === '') {
      throw usage(
        'missing_out',
        'skill keygen needs --out PREFIX (writes PREFIX.key and PREFIX.pub)',
      );
    }
    const files = { key: `${prefix}.key`, pub: `${prefix}.pub` };
    for (const f of [files.key, files.pub]) _refuseExisting(f);
    const limits = _kdfLimits(str(ctx, 'kdf-memory-mib'));
    const password = await _keyPassword(ctx, true);
    const key = generateKey();
    try {
      const secret = formatSecretKey(key, password, { limits });
      _createFile(files.key, secret, 0o600);
      try {
        _createFile(files.pub, formatPublicKey(key), 0o644);
      } catch (e) {
        fs.rmSync(files.key, { force: true });
        throw e;
      }
    } finally {
      wipe(password, key.seed);
    }
    const keyId = keyIdHex(key.keyId);
    return {
      json: {
        key_id: keyId,
        public_key_file: files.pub,
        secret_key_file: files.key,
        public_key: Buffer.from(key.publicKey).toString('base64'),
      },
      text: `Created key ${keyId}:\n  ${files.key}  secret, password-encrypted: keep it private\n` +
        `  ${files.pub}  public: share it\n` +
        `Sign a skill:      trust-protocol skill sign DIR --key ${files.key}\n` +
        `Trust the signer:  trust-protocol publisher add NAME ${files.pub}\n`,
    };
  },
};

const sign: Command = {
  words: ['skill', 'sign'],
  summary: 'sign a skill folder: writes MANIFEST (every file) and MANIFEST.minisig into it',
  usage:
    'skill sign DIR --key PREFIX.key [--name N] [--version V] [--expires YYYY-MM-DD|Nd] [--password-file PATH]',
  help: "The name defaults to the folder's name, the version to 0.0.0; without --expires the\n" +
    'signature never expires. Links, special files and names that collide are refused.',
  options: {
    'password-file': {
      type: 'string',
      value: 'PATH',
      help:
        "file holding the signing key's password (else TRUST_PROTOCOL_PASSWORD, else a no-echo prompt; not asked for an unencrypted key)",
    },
    key: {
      type: 'string',
      value: 'PREFIX.key',
      help: 'the secret key file to sign with (required)',
    },
    name: { type: 'string', value: 'N', help: "the skill's name (else the folder's name)" },
    version: { type: 'string', value: 'V', help: "the skill's version (else 0.0.0)" },
    expires: {
      type: 'string',
      value: 'YYYY-MM-DD|Nd',
      help: 'when the signature stops verifying: a date or a number of days (else never)',
    },
  },
  examples: [
    'trust-protocol skill sign ./my-skill --key acme.key',
    'trust-protocol skill sign ./my-skill --key acme.key --name my-skill --version 1.2.0 --expires 90d',
  ],
  args: { min: 1, max: 1 },
  async run(ctx) {
    const dir = ctx.positionals[0] as string;
    const keyPath = str(ctx, 'key');
    if (keyPath === undefined) throw usage('missing_key', 'skill sign needs --key PREFIX.key');
    const name = _name(ctx, dir);
    const version = checkVersion(str(ctx, 'version') ?? '0.0.0');
    const expiresFlag = str(ctx, 'expires');
    const expires = expiresFlag === undefined ? null : parseExpiry(expiresFlag, ctx.now());
    const keyFile = parseSecretKey(readUserFile(keyPath, 'secret key file', 64 * 1024));
    const seen = _withProgress(ctx, 'hashing', (onProgress) => scanSkill(dir, { onProgress }));
    const password = keyFile.encrypted ? await _keyPassword(ctx, false) : null;
    let key: SecretKey;
    try {
      key = openSecretKey(keyFile, password);
    } finally {
      if (password !== null) wipe(password);
    }
    try {
      const signed = signSkill({ seen, key, name, version, expires, now: ctx.now() });
      writeSigned(dir, signed);
      const m = signed.meta;
      return {
        json: {
          name: m.name,
          version: m.version,
          key_id: m.publisher,
          expires: m.expires,
          signed: m.signed,
          files: signed.files,
          manifest: path.join(dir, MANIFEST_FILE),
          signature: path.join(dir, SIGNATURE_FILE),
        },
        text: `Signed ${m.name} ${m.version}: ${signed.files} file(s) with key ${m.publisher}, ${
          m.expires === null ? 'no expiry' : `expires ${m.expires}`
        }.\nWrote ${path.join(dir, MANIFEST_FILE)} and ${path.join(dir, SIGNATURE_FILE)}.\n`,
      };
    } finally {
      wipe(key.seed);
    }
  },
};

const verify: Command = {
  words: ['skill', 'verify'],
  summary: 'check a skill folder against its signature; exit 1 naming every problem',
  usage: 'skill verify DIR (--key PREFIX.pub | --publisher NAME) [--password-file PATH]',
  help:
    'Exit 0 when every file matches the signed manifest and the signature holds; 1 otherwise,\n' +
    'listing each problem. The publisher list (names, revocations) is read only once the\n' +
    "vault's integrity is checked, so both --publisher and --key need the master password when\n" +
    'a vault exists; --key without a vault needs none and names no publisher. Every\n' +
    'verification is recorded in the audit trail (with no state directory, nothing is recorded).',
  options: {
    'password-file': {
      type: 'string',
      value: 'PATH',
      help:
        'file holding the master password, needed when a vault exists (else TRUST_PROTOCOL_PASSWORD, else a no-echo prompt on a terminal)',
    },
    key: {
      type: 'string',
      value: 'PREFIX.pub',
      help: 'trust this public key file (names its publisher if the vault lists it)',
    },
    publisher: {
      type: 'string',
      value: 'NAME',
      help: 'trust the key of this publisher from `publisher add` (not revoked)',
    },
  },
  examples: [
    'trust-protocol skill verify ./my-skill --publisher acme',
    'trust-protocol skill verify ./my-skill --key acme.pub',
  ],
  args: { min: 1, max: 1 },
  async run(ctx) {
    const dir = ctx.positionals[0] as string;
    const keyPath = str(ctx, 'key');
    const publisher = str(ctx, 'publisher');
    if ((keyPath === undefined) === (publisher === undefined)) {
      throw usage(
        'bad_trust',
        'skill verify needs exactly one of --key PREFIX.pub or --publisher NAME',
      );
    }
    let state: State | null;
    let keys: VaultKeys | null = null;
    let trust: Trust;
    const bytes = keyPath === undefined
      ? null
      : readUserFile(keyPath, 'public key file', 64 * 1024);
    const home = bytes === null ? null : _homeIfAny(ctx);
    state = home === null ? null : openState(home, { sync: ctx.sync ?? null });
    if (bytes !== null && (state === null || !state.vault.exists())) {
      // No vault, no publisher list: the key file alone decides, and no publisher is named.
      trust = trustFromKeyFile(bytes, []);
    } else {
      // A publisher list exists: it names publishers and lifts nothing only once its MAC is
      // checked, so it is read with the password, for --key as for --publisher (#14).
      const unsealed = await unsealVault(ctx);
      state = unsealed.state;
      keys = unsealed.keys;
      try {
        const publishers = (await state.vault.ensureCurrent(unsealed.file, keys)).body.publishers;
        trust = bytes === null
          ? trustFromPublisher(publisher as string, publishers)
          : trustFromKeyFile(bytes, publishers);
      } catch (e) {
        wipeKeys(keys);
        throw e;
      }
    }
    try {
      const seen = _withProgress(ctx, 'hashing', (onProgress) => scanSkill(dir, { onProgress }));
      const verdict = verifySkill({ seen, ...loadSigned(dir), trust, now: ctx.now() });
      if (state !== null) await _audit(state, keys, _event(dir, verdict, keys !== null));
      return {
        json: verdict,
        text: _verdictText(verdict, ctx.color),
        exitCode: verdict.ok ? EXIT.ok : EXIT.verification,
      };
    } finally {
      if (keys !== null) wipeKeys(keys);
    }
  },
};

function _event(dir: string, v: Verdict, operator: boolean): AuditEvent {
  return {
    event: 'skill.verify',
    actor: { type: operator ? 'operator' : 'anyone' },
    outcome: v.ok ? 'ok' : 'denied',
    data: {
      dir: path.resolve(dir),
      name: v.name,
      version: v.version,
      key_id: v.key_id,
      publisher: v.publisher,
      files: v.files,
      problems: [...new Set(v.problems.map((p) => p.kind))],
    },
  };
}

async function _audit(state: State, keys: VaultKeys | null, event: AuditEvent): Promise<void> {
  const head = await state.audit.writer({ macKey: keys?.auditKeys ?? null }).append([event]);
  if (keys !== null) await state.vault.recordHead(keys, head);
}

function _verdictText(v: Verdict, color: boolean): string {
  const who = v.publisher === null ? `key ${v.key_id}` : `${v.publisher} (key ${v.key_id})`;
  if (v.ok) {
    return `${
      paint(color, 'green', 'OK')
    }: ${v.name} ${v.version}, ${v.files} file(s), signed by ${who}, ${
      v.expires === null ? 'no expiry' : `expires ${v.expires}`
    }.\n`;
  }
  const lines = v.problems.map((p) =>
    `  ${p.kind}${p.path === undefined ? '' : ` ${escapeControls(JSON.stringify(p.path))}`}: ${
      escapeControls(p.detail)
    }`
  );
  return `${
    paint(color, 'red', 'FAILED')
  }: ${v.problems.length} problem(s) in this skill folder:\n${lines.join('\n')}\n`;
}

/** The state directory when it exists (checked as usual), or null: `--key` works without one. */
function _homeIfAny(ctx: Ctx): Home | null {
  try {
    fs.lstatSync(ctx.homeDir);
  } catch (e) {
    if ((e as { code?: string }).code === 'ENOENT') return null;
  }
  return openHome(ctx.homeDir, { create: false });
}

function _name(ctx: Ctx, dir: string): string {
  const given = str(ctx, 'name');
  if (given !== undefined) return checkName(given);
  const base = path.basename(path.resolve(dir));
  try {
    return checkName(base);
  } catch {
    throw usage(
      'bad_name',
      `the folder name ${JSON.stringify(escapeControls(base))} is not a valid skill name`,
      'pass --name NAME (letters, digits, . _ -)',
    );
  }
}

function _kdfLimits(flag: string | undefined) {
  if (flag === undefined) return MINISIGN_KDF;
  const mib = /^\d{1,4}$/.test(flag) ? BigInt(flag) : -1n;
  const bytes = mib * 1024n * 1024n;
  if (bytes < MIN_KDF_MEMORY || bytes > MINISIGN_KDF.memLimit) {
    throw usage('kdf_params', '--kdf-memory-mib takes a number from 16 to 1024');
  }
  return limitsForMemory(bytes);
}

/** The signing key's password: --password-file, then TRUST_PROTOCOL_PASSWORD, then the prompt. */
async function _keyPassword(ctx: Ctx, isNew: boolean): Promise<Uint8Array> {
  const file = str(ctx, 'password-file');
  let password: Uint8Array | null;
  if (file !== undefined) {
    password = new Uint8Array(
      dropTrailingNewline(readUserFile(file, 'password file', 64 * 1024, { secret: true })),
    );
  } else if (ctx.io.env[PASSWORD_ENV] !== undefined) {
    password = new TextEncoder().encode(ctx.io.env[PASSWORD_ENV]);
  } else {
    password = await promptHidden(ctx.io, isNew ? 'Password for the new key: ' : 'Key password: ');
    if (password !== null && isNew) {
      const again = await promptHidden(ctx.io, 'Repeat the password: ');
      const same = again !== null &&
        Buffer.compare(Buffer.from(again), Buffer.from(password)) === 0;
      if (again !== null) wipe(again);
      if (!same) {
        throw usage('password_mismatch', 'the two passwords do not match', 'run the command again');
      }
    }
  }
  if (password === null) {
    throw new TpError(
      'sealed',
      'no_password_source',
      "the signing key's password is needed and there is no way to ask for it",
      {
        hint: `use --password-file PATH, set ${PASSWORD_ENV}, or run in a terminal`,
      },
    );
  }
  if (password.length === 0) throw usage('empty_password', 'the key password is empty');
  if (isNew && password.length < MIN_KEY_PASSWORD) {
    throw usage('weak_password', `the key password is shorter than ${MIN_KEY_PASSWORD} bytes`);
  }
  return password;
}

function _refuseExisting(file: string): void {
  let exists = true;
  try {
    fs.lstatSync(file);
  } catch {
    exists = false;
  }
  if (exists) {
    throw usage(
      'file_exists',
      `${file} already exists; keygen never overwrites a key`,
      'choose another --out PREFIX, or move the old key pair away first',
    );
  }
}

function _createFile(file: string, text: string, mode: number): void {
  let fd: number;
  try {
    fd = fs.openSync(file, 'wx', mode);
  } catch (e) {
    throw usage('cannot_create', `cannot create ${file} (${(e as { code?: string }).code})`);
  }
  try {
    fs.fchmodSync(fd, mode);
    fs.writeFileSync(fd, text);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Progress on stderr only on a terminal, never under --json or --quiet (SPEC §1). */
function _withProgress<T>(
  ctx: Ctx,
  verb: string,
  work: (onProgress: ((p: ScanProgress) => void) | undefined) => T,
): T {
  const stderr = ctx.io.stderr;
  if (ctx.json || ctx.quiet || stderr.isTTY !== true) return work(undefined);
  let last = 0;
  const mib = (n: number) => (n / 1048576).toFixed(0);
  try {
    return work((p) => {
      const now = Date.now();
      if (now - last < 100) return;
      last = now;
      stderr.write(
        `\r${verb} ${p.files}/${p.totalFiles} files, ${mib(p.bytes)}/${mib(p.totalBytes)} MiB`,
      );
    });
  } finally {
    if (last !== 0) stderr.write('\r\x1b[K');
  }
}

export const skillCommands: Command[] = [keygen, sign, verify];
