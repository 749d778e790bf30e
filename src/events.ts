/**
 * Every audit event, by name, in one table (docs/formats.md describes each entry's data), with the
 * rules the readers and writers apply to it. Readers select by these names; `audit show --event`
 * accepts a name or a family (`request`, `agent`). The matchers below are derived from the table,
 * so an event's rules are stated once.
 */
interface EventRule {
  /**
   * Written by a process without the password, so it may carry `"mac": null`. With the key, a
   * null MAC on any other event was forged or stripped: an integrity failure, like a wrong MAC.
   */
  readonly unkeyed?: true;
  /** Records a change of vault.json: a vault write under the lock follows it (rollback check). */
  readonly vaultChange?: true;
}

const RULES = {
  'vault.init': { vaultChange: true },
  'vault.unseal_failed': { unkeyed: true },
  'vault.password_changed': { vaultChange: true },
  'vault.saved': {},
  'vault.resync': { vaultChange: true },
  'vault.upgraded': { vaultChange: true },
  'vault.rekeyed': { vaultChange: true },
  'admin.add': { vaultChange: true },
  'admin.remove': { vaultChange: true },
  'admin.oidc_issuer': { vaultChange: true },
  'admin.link': { vaultChange: true },
  'admin.oidc_remove': { vaultChange: true },
  'admin.denied': {},
  'credential.add': { vaultChange: true },
  'credential.update': { vaultChange: true },
  'credential.rotate': { vaultChange: true },
  'credential.remove': { vaultChange: true },
  'agent.register': { vaultChange: true },
  'agent.grant': { vaultChange: true },
  'agent.ungrant': { vaultChange: true },
  'agent.promote': { vaultChange: true },
  'agent.demote': { vaultChange: true },
  'agent.token': { vaultChange: true },
  'agent.renew': { vaultChange: true },
  'agent.suspend': { vaultChange: true },
  'agent.resume': { vaultChange: true },
  'agent.revoke': { vaultChange: true },
  'request.allowed': {},
  'request.denied': { unkeyed: true },
  'request.completed': {},
  'request.failed': {},
  'brake.activate': { unkeyed: true },
  'brake.clear': { vaultChange: true },
  'skill.verify': { unkeyed: true },
  'publisher.add': { vaultChange: true },
  'publisher.revoke': { vaultChange: true },
  'serve.start': {},
  'serve.stop': {},
  'monitor.anomaly': {},
  'monitor.actions': { vaultChange: true },
  'monitor.rebuild': {},
  'audit.repair': { unkeyed: true },
  'audit.key_created': { vaultChange: true },
} as const satisfies Record<string, EventRule>;

export type EventName = keyof typeof RULES;

export const EVENTS: readonly EventName[] = Object.keys(RULES) as EventName[];

/** The families: the part before the dot. */
export const EVENT_FAMILIES: readonly string[] = [...new Set(EVENTS.map((e) => e.split('.')[0]!))];

function _matching(rule: (r: EventRule) => boolean): RegExp {
  const names = EVENTS.filter((e) => rule(RULES[e]));
  return new RegExp(`^(${names.map((n) => n.replace('.', '\\.')).join('|')})$`);
}

/** The only events that may carry `"mac": null` (see `EventRule.unkeyed`). */
export const UNKEYED_EVENTS: RegExp = _matching((r) => r.unkeyed === true);
/** Events that record a change of the vault, each followed by a vault write under the lock. */
export const VAULT_CHANGE_EVENTS: RegExp = _matching((r) => r.vaultChange === true);
/** The vault write itself (the head recorded after a change). */
export const VAULT_SAVED_EVENTS: RegExp = /^vault\.saved$/;
/** A brake pulled; its record lives in brakes/, this entry is the copy no one can delete. */
export const BRAKE_EVENTS: RegExp = /^brake\.activate$/;
