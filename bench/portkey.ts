/**
 * The gateway against the peer a user would pick instead (issue 17), run by bench/run.ts or on
 * its own (`node bench/portkey.ts` prints the Markdown section). In one run, against the same
 * local HTTPS upstream (bench/upstream.ts), wrk POSTs a small chat completion through:
 *   - direct: wrk speaks TLS to the upstream itself;
 *   - Portkey: the open-source AI gateway (`@portkey-ai/gateway`, a devDependency), provider
 *     `openai` with `x-portkey-custom-host` pointing at the upstream; nothing is audited;
 *   - the plain node:http proxies of bench/node_proxy.ts, bare and with the durable audit trail
 *     (the latter is "our own limit": what one Node process does with the audit alone);
 *   - serve: `trust-protocol serve`'s `/v1/gateway/bench_key/...` (front + keeper), where every
 *     request is authorised, injected, redacted and durably audited.
 * Each route runs at 1 connection and at 32, ROUNDS rounds interleaved. Then streaming: time to
 * the first byte of a server-sent-event stream (direct, Portkey, serve), and whether the events
 * of a slow stream arrive as the upstream sends them. Goals: serve >= 1.5x Portkey's requests/s
 * at 32 connections, p50 at 1 connection and p99 at 32 no worse than Portkey's, peak RSS (front +
 * keeper) no more than Portkey's; >= 0.7x the audited node proxy's requests/s at 32; first byte
 * within 1 ms of direct. serve runs as dist/trust-protocol when built, else from the sources.
 * TP_BENCH_GW_SECONDS and TP_BENCH_GW_ROUNDS shorten a run (defaults 10 and 3). With
 * TP_BENCH_GW_BASE set to another checkout (say `git worktree add` of the commit before a
 * change, node_modules linked), serve from there runs too, on a copy of the same home, in the same
 * interleaved rounds: before and after a change compared under the same load.
 */
import { Buffer } from 'node:buffer';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import * as os from 'node:os';
import * as path from 'node:path';
import process from 'node:process';
import { parseWrk, type WrkResult } from './gateway.ts';
import {
  benchHome,
  CA,
  firstLine,
  freePort,
  NODE,
  peakRssMb,
  serveArgs,
  startNodeProxies,
  startUpstream,
  stop,
} from './setup.ts';

const PORTKEY = 'node_modules/@portkey-ai/gateway/build/start-server.js';
const SECONDS = Number(process.env.TP_BENCH_GW_SECONDS ?? 10);
const ROUNDS = Number(process.env.TP_BENCH_GW_ROUNDS ?? 3);
const LOADS = { c1: { threads: 1, connections: 1 }, c32: { threads: 2, connections: 32 } };
type Load = keyof typeof LOADS;
const BASE = process.env.TP_BENCH_GW_BASE;
const ALL_ROUTES = ['direct', 'portkey', 'node', 'nodeAudited', 'serve', 'serveBase'] as const;
type Route = typeof ALL_ROUTES[number];
const ROUTES = ALL_ROUTES.filter((r) => r !== 'serveBase' || BASE !== undefined);
const ROUTE_NAMES: Record<Route, string> = {
  direct: 'direct (wrk → upstream, TLS)',
  portkey: 'Portkey gateway',
  node: 'bare node:http proxy',
  nodeAudited: 'node:http proxy + durable audit',
  serve: 'serve `/v1/gateway` (front + keeper)',
  serveBase: `serve from ${BASE} (TP_BENCH_GW_BASE)`,
};
const CHAT = JSON.stringify({
  model: 'gpt-4o-mini',
  messages: [{ role: 'user', content: 'Say hello.' }],
});
/** Streaming: events of the slow stream and the upstream's gap between them. */
const SLOW = { events: 10, gapMs: 50 };
const TTFB_RUNS = 200;

export interface PortkeyBench {
  wrk: Record<Load, Record<Route, WrkResult[]>>;
  rssMb: {
    portkey: number;
    front: number;
    keeper: number;
    base?: { front: number; keeper: number };
  };
  audited: number;
  answered: number;
  serveFrom: string;
  portkeyVersion: string;
  stream: Record<'direct' | 'serve', StreamResult> & { portkey: StreamResult | string };
  commands: string[];
}

export interface StreamResult {
  /** Median and p90 time to the first byte of the body of a one-event stream, ms. */
  ttfbMs: number;
  ttfbP90Ms: number;
  /**
   * Of the slow stream: events that arrived apart, at least half the upstream's gap after the
   * previous one (the first counts). A buffered stream arrives in one piece: 1.
   */
  onTime: number;
  /** The largest lag of an event behind the upstream's schedule (first event = 0), ms. */
  maxLagMs: number;
}

function _median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
}

function _quantile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))] as number;
}

function _wrk(
  load: Load,
  url: string,
  headers: string[],
  script: string,
  env: Record<string, string>,
): WrkResult {
  const { threads, connections } = LOADS[load];
  // A 10 s timeout, not wrk's 2 s: on a loaded machine a slow answer is a latency, not an error.
  const args = [
    `-t${threads}`,
    `-c${connections}`,
    `-d${SECONDS}s`,
    '--timeout',
    '10s',
    '--latency',
    '-s',
    script,
  ];
  const r = spawnSync('wrk', [...args, ...headers.flatMap((h) => ['-H', h]), url], {
    env,
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`wrk failed (${r.status}): ${r.stderr}`);
  const result = parseWrk(r.stdout);
  if (result.errors > 0 || result.non2xx > 0) {
    throw new Error(`wrk ${url}: ${result.errors} socket errors, ${result.non2xx} non-2xx`);
  }
  return result;
}

function _countCompleted(log: string): number {
  let n = 0;
  for (const line of fs.readFileSync(log, 'utf8').split('\n')) {
    if (line.includes('"event":"request.completed"')) n++;
  }
  return n;
}

interface Target {
  url: string;
  headers: Record<string, string>;
}

/** One POST; resolves with the time to the first body byte and each event's arrival, in ms. */
function _stream(target: Target, model: string, agent: HttpAgent | HttpsAgent) {
  const stream = model.startsWith('sse-');
  const body = JSON.stringify({ model, stream, messages: [{ role: 'user', content: 'hi' }] });
  const url = new URL(target.url);
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise<{ firstMs: number; events: number[] }>((resolve, reject) => {
    const start = performance.now();
    let firstMs = -1;
    const events: number[] = [];
    let text = '';
    const req = send(url, {
      method: 'POST',
      agent,
      ca: fs.readFileSync(CA),
      headers: {
        ...target.headers,
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
      },
    }, (res) => {
      if (res.statusCode !== 200) reject(new Error(`${target.url}: status ${res.statusCode}`));
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        const now = performance.now() - start;
        if (firstMs < 0) firstMs = now;
        text += d;
        while (text.includes(`"token ${events.length}"`)) events.push(now);
      });
      res.on('end', () => resolve({ firstMs, events }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function _streaming(target: Target): Promise<StreamResult> {
  const agent = target.url.startsWith('https:')
    ? new HttpsAgent({ keepAlive: true, maxSockets: 1, ca: fs.readFileSync(CA) })
    : new HttpAgent({ keepAlive: true, maxSockets: 1 });
  try {
    for (let i = 0; i < 20; i++) await _stream(target, 'sse-1-0', agent);
    const firsts: number[] = [];
    for (let i = 0; i < TTFB_RUNS; i++) {
      firsts.push((await _stream(target, 'sse-1-0', agent)).firstMs);
    }
    const slow = await _stream(target, `sse-${SLOW.events}-${SLOW.gapMs}`, agent);
    const lags = slow.events.map((at, i) => at - slow.events[0]! - i * SLOW.gapMs);
    return {
      ttfbMs: _median(firsts),
      ttfbP90Ms: _quantile(firsts, 0.9),
      onTime: slow.events.filter((at, i) => i === 0 || at - slow.events[i - 1]! >= SLOW.gapMs / 2)
        .length,
      maxLagMs: Math.max(...lags),
    };
  } finally {
    agent.destroy();
  }
}

async function _waitPortkey(target: Target): Promise<void> {
  const agent = new HttpAgent();
  for (let i = 0; i < 200; i++) {
    try {
      await _stream(target, 'gpt-4o-mini', agent);
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  throw new Error('Portkey did not answer');
}

export async function benchPortkey(
  dir: string,
  env: Record<string, string>,
  step: (s: string) => void,
): Promise<PortkeyBench> {
  const work = fs.mkdtempSync(path.join(dir, 'portkey-'));
  const home = path.join(work, 'home');
  const password = path.join(work, 'password');
  fs.writeFileSync(password, 'a master password of ordinary length\n', { mode: 0o600 });
  const script = path.join(work, 'post.lua');
  fs.writeFileSync(
    script,
    `wrk.method = "POST"\nwrk.body = '${CHAT}'\nwrk.headers["Content-Type"] = "application/json"\n`,
  );
  const cli = fs.existsSync('dist/trust-protocol')
    ? ['dist/trust-protocol']
    : [NODE, 'cmd/main.ts'];
  const children: ChildProcess[] = [];
  try {
    const upstream = await startUpstream(env, children);

    step('portkey: setting up the vault, Portkey, the node proxies and serve');
    const agent = benchHome(cli, home, password, env);

    const portkeyPort = await freePort();
    const portkey = spawn(NODE, [PORTKEY, `--port=${portkeyPort}`, '--headless'], {
      stdio: ['ignore', 'ignore', 'inherit'],
      env: { ...env, NODE_EXTRA_CA_CERTS: CA },
    });
    children.push(portkey);
    const portkeyVersion = (JSON.parse(
      fs.readFileSync('node_modules/@portkey-ai/gateway/package.json', 'utf8'),
    ) as { version: string }).version;

    const proxies = await startNodeProxies(work, upstream, env, children);

    const serveArgv = serveArgs(home, password, upstream);
    const [file, ...prefix] = cli as [string, ...string[]];
    const serve = spawn(file, [...prefix, ...serveArgv], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env,
    });
    children.push(serve);
    const announced = JSON.parse(await firstLine(serve, 'serve')) as {
      listen: string[];
      keeper_pid: number;
    };

    // The same serve from another checkout, on a copy of the home (each serve needs its own).
    let base: { child: ChildProcess; url: string; keeperPid: number; home: string } | null = null;
    if (BASE !== undefined) {
      const baseHome = path.join(work, 'home-base');
      fs.cpSync(home, baseHome, { recursive: true });
      const args = serveArgv.map((a) => (a === home ? baseHome : a));
      const child = spawn(NODE, [path.join(BASE, 'cmd/main.ts'), ...args], {
        stdio: ['ignore', 'pipe', 'inherit'],
        env,
      });
      children.push(child);
      const a = JSON.parse(await firstLine(child, 'serve (base)')) as typeof announced;
      base = { child, url: a.listen[0] as string, keeperPid: a.keeper_pid, home: baseHome };
    }

    const targets: Record<Route, Target> = {
      direct: { url: `https://127.0.0.1:${upstream}/v1/chat/completions`, headers: {} },
      portkey: {
        url: `http://127.0.0.1:${portkeyPort}/v1/chat/completions`,
        headers: {
          'x-portkey-provider': 'openai',
          'x-portkey-custom-host': `https://127.0.0.1:${upstream}/v1`,
          authorization: 'Bearer sk-static-portkey-key',
        },
      },
      node: { url: `${proxies.node}/v1/chat/completions`, headers: {} },
      nodeAudited: { url: `${proxies.nodeAudited}/v1/chat/completions`, headers: {} },
      serve: {
        url: `${announced.listen[0]}/v1/gateway/bench_key/v1/chat/completions`,
        headers: { authorization: `Bearer ${agent.token}` },
      },
      serveBase: {
        url: `${base?.url}/v1/gateway/bench_key/v1/chat/completions`,
        headers: { authorization: `Bearer ${agent.token}` },
      },
    };
    await _waitPortkey(targets.portkey);

    // One streamed request each first (it also checks each route works before the timed runs).
    const stream = {} as PortkeyBench['stream'];
    for (const name of ['direct', 'serve'] as const) {
      step(`portkey: streaming through ${name}`);
      stream[name] = await _streaming(targets[name]);
    }
    step('portkey: streaming through portkey');
    // Portkey 1.15.2 on Node 24 answers every streamed chat completion with a 500 (its log:
    // "TypeError: immutable" appending its headers to the upstream's Response): recorded as is.
    stream.portkey = await _streaming(targets.portkey).catch((e: Error) => e.message);
    // The streamed requests through serve: the one-event warm-ups and timed runs, the slow one.
    let answered = 20 + TTFB_RUNS + 1;
    const wrk = { c1: {}, c32: {} } as PortkeyBench['wrk'];
    for (const load of Object.keys(LOADS) as Load[]) {
      for (const name of ALL_ROUTES) wrk[load][name] = [];
    }
    for (let round = 1; round <= ROUNDS; round++) {
      for (const load of Object.keys(LOADS) as Load[]) {
        for (const name of ROUTES) {
          step(`portkey: wrk ${name} ${load}, round ${round} of ${ROUNDS}`);
          const t = targets[name];
          const headers = Object.entries(t.headers).map(([k, v]) => `${k}: ${v}`);
          const r = _wrk(load, t.url, headers, script, env);
          wrk[load][name].push(r);
          if (name === 'serve') answered += r.requests;
        }
      }
    }
    const rssMb = {
      portkey: peakRssMb(portkey.pid!),
      front: peakRssMb(serve.pid!),
      keeper: peakRssMb(announced.keeper_pid),
      ...(base === null
        ? {}
        : { base: { front: peakRssMb(base.child.pid!), keeper: peakRssMb(base.keeperPid) } }),
    };
    await stop(serve);
    if (base !== null) await stop(base.child);
    const audited = _countCompleted(path.join(home, 'audit', 'audit.log'));
    if (audited < answered) {
      throw new Error(`only ${audited} requests audited for ${answered} answered`);
    }
    const tpCmd = cli.join(' ');
    const flags = (load: Load) =>
      `-t${LOADS[load].threads} -c${
        LOADS[load].connections
      } -d${SECONDS}s --timeout 10s --latency -s $W/post.lua`;
    return {
      wrk,
      rssMb,
      audited,
      answered,
      serveFrom: tpCmd,
      portkeyVersion,
      stream,
      commands: [
        `${NODE} bench/portkey.ts   # this section alone; TP_BENCH_GW_SECONDS, TP_BENCH_GW_ROUNDS`,
        `${NODE} bench/upstream.ts 1   # prints $UPSTREAM`,
        `NODE_EXTRA_CA_CERTS=fixtures/tls/ca.pem ${NODE} ${PORTKEY} --port=$PORTKEY --headless`,
        `${tpCmd} ${
          serveArgv.join(' ').replaceAll(home, '$W/home').replaceAll(password, '$W/password')
            .replace(`:${upstream}`, ':$UPSTREAM').replace(CA, 'fixtures/tls/ca.pem')
        }`,
        `printf '%s' '${fs.readFileSync(script, 'utf8').replaceAll('\n', '\\n')}' > $W/post.lua`,
        `wrk ${
          flags('c32')
        } -H 'x-portkey-provider: openai' -H 'x-portkey-custom-host: https://127.0.0.1:$UPSTREAM/v1' -H 'Authorization: Bearer sk-static-portkey-key' http://127.0.0.1:$PORTKEY/v1/chat/completions`,
        `wrk ${
          flags('c32')
        } -H "Authorization: Bearer $TOKEN" $SERVE/v1/gateway/bench_key/v1/chat/completions`,
        `wrk ${
          flags('c1')
        } ...   # the same at 1 connection, and direct and bench/node_proxy.ts as in the section above`,
      ],
    };
  } finally {
    await Promise.all(children.map(stop));
    fs.rmSync(work, { recursive: true, force: true });
  }
}

function _fmt(r: WrkResult): string {
  return `${Math.round(r.rps)} req/s, p50 ${r.p50Ms.toFixed(2)} ms, p99 ${r.p99Ms.toFixed(2)} ms`;
}

export function portkeyMarkdown(b: PortkeyBench): string {
  const med = (load: Load, route: Route, f: (r: WrkResult) => number) =>
    _median(b.wrk[load][route].map(f));
  const verdict = (ok: boolean, gap: string) => (ok ? 'met' : `**not met** (${gap})`);
  const rps32 = {
    serve: med('c32', 'serve', (r) => r.rps),
    pk: med('c32', 'portkey', (r) => r.rps),
  };
  const audited32 = med('c32', 'nodeAudited', (r) => r.rps);
  const p50c1 = {
    serve: med('c1', 'serve', (r) => r.p50Ms),
    pk: med('c1', 'portkey', (r) => r.p50Ms),
  };
  const p99c32 = {
    serve: med('c32', 'serve', (r) => r.p99Ms),
    pk: med('c32', 'portkey', (r) => r.p99Ms),
  };
  const rss = b.rssMb.front + b.rssMb.keeper;
  const ttfbGap = b.stream.serve.ttfbMs - b.stream.direct.ttfbMs;
  const ratio = rps32.serve / rps32.pk;
  const limit = rps32.serve / audited32;
  const rows = (load: Load) =>
    ROUTES.map((name) => `| ${ROUTE_NAMES[name]} | ${b.wrk[load][name].map(_fmt).join('<br>')} |`);
  const s = b.stream;
  return [
    '## Gateway vs Portkey (issue 17)',
    '',
    `wrk POSTs a small chat completion (${Buffer.byteLength(CHAT)} bytes; a 330-byte answer)` +
    ` through each route to the same local HTTPS upstream (bench/upstream.ts), ${SECONDS} s per` +
    ` run, at 1 connection (1 thread) and 32 (2 threads), ${ROUNDS} rounds interleaved; medians.` +
    ` Portkey is \`@portkey-ai/gateway\` ${b.portkeyVersion} (provider \`openai\`, its custom host` +
    ' set to the upstream; nothing audited). serve checks the agent token, grant, tier, domain' +
    ' and brakes, injects the credential, redacts the answer and audits every request durably' +
    ` (fsynced before the answer is released). serve ran as \`${b.serveFrom}\`. All processes` +
    " share the machine's cores.",
    '',
    '| goal | measured (medians) | verdict |',
    '| --- | --- | --- |',
    `| requests/s at 32 connections >= 1.5x Portkey | ${ratio.toFixed(2)}x (${
      Math.round(rps32.serve)
    } vs ${Math.round(rps32.pk)}) | ${
      verdict(ratio >= 1.5, `${(1.5 * rps32.pk - rps32.serve).toFixed(0)} req/s short`)
    } |`,
    `| p50 at 1 connection <= Portkey's | ${p50c1.serve.toFixed(2)} ms vs ${
      p50c1.pk.toFixed(2)
    } ms | ${verdict(p50c1.serve <= p50c1.pk, `${(p50c1.serve - p50c1.pk).toFixed(2)} ms more`)} |`,
    `| p99 at 32 connections <= Portkey's | ${p99c32.serve.toFixed(2)} ms vs ${
      p99c32.pk.toFixed(2)
    } ms | ${
      verdict(p99c32.serve <= p99c32.pk, `${(p99c32.serve - p99c32.pk).toFixed(2)} ms more`)
    } |`,
    `| peak RSS (front + keeper) <= Portkey's | ${rss.toFixed(0)} MB (${
      b.rssMb.front.toFixed(0)
    } + ${b.rssMb.keeper.toFixed(0)}) vs ${b.rssMb.portkey.toFixed(0)} MB | ${
      verdict(rss <= b.rssMb.portkey, `${(rss - b.rssMb.portkey).toFixed(0)} MB more`)
    } |`,
    `| requests/s at 32 >= 0.7x the audited node proxy | ${limit.toFixed(2)}x (${
      Math.round(rps32.serve)
    } vs ${Math.round(audited32)}) | ${
      verdict(limit >= 0.7, `${(0.7 * audited32 - rps32.serve).toFixed(0)} req/s short`)
    } |`,
    `| SSE first byte within 1 ms of direct | +${ttfbGap.toFixed(2)} ms (${
      s.serve.ttfbMs.toFixed(2)
    } vs ${s.direct.ttfbMs.toFixed(2)} ms) | ${
      verdict(ttfbGap <= 1, `${(ttfbGap - 1).toFixed(2)} ms over`)
    } |`,
    `| a slow stream is not buffered | ${s.serve.onTime} of ${SLOW.events} events arrived apart | ${
      verdict(s.serve.onTime === SLOW.events, 'buffered')
    } |`,
    '',
    '1 connection:',
    '',
    '| route | each round |',
    '| --- | --- |',
    ...rows('c1'),
    '',
    '32 connections:',
    '',
    '| route | each round |',
    '| --- | --- |',
    ...rows('c32'),
    '',
    `Peak RSS (VmHWM over the whole run): Portkey ${b.rssMb.portkey.toFixed(0)} MB; serve's front ${
      b.rssMb.front.toFixed(0)
    } MB and keeper ${b.rssMb.keeper.toFixed(0)} MB${
      b.rssMb.base === undefined
        ? ''
        : ` (TP_BENCH_GW_BASE's: ${b.rssMb.base.front.toFixed(0)} and ${
          b.rssMb.base.keeper.toFixed(0)
        } MB)`
    }. Every wrk response was 2xx with no socket` +
    ` errors; serve's audit trail held ${b.audited} \`request.completed\` entries for the ${b.answered}` +
    ' requests answered (wrk counts only requests finished inside its window).',
    '',
    `Streaming (a Node client in bench/portkey.ts, one kept-alive connection): the time to the` +
    ` first body byte of a one-event SSE answer (${TTFB_RUNS} runs after 20 warm-ups), and a slow` +
    ` stream of ${SLOW.events} events ${SLOW.gapMs} ms apart, each event's lag behind the upstream's` +
    " schedule (the machine's load alone delays events; buffering shows as events arriving together):",
    '',
    '| route | first byte, median | p90 | slow stream: events arrived apart | largest lag |',
    '| --- | --- | --- | --- | --- |',
    ...(['direct', 'portkey', 'serve'] as const).map((n) => {
      const r = s[n];
      if (typeof r === 'string') return `| ${ROUTE_NAMES[n]} | failed: ${r} | | | |`;
      return `| ${ROUTE_NAMES[n]} | ${r.ttfbMs.toFixed(2)} ms | ${
        r.ttfbP90Ms.toFixed(2)
      } ms | ${r.onTime} of ${SLOW.events} | ${r.maxLagMs.toFixed(1)} ms |`;
    }),
    '',
    '```sh',
    ...b.commands,
    '```',
    '',
  ].join('\n');
}

if (process.argv[1]?.endsWith('portkey.ts')) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tp-bench-portkey-'));
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir, NO_COLOR: '1' };
  const step = (s: string) => process.stderr.write(`== ${s}\n`);
  try {
    const result = await benchPortkey(dir, env, step);
    if (process.env.TP_BENCH_JSON) {
      fs.writeFileSync(process.env.TP_BENCH_JSON, JSON.stringify(result));
    }
    process.stdout.write(portkeyMarkdown(result));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
