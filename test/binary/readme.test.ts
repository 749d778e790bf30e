/**
 * The README's walkthrough, its serve and agent sections and the auditor's check run as written (issue 16), offline as the README
 * says: `make upstream`'s local server, `$offline` after each `trust-protocol exec` and
 * `trust-protocol serve`, and api.allowed.test for the API hosts. The installed binary comes from
 * the README's own `./install.sh`, into a throwaway HOME.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { expect, it } from 'vitest';

const ROOT = path.resolve(new URL('../..', import.meta.url).pathname);
const GITHUB = 'ghp_readme-canary-0a1b2c3d4e';
const OPENAI = 'sk-readme-canary-5f6a7b8c9d';

/** The `sh` blocks of the README from `start` up to the next heading of that level after `end`. */
function shBlocks(start: string, end: string): string[] {
  const text = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const section = text.slice(text.indexOf(start), text.indexOf(end));
  return [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!);
}

it('the walkthrough, serve, agent and audit sections run as written, offline', async () => {
  const upstream = spawn(process.execPath, [path.join(ROOT, 'test/upstream.ts')], {
    env: { PATH: process.env.PATH ?? '', PORT: '0' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let home = '';
  try {
    let printed = '';
    await new Promise<void>((resolve) =>
      upstream.stdout!.on('data', (d) => {
        printed += d;
        if (printed.includes('--connect-to')) resolve();
      })
    );
    const port = /127\.0\.0\.1:(\d+)/.exec(printed)![1]!;
    const script = shBlocks('## Five-minute walkthrough', '## Emergency brakes')
      .map((block) =>
        block
          .replaceAll('127.0.0.1:8443', `127.0.0.1:${port}`)
          .replaceAll('api.github.com', 'api.allowed.test')
          .replaceAll('api.openai.com', 'api.allowed.test')
          .replace(/trust-protocol serve\b/g, 'trust-protocol serve $$offline')
          .replace(/trust-protocol exec\b(?=.*--password-file)/g, 'trust-protocol exec $$offline')
      )
      .join('\n');
    // The README installs the binary into it (a copy of it: ~120 MB), removed below.
    home = fs.mkdtempSync(path.join(tmpdir(), 'tp-readme-'));
    const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>(
      (resolve) => {
        const child = spawn('bash', [
          '-c',
          `trap 'echo "FAILED: $BASH_COMMAND" >&2' ERR\n${script}`,
        ], {
          cwd: ROOT,
          env: {
            HOME: home,
            PATH: `${home}/.local/bin:/usr/local/bin:/usr/bin:/bin`,
            GITHUB_TOKEN: GITHUB,
            OPENAI_API_KEY: OPENAI,
            NO_COLOR: '1',
          },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (d) => (stdout += d));
        child.stderr.on('data', (d) => (stderr += d));
        child.on('close', (code) => resolve({ code, stdout, stderr }));
      },
    );
    const out = r.stdout + r.stderr;
    // The one command expected to fail is the exfiltration attempt.
    expect(out.match(/^FAILED: .*/gm), out).toEqual([expect.stringContaining('exfiltrate.json')]);
    expect(r.stdout).toContain('exit 4');
    expect(r.stdout).toContain('"authorization":"Bearer [REDACTED:github]"');
    expect(r.stdout).toContain('"authorization":"Bearer [REDACTED:openai]"');
    expect(out).toContain('audit log intact');
    // The auditor's check: a proof of the last completed request verifies with the key alone.
    expect(out).toMatch(
      /entry \d+ is in the log trust-protocol\/[0-9a-f]+ \(checkpoint of \d+ entries\)/,
    );
    // `mcp install --dry-run` for each client names the token's variable, never the token.
    expect(out).toContain('TRUST_PROTOCOL_TOKEN');
    expect(out.match(/mcp_servers|mcpServers/g)?.length ?? 0).toBeGreaterThanOrEqual(3);
    expect(out).not.toContain(GITHUB);
    expect(out).not.toContain(OPENAI);
    expect(r.code, out).toBe(0);
  } finally {
    upstream.kill();
    if (home !== '') fs.rmSync(home, { recursive: true, force: true });
  }
}, 120_000);
