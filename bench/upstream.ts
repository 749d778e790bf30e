/**
 * The local HTTPS upstream for `make bench`, run as its own process so that hyperfine's runs never
 * wait on the event loop of bench/run.ts. `/big` answers BIG_MIB MiB of text with a Content-Length;
 * any other path answers a small JSON document. Prints its port on the first line of stdout.
 * Run: node bench/upstream.ts [BIG_MIB]
 */
import { Buffer } from 'node:buffer';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import * as path from 'node:path';
import process from 'node:process';

const tls = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../fixtures/tls');
const bigMib = Number(process.argv[2] ?? '50');
const CHUNK = 64 * 1024;
const line = Buffer.from('{"id":"evt_0123456789","object":"event","data":"lorem ipsum dolor"}\n');
const chunk = Buffer.alloc(CHUNK);
for (let i = 0; i < CHUNK; i += line.length) line.copy(chunk, i);
const small = Buffer.from('{"object":"list","data":[{"id":"model-a"},{"id":"model-b"}]}\n');

const server = createServer({
  key: readFileSync(path.join(tls, 'server.key')),
  cert: readFileSync(path.join(tls, 'server.pem')),
}, (req, res) => {
  if (req.url !== '/big') {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': small.length });
    res.end(small);
    return;
  }
  const total = bigMib * 1024 * 1024;
  res.writeHead(200, { 'content-type': 'application/x-ndjson', 'content-length': total });
  let sent = 0;
  // Honours backpressure, so the upstream never buffers the whole body in memory.
  const pump = () => {
    while (sent < total) {
      const n = Math.min(CHUNK, total - sent);
      sent += n;
      if (!res.write(n === CHUNK ? chunk : chunk.subarray(0, n))) {
        return void res.once('drain', pump);
      }
    }
    res.end();
  };
  pump();
});

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${(server.address() as { port: number }).port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
