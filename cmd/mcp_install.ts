/**
 * `mcp install claude|cursor|codex`: the client's MCP configuration with one server named
 * `trust-protocol` added or replaced, everything else in the file kept as it was. The token is
 * never written: the entry forwards TRUST_PROTOCOL_TOKEN from the client's environment, or names
 * a token file. A file that does not parse is refused, never overwritten.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { TpError, usage } from '../src/errors.ts';
import { writeAtomic } from '../src/home.ts';

export const CLIENTS = ['claude', 'cursor', 'codex'] as const;
export type Client = (typeof CLIENTS)[number];
export const SERVER_NAME = 'trust-protocol';

export interface InstallPlan {
  client: Client;
  scope: 'project' | 'user';
  file: string;
  action: 'added' | 'replaced' | 'unchanged';
  /** The server's entry as the client will read it. */
  entry: Record<string, unknown>;
  /** The whole file as it would be written. */
  text: string;
}

/** Where each client reads its MCP servers, per scope. */
export function configFile(client: Client, scope: 'project' | 'user', dirs: {
  project: string;
  user: string;
}): string {
  const base = scope === 'project' ? dirs.project : dirs.user;
  if (client === 'claude') {
    return scope === 'project' ? path.join(base, '.mcp.json') : path.join(base, '.claude.json');
  }
  if (client === 'cursor') return path.join(base, '.cursor', 'mcp.json');
  return path.join(base, '.codex', 'config.toml');
}

/** The server entry: `args` start with `mcp`; the token comes from the environment or a file. */
export function serverEntry(
  client: Client,
  args: readonly string[],
  tokenFile: boolean,
): Record<string, unknown> {
  const entry: Record<string, unknown> = { command: 'trust-protocol', args: ['mcp', ...args] };
  if (client === 'claude') entry.type = 'stdio';
  if (tokenFile) return entry;
  // Each client's own way to pass a variable on without its value in the file.
  if (client === 'claude') entry.env = { TRUST_PROTOCOL_TOKEN: '${TRUST_PROTOCOL_TOKEN}' };
  if (client === 'cursor') entry.env = { TRUST_PROTOCOL_TOKEN: '${env:TRUST_PROTOCOL_TOKEN}' };
  if (client === 'codex') entry.env_vars = ['TRUST_PROTOCOL_TOKEN'];
  return entry;
}

export function planInstall(
  client: Client,
  scope: 'project' | 'user',
  file: string,
  entry: Record<string, unknown>,
): InstallPlan {
  let old: string | null;
  try {
    old = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as { code?: string }).code !== 'ENOENT') throw _ioError(e, file);
    old = null;
  }
  const merged = client === 'codex' ? _mergeToml(old, entry, file) : _mergeJson(old, entry, file);
  return { client, scope, file, entry, ...merged };
}

/** Writes the plan: atomically, keeping an existing file's mode (a new one: 0600). */
export function applyInstall(plan: InstallPlan): void {
  if (plan.action === 'unchanged') return;
  let mode = 0o600;
  try {
    mode = fs.statSync(plan.file).mode & 0o777;
  } catch { /* a new file */ }
  try {
    fs.mkdirSync(path.dirname(plan.file), { recursive: true, mode: 0o700 });
    writeAtomic(path.dirname(plan.file), path.basename(plan.file), plan.text, mode);
  } catch (e) {
    throw _ioError(e, plan.file);
  }
}

function _mergeJson(
  old: string | null,
  entry: Record<string, unknown>,
  file: string,
): Pick<InstallPlan, 'action' | 'text'> {
  let doc: Record<string, unknown> = {};
  if (old !== null && old.trim() !== '') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(old);
    } catch (e) {
      throw _unparsable(file, (e as Error).message);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw _unparsable(file, 'the top level is not a JSON object');
    }
    doc = parsed as Record<string, unknown>;
  }
  const servers = doc.mcpServers ?? {};
  if (typeof servers !== 'object' || servers === null || Array.isArray(servers)) {
    throw _unparsable(file, '"mcpServers" is not an object');
  }
  const before = (servers as Record<string, unknown>)[SERVER_NAME];
  const action = before === undefined
    ? 'added'
    : JSON.stringify(before) === JSON.stringify(entry)
    ? 'unchanged'
    : 'replaced';
  doc.mcpServers = { ...servers, [SERVER_NAME]: entry };
  return { action, text: JSON.stringify(doc, null, 2) + '\n' };
}

/**
 * Codex's TOML, without a TOML library: the `[mcp_servers.trust-protocol]` table (and its
 * sub-tables) is replaced as text, or appended, and every other line is kept byte for byte
 * (docs/decisions.md). Forms this cannot edit safely are refused with a clear error.
 */
function _mergeToml(
  old: string | null,
  entry: Record<string, unknown>,
  file: string,
): Pick<InstallPlan, 'action' | 'text'> {
  const table = _tomlTable(entry);
  if (old === null || old.trim() === '') return { action: 'added', text: table };
  const lines = old.split('\n');
  const ours =
    /^\s*\[\s*mcp_servers\s*\.\s*(?:trust-protocol|"trust-protocol"|'trust-protocol')\s*(?:\.[^\]]*)?\]\s*(?:#.*)?$/;
  const header = /^\s*\[/;
  const kept: string[] = [];
  let removed: string[] | null = null;
  let inOurs = false;
  let current: string | null = null;
  let multiline: string | null = null;
  for (const [i, line] of lines.entries()) {
    if (multiline === null && header.test(line)) {
      const m = /^\s*\[\[?([^\[\]]+)\]\]?\s*(?:#.*)?$/.exec(line);
      if (m === null) throw _unparsable(file, `line ${i + 1} is not a valid table header`);
      current = (m[1] as string).replace(/\s/g, '');
      inOurs = ours.test(line);
      if (inOurs) removed ??= [];
    } else if (
      multiline === null &&
      ((current === null && /^\s*mcp_servers\s*\.\s*["']?trust-protocol["']?\s*[.=]/.test(line)) ||
        (current === 'mcp_servers' && /^\s*["']?trust-protocol["']?\s*[.=]/.test(line)))
    ) {
      // A dotted key or an inline table for our server: a form this command does not edit.
      throw new TpError(
        'usage',
        'config_unsupported',
        `${file} defines the "trust-protocol" server on line ${
          i + 1
        } in a form this command does not edit`,
        { hint: `remove that definition by hand, then run mcp install again` },
      );
    }
    if (inOurs) (removed as string[]).push(line);
    else kept.push(line);
    // A line inside a multi-line string is not a header: track where such strings open and close.
    for (const quote of line.match(/"""|'''/g) ?? []) {
      multiline = multiline === null ? quote : multiline === quote ? null : multiline;
    }
  }
  if (multiline !== null) throw _unparsable(file, 'a multi-line string is not closed');
  if (removed !== null && removed.join('\n').trim() === table.trim()) {
    return { action: 'unchanged', text: old };
  }
  let text = kept.join('\n');
  if (text !== '' && !text.endsWith('\n')) text += '\n';
  if (text !== '' && !text.endsWith('\n\n')) text += '\n';
  return { action: removed === null ? 'added' : 'replaced', text: text + table };
}

function _tomlTable(entry: Record<string, unknown>): string {
  const value = (v: unknown): string =>
    Array.isArray(v) ? `[${v.map(value).join(', ')}]` : JSON.stringify(String(v));
  const lines = [`[mcp_servers.${SERVER_NAME}]`];
  for (const [k, v] of Object.entries(entry)) lines.push(`${k} = ${value(v)}`);
  return lines.join('\n') + '\n';
}

function _unparsable(file: string, why: string): TpError {
  return usage(
    'config_unparsable',
    `${file} does not parse (${why}); it was left as it is`,
    'fix the file by hand (or move it away), then run mcp install again',
  );
}

function _ioError(e: unknown, file: string): TpError {
  return new TpError('usage', 'config_io', `cannot write ${file}: ${(e as Error).message}`);
}
