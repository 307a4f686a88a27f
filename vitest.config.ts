import { defineConfig } from 'vitest/config';

export default defineConfig({
  // graphql 16 ships CJS and ESM without an exports map; Pothos and Yoga load the CJS build,
  // so the code under test must too, or two copies of graphql meet ("another realm").
  resolve: { alias: { graphql: 'graphql/index.js' } },
  test: {
    include: ['test/**/*.test.ts'],
    // FC_SEED=<printed seed> replays a failed property test.
    setupFiles: ['test/support/fast-check-seed.ts'],
    // Every log the tests leave is checked by `sluice verify` at the end.
    globalSetup: ['test/verify-logs.setup.ts'],
    environment: 'node',
    env: { NODE_ENV: 'test' },
    // Two files at once even on two cores (vitest's default there is one): most of the slow files
    // wait on child processes, PostgreSQL clusters and sockets rather than compute, and one at a
    // time put the suite past its time budget.
    maxWorkers: 2,
    testTimeout: 20_000,
    hookTimeout: 20_000,
  },
});
