/** serve's flags: parsed and checked by the front, and again by its keeper (cmd/keeper.ts). */
import * as path from 'node:path';
import type { ParseArgsOptionsConfig } from 'node:util';
import { formatRate, parseRate } from '../src/credentials.ts';
import type { SendOptions } from '../src/http/client.ts';
import { parseListen, type TcpAddress } from '../src/serve/address.ts';
import { parseDuration } from '../src/serve/duration.ts';
import { type Ctx, PASSWORD_FILE_OPTION, str } from './context.ts';
import { lookupGroup } from './privileges.ts';
import { sendOptions } from './send_options.ts';

export const SERVE_OPTIONS: ParseArgsOptionsConfig = {
  ...PASSWORD_FILE_OPTION,
  listen: { type: 'string' },
  socket: { type: 'string' },
  'socket-group': { type: 'string' },
  user: { type: 'string' },
  ttl: { type: 'string' },
  idle: { type: 'string' },
  'agent-rate': { type: 'string' },
  cacert: { type: 'string' },
  'connect-to': { type: 'string', multiple: true },
  timeout: { type: 'string' },
  'max-response-bytes': { type: 'string' },
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
