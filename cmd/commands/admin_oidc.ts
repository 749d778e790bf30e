/**
 * OIDC sign-in for admins (issue #19, SPEC §15): `admin oidc add|list` (trusted issuers),
 * `admin link` (an identity is an admin), `admin login` (get a token) and `admin whoami` (ask a
 * running serve who the token is). The configuration is in the vault, under its MAC: only an
 * owner changes it. The token is a bearer credential, kept in the home with mode 0600.
 */
import * as path from 'node:path';
import { TpError, usage } from '../../src/errors.ts';
import { readStateFile, writeStateFile } from '../../src/home.ts';
import {
  addIssuer,
  ADMIN_TOKEN_FILE,
  checkIssuer,
  linkAdmin,
  oidcOf,
  removeOidc,
} from '../../src/oidc/config.ts';
import { deviceLogin, type LoginResult, pkceLogin } from '../../src/oidc/login.ts';
import { callServe, findServer, parseServerTarget } from '../../src/serve/client.ts';
import { errorFromResponse } from '../../src/serve/http_error.ts';
import { type Command, flag, PASSWORD_FILE_OPTION, str, tableText } from '../context.ts';
import { changeVault, existingHome, existingState, unsealVault } from '../home_state.ts';
import { wipeKeys } from '../../src/vault.ts';
import { sendOptions } from '../send_options.ts';

export const TOKEN_FILE = ADMIN_TOKEN_FILE;

function _need(value: string | undefined, name: string): string {
  if (value === undefined || value === '') throw usage('bad_flag', `--${name} is required`);
  return value;
}

const oidc: Command = {
  words: ['admin', 'oidc'],
  summary: 'trust OpenID Connect issuers for admin sign-in (add, remove: owner only), or list them',
  usage:
    'admin oidc add --issuer URL --client-id ID [--audience AUD] [--role-claim CLAIM]  |  admin oidc remove --issuer URL [--subject SUB]  |  admin oidc list',
  help:
    'add: tokens from this issuer (ID tokens, or JWT access tokens with --audience) may sign\n' +
    "in to serve's admin API as the admin their subject is linked to (`admin link`). With\n" +
    '--role-claim, the claim (a role name or a list) can lower the role, never raise it.\n' +
    'Adding an issuer again replaces its settings. remove: an issuer and its links, or one link\n' +
    '(--subject); the next request with such a token is refused. list: no password (unverified).',
  options: {
    ...PASSWORD_FILE_OPTION,
    issuer: {
      type: 'string',
      value: 'URL',
      help: "the issuer identifier (https), as in its tokens' iss",
    },
    'client-id': { type: 'string', value: 'ID', help: 'the client id registered at the provider' },
    audience: {
      type: 'string',
      value: 'AUD',
      help: 'the aud tokens must carry (default: the client id, as in ID tokens)',
    },
    'role-claim': {
      type: 'string',
      value: 'CLAIM',
      help: "a claim naming a role, capped at the linked admin's role (default: none)",
    },
    subject: {
      type: 'string',
      value: 'SUB',
      help: 'remove: only the link of this subject (default: the issuer and all its links)',
    },
  },
  examples: [
    'trust-protocol admin oidc add --issuer https://login.example.com --client-id trust-protocol',
    'trust-protocol admin oidc list',
  ],
  args: { min: 1, max: 1 },
  async run(ctx) {
    const action = ctx.positionals[0];
    if (action === 'list') {
      const config = oidcOf(existingState(ctx).vault.read().body);
      return {
        json: { ...config, verified: false },
        text: tableText([
          ['ISSUER', 'CLIENT ID', 'AUDIENCE', 'ROLE CLAIM'],
          ...config.issuers.map((
            i,
          ) => [i.issuer, i.client_id, i.audience ?? '-', i.role_claim ?? '-']),
        ], { color: ctx.color }) +
          (config.links.length === 0 ? '' : '\n' + tableText([
            ['ADMIN', 'ISSUER', 'SUBJECT'],
            ...config.links.map((l) => [l.admin, l.issuer, l.subject]),
          ], { color: ctx.color })),
      };
    }
    if (action === 'remove') {
      const target = {
        issuer: _need(str(ctx, 'issuer'), 'issuer'),
        subject: str(ctx, 'subject') ?? null,
      };
      const removed = await changeVault(ctx, (body) => removeOidc(body, target));
      return {
        json: removed,
        text: `Removed ${removed.issuers} issuer(s) and ${removed.links} link(s).\n`,
        informational: true,
      };
    }
    if (action !== 'add') throw usage('bad_arguments', '`admin oidc` takes add, remove or list');
    const input = {
      issuer: checkIssuer(_need(str(ctx, 'issuer'), 'issuer')),
      client_id: _need(str(ctx, 'client-id'), 'client-id'),
      audience: str(ctx, 'audience') ?? null,
      role_claim: str(ctx, 'role-claim') ?? null,
    };
    const record = await changeVault(ctx, (body) => addIssuer(body, input, ctx.now()));
    return {
      json: record,
      text: `Trusting ${record.issuer} (client ${record.client_id}) for admin sign-in.\n`,
      informational: true,
    };
  },
};

const link: Command = {
  words: ['admin', 'link'],
  summary: 'let an OIDC identity sign in as an existing admin (owner only)',
  usage: 'admin link NAME --issuer URL --subject SUB',
  help: "The identity (the issuer and the `sub` of its tokens) acts in serve's admin API with\n" +
    "NAME's role (or less). It gets no key: unsealing still needs NAME's password. An identity\n" +
    'linked to another admin is refused: `admin oidc remove --subject` first. A new admin can be\n' +
    'added already linked: `admin add NAME --role ROLE --issuer URL --subject SUB`.',
  options: {
    ...PASSWORD_FILE_OPTION,
    issuer: { type: 'string', value: 'URL', help: 'a configured issuer (`admin oidc add`)' },
    subject: { type: 'string', value: 'SUB', help: "the identity's sub claim at that issuer" },
  },
  examples: [
    'trust-protocol admin link alice --issuer https://login.example.com --subject 248289761001',
  ],
  args: { min: 1, max: 1 },
  async run(ctx) {
    const admin = ctx.positionals[0] as string;
    const issuer = _need(str(ctx, 'issuer'), 'issuer');
    const subject = _need(str(ctx, 'subject'), 'subject');
    const { state, keys } = await unsealVault(ctx);
    let record;
    try {
      record = await state.vault.update(
        keys,
        (body, file) => linkAdmin(body, file, { admin, issuer, subject }),
      );
    } finally {
      wipeKeys(keys);
    }
    return {
      json: record,
      text: `${record.issuer} subject ${record.subject} signs in as admin ${record.admin}.\n`,
      informational: true,
    };
  },
};

const login: Command = {
  words: ['admin', 'login'],
  summary: "sign in with an OpenID Connect provider, for serve's admin API",
  usage: 'admin login --issuer URL --client-id ID [--device] [--print] [--scope S] [--cacert PATH]',
  help: 'Without --device: authorization code with PKCE; open the printed URL in a browser on\n' +
    'this machine, which returns to a one-shot listener on 127.0.0.1. With --device: open the\n' +
    'printed URL anywhere and enter the code. The ID token is saved in the home as\n' +
    `${TOKEN_FILE} (mode 0600; it acts as you until it expires) or, with --print, printed.`,
  options: {
    issuer: { type: 'string', value: 'URL', help: 'the issuer (https)' },
    'client-id': { type: 'string', value: 'ID', help: 'the client id registered at the provider' },
    device: { type: 'boolean', help: 'use the device flow (a terminal without a browser)' },
    print: { type: 'boolean', help: 'print the token on stdout instead of saving it' },
    scope: { type: 'string', value: 'S', help: 'scopes to ask for (default "openid")' },
    cacert: {
      type: 'string',
      value: 'PATH',
      help: 'PEM CA certificates to trust for the provider (else the bundled roots)',
    },
  },
  examples: [
    'trust-protocol admin login --issuer https://login.example.com --client-id trust-protocol',
    'trust-protocol admin login --issuer https://login.example.com --client-id trust-protocol --device',
  ],
  args: { min: 0, max: 0 },
  async run(ctx) {
    const options = {
      issuer: checkIssuer(_need(str(ctx, 'issuer'), 'issuer')),
      clientId: _need(str(ctx, 'client-id'), 'client-id'),
      scope: str(ctx, 'scope') ?? 'openid',
      sendOptions: sendOptions(ctx),
      show: (text: string) => void ctx.io.stderr.write(text),
    };
    const result: LoginResult = flag(ctx, 'device')
      ? await deviceLogin(options)
      : await pkceLogin(options);
    const summary = {
      issuer: result.issuer,
      subject: result.subject,
      expires_at: result.expires_at,
    };
    if (flag(ctx, 'print')) {
      return { json: { ...summary, id_token: result.id_token }, text: `${result.id_token}\n` };
    }
    writeStateFile(existingHome(ctx), TOKEN_FILE, JSON.stringify(result, null, 2) + '\n');
    return {
      json: { ...summary, saved: path.join(ctx.homeDir, TOKEN_FILE) },
      text: `Signed in as ${result.subject} at ${result.issuer} until ${
        result.expires_at ?? '?'
      }; the token is in ${path.join(ctx.homeDir, TOKEN_FILE)}.\n`,
      informational: true,
    };
  },
};

const whoami: Command = {
  words: ['admin', 'whoami'],
  summary: 'ask a running serve which admin the saved sign-in token is',
  usage: 'admin whoami [--server URL]',
  help: `Sends the token saved by \`admin login\` (${TOKEN_FILE} in the home) to serve's\n` +
    '/v1/admin/whoami: the admin it is linked to, the role it acts with, when it expires.',
  options: {
    server: {
      type: 'string',
      value: 'URL',
      help: "serve's address, unix:PATH or http://127.0.0.1:PORT (default: the home's socket)",
    },
  },
  examples: [
    'trust-protocol admin whoami',
    'trust-protocol admin whoami --server http://127.0.0.1:8111',
  ],
  args: { min: 0, max: 0 },
  async run(ctx) {
    const home = existingHome(ctx);
    const bytes = readStateFile(home, TOKEN_FILE);
    let token: unknown = null;
    try {
      token = bytes === null ? null : JSON.parse(new TextDecoder().decode(bytes)).id_token;
    } catch { /* below */ }
    if (typeof token !== 'string') {
      throw new TpError('sealed', 'admin_token_invalid', 'no saved sign-in in this home', {
        hint: 'run `trust-protocol admin login --issuer URL --client-id ID` first',
      });
    }
    const server = str(ctx, 'server');
    const target = server !== undefined
      ? parseServerTarget(server)
      : await findServer(path.join(ctx.homeDir, 'serve.sock'));
    if (target === null) {
      throw new TpError('sealed', 'no_serve', 'no serve is running for this home', {
        hint: 'start `trust-protocol serve`, or pass --server URL',
      });
    }
    const res = await callServe(target, {
      method: 'GET',
      path: '/v1/admin/whoami',
      token,
      limit: 64 * 1024,
    });
    let json: unknown = null;
    try {
      json = JSON.parse(new TextDecoder().decode(res.body));
    } catch { /* the status decides */ }
    if (res.status !== 200) throw errorFromResponse(res.status, json);
    const who = json as Record<string, string | null>;
    return {
      json: who,
      text: `${who.admin} (${who.role}), signed in as ${who.subject} at ${who.issuer}` +
        ` until ${who.expires_at ?? '?'}\n`,
    };
  },
};

export const oidcCommands: Command[] = [oidc, link, login, whoami];
