import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Tests of the built executable itself run only in the binary pass (TP_CLI=binary).
    exclude: process.env.TP_CLI === 'binary'
      ? ['**/node_modules/**']
      : ['**/node_modules/**', 'test/binary/**'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
});
