/** `emergency activate|clear|status` (SPEC §9): the kill switch. */
import { openAuditWriter } from '../../src/audit.ts';
import { escapeControls } from '../../src/bytes.ts';
import {
  activateBrake,
  activeBrakes,
  type Brake,
  type BrakeScope,
  checkBrakeRequest,
  tidyCleared,
} from '../../src/brakes.ts';
import { usage } from '../../src/errors.ts';
import { loadVault, updateVault, wipeKeys } from '../../src/vault.ts';
import {
  type Command,
  type Ctx,
  existingHome,
  PASSWORD_FILE_OPTION,
  str,
  tableText,
  unsealVault,
} from '../context.ts';
import { promptLine } from '../io.ts';

export const CONFIRMATION = 'CONFIRM_RESTORE_ACCESS';

const SCOPE_OPTIONS = {
  scope: { type: 'string' },
  'agent-id': { type: 'string' },
  'credential-name': { type: 'string' },
} as const;

function _target(ctx: Ctx): { scope: BrakeScope; target: string | null } {
  const scope = (str(ctx, 'scope') ?? 'global') as BrakeScope;
  const target = scope === 'agent'
    ? str(ctx, 'agent-id') ?? null
    : scope === 'credential'
    ? str(ctx, 'credential-name') ?? null
    : null;
  if (
    scope === 'global' &&
    (str(ctx, 'agent-id') !== undefined || str(ctx, 'credential-name') !== undefined)
  ) {
    throw usage(
      'bad_target',
      '--agent-id and --credential-name need --scope agent or --scope credential',
    );
  }
  return { scope, target };
}

function _shown(b: Brake) {
  return { id: b.id, reason: b.reason, activated_at: b.activated_at };
}

function _describe(b: Brake): string {
  return b.scope === 'global' ? 'global' : `${b.scope} ${b.target}`;
}

const activate: Command = {
  words: ['emergency', 'activate'],
  summary: 'stop requests at once (no password needed): global, one agent, or one credential',
  usage:
    'emergency activate --reason TEXT [--scope global|agent|credential] [--agent-id ID] [--credential-name NAME]',
  options: { ...SCOPE_OPTIONS, reason: { type: 'string' } },
  args: { min: 0, max: 0 },
  async run(ctx) {
    const { scope, target } = _target(ctx);
    const req = checkBrakeRequest({ scope, target, reason: str(ctx, 'reason') ?? '' });
    const home = existingHome(ctx);
    const body = loadVault(home).body;
    if (scope === 'agent' && !body.agents.some((a) => a.id === target)) {
      throw usage(
        'no_such_agent',
        `no agent with id "${target}"`,
        'see `trust-protocol agent list`',
      );
    }
    if (scope === 'credential' && !body.credentials.some((c) => c.name === target)) {
      throw usage(
        'no_such_credential',
        `no credential named "${target}"`,
        'see `trust-protocol credential list`',
      );
    }
    const brake = activateBrake(home, req, ctx.now());
    // The brake is in force now; the audit entry follows. If it cannot be written the brake stays.
    await openAuditWriter(home, { macKey: null }).append([{
      event: 'brake.activate',
      actor: { type: 'anyone' },
      outcome: 'ok',
      data: { brake: brake.id, scope, target, reason: brake.reason },
    }]);
    return {
      json: { ...brake },
      text: `Emergency brake ${brake.id} is active (${
        _describe(brake)
      }). Lift it with \`trust-protocol emergency clear${
        scope === 'global'
          ? ''
          : ` --scope ${scope} --${scope === 'agent' ? 'agent-id' : 'credential-name'} ${target}`
      }\`.\n`,
    };
  },
};

const clear: Command = {
  words: ['emergency', 'clear'],
  summary: 'lift a brake (password needed; global also needs the typed confirmation)',
  usage:
    `emergency clear [--scope global|agent|credential] [--agent-id ID] [--credential-name NAME] [--confirmation ${CONFIRMATION}]`,
  options: { ...PASSWORD_FILE_OPTION, ...SCOPE_OPTIONS, confirmation: { type: 'string' } },
  args: { min: 0, max: 0 },
  async run(ctx) {
    const { scope, target } = _target(ctx);
    if (scope !== 'global') checkBrakeRequest({ scope, target, reason: 'clear' });
    const home = existingHome(ctx);
    const matching = activeBrakes(home, loadVault(home).body).filter((b) =>
      b.scope === scope && b.target === target
    );
    if (matching.length === 0) {
      throw usage(
        'not_active',
        `there is no active ${scope === 'global' ? 'global brake' : `brake on ${scope} ${target}`}`,
        'see `trust-protocol emergency status`',
      );
    }
    if (scope === 'global') {
      const typed = str(ctx, 'confirmation') ??
        await promptLine(ctx.io, `Type ${CONFIRMATION} to lift the global brake: `);
      if (typed !== CONFIRMATION) {
        throw usage(
          'confirmation_required',
          `lifting the global brake needs --confirmation ${CONFIRMATION}`,
          'nothing was changed; the brake is still active',
        );
      }
    }
    const { home: h, keys } = await unsealVault(ctx);
    try {
      const lifted = await updateVault(h, keys, (body) => {
        const now = activeBrakes(h, body).filter((b) => b.scope === scope && b.target === target);
        if (now.length === 0) throw usage('not_active', 'the brake was lifted meanwhile');
        body.cleared_brakes.push(...now.map((b) => b.id).filter((id) => id !== 'unreadable'));
        if (scope === 'agent') {
          // An agent brake also ends the agent's token: it needs a fresh one from the operator.
          const agent = body.agents.find((a) => a.id === target);
          if (agent !== undefined) {
            agent.token_sha256 = null;
            agent.token_expires_at = null;
          }
        }
        return {
          result: now,
          events: now.map((b) => ({
            event: 'brake.clear',
            actor: { type: 'operator' as const },
            outcome: 'ok' as const,
            data: { brake: b.id, scope, target },
          })),
        };
      });
      tidyCleared(h, lifted.map((b) => b.id), scope === 'global');
      const more = scope === 'agent'
        ? ` Give the agent a new token: \`trust-protocol agent token ${target}\`.`
        : '';
      return {
        json: { cleared: lifted.map(_shown) },
        text: `Lifted ${lifted.length} brake(s) on ${
          scope === 'global' ? 'everything' : `${scope} ${target}`
        }.${more}\n`,
      };
    } finally {
      wipeKeys(keys);
    }
  },
};

const status: Command = {
  words: ['emergency', 'status'],
  summary: 'show the brakes in force (no password needed)',
  usage: 'emergency status',
  options: {},
  args: { min: 0, max: 0 },
  run(ctx) {
    const home = existingHome(ctx);
    const active = activeBrakes(home, loadVault(home).body);
    const global = active.find((b) => b.scope === 'global');
    const json = {
      global: global === undefined ? null : _shown(global),
      agents: active.filter((b) => b.scope === 'agent').map((b) => ({
        agent_id: b.target,
        ..._shown(b),
      })),
      credentials: active.filter((b) => b.scope === 'credential').map((b) => ({
        credential: b.target,
        ..._shown(b),
      })),
    };
    const rows = active.map((
      b,
    ) => [b.scope, b.target ?? '-', b.activated_at, escapeControls(b.reason)]);
    return {
      json,
      text: rows.length === 0
        ? 'No emergency brakes are active.\n'
        : tableText([['SCOPE', 'TARGET', 'SINCE', 'REASON'], ...rows]),
    };
  },
};

export const emergencyCommands: Command[] = [activate, clear, status];
