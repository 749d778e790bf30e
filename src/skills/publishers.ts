/**
 * The skill signers a vault trusts (SPEC §11): the vault changes `publisher add` and `publisher
 * revoke` make. A revoked key or name is never trusted or reused again.
 */
import { escapeControls } from '../bytes.ts';
import { usage } from '../errors.ts';
import type { Change, PublisherRecord, VaultBody } from '../vault.ts';

export function addPublisher(body: VaultBody, record: PublisherRecord): Change<undefined> {
  const name = record.name;
  if (body.publishers.some((p) => p.name === name)) {
    throw usage(
      'publisher_exists',
      `a publisher named ${name} already exists (revoked names are not reused)`,
      'see `trust-protocol publisher list`',
    );
  }
  const same = body.publishers.find((p) =>
    p.key_id === record.key_id || p.public_key === record.public_key
  );
  if (same !== undefined) {
    throw usage(
      same.revoked_at === null ? 'key_exists' : 'key_revoked',
      same.revoked_at === null
        ? `key ${record.key_id} is already trusted as publisher ${same.name}`
        : `key ${record.key_id} was revoked (publisher ${same.name}, ${same.revoked_at}); a revoked key is never trusted again`,
    );
  }
  body.publishers.push(record);
  return {
    result: undefined,
    events: [{
      event: 'publisher.add',
      actor: { type: 'operator' },
      outcome: 'ok',
      data: {
        name,
        key_id: record.key_id,
        ...(record.org === undefined ? {} : { org: record.org }),
      },
    }],
  };
}

export function revokePublisher(
  body: VaultBody,
  input: { name: string; reason: string; now: Date },
): Change<PublisherRecord> {
  const p = body.publishers.find((x) => x.name === input.name);
  if (p === undefined) {
    throw usage(
      'no_such_publisher',
      `no publisher named ${JSON.stringify(escapeControls(input.name))}`,
      'see `trust-protocol publisher list`',
    );
  }
  if (p.revoked_at !== null) {
    throw usage(
      'already_revoked',
      `publisher ${p.name} was already revoked at ${p.revoked_at}`,
    );
  }
  p.revoked_at = input.now.toISOString();
  p.revoke_reason = input.reason;
  return {
    result: { ...p },
    events: [{
      event: 'publisher.revoke',
      actor: { type: 'operator' },
      outcome: 'ok',
      data: { name: p.name, key_id: p.key_id, reason: input.reason },
    }],
  };
}
