import { afterAll, describe, expect, it } from 'vitest';
import { Buffer } from 'node:buffer';
import { closeSync, mkdirSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import * as path from 'node:path';
import { newHome, type TestHome } from '../helpers/cli.ts';

const MIB = 1024 * 1024;
let t: TestHome | undefined;

afterAll(() => {
  if (t !== undefined) rmSync(t.dir, { recursive: true, force: true });
});

function bigFile(file: string, mib: number, fill: number): void {
  const block = Buffer.alloc(MIB, fill);
  const fd = openSync(file, 'w');
  try {
    for (let i = 0; i < mib; i++) {
      block.writeUInt32LE(i, 0);
      writeSync(fd, block);
    }
  } finally {
    closeSync(fd);
  }
}

describe('a large skill folder', () => {
  it('signs and verifies 300 MiB streamed, and finds one changed byte', async () => {
    t = await newHome({ init: false });
    const dir = path.join(t.dir, 'big-skill');
    mkdirSync(path.join(dir, 'models'), { recursive: true });
    writeFileSync(path.join(dir, 'SKILL.md'), '# Big\n');
    for (const [i, fill] of [[1, 0x61], [2, 0x62], [3, 0x63]] as const) {
      bigFile(path.join(dir, 'models', `part${i}.bin`), 100, fill);
    }
    const prefix = path.join(t.dir, 'k');
    expect(
      (await t.tp([
        'skill',
        'keygen',
        '--out',
        prefix,
        '--password-file',
        t.passwordFile,
        '--kdf-memory-mib',
        '16',
      ])).code,
    )
      .toBe(0);
    const sign = await t.tp([
      'skill',
      'sign',
      dir,
      '--key',
      `${prefix}.key`,
      '--password-file',
      t.passwordFile,
    ], {
      timeoutMs: 60_000,
    });
    expect(sign.code, sign.stderr).toBe(0);
    // Not a terminal: no progress on stderr.
    expect(sign.stderr).toBe('');

    const ok = await t.tp(['skill', 'verify', dir, '--key', `${prefix}.pub`, '--json'], {
      timeoutMs: 60_000,
    });
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ ok: true, files: 4 });

    const fd = openSync(path.join(dir, 'models', 'part2.bin'), 'r+');
    writeSync(fd, Buffer.from([0x00]), 0, 1, 73 * MIB + 12345);
    closeSync(fd);
    const bad = await t.tp(['skill', 'verify', dir, '--key', `${prefix}.pub`, '--json'], {
      timeoutMs: 60_000,
    });
    expect(bad.code).toBe(1);
    expect(JSON.parse(bad.stdout).problems).toEqual([
      {
        kind: 'modified',
        path: 'models/part2.bin',
        detail: `content changed (same size, ${100 * MIB} bytes)`,
      },
    ]);
  }, 60_000);
});
