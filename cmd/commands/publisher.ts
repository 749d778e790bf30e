/** `publisher add|list|revoke` (SPEC §11): the skill signers this vault trusts. */
import { Buffer } from 'node:buffer';
import { escapeControls } from '../../src/bytes.ts';
import { publicKeyProblem } from '../../src/crypto/ed25519.ts';
import { usage } from '../../src/errors.ts';
import { checkName } from '../../src/skills/comment.ts';
import { keyIdHex, parsePublicKey } from '../../src/skills/keys.ts';
import { addPublisher, revokePublisher } from '../../src/skills/publishers.ts';
import { type PublisherRecord, wipeKeys } from '../../src/vault.ts';
import { type Command, PASSWORD_FILE_OPTION, str, tableText } from '../context.ts';
import { sees } from '../../src/orgs.ts';
import { existingState, newObjectOrg, ORG_OPTION, unsealVault, viewer } from '../home_state.ts';
import { readUserFile } from '../io.ts';

const REASON_MAX = 1000;

const add: Command = {
  words: ['publisher', 'add'],
  summary: 'trust a skill signer: NAME and its minisign public key file (password needed)',
  usage: 'publisher add NAME PUBFILE [--password-file PATH] [--org ORG]',
  options: { ...PASSWORD_FILE_OPTION, ...ORG_OPTION },
  examples: ['trust-protocol publisher add acme acme.pub'],
  args: { min: 2, max: 2 },
  async run(ctx) {
    const [rawName, pubFile] = ctx.positionals as [string, string];
    const name = _publisherName(rawName);
    const key = parsePublicKey(readUserFile(pubFile, 'public key file', 64 * 1024));
    const weak = publicKeyProblem(key.publicKey);
    if (weak !== null) {
      throw usage(
        'weak_key',
        `refusing the key in ${pubFile}: it is ${
          weak === 'non_canonical'
            ? 'a non-canonical encoding'
            : weak === 'malformed'
            ? 'not a curve point'
            : 'a small-order point (it would verify forged signatures)'
        }`,
      );
    }
    const { state, keys } = await unsealVault(ctx);
    let record: PublisherRecord;
    try {
      record = {
        name,
        key_id: keyIdHex(key.keyId),
        public_key: Buffer.from(key.publicKey).toString('base64'),
        added_at: ctx.now().toISOString(),
        revoked_at: null,
        revoke_reason: null,
        ...newObjectOrg(ctx, keys),
      };
      await state.vault.update(keys, (body) => addPublisher(body, record));
    } finally {
      wipeKeys(keys);
    }
    return {
      json: record,
      text: `Publisher ${name} added (key ${record.key_id}). Verify its skills with ` +
        `\`trust-protocol skill verify DIR --publisher ${name}\`.\n`,
      informational: true,
    };
  },
};

const list: Command = {
  words: ['publisher', 'list'],
  summary: 'list trusted and revoked skill publishers (no password needed)',
  usage: 'publisher list',
  options: {},
  examples: ['trust-protocol publisher list', 'trust-protocol publisher list --json'],
  args: { min: 0, max: 0 },
  run(ctx) {
    const file = existingState(ctx).vault.read();
    const who = viewer(ctx, file);
    const publishers = file.body.publishers.filter((p) => sees(who, p));
    const rows = publishers.map((p) => [
      escapeControls(p.name),
      p.key_id,
      p.revoked_at === null ? 'trusted' : 'revoked',
      p.revoked_at ?? p.added_at,
      escapeControls(p.revoke_reason ?? ''),
    ]);
    return {
      json: publishers,
      text: rows.length === 0
        ? 'No publishers. Add one with `trust-protocol publisher add NAME PUBFILE`.\n'
        : tableText([['NAME', 'KEY ID', 'STATUS', 'SINCE', 'REASON'], ...rows], {
          color: ctx.color,
        }),
    };
  },
};

const revoke: Command = {
  words: ['publisher', 'revoke'],
  summary: 'stop trusting a publisher: its skills fail verification from now on (password needed)',
  usage: 'publisher revoke NAME --reason TEXT [--password-file PATH]',
  options: {
    ...PASSWORD_FILE_OPTION,
    reason: { type: 'string', value: 'TEXT', help: 'why, for the record (required)' },
  },
  examples: ['trust-protocol publisher revoke acme --reason "signing key stolen"'],
  args: { min: 1, max: 1 },
  async run(ctx) {
    const name = ctx.positionals[0] as string;
    const reason = (str(ctx, 'reason') ?? '').trim();
    if (reason === '') {
      throw usage('bad_reason', 'publisher revoke needs --reason TEXT (why, for the record)');
    }
    if (reason.length > REASON_MAX) {
      throw usage('bad_reason', `--reason is longer than ${REASON_MAX} characters`);
    }
    const { state, keys } = await unsealVault(ctx);
    let revoked: PublisherRecord;
    try {
      revoked = await state.vault.update(
        keys,
        (body) => revokePublisher(body, { name, reason, now: ctx.now() }),
      );
    } finally {
      wipeKeys(keys);
    }
    return {
      json: revoked,
      text:
        `Publisher ${revoked.name} (key ${revoked.key_id}) is revoked: its skills fail verification.\n`,
      informational: true,
    };
  },
};

function _publisherName(name: string): string {
  try {
    return checkName(name);
  } catch {
    throw usage(
      'bad_name',
      'a publisher name is 1 to 64 letters, digits, dots, dashes or underscores, starting with a letter or digit',
    );
  }
}

export const publisherCommands: Command[] = [add, list, revoke];
