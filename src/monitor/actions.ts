/**
 * What an anomaly makes trust-protocol do (docs/monitoring.md#actions). Every anomaly is recorded
 * in the audit trail; the other actions are configured per anomaly kind in the vault (`monitor
 * actions set`), and each is reversible by a human: `emergency clear` lifts a brake, `agent
 * promote` undoes a demotion, `agent token` issues a fresh token whatever renewal says.
 */
import { usage } from '../errors.ts';
import type { AnomalyKind } from './anomalies.ts';
import type { Change, VaultBody } from '../vault.ts';

export const ACTIONS = ['record', 'refuse_renewal', 'demote', 'brake'] as const;
export type Action = (typeof ACTIONS)[number];

export const ANOMALY_KINDS: readonly AnomalyKind[] = [
  'rate_spike',
  'error_spike',
  'denial_burst',
  'new_host',
  'new_credential',
  'off_hours',
  'size_spike',
  'volume_spike',
];

/**
 * Safe defaults: probing (a burst of denials) stops the agent at once; a runaway loop or an
 * unusual volume of data blocks token renewal until a human looks; the rest is recorded.
 * Demotion is never a default: a human decides it (`agent recommend` advises).
 */
export const DEFAULT_ACTIONS: Readonly<Record<AnomalyKind, readonly Action[]>> = {
  rate_spike: ['record', 'refuse_renewal'],
  error_spike: ['record'],
  denial_burst: ['record', 'refuse_renewal', 'brake'],
  new_host: ['record'],
  new_credential: ['record'],
  off_hours: ['record'],
  size_spike: ['record', 'refuse_renewal'],
  volume_spike: ['record', 'refuse_renewal'],
};

export type ActionConfig = Partial<Record<AnomalyKind, Action[]>>;

export function actionsFor(kind: AnomalyKind, config: ActionConfig): readonly Action[] {
  return config[kind] ?? DEFAULT_ACTIONS[kind];
}

export function parseAnomalyKind(text: string): AnomalyKind {
  if (!(ANOMALY_KINDS as readonly string[]).includes(text)) {
    throw usage(
      'bad_anomaly_kind',
      `unknown anomaly kind "${text}"`,
      `use one of ${ANOMALY_KINDS.join(', ')}`,
    );
  }
  return text as AnomalyKind;
}

/** `record,brake` -> ['record', 'brake']; `record` is always kept (every anomaly is audited). */
export function parseActions(text: string): Action[] {
  const words = text.split(',').map((w) => w.trim()).filter((w) => w !== '');
  for (const w of words) {
    if (!(ACTIONS as readonly string[]).includes(w)) {
      throw usage(
        'bad_action',
        `unknown action "${w}"`,
        `use a comma list of ${ACTIONS.join(', ')}`,
      );
    }
  }
  return ['record', ...ACTIONS.filter((a) => a !== 'record' && words.includes(a))];
}

/**
 * `monitor actions KIND ACTIONS|default`: what the monitor does on an anomaly of this kind, from
 * now on (null: back to the default). Returns the actions now in force.
 */
export function setActions(
  body: VaultBody,
  kind: AnomalyKind,
  chosen: Action[] | null,
): Change<readonly Action[]> {
  const config = { ...(body.monitor_actions ?? {}) };
  const from = [...actionsFor(kind, config)];
  if (chosen === null) delete config[kind];
  else config[kind] = chosen;
  if (Object.keys(config).length === 0) delete body.monitor_actions;
  else body.monitor_actions = config;
  const to = [...actionsFor(kind, config)];
  return {
    result: to,
    events: [{
      event: 'monitor.actions',
      actor: { type: 'operator' },
      outcome: 'ok',
      data: { kind, from, to },
    }],
  };
}
