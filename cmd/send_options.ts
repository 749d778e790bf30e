/** The flags that shape an outgoing request (exec and serve share them): --timeout, --max-response-bytes, --cacert, --connect-to. */
import { Buffer } from 'node:buffer';
import { ignoredCaVariables } from '../src/http/ca_env.ts';
import { usage } from '../src/errors.ts';
import type { SendOptions } from '../src/http/client.ts';
import { parseConnectTo } from '../src/http/connect_to.ts';
import { type Ctx, list, str } from './context.ts';
import { readUserFile } from './io.ts';

export function sendOptions(ctx: Ctx): SendOptions {
  const options: SendOptions = {};
  const timeout = str(ctx, 'timeout');
  if (timeout !== undefined) {
    const seconds = Number(timeout);
    if (!/^\d+(\.\d+)?$/.test(timeout) || seconds <= 0 || seconds > 86400) {
      throw usage('bad_flag', `--timeout must be a number of seconds, got "${timeout}"`);
    }
    options.timeoutMs = Math.round(seconds * 1000);
  }
  const max = str(ctx, 'max-response-bytes');
  if (max !== undefined) {
    if (!/^\d{1,15}$/.test(max) || Number(max) < 1) {
      throw usage('bad_flag', `--max-response-bytes must be a positive whole number, got "${max}"`);
    }
    options.maxResponseBytes = Number(max);
  }
  const cacert = str(ctx, 'cacert');
  if (cacert !== undefined) {
    options.ca = Buffer.from(readUserFile(cacert, 'CA file', 1024 * 1024)).toString('utf8');
  }
  const connectTo = list(ctx, 'connect-to');
  if (connectTo.length > 0) options.connectTo = connectTo.map(parseConnectTo);
  return options;
}

/**
 * One note when CA variables are set: many machines export them for every program, so they must
 * not stop a run, and nothing they name is trusted (SPEC §6). Informational: not under --quiet or
 * --json. Names only: a value is a path the reader already knows.
 */
export function noteIgnoredCaVariables(ctx: Ctx): void {
  const names = ignoredCaVariables(ctx.io.env);
  if (names.length === 0 || ctx.quiet || ctx.json) return;
  ctx.io.stderr.write(
    `trust-protocol: note: ignoring ${names.join(', ')}: ` +
      'TLS trusts only the bundled roots, or --cacert\n',
  );
}
