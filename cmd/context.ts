/**
 * What every command handler receives, and the few helpers they share. Nothing here opens the
 * home or the vault (cmd/state.ts does): `exec` through a serve loads this module and must not
 * pay for the vault's code at start-up (docs/performance.md).
 */
import type { ParseArgsOptionDescriptor } from 'node:util';
import { ADMIN_ENV } from '../src/admins.ts';
import { TpError, usage } from '../src/errors.ts';
import type { StoreSync } from '../src/store/sync.ts';
import { paint } from './color.ts';
import type { Io } from './io.ts';

export type Values = Record<string, string | boolean | string[] | undefined>;

export interface Ctx {
  io: Io;
  values: Values;
  positionals: string[];
  json: boolean;
  quiet: boolean;
  color: boolean;
  homeDir: string;
  now: () => Date;
  /** The team store the home is kept in step with (cmd/store_sync.ts); null: the home alone. */
  sync?: StoreSync | null;
  /**
   * For a command that runs without the team store when it cannot be opened (`brakeFirst`): why
   * it could not (the command fails with it once its own work is done).
   */
  storeFailure?: TpError;
  /** For a command that runs another (`run`): the words after `--`, untouched; null without `--`. */
  dashArgs?: string[] | null;
}

/** What a handler returns: data for --json, text for humans. */
export interface Output {
  json: unknown;
  text: string;
  /** Informational text that --quiet suppresses (data such as ids and tokens always prints). */
  informational?: boolean;
  /** What --quiet prints instead of `text`: the data alone (a token, one id or name a line). */
  quiet?: string;
  exitCode?: number;
  /** Under --json, print these as JSON lines instead of one document (`audit show`). */
  jsonLines?: unknown[];
}

/**
 * One flag: node's parseArgs descriptor plus its line in the help. `help` is required, so a flag
 * cannot be added without saying what it means (test/cli/help.test.ts checks the text too).
 */
export interface Flag extends ParseArgsOptionDescriptor {
  /** The value's name in the help (`--ttl DURATION`); only for flags that take one. */
  value?: string;
  /** One line: what the flag does and, for a value, where it comes from when the flag is absent. */
  help: string;
}

export type Flags = Record<string, Flag>;

export interface Command {
  words: readonly string[];
  summary: string;
  usage: string;
  options: Flags;
  args: { min: number; max: number };
  help?: string;
  /** One or two working invocations, each starting `trust-protocol` and the command's words. */
  examples: readonly string[];
  /** Takes a command line after `--` (ctx.dashArgs): no flag after it is ours. */
  dashArgs?: boolean;
  /** Opens `--store` itself, or refuses it (`store`, `init`, `serve-keeper`); see cmd/store_sync.ts. */
  ownsStore?: boolean;
  /**
   * Runs on the home alone when the team store cannot be opened (ctx.storeFailure says why):
   * `emergency activate`, as a brake must never wait for a database.
   */
  brakeFirst?: boolean;
  /** Internal: left out of the help (serve-keeper). */
  hidden?: boolean;
  run: (ctx: Ctx) => Output | Promise<Output>;
}

export const PASSWORD_FILE_HELP =
  'file holding the master password (else TRUST_PROTOCOL_PASSWORD, else a no-echo prompt on a terminal)';

export const PASSWORD_FILE_OPTION: Flags = {
  'password-file': { type: 'string', value: 'PATH', help: PASSWORD_FILE_HELP },
};

export function str(ctx: Ctx, name: string): string | undefined {
  const v = ctx.values[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw usage('bad_flag', `--${name} needs a value`);
  return v;
}

export function list(ctx: Ctx, name: string): string[] {
  const v = ctx.values[name];
  if (v === undefined) return [];
  return Array.isArray(v) ? v : [String(v)];
}

export function flag(ctx: Ctx, name: string): boolean {
  return ctx.values[name] === true;
}

/** The key slot to try (`--admin`, else TRUST_PROTOCOL_ADMIN); undefined: try every slot. */
export function adminName(ctx: Ctx): string | undefined {
  const v = str(ctx, 'admin') ?? ctx.io.env[ADMIN_ENV];
  return v === '' ? undefined : v;
}

/** Aligned columns; with `color`, the first row is a heading and printed bold. */
export function tableText(rows: string[][], options: { color?: boolean } = {}): string {
  if (rows.length === 0) return '';
  const widths = (rows[0] ?? []).map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r, n) => {
    const line = r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ')
      .trimEnd();
    return n === 0 ? paint(options.color === true, 'bold', line) : line;
  }).join('\n') + '\n';
}

export function internal(message: string): TpError {
  return new TpError('internal', 'internal', message);
}
