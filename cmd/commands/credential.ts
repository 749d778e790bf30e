/** `credential add|list|show|update|rotate|remove`. Values are read, never printed. */
import { paint } from '../color.ts';
import {
  addCredential,
  buildMeta,
  checkCredentialValue,
  type CredentialSpec,
  findCredential,
  removeCredential,
  rotateCredential,
  updateCredential,
} from '../../src/credentials.ts';
import { TpError, usage } from '../../src/errors.ts';
import {
  type Change,
  type CredentialMeta,
  decryptValue,
  type VaultBody,
  type VaultKeys,
  wipeKeys,
} from '../../src/vault.ts';
import {
  type Command,
  type Ctx,
  flag,
  type Flags,
  list as listFlag,
  PASSWORD_FILE_OPTION,
  str,
  tableText,
} from '../context.ts';
import { checkSees, sees } from '../../src/orgs.ts';
import {
  changeVault,
  existingState,
  newObjectOrg,
  ORG_OPTION,
  unsealVault,
  viewer,
} from '../home_state.ts';
import { type DotenvEntry, looksLikeDotenvLine, parseDotenv } from '../dotenv.ts';
import { promptHidden, readAll, readUserFile } from '../io.ts';
import { findPreset, type Preset, PRESETS } from '../../src/presets.ts';
import { closest } from '../suggest.ts';

/** The rule flags; `absent` says what a rule is when its flag is not given (add's default, or kept). */
function _specOptions(absent: (fallback: string) => string): Flags {
  return {
    'allowed-domains': {
      type: 'string',
      value: 'P[,P...]',
      help: 'comma list of domain patterns it may be sent to (api.example.com, *.example.com)',
    },
    'any-domain': {
      type: 'boolean',
      help: 'may be sent to any https host: UNRESTRICTED, and flagged as such everywhere',
    },
    'min-tier': {
      type: 'string',
      value: 'TIER',
      help: `lowest agent tier that may use it (${absent('COMPANION')})`,
    },
    placement: {
      type: 'string',
      value: 'LIST',
      help: `where it may go: a comma list of header, query, path, body (${absent('header')})`,
    },
    'base-url': {
      type: 'string',
      value: 'URL',
      help: "where serve's gateway forwards /v1/gateway/NAME/PATH; within the allowed domains",
    },
    inject: {
      type: 'string',
      value: 'RULE',
      help:
        'the header the gateway and curl-style exec add, e.g. "Authorization: Bearer {{CREDENTIAL}}"',
    },
    rate: {
      type: 'string',
      value: 'N/PERIOD',
      help: `at most N requests per PERIOD with it, e.g. 60/m, 1000/h, 5/10s (${
        absent('no limit')
      })`,
    },
  };
}

const SPEC_OPTIONS = _specOptions((fallback) => `default ${fallback}`);

const VALUE_FILE_OPTION: Flags = {
  'value-file': {
    type: 'string',
    value: 'PATH',
    help:
      'file holding the value (else standard input when piped, else a no-echo prompt after the password)',
  },
};

function _spec(ctx: Ctx): CredentialSpec {
  const spec: CredentialSpec = {};
  const domains = str(ctx, 'allowed-domains');
  if (domains !== undefined) {
    spec.allowedDomains = domains.split(',').filter((d) => d.trim() !== '');
  }
  if (flag(ctx, 'any-domain')) spec.anyDomain = true;
  const tier = str(ctx, 'min-tier');
  if (tier !== undefined) spec.minTier = tier;
  const placement = str(ctx, 'placement');
  if (placement !== undefined) spec.placements = placement.split(',');
  const baseUrl = str(ctx, 'base-url');
  if (baseUrl !== undefined) spec.baseUrl = baseUrl === '' ? null : baseUrl;
  const inject = str(ctx, 'inject');
  if (inject !== undefined) spec.inject = inject === '' ? null : inject;
  const rate = str(ctx, 'rate');
  if (rate !== undefined) spec.rate = rate === '' ? null : rate;
  return spec;
}

const PRESET_OPTION: Flags = {
  preset: {
    type: 'string',
    value: 'NAME',
    help:
      "a provider's domains, base URL and inject rule (see `credential presets`); flags override",
  },
};

/** --preset NAME, checked (with a suggestion) before anything is asked. */
function _preset(ctx: Ctx): Preset | null {
  const name = str(ctx, 'preset');
  if (name === undefined) return null;
  return findPreset(name, (word) => closest(word, PRESETS.map((p) => p.name)));
}

/** The preset's domains, base URL and inject rule, wherever no flag gave them. */
function _withPreset(spec: CredentialSpec, preset: Preset | null): CredentialSpec {
  if (preset === null) return spec;
  return {
    ...spec,
    ...(spec.allowedDomains === undefined && !spec.anyDomain
      ? { allowedDomains: [...preset.allowedDomains] }
      : {}),
    ...(spec.baseUrl === undefined ? { baseUrl: preset.baseUrl } : {}),
    ...(spec.inject === undefined ? { inject: preset.inject } : {}),
    preset: preset.name,
  };
}

/**
 * The value from --value-file, or else standard input when it is not a terminal; null when it is to
 * be typed, which is asked after the master password (the order a user expects: the vault first).
 */
async function _givenValue(ctx: Ctx): Promise<Uint8Array | null> {
  const file = str(ctx, 'value-file');
  if (file !== undefined) {
    const raw = readUserFile(file, 'value file', 1024 * 1024);
    if (looksLikeDotenvLine(raw)) {
      raw.fill(0);
      throw usage(
        'dotenv_value',
        `${file} looks like a .env line (NAME=value), not a bare value`,
        `use \`trust-protocol credential import ${file}\`, or put only the value in the file`,
      );
    }
    return checkCredentialValue(raw);
  }
  if (!ctx.io.isTerminal) {
    return checkCredentialValue(
      await readAll(ctx.io.stdin, 1024 * 1024, 'the value on standard input'),
    );
  }
  return null;
}

async function _typedValue(ctx: Ctx, name: string): Promise<Uint8Array> {
  const typed = await promptHidden(ctx.io, `Credential value for ${name} (input hidden): `);
  if (typed === null) {
    throw usage(
      'no_value',
      'no credential value given',
      'use --value-file PATH or pipe it on standard input',
    );
  }
  return checkCredentialValue(typed);
}

/** Unseals, gets the value (typed after the password), applies the change; wipes both after. */
async function _changeWithValue<T>(
  ctx: Ctx,
  name: string,
  change: (body: VaultBody, keys: VaultKeys, value: Uint8Array) => Change<T>,
): Promise<T> {
  let value = await _givenValue(ctx);
  try {
    const { state, keys } = await unsealVault(ctx);
    try {
      const v = value ?? await _typedValue(ctx, name);
      value = v;
      return await state.vault.update(keys, (body) => change(body, keys, v));
    } finally {
      wipeKeys(keys);
    }
  } finally {
    value?.fill(0);
  }
}

function _metaText(m: CredentialMeta): string {
  return [
    `name:            ${m.name}`,
    `allowed domains: ${
      m.any_domain ? 'ANY https host (unrestricted)' : m.allowed_domains.join(', ')
    }`,
    `placements:      ${m.placements.join(', ')}`,
    `min tier:        ${m.min_tier}`,
    `base url:        ${m.base_url ?? '-'}`,
    `inject:          ${m.inject ?? '-'}`,
    `rate:            ${m.rate ?? '-'}`,
    `preset:          ${m.preset ?? '-'}`,
    ...(m.org === undefined ? [] : [`org:             ${m.org}`]),
  ].join('\n') + '\n';
}

function _metaJson(m: CredentialMeta & { created_at?: string; updated_at?: string }) {
  return {
    name: m.name,
    allowed_domains: m.allowed_domains,
    any_domain: m.any_domain,
    placements: m.placements,
    min_tier: m.min_tier,
    base_url: m.base_url,
    inject: m.inject,
    rate: m.rate,
    preset: m.preset ?? null,
    org: m.org ?? null,
    ...(m.created_at === undefined ? {} : { created_at: m.created_at, updated_at: m.updated_at }),
  };
}

const add: Command = {
  words: ['credential', 'add'],
  summary: 'store a credential and where it may be sent',
  usage:
    'credential add NAME (--preset P | --allowed-domains P[,P...] | --any-domain) [--min-tier TIER] [--placement header[,query,path,body]] [--base-url URL] [--inject "Header: tmpl"] [--rate N/PERIOD] [--value-file PATH] [--org ORG]',
  help: `--preset NAME fills in the allowed domains, base URL and inject rule of a well-known API
(see \`trust-protocol credential presets\`) and records the preset, so that \`run\` gives its SDK
the gateway in the variables it reads. A flag given as well overrides the preset's value.`,
  options: {
    ...PASSWORD_FILE_OPTION,
    ...SPEC_OPTIONS,
    ...PRESET_OPTION,
    ...VALUE_FILE_OPTION,
    ...ORG_OPTION,
  },
  examples: [
    'trust-protocol credential add openai --preset openai --value-file openai.txt',
    'trust-protocol credential add github --allowed-domains api.github.com,uploads.github.com --value-file gh.txt',
  ],
  args: { min: 1, max: 1 },
  async run(ctx) {
    const name = ctx.positionals[0] as string;
    const spec = _withPreset(_spec(ctx), _preset(ctx));
    // Rules checked before anything is asked: a typo in a domain should not cost a typed secret.
    buildMeta(name, spec);
    const meta = await _changeWithValue(
      ctx,
      name,
      (body, keys, value) =>
        addCredential(body, keys, {
          name,
          spec,
          value,
          now: ctx.now(),
          ...newObjectOrg(ctx, keys),
        }),
    );
    const warn = meta.any_domain
      ? `${
        paint(ctx.color, 'yellow', 'WARNING')
      }: this credential is UNRESTRICTED: it may be sent to any https host.\n`
      : '';
    return {
      json: _metaJson(meta),
      text: `${warn}Added credential ${meta.name}.\n`,
      informational: true,
    };
  },
};

const update: Command = {
  words: ['credential', 'update'],
  summary: 'change where a credential may be sent (the value stays)',
  usage:
    'credential update NAME [--allowed-domains P,... | --any-domain] [--min-tier T] [--placement ...] [--base-url URL] [--inject ...] [--rate N/PERIOD]',
  options: {
    ...PASSWORD_FILE_OPTION,
    ..._specOptions(() => 'unchanged when absent'),
    'base-url': {
      ...SPEC_OPTIONS['base-url']!,
      help: `${SPEC_OPTIONS['base-url']!.help}; "" clears it`,
    },
    inject: { ...SPEC_OPTIONS.inject!, help: `${SPEC_OPTIONS.inject!.help}; "" clears it` },
    rate: {
      type: 'string',
      value: 'N/PERIOD',
      help:
        'at most N requests per PERIOD with it, e.g. 60/m (unchanged when absent; "" clears it)',
    },
  },
  examples: [
    'trust-protocol credential update openai --allowed-domains api.openai.com,*.openai.com',
    'trust-protocol credential update openai --rate 60/m --min-tier PARTNER',
  ],
  args: { min: 1, max: 1 },
  async run(ctx) {
    const name = ctx.positionals[0] as string;
    const spec = _spec(ctx);
    const meta = await changeVault(
      ctx,
      (body, keys) =>
        updateCredential(body, keys, {
          name,
          spec,
          decrypt: (r) => decryptValue(keys, r),
          now: ctx.now(),
        }),
    );
    return {
      json: _metaJson(meta),
      text: `Updated credential ${meta.name}.\n`,
      informational: true,
    };
  },
};

const rotate: Command = {
  words: ['credential', 'rotate'],
  summary: "replace a credential's value",
  usage: 'credential rotate NAME [--value-file PATH]',
  options: { ...PASSWORD_FILE_OPTION, ...VALUE_FILE_OPTION },
  examples: [
    'trust-protocol credential rotate openai',
    'trust-protocol credential rotate openai --value-file new-key.txt',
  ],
  args: { min: 1, max: 1 },
  async run(ctx) {
    const name = ctx.positionals[0] as string;
    await _changeWithValue(
      ctx,
      name,
      (body, keys, value) => rotateCredential(body, keys, { name, value, now: ctx.now() }),
    );
    return {
      json: { name, rotated: true },
      text: `Rotated credential ${name}.\n`,
      informational: true,
    };
  },
};

const remove: Command = {
  words: ['credential', 'remove'],
  summary: 'delete a credential (and every grant of it)',
  usage: 'credential remove NAME',
  options: { ...PASSWORD_FILE_OPTION },
  examples: ['trust-protocol credential remove openai'],
  args: { min: 1, max: 1 },
  async run(ctx) {
    const name = ctx.positionals[0] as string;
    await changeVault(ctx, (body) => removeCredential(body, name));
    return {
      json: { name, removed: true },
      text: `Removed credential ${name}.\n`,
      informational: true,
    };
  },
};

const list: Command = {
  words: ['credential', 'list'],
  summary: 'list credentials (names and rules, never values)',
  usage: 'credential list',
  options: {},
  examples: ['trust-protocol credential list', 'trust-protocol credential list --quiet'],
  args: { min: 0, max: 0 },
  run(ctx) {
    const file = existingState(ctx).vault.read();
    const who = viewer(ctx, file);
    const credentials = file.body.credentials.filter((c) => sees(who, c));
    const rows = credentials.map((c) => [
      c.name,
      c.any_domain ? 'ANY (unrestricted)' : c.allowed_domains.join(','),
      c.placements.join(','),
      c.min_tier,
    ]);
    return {
      json: credentials.map(_metaJson),
      quiet: credentials.map((c) => `${c.name}\n`).join(''),
      text: rows.length === 0
        ? 'No credentials.\n'
        : tableText([['NAME', 'ALLOWED DOMAINS', 'PLACEMENTS', 'MIN TIER'], ...rows], {
          color: ctx.color,
        }),
    };
  },
};

const show: Command = {
  words: ['credential', 'show'],
  summary: "show one credential's rules (never its value)",
  usage: 'credential show NAME',
  options: {},
  examples: [
    'trust-protocol credential show openai',
    'trust-protocol credential show openai --json',
  ],
  args: { min: 1, max: 1 },
  run(ctx) {
    const file = existingState(ctx).vault.read();
    const record = findCredential(file.body, ctx.positionals[0] as string);
    checkSees(viewer(ctx, file), 'credential', record.name, record);
    return { json: _metaJson(record), text: _metaText(record) };
  },
};

/** A variable's credential name: the variable in lower case (OPENAI_API_KEY -> openai_api_key). */
function _nameFor(variable: string): string {
  return variable.toLowerCase();
}

/** A variable name as typed, shown only if it looks like one: a pasted value must not be echoed. */
function _shown(variable: string): string {
  return /^[A-Za-z_][A-Za-z0-9_]{0,63}$/.test(variable) ? variable : '(not a variable name)';
}

/** Which variables to import, each with its spec; checked in full before the password is asked. */
function _importPlan(ctx: Ctx, entries: DotenvEntry[], file: string) {
  const only = str(ctx, 'only');
  const chosen = only === undefined ? entries : only.split(',').map((v) => v.trim()).filter(
    (v) => v !== '',
  ).map((v) => {
    const entry = entries.find((e) => e.name === v);
    if (entry === undefined) {
      throw usage('no_such_variable', `${file} does not set ${_shown(v)}`, 'check --only');
    }
    return entry;
  });
  if (chosen.length === 0) throw usage('no_variables', `${file} sets no variables`);
  const perVariable = new Map<string, string[]>();
  for (const d of listFlag(ctx, 'domains')) {
    const eq = d.indexOf('=');
    const variable = d.slice(0, eq);
    if (eq < 1 || !chosen.some((e) => e.name === variable)) {
      throw usage(
        'bad_flag',
        `--domains takes VARIABLE=PATTERN[,PATTERN...] for an imported variable, got ${
          eq < 1 ? 'no VARIABLE=' : _shown(variable)
        }`,
      );
    }
    perVariable.set(variable, d.slice(eq + 1).split(',').filter((p) => p.trim() !== ''));
  }
  const base = _withPreset(_spec(ctx), _preset(ctx));
  const plan = chosen.map((entry) => {
    const domains = perVariable.get(entry.name);
    const spec: CredentialSpec = domains === undefined
      ? base
      : { ...base, allowedDomains: domains, anyDomain: false };
    return { entry, name: _nameFor(entry.name), spec };
  });
  const undecided = plan.filter((p) => p.spec.allowedDomains === undefined && !p.spec.anyDomain);
  if (undecided.length > 0) {
    throw usage(
      'no_domains',
      `no allowed domains for ${undecided.map((p) => p.entry.name).join(', ')}`,
      `give them per variable (--domains ${undecided[0]?.entry.name}=api.example.com) or for all ` +
        '(--allowed-domains PATTERN[,PATTERN...])',
    );
  }
  const seen = new Set<string>();
  for (const p of plan) {
    if (seen.has(p.name)) {
      throw usage('duplicate_name', `two variables become the credential name "${p.name}"`);
    }
    seen.add(p.name);
    buildMeta(p.name, p.spec);
    try {
      checkCredentialValue(p.entry.value).fill(0);
    } catch (e) {
      if (!(e instanceof TpError)) throw e;
      throw usage(
        e.code,
        `${p.entry.name} (line ${p.entry.line}): ${e.message}`,
        `fix it in ${file}`,
      );
    }
  }
  return plan;
}

const importCmd: Command = {
  words: ['credential', 'import'],
  summary: 'add credentials from a .env file (NAME=value lines), never printing a value',
  usage:
    'credential import FILE [--only VAR[,VAR...]] [--preset P] [--domains VAR=P[,P...]]... [--allowed-domains P[,P...] | --any-domain] [--min-tier T] [--placement ...] [--base-url URL] [--inject ...] [--rate N/PERIOD]',
  help: `Each chosen variable (all, or those named by --only) becomes a credential named after it in
lower case: OPENAI_API_KEY becomes openai_api_key. --domains VAR=PATTERNS gives one variable its
allowed domains (repeatable); --allowed-domains or --any-domain applies to the others. The other
flags apply to all. --preset P applies a provider preset (see \`credential presets\`) to every
imported variable: its domains (unless --domains or --allowed-domains says otherwise), base URL
and inject rule; use it with --only for one provider's key. Either every variable is added, or none
(one vault change).`,
  options: {
    ...PASSWORD_FILE_OPTION,
    ...SPEC_OPTIONS,
    ...PRESET_OPTION,
    'allowed-domains': {
      ...SPEC_OPTIONS['allowed-domains']!,
      help: 'domain patterns for the variables that --domains does not name',
    },
    'any-domain': {
      type: 'boolean',
      help: 'any https host (UNRESTRICTED) for the variables that --domains does not name',
    },
    only: {
      type: 'string',
      value: 'VAR[,VAR...]',
      help: 'import only these variables (else every variable in FILE)',
    },
    domains: {
      type: 'string',
      value: 'VAR=P[,P...]',
      help: "one variable's allowed domain patterns",
      multiple: true,
    },
  },
  examples: [
    'trust-protocol credential import .env --only OPENAI_API_KEY,ANTHROPIC_API_KEY --domains OPENAI_API_KEY=api.openai.com --domains ANTHROPIC_API_KEY=api.anthropic.com',
    'trust-protocol credential import .env --only OPENAI_API_KEY --preset openai',
  ],
  args: { min: 1, max: 1 },
  async run(ctx) {
    const file = ctx.positionals[0] as string;
    const raw = readUserFile(file, '.env file', 1024 * 1024);
    let entries: DotenvEntry[];
    try {
      entries = parseDotenv(new TextDecoder().decode(raw));
    } finally {
      raw.fill(0);
    }
    try {
      const plan = _importPlan(ctx, entries, file);
      const metas = await changeVault(ctx, (body, keys) => {
        const changes = plan.map((p) =>
          addCredential(body, keys, {
            name: p.name,
            spec: p.spec,
            value: checkCredentialValue(p.entry.value),
            now: ctx.now(),
          })
        );
        return { result: changes.map((c) => c.result), events: changes.flatMap((c) => c.events) };
      });
      const rows = metas.map((
        m,
        i,
      ) => [m.name, plan[i]?.entry.name ?? '', m.allowed_domains.join(',') || 'ANY']);
      return {
        json: metas.map((m, i) => ({ ..._metaJson(m), variable: plan[i]?.entry.name })),
        text: `Imported ${metas.length} credential(s):\n` +
          tableText([['NAME', 'FROM', 'ALLOWED DOMAINS'], ...rows], { color: ctx.color }),
        informational: true,
      };
    } finally {
      for (const e of entries) e.value.fill(0);
    }
  },
};

const presets: Command = {
  words: ['credential', 'presets'],
  summary: 'list the provider presets for `credential add --preset`',
  usage: 'credential presets',
  options: {},
  examples: ['trust-protocol credential presets', 'trust-protocol credential presets --json'],
  args: { min: 0, max: 0 },
  run(ctx) {
    const rows = PRESETS.map((p) => [
      p.name,
      p.allowedDomains.join(','),
      p.baseUrl,
      p.inject,
      p.env === null ? '(generic TP_NAME_*)' : `${p.env.baseUrl} ${p.env.token}`,
    ]);
    return {
      json: PRESETS.map((p) => ({
        name: p.name,
        title: p.title,
        allowed_domains: p.allowedDomains,
        base_url: p.baseUrl,
        inject: p.inject,
        env: p.env === null ? null : { base_url: p.env.baseUrl, token: p.env.token },
        unset: p.unset ?? [],
      })),
      quiet: PRESETS.map((p) => `${p.name}\n`).join(''),
      text: tableText(
        [['PRESET', 'ALLOWED DOMAINS', 'BASE URL', 'INJECT', 'RUN SETS'], ...rows],
        { color: ctx.color },
      ),
    };
  },
};

export const credentialCommands: Command[] = [
  add,
  presets,
  importCmd,
  list,
  show,
  update,
  rotate,
  remove,
];
