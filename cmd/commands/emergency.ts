import * as fs from 'node:fs';
/** `emergency activate|clear|status` (SPEC §9): the kill switch. */
import { escapeControls } from '../../src/bytes.ts';
import {
  type Brake,
  type BrakeRequest,
  type BrakeScope,
  checkBrakeRequest,
} from '../../src/brakes.ts';
import { TpError, usage } from '../../src/errors.ts';
import { clearBrakes, pullBrake } from '../../src/emergency.ts';
import type { Home } from '../../src/home.ts';
import { SYSTEM_SOCKET } from '../../src/serve/address.ts';
import { openState } from '../../src/state.ts';
import { wipeKeys } from '../../src/vault.ts';
import {
  type Command,
  type Ctx,
  type Flags,
  PASSWORD_FILE_OPTION,
  str,
  tableText,
} from '../context.ts';
import { existingHome, existingState, unsealVault } from '../home_state.ts';
import { promptLine } from '../io.ts';

export const CONFIRMATION = 'CONFIRM_RESTORE_ACCESS';

const SCOPE_OPTIONS: Flags = {
  scope: {
    type: 'string',
    value: 'global|agent|credential|org',
    help:
      'what the brake covers: everything (global, the default), one agent, one credential, or every agent and credential of one organisation',
  },
  org: { type: 'string', value: 'ORG', help: 'the organisation, with --scope org' },
  'agent-id': { type: 'string', value: 'ID', help: 'the agent, with --scope agent' },
  'credential-name': {
    type: 'string',
    value: 'NAME',
    help: 'the credential, with --scope credential',
  },
};

function _target(ctx: Ctx): { scope: BrakeScope; target: string | null } {
  const scope = (str(ctx, 'scope') ?? 'global') as BrakeScope;
  const target = scope === 'agent'
    ? str(ctx, 'agent-id') ?? null
    : scope === 'credential'
    ? str(ctx, 'credential-name') ?? null
    : scope === 'org'
    ? str(ctx, 'org') ?? null
    : null;
  if (
    scope === 'global' &&
    (str(ctx, 'agent-id') !== undefined || str(ctx, 'credential-name') !== undefined ||
      str(ctx, 'org') !== undefined)
  ) {
    throw usage(
      'bad_target',
      '--agent-id, --credential-name and --org need --scope agent, credential or org',
    );
  }
  return { scope, target };
}

function _shown(b: Brake) {
  return { id: b.id, reason: b.reason, activated_at: b.activated_at };
}

function _clearFlags(b: Brake): string {
  return b.scope === 'agent'
    ? `--scope agent --agent-id ${b.target}`
    : b.scope === 'credential'
    ? `--scope credential --credential-name ${b.target}`
    : b.scope === 'org'
    ? `--scope org --org ${b.target}`
    : `--confirmation ${CONFIRMATION}`;
}

function _describe(b: Brake): string {
  return b.scope === 'global' ? 'global' : `${b.scope} ${b.target}`;
}

const activate: Command = {
  words: ['emergency', 'activate'],
  summary:
    'stop requests at once (no password needed): global, one agent, one credential, or one organisation',
  usage:
    'emergency activate --reason TEXT [--scope global|agent|credential|org] [--agent-id ID] [--credential-name NAME] [--org ORG]',
  help: `Needs no password: anyone at the keyboard can stop everything. A user who cannot write the
state directory (an agent's user in the dedicated-user deployment) pulls the brake through serve's
socket instead: --server unix:PATH, or /run/trust-protocol/serve.sock found by itself.`,
  options: {
    ...SCOPE_OPTIONS,
    reason: { type: 'string', value: 'TEXT', help: 'why, for the record (required)' },
    server: {
      type: 'string',
      value: 'URL|unix:PATH',
      help:
        "serve's socket, when this user cannot write the state directory (else /run/trust-protocol/serve.sock)",
    },
  },
  examples: [
    'trust-protocol emergency activate --reason "leaked key"',
    'trust-protocol emergency activate --scope agent --agent-id agt_55a37bee6bc6088ab4ef --reason "odd requests"',
  ],
  args: { min: 0, max: 0 },
  brakeFirst: true,
  async run(ctx) {
    const { scope, target } = _target(ctx);
    const req = checkBrakeRequest({ scope, target, reason: str(ctx, 'reason') ?? '' });
    const home = _writableHome(ctx);
    let brake: Brake;
    if (home === null) {
      brake = await _brakeViaServe(ctx, req);
    } else {
      const state = openState(home, { sync: ctx.sync ?? null });
      const pulled = await pullBrake(state, req, ctx.now());
      brake = pulled.brake;
      const failure = ctx.storeFailure;
      if (failure !== undefined) {
        // The team store could not be opened: the brake is in force in this home, and nothing
        // goes to the audit log (an entry the store lacks would part this home from its trail).
        throw new TpError(
          failure.kind,
          failure.code,
          `emergency brake ${brake.id} is in force on this machine, but the team store was not told (other instances do not know it): ${failure.message}`,
          {
            hint: `${
              failure.hint === undefined ? '' : `${failure.hint}; `
            }pull it on every other instance too (or through their serve), or run this again once the store is back`,
          },
        );
      }
      // The brake is in force now; the audit entry follows. If it cannot be written the brake stays.
      await state.audit.writer({ macKey: null }).append([pulled.event]);
    }
    return {
      json: { ...brake },
      quiet: `${brake.id}\n`,
      text: `Emergency brake ${brake.id} is active (${
        _describe(brake)
      }). Lift it with \`trust-protocol emergency clear${
        scope === 'global'
          ? ''
          : ` --scope ${scope} --${
            scope === 'agent' ? 'agent-id' : scope === 'org' ? 'org' : 'credential-name'
          } ${target}`
      }\`.\n`,
    };
  },
};

/**
 * The home, when this user can write it; null when it is not theirs to write (the dedicated-user
 * deployment: an agent's user reaches serve's socket, not the state directory).
 */
function _writableHome(ctx: Ctx): Home | null {
  try {
    return existingHome(ctx);
  } catch (e) {
    const notOurs = e instanceof TpError && ['no_home', 'foreign_owner', 'io'].includes(e.code);
    if (notOurs && (str(ctx, 'server') !== undefined || fs.existsSync(SYSTEM_SOCKET))) return null;
    throw e;
  }
}

async function _brakeViaServe(ctx: Ctx, req: BrakeRequest): Promise<Brake> {
  const { brakeViaServer, findServer, parseServerTarget } = await import(
    '../../src/serve/client.ts'
  );
  const named = str(ctx, 'server');
  const target = named === undefined ? await findServer(SYSTEM_SOCKET) : parseServerTarget(named);
  if (target === null) {
    throw new TpError('sealed', 'no_serve', `no serve answers at ${SYSTEM_SOCKET}`, {
      hint: 'pull the brake where the state directory is, or ask the operator to start serve',
    });
  }
  return await brakeViaServer(target, req) as unknown as Brake;
}

const clear: Command = {
  words: ['emergency', 'clear'],
  summary: 'lift a brake (password needed; global also needs the typed confirmation)',
  usage:
    `emergency clear [--scope global|agent|credential|org] [--agent-id ID] [--credential-name NAME] [--org ORG] [--confirmation ${CONFIRMATION}]`,
  options: {
    ...PASSWORD_FILE_OPTION,
    ...SCOPE_OPTIONS,
    confirmation: {
      type: 'string',
      value: 'TEXT',
      help: `to lift the global brake: ${CONFIRMATION} (else asked for at a terminal)`,
    },
    'new-token': {
      type: 'boolean',
      help: 'with --scope agent: issue the agent a new token (else asked [y/N] at a terminal)',
    },
  },
  examples: [
    `trust-protocol emergency clear --confirmation ${CONFIRMATION}`,
    'trust-protocol emergency clear --scope agent --agent-id agt_55a37bee6bc6088ab4ef --new-token',
  ],
  args: { min: 0, max: 0 },
  async run(ctx) {
    const { scope, target } = _target(ctx);
    if (scope !== 'global') checkBrakeRequest({ scope, target, reason: 'clear' });
    if (ctx.values['new-token'] === true && scope !== 'agent') {
      throw usage('bad_flag', '--new-token goes with --scope agent');
    }
    const state = existingState(ctx);
    const active = state.brakes.active(state.vault.read().body);
    const matching = active.filter((b) => b.scope === scope && b.target === target);
    if (matching.length === 0 && str(ctx, 'scope') === undefined && active.length > 0) {
      // No scope given and no global brake: say which brakes there are and how to lift each
      // (agents, then credentials, by name: the directory's order differs between runtimes).
      const listed = [...active].sort((a, b) =>
        a.scope === b.scope
          ? (a.target ?? '').localeCompare(b.target ?? '')
          : a.scope < b.scope
          ? -1
          : 1
      );
      throw usage(
        'not_active',
        `there is no global brake; active: ${listed.map(_describe).join(', ')}`,
        listed.map((b) => `trust-protocol emergency clear ${_clearFlags(b)}`).join('\n'),
      );
    }
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
    // The agent keeps its token unless the operator believes it leaked (issue 16).
    const newToken = scope === 'agent' && (ctx.values['new-token'] === true ||
      /^y(es)?$/i.test(
        await promptLine(
          ctx.io,
          `Issue agent ${target} a new token (if its token may have leaked)? [y/N] `,
        ) ??
          '',
      ));
    const unsealed = await unsealVault(ctx);
    const { keys } = unsealed;
    try {
      const { lifted, issued } = await clearBrakes(unsealed.state, keys, {
        scope,
        target,
        newToken,
        now: ctx.now(),
      });
      const json = {
        cleared: lifted.map(_shown),
        ...(issued === null ? {} : { token: issued.token, expires_at: issued.expires_at }),
      };
      const lines = [
        `Lifted ${lifted.length} brake(s) on ${
          scope === 'global' ? 'everything' : `${scope} ${target}`
        }.`,
      ];
      if (issued !== null) {
        lines.push(
          `New token for agent ${issued.id}; the old one stops working (shown once):`,
          issued.token,
          `expires: ${issued.expires_at}`,
        );
      } else if (scope === 'agent') {
        lines.push(
          'The agent keeps its token; if it may have leaked: ' +
            `\`trust-protocol agent token ${target}\`.`,
        );
      }
      return { json, text: lines.join('\n') + '\n' };
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
  examples: ['trust-protocol emergency status', 'trust-protocol emergency status --json'],
  args: { min: 0, max: 0 },
  run(ctx) {
    const state = existingState(ctx);
    const active = state.brakes.active(state.vault.read().body);
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
      orgs: active.filter((b) => b.scope === 'org').map((b) => ({ org: b.target, ..._shown(b) })),
    };
    const rows = active.map((
      b,
    ) => [b.scope, b.target ?? '-', b.activated_at, escapeControls(b.reason)]);
    return {
      json,
      text: rows.length === 0
        ? 'No emergency brakes are active.\n'
        : tableText([['SCOPE', 'TARGET', 'SINCE', 'REASON'], ...rows], { color: ctx.color }),
    };
  },
};

export const emergencyCommands: Command[] = [activate, clear, status];
