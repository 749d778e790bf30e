/**
 * What live monitoring costs serve per request (issue 7), run by bench/run.ts or on its own
 * (`node bench/monitor.ts` prints the Markdown section). In one process, with the real audit
 * writer and serve's own `liveMonitor`, it appends each request's two entries (allowed,
 * completed) for a few agents, then times `after()`: the monitor lock, reading the new entries
 * back from the log, the detector, and (when one fires) the anomaly's entries. The goal is under
 * 5% of serve's throughput: the per-request monitoring time is compared with the event-loop time
 * per request that serve's measured gateway throughput implies (1 s / requests per second).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import process from 'node:process';
import { openState } from '../src/state.ts';
import { openHome } from '../src/home.ts';
import { liveMonitor } from '../src/monitor/live.ts';
import { type GatewayBench, serveRps } from './gateway.ts';
import { tp } from './setup.ts';
import { unseal, wipeKeys } from '../src/vault.ts';

const BINARY = 'dist/trust-protocol';
const REQUESTS = 3000;
const AGENTS = 8;
export const GOAL_OVERHEAD = 0.05;

export interface MonitorBench {
  requests: number;
  agents: number;
  meanUs: number;
  medianUs: number;
  p99Us: number;
}

export async function benchMonitor(
  dir: string,
  env: Record<string, string>,
  step: (s: string) => void,
): Promise<MonitorBench> {
  step('monitor: per-request cost of live detection');
  const work = fs.mkdtempSync(path.join(dir, 'monitor-'));
  const password = 'a master password of ordinary length';
  const file = path.join(work, 'password');
  fs.writeFileSync(file, password + '\n', { mode: 0o600 });
  const home = path.join(work, 'home');
  const kdf = ['--kdf-memory-mib', '19', '--kdf-iterations', '2'];
  tp([BINARY], home, ['init', ...kdf, '--password-file', file], { env });
  const h = openHome(home, { create: false });
  const state = openState(h);
  const keys = unseal(state.vault.read(), new TextEncoder().encode(password));
  try {
    const writer = state.audit.writer({ macKey: keys.audit });
    const monitor = await liveMonitor(state, keys, () => new Date());
    const times: number[] = [];
    for (let i = 0; i < REQUESTS; i++) {
      const actor = { type: 'agent' as const, id: `agt_bench${i % AGENTS}` };
      const data = { credentials: ['k'], method: 'GET', host: 'api.allowed.test', path: '/v1' };
      await writer.append([
        { event: 'request.allowed', actor, outcome: 'allowed', data },
        {
          event: 'request.completed',
          actor,
          outcome: 'ok',
          data: { ...data, status: 200, bytes: 60 },
        },
      ]);
      const started = process.hrtime.bigint();
      await monitor.after();
      times.push(Number(process.hrtime.bigint() - started) / 1000);
    }
    await monitor.stop();
    const sorted = [...times].sort((a, b) => a - b);
    return {
      requests: REQUESTS,
      agents: AGENTS,
      meanUs: times.reduce((a, b) => a + b, 0) / times.length,
      medianUs: sorted[Math.floor(sorted.length / 2)] as number,
      p99Us: sorted[Math.floor(sorted.length * 0.99)] as number,
    };
  } finally {
    wipeKeys(keys);
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/**
 * The goal is judged on serve itself: the share of its busy CPU time spent in src/monitor/ while
 * wrk drove the gateway (a profiled round of bench/gateway.ts). The in-process timing above is
 * shown too: it calls `after()` once per request, where serve under load lets one look cover the
 * entries of every request that finished meanwhile, so it is an upper bound.
 */
export function monitorMarkdown(m: MonitorBench, g: GatewayBench | null): string {
  const perRequestUs = g === null ? null : 1e6 / serveRps(g);
  const bound = perRequestUs === null ? null : m.meanUs / perRequestUs;
  const share = g === null ? null : g.profile.monitorMs / g.profile.busyMs;
  const verdict = share === null ? 'not judged' : share < GOAL_OVERHEAD ? 'met' : '**not met**';
  const pct = (x: number | null) => (x === null ? '-' : `${(x * 100).toFixed(1)}%`);
  return [
    '## Monitoring overhead in serve (issue 7)',
    '',
    '| measure | value | goal | verdict |',
    '| --- | --- | --- | --- |',
    `| share of serve's busy CPU time in \`src/monitor/\` under the gateway load (profiled round, ${
      g === null ? '-' : `${Math.round(g.profile.rps)} req/s`
    }) | ${pct(share)}${
      g === null
        ? ''
        : ` (${g.profile.monitorMs.toFixed(0)} of ${g.profile.busyMs.toFixed(0)} ms sampled)`
    } | < ${GOAL_OVERHEAD * 100}% | ${verdict} |`,
    `| upper bound: \`after()\` once per request, in-process, ${m.requests} requests of ${m.agents} agents | mean ${
      m.meanUs.toFixed(0)
    } µs, median ${m.medianUs.toFixed(0)} µs, p99 ${m.p99Us.toFixed(0)} µs; ${pct(bound)} of the ${
      perRequestUs === null ? '-' : `${perRequestUs.toFixed(0)} µs`
    } per gateway request at the measured throughput | - | - |`,
    '',
    'The profiled round runs serve from the sources (`node --cpu-prof cmd/main.ts serve ...`, the' +
    ' same code as the binary) for one wrk round; a sample counts as monitoring when a function' +
    ' of src/monitor/ is on its stack (the monitor lock, reading the new entries back from the' +
    " log, the detector, acting on anomalies). The in-process timing appends each request's two" +
    " entries with the real writer, then times serve's `liveMonitor.after()`.",
    '',
    '```sh',
    'node_modules/.bin/node bench/monitor.ts   # the in-process timing',
    '```',
    '',
  ].join('\n');
}

if (process.argv[1]?.endsWith('monitor.ts')) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tp-bench-monitor-'));
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir, NO_COLOR: '1' };
  try {
    const m = await benchMonitor(dir, env, (s) => process.stderr.write(`\n== ${s}\n`));
    process.stdout.write(monitorMarkdown(m, null));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
