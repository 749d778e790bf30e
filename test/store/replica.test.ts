/**
 * The team store's working copy in process (#19): src/store/replica.ts and the State's hooks into
 * it, against a real PostgreSQL (test/helpers/postgres.ts), for what a test through the binary
 * cannot time or see: the locks the store holds after a failure, and what a save pushes.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { newHome, PASSWORD, type TestHome } from '../helpers/cli.ts';
import { usePostgres } from '../helpers/postgres.ts';
import { auditHome, lineDigest } from '../../src/audit.ts';
import { openHome } from '../../src/home.ts';
import { openState } from '../../src/state.ts';
import { openReplica } from '../../src/store/replica.ts';
import type { StoreSync } from '../../src/store/sync.ts';
import { loadVault, unseal } from '../../src/vault.ts';

/**
 * The agent, which runs as the same user, writing vault.json in the home at the moment it picks:
 * right after the save whose text `when` accepts (nothing the vault lock can stop).
 */
const agent = vi.hoisted(() => ({
  when: null as ((text: string) => boolean) | null,
  bytes: null as Uint8Array | null,
}));
vi.mock('../../src/home.ts', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../src/home.ts')>();
  const { writeFileSync } = await import('node:fs');
  const { join } = await import('node:path');
  const after = (home: { dir: string }, name: string, data: Uint8Array | string) => {
    const text = typeof data === 'string' ? data : new TextDecoder().decode(data);
    if (name !== 'vault.json' || agent.when === null || !agent.when(text)) return;
    agent.when = null;
    writeFileSync(join(home.dir, name), agent.bytes as Uint8Array);
  };
  return {
    ...real,
    writeStateFile: (...a: Parameters<typeof real.writeStateFile>) => {
      real.writeStateFile(...a);
      after(a[0], a[1], a[2]);
    },
    writeStateFileAsync: async (...a: Parameters<typeof real.writeStateFileAsync>) => {
      await real.writeStateFileAsync(...a);
      after(a[0], a[1], a[2]);
    },
  };
});

const pg = usePostgres();
let t: TestHome;

beforeAll(async () => {
  pg.setup();
  t = await newHome();
}, 60_000);

afterAll(() => {
  pg.teardown();
});

async function newStore(): Promise<string> {
  const url = pg.get().database();
  const r = await t.tp(['store', 'migrate', '--to', url, '--password-file', t.passwordFile]);
  expect(r.code, r.stderr).toBe(0);
  return url;
}

/** A working copy pulled from `url`, and its replica (closed by the caller). */
async function copy(url: string, name: string) {
  const dir = path.join(t.dir, `${name}-${Math.random().toString(16).slice(2, 8)}`);
  const home = openHome(dir, { create: true });
  const sync = await openReplica(url);
  await sync.pull(home);
  return { dir, home, sync };
}

/** Advisory locks held in the database (granted) with this key. */
async function advisoryHeld(url: string, key: number): Promise<number> {
  const rows = await pg.get().sql(
    url,
    `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND objid = ${key} AND granted`,
  ) as Array<{ n: number }>;
  return rows[0]!.n;
}

/** The home's vault keys, unsealed with the test password. */
function unsealed(home: ReturnType<typeof openHome>) {
  return unseal(loadVault(home), new TextEncoder().encode(PASSWORD));
}

/** A vault change with nothing in it but its entry (a resync that missed nothing). */
function resync(
  state: ReturnType<typeof openState>,
  keys: ReturnType<typeof unsealed>,
  options?: { acceptOlder: boolean },
): Promise<void> {
  return state.vault.update(keys, () => ({
    result: undefined,
    events: [{
      event: 'vault.resync',
      actor: { type: 'operator' },
      outcome: 'ok',
      data: { missed: [] },
    }],
  }), options);
}

/** Another machine's fresh copy of `url` takes and releases the store's audit lock. */
async function anotherMachineAppends(url: string): Promise<void> {
  const b = await copy(url, 'b');
  try {
    const held = await b.sync.appendLock(auditHome(b.home));
    await held.release();
  } finally {
    await b.sync.close();
  }
}

describe.skipIf(!pg.available)('the store after a failed append', () => {
  it(
    'a refused append releases the shared audit lock (another machine is not held up)',
    async () => {
      const url = await newStore();
      const a = await copy(url, 'a');
      let sync: StoreSync | null = a.sync;
      try {
        // Machine a's home moves on without the store (an agent writing its files, or a command
        // run without --store): its appends are refused (store_diverged)...
        const alone = await t.tp(['--home', a.dir, 'emergency', 'activate', '--reason', 'alone']);
        expect(alone.code, alone.stderr).toBe(0);
        await expect(a.sync.appendLock(auditHome(a.home))).rejects.toMatchObject({
          code: 'store_diverged',
        });
        // ...and leave no transaction holding the audit lock on a's pooled connection.
        expect(await advisoryHeld(url, 7220)).toBe(0);
        await anotherMachineAppends(url);
      } finally {
        await sync?.close();
        sync = null;
      }
    },
    60_000,
  );
});

async function storeVault(url: string): Promise<{ generation: number; document: string }> {
  const rows = await pg.get().sql(url, 'SELECT document FROM vault WHERE id = 1') as Array<
    { document: string }
  >;
  const document = rows[0]!.document;
  return { generation: JSON.parse(document).body.generation as number, document };
}

describe.skipIf(!pg.available)('what a vault save sends to the store', () => {
  it('the document it saved, not what the agent wrote into vault.json after the save', async () => {
    const url = await newStore();
    const a = await copy(url, 'a');
    try {
      const state = openState(a.home, { sync: a.sync });
      const keys = unsealed(a.home);
      // The agent kept a copy of an older vault.json (or writes garbage: the same path).
      const old = fs.readFileSync(path.join(a.dir, 'vault.json'));
      const before = (await storeVault(url)).generation;
      agent.bytes = old;
      agent.when = (text) => JSON.parse(text).body.change_in_flight === false;
      await resync(state, keys, { acceptOlder: true });
      expect(agent.when).toBeNull();
      // The store holds the change as saved, never the older copy: every other machine takes
      // the store's document, so the agent's write would roll back (or break) all of them.
      const stored = await storeVault(url);
      expect(stored.document).not.toBe(old.toString('utf8'));
      expect(stored.generation).toBe(before + 2);
    } finally {
      agent.when = null;
      await a.sync.close();
    }
  }, 60_000);

  it(
    'a save built on an older vault.json swapped in under the lock is refused, the store kept',
    async () => {
      const url = await newStore();
      const a = await copy(url, 'a');
      try {
        const state = openState(a.home, { sync: a.sync });
        const keys = unsealed(a.home);
        const old = fs.readFileSync(path.join(a.dir, 'vault.json'));
        // A head write moves the store's document on (no change entry: nothing to call it missed).
        const head = await state.audit.writer({ macKey: keys.auditKeys }).append([{
          event: 'vault.saved',
          actor: { type: 'operator' },
          outcome: 'ok',
          data: { generation: 0 },
        }]);
        await state.vault.recordHead(keys, head);
        const current = await storeVault(url);
        // The agent puts its older copy back, and again right after the lock brought the store's in.
        fs.writeFileSync(path.join(a.dir, 'vault.json'), old);
        agent.bytes = old;
        agent.when = (text) => JSON.parse(text).body.generation === current.generation;
        const change = resync(state, keys);
        await expect(change).rejects.toMatchObject({ code: 'vault_rollback' });
        expect(agent.when).toBeNull();
        expect((await storeVault(url)).document).toBe(current.document);
      } finally {
        agent.when = null;
        await a.sync.close();
      }
    },
    60_000,
  );
});

/** `sync` with `afterLock` run once the store's audit lock is taken (the agent's moment). */
function racingAppends(sync: StoreSync, afterLock: () => void): StoreSync {
  return {
    location: sync.location,
    pull: (h) => sync.pull(h),
    appendLock: async (d) => {
      const held = await sync.appendLock(d);
      afterLock();
      return held;
    },
    vaultLock: (h, o) => sync.vaultLock(h, o),
    pushBrake: (n, r, j) => sync.pushBrake(n, r, j),
    dropBrakes: (n) => sync.dropBrakes(n),
    watch: (h, o) => sync.watch(h, o),
    close: () => sync.close(),
  };
}

describe.skipIf(!pg.available)('what an append sends to the store', () => {
  it(
    "only entries that continue the store's trail, whatever the agent appends to the home's log meanwhile",
    async () => {
      const url = await newStore();
      const a = await copy(url, 'a');
      try {
        const log = path.join(a.dir, 'audit', 'audit.log');
        let raced = false;
        // The agent appends one chained, password-less line to the home's log after the pull under
        // the store's lock made the home equal to the store (the same user writes the file).
        const sync = racingAppends(a.sync, () => {
          if (raced) return;
          raced = true;
          const lines = fs.readFileSync(log, 'utf8').trimEnd().split('\n');
          const last = lines[lines.length - 1]!;
          const seq = (JSON.parse(last) as { seq: number }).seq + 1;
          // Through a descriptor: Deno's appendFileSync also chmods the file to 0666, which the
          // log's writer then refuses for that reason instead of the one under test.
          const fd = fs.openSync(log, 'a');
          fs.writeSync(
            fd,
            `{"v":1,"seq":${seq},"ts":"${new Date().toISOString()}","event":"brake.activate",` +
              `"actor":{"type":"anyone"},"outcome":"ok","data":{"brake":"brk_0000000000000000",` +
              `"scope":"global","target":null,"reason":"agent"},"prev":"${lineDigest(last)}",` +
              `"mac":null}\n`,
          );
          fs.closeSync(fd);
        });
        const state = openState(a.home, { sync });
        const appended = state.audit.writer({ macKey: null }).append([{
          event: 'brake.activate',
          actor: { type: 'anyone' },
          outcome: 'ok',
          data: { brake: 'brk_1111111111111111', scope: 'global', target: null, reason: 'x' },
        }]);
        // Refused: nothing of it stored, nothing answered as done.
        await expect(appended).rejects.toThrow(/store_diverged/);
        expect(raced).toBe(true);
        // The store's trail is still one chain: a fresh copy pulls it whole and appends to it.
        const rows = await pg.get().sql(
          url,
          'SELECT seq, line FROM audit_entries ORDER BY seq',
        ) as Array<{ seq: string; line: string }>;
        rows.forEach((r, i) => {
          expect(Number(r.seq)).toBe(i + 1);
          if (i > 0) expect(JSON.parse(r.line).prev).toBe(lineDigest(rows[i - 1]!.line));
        });
        await anotherMachineAppends(url);
      } finally {
        await a.sync.close();
      }
    },
    60_000,
  );
});

describe.skipIf(!pg.available)("a pull while the store's vault lock is held elsewhere", () => {
  it('still brings in a brake placed on another machine at once', async () => {
    const url = await newStore();
    const a = await copy(url, 'a');
    const { default: postgres } = await import('postgres');
    // Another machine's process hangs (stopped, its session alive) holding the store's vault lock.
    const peer = postgres(url, { max: 1, onnotice: () => {} });
    let change: Promise<unknown> | null = null;
    try {
      await peer`SELECT pg_advisory_lock(7221)`;
      // A vault change on machine a waits for it, holding a's home vault lock meanwhile.
      const state = openState(a.home, { sync: a.sync });
      const keys = unsealed(a.home);
      change = resync(state, keys, { acceptOlder: true }).catch((e) => e);
      await new Promise((r) => setTimeout(r, 300));
      // A brake placed on machine b...
      const b = path.join(t.dir, `b-${Math.random().toString(16).slice(2, 8)}`);
      const placed = await t.tp([
        '--home',
        b,
        '--store',
        url,
        'emergency',
        'activate',
        '--reason',
        'b',
      ]);
      expect(placed.code, placed.stderr).toBe(0);
      // ...reaches a's home with its next pull, not 30 s later.
      const pulled = a.sync.pull(a.home).then(() => 'pulled', (e) => e);
      const first = await Promise.race([
        pulled,
        // Below the 10 s and 30 s a pull waiting on a held lock would take; above a loaded pull.
        new Promise((r) => setTimeout(() => r('waiting'), 8000)),
      ]);
      const records = fs.readdirSync(path.join(a.dir, 'brakes')).filter((f) =>
        f.startsWith('brk_')
      );
      expect(records.length, `pull: ${String(first)}`).toBe(1);
      await peer`SELECT pg_advisory_unlock(7221)`;
      await pulled;
    } finally {
      await peer.end({ timeout: 1 });
      await change;
      await a.sync.close();
    }
  }, 90_000);
});

describe.skipIf(!pg.available)('a brake while the store cannot be reached', () => {
  it('is placed in the home all the same (exit 6: the others were not told)', async () => {
    const url = await newStore();
    const dir = path.join(t.dir, `down-${Math.random().toString(16).slice(2, 8)}`);
    const tp = (args: string[]) => t.tp(['--home', dir, '--store', url, ...args]);
    expect((await tp(['emergency', 'status'])).code).toBe(0);
    pg.get().kill();
    try {
      const r = await tp(['emergency', 'activate', '--reason', 'database down, stop now']);
      expect(r.code, r.stderr).toBe(6);
      expect(r.stderr).toContain('in force on this machine');
      const records = fs.readdirSync(path.join(dir, 'brakes')).filter((f) => f.startsWith('brk_'));
      expect(records.length).toBe(1);
    } finally {
      pg.get().start();
    }
    // The home did not move ahead of the store's trail: it goes on with the store.
    const st = await tp(['--json', 'emergency', 'status']);
    expect(st.code, st.stderr).toBe(0);
    expect(st.stdout).toContain('database down, stop now');
  }, 60_000);
});
