/**
 * The Rust SDK (sdk/rust, standard library only, Rust 1.63 as Debian ships it) against a real
 * serve: its example program is built once with `cargo build --offline` into a temporary target
 * directory, then run over the unix socket and TCP (test/sdk/native.ts). Skipped, loudly,
 * without `cargo`.
 */
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import process from 'node:process';
import { nativeSdkSuite } from './native.ts';

nativeSdkSuite({
  name: 'Rust',
  probe: ['cargo', '--version'],
  install: 'rustc cargo',
  build(dir) {
    execFileSync('cargo', ['build', '--offline', '--quiet', '--example', 'example'], {
      cwd: 'sdk/rust',
      env: { ...process.env, CARGO_TARGET_DIR: dir },
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    return path.join(dir, 'debug', 'examples', 'example');
  },
});
