/**
 * The request-time organisation check (issue #19): a grant that crosses organisations (one
 * recorded before either object's org was set) never lets a request through. `agent grant`
 * refuses such grants, so this state cannot be made on the CLI; the policy is checked directly.
 */
import { describe, expect, it } from 'vitest';
import { TpError } from '../src/errors.ts';
import { decide, newAgentToken } from '../src/policy.ts';
import type { AgentRecord, CredentialRecord } from '../src/vault.ts';

function records(agentOrg?: string, credOrg?: string) {
  const { token, sha256 } = newAgentToken();
  const now = new Date();
  const agent: AgentRecord = {
    id: 'agt_00000000000000000001',
    name: 'bot',
    tier: 'COMPANION',
    state: 'active',
    grants: ['k'],
    token_sha256: sha256,
    token_expires_at: new Date(now.getTime() + 3600_000).toISOString(),
    created_at: now.toISOString(),
    updated_at: now.toISOString(),
    ...(agentOrg === undefined ? {} : { org: agentOrg }),
  };
  const credential: CredentialRecord = {
    name: 'k',
    allowed_domains: ['api.allowed.test'],
    any_domain: false,
    placements: ['header'],
    min_tier: 'NOVICE',
    base_url: null,
    inject: null,
    rate: null,
    created_at: now.toISOString(),
    updated_at: now.toISOString(),
    value: { nonce: '', ciphertext: '' },
    ...(credOrg === undefined ? {} : { org: credOrg }),
  };
  return { token, now, state: { agents: [agent], credentials: [credential] } };
}

function attempt(agentOrg?: string, credOrg?: string): unknown {
  const { token, now, state } = records(agentOrg, credOrg);
  try {
    decide(state, {
      token,
      names: ['k'],
      url: new URL('https://api.allowed.test/x'),
      uses: [{ name: 'k', base64: false, placement: 'header' }],
    }, now);
    return 'allowed';
  } catch (e) {
    return e instanceof TpError ? `${e.kind}:${e.code}` : e;
  }
}

describe('a grant never crosses organisations at request time', () => {
  it('same organisation, or both instance-wide: allowed', () => {
    expect(attempt()).toBe('allowed');
    expect(attempt('a', 'a')).toBe('allowed');
  });

  it('different organisations, or one instance-wide: refused', () => {
    expect(attempt('a', 'b')).toBe('denied:org_mismatch');
    expect(attempt('a', undefined)).toBe('denied:org_mismatch');
    expect(attempt(undefined, 'b')).toBe('denied:org_mismatch');
  });
});
