/** `agent register|list|show|grant|ungrant|promote|demote|token|renew|suspend|resume|revoke`. */
import {
  agentView,
  demote,
  findAgent,
  grant,
  type IssuedToken,
  issueToken,
  promote,
  registerAgent,
  setAgentState,
  ungrant,
} from '../../src/agents.ts';
import { denied, TpError } from '../../src/errors.ts';
import { parseTier } from '../../src/tiers.ts';
import {
  type AgentRecord,
  type Change,
  unseal,
  type VaultBody,
  type VaultKeys,
  wipeKeys,
} from '../../src/vault.ts';
import type { State } from '../../src/state.ts';
import {
  adminName,
  type Command,
  type Ctx,
  type Output,
  PASSWORD_FILE_OPTION,
  str,
  tableText,
} from '../context.ts';
import { checkSees, sees } from '../../src/orgs.ts';
import {
  changeVault,
  existingState,
  newObjectOrg,
  ORG_OPTION,
  unsealVault,
  viewer,
} from '../home_state.ts';
import { promptHidden, promptLine } from '../io.ts';
import { recommendCommand } from './monitor.ts';
import { readToken } from '../secrets.ts';

function _tokenOutput(t: IssuedToken, verb: string): Output {
  return {
    quiet: `${t.token}\n`,
    json: { id: t.id, name: t.name, token: t.token, tier: t.tier, expires_at: t.expires_at },
    text: `${verb} agent ${t.id} (${t.name}, ${t.tier}).\n` +
      `token (shown once; give it to the agent as TRUST_PROTOCOL_TOKEN or in a --token-file):\n${t.token}\n` +
      `expires: ${t.expires_at}\n`,
  };
}

function _agentText(a: ReturnType<typeof agentView>): string {
  return [
    `id:       ${a.id}`,
    `name:     ${a.name}`,
    `tier:     ${a.tier}`,
    `state:    ${a.state}`,
    `grants:   ${a.grants.length === 0 ? '-' : a.grants.join(', ')}`,
    `token:    ${a.token_expires_at === null ? 'none' : `expires ${a.token_expires_at}`}`,
    ...(a.org === null ? [] : [`org:      ${a.org}`]),
  ].join('\n') + '\n';
}

function _simple(
  words: string[],
  summary: string,
  usageText: string,
  args: { min: number; max: number },
  apply: (ctx: Ctx, body: VaultBody) => Change<AgentRecord>,
  done: string,
  examples: string[],
): Command {
  return {
    words,
    summary,
    usage: usageText,
    options: { ...PASSWORD_FILE_OPTION },
    examples,
    args,
    async run(ctx) {
      const agent = await changeVault(ctx, (body) => apply(ctx, body));
      return { json: agentView(agent), text: `${done} ${agent.id}.\n`, informational: true };
    },
  };
}

const register: Command = {
  words: ['agent', 'register'],
  summary: 'register an agent; prints its id and token (the token once)',
  usage: 'agent register NAME [--tier TIER] [--org ORG]',
  options: {
    ...PASSWORD_FILE_OPTION,
    ...ORG_OPTION,
    tier: {
      type: 'string',
      value: 'TIER',
      help: 'starting tier: NOVICE (default), COMPANION, PARTNER or GUARDIAN; never SACRED',
    },
  },
  examples: [
    'trust-protocol agent register ci-bot',
    'trust-protocol agent register ci-bot --tier COMPANION --quiet > ci-bot.token',
  ],
  args: { min: 1, max: 1 },
  async run(ctx) {
    const tier = parseTier(str(ctx, 'tier') ?? 'NOVICE');
    const issued = await changeVault(
      ctx,
      (body, keys) =>
        registerAgent(body, {
          name: ctx.positionals[0] as string,
          tier,
          now: ctx.now(),
          ...newObjectOrg(ctx, keys),
        }),
    );
    return _tokenOutput(issued, 'Registered');
  },
};

const token: Command = {
  words: ['agent', 'token'],
  summary: 'issue a fresh token; the previous one stops working',
  usage: 'agent token ID',
  options: { ...PASSWORD_FILE_OPTION },
  examples: [
    'trust-protocol agent token ci-bot',
    'trust-protocol agent token ci-bot --quiet > ci-bot.token',
  ],
  args: { min: 1, max: 1 },
  async run(ctx) {
    const issued = await changeVault(
      ctx,
      (body) => issueToken(body, { id: ctx.positionals[0] as string, now: ctx.now() }),
    );
    return _tokenOutput(issued, 'New token for');
  },
};

const list: Command = {
  words: ['agent', 'list'],
  summary: 'list agents',
  usage: 'agent list',
  options: {},
  examples: ['trust-protocol agent list', 'trust-protocol agent list --json'],
  args: { min: 0, max: 0 },
  run(ctx) {
    const file = existingState(ctx).vault.read();
    const who = viewer(ctx, file);
    const agents = file.body.agents.filter((a) => sees(who, a)).map(agentView);
    const rows = agents.map((
      a,
    ) => [a.id, a.name, a.tier, a.state, String(a.grants.length), a.token_expires_at ?? '-']);
    return {
      json: agents,
      quiet: agents.map((a) => `${a.id}\n`).join(''),
      text: rows.length === 0
        ? 'No agents.\n'
        : tableText([['ID', 'NAME', 'TIER', 'STATE', 'GRANTS', 'TOKEN EXPIRES'], ...rows], {
          color: ctx.color,
        }),
    };
  },
};

const show: Command = {
  words: ['agent', 'show'],
  summary: 'show one agent',
  usage: 'agent show ID',
  options: {},
  examples: ['trust-protocol agent show ci-bot'],
  args: { min: 1, max: 1 },
  run(ctx) {
    const file = existingState(ctx).vault.read();
    const record = findAgent(file.body, ctx.positionals[0] as string);
    checkSees(viewer(ctx, file), 'agent', record.id, record);
    const agent = agentView(record);
    return { json: agent, text: _agentText(agent) };
  },
};

const grantCmd = _simple(
  ['agent', 'grant'],
  'allow an agent to use credentials',
  'agent grant ID CRED...',
  { min: 2, max: 100 },
  (ctx, body) =>
    grant(body, {
      id: ctx.positionals[0] as string,
      credentials: ctx.positionals.slice(1),
      now: ctx.now(),
    }),
  'Updated grants of',
  ['trust-protocol agent grant ci-bot github', 'trust-protocol agent grant ci-bot github openai'],
);

const ungrantCmd = _simple(
  ['agent', 'ungrant'],
  'take credentials away from an agent',
  'agent ungrant ID CRED...',
  { min: 2, max: 100 },
  (ctx, body) =>
    ungrant(body, {
      id: ctx.positionals[0] as string,
      credentials: ctx.positionals.slice(1),
      now: ctx.now(),
    }),
  'Updated grants of',
  ['trust-protocol agent ungrant ci-bot openai'],
);

const promoteCmd: Command = {
  words: ['agent', 'promote'],
  summary: "raise an agent's tier (SACRED: only at a terminal, with a typed confirmation)",
  usage: 'agent promote ID TIER',
  options: {
    'password-file': {
      type: 'string',
      value: 'PATH',
      help:
        'file holding the master password (else TRUST_PROTOCOL_PASSWORD, else a no-echo prompt); not for SACRED, which is typed',
    },
  },
  examples: [
    'trust-protocol agent promote ci-bot COMPANION',
    'trust-protocol agent promote ci-bot PARTNER --password-file ~/.tp-password',
  ],
  args: { min: 2, max: 2 },
  async run(ctx) {
    const id = ctx.positionals[0] as string;
    const tier = parseTier(ctx.positionals[1] as string);
    let keys: VaultKeys;
    let state: State;
    let confirmedAtTerminal = false;
    if (tier === 'SACRED') {
      // Only a human at a terminal: the password is typed, never taken from a file or variable.
      ({ state, keys } = await _sacredConfirmation(ctx, id));
      confirmedAtTerminal = true;
    } else {
      ({ state, keys } = await unsealVault(ctx));
    }
    try {
      const agent = await state.vault.update(
        keys,
        (body) => promote(body, { id, tier, now: ctx.now(), confirmedAtTerminal }),
      );
      return {
        json: agentView(agent),
        text: `Promoted ${agent.id} to ${agent.tier}.\n`,
        informational: true,
      };
    } finally {
      wipeKeys(keys);
    }
  },
};

async function _sacredConfirmation(
  ctx: Ctx,
  id: string,
): Promise<{ state: State; keys: VaultKeys }> {
  if (!ctx.io.isTerminal) {
    throw denied(
      'sacred_needs_terminal',
      'promotion to SACRED needs a human at a terminal',
      'run it in an interactive terminal; --password-file and TRUST_PROTOCOL_PASSWORD are not accepted for it',
    );
  }
  const state = existingState(ctx);
  const file = state.vault.read();
  findAgent(file.body, id);
  const password = await promptHidden(ctx.io, 'Master password (typed, for SACRED promotion): ');
  if (password === null) {
    throw denied('sacred_needs_terminal', 'promotion to SACRED needs a human at a terminal');
  }
  const keys = unseal(file, password, { admin: adminName(ctx) });
  password.fill(0);
  const expected = `promote ${id} to SACRED`;
  const typed = await promptLine(ctx.io, `Type "${expected}" to confirm: `);
  if (typed !== expected) {
    wipeKeys(keys);
    throw new TpError(
      'denied',
      'confirmation_mismatch',
      'the confirmation did not match; nothing was changed',
    );
  }
  return { state, keys };
}

const demoteCmd: Command = {
  words: ['agent', 'demote'],
  summary: "lower an agent's tier (grants over the new limit are removed)",
  usage: 'agent demote ID TIER',
  options: { ...PASSWORD_FILE_OPTION },
  examples: ['trust-protocol agent demote ci-bot NOVICE'],
  args: { min: 2, max: 2 },
  async run(ctx) {
    const id = ctx.positionals[0] as string;
    const tier = parseTier(ctx.positionals[1] as string);
    const { agent, removedGrants } = await changeVault(
      ctx,
      (body) => demote(body, { id, tier, now: ctx.now() }),
    );
    const removed = removedGrants.length === 0
      ? ''
      : ` Removed grants over the ${tier} limit: ${removedGrants.join(', ')}.`;
    return {
      json: { ...agentView(agent), removed_grants: removedGrants },
      text: `Demoted ${agent.id} to ${agent.tier}.${removed}\n`,
      informational: true,
    };
  },
};

function _stateCommand(
  action: 'suspend' | 'resume' | 'revoke',
  summary: string,
  done: string,
): Command {
  return _simple(
    ['agent', action],
    summary,
    `agent ${action} ID`,
    { min: 1, max: 1 },
    (ctx, body) =>
      setAgentState(body, { id: ctx.positionals[0] as string, action, now: ctx.now() }),
    done,
    [`trust-protocol agent ${action} ci-bot`],
  );
}

const renew: Command = {
  words: ['agent', 'renew'],
  summary: "the agent's own renewal with its current token, gated by behaviour",
  usage: 'agent renew [--token-file PATH] [--server URL]',
  help: `Run by the agent: its token comes from TRUST_PROTOCOL_TOKEN or --token-file. Through a
running serve (--server, TRUST_PROTOCOL_SERVER, or the default socket) no password is needed;
otherwise the vault is unsealed with the password as exec does. Granted only before the token
expires, within the tier's renewal budget, with a behaviour score at or above the tier's
threshold (computed from the audit trail, never submitted), and with no anomaly that refuses
renewal since a human last issued the token. Prints the new token once; the old one stops.`,
  options: {
    ...PASSWORD_FILE_OPTION,
    'token-file': {
      type: 'string',
      value: 'PATH',
      help: "file holding the agent's current token (else TRUST_PROTOCOL_TOKEN)",
    },
    server: {
      type: 'string',
      value: 'URL|unix:PATH',
      help:
        'the serve to ask (else TRUST_PROTOCOL_SERVER, else HOME/serve.sock, else /run/trust-protocol/serve.sock)',
    },
  },
  examples: [
    'trust-protocol agent renew --token-file agent.token --quiet > agent.token.new',
    'trust-protocol agent renew --server unix:/run/trust-protocol/serve.sock',
  ],
  args: { min: 0, max: 0 },
  async run(ctx) {
    const presented = readToken(ctx.io, str(ctx, 'token-file'));
    // Loaded here: exec's module brings the broker and the HTTP client, which other agent
    // commands do not need (every CLI call pays for what it imports).
    const { serverFor } = await import('./exec.ts');
    const server = await serverFor(ctx);
    let issued: IssuedToken;
    if (server !== null) {
      const { renewViaServer } = await import('../../src/serve/client.ts');
      issued = (await renewViaServer(server, presented)) as unknown as IssuedToken;
    } else {
      const { state, keys } = await unsealVault(ctx);
      try {
        const { renewAgent } = await import('../../src/monitor/renewal.ts');
        issued = await renewAgent(state, keys, presented, ctx.now());
      } finally {
        wipeKeys(keys);
      }
    }
    return _tokenOutput(issued, 'Renewed');
  },
};

export const agentCommands: Command[] = [
  register,
  list,
  show,
  grantCmd,
  ungrantCmd,
  promoteCmd,
  demoteCmd,
  token,
  renew,
  _stateCommand('suspend', 'stop an agent until resumed', 'Suspended'),
  _stateCommand('resume', 'let a suspended agent work again', 'Resumed'),
  _stateCommand('revoke', 'end an agent for good (its token stops working)', 'Revoked'),
  recommendCommand,
];
