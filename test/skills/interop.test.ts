import { beforeAll, describe, expect, it } from 'vitest';
import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { newHome, PASSWORD, type TestHome } from '../helpers/cli.ts';
import { makeSkill, minisign, minisignPath } from './helpers.ts';

let t: TestHome;
let ours: { key: string; pub: string };
let theirs: { key: string; pub: string; id: string };
let skill: string;

function copy(name: string): string {
  const dir = path.join(t.dir, name);
  cpSync(skill, dir, { recursive: true });
  return dir;
}

async function verify(dir: string, pub: string) {
  const r = await t.tp(['skill', 'verify', dir, '--key', pub, '--json']);
  return { code: r.code, stderr: r.stderr, verdict: JSON.parse(r.stdout || '{}') };
}

beforeAll(async () => {
  minisignPath();
  t = await newHome({ init: false });
  const prefix = path.join(t.dir, 'ours');
  const k = await t.tp([
    'skill',
    'keygen',
    '--out',
    prefix,
    '--password-file',
    t.passwordFile,
    '--kdf-memory-mib',
    '16',
  ]);
  if (k.code !== 0) throw new Error(k.stderr);
  ours = { key: `${prefix}.key`, pub: `${prefix}.pub` };
  // minisign prints a key id without its leading zeros: keep generating until the id has one
  // (1 key in 16), so that the short form it prints is what the comments below carry.
  const pub = path.join(t.dir, 'theirs.pub');
  const key = path.join(t.dir, 'theirs.key');
  let id = '';
  for (let tries = 0; id.length !== 15 && tries < 400; tries++) {
    rmSync(pub, { force: true });
    rmSync(key, { force: true });
    const g = minisign(['-G', '-W', '-p', 'theirs.pub', '-s', 'theirs.key'], { cwd: t.dir });
    if (g.code !== 0) throw new Error(g.stderr);
    id = (readFileSync(pub, 'utf8').split('\n')[0] as string).split(' ').pop() as string;
  }
  expect(id).toMatch(/^[0-9A-F]{15}$/);
  theirs = { key, pub, id };
  skill = makeSkill(path.join(t.dir, 'skill'));
  const s = await t.tp([
    'skill',
    'sign',
    skill,
    '--key',
    ours.key,
    '--name',
    'interop',
    '--password-file',
    t.passwordFile,
  ]);
  if (s.code !== 0) throw new Error(s.stderr);
});

describe('minisign checks what skill sign writes', () => {
  it('minisign -V -p PREFIX.pub -m MANIFEST accepts it, prehashed (-H), with our trusted comment', () => {
    const r = minisign(['-V', '-H', '-p', ours.pub, '-m', 'MANIFEST'], { cwd: skill });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Signature and comment signature verified/);
    expect(r.stdout).toMatch(
      /Trusted comment: trust-protocol skill name=interop version=0\.0\.0 publisher=[0-9A-F]{16} expires=never signed=/,
    );
  });

  it('minisign refuses the manifest once it changed, and the wrong public key', () => {
    const dir = copy('changed');
    writeFileSync(
      path.join(dir, 'MANIFEST'),
      readFileSync(path.join(dir, 'MANIFEST'), 'utf8') + '# x\n',
    );
    expect(minisign(['-V', '-p', ours.pub, '-m', 'MANIFEST'], { cwd: dir }).code).toBe(1);
    const wrong = minisign(['-V', '-p', theirs.pub, '-m', 'MANIFEST'], { cwd: skill });
    expect([wrong.code, /key id/.test(wrong.stderr)]).toEqual([1, true]);
  });

  it('minisign -S signs with a key from skill keygen (password on stdin), and skill verify accepts it', async () => {
    const dir = copy('resigned');
    const id = (readFileSync(ours.pub, 'utf8').split('\n')[0] as string).split(' ').pop();
    const r = minisign([
      '-S',
      '-s',
      ours.key,
      '-m',
      'MANIFEST',
      '-t',
      `trust-protocol skill name=resigned version=3 publisher=${id} expires=2999-01-01`,
    ], { cwd: dir, input: `${PASSWORD}\n` });
    expect(r.code, r.stderr).toBe(0);
    const v = await verify(dir, ours.pub);
    expect(v.code, JSON.stringify(v.verdict)).toBe(0);
    expect(v.verdict).toMatchObject({
      name: 'resigned',
      version: '3',
      expires: '2999-01-01T00:00:00Z',
    });
  });
});

describe('skill verify checks what minisign signs', () => {
  it('accepts a prehashed minisign -S signature whose trusted comment follows the format', async () => {
    const dir = copy('by-minisign');
    const r = minisign([
      '-S',
      '-s',
      theirs.key,
      '-m',
      'MANIFEST',
      '-t',
      `trust-protocol skill name=weather version=1.0 publisher=${theirs.id} expires=never`,
    ], { cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    const v = await verify(dir, theirs.pub);
    expect(v.code, JSON.stringify(v.verdict)).toBe(0);
    expect(v.verdict).toMatchObject({
      ok: true,
      name: 'weather',
      version: '1.0',
      key_id: theirs.id.padStart(16, '0'),
    });
    // And it still catches a tampered file under that signature.
    writeFileSync(path.join(dir, 'SKILL.md'), 'changed');
    expect((await verify(dir, theirs.pub)).verdict.problems.map((p: { kind: string }) => p.kind))
      .toEqual(['modified']);
  });

  it('accepts a legacy (non-prehashed, minisign -S -l) signature', async () => {
    const dir = copy('legacy');
    const r = minisign([
      '-S',
      '-l',
      '-s',
      theirs.key,
      '-m',
      'MANIFEST',
      '-t',
      `trust-protocol skill name=old version=1 publisher=${theirs.id} expires=never`,
    ], { cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(path.join(dir, 'MANIFEST.minisig'), 'utf8').split('\n')[1]).toMatch(
      /^RWQ|^RWR|^RWS|^RWT/,
    );
    const v = await verify(dir, theirs.pub);
    expect(v.code, JSON.stringify(v.verdict)).toBe(0);
    expect(v.verdict.name).toBe('old');
  });

  it("refuses minisign's default trusted comment (no name, version or expiry in it)", async () => {
    const dir = copy('default-comment');
    expect(minisign(['-S', '-s', theirs.key, '-m', 'MANIFEST'], { cwd: dir }).code).toBe(0);
    const v = await verify(dir, theirs.pub);
    expect([v.code, v.verdict.problems.map((p: { kind: string }) => p.kind)]).toEqual([1, [
      'malformed_comment',
    ]]);
  });

  it('skill sign uses a minisign -W key (no password asked)', async () => {
    const dir = copy('signed-with-theirs');
    const s = await t.tp(['skill', 'sign', dir, '--key', theirs.key, '--name', 'w2']);
    expect(s.code, s.stderr).toBe(0);
    expect(minisign(['-V', '-p', theirs.pub, '-m', 'MANIFEST'], { cwd: dir }).code).toBe(0);
    expect((await verify(dir, theirs.pub)).code).toBe(0);
  });
});
