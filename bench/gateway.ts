/**
 * `serve`'s gateway under load (issue 5), run by bench/run.ts or on its own
 * (`node bench/gateway.ts` prints the Markdown section). In one run, `wrk` drives the same small
 * HTTPS upstream (bench/upstream.ts) three ways:
 *   - direct: wrk speaks TLS to the upstream itself;
 *   - nginx: Debian's nginx injects a static Authorization header and proxies over TLS with
 *     kept-alive upstream connections (the configuration a careful operator would write);
 *   - serve: `trust-protocol serve`'s `/v1/gateway/bench_key/...`, where every request is
 *     authorised (agent token, grant, tier, domain, brakes), the credential injected, the response
 *     redacted and the request durably audited (group commit) before the credential is used.
 * Goals: serve at least 0.5x nginx's requests per second, p99 latency within 3x of nginx's, and a
 * resident set (peak, VmHWM) under 150 MB. The audit trail is counted after the run to show every
 * request answered was audited.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import process from 'node:process';
import {
  benchHome,
  CA,
  firstLine,
  freePort,
  HOST,
  NODE,
  peakRssMb,
  serveArgs,
  startNodeProxies,
  startUpstream,
  stop,
} from './setup.ts';

const BINARY = 'dist/trust-protocol';
const GOAL_RPS = 0.5;
const GOAL_P99 = 3;
const GOAL_RSS_MB = 150;
const WRK = { threads: 2, connections: 32, seconds: 10 };
const ROUNDS = 3;
const ROUTES = ['direct', 'nginx', 'node', 'nodeAudited', 'serve'] as const;
type Route = typeof ROUTES[number];
const ROUTE_NAMES: Record<Route, string> = {
  direct: 'direct',
  nginx: 'nginx',
  node: 'bare Node proxy',
  nodeAudited: 'Node proxy + durable audit',
  serve: 'serve',
};

export interface WrkResult {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  requests: number;
  errors: number;
  non2xx: number;
}

export interface GatewayBench {
  direct: WrkResult[];
  nginx: WrkResult[];
  /** bench/node_proxy.ts: a bare node:http proxy, and the same appending serve's audit entries. */
  node: WrkResult[];
  nodeAudited: WrkResult[];
  serve: WrkResult[];
  serveRssMb: number;
  audited: number;
  answered: number;
  nginxVersion: string;
  commands: string[];
  /**
   * One more serve round, from the sources under `node --cpu-prof` (the front and the keeper):
   * where serve's time went.
   */
  profile: ServeProfile;
}

export interface ServeProfile {
  rps: number;
  /** Sampled time the process was not idle, and the part of it in src/monitor/ (inclusive). */
  busyMs: number;
  monitorMs: number;
  /** The largest inclusive shares of src/ functions, for the record. */
  top: Array<{ name: string; ms: number }>;
}

function _ms(value: string, unit: string): number {
  const n = Number(value);
  return unit === 'us' ? n / 1000 : unit === 's' ? n * 1000 : n;
}

export function parseWrk(text: string): WrkResult {
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(text);
  const p50 = /^\s+50%\s+([\d.]+)(us|ms|s)\s*$/m.exec(text);
  const p99 = /^\s+99%\s+([\d.]+)(us|ms|s)\s*$/m.exec(text);
  const total = /(\d+) requests in/.exec(text);
  if (rps === null || p50 === null || p99 === null || total === null) {
    throw new Error(`cannot read wrk's output:\n${text}`);
  }
  const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(text);
  return {
    rps: Number(rps[1]),
    p50Ms: _ms(p50[1], p50[2]),
    p99Ms: _ms(p99[1], p99[2]),
    requests: Number(total[1]),
    errors: errors === null ? 0 : errors.slice(1).reduce((sum, n) => sum + Number(n), 0),
    non2xx: non2xx === null ? 0 : Number(non2xx[1]),
  };
}

/** wrk at 32 connections for 10 s against `url`; socket errors or non-2xx answers throw. */
export function runWrk(url: string, headers: string[], env: Record<string, string>): WrkResult {
  const args = [
    `-t${WRK.threads}`,
    `-c${WRK.connections}`,
    `-d${WRK.seconds}s`,
    '--latency',
    ...headers.flatMap((h) => ['-H', h]),
    url,
  ];
  const r = spawnSync('wrk', args, { env, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`wrk failed (${r.status}): ${r.stderr}`);
  const result = parseWrk(r.stdout);
  if (result.errors > 0 || result.non2xx > 0) {
    throw new Error(`wrk ${url}: ${result.errors} socket errors, ${result.non2xx} non-2xx`);
  }
  return result;
}

function _nginxConf(dir: string, listen: number, upstream: number): string {
  const user = process.getuid?.() === 0 ? 'user root;\n' : '';
  return `${user}daemon off;
worker_processes auto;
pid ${dir}/nginx.pid;
error_log ${dir}/nginx-error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${dir}/tmp-body;
  proxy_temp_path ${dir}/tmp-proxy;
  fastcgi_temp_path ${dir}/tmp-fastcgi;
  uwsgi_temp_path ${dir}/tmp-uwsgi;
  scgi_temp_path ${dir}/tmp-scgi;
  upstream api { server 127.0.0.1:${upstream}; keepalive 64; }
  server {
    listen 127.0.0.1:${listen};
    location / {
      proxy_pass https://api;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host ${HOST};
      proxy_set_header Authorization "Bearer sk-static-nginx-key";
      proxy_ssl_server_name on;
      proxy_ssl_name ${HOST};
      proxy_ssl_verify on;
      proxy_ssl_trusted_certificate ${CA};
    }
  }
}
`;
}

export function ensureWrk(step: (s: string) => void): void {
  const missing = ['wrk', 'nginx'].filter((t) =>
    spawnSync('sh', ['-c', `command -v ${t} || test -x /usr/sbin/${t}`]).status !== 0
  );
  if (missing.length === 0) return;
  step(`installing ${missing.join(', ')}`);
  const packages = missing.map((t) => (t === 'nginx' ? 'nginx-light' : t));
  const install = () =>
    spawnSync('apt-get', ['install', '-y', ...packages], { stdio: 'inherit' }).status === 0;
  if (install()) return;
  spawnSync('apt-get', ['update'], { stdio: 'inherit' });
  if (!install()) throw new Error(`could not install ${packages.join(' ')}: apt-get install -y`);
}

function _nginxBinary(): string {
  return fs.existsSync('/usr/sbin/nginx') ? '/usr/sbin/nginx' : 'nginx';
}

function _median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

export async function benchGateway(
  dir: string,
  env: Record<string, string>,
  step: (s: string) => void,
): Promise<GatewayBench> {
  ensureWrk(step);
  const work = fs.mkdtempSync(path.join(dir, 'gateway-'));
  const home = path.join(work, 'home');
  const password = path.join(work, 'password');
  fs.writeFileSync(password, 'a master password of ordinary length\n', { mode: 0o600 });
  const children: ChildProcess[] = [];
  try {
    const upstream = await startUpstream(env, children);

    step('gateway: setting up the vault, nginx and serve');
    const agent = benchHome([BINARY], home, password, env);

    const nginxPort = await freePort();
    fs.writeFileSync(path.join(work, 'nginx.conf'), _nginxConf(work, nginxPort, upstream));
    const nginx = spawn(_nginxBinary(), ['-p', work, '-c', path.join(work, 'nginx.conf')], {
      stdio: ['ignore', 'ignore', 'inherit'],
      env,
    });
    children.push(nginx);
    const nginxVersion = spawnSync(_nginxBinary(), ['-v'], { encoding: 'utf8' }).stderr.trim();

    const proxies = await startNodeProxies(work, upstream, env, children);

    const serveArgv = serveArgs(home, password, upstream);
    const serve = spawn(BINARY, serveArgv, { stdio: ['ignore', 'pipe', 'inherit'], env });
    children.push(serve);
    const announced = JSON.parse(await firstLine(serve, 'serve')) as { listen: string[] };
    const serveUrl = announced.listen[0];

    const urls = {
      direct: `https://127.0.0.1:${upstream}/v1/models`,
      nginx: `http://127.0.0.1:${nginxPort}/v1/models`,
      node: `${proxies.node}/v1/models`,
      nodeAudited: `${proxies.nodeAudited}/v1/models`,
      serve: `${serveUrl}/v1/gateway/bench_key/v1/models`,
    };
    const auth = [`Authorization: Bearer ${agent.token}`];
    await _waitFor(urls.nginx, env);
    // One request each first, so a broken setup fails before the timed runs.
    for (const url of Object.values(urls)) _curl(url, url === urls.serve ? auth : [], env);

    const result: Pick<GatewayBench, Route> = {
      direct: [],
      nginx: [],
      node: [],
      nodeAudited: [],
      serve: [],
    };
    for (let round = 1; round <= ROUNDS; round++) {
      for (const name of ROUTES) {
        step(`gateway: wrk ${name}, round ${round} of ${ROUNDS}`);
        result[name].push(runWrk(urls[name], name === 'serve' ? auth : [], env));
      }
    }
    const serveRssMb = peakRssMb(serve.pid!);
    await stop(serve);

    step('gateway: one more serve round from the sources, profiled (monitoring share)');
    const profDir = path.join(work, 'profile');
    const profiled = spawn(
      NODE,
      ['--cpu-prof', `--cpu-prof-dir=${profDir}`, 'cmd/main.ts', ...serveArgv],
      { stdio: ['ignore', 'pipe', 'inherit'], env },
    );
    children.push(profiled);
    const profiledUrl = (JSON.parse(await firstLine(profiled, 'serve (profiled)')) as {
      listen: string[];
    }).listen[0];
    const profiledRound = runWrk(`${profiledUrl}/v1/gateway/bench_key/v1/models`, auth, env);
    await stop(profiled);
    const profile = {
      rps: profiledRound.rps,
      // Two profiles: the front's and the keeper's (it runs with the front's Node flags).
      ...readProfiles(fs.readdirSync(profDir).map((f) => path.join(profDir, f))),
    };
    const audited = _countCompleted(path.join(home, 'audit', 'audit.log'));
    const answered = result.serve.reduce((sum, r) => sum + r.requests, 0) + 1 +
      profiledRound.requests;
    if (audited < answered) {
      throw new Error(`only ${audited} requests audited for ${answered} answered`);
    }
    // The audited baseline did its share of the work too.
    const proxyAudited = _countCompleted(path.join(proxies.auditHome, 'audit', 'audit.log'));
    const proxyAnswered = result.nodeAudited.reduce((sum, r) => sum + r.requests, 0) + 1;
    if (proxyAudited < proxyAnswered) {
      throw new Error(`node_proxy.ts audited ${proxyAudited} of ${proxyAnswered} requests`);
    }
    const wrkFlags = `-t${WRK.threads} -c${WRK.connections} -d${WRK.seconds}s --latency`;
    return {
      ...result,
      serveRssMb,
      audited,
      answered,
      nginxVersion,
      profile,
      commands: [
        `${NODE} bench/upstream.ts 1   # prints $UPSTREAM`,
        `nginx -p $W -c $W/nginx.conf   # listens on $NGINX, see _nginxConf in bench/gateway.ts`,
        `${BINARY} ${
          serveArgv.join(' ').replaceAll(home, '$W/home').replaceAll(password, '$W/password')
            .replace(`:${upstream}`, ':$UPSTREAM').replace(CA, 'fixtures/tls/ca.pem')
        }`,
        `wrk ${wrkFlags} https://127.0.0.1:$UPSTREAM/v1/models`,
        `wrk ${wrkFlags} http://127.0.0.1:$NGINX/v1/models`,
        `${NODE} bench/node_proxy.ts bare $UPSTREAM ${HOST} fixtures/tls/ca.pem   # prints $NODE_PROXY`,
        `${NODE} bench/node_proxy.ts audited $UPSTREAM ${HOST} fixtures/tls/ca.pem $W/audit-home   # prints $AUDITED_PROXY`,
        `wrk ${wrkFlags} http://127.0.0.1:$NODE_PROXY/v1/models   # and $AUDITED_PROXY`,
        `wrk ${wrkFlags} -H "Authorization: Bearer $TOKEN" $SERVE/v1/gateway/bench_key/v1/models`,
      ],
    };
  } finally {
    await Promise.all(children.map(stop));
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/**
 * serve's two V8 .cpuprofiles (front and keeper) together: the sampled time not idle, the part
 * with a frame of src/monitor/ on the stack (each sample counted once), and the src/ functions
 * with the most inclusive time.
 */
export function readProfiles(files: readonly string[]): Omit<ServeProfile, 'rps'> {
  if (files.length !== 2) {
    throw new Error(`expected the front's and the keeper's profiles: ${files}`);
  }
  let busy = 0;
  let monitor = 0;
  const inclusive = new Map<string, number>();
  for (const file of files) {
    const one = _readProfile(file, inclusive);
    busy += one.busy;
    monitor += one.monitor;
  }
  const top = [...inclusive].sort((a, b) => b[1] - a[1]).slice(0, 12)
    .map(([name, us]) => ({ name, ms: us / 1000 }));
  return { busyMs: busy / 1000, monitorMs: monitor / 1000, top };
}

/** One profile's busy and monitoring time (µs); its src/ functions added to `inclusive`. */
function _readProfile(
  file: string,
  inclusive: Map<string, number>,
): { busy: number; monitor: number } {
  interface Node {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
    children?: number[];
  }
  const p = JSON.parse(fs.readFileSync(file, 'utf8')) as {
    nodes: Node[];
    samples: number[];
    timeDeltas: number[];
  };
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<number, number>();
  p.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (p.timeDeltas[i] ?? 0)));
  let busy = 0;
  let monitor = 0;
  for (const [id, us] of self) {
    if (byId.get(id)?.callFrame.functionName === '(idle)') continue;
    busy += us;
    const seen = new Set<string>();
    let inMonitor = false;
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const { functionName, url, lineNumber } = byId.get(at)!.callFrame;
      if (url.includes('/src/monitor/')) inMonitor = true;
      const src = url.indexOf('/src/');
      if (src < 0) continue;
      const name = `${functionName || '(anonymous)'} ${url.slice(src + 1)}:${lineNumber + 1}`;
      if (seen.has(name)) continue;
      seen.add(name);
      inclusive.set(name, (inclusive.get(name) ?? 0) + us);
    }
    if (inMonitor) monitor += us;
  }
  return { busy, monitor };
}

function _curl(url: string, headers: string[], env: Record<string, string>): void {
  const r = spawnSync('curl', [
    '-sS',
    '--fail',
    '-o',
    '/dev/null',
    '--cacert',
    CA,
    ...headers.flatMap((h) => ['-H', h]),
    url,
  ], { env, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`curl ${url} failed (${r.status}): ${r.stderr}`);
}

async function _waitFor(url: string, env: Record<string, string>): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const r = spawnSync('curl', ['-s', '-o', '/dev/null', url], { env });
    if (r.status === 0) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`${url} did not answer`);
}

function _countCompleted(log: string): number {
  let n = 0;
  for (const line of fs.readFileSync(log, 'utf8').split('\n')) {
    if (line.includes('"event":"request.completed"')) n++;
  }
  return n;
}

function _fmt(r: WrkResult): string {
  return `${Math.round(r.rps)} req/s, p50 ${r.p50Ms.toFixed(2)} ms, p99 ${r.p99Ms.toFixed(2)} ms`;
}

/** serve's median requests per second over the rounds. */
export function serveRps(g: GatewayBench): number {
  return _median(g.serve.map((r) => r.rps));
}

export function gatewayMarkdown(g: GatewayBench): string {
  const med = (rs: WrkResult[], f: (r: WrkResult) => number) => _median(rs.map(f));
  const rps = { direct: med(g.direct, (r) => r.rps), nginx: med(g.nginx, (r) => r.rps) };
  const serveRps = med(g.serve, (r) => r.rps);
  const nginxP99 = med(g.nginx, (r) => r.p99Ms);
  const serveP99 = med(g.serve, (r) => r.p99Ms);
  const rpsRatio = serveRps / rps.nginx;
  const p99Ratio = serveP99 / nginxP99;
  const verdict = (ok: boolean) => (ok ? 'met' : '**not met**');
  const rows = ROUTES.map((name) => `| ${ROUTE_NAMES[name]} | ${g[name].map(_fmt).join('<br>')} |`);
  const ofNginx = (name: Route) => {
    const r = med(g[name], (x) => x.rps);
    return `${Math.round(r)} req/s = ${(r / rps.nginx).toFixed(2)}x nginx`;
  };
  return [
    '## `serve` gateway under load (issue 5)',
    '',
    `wrk (${WRK.threads} threads, ${WRK.connections} connections, ${WRK.seconds} s, ${ROUNDS} rounds` +
    ` interleaved) against the same local HTTPS upstream: direct, through ${g.nginxVersion}` +
    ' injecting a static Authorization header (kept-alive TLS upstream connections, worker_processes' +
    ' auto), through two plain node:http proxies that inject the same header (bench/node_proxy.ts:' +
    ' bare, and appending the two audit entries serve writes per request through its group-commit' +
    " writer), and through `serve`'s `/v1/gateway`, where every request is authorised, injected," +
    ' redacted and durably audited. All processes share the 2 cores.',
    '',
    `The two Node baselines bound what one Node process can reach here: the bare proxy ${
      ofNginx('node')
    }, and with the durable audit trail alone ${ofNginx('nodeAudited')}.`,
    '',
    '| goal | measured (medians) | verdict |',
    '| --- | --- | --- |',
    `| requests/s >= ${GOAL_RPS}x nginx | ${rpsRatio.toFixed(2)}x (${Math.round(serveRps)} vs ${
      Math.round(rps.nginx)
    }; direct ${Math.round(rps.direct)}) | ${verdict(rpsRatio >= GOAL_RPS)} |`,
    `| p99 <= ${GOAL_P99}x nginx | ${p99Ratio.toFixed(2)}x (${serveP99.toFixed(2)} ms vs ${
      nginxP99.toFixed(2)
    } ms) | ${verdict(p99Ratio <= GOAL_P99)} |`,
    `| serve peak RSS < ${GOAL_RSS_MB} MB | ${g.serveRssMb.toFixed(0)} MB (VmHWM) | ${
      verdict(g.serveRssMb < GOAL_RSS_MB)
    } |`,
    '',
    '| route | each round |',
    '| --- | --- |',
    ...rows,
    '',
    `Every wrk response was 2xx with no socket errors; the audit trail held ${g.audited}` +
    ` \`request.completed\` entries for the ${g.answered} requests answered (wrk counts only` +
    ' requests finished inside its window).',
    '',
    '```sh',
    ...g.commands,
    '```',
    '',
    `Where serve's time goes: one more round (${
      Math.round(g.profile.rps)
    } req/s) with serve run from the sources under \`node --cpu-prof\` (profiling slows it);` +
    ` ${g.profile.busyMs.toFixed(0)} ms of CPU time were sampled outside idle. The src/ functions` +
    ' with the most inclusive time (nested ones overlap):',
    '',
    '| function | inclusive ms | share of busy time |',
    '| --- | --- | --- |',
    ...g.profile.top.map((t) =>
      `| \`${t.name}\` | ${t.ms.toFixed(0)} | ${(100 * t.ms / g.profile.busyMs).toFixed(1)}% |`
    ),
    '',
  ].join('\n');
}

if (process.argv[1]?.endsWith('gateway.ts')) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tp-bench-gateway-'));
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir, NO_COLOR: '1' };
  const step = (s: string) => process.stderr.write(`\n== ${s}\n`);
  try {
    process.stdout.write(gatewayMarkdown(await benchGateway(dir, env, step)));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
