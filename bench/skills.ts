/**
 * Skill verification speed (issue 6), run by bench/run.ts: `trust-protocol skill verify` of a
 * 200 MB folder against `sha256sum` over the same files, both timed by hyperfine in the same
 * run. The goal is at least 0.7x sha256sum's throughput.
 */
import { spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface SkillsBench {
  mb: number;
  files: number;
  verifyMs: number;
  sha256sumMs: number;
  command: string;
}

const BINARY = 'dist/trust-protocol';

function _run(args: string[], env: Record<string, string>): void {
  const r = spawnSync(BINARY, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.status !== 0) throw new Error(`${args.slice(0, 2).join(' ')} failed: ${r.stderr}`);
}

export function benchSkills(
  dir: string,
  env: Record<string, string>,
  step: (s: string) => void,
): SkillsBench {
  const skill = path.join(dir, 'skill');
  fs.mkdirSync(skill);
  const files = 4;
  const chunk = Buffer.alloc(1024 * 1024);
  step('skills: writing a 200 MB folder');
  for (let i = 0; i < files; i++) {
    const fd = fs.openSync(path.join(skill, `blob-${i}.bin`), 'w');
    for (let m = 0; m < 50; m++) fs.writeSync(fd, randomFillSync(chunk));
    fs.closeSync(fd);
  }
  const pw = path.join(dir, 'skill-password');
  fs.writeFileSync(pw, 'bench skill key password\n', { mode: 0o600 });
  const prefix = path.join(dir, 'bench-key');
  _run(['skill', 'keygen', '--out', prefix, '--password-file', pw, '--kdf-memory-mib', '16'], env);
  _run([
    'skill',
    'sign',
    skill,
    '--key',
    `${prefix}.key`,
    '--name',
    'bench',
    '--version',
    '1',
    '--password-file',
    pw,
  ], env);
  _run(
    ['--home', path.join(dir, 'no-home'), 'skill', 'verify', skill, '--key', `${prefix}.pub`],
    env,
  );
  step('skills: hyperfine skill verify vs sha256sum');
  const json = path.join(dir, 'hyperfine-skills.json');
  const blobs = Array.from({ length: files }, (_, i) => path.join(skill, `blob-${i}.bin`)).join(
    ' ',
  );
  const verify = `${BINARY} --home ${
    path.join(dir, 'no-home')
  } skill verify ${skill} --key ${prefix}.pub`;
  const r = spawnSync('hyperfine', [
    '-N',
    '--warmup',
    '1',
    '--runs',
    '5',
    '--export-json',
    json,
    '-n',
    'sha256sum',
    `sha256sum ${blobs}`,
    '-n',
    'skill verify',
    verify,
  ], {
    stdio: ['ignore', 'inherit', 'inherit'],
    env,
  });
  if (r.status !== 0) throw new Error('hyperfine (skills) failed');
  const results =
    (JSON.parse(fs.readFileSync(json, 'utf8')) as { results: Array<{ median: number }> }).results;
  return {
    mb: 200,
    files,
    sha256sumMs: (results[0]?.median ?? NaN) * 1000,
    verifyMs: (results[1]?.median ?? NaN) * 1000,
    command: `hyperfine -N --runs 5 "sha256sum $W/skill/blob-*.bin" "${
      verify.replaceAll(dir, '$W')
    }"`,
  };
}

export function skillsMarkdown(s: SkillsBench): string {
  const ratio = s.sha256sumMs / s.verifyMs;
  return `## Skill verification (issue 6)

| what | measured | baseline (same run) | ratio | goal | verdict |
|---|---|---|---|---|---|
| \`skill verify --key\` of a ${s.mb} MB folder (${s.files} files) | ${
    (s.verifyMs / 1000).toFixed(2)
  } s | \`sha256sum\` of the same files: ${(s.sha256sumMs / 1000).toFixed(2)} s | ${
    ratio.toFixed(2)
  }x sha256sum's throughput | ≥ 0.7x | ${ratio >= 0.7 ? 'met' : '**missed**'} |

The verify time is the whole command: process start, walking the folder, hashing every file,
checking the manifest and the minisign signature. Command: \`${s.command}\`.
`;
}
