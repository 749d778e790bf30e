/**
 * `config.json` in the home: serve's defaults, so that `serve` starts with no flags (issue 16).
 * Format in docs/formats.md ("config.json").
 *
 * The home is writable by an agent on the operator's account, and some of these settings decide
 * where a credential goes (`connect_to` routes a host to an address, `cacert` decides whom TLS
 * trusts). So the file is sealed: `config seal` writes an HMAC under the vault's state key over its
 * settings and the SHA-256 of the CA file it names, and serve checks it after unsealing, before it
 * listens. What `readConfig` returns is `Unverified` until `verifyConfig` has checked that MAC; an
 * absent MAC is refused (`config_not_sealed`), a wrong one is an integrity failure.
 */
import { hmacSha256Hex } from './crypto/hmac.ts';
import { Buffer } from 'node:buffer';
import { canonicalJson } from './canonical.ts';
import { secretEqual, sha256 } from './bytes.ts';
import { integrity, TpError, usage } from './errors.ts';
import { type Home, readStateFile, writeStateFile } from './home.ts';
import type { VaultKeys } from './vault.ts';

export const CONFIG_FILE = 'config.json';
export const CONFIG_FORMAT = 'trust-protocol-config';
export const CONFIG_VERSION = 1;

/** serve's settings, as its flags spell them (strings, parsed by the same code as the flags). */
export interface ServeSettings {
  listen?: string;
  socket?: string;
  'socket-group'?: string;
  ttl?: string;
  idle?: string;
  'agent-rate'?: string;
  cacert?: string;
  'connect-to'?: string[];
  timeout?: string;
  'max-response-bytes'?: string;
}

const STRING_KEYS = [
  'listen',
  'socket',
  'socket-group',
  'ttl',
  'idle',
  'agent-rate',
  'cacert',
  'timeout',
  'max-response-bytes',
] as const;

export interface ConfigFile {
  serve: ServeSettings;
  /** SHA-256 (hex) of the CA file `serve.cacert` named when the file was sealed. */
  cacertSha256: string | null;
  mac: string | null;
}

/** Read from the home without any check of its MAC: may not be used until verified. */
export type UnverifiedConfig = ConfigFile & { readonly verified: false };
export type VerifiedConfig = ConfigFile & { readonly verified: true };

/** The home's config.json, shape-checked but not verified; null when there is none. */
export function readConfig(home: Home): UnverifiedConfig | null {
  const bytes = readStateFile(home, CONFIG_FILE);
  return bytes === null
    ? null
    : { ...parseConfig(Buffer.from(bytes).toString('utf8')), verified: false };
}

export function parseConfig(text: string): ConfigFile {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw _bad('is not valid JSON');
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw _bad('is not an object');
  const o = doc as Record<string, unknown>;
  if (o.format !== CONFIG_FORMAT) throw _bad(`needs "format": "${CONFIG_FORMAT}"`);
  if (o.version !== CONFIG_VERSION) {
    throw _bad(
      `has version ${
        JSON.stringify(o.version)
      }; this trust-protocol reads version ${CONFIG_VERSION}`,
    );
  }
  for (const key of Object.keys(o)) {
    if (!['format', 'version', 'serve', 'cacert_sha256', 'mac'].includes(key)) {
      throw _bad(`has an unknown field "${key}"`, 'the fields are format, version, serve, mac');
    }
  }
  const serve = o.serve ?? {};
  if (typeof serve !== 'object' || serve === null || Array.isArray(serve)) {
    throw _bad('field "serve" is not an object');
  }
  const settings: ServeSettings = {};
  for (const [key, value] of Object.entries(serve as Record<string, unknown>)) {
    if ((STRING_KEYS as readonly string[]).includes(key)) {
      if (typeof value !== 'string') throw _bad(`field "serve.${key}" is not a string`);
      settings[key as (typeof STRING_KEYS)[number]] = value;
    } else if (key === 'connect-to') {
      if (!Array.isArray(value) || value.some((v) => typeof v !== 'string')) {
        throw _bad('field "serve.connect-to" is not an array of strings');
      }
      settings['connect-to'] = value as string[];
    } else {
      throw _bad(
        `has an unknown setting "serve.${key}"`,
        `the settings are ${[...STRING_KEYS, 'connect-to'].join(', ')} (serve's flags)`,
      );
    }
  }
  const hex = (field: string, v: unknown, length: number): string | null => {
    if (v === undefined || v === null) return null;
    if (typeof v !== 'string' || !new RegExp(`^[0-9a-f]{${length}}$`).test(v)) {
      throw _bad(`field "${field}" is not ${length} lower-case hex digits`);
    }
    return v;
  };
  return {
    serve: settings,
    cacertSha256: hex('cacert_sha256', o.cacert_sha256, 64),
    mac: hex('mac', o.mac, 64),
  };
}

/**
 * Checks the MAC (and that `caBytes`, the CA file serve read, is the one sealed). Without a MAC
 * the file is refused: unsealed settings may not route a credential.
 */
export function verifyConfig(
  config: UnverifiedConfig,
  keys: VaultKeys,
  /** The CA file's bytes when serve uses the config's `cacert`; null when a flag replaced it. */
  caBytes: Uint8Array | null,
): VerifiedConfig {
  if (config.mac === null) {
    throw usage(
      'config_not_sealed',
      `${CONFIG_FILE} is not sealed, so serve will not use it`,
      'review it, then run `trust-protocol config seal` (asks for the master password)',
    );
  }
  const expected = Buffer.from(_mac(config, keys), 'hex');
  if (!secretEqual(expected, Buffer.from(config.mac, 'hex'))) {
    throw integrity(
      'config_mac',
      `${CONFIG_FILE} was changed since it was sealed (its MAC does not match)`,
      'if you changed it, review it and run `trust-protocol config seal`; if not, someone else did',
    );
  }
  if (caBytes !== null) {
    if (Buffer.from(sha256(caBytes)).toString('hex') !== config.cacertSha256) {
      throw integrity(
        'config_cacert_changed',
        `the CA file ${config.serve.cacert} is not the one ${CONFIG_FILE} was sealed with`,
        'if you replaced it, run `trust-protocol config seal` again; if not, someone else did',
      );
    }
  }
  return { ...config, verified: true };
}

/**
 * `vault rekey` (#19): a sealed config.json whose MAC holds under the old keys is MACed again
 * under the new ones, unchanged; one that does not verify is left as it is (serve refuses it).
 */
export function resealConfig(home: Home, oldKeys: VaultKeys, newKeys: VaultKeys): void {
  const config = readConfig(home);
  if (config === null || config.mac === null) return;
  const expected = Buffer.from(_mac(config, oldKeys), 'hex');
  if (!secretEqual(expected, Buffer.from(config.mac, 'hex'))) return;
  const doc = {
    format: CONFIG_FORMAT,
    version: CONFIG_VERSION,
    serve: config.serve,
    ...(config.cacertSha256 === null ? {} : { cacert_sha256: config.cacertSha256 }),
    mac: _mac(config, newKeys),
  };
  writeStateFile(home, CONFIG_FILE, JSON.stringify(doc, null, 2) + '\n');
}

/** Writes the file back with its CA file's digest and the MAC under the vault's state key. */
export function sealConfig(
  home: Home,
  config: ConfigFile,
  keys: VaultKeys,
  caBytes: Uint8Array | null,
): VerifiedConfig {
  const cacertSha256 = caBytes === null ? null : Buffer.from(sha256(caBytes)).toString('hex');
  const sealed: ConfigFile = { serve: config.serve, cacertSha256, mac: null };
  sealed.mac = _mac(sealed, keys);
  const doc = {
    format: CONFIG_FORMAT,
    version: CONFIG_VERSION,
    serve: sealed.serve,
    ...(cacertSha256 === null ? {} : { cacert_sha256: cacertSha256 }),
    mac: sealed.mac,
  };
  writeStateFile(home, CONFIG_FILE, JSON.stringify(doc, null, 2) + '\n');
  return { ...sealed, verified: true };
}

function _mac(config: ConfigFile, keys: VaultKeys): string {
  return hmacSha256Hex(
    keys.state,
    canonicalJson({
      format: CONFIG_FORMAT,
      version: CONFIG_VERSION,
      serve: config.serve,
      cacert_sha256: config.cacertSha256,
    }),
  );
}

function _bad(what: string, hint?: string): TpError {
  return usage(
    'bad_config',
    `${CONFIG_FILE} ${what}`,
    hint ?? 'see docs/formats.md, "config.json"',
  );
}
