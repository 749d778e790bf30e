/**
 * Every audit event, by name, in one table (docs/formats.md describes each entry's data). Readers
 * select by these names; `audit show --event` accepts a name or a family (`request`, `agent`).
 */
export const EVENTS = [
  'vault.init',
  'vault.unseal_failed',
  'vault.password_changed',
  'vault.saved',
  'vault.resync',
  'credential.add',
  'credential.update',
  'credential.rotate',
  'credential.remove',
  'agent.register',
  'agent.grant',
  'agent.ungrant',
  'agent.promote',
  'agent.demote',
  'agent.token',
  'agent.renew',
  'agent.suspend',
  'agent.resume',
  'agent.revoke',
  'request.allowed',
  'request.denied',
  'request.completed',
  'request.failed',
  'brake.activate',
  'brake.clear',
  'skill.verify',
  'publisher.add',
  'publisher.revoke',
  'serve.start',
  'serve.stop',
  'monitor.anomaly',
  'monitor.actions',
  'monitor.rebuild',
  'audit.repair',
] as const;

export type EventName = (typeof EVENTS)[number];

/** The families: the part before the dot. */
export const EVENT_FAMILIES: readonly string[] = [...new Set(EVENTS.map((e) => e.split('.')[0]!))];
