import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

// Tests of the built executable itself run only in the binary pass (TP_CLI=binary).
const binaryOnly = process.env.TP_CLI === 'binary' ? [] : ['test/binary/**'];
// Uses the machine's /run/trust-protocol, where every `exec` looks for a serve: alone, last.
const alone = ['test/binary/dedicated.test.ts'];

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // One home initialised by the CLI for the whole run, copied by newHome() (test/helpers/cli.ts).
    globalSetup: ['test/helpers/global_setup.ts'],
    // Most tests wait on the CLI processes they start, so one more worker than cores keeps both
    // cores busy (vitest's default is one fewer: a single worker on a 2-core machine).
    maxWorkers: availableParallelism() + 1,
    projects: [
      {
        extends: true,
        test: {
          name: 'main',
          include: ['test/**/*.test.ts'],
          exclude: ['**/node_modules/**', ...binaryOnly, ...alone],
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        test: {
          name: 'alone',
          include: alone,
          exclude: ['**/node_modules/**', ...binaryOnly],
          sequence: { groupOrder: 1 },
          maxWorkers: 1,
        },
      },
    ],
  },
});
