/**
 * Who asks (SPEC §4, §6 step 2): a bad, missing or replaced token, a suspended or revoked agent, a
 * tier below the credential's minimum and a missing grant are each refused with exit 4, nothing is
 * sent, and the refusal comes before the password is needed: the same runs with no password
 * source still exit 4, where an allowed request with no password source exits 3.
 * (Token expiry needs an hour of waiting and is not tested here.)
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newAgent } from '../helpers/cli.ts';
import { bearer, type Canary, newCanary, requestsWith, setupCanary } from '../helpers/canary.ts';

let f: Canary;
const tokens: Record<string, string> = {};

async function _admin(args: string[]): Promise<void> {
  const r = await f.t.tp([...args, '--password-file', f.t.passwordFile]);
  if (r.code !== 0) throw new Error(`${args.join(' ')} failed: ${r.stderr}`);
}

beforeAll(async () => {
  f = await setupCanary({
    credentials: [{
      name: 'kt',
      value: newCanary(),
      flags: ['--allowed-domains', 'api.allowed.test'],
    }],
  });
  // Granted while it asked for COMPANION, then raised: `agent grant` refuses a credential the
  // tier can never use, but a credential's bar can rise after the grant.
  await _admin(['credential', 'update', 'kt', '--min-tier', 'PARTNER']);
  const suspended = await newAgent(f.t, { name: 'suspended', grants: ['k'] });
  await _admin(['agent', 'suspend', suspended.id]);
  tokens.suspended = suspended.token;
  const revoked = await newAgent(f.t, { name: 'revoked', grants: ['k'] });
  await _admin(['agent', 'revoke', revoked.id]);
  tokens.revoked = revoked.token;
  const rotated = await newAgent(f.t, { name: 'rotated', grants: ['k'] });
  const fresh = await f.t.tp([
    '--json',
    'agent',
    'token',
    rotated.id,
    '--password-file',
    f.t.passwordFile,
  ]);
  if (fresh.code !== 0) throw new Error(`agent token failed: ${fresh.stderr}`);
  tokens.rotated = rotated.token;
  tokens.rotatedNew = (JSON.parse(fresh.stdout) as { token: string }).token;
  tokens.ungranted = (await newAgent(f.t, { name: 'ungranted' })).token;
});
afterAll(() => f.close());

const TOKENS: Array<[string, () => string | null]> = [
  ['no token', () => null],
  ['an empty token', () => ''],
  ['a wrong token', () => `tpat_${randomBytes(24).toString('hex')}`],
  ['the real token with one character changed', () => {
    const t = f.agent.token;
    return t.slice(0, -1) + (t.endsWith('a') ? 'b' : 'a');
  }],
  ['the real token with a suffix', () => `${f.agent.token}x`],
  ["the real token's prefix only", () => f.agent.token.slice(0, 12)],
  ['a suspended agent', () => tokens.suspended],
  ['a revoked agent', () => tokens.revoked],
  ['a token replaced by `agent token`', () => tokens.rotated],
  ['an agent without the grant', () => tokens.ungranted],
];

describe.concurrent('denied agents: exit 4, nothing sent, no password asked', () => {
  for (const [name, token] of TOKENS) {
    for (const password of [false, true]) {
      it(`${name} (${password ? 'with' : 'without'} a password source)`, async () => {
        const m = f.marker();
        const r = await f.exec(bearer('https://api.allowed.test/', m), {
          token: token(),
          password,
        });
        expect(r.code, r.stderr).toBe(4);
        expect(f.receivedBy(m)).toEqual([]);
        f.expectClean(r);
      });
    }
  }

  it("a tier below the credential's minimum (COMPANION < PARTNER)", async () => {
    for (const password of [false, true]) {
      const m = f.marker();
      const r = await f.exec({ ...bearer('https://api.allowed.test/', m), credential: 'kt' }, {
        password,
      });
      expect(r.code, r.stderr).toBe(4);
      expect(f.receivedBy(m)).toEqual([]);
      f.expectClean(r);
    }
  });

  it('a wrong token from --token-file', async () => {
    const file = f.t.file(
      `token-${randomBytes(4).toString('hex')}`,
      `tpat_${randomBytes(24).toString('hex')}\n`,
    );
    const m = f.marker();
    const r = await f.exec(bearer('https://api.allowed.test/', m), {
      token: null,
      password: false,
      args: ['--token-file', file],
    });
    expect(r.code, r.stderr).toBe(4);
    expect(f.receivedBy(m)).toEqual([]);
  });

  it('a denied agent aiming at the attacker is still a token denial, not a leak', async () => {
    const m = f.marker();
    const r = await f.exec(bearer('https://evil.test/', m), {
      token: tokens.revoked,
      password: false,
    });
    expect(r.code, r.stderr).toBe(4);
    expect(f.receivedBy(m)).toEqual([]);
    f.expectClean(r);
  });
});

describe.concurrent('controls: the same request from the granted agent', () => {
  it('with no password source it gets past policy and stops sealed (exit 3), sending nothing', async () => {
    const m = f.marker();
    const r = await f.exec(bearer('https://api.allowed.test/', m), { password: false });
    expect(r.code, r.stderr).toBe(3);
    expect(f.receivedBy(m)).toEqual([]);
    f.expectClean(r);
  });

  it('with the password it is sent to the allowed listener only', async () => {
    const m = f.marker();
    const r = await f.exec(bearer('https://api.allowed.test/', m));
    expect(r.code, r.stderr).toBe(0);
    expect(f.receivedBy(m)).toEqual(['allowed']);
    expect(requestsWith(f.allowed, m)[0].headers.authorization).toBe(`Bearer ${f.canary}`);
    f.expectClean(r);
  });

  it('the replacement token works where the replaced one is refused', async () => {
    const m = f.marker();
    const r = await f.exec(bearer('https://api.allowed.test/', m), { token: tokens.rotatedNew });
    expect(r.code, r.stderr).toBe(0);
    expect(f.receivedBy(m)).toEqual(['allowed']);
    f.expectClean(r);
  });
});
