/**
 * Adds up vitest JSON reports from the four runs (Node, Deno, binary, the store dimension) and
 * prints the closing line CI reads: `N passed, N failed`. A missing or unreadable report counts as
 * a failure, so a run that crashed can never look green. Each failed test is named (run, file,
 * title, the first line of its message) just above the total, so the tail of a CI log says what
 * broke. Exits non-zero when anything failed.
 */
import { readFileSync } from 'node:fs';

let passed = 0;
let failed = 0;
let skipped = 0;
for (const file of process.argv.slice(2)) {
  try {
    const report = JSON.parse(readFileSync(file, 'utf8'));
    passed += report.numPassedTests;
    failed += report.numFailedTests;
    skipped += report.numPendingTests + report.numTodoTests;
    const run = file.replace(/^.*\//, '').replace(/\.json$/, '');
    for (const suite of report.testResults ?? []) {
      for (const test of suite.assertionResults ?? []) {
        if (test.status !== 'failed') continue;
        const why = String(test.failureMessages?.[0] ?? '').split('\n')[0].slice(0, 300);
        console.log(`FAILED [${run}] ${suite.name}: ${test.fullName}: ${why}`);
      }
      // A file that failed to load has no assertions but a failed status.
      if (suite.status === 'failed' && (suite.assertionResults ?? []).length === 0) {
        failed += 1;
        console.log(`failed to run: ${suite.name}: ${String(suite.message).split('\n')[0]}`);
      }
    }
    if (report.numTotalTests === 0) {
      failed += 1;
      console.log(`no tests ran in ${file}`);
    }
  } catch (e) {
    failed += 1;
    console.log(`missing or unreadable report ${file}: ${(e as Error).message}`);
  }
}
console.log(`${passed} passed, ${failed} failed` + (skipped > 0 ? `, ${skipped} skipped` : ''));
process.exitCode = failed > 0 ? 1 : 0;
