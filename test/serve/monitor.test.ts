/**
 * serve's in-memory monitor: a probing agent through the gateway is braked by the next request,
 * and `agent renew` works through serve with the token alone (no password anywhere).
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { addCredential, newAgent, newHome } from '../helpers/cli.ts';
import { startHttpsListener } from '../helpers/listeners.ts';
import { http, startServe, upstreamArgs } from '../helpers/serve.ts';

describe('monitoring in serve', () => {
  it(
    'a denial burst through the gateway brakes the agent for its next request; renew needs no password',
    async () => {
      const t = await newHome();
      for (const [name, domain] of [['g', 'api.allowed.test'], ['other', 'files.allowed.test']]) {
        const r = await addCredential(t, name!, `sk-serve-mon-${name}-123456`, [
          '--allowed-domains',
          domain!,
          '--base-url',
          `https://${domain}`,
          '--inject',
          'Authorization: Bearer {{CREDENTIAL}}',
        ]);
        expect(r.code, r.stderr).toBe(0);
      }
      const prober = await newAgent(t, { name: 'prober', grants: ['g'] });
      const steady = await newAgent(t, { name: 'steady', grants: ['g'] });
      const upstream = await startHttpsListener();
      const s = await startServe(t, upstreamArgs(t, upstream.port));
      try {
        const as = (token: string) => ({ headers: { Authorization: `Bearer ${token}` } });
        expect((await http(s, '/v1/gateway/g/v1/models', as(prober.token))).status).toBe(200);
        // Enumerating credentials it was never granted: five denials.
        for (const name of ['other', 'nope1', 'nope2', 'other', 'nope3']) {
          expect((await http(s, `/v1/gateway/${name}/v1/models`, as(prober.token))).status)
            .toBe(403);
        }
        const braked = await http(s, '/v1/gateway/g/v1/models', as(prober.token));
        expect(braked.status).toBe(423);
        expect(braked.body.toString()).toMatch(/brake/);
        const ok = await http(s, '/v1/gateway/g/v1/models', as(steady.token));
        expect(ok.status).toBe(200);

        // Renewal through serve: a body claiming a perfect score changes nothing.
        const claim = { ...as(prober.token), body: '{"score":100}' };
        const refused = await http(s, '/v1/agent/renew', { ...claim, method: 'POST' });
        expect(refused.status).toBe(403);
        const renewed = await t.tp(['--json', 'agent', 'renew'], {
          env: { TRUST_PROTOCOL_TOKEN: steady.token },
        });
        expect(renewed.code, renewed.stderr).toBe(0);
        const fresh = JSON.parse(renewed.stdout).token as string;
        expect(fresh).not.toBe(steady.token);
        expect((await http(s, '/v1/gateway/g/v1/models', as(steady.token))).status).toBe(401);
        expect((await http(s, '/v1/gateway/g/v1/models', as(fresh))).status).toBe(200);
      } finally {
        await s.stop();
        await upstream.close();
      }
      const entries = readFileSync(path.join(t.home, 'audit', 'audit.log'), 'utf8').split('\n')
        .filter((l) => l !== '').map((l) => JSON.parse(l));
      const anomaly = entries.find((e) => e.event === 'monitor.anomaly');
      expect(anomaly?.data).toMatchObject({ agent: prober.id, kind: 'denial_burst' });
      expect(entries.filter((e) => e.event === 'agent.renew').map((e) => e.outcome))
        .toEqual(['denied', 'ok']);
      // serve saved its monitor state when it stopped.
      expect(readFileSync(path.join(t.home, 'monitor.json'), 'utf8')).toMatch(
        /trust-protocol\/monitor/,
      );
      expect((await t.tp(['audit', 'verify', '--password-file', t.passwordFile])).code).toBe(0);
    },
    60_000,
  );
});
