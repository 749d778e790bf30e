/** `exec`: one brokered request, from a JSON template or curl-like flags (SPEC §7). */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Buffer } from 'node:buffer';
import type { BrokeredResponse, BrokerRequest } from '../../src/broker.ts';
import { decodeUtf8Strict } from '../../src/text.ts';
import { TpError, usage } from '../../src/errors.ts';
import type { State } from '../../src/state.ts';
import type { VaultKeys } from '../../src/vault.ts';
import type { Template } from '../../src/template.ts';
import { SOCKET_NAME, SYSTEM_SOCKET } from '../../src/serve/address.ts';
import type { ProxyRequest, ServerTarget } from '../../src/serve/client.ts';
import { adminName, type Command, type Ctx, flag, list, str } from '../context.ts';
import { EXIT } from '../exit.ts';
import { readAll, readUserFile, write } from '../io.ts';
import { noteIgnoredCaVariables, sendOptions as sendOptionsOf } from '../send_options.ts';
import { PASSWORD_ENV, readPassword, readToken } from '../secrets.ts';

// Through a running serve, exec is a thin client: it checks the template's syntax, hands it to the
// socket and copies the answer out. The broker, the vault, the monitor, the template renderer and
// TLS load only when it unseals the vault itself (dynamic imports below): docs/performance.md
// measures what the serve path's start-up loads.

const TEMPLATE_LIMIT = 16 * 1024 * 1024;
const SERVER_ENV = 'TRUST_PROTOCOL_SERVER';

/**
 * Where a serve may be (then no password is needed): --server, else TRUST_PROTOCOL_SERVER, else
 * the default socket in the home, else the dedicated user's system socket; null when there is
 * none to try. --cacert and --connect-to belong to an exec that unseals itself: a serve has its
 * own.
 */
function _serveCandidates(ctx: Ctx): { named: string } | { sockets: string[] } | null {
  const oneShot = ['cacert', 'connect-to'].filter((f) => ctx.values[f] !== undefined);
  const flagged = str(ctx, 'server');
  if (flagged !== undefined && oneShot.length > 0) {
    throw usage(
      'conflicting_flags',
      `--server cannot be combined with --${oneShot[0]}`,
      'a serve uses its own --cacert and --connect-to, given when it was started',
    );
  }
  if (oneShot.length > 0) return null;
  const named = flagged ?? (ctx.io.env[SERVER_ENV] || undefined);
  if (named !== undefined) return { named };
  const sockets = [path.join(ctx.homeDir, SOCKET_NAME), SYSTEM_SOCKET].filter((s) =>
    fs.existsSync(s)
  );
  return sockets.length === 0 ? null : { sockets };
}

function _noteNoServe(ctx: Ctx, url: string): void {
  if (!ctx.json && !ctx.quiet) {
    ctx.io.stderr.write(`trust-protocol: note: no serve answers at ${url}; unsealing here\n`);
  }
}

/** The running serve that answers, found by a health probe (agent renew, mcp); else null. */
export async function serverFor(ctx: Ctx): Promise<ServerTarget | null> {
  const where = _serveCandidates(ctx);
  // The client (node:http and the serve modules) loads only when a serve may be there.
  if (where === null) return null;
  const { findServer, parseServerTarget, probeServer } = await import('../../src/serve/client.ts');
  if ('sockets' in where) {
    for (const socket of where.sockets) {
      const found = await findServer(socket);
      if (found !== null) return found;
    }
    return null;
  }
  const target = parseServerTarget(where.named);
  if (await probeServer(target)) return target;
  _noteNoServe(ctx, target.url);
  return null;
}

/**
 * exec's request handed to the serve that answers, in one round trip (no probe first); null when
 * no serve is there, and then only (src/serve/client.ts proxyViaServer decides).
 */
async function _viaServe(ctx: Ctx, request: ProxyRequest): Promise<BrokeredResponse | null> {
  const where = _serveCandidates(ctx);
  if (where === null) return null;
  const { parseServerTarget, proxyViaServer, socketTarget } = await import(
    '../../src/serve/client.ts'
  );
  if ('sockets' in where) {
    for (const socket of where.sockets) {
      const target = socketTarget(socket);
      const response = target === null ? null : await proxyViaServer(target, request);
      if (response !== null) return response;
    }
    return null;
  }
  const target = parseServerTarget(where.named);
  const response = await proxyViaServer(target, request);
  if (response === null) _noteNoServe(ctx, target.url);
  return response;
}

async function _template(ctx: Ctx): Promise<{ json: unknown } | { parsed: Template }> {
  const file = str(ctx, 'template');
  if (file !== undefined) {
    const curlFlags = ['request', 'header', 'data', 'credential'].filter((f) =>
      ctx.values[f] !== undefined
    );
    if (ctx.positionals.length > 0 || curlFlags.length > 0) {
      throw usage(
        'conflicting_flags',
        `--template cannot be combined with ${
          ctx.positionals.length > 0 ? 'a URL argument' : curlFlags.map((f) => `--${f}`).join(', ')
        }`,
        'put the method, headers, body and credential in the template itself',
      );
    }
    const bytes = file === '-'
      ? await readAll(ctx.io.stdin, TEMPLATE_LIMIT, 'the template on standard input')
      : readUserFile(file, 'template', TEMPLATE_LIMIT);
    const text = decodeUtf8Strict(bytes);
    try {
      if (text === null) throw new Error('not UTF-8');
      return { json: JSON.parse(text) };
    } catch {
      throw usage(
        'bad_template',
        `the template ${file === '-' ? 'on standard input' : file} is not valid JSON`,
        'see `trust-protocol exec --help` for the template format',
      );
    }
  }
  if (ctx.positionals.length !== 1) {
    throw usage(
      'no_template',
      'exec needs --template FILE|- or a URL',
      'e.g. trust-protocol exec -H "Authorization: Bearer {{CREDENTIAL}}" --credential NAME https://api.example.com/',
    );
  }
  const data = list(ctx, 'data').map((d) => d.startsWith('@') ? _dataFile(d.slice(1)) : d);
  const credential = str(ctx, 'credential');
  const { findPlaceholders, parseCurlArgs } = await import('../../src/template.ts');
  const curl = (headers: string[]) =>
    parseCurlArgs({
      url: ctx.positionals[0] as string,
      headers,
      ...(str(ctx, 'request') === undefined ? {} : { method: str(ctx, 'request') as string }),
      ...(data.length === 0 ? {} : { data: data.join('&') }),
      ...(credential === undefined ? {} : { credential }),
    });
  const parsed = curl(list(ctx, 'header'));
  if (credential === undefined || findPlaceholders(parsed).length > 0) return { parsed };
  // curl-style with no placeholder: the credential's inject rule says where it goes (issue 16).
  const rule = await _unverifiedInjectRule(ctx, credential);
  return { parsed: rule === null ? parsed : curl([...list(ctx, 'header'), rule]) };
}

/** The password for a run without serve; without one, the error says that no serve answers. */
async function _passwordOrNoServe(ctx: Ctx): Promise<Uint8Array> {
  try {
    return await readPassword(ctx.io, { passwordFile: str(ctx, 'password-file') });
  } catch (e) {
    if (!(e instanceof TpError) || e.code !== 'no_password_source') throw e;
    const oneShot = ['cacert', 'connect-to'].filter((f) => ctx.values[f] !== undefined);
    if (oneShot.length > 0) {
      throw new TpError(
        'sealed',
        'no_serve',
        `with --${oneShot[0]}, exec sends the request itself and needs the password`,
        {
          hint:
            'a running serve uses its own --cacert and --connect-to: leave them out to use it, ' +
            'or pass --password-file PATH',
        },
      );
    }
    throw new TpError(
      'sealed',
      'no_serve',
      'no serve is running and there is no password to unseal the vault here',
      {
        hint:
          'the operator starts one with `trust-protocol serve` (it asks for the password once ' +
          'and then serves agents on HOME/serve.sock); or pass --password-file PATH',
      },
    );
  }
}

/**
 * The credential's inject rule as an `-H` line, read from vault.json WITHOUT checking its MAC
 * (null when there is no readable home, no such credential or no rule). Unverified, and safe so:
 * it only writes a header the agent could have written itself; whether the credential may go in a
 * header, to this host, for this agent is decided by the broker on the authenticated vault.
 */
async function _unverifiedInjectRule(ctx: Ctx, credential: string): Promise<string | null> {
  const { existingState } = await import('../home_state.ts');
  try {
    const record = existingState(ctx).vault.read().body.credentials.find((c) =>
      c.name === credential
    );
    return record?.inject ?? null;
  } catch {
    return null;
  }
}

/** curl's -d @FILE: the file's contents with carriage returns and newlines removed. */
function _dataFile(path: string): string {
  const bytes = path === '-' ? fs.readFileSync(0) : readUserFile(path, 'data file');
  return Buffer.from(bytes).toString('utf8').replace(/[\r\n]/g, '');
}

function _headersJson(headers: Array<[string, string]>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of headers) {
    const name = k.toLowerCase();
    const prev = out[name];
    out[name] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
  }
  return out;
}

const exec: Command = {
  words: ['exec'],
  summary: 'perform one templated request with an injected credential',
  usage:
    'exec --template FILE|-  |  exec [-X METHOD] URL [-H "Name: value"]... [-d DATA|@FILE] [--credential NAME]',
  help: `Template JSON: {"credential": "NAME", "method": "POST", "url": "https://...",
  "headers": {"Authorization": "Bearer {{CREDENTIAL}}"}, "body": "text" | {...json...}}
Placeholders: {{CREDENTIAL}} (the template's credential), {{CREDENTIAL:name}}, each optionally |base64.
curl-style with --credential and no placeholder: the credential's --inject rule adds its header.
If a serve answers, exec hands it the request and needs no password; else it unseals the vault here.`,
  options: {
    'password-file': {
      type: 'string',
      value: 'PATH',
      help:
        'file holding the master password, when no serve answers (else TRUST_PROTOCOL_PASSWORD, else a no-echo prompt on a terminal)',
    },
    template: {
      type: 'string',
      value: 'FILE|-',
      help: 'the request as a JSON template, from FILE or standard input (-); not with a URL',
    },
    request: {
      type: 'string',
      short: 'X',
      value: 'METHOD',
      help: 'HTTP method (else GET, or POST with --data)',
    },
    header: {
      type: 'string',
      short: 'H',
      value: '"NAME: VALUE"',
      help: 'a request header; {{CREDENTIAL}} in it is replaced by the credential',
      multiple: true,
    },
    data: {
      type: 'string',
      short: 'd',
      value: 'DATA|@FILE',
      help:
        'request body, or @FILE (@- for standard input) without its newlines; several join with &',
      multiple: true,
    },
    credential: {
      type: 'string',
      value: 'NAME',
      help: 'the credential {{CREDENTIAL}} stands for (else only {{CREDENTIAL:name}} placeholders)',
    },
    include: { type: 'boolean', short: 'i', help: 'print the status line and headers first' },
    output: {
      type: 'string',
      short: 'o',
      value: 'FILE',
      help: 'write the body to FILE instead of standard output (a new file is created 0600)',
    },
    fail: {
      type: 'boolean',
      help: 'on an HTTP status of 400 or more: no body, one line on stderr, exit 22',
    },
    timeout: {
      type: 'string',
      value: 'SECONDS',
      help:
        'limit on the whole request in seconds, default 60 (a serve started with --timeout keeps the smaller)',
    },
    'max-response-bytes': {
      type: 'string',
      value: 'N',
      help:
        'cap on the decoded body, default 104857600 (a serve started with a cap keeps the smaller)',
    },
    'token-file': {
      type: 'string',
      value: 'PATH',
      help: "file holding the agent's token (else TRUST_PROTOCOL_TOKEN)",
    },
    cacert: {
      type: 'string',
      value: 'FILE',
      help:
        'PEM CA certificates that replace the bundled roots; exec then sends the request itself',
    },
    'connect-to': {
      type: 'string',
      value: 'HOST:PORT:ADDR:PORT',
      help:
        'connect to ADDR:PORT instead of HOST:PORT (the URL host is still checked); exec sends itself',
      multiple: true,
    },
    server: {
      type: 'string',
      value: 'URL|unix:PATH',
      help:
        'the serve to hand the request to (else TRUST_PROTOCOL_SERVER, else HOME/serve.sock, else /run/trust-protocol/serve.sock)',
    },
  },
  examples: [
    'trust-protocol exec -H "Authorization: Bearer {{CREDENTIAL}}" --credential github https://api.github.com/user',
    'trust-protocol exec --template request.json --token-file agent.token --fail',
  ],
  args: { min: 0, max: 1 },
  async run(ctx) {
    const template = await _template(ctx);
    const token = readToken(ctx.io, str(ctx, 'token-file'));
    const sendOptions = sendOptionsOf(ctx);
    const served = await _viaServe(ctx, { template, token, ...sendOptions });
    // Only a run that sends the request itself: a serve's TLS is its own.
    if (served === null) noteIgnoredCaVariables(ctx);
    const response = served ?? await _executeHere(ctx, { template, token, sendOptions });
    const failed = flag(ctx, 'fail') && response.status >= 400;
    if (ctx.json || failed) {
      const chunks: Uint8Array[] = [];
      for await (const chunk of response.body) chunks.push(chunk);
      if (failed) {
        const message = `the upstream answered HTTP ${response.status}`;
        ctx.io.stderr.write(
          ctx.json
            ? JSON.stringify({ error: { code: 'http_status', kind: 'http_status', message } }) +
              '\n'
            : `trust-protocol: error: ${message}\n`,
        );
        return { json: undefined, text: '', exitCode: EXIT.http_status };
      }
      const body = Buffer.concat(chunks);
      const text = decodeUtf8Strict(body);
      return {
        json: {
          status: response.status,
          status_text: response.statusText,
          headers: _headersJson(response.headers),
          body: text ?? body.toString('base64'),
          body_encoding: text === null ? 'base64' : 'utf8',
        },
        text: '',
      };
    }
    const out = str(ctx, 'output');
    const sink = out === undefined ? ctx.io.stdout : fs.createWriteStream(out, { mode: 0o600 });
    if (flag(ctx, 'include')) {
      const head = `HTTP/1.1 ${response.status} ${response.statusText}\r\n` +
        response.headers.map(([k, v]) => `${k}: ${v}\r\n`).join('') + '\r\n';
      await write(sink, head);
    }
    for await (const chunk of response.body) await write(sink, chunk);
    if (sink !== ctx.io.stdout) {
      await new Promise<void>((resolve, reject) =>
        (sink as fs.WriteStream).end((e?: Error | null) => e ? reject(e) : resolve())
      );
    }
    return { json: undefined, text: '' };
  },
};

export const execCommands: Command[] = [exec];

/** No serve: this process unseals the vault itself, for this one request. */
async function _executeHere(ctx: Ctx, request: BrokerRequest): Promise<BrokeredResponse> {
  const { execute, unsealWithPassword } = await import('../../src/broker.ts');
  const { existingState } = await import('../home_state.ts');
  const state = existingState(ctx);
  return execute(request, {
    state,
    env: ctx.io.env,
    now: ctx.now,
    unseal: unsealWithPassword(() => _passwordOrNoServe(ctx)),
    afterRequest: (keys) => _monitor(ctx, state, keys),
  });
}

/**
 * The monitor's turn after the request (src/monitor/live.ts). A request refused before the
 * password was needed is monitored too when the password can be read without asking (a file or
 * the variable); at a terminal it is not asked for, and the next run that holds it catches up.
 */
async function _monitor(ctx: Ctx, state: State, keys: VaultKeys | null): Promise<void> {
  const { monitorOnce } = await import('../../src/monitor/live.ts');
  const { unseal, wipeKeys } = await import('../../src/vault.ts');
  if (keys !== null) {
    await monitorOnce(state, keys, ctx.now());
    return;
  }
  if (str(ctx, 'password-file') === undefined && !ctx.io.env[PASSWORD_ENV]) return;
  const password = await readPassword(ctx.io, { passwordFile: str(ctx, 'password-file') });
  let held: VaultKeys;
  try {
    held = unseal(state.vault.read(), password, { admin: adminName(ctx) });
  } catch (e) {
    if (e instanceof TpError && e.kind === 'sealed') return;
    throw e;
  } finally {
    password.fill(0);
  }
  try {
    await monitorOnce(state, held, ctx.now());
  } finally {
    wipeKeys(held);
  }
}
