/**
 * `exec` through serve makes one round trip (issue 17): it posts the request on the first
 * connection, and it never sends it twice. A fake serve on a unix socket in this process records
 * every connection and request and answers as serve would, cuts the connection once it has read
 * the request, or answers like something that is not a serve.
 */
import * as fs from 'node:fs';
import { createServer, type Server } from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run, type RunResult } from '../helpers/cli.ts';

type Mode = 'serve' | 'cut' | 'other' | 'silent';

interface Fake {
  socket: string;
  connections: number;
  requests: string[];
  close(): Promise<void>;
}

let dir: string;
const fakes: Fake[] = [];

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tp-onetrip-'));
});
afterAll(async () => {
  await Promise.all(fakes.map((f) => f.close()));
  fs.rmSync(dir, { recursive: true, force: true });
});

async function _fake(mode: Mode, socket: string): Promise<Fake> {
  const fake: Fake = { socket, connections: 0, requests: [], close: () => Promise.resolve() };
  const server: Server = createServer((req, res) => {
    fake.requests.push(`${req.method} ${req.url}`);
    req.resume();
    req.on('end', () => {
      if (mode === 'silent') {
        // Reads the request and never answers (a wedged serve, or not a serve at all).
        return;
      } else if (mode === 'cut') {
        // The whole request was read: serve may have acted on it.
        req.socket.destroy();
      } else if (mode === 'other') {
        res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not here');
      } else if (req.url === '/v1/health') {
        res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({
          status: 'ok',
          version: '0.0.0',
          expires_at: '2099-01-01T00:00:00Z',
          tcp_url: null,
        }));
      } else {
        res.writeHead(200, {
          'Content-Type': 'text/plain',
          'Trust-Protocol-Audit-Seq': '7',
          Trailer: 'Trust-Protocol-Error',
        });
        res.end('hello from the fake serve');
      }
    });
  });
  server.on('connection', () => fake.connections++);
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  fake.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  fakes.push(fake);
  return fake;
}

/** A home holding only the fake's socket (no vault: only a serve can carry out the request). */
async function _home(mode: Mode): Promise<{ home: string; fake: Fake }> {
  const home = fs.mkdtempSync(path.join(dir, 'home-'));
  return { home, fake: await _fake(mode, path.join(home, 'serve.sock')) };
}

function _exec(home: string, args: string[], token = 'tp_agent_fake_token'): Promise<RunResult> {
  const template = path.join(dir, 'template.json');
  fs.writeFileSync(
    template,
    JSON.stringify({
      credential: 'api',
      method: 'GET',
      url: 'https://api.allowed.test/x',
      headers: { Authorization: 'Bearer {{CREDENTIAL}}' },
    }),
  );
  const password = path.join(dir, 'password');
  fs.writeFileSync(password, 'not the password\n');
  return run(['--home', home, 'exec', '--template', template, ...args], {
    env: { TRUST_PROTOCOL_TOKEN: token },
    // Well past the 31 s a silent peer is waited for (--timeout 1 plus the 30 s margin).
    timeoutMs: 70_000,
  });
}

describe.concurrent('exec through serve: one round trip, never two sends', () => {
  it('a token that cannot be sent: the request is not posted; exit 4 where a serve answers', async () => {
    const { home, fake } = await _home('serve');
    const r = await _exec(home, [], 'tp bad token');
    expect(r.code, r.stderr).toBe(4);
    expect(r.stderr).toContain('the agent token is not valid');
    expect(fake.requests).toEqual(['GET /v1/health']);
  });

  it("one connection, one request (POST /v1/proxy): the home's socket and --server", async () => {
    const inHome = await _home('serve');
    const named = await _home('serve');
    const away = path.join(dir, 'no-home');
    const [a, b] = await Promise.all([
      _exec(inHome.home, []),
      _exec(away, ['--server', `unix:${named.fake.socket}`]),
    ]);
    for (const [r, fake] of [[a, inHome.fake], [b, named.fake]] as const) {
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toBe('hello from the fake serve');
      expect(r.stderr).toBe('');
      expect(fake.requests).toEqual(['POST /v1/proxy']);
      expect(fake.connections).toBe(1);
    }
  });

  it('the connection cut after the request was read: an error, not a second send nor unsealing here', async () => {
    const inHome = await _home('cut');
    const named = await _home('cut');
    const away = path.join(dir, 'no-home');
    const password = ['--password-file', path.join(dir, 'password')];
    const [a, b] = await Promise.all([
      _exec(inHome.home, password),
      _exec(away, ['--server', `unix:${named.fake.socket}`, ...password]),
    ]);
    for (const [r, fake] of [[a, inHome.fake], [b, named.fake]] as const) {
      expect(r.code, r.stderr).toBe(7);
      expect(r.stderr).toContain('the connection to serve');
      expect(r.stderr).toContain('not sent again');
      expect(r.stderr).not.toContain('unsealing here');
      expect(fake.requests).toEqual(['POST /v1/proxy']);
      expect(fake.connections).toBe(1);
    }
  });

  it(
    'a peer that reads the request and never answers: exit 7 after --timeout and a margin, not a hang',
    async () => {
      const { home, fake } = await _home('silent');
      const r = await _exec(home, [
        '--timeout',
        '1',
        '--password-file',
        path.join(dir, 'password'),
      ]);
      expect(r.code, r.stderr).toBe(7);
      expect(r.stderr).toContain('not sent again');
      expect(r.stderr).not.toContain('unsealing here');
      expect(fake.requests).toEqual(['POST /v1/proxy']);
    },
    90_000,
  );

  it("an answer that is not a serve's: exec unseals itself (a note names --server), after one request", async () => {
    const inHome = await _home('other');
    const named = await _home('other');
    const away = path.join(dir, 'no-home');
    const [a, b] = await Promise.all([
      _exec(inHome.home, []),
      _exec(away, ['--server', `unix:${named.fake.socket}`]),
    ]);
    // Unsealing here: no vault in either home (exit 3).
    expect(a.code, a.stderr).toBe(3);
    expect(a.stderr).not.toContain('note:');
    expect(b.code, b.stderr).toBe(3);
    expect(b.stderr).toContain(
      `note: no serve answers at unix:${named.fake.socket}; unsealing here`,
    );
    for (const fake of [inHome.fake, named.fake]) {
      expect(fake.requests.length).toBe(1);
      expect(fake.connections).toBe(1);
    }
  });
});
