/**
 * The Go SDK (sdk/go, standard library only, Go 1.19 as Debian ships it) against a real serve:
 * its example program is built once with `go build`, then run over the unix socket and TCP
 * (test/sdk/native.ts). Skipped, loudly, without `go`.
 */
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import process from 'node:process';
import { nativeSdkSuite } from './native.ts';

nativeSdkSuite({
  name: 'Go',
  probe: ['go', 'version'],
  install: 'golang-go',
  build(dir) {
    const out = path.join(dir, 'example');
    execFileSync('go', ['build', '-o', out, './example'], {
      cwd: 'sdk/go',
      // No network: the module has no dependency, and a newer go must not fetch a toolchain.
      env: { ...process.env, GOPROXY: 'off', GOTOOLCHAIN: 'local', GOFLAGS: '-mod=mod' },
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    return out;
  },
});
