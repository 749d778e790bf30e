/**
 * What every SDK test runs against: a real serve (unix socket and loopback TCP) in a fresh home
 * with one credential `k` (a canary value, for api.allowed.test, with a base URL and an inject
 * rule for the gateway) granted to one agent, and a local HTTPS upstream that echoes the key it
 * received, so a response holds the canary unless serve redacted it.
 * - `/stream`: server-sent events, the key split across two writes; the second write waits
 *   until the test calls `release()`, so a client that got the first event before it had to be
 *   streaming (no timing assumed).
 * - `/cut`: a few bytes, then the connection is cut.
 * - anything else: JSON `{"path", "echo"}`, `echo` being the Authorization header's key.
 */
import { Buffer } from 'node:buffer';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { addCredential, newAgent, newHome, type TestHome } from '../helpers/cli.ts';
import { newCanary } from '../helpers/canary.ts';
import { type Listener, type Recorded, startHttpsListener } from '../helpers/listeners.ts';
import { type Served, startServe, upstreamArgs } from '../helpers/serve.ts';

export interface SdkFixture {
  t: TestHome;
  canary: string;
  agent: { id: string; token: string };
  upstream: Listener;
  s: Served;
  /** `http://127.0.0.1:PORT` */
  tcp: string;
  /** Lets the upstream send the rest of `/stream`. */
  release(): void;
  /** Whether the upstream received the canary in some request's Authorization header. */
  upstreamGotCanary(): boolean;
  stop(): Promise<void>;
}

export async function startSdkFixture(): Promise<SdkFixture> {
  const canary = newCanary();
  const t = await newHome();
  let release = () => {};
  const handler = (req: IncomingMessage, res: ServerResponse, rec: Recorded) => {
    const key = String(req.headers.authorization ?? '').replace(/^Bearer /, '');
    if (rec.path === '/cut') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('partial ');
      setTimeout(() => res.socket?.destroy(), 50);
      return;
    }
    if (rec.path === '/stream') {
      const event = `data: {"echo":"${key}"}\n\n`;
      const cut = 'data: {"echo":"'.length + Math.floor(key.length / 2);
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(event.slice(0, cut));
      new Promise<void>((resolve) => (release = resolve)).then(() => res.end(event.slice(cut)));
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ path: rec.path, echo: key }));
  };
  const upstream = await startHttpsListener(handler);
  const added = await addCredential(t, 'k', canary, [
    '--allowed-domains',
    'api.allowed.test',
    '--base-url',
    'https://api.allowed.test',
    '--inject',
    'Authorization: Bearer {{CREDENTIAL}}',
  ]);
  if (added.code !== 0) throw new Error(`credential add failed: ${added.stderr}`);
  const agent = await newAgent(t, { grants: ['k'] });
  const s = await startServe(t, upstreamArgs(t, upstream.port));
  return {
    t,
    canary,
    agent,
    upstream,
    s,
    tcp: s.url,
    release: () => release(),
    upstreamGotCanary: () =>
      upstream.requests.some((r) => String(r.headers.authorization) === `Bearer ${canary}`),
    async stop() {
      release();
      await s.stop();
      await upstream.close();
    },
  };
}

/** Bytes as text, for the canary checks. */
export function text(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('utf8');
}
