/** Builds an audit shipper from flags, for `audit ship` and `serve --ship` (src/ship/). */
import { Buffer } from 'node:buffer';
import { usage } from '../src/errors.ts';
import type { Home } from '../src/home.ts';
import { parseDestination } from '../src/ship/destination.ts';
import { type FollowReport, Shipper } from '../src/ship/shipper.ts';
import type { DeliverOptions } from '../src/ship/transport.ts';
import type { Ctx } from './context.ts';
import { readUserFile } from './io.ts';

export interface ShipFlags {
  to: string;
  cacert: string | undefined;
  tokenFile: string | undefined;
  timeout: string | undefined;
}

const DEFAULT_TIMEOUT_MS = 30_000;

export function shipper(ctx: Ctx, home: Home, flags: ShipFlags): Shipper {
  const dest = parseDestination(flags.to);
  const options: DeliverOptions = { timeoutMs: _timeout(flags.timeout) };
  if (flags.cacert !== undefined) {
    options.ca = Buffer.from(readUserFile(flags.cacert, 'CA file', 1024 * 1024)).toString('utf8');
  }
  if (flags.tokenFile !== undefined) {
    const text = Buffer.from(
      readUserFile(flags.tokenFile, 'token file', 64 * 1024, { secret: true }),
    ).toString('utf8').replace(/\r?\n$/, '');
    // The value is never quoted: it is a secret.
    if (!/^[\x21-\x7e]+$/.test(text)) {
      throw usage('bad_token', 'the token file must hold one token of printable characters');
    }
    options.token = text;
  } else if (dest.kind === 'splunk') {
    throw usage('bad_token', 'Splunk HEC needs a token', 'pass --token-file PATH');
  }
  return new Shipper(home, dest, {
    deliver: options,
    warn: (message) => ctx.io.stderr.write(`trust-protocol: warning: ship: ${message}\n`),
  });
}

/** Failures and recovery of a following shipper, one line each on stderr. */
export function followReport(ctx: Ctx): FollowReport {
  let failing = false;
  return {
    failed(error, delayMs) {
      failing = true;
      ctx.io.stderr.write(
        `trust-protocol: ship: ${error.message}; next attempt in ${Math.ceil(delayMs / 1000)} s\n`,
      );
    },
    recovered() {
      if (failing) {
        ctx.io.stderr.write('trust-protocol: ship: the receiver accepts entries again\n');
      }
      failing = false;
    },
  };
}

function _timeout(text: string | undefined): number {
  if (text === undefined) return DEFAULT_TIMEOUT_MS;
  const seconds = Number(text);
  if (!/^\d+(\.\d+)?$/.test(text) || seconds <= 0 || seconds > 3600) {
    throw usage('bad_flag', `--timeout must be a number of seconds, got "${text}"`);
  }
  return Math.round(seconds * 1000);
}
