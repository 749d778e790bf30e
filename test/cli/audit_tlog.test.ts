import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { newAgent, newHome, PASSWORD, type TestHome } from '../helpers/cli.ts';
import { loadVault, saveVault, unseal, wipeKeys } from '../../src/vault.ts';

async function ok(t: TestHome, args: string[]): Promise<string> {
  const r = await t.tp(args);
  expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
  return r.stdout;
}

const pw = (t: TestHome) => ['--password-file', t.passwordFile];
const logPath = (t: TestHome) => path.join(t.home, 'audit', 'audit.log');

describe('transparency: checkpoints, proofs, witnesses', () => {
  it(
    'an auditor checks one entry without the password; wrong checkpoint, entry or key are rejected',
    async () => {
      const t = await newHome();
      await newAgent(t, { name: 'bot1' });
      const vkey = (await ok(t, ['audit', 'key', ...pw(t)])).trim();
      const c1 = t.file('c1.txt', await ok(t, ['audit', 'checkpoint', ...pw(t)]));
      const proofText = await ok(t, ['audit', 'prove', '2', '--checkpoint', c1]);
      const proofFile = t.file('proof.json', proofText);
      const v = await t.tp(['audit', 'verify-proof', proofFile, '--key', vkey]);
      expect(v.code, v.stderr).toBe(0);
      expect(v.stdout).toMatch(/entry 2 is in the log trust-protocol\//);

      const proof = JSON.parse(proofText);
      // The entry altered after the fact.
      const altered = t.file(
        'altered.json',
        JSON.stringify({
          ...proof,
          entry: proof.entry.replace('"outcome":"ok"', '"outcome":"no"'),
        }),
      );
      expect((await t.tp(['audit', 'verify-proof', altered, '--key', vkey])).code).toBe(1);
      // The proof set against another (later) checkpoint of the same log.
      await newAgent(t, { name: 'bot2' });
      const c2 = await ok(t, ['audit', 'checkpoint', ...pw(t)]);
      const size2 = Number(c2.split('\n')[1]);
      const against = t.file(
        'against.json',
        JSON.stringify({ ...proof, checkpoint: c2, tree_size: size2 }),
      );
      const w = await t.tp(['audit', 'verify-proof', against, '--key', vkey]);
      expect(w.code).toBe(1);
      expect(w.stderr).toMatch(/not in the tree the checkpoint signs/);
      // Another instance's key.
      const other = await newHome({ fresh: true }); // another instance: its own vault and key
      const otherKey = (await ok(other, ['audit', 'key', ...pw(other)])).trim();
      expect((await t.tp(['audit', 'verify-proof', proofFile, '--key', otherKey])).code).toBe(1);
    },
    120_000,
  );

  it(
    'verify --checkpoint proves the log extends it, and catches a rewrite or a rollback',
    async () => {
      const t = await newHome();
      await newAgent(t, { name: 'bot1' });
      const vkey = (await ok(t, ['audit', 'key', ...pw(t)])).trim();
      const old = fs.readFileSync(logPath(t));
      const c1 = t.file('c1.txt', await ok(t, ['audit', 'checkpoint', ...pw(t)]));
      await newAgent(t, { name: 'bot2' });
      const r = await t.tp(['--json', 'audit', 'verify', '--checkpoint', c1, '--key', vkey]);
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout).checkpoint).toMatchObject({ consistent: true });

      // A later checkpoint, then the log restored to the older copy: the later one is not extended.
      const c2 = t.file('c2.txt', await ok(t, ['audit', 'checkpoint', ...pw(t)]));
      const now = fs.readFileSync(logPath(t));
      fs.writeFileSync(logPath(t), old);
      const back = await t.tp(['audit', 'verify', '--checkpoint', c2, '--key', vkey]);
      expect(back.code).toBe(1);
      expect(back.stdout).toMatch(/cut or rolled back/);

      // History rewritten: an old entry changed and the chain recomputed is still not consistent.
      fs.writeFileSync(logPath(t), now);
      const lines = now.toString('utf8').trimEnd().split('\n');
      lines[0] = lines[0]!.replace('"outcome":"ok"', '"outcome":"ok" ');
      fs.writeFileSync(logPath(t), lines.join('\n') + '\n');
      const rewritten = await t.tp([
        '--json',
        'audit',
        'verify',
        '--checkpoint',
        c1,
        '--key',
        vkey,
      ]);
      expect(rewritten.code).toBe(1);
      expect(JSON.parse(rewritten.stdout).checkpoint).toMatchObject({ consistent: false });
    },
    120_000,
  );

  it('witnesses: a quorum of cosignatures, a forged one rejected, a rollback caught', async () => {
    const t = await newHome();
    const vkey = (await ok(t, ['audit', 'key', ...pw(t)])).trim();
    const wkey = path.join(t.dir, 'w.key');
    const wv = (await ok(t, ['audit', 'witness-key', 'witness.test/w1', '--out', wkey])).trim();
    const old = {
      log: fs.readFileSync(logPath(t)),
      vault: fs.readFileSync(path.join(t.home, 'vault.json')),
    };
    await newAgent(t, { name: 'bot1' });
    const c1 = t.file('c1.txt', await ok(t, ['audit', 'checkpoint', ...pw(t)]));
    const s1 = t.file(
      's1.txt',
      await ok(t, ['audit', 'cosign', c1, '--key', wkey, '--log-key', vkey]),
    );
    expect(
      (await t.tp(['audit', 'verify', '--checkpoint', s1, '--key', vkey, '--witness', wv])).code,
    )
      .toBe(0);
    // Unsigned by the witness: quorum not met.
    expect(
      (await t.tp(['audit', 'verify', '--checkpoint', c1, '--key', vkey, '--witness', wv])).code,
    )
      .toBe(1);
    // A forged cosignature: the witness's line with its signature bytes changed.
    const text = fs.readFileSync(s1, 'utf8');
    const lines = text.trimEnd().split('\n');
    const last = lines[lines.length - 1]!;
    const [dash, name, sig] = last.split(' ');
    const raw = Buffer.from(sig!, 'base64');
    raw[20] = raw[20]! ^ 1;
    lines[lines.length - 1] = `${dash} ${name} ${raw.toString('base64')}`;
    const forged = t.file('forged.txt', lines.join('\n') + '\n');
    const f = await t.tp([
      'audit',
      'verify',
      '--checkpoint',
      forged,
      '--key',
      vkey,
      '--witness',
      wv,
    ]);
    expect(f.code).toBe(1);
    expect(f.stdout).toMatch(/0 valid of 1/);

    // The same-user attacker restores the older log and vault; the witness saw more.
    fs.writeFileSync(logPath(t), old.log);
    fs.writeFileSync(path.join(t.home, 'vault.json'), old.vault);
    const c0 = t.file('c0.txt', await ok(t, ['audit', 'checkpoint', ...pw(t)]));
    const rb = await t.tp(['audit', 'cosign', c0, '--key', wkey]);
    expect(rb.code).toBe(1);
    expect(rb.stderr).toMatch(/rollback/);
    // ...and grows the restored log past the size the witness saw: a fork, not an extension.
    for (let i = 0; i < 4; i++) await newAgent(t, { name: `fork${i}` });
    const c3 = t.file('c3.txt', await ok(t, ['audit', 'checkpoint', ...pw(t)]));
    const fork = await t.tp(['audit', 'cosign', c3, '--key', wkey]);
    expect(fork.code).toBe(1);
    expect(fork.stderr).toMatch(/does not extend/);
  }, 180_000);

  it(
    'a vault from before the checkpoint key gets one on the first `audit checkpoint`, recorded',
    async () => {
      const t = await newHome();
      // A vault as 0.3 wrote it: no audit_signing field, MAC valid under the vault's keys.
      const home = { dir: t.home };
      const file = loadVault(home);
      const keys = unseal(file, new TextEncoder().encode(PASSWORD));
      try {
        const { audit_signing: _, ...body } = file.body;
        saveVault(home, { ...file, body: body as typeof file.body }, keys);
      } finally {
        wipeKeys(keys);
      }
      expect(JSON.parse(fs.readFileSync(path.join(t.home, 'vault.json'), 'utf8')).body)
        .not.toHaveProperty('audit_signing');
      expect((await t.tp(['audit', 'verify', ...pw(t)])).code).toBe(0);
      // Without the password there is no key to sign with, and nothing is created.
      const none = await t.tp(['audit', 'checkpoint'], { env: { TRUST_PROTOCOL_PASSWORD: '' } });
      expect(none.code).not.toBe(0);
      const note = await ok(t, ['audit', 'checkpoint', ...pw(t)]);
      const body = JSON.parse(fs.readFileSync(path.join(t.home, 'vault.json'), 'utf8')).body;
      expect(body.audit_signing.public_key).toEqual(expect.any(String));
      const created = fs.readFileSync(logPath(t), 'utf8').trim().split('\n').map((l) =>
        JSON.parse(l)
      ).filter((e) => e.event === 'audit.key_created');
      expect(created).toHaveLength(1);
      expect(created[0]).toMatchObject({
        actor: { type: 'operator' },
        data: { origin: body.audit_signing.origin, public_key: body.audit_signing.public_key },
        mac: expect.any(String),
      });
      // The note is signed by that key: the published verifier key checks it.
      const vkey = (await ok(t, ['audit', 'key', ...pw(t)])).trim();
      const c = t.file('c.txt', note);
      expect(await ok(t, ['audit', 'verify', '--checkpoint', c, '--key', vkey])).toMatch(
        /extended/,
      );
      // Once: the second checkpoint uses the same key and records nothing new.
      await ok(t, ['audit', 'checkpoint', ...pw(t)]);
      expect(fs.readFileSync(logPath(t), 'utf8').split('audit.key_created').length - 1).toBe(1);
    },
    120_000,
  );
});
