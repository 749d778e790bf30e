/**
 * Ships the audit log to one destination (docs/architecture.md#shipping): reads the entries after
 * the durable cursor, sends them as one batch, and advances the cursor only once the receiver
 * accepted them. It runs apart from the request path (its own loop reading the log file; never in
 * an append), needs no key (entries go out as written, MACs included), and a receiver that is down
 * only makes it wait (back-off with jitter, honouring Retry-After).
 *
 * The cursor file is agent-writable. A cursor that does not name an entry of the log is reported
 * and shipping starts again from the start (duplicates, which the receiver drops by id), never
 * after it; a running shipper keeps its own cursor in memory and puts it back if the file changes
 * under it. A consistent edit made while no shipper runs can still skip entries: the receiver sees
 * it as a gap in `seq` (docs/threat-model.md).
 */
import type { Home } from '../home.ts';
import { TpError } from '../errors.ts';
import { readCursor, removeCursor, type ShipCursor, writeCursor } from './cursor.ts';
import type { Destination } from './destination.ts';
import { formatBatch } from './messages.ts';
import { type BatchLimits, readBatch } from './reader.ts';
import { deliver, type DeliverOptions } from './transport.ts';

export interface ShipperOptions {
  deliver: DeliverOptions;
  limits?: BatchLimits;
  /** Told when the cursor did not match the log, or changed under this shipper. */
  warn(message: string): void;
  random?: () => number;
}

export interface Shipped {
  count: number;
  /** The seq of the last entry shipped (this call), or null. */
  last: number | null;
}

export interface FollowReport {
  /** A batch failed; the next attempt is in `delayMs`. */
  failed(error: TpError, delayMs: number): void;
  /** A batch went through after failures. */
  recovered(): void;
}

const DEFAULT_LIMITS: BatchLimits = { maxBytes: 512 * 1024, maxEntries: 1000 };
const POLL_MS = 250;
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 60_000;

export class Shipper {
  readonly #home: Home;
  readonly #dest: Destination;
  readonly #options: ShipperOptions;
  /** What this process last verified or wrote; undefined until the file was first read. */
  #cursor: ShipCursor | null | undefined = undefined;

  constructor(home: Home, dest: Destination, options: ShipperOptions) {
    this.#home = home;
    this.#dest = dest;
    this.#options = options;
  }

  /** Ships one batch (what is there, up to the limits); 0 when there was nothing new. */
  async step(): Promise<Shipped> {
    const limits = this.#options.limits ?? DEFAULT_LIMITS;
    const cursor = this.#start();
    let batch = readBatch(this.#home, cursor, limits);
    if (batch === null) {
      this.#options.warn(
        `the audit log no longer holds entry ${cursor?.seq} where shipping stopped (cut or ` +
          'rewritten); shipping again from the first entry (the receiver drops duplicates by id)',
      );
      this.#cursor = null;
      batch = readBatch(this.#home, null, limits)!;
    }
    if (batch.entries.length === 0) return { count: 0, last: null };
    await deliver(this.#dest, formatBatch(this.#dest.kind, batch.entries), this.#options.deliver);
    writeCursor(this.#home, this.#dest.text, batch.next!);
    this.#cursor = batch.next;
    return { count: batch.entries.length, last: batch.next!.seq };
  }

  /** Ships everything there is now; the first failure throws (the cursor stays where it was). */
  async once(): Promise<Shipped> {
    let total = 0;
    let last: number | null = null;
    for (;;) {
      const shipped = await this.step();
      if (shipped.count === 0) return { count: total, last };
      total += shipped.count;
      last = shipped.last;
    }
  }

  /** Ships until `signal` aborts, waiting for new entries, backing off when the receiver fails. */
  async follow(signal: AbortSignal, report: FollowReport): Promise<void> {
    let failures = 0;
    while (!signal.aborted) {
      let delay: number;
      try {
        const shipped = await this.step();
        if (failures > 0) report.recovered();
        failures = 0;
        delay = shipped.count > 0 ? 0 : POLL_MS;
      } catch (e) {
        const error = e instanceof TpError
          ? e
          : new TpError('internal', 'internal', `shipping failed: ${(e as Error).message}`);
        failures += 1;
        delay = this.#backoff(failures, error.details.retryAfterSeconds);
        report.failed(error, delay);
      }
      if (delay > 0) await _sleep(delay, signal);
    }
  }

  /** Exponential back-off with jitter; a Retry-After is waited in full, plus a little jitter. */
  #backoff(failures: number, retryAfterSeconds: number | undefined): number {
    const random = this.#options.random ?? Math.random;
    if (retryAfterSeconds !== undefined) {
      return retryAfterSeconds * 1000 * (1 + 0.1 * random());
    }
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.min(failures - 1, 16));
    return ceiling / 2 + (ceiling / 2) * random();
  }

  /** Where this batch starts: the file's cursor at first, this process's own afterwards. */
  #start(): ShipCursor | null {
    const stored = readCursor(this.#home, this.#dest.text);
    if (this.#cursor === undefined) {
      if (stored === 'malformed') {
        this.#options.warn(
          'the ship cursor file is not a valid cursor; shipping again from the first entry ' +
            '(the receiver drops duplicates by id)',
        );
        this.#cursor = null;
      } else if (
        stored !== null && readBatch(this.#home, stored, { maxBytes: 1, maxEntries: 1 }) === null
      ) {
        this.#options.warn(
          `the ship cursor (entry ${stored.seq}) does not match the audit log: it was edited, or ` +
            'the log was; shipping again from the first entry (the receiver drops duplicates by id)',
        );
        this.#cursor = null;
      } else {
        this.#cursor = stored;
      }
      return this.#cursor;
    }
    const mine = this.#cursor;
    const same = stored === mine ||
      (stored !== null && stored !== 'malformed' && mine !== null &&
        stored.seq === mine.seq && stored.offset === mine.offset && stored.digest === mine.digest);
    if (!same) {
      this.#options.warn(
        `the ship cursor file changed under this shipper; resuming after entry ${
          mine?.seq ?? 0
        }, ` +
          'the last it shipped, and restoring the file',
      );
      if (mine === null) removeCursor(this.#home, this.#dest.text);
      else writeCursor(this.#home, this.#dest.text, mine);
    }
    return mine;
  }
}

function _sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
