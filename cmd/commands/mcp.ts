/**
 * `mcp`: the MCP server on stdio (SPEC §13), a front for a running serve: it holds the agent's
 * token and nothing else, and looks for serve on every tool call, as `exec` does. `mcp install`:
 * a client's configuration (cmd/mcp_install.ts).
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { TpError, usage } from '../../src/errors.ts';
import { type Command, type Ctx, flag, str } from '../context.ts';
import { VERSION } from '../cli.ts';
import { readToken } from '../secrets.ts';
import {
  applyInstall,
  type Client,
  CLIENTS,
  configFile,
  planInstall,
  serverEntry,
} from '../mcp_install.ts';

/** Largest answer a tool reads from serve (the redacted body of one response). */
const ANSWER_LIMIT = 100 * 1024 * 1024;

const mcp: Command = {
  words: ['mcp'],
  summary: 'MCP server on stdio for agents (needs a running serve); mcp install CLIENT',
  usage: 'mcp [--token-file PATH] [--server URL|unix:PATH]  |  mcp install claude|cursor|codex ' +
    '[--scope project|user] [--dry-run] [--token-file PATH]',
  help:
    `Tools: http_request (a template, as for exec), list_credentials, check_request, agent_status.
The server holds no password and no value: it forwards to a running serve (--server,
TRUST_PROTOCOL_SERVER, or HOME/serve.sock) with the token from TRUST_PROTOCOL_TOKEN or --token-file.
mcp install writes Claude Code's .mcp.json (user: ~/.claude.json), Cursor's .cursor/mcp.json or
Codex's .codex/config.toml (user: in the home directory), merged with what is there. The token is
never written: the entry passes TRUST_PROTOCOL_TOKEN on from the client's environment, or names
--token-file. --dry-run prints the change and writes nothing.`,
  options: {
    'token-file': {
      type: 'string',
      value: 'PATH',
      help:
        "file holding the agent's token (else TRUST_PROTOCOL_TOKEN); install: named in the entry",
    },
    server: {
      type: 'string',
      value: 'URL|unix:PATH',
      help:
        'the serve to forward to (else TRUST_PROTOCOL_SERVER, else HOME/serve.sock, else /run/trust-protocol/serve.sock)',
    },
    scope: {
      type: 'string',
      value: 'project|user',
      help: "install: the project's config file (default) or the user's",
    },
    'dry-run': { type: 'boolean', help: 'install: print the change, write nothing' },
  },
  examples: [
    'trust-protocol mcp --token-file ~/.config/agent.token',
    'trust-protocol mcp install claude --scope project --dry-run',
  ],
  args: { min: 0, max: 2 },
  async run(ctx) {
    if (ctx.positionals[0] === 'install') return _install(ctx);
    if (ctx.positionals.length > 0) {
      throw usage(
        'unknown_command',
        `unknown command "mcp ${ctx.positionals[0]}"`,
        'did you mean `trust-protocol mcp install CLIENT`?',
      );
    }
    const only = ['scope', 'dry-run'].find((f) => ctx.values[f] !== undefined);
    if (only !== undefined) throw usage('bad_flag', `--${only} belongs to mcp install`);
    await _serveStdio(ctx);
    return { json: undefined, text: '' };
  },
};

async function _serveStdio(ctx: Ctx): Promise<void> {
  const token = readToken(ctx.io, str(ctx, 'token-file'));
  const [{ createMcpServer }, { StdioServerTransport }, { callServe }, { serverFor }] =
    await Promise
      .all([
        import('../../src/mcp/tools.ts'),
        import('@modelcontextprotocol/server/stdio'),
        import('../../src/serve/client.ts'),
        import('./exec.ts'),
      ]);
  const server = createMcpServer(async (method, apiPath, json) => {
    const target = await serverFor(ctx);
    if (target === null) {
      throw new TpError('sealed', 'serve_unreachable', 'no trust-protocol serve is running', {
        hint: 'ask the operator to start one with `trust-protocol serve` (it asks for the master ' +
          'password once), then call the tool again',
      });
    }
    return await callServe(target, {
      method,
      path: apiPath,
      token,
      ...(json === undefined ? {} : { json }),
      limit: ANSWER_LIMIT,
    });
  }, VERSION);
  const closed = new Promise<void>((resolve) => {
    ctx.io.stdin.once('end', resolve);
    ctx.io.stdin.once('close', resolve);
  });
  await server.connect(new StdioServerTransport(ctx.io.stdin, ctx.io.stdout));
  await closed;
  await server.close();
}

function _install(ctx: Ctx) {
  const client = ctx.positionals[1];
  if (client === undefined || !(CLIENTS as readonly string[]).includes(client)) {
    throw usage(
      'unknown_client',
      client === undefined ? 'mcp install needs a client' : `unknown client "${client}"`,
      `use one of: ${CLIENTS.join(', ')}`,
    );
  }
  const scope = str(ctx, 'scope') ?? 'project';
  if (scope !== 'project' && scope !== 'user') {
    throw usage('bad_flag', '--scope must be project or user');
  }
  const tokenFile = str(ctx, 'token-file');
  // Only what was chosen explicitly: a default home stays the default for whoever runs the client.
  const homeGiven = typeof ctx.values.home === 'string' ||
    (ctx.io.env.TRUST_PROTOCOL_HOME ?? '') !== '';
  const args = [
    ...(homeGiven ? ['--home', path.resolve(ctx.homeDir)] : []),
    ...(tokenFile === undefined ? [] : ['--token-file', path.resolve(tokenFile)]),
  ];
  const file = configFile(client as Client, scope, {
    project: process.cwd(),
    user: os.homedir(),
  });
  const plan = planInstall(
    client as Client,
    scope,
    file,
    serverEntry(client as Client, args, tokenFile !== undefined),
  );
  const dryRun = flag(ctx, 'dry-run');
  if (!dryRun) applyInstall(plan);
  const verb = plan.action === 'unchanged'
    ? 'is already up to date in'
    : `${dryRun ? 'would be ' : ''}${plan.action} ${plan.action === 'added' ? 'to' : 'in'}`;
  const token = tokenFile === undefined
    ? 'the client passes TRUST_PROTOCOL_TOKEN on from its environment (set it there)'
    : `the server reads the token from ${path.resolve(tokenFile)}`;
  return {
    json: {
      client: plan.client,
      scope: plan.scope,
      file: plan.file,
      action: plan.action,
      dry_run: dryRun,
      entry: plan.entry,
    },
    text: `MCP server "trust-protocol" ${verb} ${plan.file}:\n` +
      `${JSON.stringify(plan.entry, null, 2)}\n` +
      `The token is not in the file: ${token}.\n` +
      (dryRun ? `Dry run: nothing was written. The file would read:\n${plan.text}` : ''),
  };
}

export const mcpCommands: Command[] = [mcp];
