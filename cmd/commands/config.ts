/** `config show` and `config seal`: serve's defaults in HOME/config.json (issue 16). */
import { Buffer } from 'node:buffer';
import {
  CONFIG_FILE,
  type ConfigFile,
  readConfig,
  sealConfig,
  type UnverifiedConfig,
} from '../../src/config.ts';
import { usage } from '../../src/errors.ts';
import { wipeKeys } from '../../src/vault.ts';
import { type Command, type Ctx, PASSWORD_FILE_OPTION } from '../context.ts';
import { existingHome, unsealVault } from '../home_state.ts';
import { readUserFile } from '../io.ts';

/** The CA file a config names, as serve reads it (text, --cacert's way); null when none. */
export function configCaBytes(config: ConfigFile): Uint8Array | null {
  const file = config.serve.cacert;
  if (file === undefined) return null;
  return caTextBytes(Buffer.from(readUserFile(file, 'CA file', 1024 * 1024)).toString('utf8'));
}

/** The bytes of a CA file's text as serve uses it (sendOptions reads --cacert as UTF-8). */
export function caTextBytes(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, 'utf8'));
}

/**
 * Fills serve's flags that were not given from HOME/config.json (flags override it) and returns
 * the config, unverified, with the settings it supplied; serve verifies it once unsealed.
 */
export function applyConfig(
  ctx: Ctx,
): { config: UnverifiedConfig; applied: string[] } | null {
  const config = readConfig(existingHome(ctx));
  if (config === null) return null;
  const applied: string[] = [];
  for (const [key, value] of Object.entries(config.serve)) {
    if (ctx.values[key] !== undefined) continue;
    ctx.values[key] = value;
    applied.push(key);
  }
  return { config, applied };
}

const show: Command = {
  words: ['config', 'show'],
  summary: "print serve's defaults from HOME/config.json (no password needed)",
  usage: 'config show',
  options: {},
  examples: ['trust-protocol config show', 'trust-protocol config show --json'],
  args: { min: 0, max: 0 },
  run(ctx) {
    const config = readConfig(existingHome(ctx));
    if (config === null) {
      return { json: null, text: `No ${CONFIG_FILE}: serve uses its built-in defaults.\n` };
    }
    const state = config.mac === null
      ? 'not sealed: serve refuses it until `trust-protocol config seal`'
      : 'sealed (serve checks the seal when it starts)';
    const rows = Object.entries(config.serve).map(([k, v]) =>
      `  ${k}: ${Array.isArray(v) ? v.join(', ') : v}`
    );
    return {
      json: { serve: config.serve, sealed: config.mac !== null },
      text: `${CONFIG_FILE}, ${state}\n${
        rows.length === 0 ? '  (no settings)' : rows.join('\n')
      }\n`,
    };
  },
};

const seal: Command = {
  words: ['config', 'seal'],
  summary: 'seal HOME/config.json after reviewing it, so serve uses it (password needed)',
  usage: 'config seal',
  help: `serve's defaults live in HOME/config.json; flags given to serve override them. Example:
  {"format": "trust-protocol-config", "version": 1,
   "serve": {"listen": "127.0.0.1:8750", "ttl": "8h", "idle": "30m",
             "cacert": "/etc/ssl/corp-ca.pem", "connect-to": ["api.example.com:443:10.0.0.5:443"]}}
Some settings decide where a credential goes (connect-to, cacert), and an agent on your account
can write the home, so serve uses the file only with the seal this command writes: an HMAC under
the vault's key over the settings and the CA file's contents. Edit, review, seal again.`,
  options: { ...PASSWORD_FILE_OPTION },
  examples: [
    'trust-protocol config seal',
    'trust-protocol config seal --password-file ~/.tp-password',
  ],
  args: { min: 0, max: 0 },
  async run(ctx) {
    const config = readConfig(existingHome(ctx));
    if (config === null) {
      throw usage(
        'no_config',
        `there is no ${CONFIG_FILE} to seal`,
        'write one first: see `trust-protocol config seal --help` for an example',
      );
    }
    const ca = configCaBytes(config);
    const { state, keys } = await unsealVault(ctx);
    try {
      sealConfig(state.home, config, keys, ca);
    } finally {
      wipeKeys(keys);
    }
    return {
      json: { sealed: true, serve: config.serve },
      text: `Sealed ${CONFIG_FILE}${
        ca === null ? '' : ` (with the SHA-256 of ${config.serve.cacert})`
      }: serve uses it from now on.\n`,
    };
  },
};

export const configCommands: Command[] = [show, seal];
