/**
 * `completion bash|zsh|fish`: a completion script generated from the command table the parser and
 * the help use, so that a new command or flag completes without a second list to maintain.
 * Credential and agent names are asked of `trust-protocol ... list --json` when needed (no
 * password: those commands read only names).
 */
import type { ParseArgsOptionsConfig } from 'node:util';
import { usage } from '../../src/errors.ts';
import { TIERS } from '../../src/tiers.ts';
import type { Command } from '../context.ts';

const SHELLS = ['bash', 'zsh', 'fish'] as const;
type Shell = (typeof SHELLS)[number];

/** What the script completes in a word's place: static words, or a kind of value. */
type Kind = 'credential' | 'agent' | 'agent-id' | 'file' | 'none' | { words: string[] };

/** The flags whose value is a path; other string flags take free text unless named here. */
const FILE_FLAGS = [
  'home',
  'template',
  'data',
  'output',
  'cacert',
  'socket',
  'checkpoint',
  'out',
  'key',
];

/** The flags whose value is a name the vault knows, or one of a few words. */
const FLAG_VALUES: Record<string, Kind> = {
  credential: 'credential',
  'credential-name': 'credential',
  // `emergency activate` and `audit show` take the id itself (no name lookup without the password).
  'agent-id': 'agent-id',
  agent: 'agent-id',
  tier: { words: [...TIERS] },
  'min-tier': { words: [...TIERS] },
  scope: { words: ['global', 'agent', 'credential', 'org'] },
  placement: { words: ['header', 'query', 'path', 'body'] },
  request: { words: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD'] },
};

function _flagValue(name: string): Kind {
  if (name.endsWith('-file') || FILE_FLAGS.includes(name)) return 'file';
  return FLAG_VALUES[name] ?? 'none';
}

interface Table {
  top: string[];
  groups: Map<string, string[]>;
  /** Per command ("agent grant"): its flags, global ones included. */
  flags: Map<string, string[]>;
  /** Per command: what each positional is; a last kind marked `repeat` covers the rest. */
  positionals: Map<string, { kinds: Kind[]; repeat: boolean }>;
  /** Every flag spelling that takes a value, and what that value is. */
  valued: Map<string, Kind>;
  globalFlags: string[];
}

function _spellings(name: string, o: ParseArgsOptionsConfig[string]): string[] {
  return [`--${name}`, ...(o.short ? [`-${o.short}`] : [])];
}

/** Reads a command's positionals from its usage line: `agent grant ID CRED...`. */
function _positionals(c: Command): { kinds: Kind[]; repeat: boolean } {
  const tokens = c.usage.split(/\s+/).slice(c.words.length);
  const kinds: Kind[] = [];
  let repeat = false;
  for (const raw of tokens) {
    if (/^[-([>|]/.test(raw) && !/^\[[A-Z]/.test(raw)) break;
    const token = raw.replace(/^\[|\]$/g, '');
    repeat = token.endsWith('...');
    const word = token.replace(/\.\.\.$/, '');
    if (/^[a-z]+(\|[a-z]+)+$/.test(word)) kinds.push({ words: word.split('|') });
    else if (word === 'ID') kinds.push('agent');
    else if (word === 'CRED') kinds.push('credential');
    else if (word === 'NAME' && c.words[0] === 'credential' && c.words[1] !== 'add') {
      kinds.push('credential');
    } else if (word === 'TIER') kinds.push({ words: [...TIERS] });
    else if (/FILE|DIR|PATH/.test(word)) kinds.push('file');
    else kinds.push('none');
  }
  return { kinds, repeat };
}

export function completionTable(commands: Command[], globals: ParseArgsOptionsConfig): Table {
  const table: Table = {
    top: [],
    groups: new Map(),
    flags: new Map(),
    positionals: new Map(),
    valued: new Map(),
    globalFlags: Object.entries(globals).flatMap(([name, o]) => _spellings(name, o)),
  };
  for (const c of commands) {
    const [first, second] = c.words as [string, string | undefined];
    if (!table.top.includes(first)) table.top.push(first);
    if (second !== undefined) table.groups.set(first, [...(table.groups.get(first) ?? []), second]);
    const options = { ...globals, ...c.options };
    table.flags.set(
      c.words.join(' '),
      Object.entries(options).flatMap(([name, o]) => _spellings(name, o)),
    );
    table.positionals.set(c.words.join(' '), _positionals(c));
    for (const [name, o] of Object.entries(options)) {
      if (o.type !== 'string') continue;
      for (const s of _spellings(name, o)) table.valued.set(s, _flagValue(name));
    }
  }
  table.top.push('help');
  return table;
}

/** How one shell offers words, names from the vault, or paths. */
interface Say {
  words: (list: string[]) => string;
  names: (group: string, field: string) => string;
  files: string;
}

function _kindCase(kind: Kind, say: Say): string {
  if (kind === 'file') return say.files;
  if (kind === 'none') return ':';
  if (kind === 'credential') return say.names('credential', 'name');
  if (kind === 'agent') return say.names('agent', 'name');
  if (kind === 'agent-id') return say.names('agent', 'id');
  return say.words(kind.words);
}

function _caseArms(entries: Array<[string, Kind]>, say: Say): string {
  const byBody = new Map<string, string[]>();
  for (const [pattern, kind] of entries) {
    const body = _kindCase(kind, say);
    byBody.set(body, [...(byBody.get(body) ?? []), pattern]);
  }
  return [...byBody].map(([body, patterns]) => `    ${patterns.join('|')}) ${body} ;;`).join('\n');
}

function _positionalArms(t: Table, say: Say): string {
  const arms: string[] = [];
  for (const [cmd, { kinds, repeat }] of t.positionals) {
    kinds.forEach((kind, i) => {
      const last = i === kinds.length - 1 && repeat;
      arms.push(`    '${cmd} ${i}'${last ? `|'${cmd} '*` : ''}) ${_kindCase(kind, say)} ;;`);
    });
  }
  return arms.join('\n');
}

/** The scan of the words before the cursor, in bash and zsh alike (zsh arrays start at 1). */
function _scan(t: Table, words: string, first: number, cursor: string): string {
  return `  local cmd="" npos=0 i w home=""
  local valued=" ${[...t.valued.keys()].join(' ')} "
  for ((i = ${first}; i < ${cursor}; i++)); do
    w=\${${words}[i]}
    if [[ $w == --home ]]; then home=\${${words}[i+1]}; fi
    if [[ $w == -* ]]; then
      [[ $valued == *" $w "* ]] && ((i++))
      continue
    fi
    if [[ -z $cmd ]]; then cmd=$w
    elif [[ $cmd != *" "* && " ${
    [...t.groups.keys()].join(' ')
  } " == *" $cmd "* ]]; then cmd="$cmd $w"
    else ((npos++))
    fi
  done`;
}

/** The lister of names, in bash and zsh alike: `list --json` printed with two-space indents. */
const SH_LIST = `_trust_protocol_list() {
  # Names the vault knows, asked lazily; these list commands need no password.
  command trust-protocol \${home:+--home=$home} "$1" list --json 2>/dev/null |
    sed -n "s/^    \\"$2\\": \\"\\([^\\"]*\\)\\",\\{0,1\\}\\$/\\1/p"
}`;

/** The body shared by bash and zsh, after the scan: each shell says how it offers a list. */
function _shBody(t: Table, say: Say): string {
  return `  if [[ $prev == -* && $valued == *" $prev "* ]]; then
    case $prev in
${_caseArms([...t.valued], say)}
    esac
    return 0
  fi
  if [[ $cur == -* ]]; then
    case $cmd in
${[...t.flags].map(([cmd, flags]) => `    '${cmd}') ${say.words(flags)} ;;`).join('\n')}
    *) ${say.words(t.globalFlags)} ;;
    esac
    return 0
  fi
  if [[ -z $cmd || $cmd == help ]]; then
    ${say.words(t.top)}
    return 0
  fi
  case $cmd in
${[...t.groups].map(([g, subs]) => `    ${g}) ${say.words(subs)}; return 0 ;;`).join('\n')}
  esac
  case "$cmd $npos" in
${_positionalArms(t, say)}
  esac
  return 0`;
}

function _bash(t: Table): string {
  const words = (list: string) => `COMPREPLY=($(compgen -W "${list}" -- "$cur"))`;
  const say: Say = {
    words: (list) => words(list.join(' ')),
    names: (group, field) => words(`$(_trust_protocol_list ${group} ${field})`),
    files: 'COMPREPLY=($(compgen -f -- "$cur"))',
  };
  return `# trust-protocol completion for bash (generated by \`trust-protocol completion bash\`)
# Install: trust-protocol completion bash > ~/.local/share/bash-completion/completions/trust-protocol

${SH_LIST}

_trust_protocol() {
  local cur=\${COMP_WORDS[COMP_CWORD]} prev=\${COMP_WORDS[COMP_CWORD-1]}
  COMPREPLY=()
${_scan(t, 'COMP_WORDS', 1, 'COMP_CWORD')}
${_shBody(t, say)}
}

complete -F _trust_protocol trust-protocol
`;
}

function _zsh(t: Table): string {
  const say: Say = {
    words: (list) => `compadd -- ${list.join(' ')}`,
    names: (group, field) => `compadd -- \${(f)"$(_trust_protocol_list ${group} ${field})"}`,
    files: '_files',
  };
  return `#compdef trust-protocol
# trust-protocol completion for zsh (generated by \`trust-protocol completion zsh\`)
# Install: trust-protocol completion zsh > ~/.zfunc/_trust_protocol, with fpath=(~/.zfunc $fpath)
# before compinit in ~/.zshrc; or source it from ~/.zshrc after compinit.

${SH_LIST}

_trust_protocol() {
  local cur=\${words[CURRENT]} prev=\${words[CURRENT-1]}
${_scan(t, 'words', 2, 'CURRENT')}
${_shBody(t, say)}
}

# Autoloaded from $fpath the file is the function's first call; sourced, it registers it.
if [[ $funcstack[1] == _trust_protocol ]]; then
  _trust_protocol "$@"
else
  compdef _trust_protocol trust-protocol
fi
`;
}

function _fish(t: Table): string {
  const say: Say = {
    words: (list) => `printf '%s\\n' ${list.join(' ')}`,
    names: (group, field) => `_trust_protocol_list ${group} ${field}`,
    files: '__fish_complete_path $cur',
  };
  // The sh case arms, as fish switch cases.
  const fishArms = (arms: string) =>
    arms.replace(
      /^ {4}(.*?)\) (.*) ;;$/gm,
      (_, patterns: string, body: string) =>
        `    case ${
          patterns.split('|').map((p) => (p.startsWith("'") ? p : `'${p}'`)).join(' ')
        }\n      ${body === ':' ? 'true' : body}`,
    );
  return `# trust-protocol completion for fish (generated by \`trust-protocol completion fish\`)
# Install: trust-protocol completion fish > ~/.config/fish/completions/trust-protocol.fish

function _trust_protocol_list
  # Names the vault knows, asked lazily; these list commands need no password.
  if test -n "$_trust_protocol_home"
    command trust-protocol --home=$_trust_protocol_home $argv[1] list --json 2>/dev/null
  else
    command trust-protocol $argv[1] list --json 2>/dev/null
  end | string replace -rf '^    "'$argv[2]'": "([^"]*)",?$' '$1'
end

function _trust_protocol_complete
  set -l words (commandline -opc)
  set -l cur (commandline -ct)
  set -l prev $words[-1]
  set -l valued (string split ' ' -- '${[...t.valued.keys()].join(' ')}')
  set -l groups ${[...t.groups.keys()].join(' ')}
  set -l cmd
  set -l npos 0
  set -g _trust_protocol_home
  set -l skip 0
  for w in $words[2..-1]
    if test $skip = 1
      set skip 0
      continue
    end
    if test $skip = 2
      set _trust_protocol_home $w
      set skip 0
      continue
    end
    if string match -q -- '-*' $w
      contains -- $w $valued; and set skip 1
      test "$w" = --home; and set skip 2
      continue
    end
    if test -z "$cmd"
      set cmd $w
    else if not string match -q -- '* *' "$cmd"; and contains -- $cmd $groups
      set cmd "$cmd $w"
    else
      set npos (math $npos + 1)
    end
  end
  if string match -q -- '-*' $prev; and contains -- $prev $valued
    switch $prev
${fishArms(_caseArms([...t.valued], say))}
    end
    return
  end
  if string match -q -- '-*' $cur
    switch $cmd
${[...t.flags].map(([cmd, flags]) => `    case '${cmd}'\n      ${say.words(flags)}`).join('\n')}
    case '*'
      ${say.words(t.globalFlags)}
    end
    return
  end
  if test -z "$cmd"; or test "$cmd" = help
    ${say.words(t.top)}
    return
  end
  switch $cmd
${
    [...t.groups].map(([g, subs]) => `    case ${g}\n      ${say.words(subs)}\n      return`).join(
      '\n',
    )
  }
  end
  switch "$cmd $npos"
${fishArms(_positionalArms(t, say))}
  end
end

complete -c trust-protocol -f -a '(_trust_protocol_complete)'
`;
}

export function completionScript(shell: Shell, table: Table): string {
  return shell === 'bash' ? _bash(table) : shell === 'zsh' ? _zsh(table) : _fish(table);
}

const completion: Command = {
  words: ['completion'],
  summary: 'print a shell completion script (bash, zsh or fish)',
  usage: 'completion bash|zsh|fish',
  help:
    `Install for bash: trust-protocol completion bash > ~/.local/share/bash-completion/completions/trust-protocol
Install for zsh:  trust-protocol completion zsh > ~/.zfunc/_trust_protocol  (fpath=(~/.zfunc $fpath) before compinit)
Install for fish: trust-protocol completion fish > ~/.config/fish/completions/trust-protocol.fish`,
  options: {},
  examples: [
    'trust-protocol completion bash > ~/.local/share/bash-completion/completions/trust-protocol',
    'trust-protocol completion zsh > ~/.zfunc/_trust_protocol',
  ],
  args: { min: 1, max: 1 },
  async run(ctx) {
    const shell = ctx.positionals[0] as Shell;
    if (!SHELLS.includes(shell)) {
      throw usage('unknown_shell', 'completion is available for bash, zsh or fish');
    }
    // The command table lives in cli.ts, which loads this module on demand: no import cycle at start.
    const { allCommands, GLOBAL_OPTIONS } = await import('../cli.ts');
    const script = completionScript(shell, completionTable(await allCommands(), GLOBAL_OPTIONS));
    return { json: { shell, script }, text: script };
  },
};

export const completionCommands: Command[] = [completion];
