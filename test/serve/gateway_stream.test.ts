/**
 * A slow server-sent-event stream through `/v1/gateway` reaches the client chunk by chunk, as the
 * upstream sends it (issue #17): the upstream holds each next event until the client has seen the
 * previous one, so a gateway that buffered the body (or a frame's worth of it) would never finish.
 * Each event also carries the credential, which must arrive redacted. No timing is asserted; the
 * waits are bounded only so that a buffering gateway fails instead of hanging.
 */
import { Buffer } from 'node:buffer';
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addCredential, newAgent, newHome } from '../helpers/cli.ts';
import { startHttpsListener } from '../helpers/listeners.ts';
import { type Served, startServe, upstreamArgs } from '../helpers/serve.ts';

const CANARY = 'sk-stream-canary-5f0c1e9a7b3d4c2e';
const EVENTS = 5;

let s: Served;
let token = '';
let closeUpstream = async () => {};
/** Resolved by the client when it has seen event i; the upstream waits on it to send event i+1. */
const seen: Array<{ promise: Promise<void>; resolve: () => void }> = [];
/** How many events the upstream had sent when the client saw each event. */
const sentWhenSeen: number[] = [];
let sent = 0;

function _bounded(p: Promise<void>, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`never ${what}: the stream is buffered`)),
      15_000,
    );
    p.then(() => {
      clearTimeout(timer);
      resolve();
    }, reject);
  });
}

beforeAll(async () => {
  for (let i = 0; i < EVENTS; i++) {
    let resolve = () => {};
    const promise = new Promise<void>((r) => (resolve = r));
    seen.push({ promise, resolve });
  }
  const t = await newHome();
  const upstream = await startHttpsListener((req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    const secret = String(req.headers['authorization']).replace(/^Bearer /, '');
    void (async () => {
      for (let i = 0; i < EVENTS; i++) {
        if (i > 0) await _bounded(seen[i - 1]!.promise, `saw event ${i - 1}`).catch(() => {});
        sent = i + 1;
        res.write(`data: {"n":${i},"echo":"${secret}"}\n\n`);
      }
      res.end('data: [DONE]\n\n');
    })();
  });
  closeUpstream = () => upstream.close();
  const added = await addCredential(t, 'k', CANARY, [
    '--allowed-domains',
    'api.allowed.test',
    '--base-url',
    'https://api.allowed.test',
    '--inject',
    'Authorization: Bearer {{CREDENTIAL}}',
  ]);
  if (added.code !== 0) throw new Error(`credential add failed: ${added.stderr}`);
  token = (await newAgent(t, { name: 'streamer', grants: ['k'] })).token;
  s = await startServe(t, upstreamArgs(t, upstream.port));
});
afterAll(async () => {
  await s?.stop();
  await closeUpstream();
});

describe('gateway streaming', () => {
  it("a slow SSE upstream's events arrive one by one, redacted, before the upstream finishes", async () => {
    const body = JSON.stringify({ model: 'm', stream: true, messages: [] });
    const text = await new Promise<string>((resolve, reject) => {
      const req = request({
        host: '127.0.0.1',
        port: s.port as number,
        method: 'POST',
        path: '/v1/gateway/k/v1/chat/completions',
        headers: {
          authorization: `Bearer ${token}`,
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
        },
      }, (res) => {
        let all = '';
        let next = 0;
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          all += d;
          while (next < EVENTS && all.includes(`{"n":${next},`)) {
            sentWhenSeen.push(sent);
            seen[next]!.resolve();
            next++;
          }
        });
        res.on('end', () => resolve(all));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(body);
    });
    // Event i reached the client while the upstream held event i+1 back.
    expect(sentWhenSeen).toEqual(Array.from({ length: EVENTS }, (_, i) => i + 1));
    expect(text).toContain('data: [DONE]');
    expect(text).not.toContain(CANARY);
    expect(text.match(/"n":\d+/g)).toEqual(Array.from({ length: EVENTS }, (_, i) => `"n":${i}`));
  });
});
