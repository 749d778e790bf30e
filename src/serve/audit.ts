/** Audit entries serve writes itself (start, stop, its own refusals), under the key it holds. */
import { type AuditEvent, openAuditWriter } from '../audit.ts';
import type { Home } from '../home.ts';
import { recordAuditHead, type VaultKeys } from '../vault.ts';

export type AppendAudit = (events: readonly AuditEvent[]) => Promise<void>;

/** Appends with the audit key and records the new head in the vault, as every password holder does. */
export function keyedAudit(home: Home, keys: VaultKeys, clock?: () => Date): AppendAudit {
  const writer = openAuditWriter(home, { macKey: keys.audit, ...(clock ? { clock } : {}) });
  return async (events) => {
    const head = await writer.append(events);
    await recordAuditHead(home, keys, head);
  };
}
