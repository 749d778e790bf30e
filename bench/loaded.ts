/**
 * What a command loads at start-up, for bench/exec_serve.ts: run as
 * `node --import ./bench/loaded.ts cmd/main.ts ...` (the sources: one file a module) or
 * `node --import ./bench/loaded.ts dist/trust-protocol.cjs ...` (the bundle the binary embeds).
 * At exit it writes to the file named by TP_BENCH_LOADED, as JSON, the project's modules loaded
 * (src/ and cmd/ files, and packages under node_modules) and the built-in modules Node loaded after
 * this hook (what the command's code needed). TP_BENCH_LOADED_HOOKS=0 leaves the module hooks
 * out, whose own loading would count among the built-ins.
 */
import * as fs from 'node:fs';
import { registerHooks } from 'node:module';
import process from 'node:process';

const out = process.env.TP_BENCH_LOADED;
const loaded: string[] = [];
const list = () => (process as unknown as { moduleLoadList: string[] }).moduleLoadList;
const before = new Set(list());
if (process.env.TP_BENCH_LOADED_HOOKS !== '0') {
  registerHooks({
    load(url, context, next) {
      loaded.push(url);
      return next(url, context);
    },
  });
}
process.on('exit', () => {
  if (out === undefined) return;
  const root = new URL('..', import.meta.url).href;
  const builtins = list()
    .filter((m) => m.startsWith('NativeModule ') && !before.has(m))
    .map((m) => m.slice('NativeModule '.length));
  const modules = loaded
    .filter((u) => u.startsWith(root) && !u.endsWith('/bench/loaded.ts'))
    .map((u) => u.slice(root.length));
  fs.writeFileSync(out, JSON.stringify({ modules, builtins }));
});
