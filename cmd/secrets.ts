/** Where the master password and the agent token come from (SPEC §2, §4). Never from argv. */
import { Buffer } from 'node:buffer';
import { TpError, usage } from '../src/errors.ts';
import { dropTrailingNewline, type Io, promptHidden, readUserFile } from './io.ts';

export const PASSWORD_ENV = 'TRUST_PROTOCOL_PASSWORD';
export const TOKEN_ENV = 'TRUST_PROTOCOL_TOKEN';
const MIN_NEW_PASSWORD = 8;

export interface PasswordOptions {
  passwordFile?: string | undefined;
  /** For a new password: ask twice at the prompt and enforce a minimum length. */
  isNew?: boolean;
  prompt?: string;
}

export async function readPassword(io: Io, options: PasswordOptions): Promise<Uint8Array> {
  let password: Uint8Array | null = null;
  if (options.passwordFile !== undefined) {
    password = new Uint8Array(
      dropTrailingNewline(
        readUserFile(options.passwordFile, 'password file', 64 * 1024, { secret: true }),
      ),
    );
  } else if (io.env[PASSWORD_ENV] !== undefined) {
    password = new TextEncoder().encode(io.env[PASSWORD_ENV]);
  } else {
    password = await promptHidden(io, options.prompt ?? 'Master password: ');
    if (password !== null && options.isNew) {
      const again = await promptHidden(io, 'Repeat the master password: ');
      if (again === null || Buffer.compare(Buffer.from(again), Buffer.from(password)) !== 0) {
        throw usage('password_mismatch', 'the two passwords do not match', 'run the command again');
      }
    }
  }
  if (password === null) {
    throw new TpError(
      'sealed',
      'no_password_source',
      'the master password is needed and there is no way to ask for it',
      {
        hint:
          `use --password-file PATH, set ${PASSWORD_ENV} (weaker: visible to the environment), or run in a terminal`,
      },
    );
  }
  if (password.length === 0) throw usage('empty_password', 'the master password is empty');
  if (options.isNew && password.length < MIN_NEW_PASSWORD) {
    throw usage(
      'weak_password',
      `the new master password is shorter than ${MIN_NEW_PASSWORD} bytes`,
    );
  }
  return password;
}

export function readToken(io: Io, tokenFile: string | undefined): string | null {
  if (tokenFile !== undefined) {
    return new TextDecoder().decode(
      dropTrailingNewline(readUserFile(tokenFile, 'token file', 4096, { secret: true })),
    ).trim();
  }
  const env = io.env[TOKEN_ENV];
  return env === undefined || env === '' ? null : env.trim();
}
