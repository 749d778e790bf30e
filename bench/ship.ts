/**
 * Shipping against a high append rate (issue #18): appends run in-process as serve makes them
 * (group commit, 64 at once) for a few seconds while a Shipper follows the log to a local
 * JSON-lines receiver (plain HTTP on 127.0.0.1, answering 200). Prints entries/s appended and
 * shipped, and how far shipping was behind when appending stopped.
 *   node bench/ship.ts [SECONDS]
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { openState } from '../src/state.ts';
import { parseDestination } from '../src/ship/destination.ts';
import { Shipper } from '../src/ship/shipper.ts';

const seconds = Number(process.argv[2] ?? 10);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tp-bench-ship-'));
const home = { dir: path.join(dir, 'home') };
fs.mkdirSync(home.dir, { mode: 0o700 });
let shipped = 0;
const receiver = createServer((req, res) => {
  let lines = 0;
  req.on('data', (d: Buffer) => {
    for (const b of d) if (b === 0x0a) lines++;
  });
  req.on('end', () => {
    shipped += lines;
    res.writeHead(200).end();
  });
});
await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
const port = (receiver.address() as AddressInfo).port;
const writer = openState(home).audit.writer({ macKey: randomBytes(32) });
const shipper = new Shipper(home, parseDestination(`http://127.0.0.1:${port}/`), {
  deliver: { timeoutMs: 30_000 },
  warn: (m) => console.error(m),
});
const stop = new AbortController();
const following = shipper.follow(stop.signal, {
  failed: (e) => console.error(e.message),
  recovered() {},
});
const entry = {
  event: 'request.completed' as const,
  actor: { type: 'agent' as const, id: 'agt_bench' },
  outcome: 'ok' as const,
  data: {
    credential: 'k',
    method: 'POST',
    host: 'api.example.com',
    path: '/v1/chat',
    status: 200,
    bytes: 1834,
  },
};
let appended = 0;
const start = Date.now();
const end = start + seconds * 1000;
await Promise.all(Array.from({ length: 64 }, async () => {
  while (Date.now() < end) {
    await writer.append([entry]);
    appended++;
  }
}));
const appendSeconds = (Date.now() - start) / 1000;
const behind = appended - shipped;
while (shipped < appended) await new Promise((r) => setTimeout(r, 20));
const shipSeconds = (Date.now() - start) / 1000;
stop.abort();
await following;
receiver.close();
fs.rmSync(dir, { recursive: true, force: true });
console.log(
  `appended ${appended} entries in ${appendSeconds.toFixed(1)} s (${
    Math.round(appended / appendSeconds)
  }/s); ` +
    `shipped all in ${shipSeconds.toFixed(1)} s (${Math.round(appended / shipSeconds)}/s); ` +
    `${behind} behind when appending stopped`,
);
console.log(
  `ratio: shipped when appending stopped / appended = ${
    ((appended - behind) / appended).toFixed(3)
  }; shipping rate / append rate = ${(appendSeconds / shipSeconds).toFixed(2)} (goal: keeps up)`,
);
