/** What every command handler receives, and the few helpers they share. */
import type { ParseArgsOptionsConfig } from 'node:util';
import { TpError, usage } from '../src/errors.ts';
import { type Home, openHome } from '../src/home.ts';
import {
  type Change,
  loadVault,
  unseal,
  updateVault,
  type VaultBody,
  type VaultFile,
  type VaultKeys,
  wipeKeys,
} from '../src/vault.ts';
import { paint } from './color.ts';
import type { Io } from './io.ts';
import { readPassword } from './secrets.ts';

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

export interface Command {
  words: readonly string[];
  summary: string;
  usage: string;
  options: ParseArgsOptionsConfig;
  args: { min: number; max: number };
  help?: string;
  /** Takes a command line after `--` (ctx.dashArgs): no flag after it is ours. */
  dashArgs?: boolean;
  /** Internal: left out of the help (serve-keeper). */
  hidden?: boolean;
  run: (ctx: Ctx) => Output | Promise<Output>;
}

export const PASSWORD_FILE_OPTION: ParseArgsOptionsConfig = { 'password-file': { type: 'string' } };

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

export function existingHome(ctx: Ctx): Home {
  return openHome(ctx.homeDir, { create: false });
}

export interface Unsealed {
  home: Home;
  file: VaultFile;
  keys: VaultKeys;
}

export async function unsealVault(ctx: Ctx): Promise<Unsealed> {
  const home = existingHome(ctx);
  const file = loadVault(home);
  const password = await readPassword(ctx.io, { passwordFile: str(ctx, 'password-file') });
  try {
    return { home, file, keys: unseal(file, password) };
  } finally {
    password.fill(0);
  }
}

/** Unseals, applies one vault change under the vault lock, and wipes the keys whatever happens. */
export async function changeVault<T>(
  ctx: Ctx,
  change: (body: VaultBody, keys: VaultKeys) => Change<T>,
): Promise<T> {
  const { home, keys } = await unsealVault(ctx);
  try {
    return await updateVault(home, keys, (body) => change(body, keys));
  } finally {
    wipeKeys(keys);
  }
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
