import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { mkdirSync, writeFileSync } from 'node:fs';
import { Buffer } from 'node:buffer';
import * as path from 'node:path';
import { TpError } from '../../src/errors.ts';
import {
  formatManifest,
  type ManifestEntry,
  parseManifest,
  pathProblem,
} from '../../src/skills/manifest.ts';
import { scanSkill } from '../../src/skills/scan.ts';
import { makeSkill, sha256sumCheck, tempDir } from './helpers.ts';

const text = (b: Uint8Array) => Buffer.from(b).toString('utf8');
const bytes = (s: string) => new Uint8Array(Buffer.from(s, 'utf8'));
const SHA = 'a'.repeat(64);

function entry(p: string, extra: Partial<ManifestEntry> = {}): ManifestEntry {
  return { path: p, size: 3, mode: 0o644, sha256: SHA, ...extra };
}

function malformed(input: string): string {
  try {
    parseManifest(bytes(input));
  } catch (e) {
    if (e instanceof TpError && e.code === 'malformed_manifest') return e.message;
    throw e;
  }
  throw new Error(`accepted: ${JSON.stringify(input)}`);
}

describe('manifest format', () => {
  it('writes sorted #file/checksum pairs under a versioned header', () => {
    const out = text(formatManifest([
      entry('b.txt'),
      entry('a/z.sh', { mode: 0o755, size: 12 }),
      entry('B.txt'),
    ]));
    expect(out).toBe(
      '# trust-protocol skill manifest v1\n' +
        '# sha256sum --strict -c MANIFEST checks every file; each "#file MODE SIZE" line describes the next.\n' +
        `#file 0644 3\n${SHA}  B.txt\n` +
        `#file 0755 12\n${SHA}  a/z.sh\n` +
        `#file 0644 3\n${SHA}  b.txt\n`,
    );
  });

  it('sorts by UTF-8 bytes, not UTF-16 code units (same order on every runtime)', () => {
    // U+FF21 (3 UTF-8 bytes) sorts before U+1F600 (4 bytes, a surrogate pair in UTF-16).
    const out = text(formatManifest([entry('\u{1F600}'), entry('\uFF21')]));
    expect(out.indexOf('\uFF21')).toBeLessThan(out.indexOf('\u{1F600}'));
  });

  it('parses what it writes (property: any safe paths, sizes, modes)', () => {
    const segment = fc.stringMatching(/^[A-Za-z0-9 ._\-#*\u00e9\u4e2d]{1,12}$/).filter((s) =>
      s !== '.' && s !== '..'
    );
    const arbEntry = fc.record({
      path: fc.array(segment, { minLength: 1, maxLength: 3 }).map((s) => s.join('/')),
      size: fc.nat({ max: Number.MAX_SAFE_INTEGER }),
      mode: fc.constantFrom(0o644 as const, 0o755 as const),
      sha256: fc.stringMatching(/^[0-9a-f]{64}$/),
    }).filter((e) => pathProblem(e.path) === null);
    fc.assert(
      fc.property(
        fc.uniqueArray(arbEntry, { selector: (e) => e.path, maxLength: 12 }),
        (entries) => {
          const parsed = parseManifest(formatManifest(entries));
          const sorted = [...entries].sort((a, b) =>
            Buffer.compare(Buffer.from(a.path), Buffer.from(b.path))
          );
          expect(parsed).toEqual(sorted);
        },
      ),
    );
  });

  it('refuses every other byte form', () => {
    const good = text(formatManifest([entry('a'), entry('b')]));
    const [h1, h2, m1, s1, m2, s2] = good.split('\n');
    const cases: Record<string, string> = {
      'no header': `${m1}\n${s1}\n`,
      'version 2': good.replace('manifest v1', 'manifest v2'),
      'changed explanation line': good.replace(h2 as string, '# hello'),
      'CRLF': good.replaceAll('\n', '\r\n'),
      'no final newline': good.slice(0, -1),
      'unsorted': `${h1}\n${h2}\n${m2}\n${s2}\n${m1}\n${s1}\n`,
      'duplicate': `${h1}\n${h2}\n${m1}\n${s1}\n${m1}\n${s1}\n`,
      'mode 0600': good.replace('#file 0644', '#file 0600'),
      'leading zero size': good.replace('#file 0644 3', '#file 0644 03'),
      'upper-case hex': good.replace(SHA, SHA.toUpperCase()),
      'binary-mode marker': good.replace(`${SHA}  a`, `${SHA} *a`),
      'missing checksum line': `${h1}\n${h2}\n${m1}\n`,
      'extra comment': `${good}# more\n`,
      'blank line': `${good}\n`,
    };
    for (const [what, input] of Object.entries(cases)) {
      expect(() => malformed(input), what).not.toThrow();
    }
    const invalidUtf8 = Buffer.concat([
      Buffer.from(`${h1}\n${h2}\n${m1}\n${SHA}  `),
      Buffer.from([0xff, 0x0a]),
    ]);
    expect(() => parseManifest(new Uint8Array(invalidUtf8))).toThrow(/not UTF-8/);
  });

  it('names paths that escape, are absolute, reserved, or need escaping', () => {
    const unsafe = [
      '../etc/passwd',
      'a/../../b',
      '/etc/passwd',
      'a//b',
      './a',
      'a/',
      'a\\b',
      'new\nline',
      'tab\there',
      'bell\u0007',
      'MANIFEST',
      'MANIFEST.minisig',
      '',
    ];
    for (const p of unsafe) expect(pathProblem(p), p).not.toBeNull();
    // Reading only checks the syntax: the verifier reports each unsafe path by name.
    const listed = text(formatManifest([entry('ok')])).replace('  ok\n', '  ../escape\n');
    expect(parseManifest(bytes(listed))[0]?.path).toBe('../escape');
    expect(pathProblem('sub/MANIFEST')).toBeNull();
    expect(pathProblem('caf\u00e9/#x *y')).toBeNull();
  });
});

describe('GNU sha256sum reads the manifest', () => {
  it('checks every file with --strict and no warning, and catches a change', () => {
    const dir = makeSkill(tempDir());
    mkdirSync(path.join(dir, 'odd names'), { recursive: true });
    writeFileSync(path.join(dir, 'odd names', '#hash start.txt'), 'x');
    writeFileSync(path.join(dir, 'odd names', '*star'), 'y');
    writeFileSync(path.join(dir, 'odd names', ' leading space'), 'z');
    const seen = scanSkill(dir);
    const entries = seen.flatMap((s) => (s.kind === 'file' ? [s] : []));
    writeFileSync(path.join(dir, 'MANIFEST'), formatManifest(entries));
    const ok = sha256sumCheck(dir);
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    expect(ok.stdout.trim().split('\n').length).toBe(entries.length);
    expect(ok.stdout).toMatch(/odd names\/#hash start\.txt: OK/);

    writeFileSync(path.join(dir, 'SKILL.md'), 'tampered');
    const bad = sha256sumCheck(dir);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/SKILL\.md: FAILED/);
  });
});
