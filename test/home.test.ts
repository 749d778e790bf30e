import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { openHome, readStateFile, withLock, writeStateFile } from '../src/home.ts';

const isDeno = typeof (globalThis as { Deno?: unknown }).Deno === 'object';
const ROOT = path.resolve(new URL('..', import.meta.url).pathname);

function tmpHome() {
  return openHome(path.join(fs.mkdtempSync(path.join(tmpdir(), 'tp-home-')), 'h'), {
    create: true,
  });
}

describe('home', () => {
  it('writes files 0600, also over an existing 0644 file', () => {
    const home = tmpHome();
    const p = path.join(home.dir, 'f.json');
    fs.writeFileSync(p, 'old', { mode: 0o644 });
    writeStateFile(home, 'f.json', 'new');
    expect(fs.statSync(p).mode & 0o777).toBe(0o600);
    expect(new TextDecoder().decode(readStateFile(home, 'f.json')!)).toBe('new');
    expect(fs.readdirSync(home.dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('refuses to write through a symlink', () => {
    const home = tmpHome();
    const outside = path.join(path.dirname(home.dir), 'outside');
    fs.writeFileSync(outside, 'keep');
    fs.symlinkSync(outside, path.join(home.dir, 'f.json'));
    expect(() => writeStateFile(home, 'f.json', 'x')).toThrow(/symbolic link/);
    expect(() => readStateFile(home, 'f.json')).toThrow(/symbolic link/);
    expect(fs.readFileSync(outside, 'utf8')).toBe('keep');
  });

  it('breaks a lock left by a dead process', async () => {
    const home = tmpHome();
    fs.writeFileSync(path.join(home.dir, 'x.lock'), '999999999 deadbeef');
    const got = await withLock(home, 'x', () => 'acquired', { timeoutMs: 2000 });
    expect(got).toBe('acquired');
    expect(fs.existsSync(path.join(home.dir, 'x.lock'))).toBe(false);
  });

  it('waits for a live owner and times out with a hint', async () => {
    const home = tmpHome();
    fs.writeFileSync(path.join(home.dir, 'x.lock'), `${process.pid} someone`);
    await expect(withLock(home, 'x', () => 1, { timeoutMs: 100 })).rejects.toThrow(
      /timed out waiting/,
    );
  });

  it('8 processes incrementing a counter under the lock lose nothing', async () => {
    const home = tmpHome();
    writeStateFile(home, 'counter', '0');
    const script = `
      import { openHome, readStateFile, withLock, writeStateFile } from ${
      JSON.stringify(path.join(ROOT, 'src/home.ts'))
    };
      const home = openHome(${JSON.stringify(home.dir)}, { create: false });
      for (let i = 0; i < 25; i++) {
        await withLock(home, 'counter', () => {
          const n = Number(new TextDecoder().decode(readStateFile(home, 'counter')));
          writeStateFile(home, 'counter', String(n + 1));
        });
      }`;
    const file = path.join(path.dirname(home.dir), 'inc.ts');
    fs.writeFileSync(file, script);
    const args = isDeno ? ['run', '-A', file] : [file];
    const codes = await Promise.all(
      Array.from(
        { length: 8 },
        () =>
          new Promise<number | null>((resolve) =>
            spawn(process.execPath, args, { stdio: 'inherit' }).on('close', resolve)
          ),
      ),
    );
    expect(codes).toEqual(Array(8).fill(0));
    expect(new TextDecoder().decode(readStateFile(home, 'counter')!)).toBe('200');
  });
});
