/** `admin add|list|remove|passwd` (issue #19, SPEC §15): key slots and roles. */
import { checkAdminName, type Role, ROLES } from '../../src/admins.ts';
import { KDF_DEFAULT } from '../../src/crypto/kdf.ts';
import { usage } from '../../src/errors.ts';
import { checkOrgName } from '../../src/orgs.ts';
import { adminKdf, adminsOf, wipeKeys } from '../../src/vault.ts';
import { type Command, PASSWORD_FILE_OPTION, str, tableText } from '../context.ts';
import { existingState, unsealVault } from '../home_state.ts';
import { readPassword } from '../secrets.ts';
import { kdfParamsOf, passwdCommand } from './vault.ts';
import { oidcCommands } from './admin_oidc.ts';
import { checkLink } from '../../src/oidc/config.ts';

const add: Command = {
  words: ['admin', 'add'],
  summary: 'add an admin with their own password and a role (owner only)',
  usage:
    'admin add NAME --role owner|admin|operator|auditor [--org ORG] [--issuer URL --subject SUB] [--new-password-file PATH] [--kdf-memory-mib N] [--kdf-iterations N]',
  help:
    'The new admin gets a key slot of their own: their password opens the vault with their role.\n' +
    'owner: everything, including admins; admin: credentials, agents, publishers; operator:\n' +
    'brakes, agent suspend/resume, reads; auditor: audit verify/export/prove/checkpoint, reads.\n' +
    'With --org, the admin sees and changes only the credentials, agents, publishers and brakes\n' +
    'of that organisation (owners are always instance-wide); without it, everything.\n' +
    'With --issuer and --subject, the same change links that OIDC identity to the new admin, as\n' +
    '`admin link` would (the issuer configured, the identity not linked to another admin).',
  options: {
    ...PASSWORD_FILE_OPTION,
    role: { type: 'string', value: 'ROLE', help: 'owner, admin, operator or auditor' },
    org: {
      type: 'string',
      value: 'ORG',
      help: 'confine the admin to one organisation (not with --role owner)',
    },
    issuer: {
      type: 'string',
      value: 'URL',
      help: 'with --subject: a configured OIDC issuer (`admin oidc add`) to link',
    },
    subject: {
      type: 'string',
      value: 'SUB',
      help: "with --issuer: the identity's sub claim; it signs in as the new admin",
    },
    'new-password-file': {
      type: 'string',
      value: 'PATH',
      help:
        "file holding the new admin's password (else typed twice at a no-echo prompt; never TRUST_PROTOCOL_PASSWORD)",
    },
    'kdf-memory-mib': {
      type: 'string',
      value: 'N',
      help: "Argon2id memory in MiB for the new slot (default: the acting admin's)",
    },
    'kdf-iterations': {
      type: 'string',
      value: 'N',
      help: "Argon2id passes for the new slot (default: the acting admin's)",
    },
  },
  examples: [
    'trust-protocol admin add ci-auditor --role auditor --org acme --new-password-file auditor.txt',
    'trust-protocol admin add bob --role operator --issuer https://login.example.com --subject 248289761001',
  ],
  args: { min: 1, max: 1 },
  async run(ctx) {
    const name = checkAdminName(ctx.positionals[0] as string);
    const role = str(ctx, 'role');
    if (role === undefined || !(ROLES as readonly string[]).includes(role)) {
      throw usage('bad_flag', `--role must be one of ${ROLES.join(', ')}`);
    }
    const orgFlag = str(ctx, 'org');
    const org = orgFlag === undefined ? undefined : checkOrgName(orgFlag);
    if (org !== undefined && role === 'owner') {
      throw usage(
        'bad_flag',
        'an owner is instance-wide: --org goes with --role admin, operator or auditor',
      );
    }
    const issuer = str(ctx, 'issuer');
    const subject = str(ctx, 'subject');
    if ((issuer === undefined) !== (subject === undefined)) {
      throw usage('bad_flag', '--issuer and --subject go together: the identity to link');
    }
    const link = issuer === undefined ? undefined : { issuer, subject: subject as string };
    const newFile = str(ctx, 'new-password-file');
    if (newFile === undefined && !ctx.io.isTerminal) {
      throw usage(
        'no_new_password',
        "the new admin's password is needed: pass --new-password-file PATH or run in a terminal",
      );
    }
    const { state, file, keys } = await unsealVault(ctx);
    try {
      // Before the new password is asked for; again under the vault lock (linkAdmin).
      if (link !== undefined) checkLink(file, { admin: name, ...link });
      const params = (str(ctx, 'kdf-memory-mib') ?? str(ctx, 'kdf-iterations')) === undefined
        ? adminKdf(file, keys.admin.name) ?? KDF_DEFAULT
        : kdfParamsOf(ctx);
      const password = await readPassword({ ...ctx.io, env: {} }, {
        passwordFile: newFile,
        isNew: true,
        prompt: `Password for admin ${name}: `,
      });
      try {
        const admin = { name, role: role as Role, ...(org === undefined ? {} : { org }) };
        await state.vault.addAdmin(keys, admin, password, params, ctx.now(), {
          ...(link === undefined ? {} : { link }),
        });
      } finally {
        password.fill(0);
      }
    } finally {
      wipeKeys(keys);
    }
    return {
      json: { name, role, org: org ?? null, link: link ?? null },
      text: `Added admin ${name} (${role}${org === undefined ? '' : `, organisation ${org}`}).\n` +
        (link === undefined
          ? ''
          : `${link.issuer} subject ${link.subject} signs in as admin ${name}.\n`),
      informational: true,
    };
  },
};

const list: Command = {
  words: ['admin', 'list'],
  summary: 'list the admins and their roles (no password; unverified)',
  usage: 'admin list',
  help: 'Read without the password, so the vault MAC is not checked: a same-user edit of\n' +
    'vault.json shows here as it is (it is detected, exit 8, when anyone unseals).',
  options: {},
  examples: ['trust-protocol admin list', 'trust-protocol admin list --json'],
  args: { min: 0, max: 0 },
  run(ctx) {
    const file = existingState(ctx).vault.read();
    const admins = adminsOf(file);
    return {
      json: { admins, verified: false },
      text: tableText([
        ['NAME', 'ROLE', 'ORG', 'CREATED'],
        ...admins.map((a) => [a.name, a.role, a.org ?? '-', a.created_at]),
      ], { color: ctx.color }),
      quiet: admins.map((a) => `${a.name}\n`).join(''),
    };
  },
};

const remove: Command = {
  words: ['admin', 'remove'],
  summary: "remove an admin's key slot (owner only; never the last owner)",
  usage: 'admin remove NAME',
  help: 'The data key stays the same: a copy of vault.json taken before the removal still opens\n' +
    "with the removed admin's password. Run `trust-protocol vault rekey` after it.\n" +
    'See docs/threat-model.md.',
  options: { ...PASSWORD_FILE_OPTION },
  examples: ['trust-protocol admin remove alice'],
  args: { min: 1, max: 1 },
  async run(ctx) {
    const name = ctx.positionals[0] as string;
    const { state, keys } = await unsealVault(ctx);
    try {
      await state.vault.removeAdmin(keys, name);
    } finally {
      wipeKeys(keys);
    }
    return { json: { removed: name }, text: `Removed admin ${name}.\n`, informational: true };
  },
};

export const adminCommands: Command[] = [
  add,
  list,
  remove,
  passwdCommand(['admin', 'passwd']),
  ...oidcCommands,
];
