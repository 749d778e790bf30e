import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { addCredential, newAgent, newHome, sharedHome, type TestHome } from '../helpers/cli.ts';

const isDeno = typeof (globalThis as { Deno?: unknown }).Deno === 'object';
const ROOT = path.resolve(new URL('../..', import.meta.url).pathname);
const CANARY = 'sk-audit-canary-31415926';

function logPath(t: TestHome): string {
  return path.join(t.home, 'audit', 'audit.log');
}

async function populate(t: TestHome): Promise<void> {
  expect((await addCredential(t, 'k', CANARY, ['--allowed-domains', 'api.allowed.test'])).code)
    .toBe(0);
  for (let i = 0; i < 4; i++) await newAgent(t, { name: `bot${i}`, grants: ['k'] });
}

/** A credential and four agents, set up once for the file and copied for each test. */
const populatedHome = sharedHome(populate);
async function populated(): Promise<TestHome> {
  return (await populatedHome()).t;
}

async function verifyJson(t: TestHome, args: string[] = []) {
  const r = await t.tp(['--json', 'audit', 'verify', '--password-file', t.passwordFile, ...args]);
  return { code: r.code, result: r.stdout === '' ? null : JSON.parse(r.stdout), stderr: r.stderr };
}

describe('audit verify through the CLI', () => {
  it('an intact log verifies with HMACs; without a password only the chain, and it says so', async () => {
    const t = await populated();
    const { code, result } = await verifyJson(t);
    expect(code).toBe(0);
    expect(result).toMatchObject({ ok: true, hmac_checked: true, problems: [] });
    expect(result.entries).toBeGreaterThanOrEqual(10);
    const noPw = await t.tp(['audit', 'verify']);
    expect(noPw.code).toBe(0);
    expect(noPw.stdout).toMatch(/HMACs NOT checked/);
  });

  it('names the first bad entry and the kind: modified, deleted, reordered, truncated, torn tail', async () => {
    const t = await populated();
    const original = fs.readFileSync(logPath(t), 'utf8');
    const lines = original.trimEnd().split('\n');
    const cases: Array<[string, string, number]> = [
      [
        'modified',
        [...lines.slice(0, 3), lines[3]!.replace('"agent.', '"agenT.'), ...lines.slice(4)].join(
          '\n',
        ) + '\n',
        4,
      ],
      ['deleted', [...lines.slice(0, 5), ...lines.slice(6)].join('\n') + '\n', 6],
      [
        'reordered',
        [...lines.slice(0, 2), lines[3], lines[2], ...lines.slice(4)].join('\n') + '\n',
        3,
      ],
      ['truncated', lines.slice(0, -3).join('\n') + '\n', lines.length - 2],
      ['torn_tail', original + '{"v":1,"seq":', lines.length + 1],
    ];
    for (const [kind, content, seq] of cases) {
      fs.writeFileSync(logPath(t), content);
      const { code, result } = await verifyJson(t);
      expect(code, kind).toBe(1);
      expect(result.problems[0], kind).toMatchObject({ kind, seq });
      const text = await t.tp(['audit', 'verify', '--password-file', t.passwordFile]);
      expect(text.stdout).toContain(`first bad entry: ${seq}`);
    }
    fs.writeFileSync(logPath(t), original);
    expect((await verifyJson(t)).code).toBe(0);
  });

  it('a torn tail is repaired by the next writer, and the repair is logged', async () => {
    const t = await populated();
    // An explicit mode: Deno's appendFileSync applies its default 0666 even to an existing file.
    fs.appendFileSync(logPath(t), '{"v":1,"seq":99,"ts":"2026', { mode: 0o600 });
    expect((await verifyJson(t)).code).toBe(1);
    expect((await t.tp(['agent', 'register', 'after', '--password-file', t.passwordFile])).code)
      .toBe(0);
    const { code, result } = await verifyJson(t);
    expect(code).toBe(0);
    expect(result.ok).toBe(true);
    expect(fs.readFileSync(logPath(t), 'utf8')).toMatch(/"event":"audit.repair"/);
  });

  it('a log and vault restored together from an older copy pass alone but fail against a checkpoint', async () => {
    const t = await populated();
    const oldLog = fs.readFileSync(logPath(t));
    const oldVault = fs.readFileSync(path.join(t.home, 'vault.json'));
    await newAgent(t, { name: 'later' });
    const cp = await t.tp(['audit', 'checkpoint', '--password-file', t.passwordFile]);
    expect(cp.code, cp.stderr).toBe(0);
    const cpFile = t.file('checkpoint.txt', cp.stdout);
    expect((await verifyJson(t, ['--checkpoint', cpFile])).code).toBe(0);
    fs.writeFileSync(logPath(t), oldLog);
    fs.writeFileSync(path.join(t.home, 'vault.json'), oldVault);
    expect((await verifyJson(t)).code).toBe(0);
    const { code, result } = await verifyJson(t, ['--checkpoint', cpFile]);
    expect(code).toBe(1);
    expect(result.problems[0].kind).toBe('truncated');
    // A tampered checkpoint is itself refused.
    const forged = cp.stdout.split('\n');
    forged[1] = '1';
    const bad = await t.tp([
      'audit',
      'verify',
      '--checkpoint',
      t.file('forged.txt', forged.join('\n')),
      '--password-file',
      t.passwordFile,
    ]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/signature/);
  });

  it('a log from another vault is "wrong key"', async () => {
    const a = await populated();
    // Its own vault (its own key), not a copy of the shared one.
    const b = await newHome({ fresh: true });
    await populate(b);
    fs.copyFileSync(logPath(a), logPath(b));
    const { code, result } = await verifyJson(b);
    expect(code).toBe(1);
    expect(result.problems.map((p: { kind: string }) => p.kind)).toContain('wrong_key');
  });

  it('8 processes appending 200 events each lose, duplicate and fork nothing', async () => {
    const t = await newHome();
    const script = path.join(t.dir, 'append.ts');
    fs.writeFileSync(
      script,
      `
      import { FileAuditLog } from ${JSON.stringify(path.join(ROOT, 'src/audit.ts'))};
      const w = new FileAuditLog({ dir: ${JSON.stringify(t.home)} }).writer({ macKey: null });
      for (let i = 0; i < 200; i++) {
        await w.append([{ event: 'request.denied', actor: { type: 'anyone' }, outcome: 'denied', data: { writer: Number(process.argv[2]), i } }]);
      }`,
    );
    const codes = await Promise.all(
      Array.from({ length: 8 }, (_, w) =>
        new Promise<number | null>((resolve) => {
          spawn(process.execPath, isDeno ? ['run', '-A', script, String(w)] : [script, String(w)], {
            stdio: 'inherit',
          }).on('close', resolve);
        })),
    );
    expect(codes).toEqual(Array(8).fill(0));
    const { code, result } = await verifyJson(t);
    expect(code, JSON.stringify(result?.problems)).toBe(0);
    const lines = fs.readFileSync(logPath(t), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const appended = lines.filter((l) => l.event === 'request.denied');
    expect(appended).toHaveLength(1600);
    expect(new Set(appended.map((l) => `${l.data.writer}:${l.data.i}`)).size).toBe(1600);
  });
});

describe('audit show and export', () => {
  it('filters by event, agent, tail and since; --json gives JSON lines; export is the raw file', async () => {
    const t = await populated();
    const agents = JSON.parse((await t.tp(['agent', 'list', '--json'])).stdout);
    const grants = await t.tp(['--json', 'audit', 'show', '--event', 'agent.grant']);
    const rows = grants.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(rows).toHaveLength(4);
    expect(rows.every((r) => r.event === 'agent.grant')).toBe(true);
    const one = await t.tp(['--json', 'audit', 'show', '--agent', agents[0].id]);
    expect(one.stdout.trim().split('\n').map((l) => JSON.parse(l).data.agent)).toEqual([
      agents[0].id,
      agents[0].id,
    ]);
    const tail = await t.tp(['--json', 'audit', 'show', '--tail', '2']);
    expect(tail.stdout.trim().split('\n')).toHaveLength(2);
    const future = await t.tp(['--json', 'audit', 'show', '--since', '2999-01-01']);
    expect(future.stdout).toBe('');
    const table = await t.tp(['audit', 'show', '--event', 'credential']);
    expect(table.stdout).toMatch(/SEQ\s+TIME\s+EVENT[\s\S]*credential\.add/);
    const exported = await t.tp(['audit', 'export']);
    expect(exported.stdoutBytes).toEqual(new Uint8Array(fs.readFileSync(logPath(t))));
    expect(exported.stdout).not.toContain(CANARY);
  });
});
