/** `monitor report` and `agent recommend [ID]` (SPEC §4): advice computed from the audit trail. */
import { readAuditLog } from '../../src/audit.ts';
import { escapeControls } from '../../src/bytes.ts';
import { findAgent } from '../../src/agents.ts';
import { loadVault } from '../../src/vault.ts';
import { type AgentReport, monitorReport, parseAuditLog } from '../../src/monitor/report.ts';
import { type Command, type Ctx, existingHome, tableText } from '../context.ts';

const HEADER = 'computed from the audit trail; run `audit verify` to trust it';

/** No password: tiers come from the unauthenticated vault body, behaviour from the log. */
function _reports(ctx: Ctx, id?: string): AgentReport[] {
  const home = existingHome(ctx);
  const body = loadVault(home).body;
  const agents = id === undefined ? body.agents : [findAgent(body, id)];
  return monitorReport(parseAuditLog(readAuditLog(home)), agents, { now: ctx.now() });
}

const report: Command = {
  words: ['monitor', 'report'],
  summary: "every agent's tier, behaviour score, recent anomalies and recommendation",
  usage: 'monitor report [--json]',
  help: `Needs no password; ${HEADER}.`,
  options: {},
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
      ])),
    };
  },
};

export const recommendCommand: Command = {
  words: ['agent', 'recommend'],
  summary: 'promotion or demotion advice with its evidence; a human decides',
  usage: 'agent recommend [ID]',
  help: `Needs no password; ${HEADER}.`,
  options: {},
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

export const monitorCommands: Command[] = [report];
