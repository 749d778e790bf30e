/**
 * The transparency commands (issue #18, SPEC §10): `audit key`, `audit prove`,
 * `audit verify-proof`, `audit witness-key`, `audit cosign`. Formats in docs/formats.md.
 */
import { Buffer } from 'node:buffer';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readLogChunks, type TrailOptions } from '../../src/audit.ts';
import { AuditVerifier, type VerifyOptions, type VerifyResult } from '../../src/audit_verify.ts';
import { randomKey } from '../../src/crypto/aead.ts';
import { publicKeyOf } from '../../src/crypto/ed25519.ts';
import { TpError, usage } from '../../src/errors.ts';
import type { Home } from '../../src/home.ts';
import { writeAtomic } from '../../src/home.ts';
import type { State } from '../../src/state.ts';
import {
  ALG_COSIGNATURE_V1,
  ALG_ED25519,
  cosign,
  formatVerifierKey,
  openCheckpoint,
  parseVerifierKey,
  signCheckpoint,
  validName,
} from '../../src/tlog/note.ts';
import { extendsTree, parseProof, proveInclusion, verifyProof } from '../../src/tlog/proof.ts';
import { LeafStream } from '../../src/tlog/tree_store.ts';
import {
  type AuditSigning,
  auditSigningSeed,
  newAuditSigning,
  unseal,
  type VaultFile,
  type VaultKeys,
  wipeKeys,
} from '../../src/vault.ts';
import { adminName, type Command, list, PASSWORD_FILE_OPTION, str } from '../context.ts';
import { existingState } from '../home_state.ts';

/** Where readers of the whole log also look for closed segments moved out of the home. */
export const SEGMENTS_OPTION = {
  segments: {
    type: 'string',
    value: 'DIR',
    multiple: true,
    help: 'also look for closed audit segments (NNNNNN-FIRST-LAST.log[.gz]) in DIR',
  },
} as const;
import { readUserFile } from '../io.ts';
import { readPassword } from '../secrets.ts';

/** Verifies the log block by block, computing its Merkle tree from it in the same pass. */
export function verifyLog(
  home: Home,
  options: VerifyOptions,
  trail: TrailOptions = {},
): VerifyResult & { tree: LeafStream } {
  const verifier = new AuditVerifier(options);
  const tree = new LeafStream();
  for (const chunk of readLogChunks(home, trail)) {
    verifier.update(chunk);
    tree.update(chunk);
  }
  return Object.assign(verifier.finish(), { tree });
}

export function logVerifierKey(signing: AuditSigning): string {
  return formatVerifierKey(signing.origin, ALG_ED25519, Buffer.from(signing.public_key, 'base64'));
}

/** The vault's checkpoint key, created (and recorded) on first use in a vault from before #18. */
export async function signingKey(
  state: State,
  file: VaultFile,
  keys: VaultKeys,
  now: Date,
): Promise<AuditSigning> {
  if (file.body.audit_signing !== undefined) return file.body.audit_signing;
  return await state.vault.update(keys, (body) => {
    if (body.audit_signing !== undefined) return { result: body.audit_signing, events: [] };
    const signing = newAuditSigning(keys, now);
    body.audit_signing = signing;
    return {
      result: signing,
      events: [{
        event: 'audit.key_created',
        actor: { type: 'operator' },
        outcome: 'ok',
        data: { origin: signing.origin, public_key: signing.public_key },
      }],
    };
  });
}

async function _unsealed(ctx: Parameters<Command['run']>[0]) {
  const state = existingState(ctx);
  const file = state.vault.read();
  const password = await readPassword(ctx.io, { passwordFile: str(ctx, 'password-file') });
  let keys: VaultKeys;
  try {
    keys = unseal(file, password, { admin: adminName(ctx) });
  } finally {
    password.fill(0);
  }
  return { state, file, keys };
}

function _text(file: string, what: string): string {
  return Buffer.from(readUserFile(file, what, 1024 * 1024)).toString('utf8');
}

const key: Command = {
  words: ['audit', 'key'],
  summary: "print the log's verifier key, to publish for checking checkpoints and proofs",
  usage: 'audit key [--password-file PATH]',
  help:
    "NAME+KEYID+BASE64, as Go's golang.org/x/mod/sumdb/note reads it. Needs the password: the\n" +
    'key is read from the vault with its MAC checked (and created in a vault from before 0.4).',
  options: { ...PASSWORD_FILE_OPTION },
  examples: ['trust-protocol audit key > log.vkey'],
  args: { min: 0, max: 0 },
  async run(ctx) {
    const { state, file, keys } = await _unsealed(ctx);
    try {
      const signing = await signingKey(state, file, keys, ctx.now());
      const verifier = logVerifierKey(signing);
      return { json: { origin: signing.origin, verifier }, text: `${verifier}\n` };
    } finally {
      wipeKeys(keys);
    }
  },
};

const prove: Command = {
  words: ['audit', 'prove'],
  summary: 'write an inclusion proof of entry SEQ against a checkpoint',
  usage:
    'audit prove SEQ [--checkpoint FILE] [--segments DIR]... [--password-file PATH] > proof.json',
  help: 'With --checkpoint (a note from `audit checkpoint`) no password is needed; without it a\n' +
    'fresh checkpoint is signed (password). Check the proof with `audit verify-proof`.',
  options: {
    checkpoint: { type: 'string', value: 'FILE', help: 'the checkpoint note to prove against' },
    ...SEGMENTS_OPTION,
    ...PASSWORD_FILE_OPTION,
  },
  examples: ['trust-protocol audit prove 42 --checkpoint checkpoint.txt > proof.json'],
  args: { min: 1, max: 1 },
  async run(ctx) {
    const seqText = ctx.positionals[0] as string;
    if (!/^[1-9]\d{0,15}$/.test(seqText)) {
      throw usage(
        'bad_arguments',
        'SEQ must be an entry number (1 or more), as `audit show` lists',
      );
    }
    const file = str(ctx, 'checkpoint');
    const trail = { segments: list(ctx, 'segments') };
    let note: string;
    let home: Home;
    if (file !== undefined) {
      note = _text(file, 'checkpoint file');
      home = existingState(ctx).home;
    } else {
      const { state, file: vault, keys } = await _unsealed(ctx);
      home = state.home;
      try {
        const signing = await signingKey(state, vault, keys, ctx.now());
        const result = verifyLog(home, {
          macKey: keys.auditKeys,
          recordedHead: state.vault.read().body.audit_head,
        }, trail);
        if (!result.ok) {
          throw new TpError('verification', 'audit_not_intact', 'the audit log does not verify', {
            hint: 'run `trust-protocol audit verify` to see the problems',
          });
        }
        const seed = auditSigningSeed(keys, signing);
        note = signCheckpoint(signing.origin, result.tree.size, result.tree.root(), seed);
        seed.fill(0);
      } finally {
        wipeKeys(keys);
      }
    }
    const proof = await proveInclusion(home, Number(seqText), note, trail);
    return { json: proof, text: JSON.stringify(proof, null, 2) + '\n' };
  },
};

const verifyProofCmd: Command = {
  words: ['audit', 'verify-proof'],
  summary: "check an inclusion proof with the log's verifier key only (no password, no vault)",
  usage: 'audit verify-proof PROOF --key VERIFIER',
  options: {
    key: {
      type: 'string',
      value: 'VERIFIER',
      help: "the log's verifier key (NAME+KEYID+BASE64, as `audit key` printed it)",
    },
  },
  examples: ['trust-protocol audit verify-proof proof.json --key "$(cat log.vkey)"'],
  args: { min: 1, max: 1 },
  run(ctx) {
    const k = str(ctx, 'key');
    if (k === undefined) throw usage('bad_flag', 'audit verify-proof needs --key VERIFIER');
    const p = parseProof(_text(ctx.positionals[0] as string, 'proof file'));
    const c = verifyProof(p, parseVerifierKey(k));
    let entry: unknown;
    try {
      entry = JSON.parse(p.entry);
    } catch {
      entry = null;
    }
    return {
      json: { ok: true, origin: c.origin, tree_size: c.size, seq: p.seq, entry },
      text:
        `entry ${p.seq} is in the log ${c.origin} (checkpoint of ${c.size} entries):\n${p.entry}\n`,
    };
  },
};

/** A witness key file: one line, `PRIVATE+KEY+NAME+KEYID+BASE64(0x04 || seed)`. */
function _readWitnessKey(file: string): { name: string; seed: Uint8Array } {
  const text = Buffer.from(readUserFile(file, 'witness key file', 4096, { secret: true }))
    .toString('utf8').trim();
  const m = /^PRIVATE\+KEY\+([^+\s]+)\+([0-9a-f]{8})\+([A-Za-z0-9+/]+=*)$/.exec(text);
  const raw = m === null ? null : Buffer.from(m[3]!, 'base64');
  if (m === null || raw === null || raw.length !== 33 || raw[0] !== ALG_COSIGNATURE_V1) {
    throw usage('bad_key', `${file} is not a witness key file (from \`audit witness-key\`)`);
  }
  return { name: m[1]!, seed: new Uint8Array(raw.subarray(1)) };
}

const witnessKey: Command = {
  words: ['audit', 'witness-key'],
  summary: 'create a witness key (C2SP tlog-cosignature) in a new file; print its verifier key',
  usage: 'audit witness-key NAME --out FILE',
  options: {
    out: { type: 'string', value: 'FILE', help: 'where to write the private key (created 0600)' },
  },
  examples: ['trust-protocol audit witness-key witness.example/w1 --out witness.key'],
  args: { min: 1, max: 1 },
  run(ctx) {
    const name = ctx.positionals[0] as string;
    const out = str(ctx, 'out');
    if (out === undefined) throw usage('bad_flag', 'audit witness-key needs --out FILE');
    if (!validName(name)) {
      throw usage(
        'bad_arguments',
        'a witness name has no spaces or "+" (say example.org/witness1)',
      );
    }
    const seed = randomKey();
    const pub = publicKeyOf(seed);
    const id = formatVerifierKey(name, ALG_COSIGNATURE_V1, pub).split('+')[1];
    const body = `PRIVATE+KEY+${name}+${id}+${
      Buffer.from([ALG_COSIGNATURE_V1, ...seed]).toString('base64')
    }\n`;
    seed.fill(0);
    let fd: number;
    try {
      fd = fs.openSync(out, 'wx', 0o600);
    } catch (e) {
      throw usage('unreadable_file', `cannot create ${out} (${(e as { code?: string }).code})`);
    }
    try {
      fs.writeFileSync(fd, body);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    const verifier = formatVerifierKey(name, ALG_COSIGNATURE_V1, pub);
    return { json: { name, verifier }, text: `${verifier}\n` };
  },
};

interface WitnessState {
  format: 'trust-protocol/witness-state';
  version: 1;
  logs: Record<string, { log_key: string; size: number; root: string; checkpoint: string }>;
}

function _readState(file: string): WitnessState {
  if (!fs.existsSync(file)) return { format: 'trust-protocol/witness-state', version: 1, logs: {} };
  const parsed = JSON.parse(_text(file, 'witness state file')) as WitnessState;
  if (parsed.format !== 'trust-protocol/witness-state' || parsed.version !== 1) {
    throw usage('bad_arguments', `${file} is not a witness state file`);
  }
  return parsed;
}

const cosignCmd: Command = {
  words: ['audit', 'cosign'],
  summary: 'as a witness: check a checkpoint extends the last one seen, then cosign it',
  usage: 'audit cosign CHECKPOINT --key WITNESS.key [--log-key VERIFIER] [--state FILE]',
  help: 'The witness remembers the largest checkpoint it cosigned per log (--state, default\n' +
    'WITNESS.key.state.json) and refuses one that is smaller (a rollback) or that the log in\n' +
    "--home cannot prove consistent with it (a rewritten history). --log-key pins the log's key\n" +
    'the first time. Prints the checkpoint with the cosignature added.',
  options: {
    key: { type: 'string', value: 'FILE', help: 'the witness key file (`audit witness-key`)' },
    'log-key': {
      type: 'string',
      value: 'VERIFIER',
      help: "the log's verifier key; needed the first time, then remembered in the state file",
    },
    state: { type: 'string', value: 'FILE', help: "the witness's state file" },
  },
  examples: [
    'trust-protocol audit cosign checkpoint.txt --key witness.key --log-key "$(cat log.vkey)"',
  ],
  args: { min: 1, max: 1 },
  async run(ctx) {
    const keyFile = str(ctx, 'key');
    if (keyFile === undefined) throw usage('bad_flag', 'audit cosign needs --key WITNESS.key');
    const stateFile = str(ctx, 'state') ?? `${keyFile}.state.json`;
    const witness = _readWitnessKey(keyFile);
    const note = _text(ctx.positionals[0] as string, 'checkpoint file');
    const state = _readState(stateFile);
    const origin = note.slice(0, note.indexOf('\n'));
    const seen = state.logs[origin];
    const given = str(ctx, 'log-key');
    if (seen !== undefined && given !== undefined && given.trim() !== seen.log_key) {
      throw new TpError(
        'verification',
        'checkpoint_key',
        `this witness knows ${origin} under another key: refusing to switch`,
      );
    }
    const logKey = given ?? seen?.log_key;
    if (logKey === undefined) {
      throw usage('bad_flag', `first cosignature for ${origin}: pass --log-key VERIFIER`);
    }
    const c = openCheckpoint(note, parseVerifierKey(logKey));
    if (seen !== undefined) {
      const root = new Uint8Array(Buffer.from(seen.root, 'base64'));
      if (c.size < seen.size) {
        throw new TpError(
          'verification',
          'witness_rollback',
          `rollback: this witness cosigned ${origin} at ${seen.size} entries, this checkpoint has ${c.size}`,
          { hint: 'the log was restored from an older copy or cut; find out who did it' },
        );
      }
      const home = existingState(ctx).home;
      if (!(await extendsTree(home, { size: seen.size, root }, c))) {
        throw new TpError(
          'verification',
          'not_consistent',
          `this checkpoint does not extend the one this witness cosigned at ${seen.size} entries: the log's history was rewritten`,
        );
      }
    }
    const time = Math.floor(ctx.now().getTime() / 1000);
    const cosigned = cosign(note, witness.name, witness.seed, time);
    witness.seed.fill(0);
    state.logs[origin] = {
      log_key: logKey.trim(),
      size: c.size,
      root: Buffer.from(c.root).toString('base64'),
      checkpoint: note,
    };
    writeAtomic(
      path.dirname(path.resolve(stateFile)),
      path.basename(stateFile),
      JSON.stringify(state, null, 2) + '\n',
      0o600,
    );
    return { json: { checkpoint: cosigned }, text: cosigned };
  },
};

export const tlogCommands: Command[] = [key, prove, verifyProofCmd, witnessKey, cosignCmd];
