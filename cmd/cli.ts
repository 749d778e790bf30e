/**
 * The command line: finds the command among the words, parses its flags (global flags may stand
 * before or after the command words), runs it and turns the outcome into output and an exit code.
 */
import { parseArgs, type ParseArgsOptionsConfig } from 'node:util';
import pkg from '../package.json' with { type: 'json' };
import { escapeControls } from '../src/text.ts';
import { TpError, usage } from '../src/errors.ts';
import * as os from 'node:os';
import { resolveHome } from '../src/home.ts';
import { type Command, type Ctx, type Flags, type Output, PASSWORD_FILE_HELP } from './context.ts';
import { asTpError, EXIT, EXIT_TABLE, formatError } from './exit.ts';
import { type Io, write } from './io.ts';
import { colorOn } from './color.ts';
import { closest } from './suggest.ts';
import { openStoreSync } from './store_sync.ts';

export const VERSION: string = pkg.version;

/**
 * Command modules load on demand, so `--version` or `status` do not pay for TLS, zlib or crypto
 * module start-up (binary start-up is measured against bare `node -e 0`).
 */
const MODULES: Record<string, () => Promise<Command[]>> = {
  init: async () => (await import('./commands/vault.ts')).vaultCommands,
  status: async () => (await import('./commands/vault.ts')).vaultCommands,
  passwd: async () => (await import('./commands/vault.ts')).vaultCommands,
  vault: async () => (await import('./commands/vault.ts')).vaultCommands,
  admin: async () => (await import('./commands/admin.ts')).adminCommands,
  credential: async () => (await import('./commands/credential.ts')).credentialCommands,
  agent: async () => (await import('./commands/agent.ts')).agentCommands,
  exec: async () => (await import('./commands/exec.ts')).execCommands,
  serve: async () => (await import('./commands/serve.ts')).serveCommands,
  // The MCP SDK loads only here: no other command pays for it.
  mcp: async () => (await import('./commands/mcp.ts')).mcpCommands,
  'serve-keeper': async () => (await import('./keeper.ts')).keeperCommands,
  audit: async () => (await import('./commands/audit.ts')).auditCommands,
  emergency: async () => (await import('./commands/emergency.ts')).emergencyCommands,
  skill: async () => (await import('./commands/skill.ts')).skillCommands,
  publisher: async () => (await import('./commands/publisher.ts')).publisherCommands,
  monitor: async () => (await import('./commands/monitor.ts')).monitorCommands,
  config: async () => (await import('./commands/config.ts')).configCommands,
  completion: async () => (await import('./commands/completion.ts')).completionCommands,
  run: async () => (await import('./commands/run.ts')).runCommands,
  // The PostgreSQL client loads only here (and only once a database is used).
  store: async () => (await import('./commands/store.ts')).storeCommands,
};
const GROUPS = [
  'admin',
  'vault',
  'credential',
  'agent',
  'audit',
  'emergency',
  'skill',
  'publisher',
  'monitor',
  'config',
  'store',
];

/** Every command: the one table behind help, flag checking and shell completion. */
export async function allCommands(): Promise<Command[]> {
  const lists = await Promise.all([...new Set(Object.values(MODULES))].map((load) => load()));
  return [...new Set(lists.flat())].filter((c) => c.hidden !== true);
}

export const GLOBAL_OPTIONS: Flags = {
  home: {
    type: 'string',
    value: 'DIR',
    help: 'state directory (else $TRUST_PROTOCOL_HOME, else ~/.trust-protocol)',
  },
  json: { type: 'boolean', help: 'machine-readable output on stdout; errors as JSON on stderr' },
  quiet: {
    type: 'boolean',
    short: 'q',
    help: 'print only data (a token, ids or names one a line, responses)',
  },
  'no-color': {
    type: 'boolean',
    help: 'no colour (also when NO_COLOR is set, or not on a terminal)',
  },
  help: {
    type: 'boolean',
    short: 'h',
    help: 'help for a command (also: trust-protocol help COMMAND)',
  },
  // Accepted by every command, used by those that need it: a script may pass it to each.
  'password-file': {
    type: 'string',
    value: 'PATH',
    help: `${PASSWORD_FILE_HELP}; commands that need none ignore it`,
  },
  store: {
    type: 'string',
    value: 'URL',
    help:
      'the team store: postgres://USER@HOST/DB (or ?host=/socket/dir), the home its working copy (else TRUST_PROTOCOL_STORE, else the home alone); the password from PGPASSWORD',
  },
  admin: {
    type: 'string',
    value: 'NAME',
    help:
      'the admin whose key slot the password opens (else TRUST_PROTOCOL_ADMIN, else every slot is tried, one Argon2id each); for init, the first admin (default owner)',
  },
};

/** Global flags that take a value: the word after them is not a command word. */
const VALUED_GLOBALS = ['--home', '--password-file', '--admin', '--store'];

/**
 * The arguments that are ours: for `run`, those before `--` (the rest is the child's command line,
 * where `--json` or `--token=...` belong to the child).
 */
function _ownArgs(argv: readonly string[]): readonly string[] {
  const dash = argv.indexOf('--');
  const first = argv.findIndex((a, i) =>
    !a.startsWith('-') && !VALUED_GLOBALS.includes(argv[i - 1] ?? '')
  );
  return dash >= 0 && first >= 0 && first < dash && argv[first] === 'run'
    ? argv.slice(0, dash)
    : argv;
}

export async function runCli(argv: readonly string[], io: Io): Promise<number> {
  const own = _ownArgs(argv);
  const jsonErrors = own.includes('--json');
  try {
    const refused = own.find((a) =>
      a === '--password' || a.startsWith('--password=') || a === '--token' ||
      a.startsWith('--token=')
    );
    if (refused !== undefined) {
      const what = refused.startsWith('--password') ? 'password' : 'token';
      throw usage(
        `${what}_on_command_line`,
        `the ${what} is never accepted on the command line (other users can read it there)`,
        what === 'password'
          ? 'use --password-file PATH, TRUST_PROTOCOL_PASSWORD, or the prompt'
          : 'use --token-file PATH or TRUST_PROTOCOL_TOKEN',
      );
    }
    if (
      argv.length === 1 && (argv[0] === '--version' || argv[0] === '-V' || argv[0] === 'version')
    ) {
      await write(io.stdout, `trust-protocol ${VERSION}\n`);
      return EXIT.ok;
    }
    const helpAt = argv.findIndex((a) => !a.startsWith('-'));
    const asksHelp = helpAt >= 0 && argv[helpAt] === 'help';
    const { command, rest, group } = await _findCommand(
      asksHelp ? [...argv.slice(0, helpAt), ...argv.slice(helpAt + 1)] : argv,
    );
    if (command === null) {
      _checkFlags(rest, GLOBAL_OPTIONS, 'trust-protocol [GLOBAL OPTIONS] COMMAND');
      const all = await allCommands();
      await write(io.stdout, group === undefined ? _mainHelp(all) : _groupHelp(all, group));
      return EXIT.ok;
    }
    if (asksHelp) {
      await write(io.stdout, _commandHelp(command));
      return EXIT.ok;
    }
    const dash = command.dashArgs === true ? rest.indexOf('--') : -1;
    const parsed = _parse(command, dash < 0 ? rest : rest.slice(0, dash));
    if (parsed.values.help === true) {
      await write(io.stdout, _commandHelp(command));
      return EXIT.ok;
    }
    const json = parsed.values.json === true;
    const ctx: Ctx = {
      io,
      values: parsed.values,
      positionals: parsed.positionals,
      json,
      quiet: parsed.values.quiet === true,
      color: colorOn(io.stdout, io.env, parsed.values['no-color'] === true),
      homeDir: resolveHome(
        typeof parsed.values.home === 'string' ? parsed.values.home : undefined,
        io.env,
        os.homedir(),
      ),
      now: () => new Date(),
      ...(command.dashArgs === true ? { dashArgs: dash < 0 ? null : rest.slice(dash + 1) } : {}),
    };
    let output: Output;
    if (command.ownsStore === true) {
      output = await command.run(ctx);
    } else {
      try {
        ctx.sync = await openStoreSync(ctx);
      } catch (e) {
        // A brake is placed in the home even when the store is out of reach (or refuses this
        // home): it only narrows, and is in force here at once. The command fails after.
        if (command.brakeFirst !== true || !(e instanceof TpError) || e.kind === 'usage') throw e;
        ctx.storeFailure = e;
      }
      try {
        output = await command.run(ctx);
      } finally {
        await ctx.sync?.close();
      }
    }
    await _print(ctx, output);
    return output.exitCode ?? EXIT.ok;
  } catch (e) {
    const err = asTpError(e);
    io.stderr.write(formatError(err, {
      json: jsonErrors,
      color: colorOn(io.stderr, io.env, own.includes('--no-color')),
    }));
    if (err.kind === 'internal' && io.env.TRUST_PROTOCOL_DEBUG === '1' && e instanceof Error) {
      io.stderr.write(`${e.stack}\n`);
    }
    return EXIT[err.kind];
  }
}

/** Global flags may come first; then one or two command words; flags may sit between them. */
async function _findCommand(
  argv: readonly string[],
): Promise<{ command: Command | null; rest: string[]; group?: string }> {
  const pre: string[] = [];
  const words: string[] = [];
  let i = 0;
  while (i < argv.length) {
    const a = argv[i] as string;
    if (a === '--') break;
    if (a.startsWith('-') && a !== '-') {
      pre.push(a);
      if (VALUED_GLOBALS.includes(a) && i + 1 < argv.length) pre.push(argv[++i]!);
      i++;
      continue;
    }
    words.push(a);
    i++;
    if (words.length === 2 || !GROUPS.includes(words[0] as string)) break;
  }
  const rest = [...pre, ...argv.slice(i)];
  if (words.length === 0 || words[0] === 'help') return { command: null, rest };
  const group = words[0] as string;
  const load = MODULES[group];
  const command = load === undefined
    ? undefined
    : (await load()).find((c) => c.words.join(' ') === words.join(' '));
  if (command !== undefined) return { command, rest };
  if (GROUPS.includes(group)) {
    if (words.length === 1 || words[1] === 'help') return { command: null, rest, group };
    const near = closest(
      words[1] ?? '',
      (await (MODULES[group] as () => Promise<Command[]>)()).map((c) => c.words[1] ?? ''),
    );
    throw usage(
      'unknown_command',
      `unknown command "${group} ${escapeControls(words[1] ?? '')}"`,
      near === null
        ? `see \`trust-protocol ${group} --help\``
        : `did you mean \`trust-protocol ${group} ${near}\`?`,
    );
  }
  // The internal word (serve-keeper) is never suggested.
  const near = closest(group, Object.keys(MODULES).filter((w) => w !== 'serve-keeper'));
  throw usage(
    'unknown_command',
    `unknown command "${escapeControls(group)}"`,
    near === null ? 'see `trust-protocol --help`' : `did you mean \`trust-protocol ${near}\`?`,
  );
}

/**
 * Checks the flags before node's parseArgs sees them, so that the error names the flag in our
 * words, with a "did you mean" for a misspelling: an unknown flag, a flag that needs a value and
 * has none, a switch given a value.
 */
function _checkFlags(args: readonly string[], options: ParseArgsOptionsConfig, usageLine: string) {
  const longs = Object.keys(options);
  const shorts = new Map(
    Object.entries(options).flatMap(([name, o]) => (o.short ? [[o.short, name]] : [])),
  );
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (a === '--') return;
    if (!a.startsWith('-') || a === '-') continue;
    const eq = a.indexOf('=');
    const name = a.startsWith('--')
      ? a.slice(2, eq < 0 ? undefined : eq)
      : shorts.get(a.slice(1, 2)) ?? null;
    const option = name === null ? undefined : options[name];
    if (option === undefined) {
      const shown = escapeControls(
        a.startsWith('--') ? a.slice(0, eq < 0 ? undefined : eq) : a.slice(0, 2),
      );
      const near = a.startsWith('--') ? closest(shown.slice(2), longs) : null;
      throw usage(
        'unknown_flag',
        `unknown option ${shown}`,
        near === null ? `usage: ${usageLine}` : `did you mean --${near}?`,
      );
    }
    if (option.type === 'boolean' && eq >= 0) {
      throw usage('bad_flags', `--${name} takes no value`, `usage: ${usageLine}`);
    }
    const inline = eq >= 0 || (!a.startsWith('--') && a.length > 2);
    if (option.type === 'string' && !inline) {
      const next = args[i + 1];
      if (
        next === undefined ||
        (next.startsWith('-') && next !== '-' && options[next.slice(2)] !== undefined)
      ) {
        throw usage('bad_flags', `--${name} needs a value`, `usage: ${usageLine}`);
      }
      i++;
    }
  }
}

function _parse(command: Command, args: string[]) {
  _checkFlags(args, { ...GLOBAL_OPTIONS, ...command.options }, `trust-protocol ${command.usage}`);
  try {
    const { values, positionals } = parseArgs({
      args,
      options: { ...GLOBAL_OPTIONS, ...command.options },
      allowPositionals: true,
      strict: true,
    });
    const n = positionals.length;
    if (values.help !== true && (n < command.args.min || n > command.args.max)) {
      const expected = command.args.min === command.args.max
        ? `${command.args.min}`
        : `${command.args.min} to ${command.args.max}`;
      // Never echo the arguments themselves: a user may have pasted a secret there by mistake.
      throw usage(
        'bad_arguments',
        `\`${command.words.join(' ')}\` takes ${expected} argument(s), got ${n}`,
        `usage: trust-protocol ${command.usage}`,
      );
    }
    return { values: values as Ctx['values'], positionals };
  } catch (e) {
    if (e instanceof TpError) throw e;
    const message = e instanceof Error
      ? e.message.replace(/'[^']*'/g, (m) => (m.startsWith("'-") ? m : "'…'"))
      : String(e);
    throw usage(
      'bad_flags',
      message.split('\n')[0] ?? 'bad flags',
      `usage: trust-protocol ${command.usage}`,
    );
  }
}

async function _print(ctx: Ctx, output: Output): Promise<void> {
  if (ctx.json) {
    if (output.jsonLines !== undefined) {
      await write(ctx.io.stdout, output.jsonLines.map((l) => JSON.stringify(l) + '\n').join(''));
      return;
    }
    if (output.json !== undefined) {
      await write(ctx.io.stdout, JSON.stringify(output.json, null, 2) + '\n');
    }
    return;
  }
  if (ctx.quiet) {
    await write(ctx.io.stdout, output.quiet ?? (output.informational ? '' : output.text));
    return;
  }
  await write(ctx.io.stdout, output.text);
}

function _mainHelp(all: Command[]): string {
  const width = Math.max(...all.map((c) => c.words.join(' ').length));
  const lines = all.map((c) => `  ${c.words.join(' ').padEnd(width)}  ${c.summary}`);
  const globals = _flagLines({
    ...GLOBAL_OPTIONS,
    version: { type: 'boolean', short: 'V', help: 'print the version' },
  });
  return `trust-protocol ${VERSION}: a credential broker for AI agents

Usage: trust-protocol [--home DIR] [--json] [--quiet] [--no-color] COMMAND [ARGS]

Commands:
${lines.join('\n')}

Global options (before or after the command words):
${globals}
Passwords come from --password-file PATH, TRUST_PROTOCOL_PASSWORD, or a no-echo prompt; never argv.
Agent tokens come from --token-file PATH or TRUST_PROTOCOL_TOKEN.

${EXIT_TABLE}
`;
}

function _groupHelp(all: Command[], group: string): string {
  const commands = all.filter((c) => c.words[0] === group);
  return `Usage:\n${commands.map((c) => `  trust-protocol ${c.usage}`).join('\n')}\n\n` +
    commands.map((c) => `  ${c.words.join(' ')}: ${c.summary}`).join('\n') + '\n';
}

const HELP_WIDTH = 100;

/**
 * One aligned entry per flag, as git and curl print them (`  -X, --request METHOD   meaning`); a
 * long meaning wraps at HELP_WIDTH columns onto lines indented to its column.
 */
function _flagLines(flags: Flags): string {
  const rows = Object.entries(flags).map(([name, f]) =>
    [
      `${f.short ? `-${f.short}, ` : '    '}--${name}${
        f.type === 'string' ? ` ${f.value ?? 'VALUE'}` : ''
      }`,
      f.multiple ? `${f.help} (repeatable)` : f.help,
    ] as const
  );
  const width = Math.max(...rows.map(([left]) => left.length));
  const indent = ' '.repeat(width + 4);
  return rows.map(([left, help]) =>
    `  ${left.padEnd(width)}  ${_wrap(help, HELP_WIDTH - indent.length).join(`\n${indent}`)}\n`
  ).join('');
}

function _wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line !== '' && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line === '' ? word : `${line} ${word}`;
    }
  }
  return [...lines, line];
}

function _commandHelp(c: Command): string {
  return `Usage: trust-protocol ${c.usage}\n\n${c.summary}\n` +
    (c.help ? `\n${c.help}\n` : '') +
    (Object.keys(c.options).length > 0 ? `\nOptions:\n${_flagLines(c.options)}` : '') +
    `\nExamples:\n${c.examples.map((e) => `  ${e}\n`).join('')}` +
    '\nGlobal options and exit codes: trust-protocol --help\n';
}
