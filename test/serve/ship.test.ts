/**
 * `serve --ship URL`: requests through serve succeed while the receiver refuses connections, and
 * once it listens every entry written meanwhile arrives, once each, in order.
 */
import { Buffer } from 'node:buffer';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { afterEach, describe, expect, it } from 'vitest';
import { addCredential, newAgent, newHome } from '../helpers/cli.ts';
import { bearer } from '../helpers/canary.ts';
import { startHttpsListener, TEST_CA } from '../helpers/listeners.ts';
import { http, startServe, upstreamArgs } from '../helpers/serve.ts';
import { jsonlReceived, logLines } from '../helpers/ship.ts';

const cleanup: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function waitFor(what: string, cond: () => boolean, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('serve --ship', () => {
  it('requests succeed while the receiver is down; what was written meanwhile arrives once each', async () => {
    const t = await newHome();
    const upstream = await startHttpsListener();
    cleanup.push(() => upstream.close());
    expect(
      (await addCredential(t, 'k', 'sk-value', ['--allowed-domains', 'api.allowed.test'])).code,
    )
      .toBe(0);
    const agent = await newAgent(t, { name: 'worker', grants: ['k'] });
    // A port that refuses connections now and is listened on later.
    const probe = await startHttpsListener();
    const port = probe.port;
    await probe.close();
    const s = await startServe(t, [
      ...upstreamArgs(t, upstream.port),
      '--ship',
      `https://127.0.0.1:${port}/ingest`,
      '--ship-cacert',
      t.file('ship-ca.pem', TEST_CA),
    ]);
    cleanup.push(() => s.stop());
    for (let i = 0; i < 3; i++) {
      const r = await http(s, '/v1/proxy', {
        body: JSON.stringify(bearer('https://api.allowed.test/echo', `m${i}`)),
        headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${agent.token}` },
      });
      expect(r.status).toBe(200);
    }
    await waitFor('a failed delivery', () => s.stderr().includes('trust-protocol: ship:'));

    const bodies: Uint8Array[] = [];
    const receiver = createServer({
      key: readFileSync(new URL('../../fixtures/tls/server.key', import.meta.url)),
      cert: readFileSync(new URL('../../fixtures/tls/server.pem', import.meta.url)),
    }, (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (d: Buffer) => chunks.push(d));
      req.on('end', () => {
        bodies.push(new Uint8Array(Buffer.concat(chunks)));
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(port, '127.0.0.1', r));
    cleanup.push(() => new Promise((r) => receiver.close(r)));
    const received = () => jsonlReceived(bodies);
    await waitFor(
      'the requests shipped',
      () => received().filter((e) => e.entry.includes('"event":"request.allowed"')).length === 3,
    );
    const lines = logLines(t.home);
    const got = received();
    expect(got.map((e) => e.seq)).toEqual(lines.slice(0, got.length).map((_, i) => i + 1));
    expect(got.map((e) => e.entry)).toEqual(lines.slice(0, got.length));
  });
});
