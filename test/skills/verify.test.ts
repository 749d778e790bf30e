import { describe, expect, it } from 'vitest';
import { Buffer } from 'node:buffer';
import {
  formatComment,
  parseComment,
  parseExpiry,
  type SkillMeta,
} from '../../src/skills/comment.ts';
import { formatPublicKey, generateKey, keyIdHex, type SecretKey } from '../../src/skills/keys.ts';
import { formatManifest } from '../../src/skills/manifest.ts';
import type { Loaded, Seen } from '../../src/skills/scan.ts';
import { signSkill } from '../../src/skills/sign.ts';
import { signFile } from '../../src/skills/signature.ts';
import { trustFromKeyFile, trustFromPublisher } from '../../src/skills/trust.ts';
import { type ProblemKind, type Trust, verifySkill } from '../../src/skills/verify.ts';
import type { PublisherRecord } from '../../src/vault.ts';

const NOW = new Date('2026-03-01T12:00:00Z');
const utf8 = (s: string) => new Uint8Array(Buffer.from(s, 'utf8'));
const sha = (c: string) => c.repeat(64);

const FILES: Seen[] = [
  { kind: 'file', path: 'SKILL.md', size: 10, mode: 0o644, sha256: sha('1') },
  { kind: 'dir', path: 'bin' },
  { kind: 'file', path: 'bin/run.sh', size: 20, mode: 0o755, sha256: sha('2') },
  { kind: 'dir', path: 'lib' },
  { kind: 'file', path: 'lib/a.js', size: 30, mode: 0o644, sha256: sha('3') },
  { kind: 'file', path: 'lib/b.js', size: 40, mode: 0o644, sha256: sha('4') },
];

function signed(
  key: SecretKey,
  options: { seen?: Seen[]; expires?: string | null; comment?: string } = {},
): { manifest: Loaded; signature: Loaded } {
  const out = signSkill({
    seen: options.seen ?? FILES,
    key,
    name: 'weather',
    version: '1.2.0',
    expires: options.expires === undefined ? '2027-01-01T00:00:00Z' : options.expires,
    now: NOW,
  });
  const signature = options.comment === undefined
    ? out.signature
    : signFile(out.manifest, key, { trustedComment: options.comment, untrustedComment: 'x' });
  return { manifest: { bytes: out.manifest }, signature: { bytes: signature } };
}

function keyTrust(key: SecretKey, publishers: PublisherRecord[] = []): Trust {
  return trustFromKeyFile(utf8(formatPublicKey(key)), publishers);
}

function kinds(
  input: { seen?: Seen[]; manifest: Loaded; signature: Loaded; trust: Trust; now?: Date },
): ProblemKind[] {
  return verifySkill({ seen: FILES, now: NOW, ...input }).problems.map((p) => p.kind);
}

function record(key: SecretKey, extra: Partial<PublisherRecord> = {}): PublisherRecord {
  return {
    name: 'acme',
    key_id: keyIdHex(key.keyId),
    public_key: Buffer.from(key.publicKey).toString('base64'),
    added_at: '2026-01-01T00:00:00.000Z',
    revoked_at: null,
    revoke_reason: null,
    ...extra,
  };
}

describe('verifySkill: a good signature', () => {
  it('passes and reports the signed name, version, publisher and expiry', () => {
    const key = generateKey();
    const v = verifySkill({
      seen: FILES,
      ...signed(key),
      trust: keyTrust(key, [record(key)]),
      now: NOW,
    });
    expect(v).toMatchObject({
      ok: true,
      problems: [],
      name: 'weather',
      version: '1.2.0',
      publisher: 'acme',
      key_id: keyIdHex(key.keyId),
      expires: '2027-01-01T00:00:00Z',
      signed: '2026-03-01T12:00:00Z',
      files: 4,
    });
  });
});

describe('verifySkill: each tamper is named', () => {
  const key = generateKey();
  const good = signed(key);
  const trust = keyTrust(key);
  const change = (edit: (s: Seen[]) => Seen[]) =>
    kinds({ ...good, trust, seen: edit(structuredClone(FILES)) });

  it('modified content, same size or not', () => {
    expect(change((s) => s.map((f) => (f.path === 'SKILL.md' ? { ...f, sha256: sha('9') } : f))))
      .toEqual(['modified']);
    expect(change((s) => s.map((f) => (f.path === 'SKILL.md' ? { ...f, size: 11 } : f))))
      .toEqual(['modified']);
  });

  it('added, removed, renamed (same content under another name)', () => {
    expect(
      change((
        s,
      ) => [...s, { kind: 'file', path: 'new.js', size: 1, mode: 0o644, sha256: sha('8') }]),
    )
      .toEqual(['added']);
    expect(change((s) => s.filter((f) => f.path !== 'lib/a.js'))).toEqual(['removed']);
    expect(change((s) => s.map((f) => (f.path === 'lib/a.js' ? { ...f, path: 'lib/c.js' } : f))))
      .toEqual(['renamed']);
  });

  it('executable bit set or cleared, also on a renamed file', () => {
    expect(change((s) => s.map((f) => (f.path === 'bin/run.sh' ? { ...f, mode: 0o644 } : f))))
      .toEqual(['mode_changed']);
    expect(change((s) => s.map((f) => (f.path === 'SKILL.md' ? { ...f, mode: 0o755 } : f))))
      .toEqual(['mode_changed']);
    expect(
      change((s) =>
        s.map((f) => (f.path === 'bin/run.sh' ? { ...f, path: 'bin/go', mode: 0o644 } : f))
      ),
    )
      .toEqual(['renamed', 'mode_changed']);
  });

  it('links, special files, unreadable files and unsafe names', () => {
    expect(change((s) => [...s, { kind: 'symlink', path: 'lib/link', target: '/etc/passwd' }]))
      .toEqual(['symlink']);
    // A link where a signed file was is a link problem, not also a removal.
    expect(
      change((s) =>
        s.map((
          f,
        ) => (f.path === 'lib/a.js' ? { kind: 'symlink', path: 'lib/a.js', target: 'b.js' } : f))
      ),
    )
      .toEqual(['symlink']);
    expect(change((s) => [...s, { kind: 'special', path: 'fifo' }])).toEqual(['special_file']);
    expect(change((s) => [...s, { kind: 'unreadable', path: 'secret', error: 'EACCES' }])).toEqual([
      'unreadable',
    ]);
    expect(
      change((s) => [...s, { kind: 'file', path: 'a\\b', size: 1, mode: 0o644, sha256: sha('7') }]),
    )
      .toEqual(['unsafe_path', 'added']);
  });

  it('names that collide by case or by Unicode normalisation, reported at the top level', () => {
    expect(
      change((
        s,
      ) => [...s, { kind: 'file', path: 'skill.md', size: 10, mode: 0o644, sha256: sha('1') }]),
    )
      .toEqual(['case_collision', 'added']);
    const nfc = 'caf\u00e9.txt';
    const nfd = 'cafe\u0301.txt';
    const seen: Seen[] = [
      ...FILES,
      { kind: 'file', path: nfc, size: 1, mode: 0o644, sha256: sha('5') },
      { kind: 'file', path: nfd, size: 1, mode: 0o644, sha256: sha('6') },
    ];
    const v = verifySkill({ seen, ...good, trust, now: NOW });
    expect(v.problems.map((p) => p.kind)).toEqual(['unicode_collision', 'added', 'added']);
    expect(v.problems[0]?.detail).toMatch(/NFC\/NFD/);
    const dirs: Seen[] = [
      ...FILES,
      { kind: 'dir', path: 'LIB' },
      { kind: 'file', path: 'LIB/a.js', size: 1, mode: 0o644, sha256: sha('5') },
    ];
    const problems = verifySkill({ seen: dirs, ...good, trust, now: NOW }).problems;
    expect(problems.filter((p) => p.kind === 'case_collision').map((p) => p.path)).toEqual(['LIB']);
  });

  it('a manifest listing paths that escape or are absolute names each one', () => {
    const manifest = Buffer.from(formatManifest([])).toString() +
      `#file 0644 1\n${sha('1')}  ../outside\n#file 0644 1\n${sha('2')}  /etc/passwd\n` +
      `#file 0644 1\n${sha('3')}  a\\b\n`;
    const v = verifySkill({
      manifest: { bytes: utf8(manifest) },
      signature: good.signature,
      trust,
      seen: [],
      now: NOW,
    });
    expect(v.problems.map((p) => `${p.kind} ${p.path ?? ''}`)).toEqual([
      'bad_signature ',
      'unsafe_path ../outside',
      'unsafe_path /etc/passwd',
      'unsafe_path a\\b',
    ]);
  });

  it('lists every problem at once', () => {
    const all = change((s) => [
      ...s
        .filter((f) => f.path !== 'lib/b.js')
        .map((f) => (f.path === 'SKILL.md' ? { ...f, sha256: sha('9') } : f))
        .map((f) => (f.path === 'bin/run.sh' ? { ...f, mode: 0o644 as const } : f)),
      { kind: 'file', path: 'extra', size: 1, mode: 0o644, sha256: sha('8') } as const,
      { kind: 'symlink', path: 'ln', target: '..' } as const,
    ]);
    expect(all.sort()).toEqual(['added', 'mode_changed', 'modified', 'removed', 'symlink']);
  });
});

describe('verifySkill: signature, key and publisher problems', () => {
  const key = generateKey();
  const good = signed(key);

  it('missing or malformed manifest and signature files', () => {
    const trust = keyTrust(key);
    expect(kinds({ manifest: { missing: true }, signature: good.signature, trust }))
      .toEqual(['missing_manifest']);
    expect(kinds({ manifest: good.manifest, signature: { missing: true }, trust }))
      .toEqual(['missing_signature']);
    expect(kinds({ manifest: { problem: 'is a symbolic link' }, signature: good.signature, trust }))
      .toEqual(['malformed_manifest']);
    expect(kinds({ manifest: good.manifest, signature: { bytes: utf8('garbage\n') }, trust }))
      .toEqual(['malformed_signature']);
  });

  it('a manifest changed after signing, or the trusted comment', () => {
    const trust = keyTrust(key);
    const manifest = Buffer.from((good.manifest as { bytes: Uint8Array }).bytes).toString()
      .replace(sha('1'), sha('9'));
    expect(kinds({ manifest: { bytes: utf8(manifest) }, signature: good.signature, trust }))
      .toEqual(['bad_signature', 'modified']);
    const sig = Buffer.from((good.signature as { bytes: Uint8Array }).bytes).toString()
      .replace('version=1.2.0', 'version=9.9.9');
    const v = verifySkill({
      seen: FILES,
      manifest: good.manifest,
      signature: { bytes: utf8(sig) },
      trust,
      now: NOW,
    });
    expect(v.problems.map((p) => p.kind)).toEqual(['bad_comment_signature']);
    expect(v.version).toBeNull();
  });

  it('another key, or an unknown or revoked publisher', () => {
    const other = generateKey();
    expect(kinds({ ...good, trust: keyTrust(other) })).toEqual(['wrong_key']);
    expect(kinds({ ...good, trust: trustFromPublisher('nobody', [record(key)]) }))
      .toEqual(['unknown_publisher']);
    const revoked = record(key, {
      revoked_at: '2026-02-01T00:00:00.000Z',
      revoke_reason: 'key leaked',
    });
    expect(kinds({ ...good, trust: trustFromPublisher('acme', [revoked]) })).toEqual([
      'revoked_publisher',
    ]);
    // The same key given as a file is refused too once its publisher is revoked.
    expect(kinds({ ...good, trust: keyTrust(key, [revoked]) })).toEqual(['revoked_publisher']);
    expect(kinds({ ...good, trust: trustFromPublisher('acme', [record(key)]) })).toEqual([]);
  });

  it('expired, and a comment naming another publisher', () => {
    const trust = keyTrust(key);
    expect(kinds({ ...signed(key, { expires: '2026-03-01T12:00:00Z' }), trust })).toEqual([
      'expired',
    ]);
    expect(
      kinds({ ...signed(key, { expires: null }), trust, now: new Date('2100-01-01T00:00:00Z') }),
    )
      .toEqual([]);
    const meta: SkillMeta = {
      name: 'w',
      version: '1',
      publisher: '0123456789ABCDEF',
      expires: null,
      signed: null,
    };
    expect(kinds({ ...signed(key, { comment: formatComment(meta) }), trust })).toEqual([
      'publisher_mismatch',
    ]);
    expect(kinds({ ...signed(key, { comment: 'timestamp:1700000000\tfile:MANIFEST' }), trust }))
      .toEqual(['malformed_comment']);
  });

  it('small-order and non-canonical keys and signatures', () => {
    const identity = new Uint8Array(32);
    identity[0] = 1;
    const weak = { ...key, publicKey: identity };
    const weakSigned = signed(key);
    expect(kinds({ ...weakSigned, trust: keyTrust(weak as SecretKey) })).toEqual([
      'small_order_key',
    ]);
    const nonCanonical = new Uint8Array(32).fill(0xff);
    nonCanonical[0] = 0xee;
    nonCanonical[31] = 0x7f;
    expect(kinds({ ...good, trust: keyTrust({ ...key, publicKey: nonCanonical }) }))
      .toEqual(['non_canonical_key']);
    // S + L: same scalar mod L, different bytes (a malleated signature).
    const [c1, line, c3, line4] = Buffer.from((good.signature as { bytes: Uint8Array }).bytes)
      .toString().split('\n') as [string, string, string, string];
    const head = Buffer.from(line, 'base64');
    const L = 2n ** 252n + 27742317777372353535851937790883648493n;
    let s = 0n;
    for (let i = 31; i >= 0; i--) s = (s << 8n) | BigInt(head[42 + i] as number);
    s += L;
    for (let i = 0; i < 32; i++) head[42 + i] = Number((s >> BigInt(8 * i)) & 0xffn);
    const malleated = `${c1}\n${head.toString('base64')}\n${c3}\n${line4}\n`;
    expect(
      kinds({
        manifest: good.manifest,
        signature: { bytes: utf8(malleated) },
        trust: keyTrust(key),
      }),
    )
      .toEqual(['non_canonical_signature']);
    head.fill(0, 10, 74);
    head[10] = 1;
    const smallR = `${c1}\n${head.toString('base64')}\n${c3}\n${line4}\n`;
    expect(
      kinds({ manifest: good.manifest, signature: { bytes: utf8(smallR) }, trust: keyTrust(key) }),
    )
      .toEqual(['small_order_signature']);
  });

  it('a malformed key file', () => {
    expect(kinds({ ...good, trust: trustFromKeyFile(utf8('not a key'), []) })).toEqual([
      'malformed_key',
    ]);
  });
});

describe('trusted comment', () => {
  it('round-trips and accepts a hand-written one (as with minisign -t)', () => {
    const meta: SkillMeta = {
      name: 'weather',
      version: '1.0.0-rc.1+b7',
      publisher: 'ABCDEF0123456789',
      expires: '2027-01-31T00:00:00Z',
      signed: '2026-01-01T00:00:00Z',
    };
    expect(parseComment(formatComment(meta))).toEqual(meta);
    expect(
      parseComment(
        'trust-protocol skill publisher=ABCDEF0123456789 expires=2027-01-31 version=2 name=w',
      ),
    )
      .toEqual({
        name: 'w',
        version: '2',
        publisher: 'ABCDEF0123456789',
        expires: '2027-01-31T00:00:00Z',
        signed: null,
      });
  });

  it('takes a key id as minisign prints it, without leading zeros', () => {
    expect(
      parseComment('trust-protocol skill name=w version=1 publisher=3D29B06C2ED054B expires=never')
        .publisher,
    ).toBe('03D29B06C2ED054B');
    expect(
      () =>
        parseComment(
          'trust-protocol skill name=w version=1 publisher=103D29B06C2ED054B expires=never',
        ),
    ).toThrow(/invalid publisher/);
  });

  it('refuses unknown, repeated, missing or invalid fields', () => {
    const base = 'trust-protocol skill name=w version=1 publisher=ABCDEF0123456789 expires=never';
    for (
      const bad of [
        'name=w version=1 publisher=ABCDEF0123456789 expires=never',
        `${base} scope=all`,
        `${base} name=x`,
        'trust-protocol skill name=w version=1 publisher=ABCDEF0123456789',
        base.replace('expires=never', 'expires=2027-02-30'),
        base.replace('ABCDEF0123456789', 'abcdef0123456789'),
        base.replace('name=w', 'name=../w'),
        `${base}  signed=2026-01-01T00:00:00Z`,
      ]
    ) {
      expect(() => parseComment(bad), bad).toThrow(/trusted comment/);
    }
  });

  it('--expires: dates, UTC times and days from now, in the future only', () => {
    expect(parseExpiry('2027-01-31', NOW)).toBe('2027-01-31T00:00:00Z');
    expect(parseExpiry('2026-03-02T00:00:00Z', NOW)).toBe('2026-03-02T00:00:00Z');
    expect(parseExpiry('90d', NOW)).toBe('2026-05-30T12:00:00Z');
    for (const bad of ['2026-02-01', '0d', 'tomorrow', '2026-13-01', '2026-03-01T12:00:00+01:00']) {
      expect(() => parseExpiry(bad, NOW), bad).toThrow(/expires/);
    }
  });
});
