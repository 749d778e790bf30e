/**
 * Times Argon2id with one implementation, in this process, for `make bench`. Runs on Node (native
 * `node:crypto`, what the binary uses) and on Deno (`@noble/hashes`, what Deno uses). Prints one
 * JSON line: `{"runtime", "impl", "ms": [...]}`, one entry per derivation, the first one cold.
 * Run: node bench/kdf.ts node:crypto default 5   |   deno run -A bench/kdf.ts @noble/hashes default 3
 */
import process from 'node:process';
import { argon2idWith, KDF_DEFAULT, KDF_FLOOR } from '../src/crypto/kdf.ts';

const [impl, which, count] = process.argv.slice(2);
if (impl !== 'node:crypto' && impl !== '@noble/hashes') throw new Error(`unknown impl ${impl}`);
const params = which === 'floor' ? KDF_FLOOR : KDF_DEFAULT;
const password = new TextEncoder().encode('a master password of ordinary length');
const salt = new Uint8Array(16).fill(7);
const ms: number[] = [];
for (let i = 0; i < Number(count ?? '3'); i++) {
  const started = performance.now();
  argon2idWith(impl, { password, salt, params, length: 32 });
  ms.push(performance.now() - started);
}
const runtime = typeof (globalThis as { Deno?: unknown }).Deno === 'object' ? 'deno' : 'node';
console.log(JSON.stringify({ runtime, impl, ms }));
