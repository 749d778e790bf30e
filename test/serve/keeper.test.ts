/**
 * serve's key-holding child (issue #14): the process that parses agent HTTP (the front) never
 * holds a credential value, the keeper does; each dies with the other. The memory checks read
 * /proc/PID/mem of both processes (a same-user or root reader may; Linux only), and the keeper's
 * positive result shows that the scan finds a value where there is one.
 */
import { Buffer } from 'node:buffer';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { Agent, type IncomingMessage, request, type ServerResponse } from 'node:http';
import { connect, type Socket } from 'node:net';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { base64Core, expectNoCanary, newCanary } from '../helpers/canary.ts';
import {
  addCredential,
  baseEnv,
  command,
  newAgent,
  newHome,
  PASSWORD,
  RUNTIME,
  type TestHome,
} from '../helpers/cli.ts';
import { type Listener, startHttpsListener } from '../helpers/listeners.ts';
import { http, type Served, startServe, upstreamArgs } from '../helpers/serve.ts';

const CANARY = newCanary();
const PROC = fs.existsSync('/proc/self/maps');

/** The byte strings that would betray CANARY in a process's memory. */
function _needles(value: string): Array<{ name: string; bytes: Buffer }> {
  const bytes = Buffer.from(value, 'utf8');
  return [
    { name: 'raw', bytes },
    // V8 keeps some strings as two bytes a character.
    { name: 'UTF-16', bytes: Buffer.from(value, 'utf16le') },
    ...[0, 1, 2].map((a) => ({
      name: `base64 at alignment ${a}`,
      bytes: Buffer.from(base64Core(bytes, a), 'latin1'),
    })),
  ];
}

const PAGE = 4096;

/**
 * The names of the needles found in `pid`'s memory. Every readable mapping is read, but only its
 * pages that are resident or swapped out (/proc/PID/pagemap: a runtime reserves far more address
 * space than it touches), and not read-only file mappings (the program and its libraries as on
 * disk, which hold no value).
 */
function _scan(pid: number, needles: Array<{ name: string; bytes: Buffer }>): string[] {
  const found = new Set<string>();
  const overlap = Math.max(...needles.map((n) => n.bytes.length));
  const mem = fs.openSync(`/proc/${pid}/mem`, 'r');
  const pagemap = fs.openSync(`/proc/${pid}/pagemap`, 'r');
  let scanned = 0;
  const search = (from: number, to: number) => {
    const chunk = Buffer.alloc(Math.min(4 << 20, to - from) + overlap);
    for (let at = from; at < to; at += chunk.length - overlap) {
      let n: number;
      try {
        n = fs.readSync(mem, chunk, 0, Math.min(chunk.length, to - at), at);
      } catch {
        return;
      }
      scanned += n;
      const view = chunk.subarray(0, n);
      for (const needle of needles) if (view.includes(needle.bytes)) found.add(needle.name);
      if (n < chunk.length) return;
    }
  };
  try {
    for (const line of fs.readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n')) {
      const m = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \S+\s*(.*)$/.exec(line);
      if (m === null) continue;
      const [, from, to, perms, file] = m as unknown as [string, string, string, string, string];
      if (perms[0] !== 'r' || ['[vvar]', '[vsyscall]', '[vvar_vclock]'].includes(file)) continue;
      if (file.startsWith('/') && perms[1] !== 'w') continue;
      const start = parseInt(from, 16);
      const pages = (parseInt(to, 16) - start) / PAGE;
      const entries = Buffer.alloc(pages * 8);
      fs.readSync(pagemap, entries, 0, entries.length, (start / PAGE) * 8);
      // Runs of pages that hold something (bit 63: present, bit 62: swapped).
      let run = -1;
      for (let i = 0; i <= pages; i++) {
        const used = i < pages && (entries.readUInt32LE(i * 8 + 4) & 0xc0000000) !== 0;
        if (used && run < 0) run = i;
        if (!used && run >= 0) {
          search(start + run * PAGE, start + i * PAGE);
          run = -1;
        }
      }
    }
  } finally {
    fs.closeSync(mem);
    fs.closeSync(pagemap);
  }
  // A scan that read nothing proves nothing.
  expect(scanned).toBeGreaterThan(1 << 20);
  return [...found];
}

/** Alive and not a zombie (a killed front's orphan is reaped by whoever adopts it). */
function _alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

async function _until(what: string, ok: () => boolean, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function _keeperPid(s: Served): number {
  const pid = (s.info as { keeper_pid?: number }).keeper_pid;
  expect(pid, 'serve --json names its keeper_pid').toBeTypeOf('number');
  return pid as number;
}

function _audit(t: TestHome): Array<{ event: string; data: Record<string, unknown> }> {
  return fs.readFileSync(path.join(t.home, 'audit', 'audit.log'), 'utf8').trim().split('\n')
    .map((l) => JSON.parse(l));
}

let t: TestHome;
let upstream: Listener;
let agent: { id: string; token: string };
/** Requests to /hang get no answer until the test ends. */
const hanging: ServerResponse[] = [];

function _upstream(req: IncomingMessage, res: ServerResponse): void {
  if (req.url === '/hang') {
    hanging.push(res);
    return;
  }
  // Echoes the request's headers: the value comes back, for the keeper to redact.
  res.setHeader('Content-Type', 'application/json');
  res.end(JSON.stringify({ headers: req.headers }));
}

function _proxy(s: Served, urlPath = '/echo') {
  return http(s, '/v1/proxy', {
    headers: { Authorization: `Bearer ${agent.token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({
      credential: 'k',
      url: `https://api.allowed.test${urlPath}`,
      headers: { Authorization: 'Bearer {{CREDENTIAL}}' },
    }),
  });
}

beforeAll(async () => {
  t = await newHome();
  upstream = await startHttpsListener(_upstream);
  const added = await addCredential(t, 'k', CANARY, ['--allowed-domains', 'api.allowed.test']);
  if (added.code !== 0) throw new Error(`credential add failed: ${added.stderr}`);
  agent = await newAgent(t, { name: 'worker', grants: ['k'] });
});
afterAll(async () => {
  for (const res of hanging) res.destroy();
  await upstream?.close();
});

describe('the front never holds a credential value; the keeper does', () => {
  it.skipIf(!PROC)(
    'after a request used the value: absent from the front, present in the keeper',
    async () => {
      const s = await startServe(t, upstreamArgs(t, upstream.port));
      try {
        const r = await _proxy(s);
        expect(r.status, r.body.toString()).toBe(200);
        // The value was sent, and came back redacted.
        const sent = upstream.requests.at(-1)?.headers.authorization;
        expect(sent).toBe(`Bearer ${CANARY}`);
        expectNoCanary(r.body, CANARY, 'the response');
        // Nor the master password (the keeper read the password file itself).
        const password = _needles(PASSWORD).map((n) => ({ ...n, name: `password ${n.name}` }));
        const front = _scan(s.proc.pid as number, [..._needles(CANARY), ...password]);
        expect(front, "found in the front's memory").toEqual([]);
        const keeper = _keeperPid(s);
        expect(keeper).not.toBe(s.proc.pid);
        expect(_scan(keeper, _needles(CANARY)), "found in the keeper's memory").toContain('raw');
      } finally {
        await s.stop();
      }
    },
  );
});

describe('each dies with the other', () => {
  it.skipIf(!PROC)(
    'SIGKILL to the front: the keeper exits by itself and records serve.stop',
    async () => {
      const s = await startServe(t, upstreamArgs(t, upstream.port));
      const keeper = _keeperPid(s);
      expect((await _proxy(s)).status).toBe(200);
      expect(_alive(keeper)).toBe(true);
      process.kill(s.proc.pid as number, 'SIGKILL');
      await _until('the keeper exited', () => !_alive(keeper));
      const stop = _audit(t).find((l) => l.event === 'serve.stop' && l.data.keeper_pid === keeper);
      expect(stop?.data).toMatchObject({ reason: 'front', pid: s.proc.pid });
      await s.exited;
    },
  );

  it.skipIf(!PROC)(
    'SIGKILL to the keeper: a request in flight gets 503, serve stops listening and exits 3',
    async () => {
      const s = await startServe(t, upstreamArgs(t, upstream.port));
      const keeper = _keeperPid(s);
      const before = upstream.requests.length;
      const inFlight = _proxy(s, '/hang');
      await _until('the upstream holds the request', () => upstream.requests.length > before);
      process.kill(keeper, 'SIGKILL');
      const r = await inFlight;
      expect(r.status, r.body.toString()).toBe(503);
      expect(JSON.parse(r.body.toString()).error.code).toBe('keeper_gone');
      const e = await s.exited;
      expect(e.code, e.stderr).toBe(3);
      expect(e.stderr).toMatch(/keeper/);
      expectNoCanary(e.stderr + e.stdout, CANARY, "serve's output");
      await expect(http(s, '/v1/health')).rejects.toThrow();
    },
  );
});

describe("the keeper's runtime flags", () => {
  it.skipIf(!PROC)(
    "are the front's profiling and heap flags, never an inspector or NODE_OPTIONS",
    async () => {
      const profiles = path.join(t.dir, `profiles-${Date.now()}`);
      const s = await startServe(t, upstreamArgs(t, upstream.port), {
        nodeFlags: [
          '--max-old-space-size=384',
          '--inspect=127.0.0.1:0',
          '--cpu-prof',
          '--cpu-prof-dir',
          profiles,
        ],
        env: { NODE_OPTIONS: '--max-semi-space-size=3' },
      });
      try {
        const argv = (pid: number) => fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
        const keeper = _keeperPid(s);
        expect(argv(keeper).join(' ')).not.toMatch(/semi-space|inspect/);
        expect(fs.readFileSync(`/proc/${keeper}/environ`, 'utf8')).not.toContain('NODE_OPTIONS');
        // From the sources on Node, the front's flags pass on (the binary's are in its blob,
        // and Deno's keeper gets no V8 flags).
        if (RUNTIME === 'node') {
          expect(argv(s.proc.pid as number)).toContain('--inspect=127.0.0.1:0');
          const flags = argv(keeper);
          expect(flags).toContain('--max-old-space-size=384');
          const at = flags.indexOf('--cpu-prof-dir');
          expect(flags.slice(at - 1, at + 2)).toEqual(['--cpu-prof', '--cpu-prof-dir', profiles]);
        }
        expect((await _proxy(s)).status).toBe(200);
      } finally {
        s.proc.kill('SIGTERM');
        await s.exited;
      }
      // Both processes profiled: what the gateway bench's monitoring share adds up.
      if (RUNTIME === 'node') expect(fs.readdirSync(profiles)).toHaveLength(2);
    },
  );
});

describe('the password typed at the front reaches the keeper', () => {
  const pty = path.resolve(new URL('../helpers/terminal.py', import.meta.url).pathname);

  it('at a terminal: the front prompts, the keeper unseals with it, nothing is echoed', async () => {
    const { file, argv } = command(['--home', t.home, 'serve', '--ttl', '3s']);
    const script = [['Master password:', `${PASSWORD}\r`]];
    const r = await new Promise<{ code: number; transcript: string }>((resolve, reject) => {
      const child = spawn('python3', [pty, JSON.stringify(script), file, ...argv], {
        env: baseEnv(),
      });
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      child.on('error', reject);
      child.on('close', () => resolve(JSON.parse(out)));
    });
    expect(r.code, r.transcript).toBe(0);
    expect(r.transcript).toMatch(/serve listening on unix:/);
    expect(r.transcript).toMatch(/serve stopped \(its time to live ran out\)/);
    expect(r.transcript).not.toContain(PASSWORD);
  });
});

describe('what the keeper learns reaches the front', () => {
  it('a connection whose token the keeper accepted is not cut to make room for strangers', async () => {
    const s = await startServe(t, upstreamArgs(t, upstream.port));
    const keepAlive = new Agent({ keepAlive: true, maxSockets: 1 });
    const strangers: Socket[] = [];
    const proxy = () =>
      new Promise<{ status: number; reused: boolean }>((resolve, reject) => {
        const body = JSON.stringify({
          credential: 'k',
          url: 'https://api.allowed.test/echo',
          headers: { Authorization: 'Bearer {{CREDENTIAL}}' },
        });
        const req = request({
          host: '127.0.0.1',
          port: s.port as number,
          method: 'POST',
          path: '/v1/proxy',
          agent: keepAlive,
          headers: {
            Authorization: `Bearer ${agent.token}`,
            'Content-Type': 'application/json',
            'Content-Length': String(Buffer.byteLength(body)),
          },
        }, (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode ?? 0, reused: req.reusedSocket }));
        });
        req.on('error', reject);
        req.end(body);
      });
    try {
      expect(await proxy()).toEqual({ status: 200, reused: false });
      // 64 strangers (LIMITS.maxStrangers) that send nothing, older than the grace period, then
      // one more: room is made by cutting the oldest idle connection without a proven token.
      for (let i = 0; i < 64; i++) strangers.push(connect(s.port as number, '127.0.0.1'));
      await new Promise((r) => setTimeout(r, 1_500));
      strangers.push(connect(s.port as number, '127.0.0.1'));
      await new Promise((r) => setTimeout(r, 300));
      // The agent's kept-alive connection is still there: the second request goes over it.
      expect(await proxy()).toEqual({ status: 200, reused: true });
    } finally {
      for (const c of strangers) c.destroy();
      keepAlive.destroy();
      await s.stop();
    }
  });
});
