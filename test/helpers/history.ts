/**
 * Writes an agent's past requests into a test home's audit trail, with the real writer and the
 * real audit key (unsealed with the test password), so detection has a baseline to learn from
 * before a scripted agent acts through the CLI. Nothing is faked downstream: the entries are
 * chained and MACed exactly as exec would have written them, only with earlier timestamps.
 */
import { openHome } from '../../src/home.ts';
import { openState } from '../../src/state.ts';
import { unseal, wipeKeys } from '../../src/vault.ts';
import { PASSWORD, type TestHome } from './cli.ts';

export interface PastRequest {
  at: Date;
  host: string;
  credential: string;
  status: number;
  bytes: number;
}

export const HOUR = 3600_000;

/**
 * The detector counts requests, errors and denials per UTC clock hour, and raises off_hours once an
 * hour: a burst of CLI runs that straddles hh:00 counts as two halves (no anomaly, or a second
 * off_hours), which says nothing about the product. Called before such a burst: when less than `ms`
 * is left in this hour, waits until just after the next one begins (at most `ms` + 1 s; the test's
 * timeout allows for it).
 */
export async function awayFromHourEnd(ms: number): Promise<void> {
  const left = HOUR - (Date.now() % HOUR);
  if (left < ms) await new Promise((r) => setTimeout(r, left + 1000));
}

export async function seedHistory(
  t: TestHome,
  agent: string,
  requests: readonly PastRequest[],
): Promise<void> {
  const home = openHome(t.home, { create: false });
  const st = openState(home);
  const keys = unseal(st.vault.read(), new TextEncoder().encode(PASSWORD));
  try {
    let clock = new Date(0);
    const writer = st.audit.writer({ macKey: keys.audit, clock: () => clock });
    let head = null;
    for (const r of requests) {
      clock = r.at;
      const actor = { type: 'agent' as const, id: agent };
      const data = {
        credentials: [r.credential],
        method: 'GET',
        host: r.host,
        path: '/v1/items',
      };
      head = await writer.append([
        { event: 'request.allowed', actor, outcome: 'allowed', data },
        {
          event: 'request.completed',
          actor,
          outcome: 'ok',
          data: { ...data, status: r.status, bytes: r.bytes },
        },
      ]);
    }
    if (head !== null) await st.vault.recordHead(keys, head);
  } finally {
    wipeKeys(keys);
  }
}

/**
 * Two ordinary requests an hour, eight hours a day, for `days` days before `now`, never in the
 * UTC hour of `now` (so an attempt now is also off-hours).
 */
export function workingHours(
  now: Date,
  options: { days?: number; host?: string; credential?: string; bytes?: number } = {},
): PastRequest[] {
  const out: PastRequest[] = [];
  const today = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate());
  const firstHour = (now.getUTCHours() + 3) % 24;
  for (let d = options.days ?? 9; d >= 1; d--) {
    for (let h = 0; h < 8; h++) {
      const hour = (firstHour + h) % 24;
      for (const minute of [10, 40]) {
        out.push({
          at: new Date(today - d * 24 * HOUR + hour * HOUR + minute * 60_000),
          host: options.host ?? 'api.allowed.test',
          credential: options.credential ?? 'k',
          status: 200,
          bytes: (options.bytes ?? 120) + minute,
        });
      }
    }
  }
  return out.sort((a, b) => a.at.getTime() - b.at.getTime());
}
