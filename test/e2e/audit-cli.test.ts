/**
 * `sluice why RUN_ID` and `sluice snapshot` against a real server on a real port. The server's
 * clock is the process clock, so Date alone is faked (timers stay real) to give every command
 * a known time and the timeline known durations.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { formatDuration, why } from '../../src/cli/audit.js';
import { CliError } from '../../src/cli/client.js';
import { runCli } from '../../src/cli/run.js';
import { type RunningServer, startServer } from '../../src/server.js';
import { DEFAULT_SETTINGS } from '../../src/settings.js';
import { Gql, type Json } from '../support/e2e-http.js';

// vitest resolves `graphql` to its ESM build for src/ while Pothos and Yoga load the CJS one;
// two realms break the schema. Give src/ the CJS build too (as the other e2e tests do).
vi.mock('graphql', async () => (await import('node:module')).createRequire(import.meta.url)('graphql'));

const T0 = Date.parse('2026-11-27T14:00:00.000Z');
const at = (seconds: number) => new Date(T0 + seconds * 1000).toISOString();

let server: RunningServer;
let url: string;
let gql: Gql;

beforeEach(async () => {
  // performance too: event time runs on by the monotonic clock, which must be the test's as well.
  vi.useFakeTimers({ toFake: ['Date', 'performance'] });
  vi.setSystemTime(T0);
  server = await startServer(
    { ...DEFAULT_SETTINGS, port: 0, host: '127.0.0.1', eventStoreUrl: 'sqlite::memory:' },
    () => {},
  );
  url = server.url;
  gql = new Gql(url);
});

afterEach(async () => {
  await server.close();
  vi.useRealTimers();
});

const cli = (...argv: string[]) => runCli([...argv, '--url', url], {});

/** The CliError a command fails with (fails the test when it succeeds or throws something else). */
async function cliError(argv: string[]): Promise<CliError> {
  const failure = await runCli(argv, {}).then(
    (output) => new Error(`expected a CliError, got output ${JSON.stringify(output)}`),
    (error: unknown) => error,
  );
  expect(failure).toBeInstanceOf(CliError);
  return failure as CliError;
}

/** Runs a mutation at T0 + seconds; fails on any error member. */
async function atTime(seconds: number, query: string): Promise<Json> {
  vi.setSystemTime(T0 + seconds * 1000);
  const data = await gql.data(`mutation { ${query} }`);
  for (const value of Object.values(data) as Json[]) {
    if (value?.__typename?.endsWith('Error')) throw new Error(`${value.__typename}: ${value.message}`);
  }
  return data;
}

const position = () => server.sluice.state.revision.toString();

/**
 * A run `r` that waits twice, for different reasons, then is admitted, starts, waits for a
 * slot, gets it and is canceled with force. Returns positions worth a snapshot.
 */
async function story(): Promise<{ heldByRunLimit: string; heldByTag: string }> {
  // The root-step hold off: r must be admitted while blocker holds db's one slot, so its step waits.
  await atTime(
    0,
    `a: setMaxConcurrentRuns(limit: 1) { __typename } b: setPoolLimit(pool: "db", limit: 1) { __typename }
    c: changeConcurrencyConfig(change: {rootStepHold: {enabled: false}}) { __typename }`,
  );
  await atTime(
    1,
    `enqueueRun(input: {runId: "blocker", jobName: "etl", tags: [{key: "team", value: "x"}], steps: [{key: "b", pool: "db"}]}) { __typename }`,
  );
  await atTime(
    2,
    `a: markRunStarted(runId: "blocker") { __typename } b: claimStepSlot(runId: "blocker", stepKey: "b") { __typename }`,
  );
  await atTime(
    5,
    `enqueueRun(input: {runId: "r", jobName: "etl", tags: [{key: "team", value: "x"}], steps: [{key: "s", pool: "db"}]}) { __typename }`,
  );
  const heldByRunLimit = position();
  await atTime(
    15,
    `changeConcurrencyConfig(change: {maxConcurrentRuns: 2, tagConcurrencyLimits: [{key: "team", limit: 1}]}) { __typename }`,
  );
  const heldByTag = position();
  await atTime(80, 'setTagConcurrencyLimits(limits: []) { __typename }');
  await atTime(81, 'markRunStarted(runId: "r") { __typename }');
  await atTime(82, 'claimStepSlot(runId: "r", stepKey: "s") { __typename }');
  await atTime(90, 'releaseStepSlot(runId: "blocker", stepKey: "b") { __typename }');
  await atTime(100, 'terminateRun(runId: "r", force: true) { __typename }');
  return { heldByRunLimit, heldByTag };
}

// ---------------------------------------------------------------------------------------------

describe('sluice why', () => {
  it('given a run that waited twice for different reasons, then got a slot and was canceled with force, when why is asked, then each stretch, decision and step is a line, in time order', async () => {
    await story();
    vi.setSystemTime(T0 + 500_000);
    expect(await cli('why', 'r')).toBe(
      [
        'run r: job etl, CANCELED, priority 0',
        '  tags: team=x; pools: db',
        `${at(5)}  enqueued`,
        `${at(5)}  waited 10s: max concurrent runs: 1 of 1 runs in progress`,
        `${at(15)}  waited 1m 5s: tag team (any value): 1 of 1 runs in progress`,
        `${at(80)}  admitted (STARTING)`,
        `${at(81)}  started`,
        `${at(82)}  step s waits for a slot: pool db: 1 of 1 slots in use`,
        `${at(90)}  step s got a slot of pool db`,
        `${at(100)}  finished CANCELED (terminated with force)`,
        'waited 1m 15s in all, in 2 stretches',
      ].join('\n'),
    );
  });

  it('given a run admitted at once and one terminated gracefully, when why is asked, then the first says it never waited and the second shows the termination request', async () => {
    await story();
    expect(await cli('why', 'blocker')).toBe(
      [
        'run blocker: job etl, STARTED, priority 0',
        '  tags: team=x; pools: db',
        `${at(1)}  enqueued`,
        `${at(1)}  admitted (STARTING)`,
        `${at(2)}  started`,
        `${at(2)}  step b got a slot of pool db`,
        'admitted without waiting',
      ].join('\n'),
    );
    await atTime(120, 'terminateRun(runId: "blocker") { __typename }');
    await atTime(125, 'markRunFinished(runId: "blocker", status: CANCELED) { __typename }');
    const lines = (await cli('why', 'blocker'))!.split('\n');
    expect(lines.slice(-3)).toEqual([
      `${at(120)}  termination requested (CANCELING)`,
      `${at(125)}  finished CANCELED`,
      'admitted without waiting',
    ]);
  });

  it('given a run still waiting, when why is asked, then its open stretch is counted up to now and says so', async () => {
    await atTime(0, 'setMaxConcurrentRuns(limit: 0) { __typename }');
    await atTime(10, 'enqueueRun(input: {runId: "q", jobName: "etl", priority: 3}) { __typename }');
    vi.setSystemTime(T0 + 10_000 + 3_723_000);
    expect(await cli('why', 'q')).toBe(
      [
        'run q: job etl, QUEUED, priority 3',
        '  tags: none; pools: none',
        `${at(10)}  enqueued`,
        `${at(10)}  waited 1h 2m 3s so far, still waiting: max concurrent runs: 0 of 0 runs in progress`,
        'waited 1h 2m 3s in all, in 1 stretch',
      ].join('\n'),
    );
    // `now` can be given to the function itself.
    expect((await why(url, 'q', new Date(T0 + 11_500))).text.split('\n')[3]).toBe(
      `${at(10)}  waited 1.5s so far, still waiting: max concurrent runs: 0 of 0 runs in progress`,
    );
  });

  it('given a run that was never enqueued, when why is asked, then it fails with a CliError (exit 1) naming the run', async () => {
    const error = await cliError(['why', 'nobody', '--url', url]);
    expect(error.message).toBe('run nobody does not exist');
    expect(error.exitCode).toBe(1);
  });

  it('given why without a run id or with two, when it runs, then it is a usage error (exit 2)', async () => {
    expect((await cliError(['why', '--url', url])).exitCode).toBe(2);
    expect((await cliError(['why', 'a', 'b', '--url', url])).exitCode).toBe(2);
  });
});

// ---------------------------------------------------------------------------------------------

describe('sluice snapshot', () => {
  it('given --position, when a snapshot is asked, then it shows the limits, runs in progress, the queue with what held each run then, and pools, as of that position', async () => {
    const { heldByRunLimit, heldByTag } = await story();
    expect(await cli('snapshot', '--position', heldByRunLimit)).toBe(
      [
        `as of position ${heldByRunLimit} (${at(5)})`,
        'limits: max concurrent runs 1, pools OP granularity, default pool limit none',
        'tag limits: none',
        'in progress (1):',
        '  blocker  STARTED  job etl',
        'queue (1), in admission order:',
        '  1. r  job etl, priority 0: held by max concurrent runs: 1 of 1 runs in progress',
        'pools (1):',
        '  db: 1 / 1 in use',
      ].join('\n'),
    );
    expect(await cli('snapshot', '--position', heldByTag)).toBe(
      [
        `as of position ${heldByTag} (${at(15)})`,
        'limits: max concurrent runs 2, pools OP granularity, default pool limit none',
        'tag limits: team: 1',
        'in progress (1):',
        '  blocker  STARTED  job etl',
        'queue (1), in admission order:',
        '  1. r  job etl, priority 0: held by tag team (any value): 1 of 1 runs in progress',
        'pools (1):',
        '  db: 1 / 1 in use',
      ].join('\n'),
    );
  });

  it('given --at, when a snapshot is asked, then it is as of the last event at or before that time, and shows that time', async () => {
    await story();
    const between = at(50);
    const output = await cli('snapshot', '--at', between);
    const byPosition = await cli(
      'snapshot',
      '--position',
      (await gql.data(`{ snapshot(at: "${between}") { position } }`)).snapshot.position,
    );
    expect(output!.split('\n')[0]).toMatch(new RegExp(`^as of position \\d+ \\(${between.replaceAll('.', '\\.')}\\)$`));
    expect(output!.split('\n').slice(1)).toEqual(byPosition!.split('\n').slice(1));
    expect(output).toContain('tag limits: team: 1');
    // Any format Date understands, shown as UTC.
    expect((await cli('snapshot', '--at', '2026-11-27T15:00:50+01:00'))!.split('\n')[0]).toContain(`(${between})`);

    const end = await cli('snapshot', '--at', '2030-01-01T00:00:00Z');
    expect(end).toContain('in progress (1):\n  blocker  STARTED  job etl\nqueue (0), in admission order:');
    const start = await cli('snapshot', '--at', '2020-01-01T00:00:00Z');
    expect(start).toBe(
      [
        'as of position -1 (2020-01-01T00:00:00.000Z)',
        'limits: max concurrent runs 10, pools OP granularity, default pool limit none',
        'tag limits: none',
        'in progress (0):',
        'queue (0), in admission order:',
        'pools (0):',
      ].join('\n'),
    );
  });

  it('given no option, when a snapshot is asked, then it is now', async () => {
    await story();
    expect((await cli('snapshot'))!.split('\n')[0]).toBe(`as of position ${position()} (${at(100)})`);
  });

  it('given a bad --at, or --at with --position, when snapshot runs, then it is a usage error (exit 2) and asks the server nothing', async () => {
    const bad = await cliError(['snapshot', '--at', 'yesterday', '--url', url]);
    expect(bad.exitCode).toBe(2);
    expect(bad.message).toBe('--at must be a time such as 2026-11-27T14:00:00Z, got "yesterday"');
    const both = await cliError(['snapshot', '--at', at(1), '--position', '0', '--url', url]);
    expect(both.exitCode).toBe(2);
    expect(both.message).toBe('give --at or --position, not both');
    // Nothing reached the server: even an unreachable URL gives the same errors.
    expect((await cliError(['snapshot', '--at', 'nope', '--url', 'http://127.0.0.1:9/graphql'])).exitCode).toBe(2);
  });

  it('given a position beyond the log or not a position, when snapshot runs, then the server refuses it and the CLI fails (exit 1) with its message', async () => {
    await story();
    const last = server.sluice.state.revision;
    const beyond = await cliError(['snapshot', '--position', String(last + 5n), '--url', url]);
    expect(beyond.exitCode).toBe(1);
    expect(beyond.message).toBe(`position ${last + 5n} is not in the log yet (the last is ${last})`);
    const malformed = await cliError(['snapshot', '--position', 'abc', '--url', url]);
    expect(malformed.exitCode).toBe(1);
    expect(malformed.message).toMatch(/position/);
  });
});

// ---------------------------------------------------------------------------------------------

describe('formatDuration', () => {
  it.each([
    [0, '0s'],
    [49, '0s'],
    [50, '0.1s'],
    [1_500, '1.5s'],
    [10_000, '10s'],
    [59_940, '59.9s'],
    [60_000, '1m'],
    [60_499, '1m'],
    [60_500, '1m 1s'],
    [65_000, '1m 5s'],
    [3_600_000, '1h'],
    [3_601_000, '1h 1s'],
    [3_660_000, '1h 1m'],
    [3_723_000, '1h 2m 3s'],
    [7_384_000, '2h 3m 4s'],
    [2 * 86_400_000, '48h'],
  ])('given %i ms, then %s', (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });

  it('given a duration that rounds up to a whole minute (59.95 s to 59.999 s), then it reads 1m, as 60 s does, not 60s', () => {
    expect(formatDuration(60_000)).toBe('1m');
    expect(formatDuration(59_999)).toBe('1m');
    expect(formatDuration(59_950)).toBe('1m');
  });
});
