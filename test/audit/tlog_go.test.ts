/**
 * Our checkpoints checked by an independent implementation: Go's golang.org/x/mod/sumdb/note
 * (Debian's golang-golang-x-mod-dev, `make tools`), built offline with GOPATH mode.
 */
import { describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { newHome, type TestHome } from '../helpers/cli.ts';

const GOPATH = '/usr/share/gocode';
const NOTE_PKG = path.join(GOPATH, 'src/golang.org/x/mod/sumdb/note');
const SOURCE = path.resolve(new URL('./go/verify_note.go', import.meta.url).pathname);

function goAvailable(): string | null {
  const go = spawnSync('go', ['version'], { encoding: 'utf8' });
  if (go.status !== 0) return 'the go command is missing';
  if (!fs.existsSync(NOTE_PKG)) {
    return `${NOTE_PKG} is missing (apt-get install golang-golang-x-mod-dev)`;
  }
  return null;
}

const missing = goAvailable();
if (missing !== null) {
  console.warn(
    `\n*** SKIPPING test/audit/tlog_go.test.ts: ${missing}. Our notes are NOT checked by an ` +
      'independent verifier in this run. Run `make tools`. ***\n',
  );
}

function build(dir: string): string {
  const bin = path.join(dir, 'verify_note');
  execFileSync('go', ['build', '-o', bin, SOURCE], {
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: dir,
      GOPATH,
      GO111MODULE: 'off',
      GOFLAGS: '',
      GOCACHE: path.join(dir, 'gocache'),
    },
    stdio: 'pipe',
  });
  return bin;
}

async function checkpointed(t: TestHome): Promise<{ vkey: string; note: string }> {
  const k = await t.tp(['audit', 'key', '--password-file', t.passwordFile]);
  expect(k.code, k.stderr).toBe(0);
  const c = await t.tp(['audit', 'checkpoint', '--password-file', t.passwordFile]);
  expect(c.code, c.stderr).toBe(0);
  return { vkey: k.stdout.trim(), note: c.stdout };
}

describe.skipIf(missing !== null)("Go's sumdb/note verifier", () => {
  it('accepts our checkpoint and rejects one changed byte or another key', async () => {
    const t = await newHome();
    const other = await newHome({ fresh: true }); // another instance: its own vault and key
    const bin = build(t.dir);
    const { vkey, note } = await checkpointed(t);
    const open = (key: string, text: string) => {
      const f = path.join(t.dir, `note-${Math.random().toString(36).slice(2)}`);
      fs.writeFileSync(f, text);
      return spawnSync(bin, [key, f], { encoding: 'utf8' });
    };
    const ok = open(vkey, note);
    expect(ok.stdout + ok.stderr).toBe(note.slice(0, note.indexOf('\n\n') + 1));
    expect(ok.status).toBe(0);
    // One byte of the body changed: the root hash's first character.
    const lines = note.split('\n');
    lines[2] = (lines[2]![0] === 'A' ? 'B' : 'A') + lines[2]!.slice(1);
    const changed = open(vkey, lines.join('\n'));
    expect(changed.status).toBe(1);
    expect(changed.stdout).toMatch(/rejected: invalid signature/);
    // Another instance's checkpoint checked with this instance's key.
    const foreign = await checkpointed(other);
    const wrong = open(vkey, foreign.note);
    expect(wrong.status).toBe(1);
    expect(wrong.stdout).toMatch(/rejected/);
    // A cosigned checkpoint still opens: Go ignores signatures by keys it was not given.
    const w = await t.tp([
      'audit',
      'witness-key',
      'witness.test/w1',
      '--out',
      path.join(t.dir, 'w.key'),
    ]);
    expect(w.code, w.stderr).toBe(0);
    const ckpt = t.file('c.txt', note);
    const co = await t.tp([
      'audit',
      'cosign',
      ckpt,
      '--key',
      path.join(t.dir, 'w.key'),
      '--log-key',
      vkey,
    ]);
    expect(co.code, co.stderr).toBe(0);
    expect(open(vkey, co.stdout).status).toBe(0);
  }, 120_000);
});
