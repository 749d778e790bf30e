import { describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { Buffer } from 'node:buffer';
import * as path from 'node:path';
import { TpError } from '../../src/errors.ts';
import {
  formatPublicKey,
  formatSecretKey,
  generateKey,
  keyIdHex,
  limitsForMemory,
  MINISIGN_KDF,
  openSecretKey,
  parsePublicKey,
  parseSecretKey,
  scryptParams,
} from '../../src/skills/keys.ts';
import { checkSignature, parseSignature, signFile } from '../../src/skills/signature.ts';
import { minisign, tempDir } from './helpers.ts';

const utf8 = (s: string) => new Uint8Array(Buffer.from(s, 'utf8'));
const FAST = limitsForMemory(16n * 1024n * 1024n);
const PASSWORD = utf8('correct horse battery staple');
const FIXTURE = new URL('../../fixtures/vectors/', import.meta.url);

function thrown(fn: () => unknown): TpError {
  try {
    fn();
  } catch (e) {
    if (e instanceof TpError) return e;
    throw e;
  }
  throw new Error('expected a TpError');
}

describe('scrypt parameters (libsodium pickparams, as minisign uses them)', () => {
  it("maps minisign's default limits to N=2^20, r=8, p=1", () => {
    expect(scryptParams(MINISIGN_KDF)).toEqual({ N: 2 ** 20, r: 8, p: 1 });
  });

  it("maps libsodium's interactive limits and the keygen floor to N=2^14", () => {
    expect(scryptParams({ opsLimit: 524288n, memLimit: 16777216n })).toEqual({
      N: 2 ** 14,
      r: 8,
      p: 1,
    });
    expect(scryptParams(FAST)).toEqual({ N: 2 ** 14, r: 8, p: 1 });
    expect(scryptParams(limitsForMemory(64n * 1024n * 1024n))).toEqual({ N: 2 ** 16, r: 8, p: 1 });
  });

  it('follows the CPU-bound branch and clamps tiny opslimits like libsodium', () => {
    // opslimit < memlimit/32: N from opslimit (maxN = ops / 32).
    expect(scryptParams({ opsLimit: 32768n, memLimit: 1n << 30n })).toEqual({
      N: 2 ** 10,
      r: 8,
      p: 1,
    });
    expect(scryptParams({ opsLimit: 1n, memLimit: 1n << 30n })).toEqual({ N: 2 ** 10, r: 8, p: 1 });
    // More operations than memory: more lanes.
    expect(scryptParams({ opsLimit: 1n << 24n, memLimit: 16777216n })).toEqual({
      N: 2 ** 14,
      r: 8,
      p: 32,
    });
  });

  it("refuses costs beyond minisign's (a hostile key file must not hang or exhaust memory)", () => {
    expect(thrown(() => scryptParams({ opsLimit: 1n << 40n, memLimit: 1n << 40n })).code).toBe(
      'kdf_params',
    );
    expect(thrown(() => scryptParams({ opsLimit: 1n << 33n, memLimit: 1n << 30n })).code).toBe(
      'kdf_params',
    );
  });
});

describe('public key files', () => {
  it('round-trips and names the key id as minisign prints it', () => {
    const key = generateKey();
    const text = formatPublicKey(key);
    expect(text).toMatch(
      new RegExp(`^untrusted comment: minisign public key ${keyIdHex(key.keyId)}\\nRW[Q-T]`),
    );
    const back = parsePublicKey(utf8(text));
    expect(back.keyId).toEqual(key.keyId);
    expect(back.publicKey).toEqual(key.publicKey);
    expect(keyIdHex(new Uint8Array([0xc1, 0x22, 0x16, 0x31, 0x43, 0x8e, 0xa5, 0x2e])))
      .toBe('2EA58E43311622C1');
  });

  it('refuses other algorithms, lengths and spellings', () => {
    const key = generateKey();
    const [comment, line] = formatPublicKey(key).split('\n') as [string, string];
    const body = Buffer.from(line, 'base64');
    const variants = [
      '',
      line,
      `${comment}\n`,
      `${comment}\n${Buffer.concat([Buffer.from('ED'), body.subarray(2)]).toString('base64')}\n`,
      `${comment}\n${body.subarray(0, 41).toString('base64')}\n`,
      `${comment}\n${line.slice(0, -1)}\n`,
      `${comment}\n${line} \n`,
      `${comment}\n${line}\nextra\n`,
    ];
    for (const v of variants) {
      expect(thrown(() => parsePublicKey(utf8(v))).code).toBe('malformed_key');
    }
  });
});

describe('secret key files', () => {
  it('round-trips with the password and refuses a wrong one (exit 3)', () => {
    const key = generateKey();
    const file = parseSecretKey(utf8(formatSecretKey(key, PASSWORD, { limits: FAST })));
    expect(file.encrypted).toBe(true);
    const opened = openSecretKey(file, PASSWORD);
    expect(opened.seed).toEqual(key.seed);
    expect(opened.keyId).toEqual(key.keyId);
    const wrong = thrown(() => openSecretKey(file, utf8('wrong horse')));
    expect([wrong.kind, wrong.code]).toEqual(['sealed', 'wrong_key_password']);
  });

  it('detects a damaged encrypted body', () => {
    const text = formatSecretKey(generateKey(), PASSWORD, { limits: FAST });
    const [comment, line] = text.split('\n') as [string, string];
    const body = Buffer.from(line, 'base64');
    body[100] = (body[100] as number) ^ 1;
    const file = parseSecretKey(utf8(`${comment}\n${body.toString('base64')}\n`));
    expect(thrown(() => openSecretKey(file, PASSWORD)).code).toBe('wrong_key_password');
  });

  it('refuses files that are not minisign secret keys', () => {
    for (const v of ['', 'untrusted comment: x\nAAAA\n', formatPublicKey(generateKey())]) {
      expect(thrown(() => parseSecretKey(utf8(v))).code).toBe('malformed_key');
    }
  });

  it('decrypts a key minisign made with its own default cost (scrypt N=2^20, 1 GiB)', () => {
    const file = parseSecretKey(
      new Uint8Array(readFileSync(new URL('minisign-encrypted.key', FIXTURE))),
    );
    const pub = parsePublicKey(
      new Uint8Array(readFileSync(new URL('minisign-encrypted.pub', FIXTURE))),
    );
    const body = file.body;
    expect(new DataView(body.buffer, body.byteOffset).getBigUint64(46, true)).toBe(
      MINISIGN_KDF.memLimit,
    );
    const key = openSecretKey(file, utf8('fixture password, not a secret'));
    expect(key.publicKey).toEqual(pub.publicKey);
    expect(key.keyId).toEqual(pub.keyId);
  }, 120_000); // 1 GiB of scrypt: slow on a loaded machine; a hang guard, not a timing check
});

describe('minisign reads our keys and we read its keys', () => {
  it('minisign -S signs with a key from formatSecretKey; both verifiers accept', () => {
    const dir = tempDir();
    const key = generateKey();
    writeFileSync(path.join(dir, 'k.key'), formatSecretKey(key, PASSWORD, { limits: FAST }));
    writeFileSync(path.join(dir, 'k.pub'), formatPublicKey(key));
    const message = utf8('a manifest\n');
    writeFileSync(path.join(dir, 'm'), message);
    const signed = minisign(['-S', '-s', 'k.key', '-m', 'm', '-t', 'made by minisign'], {
      cwd: dir,
      input: 'correct horse battery staple\n',
    });
    expect(signed.code, signed.stderr).toBe(0);
    expect(minisign(['-V', '-p', 'k.pub', '-m', 'm'], { cwd: dir }).code).toBe(0);
    const sig = parseSignature(new Uint8Array(readFileSync(path.join(dir, 'm.minisig'))));
    expect(sig.prehashed).toBe(true);
    expect(checkSignature(sig, message, key)).toEqual([]);
    expect(checkSignature(sig, utf8('another manifest\n'), key).map((f) => f.kind)).toEqual([
      'bad_signature',
    ]);
  });

  it('minisign rejects the key with a wrong password', () => {
    const dir = tempDir();
    writeFileSync(
      path.join(dir, 'k.key'),
      formatSecretKey(generateKey(), PASSWORD, { limits: FAST }),
    );
    writeFileSync(path.join(dir, 'm'), 'x');
    const r = minisign(['-S', '-s', 'k.key', '-m', 'm'], { cwd: dir, input: 'nope\n' });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/Wrong password/);
  });

  it('a minisign -W key (no password) opens without one and its signatures verify in minisign', () => {
    const dir = tempDir();
    expect(minisign(['-G', '-W', '-p', 'x.pub', '-s', 'x.key'], { cwd: dir }).code).toBe(0);
    const file = parseSecretKey(new Uint8Array(readFileSync(path.join(dir, 'x.key'))));
    expect(file.encrypted).toBe(false);
    const key = openSecretKey(file, null);
    const pub = parsePublicKey(new Uint8Array(readFileSync(path.join(dir, 'x.pub'))));
    expect(key.publicKey).toEqual(pub.publicKey);
    writeFileSync(path.join(dir, 'm'), 'hello');
    writeFileSync(
      path.join(dir, 'm.minisig'),
      signFile(utf8('hello'), key, { trustedComment: 'ours', untrustedComment: 'test' }),
    );
    const r = minisign(['-V', '-p', 'x.pub', '-m', 'm'], { cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Trusted comment: ours/);
  });
});
