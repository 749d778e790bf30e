import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { addCredential, newAgent, PASSWORD, sharedHome, type TestHome } from '../helpers/cli.ts';
import { type Listener, startHttpsListener, TEST_CA } from '../helpers/listeners.ts';

const CANARY = `sk-brake-canary-${Math.random().toString(16).slice(2, 10)}`;
const CONFIRM = ['--confirmation', 'CONFIRM_RESTORE_ACCESS'];

let upstream: Listener;
beforeAll(async () => {
  upstream = await startHttpsListener();
});
afterAll(async () => {
  await upstream.close();
});

interface World {
  t: TestHome;
  a: { id: string; token: string };
  b: { id: string; token: string };
  ca: string;
}

/** Two credentials and two agents, set up once for the file and copied for each test. */
const worldHome = sharedHome(async (t) => {
  for (const name of ['k1', 'k2']) {
    expect(
      (await addCredential(t, name, `${CANARY}-${name}`, ['--allowed-domains', 'api.allowed.test']))
        .code,
    ).toBe(0);
  }
  const a = await newAgent(t, { name: 'a', grants: ['k1', 'k2'] });
  const b = await newAgent(t, { name: 'b', grants: ['k1', 'k2'] });
  return { a, b };
});

async function world(): Promise<World> {
  const { t, value } = await worldHome();
  return { t, ...value, ca: t.file('ca.pem', TEST_CA) };
}

/** One request by `agent` with credential `cred`; `password` false runs with no password source. */
async function request(w: World, agent: { token: string }, cred: string, password = true) {
  const tpl = w.t.file(
    `t-${cred}.json`,
    JSON.stringify({
      credential: cred,
      url: 'https://api.allowed.test/b',
      headers: { Authorization: 'Bearer {{CREDENTIAL}}' },
    }),
  );
  const before = upstream.rawBytes().length;
  const r = await w.t.tp([
    'exec',
    '--template',
    tpl,
    '--cacert',
    w.ca,
    '--connect-to',
    `api.allowed.test:443:127.0.0.1:${upstream.port}`,
    ...(password ? ['--password-file', w.t.passwordFile] : []),
  ], { env: { TRUST_PROTOCOL_TOKEN: agent.token } });
  return { code: r.code, stderr: r.stderr, sent: upstream.rawBytes().length > before };
}

function activate(w: World, ...args: string[]) {
  return w.t.tp(['emergency', 'activate', '--reason', 'incident drill', ...args]);
}

describe('emergency brakes', () => {
  it('global: everything exits 5 before any password is asked, nothing is sent', async () => {
    const w = await world();
    const on = await activate(w);
    expect(on.code, on.stderr).toBe(0);
    for (const [agent, cred] of [[w.a, 'k1'], [w.b, 'k2']] as const) {
      const r = await request(w, agent, cred, false);
      expect(r.code).toBe(5);
      expect(r.stderr).toMatch(/global emergency brake: incident drill/);
      expect(r.sent).toBe(false);
    }
    const status = JSON.parse((await w.t.tp(['emergency', 'status', '--json'])).stdout);
    expect(status).toMatchObject({
      global: { reason: 'incident drill' },
      agents: [],
      credentials: [],
    });
    expect(fs.readFileSync(path.join(w.t.home, 'audit', 'audit.log'), 'utf8')).toMatch(
      /"event":"brake\.activate"/,
    );
  });

  it('a brake placed while exec waits for its password stops that request (exit 5, nothing sent)', async () => {
    const w = await world();
    // The password comes through a FIFO: exec blocks opening it, after its first brake checks.
    const fifo = path.join(w.t.dir, 'password.fifo');
    expect(spawnSync('mkfifo', ['-m', '600', fifo]).status).toBe(0);
    const tpl = w.t.file(
      't-fifo.json',
      JSON.stringify({
        credential: 'k1',
        url: 'https://api.allowed.test/b',
        headers: { Authorization: 'Bearer {{CREDENTIAL}}' },
      }),
    );
    const before = upstream.rawBytes().length;
    const running = w.t.tp([
      'exec',
      '--template',
      tpl,
      '--cacert',
      w.ca,
      '--connect-to',
      `api.allowed.test:443:127.0.0.1:${upstream.port}`,
      '--password-file',
      fifo,
    ], { env: { TRUST_PROTOCOL_TOKEN: w.a.token } });
    // Resolves once exec has opened the FIFO for reading: it is waiting for the password.
    const writer = await fs.promises.open(fifo, 'w');
    const on = await activate(w);
    expect(on.code, on.stderr).toBe(0);
    await writer.writeFile(`${PASSWORD}\n`);
    await writer.close();
    const r = await running;
    expect(r.code, r.stderr).toBe(5);
    expect(r.stderr).toMatch(/global emergency brake: incident drill/);
    expect(upstream.rawBytes().length).toBe(before);
  });

  it('agent scope blocks that agent only; clearing it keeps its token unless --new-token', async () => {
    const w = await world();
    expect((await activate(w, '--scope', 'agent', '--agent-id', w.a.id)).code).toBe(0);
    expect((await request(w, w.a, 'k1', false)).code).toBe(5);
    const other = await request(w, w.b, 'k1');
    expect(other.code, other.stderr).toBe(0);
    expect(other.sent).toBe(true);
    const clear = (...extra: string[]) =>
      w.t.tp([
        'emergency',
        'clear',
        '--scope',
        'agent',
        '--agent-id',
        w.a.id,
        ...extra,
        '--password-file',
        w.t.passwordFile,
      ]);
    const cleared = await clear();
    expect(cleared.code, cleared.stderr).toBe(0);
    expect(cleared.stdout).toContain('The agent keeps its token');
    const after = await request(w, w.a, 'k1');
    expect(after.code, after.stderr).toBe(0);
    expect(after.sent).toBe(true);

    // When the operator believes the token leaked: a fresh one, the old one dead.
    expect((await activate(w, '--scope', 'agent', '--agent-id', w.a.id)).code).toBe(0);
    const fresh = await clear('--json', '--new-token');
    expect(fresh.code, fresh.stderr).toBe(0);
    const { token, cleared: lifted } = JSON.parse(fresh.stdout);
    expect(lifted).toHaveLength(1);
    expect(token).toMatch(/^tpat_/);
    const old = await request(w, w.a, 'k1');
    expect(old.code).toBe(4);
    expect(old.sent).toBe(false);
    const renewed = await request(w, { token }, 'k1');
    expect(renewed.code, renewed.stderr).toBe(0);
    expect(fs.readFileSync(path.join(w.t.home, 'audit', 'audit.log'), 'utf8')).not.toContain(token);
  });

  it('clear with no scope and only narrower brakes active says which there are and how to lift them', async () => {
    const w = await world();
    expect((await activate(w, '--scope', 'agent', '--agent-id', w.a.id)).code).toBe(0);
    expect((await activate(w, '--scope', 'credential', '--credential-name', 'k2')).code).toBe(0);
    const r = await w.t.tp(['emergency', 'clear', '--password-file', w.t.passwordFile]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`there is no global brake; active: agent ${w.a.id}, credential k2`);
    expect(r.stderr).toContain(`trust-protocol emergency clear --scope agent --agent-id ${w.a.id}`);
    expect(r.stderr).toContain(
      'trust-protocol emergency clear --scope credential --credential-name k2',
    );
    expect((await request(w, w.a, 'k1', false)).code).toBe(5);
  });

  it('credential scope blocks that credential only', async () => {
    const w = await world();
    expect((await activate(w, '--scope', 'credential', '--credential-name', 'k1')).code).toBe(0);
    expect((await request(w, w.a, 'k1', false)).code).toBe(5);
    expect((await request(w, w.b, 'k1', false)).code).toBe(5);
    const k2 = await request(w, w.a, 'k2');
    expect(k2.code, k2.stderr).toBe(0);
    expect(k2.sent).toBe(true);
    expect(
      (await w.t.tp([
        'emergency',
        'clear',
        '--scope',
        'credential',
        '--credential-name',
        'k1',
        '--password-file',
        w.t.passwordFile,
      ])).code,
    ).toBe(0);
    expect((await request(w, w.a, 'k1')).code).toBe(0);
  });

  it('clear: wrong password, missing confirmation, nothing active: clear errors, brake still active', async () => {
    const w = await world();
    const notActive = await w.t.tp([
      'emergency',
      'clear',
      ...CONFIRM,
      '--password-file',
      w.t.passwordFile,
    ]);
    expect(notActive.code).toBe(2);
    expect(notActive.stderr).toMatch(/no active global brake/);
    expect((await activate(w)).code).toBe(0);
    const noConfirm = await w.t.tp(['emergency', 'clear', '--password-file', w.t.passwordFile]);
    expect(noConfirm.code).toBe(2);
    expect(noConfirm.stderr).toContain('CONFIRM_RESTORE_ACCESS');
    const wrong = await w.t.tp([
      'emergency',
      'clear',
      ...CONFIRM,
      '--password-file',
      w.t.file('bad', 'not it at all\n'),
    ]);
    expect(wrong.code).toBe(3);
    expect((await request(w, w.a, 'k1', false)).code).toBe(5);
    const ok = await w.t.tp([
      'emergency',
      'clear',
      ...CONFIRM,
      '--password-file',
      w.t.passwordFile,
    ]);
    expect(ok.code, ok.stderr).toBe(0);
    expect((await request(w, w.a, 'k1')).code).toBe(0);
    expect(fs.readFileSync(path.join(w.t.home, 'audit', 'audit.log'), 'utf8')).toMatch(
      /"event":"brake\.clear"/,
    );
  });

  it('deleting, truncating or editing brake records by hand never lifts a brake', async () => {
    const w = await world();
    expect((await activate(w, '--scope', 'agent', '--agent-id', w.a.id)).code).toBe(0);
    const dir = path.join(w.t.home, 'brakes');
    const file = fs.readdirSync(dir).find((f) => f.startsWith('brk_'))!;
    // Delete the record file: the journal still holds it.
    fs.rmSync(path.join(dir, file));
    expect((await request(w, w.a, 'k1', false)).code).toBe(5);
    // Truncate the journal too: the audit trail still records the activation.
    fs.writeFileSync(path.join(dir, 'journal.log'), '');
    expect((await request(w, w.a, 'k1', false)).code).toBe(5);
    // Once a password holder has run, the vault knows the brake: removing every record, the
    // audit entry included, changes nothing.
    expect(
      (await w.t.tp(['agent', 'register', 'witness', '--password-file', w.t.passwordFile])).code,
    ).toBe(0);
    fs.rmSync(dir, { recursive: true });
    fs.mkdirSync(dir, { mode: 0o700 });
    const log = path.join(w.t.home, 'audit', 'audit.log');
    fs.writeFileSync(
      log,
      fs.readFileSync(log, 'utf8').split('\n').filter((l) => !l.includes('brake.activate')).join(
        '\n',
      ),
    );
    const r = await request(w, w.a, 'k1');
    expect(r.code).toBe(5);
    expect(r.sent).toBe(false);
    expect((await request(w, w.b, 'k1')).code).toBe(0);
    // Garbage in a record or the journal is a global brake (fail closed).
    fs.writeFileSync(path.join(dir, 'brk_0000000000000000.json'), '{not json');
    const g = await request(w, w.b, 'k1', false);
    expect(g.code).toBe(5);
    expect(g.stderr).toMatch(/fail closed/);
    // A missing brakes directory is a global brake too.
    fs.rmSync(dir, { recursive: true });
    expect((await request(w, w.b, 'k1', false)).code).toBe(5);
    expect(
      (await w.t.tp(['emergency', 'clear', ...CONFIRM, '--password-file', w.t.passwordFile])).code,
    ).toBe(0);
    expect((await request(w, w.b, 'k1')).code).toBe(0);
  });

  it('a symlinked journal and a journal line that is not an activation fail closed; clearing global quarantines them', async () => {
    const w = await world();
    const dir = path.join(w.t.home, 'brakes');
    const elsewhere = path.join(w.t.dir, 'journal-elsewhere');
    fs.writeFileSync(elsewhere, '');
    fs.symlinkSync(elsewhere, path.join(dir, 'journal.log'));
    expect((await request(w, w.a, 'k1', false)).code).toBe(5);
    fs.rmSync(path.join(dir, 'journal.log'));
    fs.writeFileSync(
      path.join(dir, 'journal.log'),
      JSON.stringify({
        v: 1,
        op: 'lift',
        id: 'brk_0123456789abcdef',
        scope: 'global',
        target: null,
        reason: 'x',
        activated_at: 'x',
      }) + '\n',
      { mode: 0o600 },
    );
    expect((await request(w, w.a, 'k1', false)).code).toBe(5);
    expect(
      (await w.t.tp(['emergency', 'clear', ...CONFIRM, '--password-file', w.t.passwordFile])).code,
    ).toBe(0);
    expect((await request(w, w.a, 'k1')).code).toBe(0);
    expect(fs.readdirSync(dir).some((f) => f.endsWith('.corrupt'))).toBe(true);
  });

  it('a vault with a brake removed from its known list fails closed (exit 8)', async () => {
    const w = await world();
    expect((await activate(w, '--scope', 'credential', '--credential-name', 'k1')).code).toBe(0);
    expect(
      (await w.t.tp(['agent', 'register', 'witness', '--password-file', w.t.passwordFile])).code,
    ).toBe(0);
    fs.rmSync(path.join(w.t.home, 'brakes'), { recursive: true });
    fs.mkdirSync(path.join(w.t.home, 'brakes'), { mode: 0o700 });
    const vaultPath = path.join(w.t.home, 'vault.json');
    const v = JSON.parse(fs.readFileSync(vaultPath, 'utf8'));
    expect(v.body.known_brakes).toHaveLength(1);
    v.body.known_brakes = [];
    fs.writeFileSync(vaultPath, JSON.stringify(v));
    const r = await request(w, w.a, 'k1');
    expect(r.code).toBe(8);
    expect(r.sent).toBe(false);
  });

  it('a reason with line breaks and terminal escapes is recorded and shown escaped', async () => {
    const w = await world();
    const nasty = 'line\nbreak \u001b[2J\u009b31m \u202eevil';
    expect((await w.t.tp(['emergency', 'activate', '--reason', nasty])).code).toBe(0);
    const raw = fs.readFileSync(path.join(w.t.home, 'audit', 'audit.log'), 'utf8');
    expect(raw.trimEnd().split('\n').every((l) => JSON.parse(l))).toBe(true);
    // deno-lint-ignore no-control-regex -- matching control characters is the point
    expect(raw).not.toMatch(new RegExp('[\\u001b\\u009b\\u202e]'));
    // None of these may reach the terminal (the newline that ends a line aside).
    // deno-lint-ignore no-control-regex -- matching control characters is the point
    const unsafe = new RegExp('[\\u0000-\\u0009\\u000b-\\u001f\\u007f-\\u009f\\u202e]');
    for (const args of [['audit', 'show'], ['emergency', 'status'], ['status']]) {
      const out = await w.t.tp(args);
      expect(out.stdout + out.stderr, args.join(' ')).not.toMatch(unsafe);
    }
    const blocked = await request(w, w.a, 'k1', false);
    // deno-lint-ignore no-control-regex -- matching control characters is the point
    expect(blocked.stderr).not.toMatch(new RegExp('[\\u001b\\u009b\\u202e]'));
  });

  it('refuses bad activations with clear errors', async () => {
    const w = await world();
    expect((await w.t.tp(['emergency', 'activate'])).code).toBe(2);
    expect((await activate(w, '--scope', 'agent')).code).toBe(2);
    expect((await activate(w, '--scope', 'agent', '--agent-id', 'agt_nope')).code).toBe(2);
    expect((await activate(w, '--scope', 'planet')).code).toBe(2);
    expect((await activate(w, '--agent-id', w.a.id)).code).toBe(2);
  });
});

describe('brake records forged by the agent (#19 review)', () => {
  function forge(w: World, id: string, scope: string, target: string | null) {
    // The agent can write brake records (a brake only narrows), under any id it has seen.
    fs.writeFileSync(
      path.join(w.t.home, 'brakes', `brk_${Math.random().toString(16).slice(2, 10)}00000000.json`),
      JSON.stringify({
        format: 'trust-protocol/brake',
        version: 1,
        id,
        scope,
        target,
        reason: 'please clear me',
        activated_at: new Date().toISOString(),
      }),
    );
  }

  it("clearing a forged agent brake that reuses the global brake's id leaves the global brake on", async () => {
    const w = await world();
    expect((await activate(w)).code).toBe(0);
    const global = JSON.parse((await w.t.tp(['emergency', 'status', '--json'])).stdout).global;
    // The operator, seeing agent a braked, lifts that brake: the global one must stay.
    forge(w, global.id, 'agent', w.a.id);
    const clear = await w.t.tp([
      'emergency',
      'clear',
      '--scope',
      'agent',
      '--agent-id',
      w.a.id,
      '--password-file',
      w.t.passwordFile,
    ]);
    expect(clear.code, clear.stdout + clear.stderr).toBe(0);
    const status = JSON.parse((await w.t.tp(['emergency', 'status', '--json'])).stdout);
    expect(status.global?.id).toBe(global.id);
    expect(status.agents).toEqual([]);
    const r = await request(w, w.b, 'k1', false);
    expect(r.code, r.stderr).toBe(5);
    expect(r.sent).toBe(false);
    const all = await w.t.tp([
      'emergency',
      'clear',
      ...CONFIRM,
      '--password-file',
      w.t.passwordFile,
    ]);
    expect(all.code, all.stdout + all.stderr).toBe(0);
    expect(JSON.parse((await w.t.tp(['emergency', 'status', '--json'])).stdout).global).toBeNull();
  });

  it("clearing a forged global brake that reuses an agent brake's id leaves the agent brake on", async () => {
    const w = await world();
    expect((await activate(w, '--scope', 'agent', '--agent-id', w.b.id)).code).toBe(0);
    const braked = JSON.parse((await w.t.tp(['emergency', 'status', '--json'])).stdout).agents[0];
    forge(w, braked.id, 'global', null);
    const all = await w.t.tp([
      'emergency',
      'clear',
      ...CONFIRM,
      '--password-file',
      w.t.passwordFile,
    ]);
    expect(all.code, all.stdout + all.stderr).toBe(0);
    const status = JSON.parse((await w.t.tp(['emergency', 'status', '--json'])).stdout);
    expect(status.global).toBeNull();
    expect(status.agents.map((a: { id: string }) => a.id)).toEqual([braked.id]);
    const r = await request(w, w.b, 'k1', false);
    expect(r.code, r.stderr).toBe(5);
    expect(r.sent).toBe(false);
  });
});
