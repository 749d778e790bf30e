/**
 * vitest's globalSetup: one home initialised by the real CLI for the whole run, which newHome()
 * copies (test/helpers/cli.ts) instead of running `init` in every test. The workers inherit the
 * variable that names it.
 */
import { rmSync } from 'node:fs';
import * as path from 'node:path';
import { initTemplateHome, TEMPLATE_ENV } from './cli.ts';

export default async function setup(): Promise<() => void> {
  const home = await initTemplateHome();
  process.env[TEMPLATE_ENV] = home;
  return () => rmSync(path.dirname(home), { recursive: true, force: true });
}
