/**
 * Every `sluice` command against a real server, in text and in --json; --help for each,
 * --version, usage errors, and a busy port at `sluice serve`.
 */
import { createServer, type Server } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CliError } from '../../src/cli/client.js';
import { COMMANDS, runCli } from '../../src/cli/run.js';
import { type RunningServer, startServer } from '../../src/server.js';
import { DEFAULT_SETTINGS } from '../../src/settings.js';
import { Gql, type Json } from '../support/e2e-http.js';

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

const cli = (...argv: string[]) => runCli([...argv, '--url', url], {}) as Promise<string>;
const json = async (...argv: string[]): Promise<Json> => JSON.parse(await cli(...argv, '--json'));

async function cliError(argv: string[]): Promise<CliError> {
  const failure = await runCli([...argv, '--url', url], {}).then(
    (output) => new Error(`expected a CliError, got ${JSON.stringify(output)}`),
    (error: unknown) => error,
  );
  expect(failure).toBeInstanceOf(CliError);
  return failure as CliError;
}

/**
 * Two runs admitted under max 2, one held by the per-team limit, one by max runs; a pool with one
 * slot. c also has a root step without a pool: the root-step hold would otherwise keep it queued
 * behind a's promised db step, and these tests are about two admitted runs sharing the slot.
 */
async function someRuns(): Promise<void> {
  await gql.data(`mutation {
    setMaxConcurrentRuns(limit: 2) { __typename }
    setTagConcurrencyLimits(limits: [{key: "team", applyLimitPerUniqueValue: true, limit: 1}]) { __typename }
    setPoolLimit(pool: "db", limit: 1) { __typename }
    a: enqueueRun(input: {runId: "a", jobName: "etl", tags: [{key: "team", value: "data"}], steps: [{key: "load", pool: "db"}]}) { __typename }
    b: enqueueRun(input: {runId: "b", jobName: "etl", tags: [{key: "team", value: "data"}]}) { __typename }
    c: enqueueRun(input: {runId: "c", jobName: "train", priority: 5, steps: [{key: "load", pool: "db"}, {key: "fit"}]}) { __typename }
    d: enqueueRun(input: {runId: "d", jobName: "report"}) { __typename }
  }`);
  await gql.data(`mutation {
    sa: markRunStarted(runId: "a") { __typename }
    sc: markRunStarted(runId: "c") { __typename }
  }`);
  await gql.data('mutation { claimStepSlot(runId: "a", stepKey: "load") { __typename } }');
  await gql.data('mutation { claimStepSlot(runId: "c", stepKey: "load") { __typename } }');
}

describe('every command in text and --json', () => {
  it('queue: the queued runs in admission order with what holds each', async () => {
    await someRuns();
    expect(await cli('queue')).toBe(
      [
        'queue (2), in admission order:',
        '  1. b  job etl, priority 0: held by max concurrent runs: 2 of 2 runs in progress; tag team=data (limit per value of team): 1 of 1 runs in progress',
        '  2. d  job report, priority 0: held by max concurrent runs: 2 of 2 runs in progress',
      ].join('\n'),
    );
    const answer = await json('queue');
    expect(answer.map((r: Json) => r.id)).toEqual(['b', 'd']);
    expect(answer[0].blockedBy.map((c: Json) => c.kind)).toEqual(['MAX_CONCURRENT_RUNS', 'TAG_LIMIT']);
  });

  it('queue: empty says so', async () => {
    expect(await cli('queue')).toBe('queue: empty');
    expect(await json('queue')).toEqual([]);
  });

  it('runs: every run in enqueue order, or those of --status (one or several, any case)', async () => {
    await someRuns();
    expect(await cli('runs')).toBe(
      [
        'runs (4), in enqueue order:',
        '  a  STARTED  job etl, priority 0',
        '  b  QUEUED  job etl, priority 0',
        '  c  STARTED  job train, priority 5',
        '  d  QUEUED  job report, priority 0',
      ].join('\n'),
    );
    expect(await cli('runs', '--status', 'queued')).toBe(
      [
        'runs QUEUED (2), in enqueue order:',
        '  b  QUEUED  job etl, priority 0',
        '  d  QUEUED  job report, priority 0',
      ].join('\n'),
    );
    expect(await cli('runs', '--status', 'SUCCESS,FAILURE')).toBe('runs SUCCESS, FAILURE: none');
    const answer = await json('runs', '--status', 'STARTED');
    expect(answer.map((r: Json) => [r.id, r.status])).toEqual([
      ['a', 'STARTED'],
      ['c', 'STARTED'],
    ]);
    const error = await cliError(['runs', '--status', 'DONE']);
    expect(error.exitCode).toBe(2);
    expect(error.message).toMatch(/--status must be one of QUEUED/);
  });

  it('concurrency get / set / delete, in --json', async () => {
    expect(await json('concurrency', 'set', 'db', '2')).toMatchObject({ name: 'db', limit: 2, inUse: 0 });
    expect(await json('concurrency', 'get', 'db')).toMatchObject({ name: 'db', limit: 2, explicitLimit: 2 });
    expect(await json('concurrency', 'get', '--all')).toMatchObject({
      poolGranularity: 'OP',
      defaultPoolLimit: null,
      pools: [{ name: 'db', limit: 2 }],
    });
    expect(await json('concurrency', 'delete', 'db')).toMatchObject({
      deleted: true,
      pool: { name: 'db', limit: null },
    });
  });

  it('concurrency delete: a pool without a limit of its own says so and appends nothing', async () => {
    await gql.data('mutation { setDefaultPoolLimit(limit: 3) { __typename } }');
    await cli('concurrency', 'set', 'db', '2');
    await cli('concurrency', 'delete', 'db');
    const revision = server.sluice.state.revision;
    expect(await cli('concurrency', 'delete', 'db')).toBe(
      'pool db has no limit of its own: nothing to delete; now db: 0 / 3 in use (default limit)',
    );
    expect(await cli('concurrency', 'delete', 'never-seen')).toBe(
      'pool never-seen has no limit of its own: nothing to delete',
    );
    expect(await json('concurrency', 'delete', 'never-seen')).toEqual({ deleted: false, pool: null });
    expect(server.sluice.state.revision).toBe(revision);
  });

  it("concurrency free: frees a step's slot, which goes to the waiting step at once", async () => {
    await someRuns();
    expect(await cli('concurrency', 'free', 'a', 'load')).toBe(
      ['freed the slot of step load of run a (STARTED)', '  load (pool db): free'].join('\n'),
    );
    expect(await json('concurrency', 'free', 'c')).toMatchObject({
      id: 'c',
      status: 'STARTED',
      stepClaims: [{ stepKey: 'load', granted: false, released: true }],
    });
    const error = await cliError(['concurrency', 'free', 'nope']);
    expect(error.message).toMatch(/NotFoundError/);
    expect(error.exitCode).toBe(1);
    expect((await server.store.readStream(server.sluice.stream)).at(-1)?.actor).toBe('anonymous');
  });

  it('concurrency history: every limit edit with time, actor and before → after; with POOL only its own', async () => {
    await someRuns();
    await cli('concurrency', 'set', 'db', '4');
    const text = await cli('concurrency', 'history');
    const lines = text.split('\n');
    expect(lines[0]).toBe('limit changes (4), oldest first:');
    expect(lines.slice(1).map((l) => l.replace(/^\S+ {2}/, ''))).toEqual([
      'anonymous  max concurrent runs: 10 → 2',
      'anonymous  tag limits: none → team=(each value): 1',
      'anonymous  pool db limit: none → 1',
      'anonymous  pool db limit: 1 → 4',
    ]);
    expect(await json('concurrency', 'history', 'db')).toMatchObject([
      { actor: 'anonymous', description: 'pool db limit: none → 1' },
      { actor: 'anonymous', description: 'pool db limit: 1 → 4' },
    ]);
    expect(await cli('concurrency', 'history', 'other')).toBe('limit changes of pool other: none recorded');
  });

  it('why and snapshot answer in --json with the data their text is built from', async () => {
    await someRuns();
    const run = await json('why', 'b');
    expect(run).toMatchObject({ id: 'b', status: 'QUEUED' });
    expect(run.waits.at(-1).to).toBeNull();
    expect(await cli('why', 'b')).toMatch(/^run b: job etl, QUEUED, priority 0/);
    const snap = await json('snapshot', '--position', '3');
    expect(snap).toMatchObject({ position: '3', config: { maxConcurrentRuns: 2 } });
    expect(await cli('snapshot', '--position', '3')).toMatch(/^as of position 3 /);
  });

  it('why shows a tag Sluice ignored, and the failure reason of a run monitoring ended', async () => {
    await gql.data(`mutation { enqueueRun(input: {runId: "p", jobName: "j", leaseSeconds: 1,
      tags: [{key: "dagster/priority", value: "urgent"}]}) { __typename } }`);
    // The run monitor ends the run when its 1 s lease passes without a heartbeat.
    for (let tries = 0; tries < 100; tries++) {
      if ((await gql.data('{ run(id: "p") { status } }')).run.status === 'FAILURE') break;
      await new Promise((done) => setTimeout(done, 100));
    }
    const lines = (await cli('why', 'p')).split('\n');
    expect(lines[2]).toBe('  tag dagster/priority ignored: "urgent" is not an integer: it counts as priority 0');
    expect(lines.at(-2)).toMatch(
      / {2}finished FAILURE \(lease expired: no heartbeat for 1 s\) \[UNEXPECTED_TERMINATION\]$/,
    );
    expect(await json('why', 'p')).toMatchObject({ failureReason: 'UNEXPECTED_TERMINATION' });
  });

  it('--version answers the package version, in text and JSON', async () => {
    expect(await runCli(['--version'], {})).toMatch(/^sluice \d+\.\d+\.\d+$/);
    expect(JSON.parse((await runCli(['--version', '--json'], {})) as string)).toEqual({
      version: expect.stringMatching(/^\d+\.\d+\.\d+$/),
    });
  });
});

describe('usage', () => {
  it.each(COMMANDS.map((c) => c.words.join(' ')))('sluice %s --help shows its usage line', async (words) => {
    const help = (await runCli([...words.split(' '), '--help'], {})) as string;
    expect(help).toMatch(new RegExp(`^usage: sluice ${words}`));
    expect(help).toContain('--json');
  });

  it('sluice why without RUN_ID prints its usage and exits 2', async () => {
    const error = await cliError(['why']);
    expect(error.exitCode).toBe(2);
    expect(error.message).toMatch(/^usage: sluice why RUN_ID/);
  });

  it('an option another command takes is refused by name', async () => {
    const error = await cliError(['why', 'a', '--all']);
    expect(error.exitCode).toBe(2);
    expect(error.message).toMatch(/^sluice why takes no --all/);
  });

  it('sluice concurrency alone, or with an unknown word, lists the concurrency commands', async () => {
    expect(await runCli(['concurrency', '--help'], {})).toMatch(/^usage:\n {2}sluice concurrency get/);
    const error = await cliError(['concurrency', 'frobnicate']);
    expect(error.message).toMatch(/^unknown command: sluice concurrency frobnicate\nusage:/);
  });
});

describe('sluice serve on a busy port', () => {
  let blocker: Server;
  afterEach(() => new Promise<void>((resolve) => blocker.close(() => resolve())));

  it('answers one clear line naming the port, not a stack trace', async () => {
    blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as { port: number }).port;
    const failure = await runCli(['serve'], { PORT: String(port), EVENT_STORE_URL: 'sqlite::memory:' }).then(
      () => null,
      (error: Error) => error,
    );
    expect(failure?.message).toBe(
      `port ${port} on 127.0.0.1 is already in use (another Sluice?): stop that process or set PORT to a free port`,
    );
  });
});
