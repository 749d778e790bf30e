/** Audit entries serve writes itself (start, stop, its own refusals), under the key it holds. */
import { TpError } from '../errors.ts';
import type { Appended, AuditEvent } from '../audit.ts';
import type { State } from '../state.ts';
import type { AuditHead, VaultKeys } from '../vault.ts';

/** Appends, and says where the last event landed (its seq names a refusal's entry). */
export type AppendAudit = (events: readonly AuditEvent[]) => Promise<Appended>;

export interface HeadRecorder {
  /** Takes note of a newer head; it reaches the vault within `intervalMs`. */
  record(head: AuditHead): Promise<void>;
  /** Writes the last head now; throws if any write failed. */
  flush(): Promise<void>;
}

/**
 * How often serve records the audit head at most: the window of a cut tail not caught against
 * the vault if serve is killed (docs/decisions.md, "every 250 ms"). A head write is a vault
 * write (lock, two fsyncs, a rename) on serve's event loop; at 10 ms it took a third of the
 * keeper's busy time under load (issue #17).
 */
export const HEAD_INTERVAL_MS = 250;

/**
 * serve records the audit head in the vault off the request path: at most once per interval and
 * when it stops, instead of a vault write per request. The interval is short on purpose, as it
 * is a window: if serve is killed, a cut of the log's last entries (at most `intervalMs` of them)
 * is not detected against the vault's head (docs/threat-model.md). A failed write (say, the
 * vault was restored from an older copy) fails every later request (fail closed).
 */
export function deferredHeads(
  state: State,
  keys: VaultKeys,
  intervalMs = HEAD_INTERVAL_MS,
): HeadRecorder {
  let latest: AuditHead | null = null;
  let timer: ReturnType<typeof setTimeout> | null = null;
  let failure: unknown = null;
  let unreachable: TpError | null = null;
  let writing: Promise<void> = Promise.resolve();
  const write = (): Promise<void> => {
    if (timer !== null) clearTimeout(timer);
    timer = null;
    const head = latest;
    latest = null;
    if (head !== null) {
      writing = writing.then(() => state.vault.recordHead(keys, head)).then(() => {
        unreachable = null;
      }, (e) => {
        // The team store out of reach (#19): its appends fail too, so no request is answered
        // meanwhile; the head is written with the next one once it is back. Anything else
        // (a rollback, a vault that does not verify) stops every later request.
        if (e instanceof TpError && e.code === 'store_unavailable') {
          unreachable = e;
          if (latest === null || head.seq > latest.seq) latest = head;
          return;
        }
        failure ??= e;
      });
    }
    return writing;
  };
  return {
    record(head) {
      if (failure !== null) return Promise.reject(failure);
      if (latest === null || head.seq > latest.seq) latest = head;
      timer ??= setTimeout(() => void write(), intervalMs);
      return Promise.resolve();
    },
    async flush() {
      await write();
      if (failure !== null) throw failure;
      if (unreachable !== null) throw unreachable;
    },
  };
}

/** Appends with the audit key and records the new head in the vault, as every password holder does. */
export function keyedAudit(
  state: State,
  keys: VaultKeys,
  heads: HeadRecorder,
  clock?: () => Date,
): AppendAudit {
  const writer = state.audit.writer({ macKey: keys.auditKeys, ...(clock ? { clock } : {}) });
  return async (events) => {
    const head = await writer.append(events);
    await heads.record(head);
    return head;
  };
}
