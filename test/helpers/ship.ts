/**
 * For the `audit ship` tests: a home whose log gets entries appended in-process (fast, as many
 * as a test needs), and what a receiver got, parsed back into entries to check order and hashes.
 */
import { Buffer } from 'node:buffer';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { openState } from '../../src/state.ts';
import { newHome, type TestHome } from './cli.ts';

export async function shipHome(): Promise<TestHome & { append(n: number): Promise<void> }> {
  const t = await newHome({ init: false });
  mkdirSync(t.home, { mode: 0o700 });
  const writer = openState({ dir: t.home }).audit.writer({ macKey: randomBytes(32) });
  let i = 0;
  return {
    ...t,
    async append(n: number) {
      for (let k = 0; k < n; k++) {
        i += 1;
        await writer.append([{
          event: 'request.denied',
          actor: { type: 'agent', id: 'agt_test' },
          outcome: 'denied',
          data: { host: 'api.example.test', n: i },
        }]);
      }
    },
  };
}

/** The log's lines, without the final newline. */
export function logLines(home: string): string[] {
  const text = readFileSync(path.join(home, 'audit', 'audit.log'), 'utf8');
  return text.slice(0, -1).split('\n');
}

export function leafHash(line: string): string {
  return createHash('sha256').update(Buffer.concat([Buffer.from([0]), Buffer.from(line)]))
    .digest('hex');
}

/** The entry hash: SHA-256 of the line before `,"mac":` (the next entry's prev). */
export function entryId(line: string): string {
  return createHash('sha256').update(line.slice(0, line.lastIndexOf(',"mac":'))).digest('hex');
}

/** JSON-lines bodies received (https:// destinations), in arrival order. */
export function jsonlReceived(bodies: readonly Uint8Array[]) {
  return bodies.flatMap((b) =>
    Buffer.from(b).toString('utf8').split('\n').filter((l) => l !== '').map((l) =>
      JSON.parse(l) as { seq: number; id: string; leaf_hash: string; entry: string }
    )
  );
}

/** The single cursor file of the home's ship directory. */
export function cursorFile(home: string): string {
  const dir = path.join(home, 'ship');
  const names = readdirSync(dir).filter((n) => n.endsWith('.json'));
  if (names.length !== 1) throw new Error(`expected one cursor, found ${names.join(', ')}`);
  return path.join(dir, names[0]!);
}
