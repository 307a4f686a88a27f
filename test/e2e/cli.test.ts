/** `sluice concurrency get|set|delete` against a real server, as `dagster instance concurrency` does. */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DEPLOYMENT_STREAM } from '../../src/app/sluice.js';
import { CliError } from '../../src/cli/client.js';
import { runCli } from '../../src/cli/run.js';
import { type RunningServer, startServer } from '../../src/server.js';
import { DEFAULT_SETTINGS } from '../../src/settings.js';
import { freePort, Gql, type Json } from '../support/e2e-http.js';

let server: RunningServer;
let url: string;
let gql: Gql;

beforeEach(async () => {
  server = await startServer(
    { ...DEFAULT_SETTINGS, port: 0, host: '127.0.0.1', eventStoreUrl: 'sqlite::memory:' },
    () => {},
  );
  url = server.url;
  gql = new Gql(url);
});

afterEach(async () => {
  await server.close();
});

const cli = (...argv: string[]) => runCli([...argv, '--url', url], {});

/** The CliError a command fails with (fails the test when it succeeds or throws something else). */
async function cliError(argv: string[], env: Record<string, string> = {}): Promise<CliError> {
  const failure = await runCli(argv, env).then(
    (output) => new Error(`expected a CliError, got output ${JSON.stringify(output)}`),
    (error: unknown) => error,
  );
  expect(failure).toBeInstanceOf(CliError);
  return failure as CliError;
}

async function mutate(query: string): Promise<Json> {
  return gql.data(query);
}

describe('sluice concurrency set / get / delete', () => {
  it('given a pool, when its limit is set, read, listed and deleted, then each answers in the Dagster style', async () => {
    expect(await cli('concurrency', 'set', 'database', '2')).toBe('set database: 0 / 2 in use');
    expect(await cli('concurrency', 'get', 'database')).toBe('database: 0 / 2 in use');
    expect(await cli('concurrency', 'get', '--all')).toBe(
      'pools (granularity OP, default limit none, root-step hold on (run buffer 0)):\n  database: 0 / 2 in use',
    );
    expect(await cli('concurrency', 'delete', 'database')).toBe(
      'deleted the limit of pool database; now database: 0 / unlimited in use',
    );
    expect(await cli('concurrency', 'get', 'database')).toBe('database: 0 / unlimited in use');
    const pool = await gql.data('{ pool(name: "database") { limit explicitLimit } }');
    expect(pool.pool).toEqual({ limit: null, explicitLimit: null });
  });

  it('given RUN granularity, a default limit and runs on pools, when pools are listed, then counts, pending runs and the default show', async () => {
    await mutate(`mutation {
      setPoolGranularity(granularity: RUN) { __typename }
      setDefaultPoolLimit(limit: 3) { __typename }
      setPoolLimit(pool: "database", limit: 1) { __typename }
      a: enqueueRun(input: {runId: "a", jobName: "j", steps: [{key: "s", pool: "database"}]}) { __typename }
      b: enqueueRun(input: {runId: "b", jobName: "j", steps: [{key: "s", pool: "database"}]}) { __typename }
      c: enqueueRun(input: {runId: "c", jobName: "j", steps: [{key: "s", pool: "scratch"}]}) { __typename }
    }`);
    expect(await cli('concurrency', 'get', 'database')).toBe('database: 1 / 1 in use, 1 pending');
    expect(await cli('concurrency', 'get', '--all')).toBe(
      [
        'pools (granularity RUN, default limit 3):',
        '  database: 1 / 1 in use, 1 pending',
        '  scratch: 1 / 3 in use (default limit)',
      ].join('\n'),
    );
    // Raising the limit admits the waiting run.
    expect(await cli('concurrency', 'set', 'database', '2')).toBe('set database: 2 / 2 in use');
  });

  it('given OP granularity, when runs are admitted with root steps in a pool, then the pool shows them as promised until they claim', async () => {
    await mutate(`mutation {
      setPoolLimit(pool: "database", limit: 2) { __typename }
      a: enqueueRun(input: {runId: "a", jobName: "j", steps: [{key: "s", pool: "database"}]}) { __typename }
    }`);
    expect(await cli('concurrency', 'get', 'database')).toBe('database: 0 / 2 in use, 1 promised');
    await mutate(
      'mutation { markRunStarted(runId: "a") { __typename } claimStepSlot(runId: "a", stepKey: "s") { __typename } }',
    );
    expect(await cli('concurrency', 'get', 'database')).toBe('database: 1 / 2 in use');
    await mutate('mutation { changeConcurrencyConfig(change: {rootStepHold: {enabled: false}}) { __typename } }');
    expect(await cli('concurrency', 'get')).toBe(
      'pools (granularity OP, default limit none, root-step hold off):\n  database: 1 / 2 in use',
    );
  });

  it('given no pools yet, when all pools are listed (with or without --all), then it says so', async () => {
    const expected = 'pools (granularity OP, default limit none, root-step hold on (run buffer 0)):\n  (no pools yet)';
    expect(await cli('concurrency', 'get', '--all')).toBe(expected);
    expect(await cli('concurrency', 'get')).toBe(expected);
  });

  it('given the CLI sets a limit in open mode, when the log is read, then the edit is recorded with actor anonymous', async () => {
    await cli('concurrency', 'set', 'database', '4');
    expect((await server.store.readStream(DEPLOYMENT_STREAM)).at(-1)).toMatchObject({
      type: 'PoolLimitSet',
      data: { pool: 'database', limit: 4 },
      actor: 'anonymous',
    });
  });

  it('given no --url, when PORT is set, then the CLI talks to 127.0.0.1:PORT', async () => {
    const port = new URL(url).port;
    expect(await runCli(['concurrency', 'set', 'database', '1'], { PORT: port })).toBe('set database: 0 / 1 in use');
  });
});

describe('sluice concurrency errors', () => {
  it.each([['two'], ['1.5'], [''], ['99999999999']])(
    'given the limit text %j, when set, then a CliError with exit code 2 says LIMIT, and nothing reaches the server',
    async (text) => {
      const error = await cliError(['concurrency', 'set', 'database', text, '--url', url]);
      expect(error.exitCode).toBe(2);
      expect(error.message).toMatch(/LIMIT must be an integer/);
      expect(await server.store.streamRevision(DEPLOYMENT_STREAM)).toBe(-1n);
    },
  );

  it.each([
    [['2000000']],
    // A negative number is read as the LIMIT, not as an option, with or without `--`.
    [['-1']],
    [['--', '-1']],
  ])(
    'given limit %j, when set, then the server’s ValidationError is the CliError’s message and nothing is appended',
    async (limit) => {
      const error = await cliError(['concurrency', 'set', 'database', '--url', url, ...limit]);
      expect(error.message).toMatch(/ValidationError: limit: must be an integer from 0 to 1000000/);
      expect(error.exitCode).toBe(1);
      expect(await server.store.streamRevision(DEPLOYMENT_STREAM)).toBe(-1n);
    },
  );

  it.each([[['concurrency', 'get', '--bogus']], [['concurrency', 'set', 'database', '-x']]])(
    'given an option the CLI does not know in %j, when run, then a CliError with exit code 2 answers (not a raw TypeError)',
    async (argv) => {
      const error = await cliError([...argv, '--url', url]);
      expect(error.exitCode).toBe(2);
      expect(await server.store.streamRevision(DEPLOYMENT_STREAM)).toBe(-1n);
    },
  );

  it('given a pool name of 256 characters, when set, then the ValidationError names the pool', async () => {
    const error = await cliError(['concurrency', 'set', 'p'.repeat(256), '1', '--url', url]);
    expect(error.message).toMatch(/ValidationError: pool: pool name must be at most 255 characters/);
  });

  it('given a pool nobody has named, when it is read, then a CliError says it is unknown', async () => {
    const error = await cliError(['concurrency', 'get', 'nope', '--url', url]);
    expect(error.message).toMatch(/pool nope is unknown/);
  });

  it('given a URL where nothing listens, when any command runs, then a CliError says Sluice cannot be reached there', async () => {
    const port = await freePort();
    const nowhere = `http://127.0.0.1:${port}/graphql`;
    for (const argv of [
      ['concurrency', 'get', '--all'],
      ['concurrency', 'set', 'database', '2'],
      ['concurrency', 'delete', 'database'],
    ]) {
      const error = await cliError([...argv, '--url', nowhere]);
      expect(error.message).toContain(`cannot reach Sluice at ${nowhere}`);
      expect(error.exitCode).toBe(1);
    }
  });

  it('given a URL that is not a GraphQL endpoint, when a command runs, then a CliError says what came back', async () => {
    const error = await cliError(['concurrency', 'get', '--all', '--url', url.replace('/graphql', '/elsewhere')]);
    expect(error.message).toMatch(/Sluice at .*\/elsewhere answered HTTP 404/);
  });

  it('given an unknown command or the wrong number of arguments, when run, then a CliError with exit code 2 shows the usage', async () => {
    for (const argv of [
      ['concurrency', 'frobnicate'],
      ['concurrency', 'set', 'database'],
      ['concurrency', 'delete'],
      ['pools'],
    ]) {
      const error = await cliError([...argv, '--url', url]);
      expect(error.exitCode, argv.join(' ')).toBe(2);
      expect(error.message).toMatch(/usage:/);
    }
  });

  it('given --help, when run, then the usage is printed', async () => {
    expect(await runCli(['--help'], {})).toMatch(/^usage:\n {2}sluice serve/);
  });
});
