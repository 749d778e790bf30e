/**
 * A test that needs a tool this machine lacks. Outside `make test` it is skipped, loudly; under
 * `make test` (TP_REQUIRE_TOOLS=1), which ran `make tools` first, a missing tool is a failure, so
 * that CI can never pass by skipping what it should have checked.
 */
import { it } from 'vitest';

export function missingTool(what: string, why: string): void {
  if (process.env.TP_REQUIRE_TOOLS === '1') {
    it(`${what}: the tool is installed (make tools)`, () => {
      throw new Error(`${what} cannot run: ${why}`);
    });
    return;
  }
  console.warn(`\n*** SKIPPED: ${what}: ${why} ***\n`);
}
