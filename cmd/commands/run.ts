/**
 * `run [--credential NAME]... [--env VAR=CRED:FIELD]... -- CMD [ARG]...` (SPEC §13): starts CMD
 * with, for each credential, serve's gateway URL and the agent token in the variables its SDK
 * reads, so an unmodified SDK goes through serve. The child gets the agent's own token, never a
 * credential value (this process never holds one) and never the master password variable.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { constants as osConstants } from 'node:os';
import * as path from 'node:path';
import { escapeControls } from '../../src/bytes.ts';
import { denied, TpError, usage } from '../../src/errors.ts';
import { NAME_RE } from '../../src/grammar.ts';
import { openHome } from '../../src/home.ts';
import { findAgentByToken } from '../../src/policy.ts';
import { PRESETS } from '../../src/presets.ts';
import { SOCKET_NAME, SYSTEM_SOCKET } from '../../src/serve/address.ts';
import {
  findServer,
  parseServerTarget,
  serverHealth,
  type ServerTarget,
} from '../../src/serve/client.ts';
import { type CredentialRecord, loadVault, type VaultBody } from '../../src/vault.ts';
import { type Command, type Ctx, list, str } from '../context.ts';
import { formatError } from '../exit.ts';
import { PASSWORD_ENV, readToken, TOKEN_ENV } from '../secrets.ts';

const SERVER_ENV = 'TRUST_PROTOCOL_SERVER';
const VAR_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
const FIELDS = ['base_url', 'token'] as const;
type Field = (typeof FIELDS)[number];

/** TP_<NAME>_BASE_URL and TP_<NAME>_TOKEN: the name upper-cased, `.` and `-` as `_`. */
export function genericNames(credential: string): { baseUrl: string; token: string } {
  const stem = `TP_${credential.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`;
  return { baseUrl: `${stem}_BASE_URL`, token: `${stem}_TOKEN` };
}

/** serve as exec finds it (--server, TRUST_PROTOCOL_SERVER, the home's socket, the system's). */
async function _serve(ctx: Ctx): Promise<ServerTarget> {
  const named = str(ctx, 'server') ?? (ctx.io.env[SERVER_ENV] || undefined);
  const hint = 'start one with `trust-protocol serve --listen 127.0.0.1:8377` (it asks for the ' +
    'master password), then run this again';
  if (named !== undefined) {
    const target = parseServerTarget(named);
    if ((await serverHealth(target)) !== null) return target;
    throw new TpError('sealed', 'no_serve', `no trust-protocol serve answers at ${target.url}`, {
      hint,
    });
  }
  for (const socket of [path.join(ctx.homeDir, SOCKET_NAME), SYSTEM_SOCKET]) {
    if (!fs.existsSync(socket)) continue;
    const found = await findServer(socket);
    if (found !== null) return found;
  }
  throw new TpError('sealed', 'no_serve', 'no trust-protocol serve is running', {
    hint: `run needs one: ${hint}`,
  });
}

/** The TCP address SDKs reach serve at: a unix socket is no base URL for them. */
async function _tcpUrl(target: ServerTarget): Promise<string> {
  if (target.kind === 'tcp') return target.url;
  const health = await serverHealth(target);
  if (health?.tcp_url != null) return health.tcp_url;
  throw new TpError('sealed', 'serve_no_tcp', `the serve at ${target.url} has no TCP listener`, {
    hint: 'SDKs need an http:// base URL: restart serve with --listen 127.0.0.1:PORT',
  });
}

/**
 * The vault's unsealed metadata, if this user can read the home (the single-user deployment),
 * else null. Read without the password, so unchecked: it only picks variable names and the default
 * credentials; serve checks the token, grant and everything else on every request.
 */
function _vaultBody(ctx: Ctx): VaultBody | null {
  try {
    return loadVault(openHome(ctx.homeDir, { create: false })).body;
  } catch {
    return null;
  }
}

interface _Mapping {
  variable: string;
  credential: string;
  field: Field;
}

function _mappings(ctx: Ctx): _Mapping[] {
  return list(ctx, 'env').map((m) => {
    const match = /^([^=]*)=([^:]*):(.*)$/.exec(m);
    const variable = match?.[1] ?? '';
    const credential = match?.[2] ?? '';
    const field = match?.[3] ?? '';
    if (
      match === null || !VAR_RE.test(variable) || !NAME_RE.test(credential) ||
      !(FIELDS as readonly string[]).includes(field)
    ) {
      throw usage(
        'bad_env',
        `--env takes VAR=CREDENTIAL:base_url or VAR=CREDENTIAL:token, got ${
          JSON.stringify(escapeControls(m))
        }`,
        'e.g. --env MY_LLM_URL=openai:base_url --env MY_LLM_KEY=openai:token',
      );
    }
    return { variable, credential, field: field as Field };
  });
}

/** With no --credential and no --env: the agent's granted credentials the gateway can serve. */
function _defaults(body: VaultBody | null, token: string): CredentialRecord[] {
  const agent = body === null ? null : findAgentByToken(body.agents, token);
  if (body === null || agent === null) {
    throw usage(
      'no_credentials',
      body === null
        ? 'run cannot read the vault here to find which credentials this agent may use'
        : 'the agent token matches no agent in the vault',
      'name them: trust-protocol run --credential NAME -- CMD',
    );
  }
  return body.credentials.filter((c) =>
    agent.grants.includes(c.name) && c.base_url !== null && c.inject !== null
  );
}

/** The child's environment: ours, minus the password, plus each credential's variables. */
function _childEnv(ctx: Ctx, token: string, gateway: string): Record<string, string> {
  const body = _vaultBody(ctx);
  const mappings = _mappings(ctx);
  const named = list(ctx, 'credential');
  for (const name of named) {
    if (!NAME_RE.test(name)) {
      throw usage('bad_credential_name', `invalid credential name "${escapeControls(name)}"`);
    }
  }
  const records = new Map((body?.credentials ?? []).map((c) => [c.name, c]));
  for (const name of [...named, ...mappings.map((m) => m.credential)]) {
    if (body !== null && !records.has(name)) {
      throw usage(
        'no_such_credential',
        `no credential named "${name}"`,
        'see `trust-protocol credential list`',
      );
    }
  }
  const chosen = named.length > 0 || mappings.length > 0
    ? [...new Set(named)]
    : _defaults(body, token).map((c) => c.name);
  const url = (name: string) => `${gateway}/v1/gateway/${name}`;
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(ctx.io.env)) if (v !== undefined) env[k] = v;
  // The child is the agent: it gets its own token, never the operator's password.
  delete env[PASSWORD_ENV];
  const setBy = new Map<string, string>();
  const set = (variable: string, value: string, by: string) => {
    const earlier = setBy.get(variable);
    if (earlier !== undefined && env[variable] !== value) {
      throw usage(
        'env_clash',
        `${variable} would be set for both ${earlier} and ${by}`,
        'choose with --credential, or name the variables with --env VAR=CREDENTIAL:base_url|token',
      );
    }
    setBy.set(variable, by);
    env[variable] = value;
  };
  for (const name of chosen) {
    const preset = PRESETS.find((p) => p.name === records.get(name)?.preset);
    for (const v of preset?.unset ?? []) delete env[v];
    const names = preset?.env ?? genericNames(name);
    set(names.baseUrl, url(name), name);
    set(names.token, token, name);
  }
  // --env names are explicit: they replace a preset's or generic variable of the same name.
  for (const v of mappings) setBy.delete(v.variable);
  for (const m of mappings) {
    set(m.variable, m.field === 'base_url' ? url(m.credential) : token, `--env ${m.variable}`);
  }
  return env;
}

const FORWARDED = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/** Runs the child with inherited stdio; its exit status, or 128 + the signal that ended it. */
function _runChild(
  ctx: Ctx,
  argv: string[],
  env: Record<string, string>,
): Promise<number> {
  return new Promise((resolve) => {
    // The handlers are in place before the child exists, so that no signal sent once the child
    // runs can end this process and leave the child behind. They run from the event loop, so
    // never before `child` below is set.
    const forward = (signal: NodeJS.Signals) => () => {
      // process.kill, not child.kill: Deno reports a child it signalled itself as killed by that
      // signal, even when the child handled it and exited with a status of its own.
      if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
      try {
        process.kill(child.pid, signal);
      } catch { /* it exited meanwhile */ }
    };
    const handlers = FORWARDED.map((s) => [s, forward(s)] as const);
    for (const [s, h] of handlers) process.on(s, h);
    const child = spawn(argv[0] as string, argv.slice(1), { env, stdio: 'inherit' });
    let settled = false;
    const done = (code: number) => {
      if (settled) return;
      settled = true;
      for (const [s, h] of handlers) process.off(s, h);
      resolve(code);
    };
    child.on('error', (e: NodeJS.ErrnoException) => {
      // As env(1): 127 when the command is not found, 126 when it cannot be run.
      const notFound = e.code === 'ENOENT';
      ctx.io.stderr.write(formatError(
        usage(
          'command_not_found',
          notFound
            ? `command not found: ${escapeControls(argv[0] as string)}`
            : `cannot run ${escapeControls(argv[0] as string)} (${e.code ?? 'error'})`,
        ),
        { json: ctx.json, color: false },
      ));
      done(notFound ? 127 : 126);
    });
    child.on('exit', (code, signal) => {
      done(
        code ?? 128 + (signal === null ? 0 : (osConstants.signals[signal] ?? 0)),
      );
    });
  });
}

const runCommand: Command = {
  words: ['run'],
  summary: "run a command with serve's gateway and the agent token in its SDKs' variables",
  usage:
    'run [--credential NAME]... [--env VAR=CREDENTIAL:base_url|token]... [--token-file PATH] [--server URL] -- CMD [ARG]...',
  help:
    `Starts CMD with, for each credential, serve's gateway URL (http://HOST:PORT/v1/gateway/NAME)
and the agent token (TRUST_PROTOCOL_TOKEN or --token-file) in the variables its SDK reads: those of
the credential's preset (OPENAI_BASE_URL and OPENAI_API_KEY for --preset openai; see
\`trust-protocol credential presets\`), else TP_<NAME>_BASE_URL and TP_<NAME>_TOKEN (NAME upper-cased,
. and - as _). --env VAR=CREDENTIAL:base_url|token sets a variable of your choosing (and, without
--credential, only those). With neither, every credential granted to this agent that has a base URL
and an inject rule (read from the vault in the home). The child never sees a credential value and
not TRUST_PROTOCOL_PASSWORD. Needs a running serve with a TCP listener (serve --listen ...), found
as exec finds it. Exit status is the child's (128 + N if signal N ended it; 127 if CMD is not
found); SIGINT, SIGTERM and SIGHUP are passed to the child.`,
  options: {
    credential: {
      type: 'string',
      multiple: true,
      value: 'NAME',
      help: 'a credential whose gateway URL and token the child gets (else every usable grant)',
    },
    env: {
      type: 'string',
      multiple: true,
      value: 'VAR=CRED:base_url|token',
      help: "set VAR to that credential's gateway URL or to the agent token",
    },
    'token-file': {
      type: 'string',
      value: 'PATH',
      help: "file holding the agent's token (else TRUST_PROTOCOL_TOKEN)",
    },
    server: {
      type: 'string',
      value: 'URL|unix:PATH',
      help:
        'the serve to use (else TRUST_PROTOCOL_SERVER, else HOME/serve.sock, else /run/trust-protocol/serve.sock)',
    },
  },
  examples: [
    'trust-protocol run --credential openai -- python agent.py',
    'trust-protocol run --env MY_URL=stripe:base_url --env MY_KEY=stripe:token -- ./pay.sh',
  ],
  args: { min: 0, max: 0 },
  dashArgs: true,
  async run(ctx) {
    const argv = ctx.dashArgs ?? null;
    if (argv === null || argv.length === 0) {
      throw usage(
        'no_command',
        argv === null ? 'run needs `--` before the command' : 'run needs a command after `--`',
        'usage: trust-protocol run [--credential NAME]... -- CMD [ARG]...',
      );
    }
    const token = readToken(ctx.io, str(ctx, 'token-file'));
    if (token === null) {
      throw denied(
        'no_token',
        'run needs the agent token to give to the command',
        `set ${TOKEN_ENV} or pass --token-file PATH`,
      );
    }
    // Checked before serve is asked: a typo in a flag should not wait for a probe.
    _mappings(ctx);
    const gateway = await _tcpUrl(await _serve(ctx));
    const env = _childEnv(ctx, token, gateway);
    const code = await _runChild(ctx, argv, env);
    return { json: undefined, text: '', exitCode: code };
  },
};

export const runCommands: Command[] = [runCommand];
