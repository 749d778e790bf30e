import { afterAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

// Copies of the binary or bundle: removed when the file ends.
const made: string[] = [];
afterAll(() => {
  for (const dir of made) fs.rmSync(dir, { recursive: true, force: true });
});

const ROOT = path.resolve(new URL('../..', import.meta.url).pathname);
const BINARY = path.join(ROOT, 'dist/trust-protocol');

function runFile(file: string, args: string[], env: Record<string, string>, cwd?: string) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(file, args, { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('the single executable', () => {
  it('runs --version and --help from a directory with no node_modules and no node on PATH', async () => {
    const dir = fs.mkdtempSync(path.join(tmpdir(), 'tp-bin-'));
    made.push(dir);
    const copy = path.join(dir, 'trust-protocol');
    fs.copyFileSync(BINARY, copy);
    fs.chmodSync(copy, 0o755);
    const env = { PATH: '/nonexistent', HOME: dir };
    const v = await runFile(copy, ['--version'], env, dir);
    expect(v.code).toBe(0);
    expect(v.stdout).toMatch(/^trust-protocol \d+\.\d+\.\d+\n$/);
    const h = await runFile(copy, ['--help'], env, dir);
    expect(h.code).toBe(0);
    expect(h.stdout).toContain('Exit codes:');
    expect(h.stderr).toBe('');
  });

  it('ignores NODE_OPTIONS: an agent cannot inject code with --require or --import', async () => {
    const dir = fs.mkdtempSync(path.join(tmpdir(), 'tp-bin-'));
    made.push(dir);
    const marker = path.join(dir, 'pwned');
    const evil = path.join(dir, 'evil.cjs');
    fs.writeFileSync(evil, `require('fs').writeFileSync(${JSON.stringify(marker)}, 'x')`);
    for (const options of [`--require ${evil}`, `--import ${evil}`, `-r ${evil}`]) {
      const r = await runFile(BINARY, ['--version'], {
        PATH: process.env.PATH ?? '',
        HOME: dir,
        NODE_OPTIONS: options,
      });
      expect(r.code, r.stderr).toBe(0);
      expect(fs.existsSync(marker), options).toBe(false);
    }
  });

  it('install.sh installs the binary under --prefix, and running it again is harmless', async () => {
    const prefix = fs.mkdtempSync(path.join(tmpdir(), 'tp-prefix-'));
    made.push(prefix);
    const env = { PATH: process.env.PATH ?? '', HOME: prefix };
    for (let i = 0; i < 2; i++) {
      const r = await runFile('sh', [path.join(ROOT, 'install.sh'), '--prefix', prefix], env, ROOT);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/installed .*bin\/trust-protocol \(trust-protocol \d/);
    }
    const installed = path.join(prefix, 'bin', 'trust-protocol');
    expect(fs.statSync(installed).mode & 0o777).toBe(0o755);
    expect((await runFile(installed, ['--version'], env)).stdout).toMatch(/^trust-protocol /);
    expect(fs.readdirSync(path.join(prefix, 'bin'))).toEqual(['trust-protocol']);
    const bad = await runFile('sh', [path.join(ROOT, 'install.sh'), '--bogus'], env, ROOT);
    expect(bad.code).toBe(2);
  });

  it('make demo: the main job end to end exits 0', async () => {
    const r = await runFile(process.execPath, [path.join(ROOT, 'test/demo.ts'), BINARY], {
      PATH: process.env.PATH ?? '',
      HOME: tmpdir(),
      NO_COLOR: '1',
    });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain('the real key reached the upstream: yes; the agent saw it: no');
    expect(r.stdout).toMatch(/exec --template .*evil\.json[\s\S]*\(exit 4\)/);
    expect(r.stdout).toContain('Demo finished');
  });
});

/**
 * The MCP SDK with zod, and the PostgreSQL driver, are chunks loaded on first use (issue 17,
 * cmd/chunks/load.cjs): the binary from its own assets, the npm package's bundle from dist/chunks/.
 */
describe('chunks loaded on first use', () => {
  const INITIALIZE = JSON.stringify({
    jsonrpc: '2.0',
    id: 1,
    method: 'initialize',
    params: {
      protocolVersion: '2025-06-18',
      capabilities: {},
      clientInfo: { name: 'chunk-test', version: '1' },
    },
  });

  function runWithInput(file: string, args: string[], input: string, cwd: string) {
    return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(file, args, { env: { PATH: '/nonexistent', HOME: cwd }, cwd });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      child.on('close', (code) => resolve({ code, stdout, stderr }));
      child.stdin.end(`${input}\n`);
    });
  }

  /** `mcp` answers initialize (the MCP chunk); `store status` reaches the driver (its chunk). */
  async function mcpAndStore(command: string, prefix: string[], dir: string) {
    fs.writeFileSync(path.join(dir, 'token'), 'tp_agent_unused\n', { mode: 0o600 });
    const home = ['--home', path.join(dir, 'home')];
    const mcp = await runWithInput(
      command,
      [
        ...prefix,
        ...home,
        'mcp',
        '--token-file',
        path.join(dir, 'token'),
      ],
      INITIALIZE,
      dir,
    );
    expect(mcp.stdout, mcp.stderr).toContain('"serverInfo":{"name":"trust-protocol"');
    const socketDir = path.join(dir, 'no-postgres');
    const store = await runWithInput(
      command,
      [
        ...prefix,
        ...home,
        'store',
        'status',
        '--store',
        `postgres://tp@/tp?host=${socketDir}`,
      ],
      '',
      dir,
    );
    // The driver itself tried the socket: exit 6 with its connect error.
    expect(store.code, store.stderr).toBe(6);
    expect(store.stderr).toContain(`connect ENOENT ${socketDir}/.s.PGSQL.5432`);
  }

  it('the bundle leaves the MCP SDK, zod and the PostgreSQL driver to dist/chunks/', () => {
    const read = (file: string) => fs.readFileSync(path.join(ROOT, 'dist', file), 'utf8');
    // Names those packages define and the project's own code never spells.
    const bundle = read('trust-protocol.cjs');
    expect(bundle).not.toContain('ZodError');
    expect(bundle).not.toContain('PostgresError');
    expect(read('chunks/mcp.cjs')).toContain('ZodError');
    expect(read('chunks/postgres.cjs')).toContain('PostgresError');
  });

  it('the binary alone in a directory runs mcp and store from the chunks it embeds', async () => {
    const dir = fs.mkdtempSync(path.join(tmpdir(), 'tp-bin-'));
    made.push(dir);
    const copy = path.join(dir, 'trust-protocol');
    fs.copyFileSync(BINARY, copy);
    fs.chmodSync(copy, 0o755);
    await mcpAndStore(copy, [], dir);
  });

  it("the npm package's bundle runs mcp and store from dist/chunks/ beside it", async () => {
    const dir = fs.mkdtempSync(path.join(tmpdir(), 'tp-pkg-'));
    made.push(dir);
    fs.cpSync(path.join(ROOT, 'dist/trust-protocol.cjs'), path.join(dir, 'trust-protocol.cjs'));
    fs.cpSync(path.join(ROOT, 'dist/chunks'), path.join(dir, 'chunks'), { recursive: true });
    await mcpAndStore(process.execPath, [path.join(dir, 'trust-protocol.cjs')], dir);
  });
});
