/**
 * `trust-protocol mcp install claude|cursor|codex` (issue #15) on the real CLI, run in a throwaway
 * project directory with a throwaway HOME: each client's file is written or merged (other servers
 * and keys kept), a file that does not parse is refused and left as it was, `--dry-run` writes
 * nothing, and the token value never lands in a file.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { baseEnv, command, type RunResult } from '../helpers/cli.ts';

const TOKEN = 'tpat_install-canary-0123456789abcdef';

function dirs() {
  const root = mkdtempSync(path.join(tmpdir(), 'tp-mcp-install-'));
  const project = path.join(root, 'project');
  const user = path.join(root, 'user');
  fs.mkdirSync(project);
  fs.mkdirSync(user);
  return { project, user };
}

function install(
  d: { project: string; user: string },
  args: readonly string[],
): Promise<RunResult> {
  const { file, argv } = command(['mcp', 'install', ...args]);
  return new Promise((resolve, reject) => {
    const child = spawn(file, argv, {
      cwd: d.project,
      env: baseEnv({ HOME: d.user, TRUST_PROTOCOL_TOKEN: TOKEN }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString('utf8')));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString('utf8')));
    child.on('error', reject);
    child.on(
      'close',
      (code) => resolve({ code: code ?? 1, stdout, stderr, stdoutBytes: new Uint8Array(0) }),
    );
  });
}

function read(file: string): string {
  return fs.readFileSync(file, 'utf8');
}

describe('mcp install', () => {
  it('claude (project): merges into .mcp.json, keeps other servers, no token', async () => {
    const d = dirs();
    const file = path.join(d.project, '.mcp.json');
    fs.writeFileSync(
      file,
      JSON.stringify({ mcpServers: { other: { command: 'other-mcp' } }, extra: 1 }),
    );
    const r = await install(d, ['claude']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('added');
    const doc = JSON.parse(read(file));
    expect(doc.extra).toBe(1);
    expect(doc.mcpServers.other).toEqual({ command: 'other-mcp' });
    expect(doc.mcpServers['trust-protocol']).toEqual({
      command: 'trust-protocol',
      args: ['mcp'],
      type: 'stdio',
      env: { TRUST_PROTOCOL_TOKEN: '${TRUST_PROTOCOL_TOKEN}' },
    });
    expect(read(file)).not.toContain(TOKEN);
    const again = await install(d, ['claude']);
    expect(again.stdout).toContain('already up to date');
  });

  it('claude (user): ~/.claude.json under mcpServers, other keys kept', async () => {
    const d = dirs();
    const file = path.join(d.user, '.claude.json');
    fs.writeFileSync(file, JSON.stringify({ numStartups: 3, projects: { a: {} } }), {
      mode: 0o600,
    });
    const r = await install(d, ['claude', '--scope', 'user']);
    expect(r.code, r.stderr).toBe(0);
    const doc = JSON.parse(read(file));
    expect(doc.numStartups).toBe(3);
    expect(doc.projects).toEqual({ a: {} });
    expect(doc.mcpServers['trust-protocol'].command).toBe('trust-protocol');
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(read(file)).not.toContain(TOKEN);
  });

  it('cursor: .cursor/mcp.json, with --token-file named instead of the variable', async () => {
    const d = dirs();
    const tokenFile = path.join(d.user, 'token');
    fs.writeFileSync(tokenFile, TOKEN, { mode: 0o600 });
    const r = await install(d, ['cursor', '--token-file', tokenFile]);
    expect(r.code, r.stderr).toBe(0);
    const file = path.join(d.project, '.cursor', 'mcp.json');
    expect(JSON.parse(read(file)).mcpServers['trust-protocol']).toEqual({
      command: 'trust-protocol',
      args: ['mcp', '--token-file', tokenFile],
    });
    expect(read(file)).not.toContain(TOKEN);
    const user = await install(d, ['cursor', '--scope', 'user']);
    expect(user.code, user.stderr).toBe(0);
    expect(JSON.parse(read(path.join(d.user, '.cursor', 'mcp.json'))).mcpServers).toEqual({
      'trust-protocol': {
        command: 'trust-protocol',
        args: ['mcp'],
        env: { TRUST_PROTOCOL_TOKEN: '${env:TRUST_PROTOCOL_TOKEN}' },
      },
    });
  });

  it('codex: replaces only its own table in .codex/config.toml', async () => {
    const d = dirs();
    const file = path.join(d.project, '.codex', 'config.toml');
    fs.mkdirSync(path.dirname(file));
    const before = [
      'model = "o3"',
      '',
      '[mcp_servers.other]',
      'command = "other"',
      'args = ["a"]',
      '',
      '[mcp_servers.trust-protocol]',
      'command = "old"',
      '',
      '[mcp_servers.trust-protocol.env]',
      'X = "1"',
      '',
      '[profiles.fast]',
      'description = """',
      '[mcp_servers.trust-protocol]',
      '"""',
      '',
    ].join('\n');
    fs.writeFileSync(file, before);
    const r = await install(d, ['codex']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('replaced');
    const after = read(file);
    expect(after).toContain(
      'model = "o3"\n\n[mcp_servers.other]\ncommand = "other"\nargs = ["a"]\n',
    );
    expect(after).toContain(
      '[profiles.fast]\ndescription = """\n[mcp_servers.trust-protocol]\n"""\n',
    );
    expect(after).not.toContain('command = "old"');
    expect(after).not.toContain('X = "1"');
    expect(after).toContain(
      '[mcp_servers.trust-protocol]\ncommand = "trust-protocol"\nargs = ["mcp"]\n' +
        'env_vars = ["TRUST_PROTOCOL_TOKEN"]\n',
    );
    expect(after).not.toContain(TOKEN);
    const again = await install(d, ['codex']);
    expect(again.stdout).toContain('already up to date');
    expect(read(file)).toBe(after);
  });

  it('--dry-run prints the change and writes nothing', async () => {
    const d = dirs();
    for (const client of ['claude', 'cursor', 'codex']) {
      const r = await install(d, [client, '--dry-run']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain('would be added');
      expect(r.stdout).toContain('trust-protocol');
      expect(r.stdout).not.toContain(TOKEN);
    }
    expect(fs.readdirSync(d.project)).toEqual([]);
    // Deno keeps its module cache under HOME/.cache: only the clients' files matter here.
    expect(fs.readdirSync(d.user).filter((n) => n !== '.cache')).toEqual([]);
  });

  it('refuses a file that does not parse and leaves it as it was', async () => {
    const d = dirs();
    const json = path.join(d.project, '.mcp.json');
    fs.writeFileSync(json, '{"mcpServers": {');
    const r = await install(d, ['claude']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('does not parse');
    expect(read(json)).toBe('{"mcpServers": {');
    const toml = path.join(d.project, '.codex', 'config.toml');
    fs.mkdirSync(path.dirname(toml));
    fs.writeFileSync(toml, '[mcp_servers.other\ncommand = "x"\n');
    const t = await install(d, ['codex']);
    expect(t.code).toBe(2);
    expect(t.stderr).toContain('does not parse');
    expect(read(toml)).toBe('[mcp_servers.other\ncommand = "x"\n');
    const unknown = await install(d, ['vim']);
    expect(unknown.code).toBe(2);
  });
});
