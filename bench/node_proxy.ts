/**
 * Two baselines for serve's gateway (bench/gateway.ts), each a plain node:http proxy in front of
 * the local HTTPS upstream that injects a static Authorization header, as nginx does there:
 *   - bare: nothing else, the "bare Node http proxy" issue 5 quotes as a reference;
 *   - audited: also appends two audit entries per request through src/audit.ts (the group-commit
 *     writer serve uses, HMAC and hash chain), `request.allowed` made durable before the request
 *     is sent and `request.completed` after the response, as serve does.
 * The second shows what the durable audit trail alone costs on this machine, before any of
 * serve's checks. Prints its port on the first line of stdout.
 * Run: node bench/node_proxy.ts bare|audited UPSTREAM_PORT HOST CA_FILE [AUDIT_HOME]
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { Agent, request } from 'node:https';
import process from 'node:process';
import { openState } from '../src/state.ts';

const [mode, upstreamPort, host, caFile, auditHome] = process.argv.slice(2);
if ((mode !== 'bare' && mode !== 'audited') || !upstreamPort || !host || !caFile) {
  throw new Error('usage: node bench/node_proxy.ts bare|audited UPSTREAM_PORT HOST CA_FILE [HOME]');
}
if (mode === 'audited' && !auditHome) throw new Error('audited needs an audit home directory');

const agent = new Agent({ keepAlive: true, maxSockets: 64, ca: readFileSync(caFile) });
const audit = mode === 'audited'
  ? openState({ dir: auditHome as string }).audit.writer({ macKey: randomBytes(32) })
  : null;
const actor = { type: 'agent', id: 'agt_bench' } as const;

const server = createServer(async (req, res) => {
  const data = { method: req.method, host, path: req.url };
  await audit?.append([{ event: 'request.allowed', actor, outcome: 'allowed', data }]);
  const headers = { ...req.headers, host, authorization: 'Bearer sk-static-node-key' };
  const up = request({
    host: '127.0.0.1',
    port: Number(upstreamPort),
    servername: host,
    method: req.method,
    path: req.url,
    headers,
    agent,
  }, (upRes) => {
    res.writeHead(upRes.statusCode ?? 502, upRes.headers);
    let bytes = 0;
    upRes.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      res.write(chunk);
    });
    upRes.on('end', async () => {
      await audit?.append([{
        event: 'request.completed',
        actor,
        outcome: 'ok',
        data: { ...data, status: upRes.statusCode, bytes },
      }]);
      res.end();
    });
  });
  up.on('error', () => {
    res.writeHead(502);
    res.end();
  });
  req.pipe(up);
});

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${(server.address() as { port: number }).port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
