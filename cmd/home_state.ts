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
import { adminName, type Ctx, str } from './context.ts';
import { readPassword } from './secrets.ts';

export function existingHome(ctx: Ctx): Home {
  return openHome(ctx.homeDir, { create: false });
}

/** The existing home's vault, audit log and brakes (src/state.ts). */
export function existingState(ctx: Ctx): State {
  return openState(existingHome(ctx));
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
