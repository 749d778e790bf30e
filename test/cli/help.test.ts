/**
 * Help for every command (issue 16): each flag has one line saying what it means and where its
 * value comes from when it is absent, each command has one or two examples, and the examples use
 * only flags the command accepts. The table walk keeps a new flag from shipping undescribed.
 */
import { describe, expect, it } from 'vitest';
import { allCommands, GLOBAL_OPTIONS } from '../../cmd/cli.ts';
import type { Command } from '../../cmd/context.ts';
import { run } from '../helpers/cli.ts';

interface Described {
  type: 'string' | 'boolean';
  short?: string;
  value?: unknown;
  help?: unknown;
}

function _options(c: Command): Record<string, Described> {
  return c.options as Record<string, Described>;
}

/** The flags an example uses: `--name`, `--name=value` and `-X` spellings, named by long name. */
function _usedFlags(example: string, accepted: Record<string, Described>): string[] {
  const shorts = new Map(
    Object.entries(accepted).flatMap(([n, o]) => (o.short ? [[o.short, n]] : [])),
  );
  const used: string[] = [];
  for (const word of example.split(/\s+/)) {
    if (word.startsWith('--') && word.length > 2) used.push(word.slice(2).split('=')[0] as string);
    else if (/^-[A-Za-z]$/.test(word)) used.push(shorts.get(word.slice(1)) ?? word);
  }
  return used;
}

describe('the command table', () => {
  it('describes every flag of every command, and every global flag', async () => {
    const all = await allCommands();
    expect(all.length).toBeGreaterThan(30);
    const tables: Array<[string, Record<string, Described>]> = [
      ['(global)', GLOBAL_OPTIONS as Record<string, Described>],
      ...all.map((c) => [c.words.join(' '), _options(c)] as [string, Record<string, Described>]),
    ];
    for (const [where, options] of tables) {
      for (const [name, o] of Object.entries(options)) {
        const at = `${where} --${name}`;
        expect(typeof o.help === 'string' && o.help.trim() !== '', at).toBe(true);
        expect(String(o.help), at).not.toContain('\n');
        // A flag that takes a value names it (`--ttl DURATION`); a switch names none.
        if (o.type === 'string') expect(o.value, at).toMatch(/^[^\s"]+$|^"[^"]+"$/);
        else expect(o.value, at).toBeUndefined();
      }
    }
  });

  it('gives every command one or two examples that use only its own and the global flags', async () => {
    for (const c of await allCommands()) {
      const where = c.words.join(' ');
      const examples = (c as { examples?: unknown }).examples;
      expect(Array.isArray(examples), where).toBe(true);
      const list = examples as string[];
      expect(list.length, where).toBeGreaterThanOrEqual(1);
      expect(list.length, where).toBeLessThanOrEqual(2);
      const accepted = { ...GLOBAL_OPTIONS, ..._options(c) } as Record<string, Described>;
      for (const example of list) {
        expect(example, where).not.toContain('\n');
        expect(`${example} `.startsWith(`trust-protocol ${where} `), example).toBe(true);
        for (const flag of _usedFlags(example, accepted)) {
          expect(Object.keys(accepted), `${example}: --${flag}`).toContain(flag);
        }
      }
    }
  });
});

describe('help on the real command line', () => {
  it('`help exec` and `exec --help` print the same text: every flag described, examples, no exit codes', async () => {
    const a = await run(['help', 'exec']);
    const b = await run(['exec', '--help']);
    expect(a.code).toBe(0);
    expect(b.code).toBe(0);
    expect(a.stdout).toBe(b.stdout);
    const exec = (await allCommands()).find((c) => c.words.join(' ') === 'exec') as Command;
    // A long description wraps onto indented lines.
    const flat = a.stdout.replace(/\s+/g, ' ');
    for (const [name, o] of Object.entries(_options(exec))) {
      expect(a.stdout, `--${name}`).toContain(`--${name}`);
      expect(flat, `--${name}`).toContain(String(o.help));
    }
    // The option lines fit in 100 columns (the usage line and examples are left whole to copy).
    const options = a.stdout.slice(a.stdout.indexOf('Options:'), a.stdout.indexOf('Examples:'));
    expect(Math.max(...options.split('\n').map((l) => l.length))).toBeLessThanOrEqual(100);
    expect(a.stdout).toContain('\nExamples:\n');
    for (const example of exec.examples) {
      expect(a.stdout).toContain(`  ${example}\n`);
    }
    expect(a.stdout).toContain('trust-protocol --help');
    expect(a.stdout).not.toContain('Exit codes:');
  });

  it('the top-level help describes the global flags once, with the exit-code table', async () => {
    const top = await run(['--help']);
    expect(top.code).toBe(0);
    expect(top.stdout).toContain('Exit codes:');
    const flat = top.stdout.replace(/\s+/g, ' ');
    for (const [name, o] of Object.entries(GLOBAL_OPTIONS as Record<string, Described>)) {
      expect(flat, `--${name}`).toContain(String(o.help));
    }
    const agentList = await run(['agent', 'list', '--help']);
    expect(agentList.stdout).not.toContain('Exit codes:');
    expect(agentList.stdout).not.toContain(String((GLOBAL_OPTIONS.home as Described).help));
  });
});
