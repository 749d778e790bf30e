/**
 * The local HTTPS upstream for `make bench`, run as its own process so that hyperfine's runs never
 * wait on the event loop of bench/run.ts. `/big` answers BIG_MIB MiB of text with a Content-Length;
 * `POST /v1/chat/completions` reads the body and answers a small chat completion, or, when the
 * model is `sse-N-MS`, a server-sent-event stream of N chunks MS ms apart (the first at once);
 * any other path answers a small JSON document. Prints its port on the first line of stdout.
 * Run: node bench/upstream.ts [BIG_MIB]
 */
import { Buffer } from 'node:buffer';
import { readFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
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
const completion = Buffer.from(
  JSON.stringify({
    id: 'chatcmpl-bench',
    object: 'chat.completion',
    created: 1765000000,
    model: 'gpt-4o-mini',
    choices: [{
      index: 0,
      message: { role: 'assistant', content: 'Hello! How can I help you today?' },
      finish_reason: 'stop',
    }],
    usage: { prompt_tokens: 9, completion_tokens: 9, total_tokens: 18 },
  }) + '\n',
);

function _chunk(i: number): string {
  return `data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","choices":[{"index":0,` +
    `"delta":{"content":"token ${i}"}}]}\n\n`;
}

function _chat(body: string, res: ServerResponse): void {
  const sse = /"model"\s*:\s*"sse-(\d+)-(\d+)"/.exec(body);
  if (sse === null) {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': completion.length });
    res.end(completion);
    return;
  }
  const [n, ms] = [Number(sse[1]), Number(sse[2])];
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  let i = 0;
  const next = () => {
    if (res.destroyed) return;
    if (i === n) return void res.end('data: [DONE]\n\n');
    res.write(_chunk(i++));
    setTimeout(next, ms);
  };
  next();
}

const server = createServer({
  key: readFileSync(path.join(tls, 'server.key')),
  cert: readFileSync(path.join(tls, 'server.pem')),
}, (req, res) => {
  if (req.method === 'POST' && req.url === '/v1/chat/completions') {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => (body += d));
    req.on('end', () => _chat(body, res));
    return;
  }
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
