/** serve's flags: parsed and checked by the front, and again by its keeper (cmd/keeper.ts). */
import * as path from 'node:path';
import { formatRate, parseRate } from '../src/credentials.ts';
import type { SendOptions } from '../src/http/client.ts';
import { parseListen, type TcpAddress } from '../src/serve/address.ts';
import { parseDuration } from '../src/serve/duration.ts';
import { type Ctx, type Flags, PASSWORD_FILE_OPTION, str } from './context.ts';
import { lookupGroup } from './privileges.ts';
import { sendOptions } from './send_options.ts';

/** The settings HOME/config.json may hold are the ones marked "else config.json" (src/config.ts). */
export const SERVE_OPTIONS: Flags = {
  ...PASSWORD_FILE_OPTION,
  listen: {
    type: 'string',
    value: 'HOST:PORT',
    help:
      'also listen on loopback TCP: 127.0.0.0/8, [::1] or localhost; port 0 picks one (else config.json)',
  },
  socket: {
    type: 'string',
    value: 'PATH',
    help: 'the unix socket (else config.json, else HOME/serve.sock, where exec looks)',
  },
  'socket-group': {
    type: 'string',
    value: 'GROUP',
    help: "make the socket 0660 for this group, the agents' users (else config.json, else 0600)",
  },
  user: {
    type: 'string',
    value: 'NAME',
    help:
      'started by root: become this user before reading anything (needs --home or TRUST_PROTOCOL_HOME)',
  },
  ttl: {
    type: 'string',
    value: 'DURATION',
    help: 'exit after this long, at most 24h (else config.json, else 8h)',
  },
  idle: {
    type: 'string',
    value: 'DURATION',
    help: 'exit after this long without requests (else config.json, else 30m)',
  },
  'agent-rate': {
    type: 'string',
    value: 'N/PERIOD',
    help: 'at most N requests per agent per PERIOD, e.g. 60/m (else config.json, else no limit)',
  },
  cacert: {
    type: 'string',
    value: 'FILE',
    help: 'PEM CA certificates that replace the bundled roots (else config.json)',
  },
  'connect-to': {
    type: 'string',
    value: 'HOST:PORT:ADDR:PORT',
    help: 'connect to ADDR:PORT instead of HOST:PORT (else config.json)',
    multiple: true,
  },
  timeout: {
    type: 'string',
    value: 'SECONDS',
    help: 'limit on each upstream request (else config.json, else 60)',
  },
  'max-response-bytes': {
    type: 'string',
    value: 'N',
    help: 'cap on each decoded response body (else config.json, else 100 MiB)',
  },
  ship: {
    type: 'string',
    value: 'URL',
    help: 'keep shipping audit entries to this SIEM, as `audit ship --to URL --follow` (else none)',
  },
  'ship-cacert': {
    type: 'string',
    value: 'FILE',
    help: "PEM CA certificates that replace the bundled roots for --ship's receiver",
  },
  'ship-token-file': {
    type: 'string',
    value: 'PATH',
    help: 'file holding the Splunk HEC or bearer token for --ship (else none)',
  },
};

const HOUR = 3_600_000;
const MAX_TTL_MS = 24 * HOUR;

export interface ServeFlags {
  listen: TcpAddress | null;
  socket: string | null;
  socketGroup: number | null;
  ttlMs: number;
  idleMs: number;
  agentRate: string | null;
  sendOptions: SendOptions;
}

/** Every flag is checked before the password is asked for (by the front, and by the keeper). */
export function serveFlags(ctx: Ctx): ServeFlags {
  const listen = str(ctx, 'listen');
  const socket = str(ctx, 'socket');
  const rate = str(ctx, 'agent-rate');
  const group = str(ctx, 'socket-group');
  return {
    listen: listen === undefined ? null : parseListen(listen),
    socket: socket === undefined ? null : path.resolve(socket),
    socketGroup: group === undefined ? null : lookupGroup(group),
    ttlMs: parseDuration(str(ctx, 'ttl') ?? '8h', '--ttl', MAX_TTL_MS),
    idleMs: parseDuration(str(ctx, 'idle') ?? '30m', '--idle', MAX_TTL_MS),
    agentRate: rate === undefined ? null : formatRate(parseRate(rate)),
    sendOptions: sendOptions(ctx),
  };
}
