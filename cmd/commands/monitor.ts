/** `monitor report` and `agent recommend [ID]` (SPEC §4): advice computed from the audit trail. */
import { readAuditLog, readLogLines } from '../../src/audit.ts';
import { escapeControls } from '../../src/bytes.ts';
import { findAgent } from '../../src/agents.ts';

import { usage } from '../../src/errors.ts';
import {
  type AgentReport,
  monitorReport,
  monitorReportOfLines,
  parseAuditLog,
} from '../../src/monitor/report.ts';
import { type Command, type Ctx, tableText } from '../context.ts';
import { changeVault, existingState } from '../home_state.ts';
import {
  ACTIONS,
  actionsFor,
  ANOMALY_KINDS,
  parseActions,
  parseAnomalyKind,
  setActions,
} from '../../src/monitor/actions.ts';

const HEADER = 'computed from the audit trail; run `audit verify` to trust it';

/** No password: tiers come from the unauthenticated vault body, behaviour from the log. */
function _reports(ctx: Ctx, id?: string): AgentReport[] {
  const state = existingState(ctx);
  const home = state.home;
  const body = state.vault.read().body;
  const agents = id === undefined ? body.agents : [findAgent(body, id)];
  const options = { now: ctx.now() };
  // Streamed (issue #16); the whole log only when its times go backwards somewhere.
  return monitorReportOfLines(readLogLines(home), agents, options) ??
    monitorReport(parseAuditLog(readAuditLog(home)), agents, options);
}

const report: Command = {
  words: ['monitor', 'report'],
  summary: "every agent's tier, behaviour score, recent anomalies and recommendation",
  usage: 'monitor report [--json]',
  help: `Needs no password; ${HEADER}.`,
  options: {},
  examples: ['trust-protocol monitor report', 'trust-protocol monitor report --json'],
  args: { min: 0, max: 0 },
  run(ctx) {
    const reports = _reports(ctx);
    const rows = reports.map((r) => [
      r.id,
      escapeControls(r.name),
      r.tier,
      String(r.score),
      String(r.behaviour?.requests ?? 0),
      String(r.behaviour?.denied ?? 0),
      r.recent_anomalies.map((a) => `${a.kind}(${a.severity})`).join(',') || '-',
      r.recommendation.to === null
        ? r.recommendation.action
        : `${r.recommendation.action} ${r.recommendation.to}`,
    ]);
    return {
      json: { note: HEADER, agents: reports },
      text: `Monitoring report (${HEADER}).\n` + (rows.length === 0 ? 'No agents.\n' : tableText([
        ['ID', 'NAME', 'TIER', 'SCORE', 'REQUESTS', 'DENIED', 'RECENT ANOMALIES', 'ADVICE'],
        ...rows,
      ], { color: ctx.color })),
    };
  },
};

export const recommendCommand: Command = {
  words: ['agent', 'recommend'],
  summary: 'promotion or demotion advice with its evidence; a human decides',
  usage: 'agent recommend [ID]',
  help: `Needs no password; ${HEADER}.`,
  options: {},
  examples: ['trust-protocol agent recommend', 'trust-protocol agent recommend ci-bot'],
  args: { min: 0, max: 1 },
  run(ctx) {
    const recs = _reports(ctx, ctx.positionals[0]).map((r) => r.recommendation);
    const lines = recs.map((r) => {
      const e = r.evidence;
      const last = e.last_anomaly === null
        ? 'none'
        : `${e.last_anomaly.kind} (${e.last_anomaly.severity}) at ${e.last_anomaly.at}`;
      return `${r.agent} ${r.tier}: ${r.action}${r.to === null ? '' : ` to ${r.to}`}: ` +
        `${escapeControls(r.reason)}\n  days active ${e.days_active}, clean days at tier ` +
        `${e.clean_days_at_tier}, requests ${e.requests}, denials ${e.denials}, last anomaly ${last}`;
    });
    return {
      json: { note: HEADER, recommendations: recs },
      text: `Recommendations (${HEADER}).\n` +
        (lines.length === 0 ? 'No agents.\n' : lines.join('\n') + '\n'),
    };
  },
};

const actions: Command = {
  words: ['monitor', 'actions'],
  summary: 'show or set what each anomaly kind makes the monitor do',
  usage: 'monitor actions [KIND ACTIONS]',
  help: `Without arguments, shows the actions per anomaly kind (no password). With KIND and
ACTIONS, sets them: a comma list of ${ACTIONS.join(', ')} (record is always kept), or "default"
for the built-in choice; needs the password and is audited.`,
  options: {
    'password-file': {
      type: 'string',
      value: 'PATH',
      help:
        'file holding the master password, to set actions (else TRUST_PROTOCOL_PASSWORD, else a no-echo prompt on a terminal)',
    },
  },
  examples: [
    'trust-protocol monitor actions',
    'trust-protocol monitor actions denial_burst record,brake',
  ],
  args: { min: 0, max: 2 },
  async run(ctx) {
    if (ctx.positionals.length === 1) {
      throw usage('missing_actions', 'give both KIND and ACTIONS, or neither to show them');
    }
    if (ctx.positionals.length === 2) return await _setActions(ctx);
    const config = existingState(ctx).vault.read().body.monitor_actions ?? {};
    const rows = ANOMALY_KINDS.map((kind) => ({
      kind,
      actions: [...actionsFor(kind, config)],
      default: config[kind] === undefined,
    }));
    return {
      json: { actions: rows },
      text: tableText([
        ['KIND', 'ACTIONS', ''],
        ...rows.map((r) => [r.kind, r.actions.join(','), r.default ? '(default)' : '']),
      ], { color: ctx.color }),
    };
  },
};

async function _setActions(ctx: Ctx): Promise<{ json: unknown; text: string }> {
  const kind = parseAnomalyKind(ctx.positionals[0] as string);
  const text = ctx.positionals[1] as string;
  const chosen = text === 'default' ? null : parseActions(text);
  const now = await changeVault(ctx, (body) => setActions(body, kind, chosen));
  return { json: { kind, actions: now }, text: `Anomaly kind ${kind} now: ${now.join(', ')}.\n` };
}

export const monitorCommands: Command[] = [report, actions];
