import { describe, expect, it } from 'vitest';
import {
  BRAKE_EVENTS,
  EVENT_FAMILIES,
  EVENTS,
  UNKEYED_EVENTS,
  VAULT_CHANGE_EVENTS,
  VAULT_SAVED_EVENTS,
} from '../src/events.ts';

const matching = (re: RegExp) => EVENTS.filter((e) => re.test(e));

describe('the event table', () => {
  it('derives the matchers the readers use from one table', () => {
    expect(matching(UNKEYED_EVENTS).sort()).toEqual([
      'audit.repair',
      'brake.activate',
      'request.denied',
      'skill.verify',
      'vault.unseal_failed',
    ]);
    const changes = matching(VAULT_CHANGE_EVENTS);
    for (const e of EVENTS.filter((e) => /^(credential|agent|publisher)\./.test(e))) {
      expect(changes).toContain(e);
    }
    expect(changes).toEqual(
      expect.arrayContaining(['brake.clear', 'monitor.actions', 'vault.init']),
    );
    // A password-less event can never prove a change; the write that follows a change is not one.
    for (const e of ['vault.saved', 'vault.unseal_failed', 'brake.activate', 'request.allowed']) {
      expect(changes).not.toContain(e);
    }
    expect(matching(VAULT_SAVED_EVENTS)).toEqual(['vault.saved']);
    expect(matching(BRAKE_EVENTS)).toEqual(['brake.activate']);
  });

  it('matches whole names only', () => {
    for (const re of [UNKEYED_EVENTS, VAULT_CHANGE_EVENTS]) {
      expect(re.test('xrequest.denied')).toBe(false);
      expect(re.test('credential.addx')).toBe(false);
      expect(re.test('request-denied')).toBe(false);
    }
    expect(EVENT_FAMILIES).toContain('monitor');
  });
});
