/** The home, its state and the vault, opened for a command (the helpers most commands share). */
import { type Home, openHome } from '../src/home.ts';
import { openState, type State } from '../src/state.ts';
import {
  type Change,
  unseal,
  type VaultBody,
  type VaultFile,
  type VaultKeys,
  type VerifiedVault,
  wipeKeys,
} from '../src/vault.ts';
import { checkOrgName, type OrgScoped } from '../src/orgs.ts';
import { adminName, type Ctx, type Flags, str } from './context.ts';
import { readPassword } from './secrets.ts';

export function existingHome(ctx: Ctx): Home {
  return openHome(ctx.homeDir, { create: false });
}

/** The existing home's vault, audit log and brakes (src/state.ts). */
export function existingState(ctx: Ctx): State {
  return openState(existingHome(ctx), { sync: ctx.sync ?? null });
}

export interface Unsealed {
  state: State;
  /** As read when the password was asked for, its MAC checked under the keys. */
  file: VerifiedVault;
  keys: VaultKeys;
}

export async function unsealVault(ctx: Ctx): Promise<Unsealed> {
  const state = existingState(ctx);
  const file: VaultFile = state.vault.read();
  const password = await readPassword(ctx.io, { passwordFile: str(ctx, 'password-file') });
  try {
    const keys = unseal(file, password, { admin: adminName(ctx) });
    // unseal checked the file's MAC under the keys it derived.
    return { state, file: file as VerifiedVault, keys };
  } finally {
    password.fill(0);
  }
}

/** Unseals, applies one vault change under the vault lock, and wipes the keys whatever happens. */
export async function changeVault<T>(
  ctx: Ctx,
  change: (body: VaultBody, keys: VaultKeys) => Change<T>,
): Promise<T> {
  const { state, keys } = await unsealVault(ctx);
  try {
    return await state.vault.update(keys, (body) => change(body, keys));
  } finally {
    wipeKeys(keys);
  }
}

/** `--org ORG` of `credential add`, `agent register`, `publisher add`. */
export const ORG_OPTION: Flags = {
  org: {
    type: 'string',
    value: 'ORG',
    help:
      "the organisation it belongs to (default: the acting admin's; an org's admin may name only its own)",
  },
};

/**
 * The organisation a new object gets: `--org`, else the acting admin's (absent: instance-wide).
 * An org's admin naming another org is refused when the change is checked (src/orgs.ts).
 */
export function newObjectOrg(ctx: Ctx, keys: VaultKeys): { org?: string } {
  const named = str(ctx, 'org');
  const org = named === undefined ? keys.admin.org : checkOrgName(named);
  return org === undefined ? {} : { org };
}

/**
 * Who is looking, for the password-less reads (list, show): the admin `--admin` or
 * TRUST_PROTOCOL_ADMIN names, from the unchecked slot list; null when none is named. A view, not
 * a boundary: the metadata is in vault.json for anyone who can read the home (threat model).
 */
export function viewer(ctx: Ctx, file: VaultFile): OrgScoped | null {
  const name = adminName(ctx);
  if (name === undefined) return null;
  const slot = file.slots.find((s) => s.name === name);
  return slot === undefined ? null : { name, ...(slot.org === undefined ? {} : { org: slot.org }) };
}
