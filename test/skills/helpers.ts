/** Shared by the skill tests: a sample skill folder and the real minisign binary. */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

export function tempDir(prefix = 'tp-skill-'): string {
  return mkdtempSync(path.join(tmpdir(), prefix));
}

/** A small skill: text, an executable script, nested folders and a binary file. */
export function makeSkill(dir: string): string {
  mkdirSync(path.join(dir, 'bin'), { recursive: true });
  mkdirSync(path.join(dir, 'lib', 'deep'), { recursive: true });
  writeFileSync(path.join(dir, 'SKILL.md'), '# Weather\nAsk for the forecast.\n');
  writeFileSync(path.join(dir, 'bin', 'run.sh'), '#!/bin/sh\necho "sunny"\n');
  chmodSync(path.join(dir, 'bin', 'run.sh'), 0o755);
  writeFileSync(path.join(dir, 'lib', 'util.js'), 'export const unit = "C";\n');
  writeFileSync(path.join(dir, 'lib', 'deep', 'data.bin'), randomBytes(4096));
  writeFileSync(path.join(dir, 'lib', 'deep', 'same.txt'), 'identical\n');
  writeFileSync(path.join(dir, 'café.txt'), 'accented name\n');
  return dir;
}

/**
 * The minisign binary. Missing is a failure with the fix, not a skip: CI installs it (`make
 * tools`), and the interoperability these tests prove is part of the product.
 */
export function minisignPath(): string {
  const r = spawnSync('sh', ['-c', 'command -v minisign'], { encoding: 'utf8' });
  const found = r.stdout.trim();
  if (r.status !== 0 || found === '') {
    throw new Error(
      'minisign is not installed: run `make tools` (apt-get install minisign); ' +
        'the skill interoperability tests need the real binary',
    );
  }
  return found;
}

export function minisign(
  args: readonly string[],
  options: { input?: string; cwd?: string } = {},
): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(minisignPath(), args, {
    input: options.input ?? '',
    cwd: options.cwd,
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

export function sha256sumCheck(dir: string): { code: number; stdout: string; stderr: string } {
  const r = spawnSync('sha256sum', ['--strict', '-c', 'MANIFEST'], { cwd: dir, encoding: 'utf8' });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}
