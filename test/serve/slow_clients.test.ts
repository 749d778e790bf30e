/**
 * Clients without a valid agent token that hold connections open by trickling bytes (headers
 * never finished, or a body sent a byte at a time) must not starve the agents that hold tokens,
 * nor `/v1/health`: serve makes room for a new connection by cutting the oldest token-less one
 * (issue #14). Loopback only, every loop bounded.
 */
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Listener } from '../helpers/listeners.ts';
import { http, type Served, servedCredential } from '../helpers/serve.ts';

const CANARY = 'sk-slow-clients-canary-0123456789';
const ATTACKERS = 200;
const PROBES = 15;

let upstream: Listener;
let s: Served;
let agent: { id: string; token: string };
let stop = async () => {};

beforeAll(async () => {
  ({ upstream, s, agent, stop } = await servedCredential(CANARY));
});
afterAll(async () => {
  await stop();
});

/**
 * One trickling client, reconnecting whenever serve cuts it, until `until` is aborted: each
 * third one drips header lines, the others a body, without a token or with a made-up one.
 */
function _trickler(port: number, kind: number, until: AbortSignal, opened: { n: number }) {
  const host = `Host: 127.0.0.1:${port}\r\n`;
  const start = [
    `GET /v1/health HTTP/1.1\r\n${host}`,
    `POST /v1/proxy HTTP/1.1\r\n${host}Content-Length: 100000\r\n\r\n{`,
    `POST /v1/proxy HTTP/1.1\r\n${host}Authorization: Bearer made-up\r\n` +
    'Content-Length: 100000\r\n\r\n{',
  ][kind % 3] as string;
  const drip = kind % 3 === 0 ? 'X-Slow: 1\r\n' : ' ';
  let socket: Socket | null = null;
  let timer: ReturnType<typeof setInterval> | undefined;
  const open = () => {
    // Bounded: a serve that turns connections away at once must not make this spin forever.
    if (until.aborted || opened.n >= 5_000) return;
    opened.n += 1;
    const c = connect(port, '127.0.0.1');
    socket = c;
    c.on('error', () => {});
    c.on('connect', () => c.write(start));
    c.on('close', () => {
      clearInterval(timer);
      setTimeout(open, 0);
    });
    clearInterval(timer);
    timer = setInterval(() => c.writable && c.write(drip), 300);
  };
  open();
  until.addEventListener('abort', () => {
    clearInterval(timer);
    socket?.destroy();
  });
}

describe('slow clients without a token', () => {
  it(`${ATTACKERS} trickling connections: an agent's requests and /v1/health are all answered`, async () => {
    const port = s.port as number;
    const attack = new AbortController();
    const opened = { n: 0 };
    for (let i = 0; i < ATTACKERS; i++) _trickler(port, i, attack.signal, opened);
    // Let them take every slot serve has, and start dripping.
    await new Promise((r) => setTimeout(r, 1_500));
    const outcome = { proxy: 0, health: 0, errors: [] as string[] };
    try {
      for (let i = 0; i < PROBES; i++) {
        try {
          const r = await http(s, '/v1/proxy', {
            body: JSON.stringify({
              credential: 'k',
              url: 'https://api.allowed.test/x',
              headers: { Authorization: 'Bearer {{CREDENTIAL}}' },
            }),
            headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${agent.token}` },
          });
          if (r.status === 200) outcome.proxy += 1;
          else outcome.errors.push(`proxy ${r.status}`);
        } catch (e) {
          outcome.errors.push(`proxy ${(e as Error).message}`);
        }
        try {
          const r = await http(s, '/v1/health');
          if (r.status === 200) outcome.health += 1;
          else outcome.errors.push(`health ${r.status}`);
        } catch (e) {
          outcome.errors.push(`health ${(e as Error).message}`);
        }
      }
    } finally {
      attack.abort();
    }
    expect(outcome).toEqual({ proxy: PROBES, health: PROBES, errors: [] });
    // serve cut some of them to make room (each reconnected).
    expect(opened.n).toBeGreaterThan(ATTACKERS);
    // The agent's requests reached the upstream; none of the tricklers' did.
    expect(upstream.requests.length).toBe(PROBES);
  });
});
