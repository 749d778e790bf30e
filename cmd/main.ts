#!/usr/bin/env node
/** Entry point of the `trust-protocol` binary (and of `node cmd/main.ts` / `deno run cmd/main.ts`). */
import { runCli } from './cli.ts';
import { dropResolverEnvironment, processIo } from './io.ts';

dropResolverEnvironment();
runCli(process.argv.slice(2), processIo()).then(
  (code) => {
    // Every output was awaited (and stdout/stderr are synchronous for files, pipes and terminals
    // on Linux), so exit now rather than wait for the runtime's teardown: ~4 ms per exec.
    process.exit(code);
  },
  (e) => {
    process.stderr.write(
      `trust-protocol: error: internal error: ${e instanceof Error ? e.message : String(e)}\n`,
    );
    process.exitCode = 70;
  },
);
