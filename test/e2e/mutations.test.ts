/**
 * Every mutation of the contract's core section, over HTTP through `yoga.fetch` (no port):
 * its success, each error member of its union, and bad input that must append nothing.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DEPLOYMENT_STREAM, Sluice } from '../../src/app/sluice.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.js';
import type { EventStore } from '../../src/eventstore/store.js';
import { createSluiceYoga } from '../../src/server.js';
import {
  allDecisions,
  CONFIG_RESULT,
  Gql,
  type Json,
  observable,
  POOL_RESULT,
  RUN_RESULT,
} from '../support/e2e-http.js';

let store: EventStore;
let sluice: Sluice;
let gql: Gql;
let ids = 0;

beforeEach(async () => {
  store = openSqliteStore({ path: ':memory:' });
  ids = 0;
  sluice = await Sluice.open({ store, newRunId: () => `generated-${++ids}` });
  const yoga = createSluiceYoga(sluice);
  gql = new Gql('http://sluice.test/graphql', (url, init) => yoga.fetch(url, init));
});

afterEach(async () => {
  await sluice.close();
  await store.close();
});

// ---------------------------------------------------------------------------------------------
// Commands, as a client sends them

async function enqueue(input: Record<string, unknown>, headers?: Record<string, string>): Promise<Json> {
  const data = await gql.data(
    `mutation($input: EnqueueRunInput!) { enqueueRun(input: $input) { ${RUN_RESULT} } }`,
    { input },
    headers,
  );
  return data.enqueueRun;
}

async function terminate(runId: string, force?: boolean): Promise<Json> {
  const data = await gql.data(
    `mutation($runId: ID!, $force: Boolean) { terminateRun(runId: $runId, force: $force) { ${RUN_RESULT} } }`,
    { runId, force: force ?? null },
  );
  return data.terminateRun;
}

async function started(runId: string): Promise<Json> {
  const data = await gql.data(`mutation($runId: ID!) { markRunStarted(runId: $runId) { ${RUN_RESULT} } }`, {
    runId,
  });
  return data.markRunStarted;
}

async function finished(runId: string, status: string): Promise<Json> {
  const data = await gql.data(
    `mutation($runId: ID!, $status: RunStatus!) { markRunFinished(runId: $runId, status: $status) { ${RUN_RESULT} } }`,
    { runId, status },
  );
  return data.markRunFinished;
}

async function setPoolLimit(pool: string, limit: number): Promise<Json> {
  const data = await gql.data(
    `mutation($pool: String!, $limit: Int!) { setPoolLimit(pool: $pool, limit: $limit) { ${POOL_RESULT} } }`,
    { pool, limit },
  );
  return data.setPoolLimit;
}

async function deletePoolLimit(pool: string): Promise<Json> {
  const data = await gql.data(`mutation($pool: String!) { deletePoolLimit(pool: $pool) { ${POOL_RESULT} } }`, {
    pool,
  });
  return data.deletePoolLimit;
}

async function setMaxConcurrentRuns(limit: number): Promise<Json> {
  const data = await gql.data(`mutation($limit: Int!) { setMaxConcurrentRuns(limit: $limit) { ${CONFIG_RESULT} } }`, {
    limit,
  });
  return data.setMaxConcurrentRuns;
}

async function setTagLimits(limits: Array<Record<string, unknown>>): Promise<Json> {
  const data = await gql.data(
    `mutation($limits: [TagConcurrencyLimitInput!]!) { setTagConcurrencyLimits(limits: $limits) { ${CONFIG_RESULT} } }`,
    { limits },
  );
  return data.setTagConcurrencyLimits;
}

async function setGranularity(granularity: 'OP' | 'RUN'): Promise<Json> {
  const data = await gql.data(
    `mutation($g: PoolGranularity!) { setPoolGranularity(granularity: $g) { ${CONFIG_RESULT} } }`,
    { g: granularity },
  );
  return data.setPoolGranularity;
}

async function setDefaultPoolLimit(limit: number | null): Promise<Json> {
  const data = await gql.data(`mutation($limit: Int) { setDefaultPoolLimit(limit: $limit) { ${CONFIG_RESULT} } }`, {
    limit,
  });
  return data.setDefaultPoolLimit;
}

async function runStatus(id: string): Promise<string> {
  const data = await gql.data('query($id: ID!) { run(id: $id) { status } }', { id });
  return data.run.status;
}

/** Everything a reader can see, plus the revisions of the projections and of the store. */
async function everything(): Promise<Json> {
  return {
    view: await observable(gql),
    projected: sluice.state.revision,
    stored: await store.streamRevision(DEPLOYMENT_STREAM),
  };
}

/** Runs `work` and checks that nothing at all was appended or changed by it. */
async function appendsNothing<T>(work: () => Promise<T>): Promise<T> {
  const before = await everything();
  const result = await work();
  expect(await everything()).toEqual(before);
  return result;
}

/** Some state to compare against: a limit, a run in progress, a run held, a finished run. */
async function someState(): Promise<void> {
  await setMaxConcurrentRuns(2);
  await setPoolLimit('database', 3);
  await enqueue({ runId: 'done', jobName: 'etl' });
  await started('done');
  await finished('done', 'SUCCESS');
  await enqueue({ runId: 'busy', jobName: 'etl', steps: [{ key: 'load', pool: 'database' }] });
  await enqueue({ runId: 'busy2', jobName: 'etl' });
  await enqueue({ runId: 'held', jobName: 'etl', tags: [{ key: 'team', value: 'data' }] });
}

const long = 'x'.repeat(256);
const longest = 'y'.repeat(255);

// ---------------------------------------------------------------------------------------------

describe('enqueueRun', () => {
  it('given default limits, when a run with tags, steps with pools and a priority is enqueued, then it is admitted as given', async () => {
    const result = await enqueue({
      runId: 'r1',
      jobName: 'nightly_etl',
      tags: [
        { key: 'team', value: 'data' },
        { key: 'database', value: 'redshift' },
      ],
      steps: [
        { key: 'extract', pool: 'warehouse' },
        { key: 'load', pool: 'warehouse' },
        { key: 'report', pool: 'bi' },
        { key: 'notify' },
      ],
      priority: 7,
    });
    expect(result.__typename).toBe('RunPayload');
    const run = result.run;
    expect(run).toMatchObject({
      id: 'r1',
      jobName: 'nightly_etl',
      status: 'STARTING',
      tags: [
        { key: 'team', value: 'data' },
        { key: 'database', value: 'redshift' },
      ],
      pools: ['warehouse', 'bi'],
      priority: 7,
      startedAt: null,
      finishedAt: null,
      blockedBy: [],
      waits: [],
    });
    expect(Date.parse(run.enqueuedAt)).not.toBeNaN();
    expect(Date.parse(run.admittedAt)).not.toBeNaN();
    expect(run.decisions).toHaveLength(1);
    expect(run.decisions[0]).toMatchObject({ kind: 'ADMITTED', runId: 'r1', reasons: [] });
  });

  it('given no priority, when a run carries the dagster/priority tag, then its priority is the tag as an integer', async () => {
    const tagged = await enqueue({ runId: 'tagged', jobName: 'j', tags: [{ key: 'dagster/priority', value: '-3' }] });
    expect(tagged.run.priority).toBe(-3);
    const both = await enqueue({
      runId: 'both',
      jobName: 'j',
      priority: 2,
      tags: [{ key: 'dagster/priority', value: '9' }],
    });
    expect(both.run.priority).toBe(2);
    const neither = await enqueue({ runId: 'neither', jobName: 'j' });
    expect(neither.run.priority).toBe(0);
  });

  it('given no runId, when a run is enqueued, then it gets an id of its own', async () => {
    const result = await enqueue({ jobName: 'j' });
    expect(result.run.id).toBe('generated-1');
    expect(await runStatus('generated-1')).toBe('STARTING');
  });

  it('given a client-chosen runId already enqueued, when it is enqueued again, then the same run is answered and nothing is appended', async () => {
    await setMaxConcurrentRuns(0);
    const first = await enqueue({ runId: 'retry-me', jobName: 'j', tags: [{ key: 'a', value: 'b' }] });
    expect(first.run.status).toBe('QUEUED');
    const revision = sluice.state.revision;
    const decisions = (await allDecisions(gql)).length;
    const again = await appendsNothing(() =>
      enqueue({ runId: 'retry-me', jobName: 'j', tags: [{ key: 'a', value: 'b' }] }),
    );
    expect(again.__typename).toBe('RunPayload');
    expect(again.run).toEqual(first.run);
    expect(sluice.state.revision).toBe(revision);
    expect((await allDecisions(gql)).length).toBe(decisions);
    const runs = await gql.data('{ runs { edges { node { id } } } }');
    expect(runs.runs.edges).toEqual([{ node: { id: 'retry-me' } }]);
  });

  it('given maxConcurrentRuns 0, when a run is enqueued, then it stays QUEUED, held by that limit', async () => {
    await setMaxConcurrentRuns(0);
    const result = await enqueue({ runId: 'q', jobName: 'j' });
    expect(result.run.status).toBe('QUEUED');
    expect(result.run.blockedBy).toEqual([
      expect.objectContaining({ kind: 'MAX_CONCURRENT_RUNS', limit: 0, inUse: 0, message: expect.any(String) }),
    ]);
    expect(result.run.decisions.map((d: Json) => d.kind)).toEqual(['BLOCKED']);
  });

  it('given names 255 characters long, when a run is enqueued, then they are accepted', async () => {
    const result = await enqueue({
      runId: longest,
      jobName: longest,
      tags: [{ key: longest, value: longest }],
      steps: [{ key: longest, pool: longest }],
    });
    expect(result.__typename).toBe('RunPayload');
    expect(result.run.pools).toEqual([longest]);
  });

  const tags = (n: number) => Array.from({ length: n }, (_, i) => ({ key: `k${i}`, value: 'v' }));
  const steps = (n: number) => Array.from({ length: n }, (_, i) => ({ key: `s${i}`, pool: 'p' }));
  const badInputs: Array<[string, Record<string, unknown>, string]> = [
    ['an empty jobName', { jobName: '' }, 'input.jobName'],
    ['a 256-character jobName', { jobName: long }, 'input.jobName'],
    ['an empty runId', { runId: '', jobName: 'j' }, 'input.runId'],
    ['a 256-character runId', { runId: long, jobName: 'j' }, 'input.runId'],
    ['an empty tag key', { jobName: 'j', tags: [{ key: '', value: 'v' }] }, 'input.tags.0.key'],
    ['a 256-character tag key', { jobName: 'j', tags: [{ key: long, value: 'v' }] }, 'input.tags.0.key'],
    [
      'a tag value over 65,536 characters',
      { jobName: 'j', tags: [{ key: 'k', value: 'v'.repeat(65_537) }] },
      'input.tags.0.value',
    ],
    ['an empty step key', { jobName: 'j', steps: [{ key: '' }] }, 'input.steps.0.key'],
    ['a 256-character step key', { jobName: 'j', steps: [{ key: long }] }, 'input.steps.0.key'],
    ['an empty pool', { jobName: 'j', steps: [{ key: 's', pool: '' }] }, 'input.steps.0.pool'],
    ['a 256-character pool', { jobName: 'j', steps: [{ key: 's', pool: long }] }, 'input.steps.0.pool'],
    [
      'duplicate step keys',
      {
        jobName: 'j',
        steps: [
          { key: 'a', pool: 'p' },
          { key: 'a', pool: 'q' },
        ],
      },
      'input.steps.1.key',
    ],
    [
      'a tag key given twice',
      {
        jobName: 'j',
        tags: [
          { key: 'k', value: '1' },
          { key: 'k', value: '2' },
        ],
      },
      'input.tags.1.key',
    ],
    ['1001 tags', { jobName: 'j', tags: tags(1001) }, 'input.tags'],
    ['1001 steps', { jobName: 'j', steps: steps(1001) }, 'input.steps'],
    ['a priority above 1000000', { jobName: 'j', priority: 1_000_001 }, 'input.priority'],
    ['a jobName with a NUL character', { jobName: 'a\u0000b' }, 'input.jobName'],
  ];

  it.each(badInputs.map(([what, input, field]) => ({ what, input, field })))(
    'given $what, when the run is enqueued, then a ValidationError names $field and nothing is appended',
    async ({ input, field }) => {
      await someState();
      const result = await appendsNothing(() => enqueue(input));
      expect(result).toMatchObject({ __typename: 'ValidationError', field });
      expect(result.message).toContain(field);
    },
  );

  it('given 1000 tags and 1000 steps, when the run is enqueued, then it is accepted (the bound is inclusive)', async () => {
    const result = await enqueue({ runId: 'big', jobName: 'j', tags: tags(1000), steps: steps(1000) });
    expect(result.__typename).toBe('RunPayload');
    expect(result.run.tags).toHaveLength(1000);
    expect(result.run.pools).toEqual(['p']);
  });
});

describe('concurrent commands', () => {
  it('given the same client runId sent five times at once, when they all land, then there is one run and one enqueue', async () => {
    const results = await Promise.all(Array.from({ length: 5 }, () => enqueue({ runId: 'same', jobName: 'j' })));
    expect(results.every((r) => r.__typename === 'RunPayload' && r.run.id === 'same')).toBe(true);
    const events = await store.readStream(DEPLOYMENT_STREAM);
    expect(events.filter((e) => e.type === 'RunEnqueued')).toHaveLength(1);
    expect((await gql.data('{ runs { edges { node { id } } } }')).runs.edges).toHaveLength(1);
  });

  it('given a run limit of 3, when 20 runs are enqueued at once, then exactly 3 are admitted and 17 wait in enqueue order', async () => {
    await setMaxConcurrentRuns(3);
    await Promise.all(Array.from({ length: 20 }, (_, i) => enqueue({ runId: `c${i}`, jobName: 'j' })));
    const runs = await gql.data('{ runs(statuses: [STARTING]) { edges { node { id } } } queue { id } }');
    expect(runs.runs.edges).toHaveLength(3);
    expect(runs.queue).toHaveLength(17);
    // The queue keeps the order in which the enqueues were recorded.
    const order = (await store.readStream(DEPLOYMENT_STREAM))
      .filter((e) => e.type === 'RunEnqueued')
      .map((e) => (e.data as { runId: string }).runId);
    expect(runs.queue.map((r: Json) => r.id)).toEqual(order.slice(3));
  });
});

describe('terminateRun', () => {
  it('given a QUEUED run, when it is terminated, then it is CANCELED at once and leaves the queue', async () => {
    await setMaxConcurrentRuns(0);
    await enqueue({ runId: 'q', jobName: 'j' });
    const result = await terminate('q');
    expect(result.__typename).toBe('RunPayload');
    expect(result.run.status).toBe('CANCELED');
    expect(result.run.finishedAt).not.toBeNull();
    expect(result.run.blockedBy).toEqual([]);
    expect(result.run.waits.every((w: Json) => w.to !== null)).toBe(true);
    expect((await gql.data('{ queue { id } }')).queue).toEqual([]);
  });

  it('given a STARTED run holding the only slot, when it is terminated, then it is CANCELING and still holds its capacity until it finishes CANCELED', async () => {
    await setMaxConcurrentRuns(1);
    await enqueue({ runId: 'a', jobName: 'j' });
    await started('a');
    await enqueue({ runId: 'b', jobName: 'j' });
    const result = await terminate('a');
    expect(result.run.status).toBe('CANCELING');
    expect(result.run.finishedAt).toBeNull();
    expect(await runStatus('b')).toBe('QUEUED');

    // Asking again changes nothing.
    const again = await appendsNothing(() => terminate('a'));
    expect(again.run.status).toBe('CANCELING');

    const done = await finished('a', 'CANCELED');
    expect(done.run.status).toBe('CANCELED');
    expect(await runStatus('b')).toBe('STARTING');
  });

  it('given a STARTING run, when it is terminated, then it is CANCELING too', async () => {
    await enqueue({ runId: 'a', jobName: 'j' });
    expect((await terminate('a')).run.status).toBe('CANCELING');
  });

  it('given a STARTED run and a run waiting behind it, when it is terminated with force, then it is CANCELED and the next run is admitted', async () => {
    await setMaxConcurrentRuns(1);
    await enqueue({ runId: 'a', jobName: 'j' });
    await started('a');
    await enqueue({ runId: 'b', jobName: 'j' });
    const result = await terminate('a', true);
    expect(result.run.status).toBe('CANCELED');
    expect(result.run.finishedAt).not.toBeNull();
    expect(await runStatus('b')).toBe('STARTING');
  });

  it('given a CANCELING run, when it is terminated with force, then it is CANCELED and frees its capacity', async () => {
    await setMaxConcurrentRuns(1);
    await enqueue({ runId: 'a', jobName: 'j' });
    await enqueue({ runId: 'b', jobName: 'j' });
    await terminate('a');
    expect(await runStatus('b')).toBe('QUEUED');
    expect((await terminate('a', true)).run.status).toBe('CANCELED');
    expect(await runStatus('b')).toBe('STARTING');
  });

  it('given a finished run, when it is terminated, then a ConflictError answers and nothing is appended', async () => {
    await enqueue({ runId: 'a', jobName: 'j' });
    await finished('a', 'SUCCESS');
    const result = await appendsNothing(() => terminate('a'));
    expect(result.__typename).toBe('ConflictError');
    expect(result.message).toMatch(/a/);
    const forced = await appendsNothing(() => terminate('a', true));
    expect(forced.__typename).toBe('ConflictError');
  });

  it('given an unknown run, when it is terminated, then a NotFoundError answers and nothing is appended', async () => {
    await someState();
    const result = await appendsNothing(() => terminate('nobody'));
    expect(result.__typename).toBe('NotFoundError');
    expect(result.message).toContain('nobody');
  });

  it.each([
    ['an empty runId', ''],
    ['a 256-character runId', long],
  ])(
    'given %s, when terminateRun is called, then a ValidationError names runId and nothing is appended',
    async (_what, runId) => {
      await someState();
      const result = await appendsNothing(() => terminate(runId));
      expect(result).toMatchObject({ __typename: 'ValidationError', field: 'runId' });
    },
  );
});

describe('markRunStarted', () => {
  it('given an admitted run, when it is marked started, then it is STARTED with a start time, and marking it again appends nothing', async () => {
    await enqueue({ runId: 'a', jobName: 'j' });
    const result = await started('a');
    expect(result.run.status).toBe('STARTED');
    expect(Date.parse(result.run.startedAt)).not.toBeNaN();
    const again = await appendsNothing(() => started('a'));
    expect(again.run).toEqual(result.run);
  });

  it('given a QUEUED run, when it is marked started, then a ConflictError answers and nothing is appended', async () => {
    await setMaxConcurrentRuns(0);
    await enqueue({ runId: 'q', jobName: 'j' });
    const result = await appendsNothing(() => started('q'));
    expect(result.__typename).toBe('ConflictError');
    expect(result.message).toMatch(/QUEUED/);
  });

  it('given a finished run, when it is marked started, then a ConflictError answers', async () => {
    await enqueue({ runId: 'a', jobName: 'j' });
    await finished('a', 'FAILURE');
    expect((await appendsNothing(() => started('a'))).__typename).toBe('ConflictError');
  });

  it('given an unknown run, when it is marked started, then a NotFoundError answers and nothing is appended', async () => {
    await someState();
    expect((await appendsNothing(() => started('nobody'))).__typename).toBe('NotFoundError');
  });

  it('given an empty runId, when it is marked started, then a ValidationError names runId', async () => {
    expect(await appendsNothing(() => started(''))).toMatchObject({ __typename: 'ValidationError', field: 'runId' });
  });
});

describe('markRunFinished', () => {
  it.each(['SUCCESS', 'FAILURE', 'CANCELED'])(
    'given a STARTED run holding the only slot, when it finishes %s, then it has that status and the next run is admitted',
    async (status) => {
      await setMaxConcurrentRuns(1);
      await enqueue({ runId: 'a', jobName: 'j' });
      await started('a');
      await enqueue({ runId: 'b', jobName: 'j' });
      const result = await finished('a', status);
      expect(result.__typename).toBe('RunPayload');
      expect(result.run.status).toBe(status);
      expect(Date.parse(result.run.finishedAt)).not.toBeNaN();
      const b = await gql.data('{ run(id: "b") { status admittedAt decisions { kind } } }');
      expect(b.run.status).toBe('STARTING');
      expect(b.run.decisions.map((d: Json) => d.kind)).toEqual(['BLOCKED', 'ADMITTED']);
    },
  );

  it('given a STARTING run (never marked started), when it finishes, then it is accepted', async () => {
    await enqueue({ runId: 'a', jobName: 'j' });
    expect((await finished('a', 'FAILURE')).run.status).toBe('FAILURE');
  });

  it.each(['QUEUED', 'STARTING', 'STARTED', 'CANCELING'])(
    'given status %s, when a run is finished with it, then a ValidationError names status and nothing is appended',
    async (status) => {
      await enqueue({ runId: 'a', jobName: 'j' });
      await started('a');
      const result = await appendsNothing(() => finished('a', status));
      expect(result).toMatchObject({ __typename: 'ValidationError', field: 'status' });
    },
  );

  it('given a QUEUED run, when it is finished, then a ConflictError answers and nothing is appended', async () => {
    await setMaxConcurrentRuns(0);
    await enqueue({ runId: 'q', jobName: 'j' });
    const result = await appendsNothing(() => finished('q', 'SUCCESS'));
    expect(result.__typename).toBe('ConflictError');
    expect(result.message).toMatch(/QUEUED/);
  });

  it('given a finished run, when it is finished again with the same status, then nothing is appended; with another, a ConflictError', async () => {
    await enqueue({ runId: 'a', jobName: 'j' });
    await finished('a', 'SUCCESS');
    expect((await appendsNothing(() => finished('a', 'SUCCESS'))).run.status).toBe('SUCCESS');
    const other = await appendsNothing(() => finished('a', 'FAILURE'));
    expect(other.__typename).toBe('ConflictError');
  });

  it('given an unknown run, when it is finished, then a NotFoundError answers and nothing is appended', async () => {
    await someState();
    expect((await appendsNothing(() => finished('nobody', 'SUCCESS'))).__typename).toBe('NotFoundError');
  });
});

describe('setPoolLimit and deletePoolLimit', () => {
  it('given a pool without a limit, when its limit is set, then the pool reports it as its own limit', async () => {
    const result = await setPoolLimit('database', 2);
    expect(result).toEqual({
      __typename: 'PoolPayload',
      pool: { name: 'database', limit: 2, explicitLimit: 2, inUse: 0, pending: 0, activeRunIds: [] },
    });
    const pools = await gql.data('{ pools { name limit explicitLimit } }');
    expect(pools.pools).toEqual([{ name: 'database', limit: 2, explicitLimit: 2 }]);
    // Setting the same value again records nothing.
    await appendsNothing(() => setPoolLimit('database', 2));
  });

  it('given a pool with a limit and a default limit, when its limit is deleted, then the default applies again', async () => {
    await setDefaultPoolLimit(4);
    await setPoolLimit('database', 2);
    const result = await deletePoolLimit('database');
    expect(result.pool).toMatchObject({ name: 'database', limit: 4, explicitLimit: null });
    await setDefaultPoolLimit(null);
    const pool = await gql.data('{ pool(name: "database") { limit explicitLimit } }');
    expect(pool.pool).toEqual({ limit: null, explicitLimit: null });
    // Deleting a limit that is not there records nothing.
    const again = await appendsNothing(() => deletePoolLimit('database'));
    expect(again.__typename).toBe('PoolPayload');
  });

  it('given RUN granularity and a run held by a pool, when the pool limit is raised, then the run is admitted by that command', async () => {
    await setGranularity('RUN');
    await setPoolLimit('database', 1);
    await enqueue({ runId: 'a', jobName: 'j', steps: [{ key: 's', pool: 'database' }] });
    await enqueue({ runId: 'b', jobName: 'j', steps: [{ key: 's', pool: 'database' }] });
    expect(await runStatus('b')).toBe('QUEUED');
    const result = await setPoolLimit('database', 2);
    expect(result.pool).toMatchObject({ inUse: 2, pending: 0 });
    expect(result.pool.activeRunIds.sort()).toEqual(['a', 'b']);
  });

  it.each([
    ['a negative limit', 'database', -1, 'limit'],
    ['a limit of 1000001', 'database', 1_000_001, 'limit'],
    ['an empty pool', '', 1, 'pool'],
    ['a 256-character pool', long, 1, 'pool'],
  ] as const)(
    'given %s, when setPoolLimit is called, then a ValidationError names the field and nothing is appended',
    async (_what, pool, limit, field) => {
      await someState();
      const result = await appendsNothing(() => setPoolLimit(pool, limit));
      expect(result).toMatchObject({ __typename: 'ValidationError', field });
    },
  );

  it.each([
    ['an empty pool', ''],
    ['a 256-character pool', long],
  ])(
    'given %s, when deletePoolLimit is called, then a ValidationError names pool and nothing is appended',
    async (_what, pool) => {
      await someState();
      const result = await appendsNothing(() => deletePoolLimit(pool));
      expect(result).toMatchObject({ __typename: 'ValidationError', field: 'pool' });
    },
  );

  it('given limits 0 and 1000000, when they are set, then both are accepted (the bounds are inclusive)', async () => {
    expect((await setPoolLimit('a', 0)).pool.limit).toBe(0);
    expect((await setPoolLimit('b', 1_000_000)).pool.limit).toBe(1_000_000);
  });
});

describe('setMaxConcurrentRuns', () => {
  it('given runs held by the run limit, when it is raised, then they are admitted in that command', async () => {
    await setMaxConcurrentRuns(0);
    await enqueue({ runId: 'a', jobName: 'j' });
    await enqueue({ runId: 'b', jobName: 'j' });
    await enqueue({ runId: 'c', jobName: 'j' });
    const result = await setMaxConcurrentRuns(2);
    expect(result).toMatchObject({ __typename: 'ConfigPayload', config: { maxConcurrentRuns: 2 } });
    expect([await runStatus('a'), await runStatus('b'), await runStatus('c')]).toEqual([
      'STARTING',
      'STARTING',
      'QUEUED',
    ]);
    await setMaxConcurrentRuns(-1);
    expect(await runStatus('c')).toBe('STARTING');
    expect((await gql.data('{ concurrencyConfig { maxConcurrentRuns } }')).concurrencyConfig).toEqual({
      maxConcurrentRuns: -1,
    });
  });

  it('given runs in progress, when the limit is lowered below them, then nothing is preempted', async () => {
    await enqueue({ runId: 'a', jobName: 'j' });
    await enqueue({ runId: 'b', jobName: 'j' });
    await setMaxConcurrentRuns(1);
    expect([await runStatus('a'), await runStatus('b')]).toEqual(['STARTING', 'STARTING']);
    const c = await enqueue({ runId: 'c', jobName: 'j' });
    expect(c.run.blockedBy).toEqual([expect.objectContaining({ kind: 'MAX_CONCURRENT_RUNS', limit: 1, inUse: 2 })]);
  });

  it.each([
    [-2, 'a limit of -2'],
    [1_000_001, 'a limit of 1000001'],
  ])('given %s (%s), when it is set, then a ValidationError names limit and nothing is appended', async (limit) => {
    await someState();
    const result = await appendsNothing(() => setMaxConcurrentRuns(limit));
    expect(result).toMatchObject({ __typename: 'ValidationError', field: 'limit' });
  });
});

describe('setTagConcurrencyLimits', () => {
  it('given the three forms of tag limit, when they are set, then the config lists them and each holds runs its own way', async () => {
    const result = await setTagLimits([
      { key: 'database', value: 'redshift', limit: 1 },
      { key: 'team', limit: 2 },
      { key: 'dagster/backfill', applyLimitPerUniqueValue: true, limit: 1 },
    ]);
    expect(result).toEqual({
      __typename: 'ConfigPayload',
      config: {
        maxConcurrentRuns: 10,
        tagConcurrencyLimits: [
          { key: 'database', value: 'redshift', applyLimitPerUniqueValue: false, limit: 1 },
          { key: 'team', value: null, applyLimitPerUniqueValue: false, limit: 2 },
          { key: 'dagster/backfill', value: null, applyLimitPerUniqueValue: true, limit: 1 },
        ],
        poolGranularity: 'OP',
        defaultPoolLimit: null,
      },
    });

    const tag = (key: string, value: string) => [{ key, value }];
    // key + value: only that value counts.
    await enqueue({ runId: 'rs1', jobName: 'j', tags: tag('database', 'redshift') });
    await enqueue({ runId: 'rs2', jobName: 'j', tags: tag('database', 'redshift') });
    await enqueue({ runId: 'pg', jobName: 'j', tags: tag('database', 'postgres') });
    // key only: every value counts together.
    await enqueue({ runId: 't1', jobName: 'j', tags: tag('team', 'a') });
    await enqueue({ runId: 't2', jobName: 'j', tags: tag('team', 'b') });
    await enqueue({ runId: 't3', jobName: 'j', tags: tag('team', 'c') });
    // per unique value: a counter per value.
    await enqueue({ runId: 'bf-x1', jobName: 'j', tags: tag('dagster/backfill', 'x') });
    await enqueue({ runId: 'bf-x2', jobName: 'j', tags: tag('dagster/backfill', 'x') });
    await enqueue({ runId: 'bf-y1', jobName: 'j', tags: tag('dagster/backfill', 'y') });

    const statuses: Record<string, string> = {};
    for (const id of ['rs1', 'rs2', 'pg', 't1', 't2', 't3', 'bf-x1', 'bf-x2', 'bf-y1']) {
      statuses[id] = await runStatus(id);
    }
    expect(statuses).toEqual({
      rs1: 'STARTING',
      rs2: 'QUEUED',
      pg: 'STARTING',
      t1: 'STARTING',
      t2: 'STARTING',
      t3: 'QUEUED',
      'bf-x1': 'STARTING',
      'bf-x2': 'QUEUED',
      'bf-y1': 'STARTING',
    });
    const held = await gql.data('{ queue { id blockedBy { kind key value limit inUse } } }');
    expect(held.queue).toEqual([
      { id: 'rs2', blockedBy: [{ kind: 'TAG_LIMIT', key: 'database', value: 'redshift', limit: 1, inUse: 1 }] },
      { id: 't3', blockedBy: [{ kind: 'TAG_LIMIT', key: 'team', value: null, limit: 2, inUse: 2 }] },
      { id: 'bf-x2', blockedBy: [{ kind: 'TAG_LIMIT', key: 'dagster/backfill', value: 'x', limit: 1, inUse: 1 }] },
    ]);
  });

  it('given tag limits, when an empty list is set, then it replaces them all and held runs are admitted', async () => {
    await setTagLimits([{ key: 'team', limit: 0 }]);
    await enqueue({ runId: 'a', jobName: 'j', tags: [{ key: 'team', value: 'x' }] });
    expect(await runStatus('a')).toBe('QUEUED');
    const result = await setTagLimits([]);
    expect(result.config.tagConcurrencyLimits).toEqual([]);
    expect(await runStatus('a')).toBe('STARTING');
    // The same list again records nothing.
    await appendsNothing(() => setTagLimits([]));
  });

  it.each([
    ['a negative limit', [{ key: 'k', limit: -1 }], 'limits.0.limit'],
    ['a limit of 1000001', [{ key: 'k', limit: 1_000_001 }], 'limits.0.limit'],
    ['an empty key', [{ key: '', limit: 1 }], 'limits.0.key'],
    ['a 256-character key', [{ key: long, limit: 1 }], 'limits.0.key'],
    ['an empty value', [{ key: 'k', value: '', limit: 1 }], 'limits.0.value'],
    ['a 256-character value', [{ key: 'k', value: long, limit: 1 }], 'limits.0.value'],
    [
      'a value with applyLimitPerUniqueValue',
      [{ key: 'k', value: 'v', applyLimitPerUniqueValue: true, limit: 1 }],
      'limits.0.value',
    ],
    [
      'the same limit twice',
      [
        { key: 'k', limit: 1 },
        { key: 'k', limit: 2 },
      ],
      'limits.1',
    ],
  ])(
    'given %s, when tag limits are set, then a ValidationError names the field and nothing is appended',
    async (_what, limits, field) => {
      await someState();
      await setTagLimits([{ key: 'team', limit: 5 }]);
      const result = await appendsNothing(() => setTagLimits(limits));
      expect(result).toMatchObject({ __typename: 'ValidationError', field });
    },
  );
});

describe('setPoolGranularity', () => {
  it('given OP granularity, when RUN is set, then pool limits hold whole runs; back to OP, the root-step hold keeps the run queued until it is turned off', async () => {
    await setPoolLimit('database', 0);
    const result = await setGranularity('RUN');
    expect(result.config.poolGranularity).toBe('RUN');
    await enqueue({ runId: 'a', jobName: 'j', steps: [{ key: 's', pool: 'database' }] });
    expect(await runStatus('a')).toBe('QUEUED');
    const blockedBy = async () =>
      (await gql.data('{ run(id: "a") { blockedBy { kind pool limit inUse } } }')).run.blockedBy;
    expect(await blockedBy()).toEqual([{ kind: 'POOL_LIMIT', pool: 'database', limit: 0, inUse: 0 }]);
    const back = await setGranularity('OP');
    expect(back.config.poolGranularity).toBe('OP');
    // Its only root step is in a pool with no free slot: the root-step hold (on by default) keeps it.
    expect(await runStatus('a')).toBe('QUEUED');
    expect(await blockedBy()).toEqual([{ kind: 'ROOT_STEP_POOLS', pool: 'database', limit: 0, inUse: 0 }]);
    await appendsNothing(() => setGranularity('OP'));
    const off = await gql.data(
      'mutation { changeConcurrencyConfig(change: {rootStepHold: {enabled: false}}) { __typename ... on ConfigPayload { config { rootStepHold { enabled } } } } }',
    );
    expect(off.changeConcurrencyConfig).toEqual({
      __typename: 'ConfigPayload',
      config: { rootStepHold: { enabled: false } },
    });
    // With the hold off, OP granularity admits runs regardless; their steps wait for slots.
    expect(await runStatus('a')).toBe('STARTING');
  });

  it('given a granularity that is not an enum value, when it is sent, then HTTP 400 and nothing is appended', async () => {
    await someState();
    const answer = await appendsNothing(() =>
      gql.answer('mutation { setPoolGranularity(granularity: STEP) { __typename } }'),
    );
    expect(answer.status).toBe(400);
  });
});

describe('setDefaultPoolLimit', () => {
  it('given no default, when one is set, then pools without a limit of their own use it; null clears it', async () => {
    await setPoolLimit('own', 5);
    await enqueue({ runId: 'a', jobName: 'j', steps: [{ key: 's', pool: 'shared' }] });
    const set = await setDefaultPoolLimit(3);
    expect(set.config.defaultPoolLimit).toBe(3);
    let pools = await gql.data('{ pools { name limit explicitLimit } }');
    expect(pools.pools).toEqual([
      { name: 'own', limit: 5, explicitLimit: 5 },
      { name: 'shared', limit: 3, explicitLimit: null },
    ]);
    const cleared = await setDefaultPoolLimit(null);
    expect(cleared.config.defaultPoolLimit).toBeNull();
    pools = await gql.data('{ pools { name limit explicitLimit } }');
    expect(pools.pools).toEqual([
      { name: 'own', limit: 5, explicitLimit: 5 },
      { name: 'shared', limit: null, explicitLimit: null },
    ]);
    await appendsNothing(() => setDefaultPoolLimit(null));
    const omitted = await gql.data(`mutation { setDefaultPoolLimit { ${CONFIG_RESULT} } }`);
    expect(omitted.setDefaultPoolLimit.config.defaultPoolLimit).toBeNull();
  });

  it.each([
    [-1, 'a negative limit'],
    [1_000_001, 'a limit of 1000001'],
  ])(
    'given %s (%s), when it is set as the default, then a ValidationError names limit and nothing is appended',
    async (limit) => {
      await someState();
      const result = await appendsNothing(() => setDefaultPoolLimit(limit));
      expect(result).toMatchObject({ __typename: 'ValidationError', field: 'limit' });
    },
  );
});

describe('requests that are not valid GraphQL', () => {
  it.each([
    ['a syntax error', { query: 'mutation { setMaxConcurrentRuns(limit: 1 { __typename } }' }],
    ['an unknown field', { query: 'mutation { setMaxConcurrentRunz(limit: 1) { __typename } }' }],
    ['an unknown argument', { query: 'mutation { setMaxConcurrentRuns(limit: 1, force: true) { __typename } }' }],
    [
      'a limit that is not a 32-bit integer',
      { query: 'mutation { setPoolLimit(pool: "p", limit: 3000000000) { __typename } }' },
    ],
    [
      'a variable of the wrong type',
      { query: 'mutation($l: Int!) { setMaxConcurrentRuns(limit: $l) { __typename } }', variables: { l: 'two' } },
    ],
    ['a non-JSON body', '{"query": "mutation { setMaxConcurrentRuns(limit: 1) { __typename } }"'],
    ['a batch (a JSON array)', [{ query: 'mutation { setMaxConcurrentRuns(limit: 1) { __typename } }' }]],
    [
      'two operations and no operationName',
      { query: '{ queue { id } } mutation { setMaxConcurrentRuns(limit: 1) { __typename } }' },
    ],
    ['a JSON body without a query', { variables: { limit: 1 } }],
  ])(
    'given %s, when it is posted, then HTTP 400 answers, nothing is appended, and the server still answers',
    async (_what, body) => {
      await someState();
      const answer = await appendsNothing(() => gql.raw(body));
      expect(answer.status).toBe(400);
      expect(answer.body.errors?.length).toBeGreaterThan(0);
      const after = await gql.answer('{ concurrencyConfig { maxConcurrentRuns } }');
      expect(after.status).toBe(200);
      expect(after.body.data).toEqual({ concurrencyConfig: { maxConcurrentRuns: 2 } });
    },
  );
});

describe('request size', () => {
  it('given a body over 4 MiB, when it is posted, then HTTP 413 answers before it is parsed, and the server still answers', async () => {
    await someState();
    const body = JSON.stringify({ query: `{ queue { id } } # ${'x'.repeat(5 * 1024 * 1024)}` });
    const answer = await appendsNothing(() => gql.raw(body, { 'content-length': String(Buffer.byteLength(body)) }));
    expect(answer.status).toBe(413);
    expect(answer.body.errors?.[0]?.extensions?.code).toBe('PAYLOAD_TOO_LARGE');
    expect((await gql.answer('{ concurrencyConfig { maxConcurrentRuns } }')).status).toBe(200);
  });

  it('given the largest valid run (1,000 steps and 1,000 tags of 255 characters), when it is enqueued, then it is accepted', async () => {
    const long = (prefix: string, i: number) => `${prefix}${i}`.padEnd(255, 'x');
    const input = {
      runId: 'big',
      jobName: long('job', 0),
      tags: Array.from({ length: 1000 }, (_, i) => ({ key: long('k', i), value: long('v', i) })),
      steps: Array.from({ length: 1000 }, (_, i) => ({ key: long('s', i), pool: long('p', i % 10) })),
    };
    const body = JSON.stringify({
      query: 'mutation($input: EnqueueRunInput!) { enqueueRun(input: $input) { __typename } }',
      variables: { input },
    });
    const answer = await gql.raw(body, { 'content-length': String(Buffer.byteLength(body)) });
    expect(answer.status).toBe(200);
    expect(answer.body.data?.enqueueRun.__typename).toBe('RunPayload');
  });
});

describe('mutations over GET', () => {
  it('given a mutation in a GET query string, when it is sent, then it is refused (405) and nothing is appended', async () => {
    await someState();
    const query = encodeURIComponent('mutation { setMaxConcurrentRuns(limit: 7) { __typename } }');
    const answer = await appendsNothing(() => gql.get(`/graphql?query=${query}`));
    expect(answer.status).toBe(405);
  });
});

describe('actors', () => {
  it('given the header x-sluice-actor: alice in open mode, when a mutation appends, then its events record anonymous on behalf of alice; without it, anonymous', async () => {
    const before = await store.readStream(DEPLOYMENT_STREAM);
    await enqueue({ runId: 'a', jobName: 'j' }, { 'x-sluice-actor': 'alice' });
    const mine = (await store.readStream(DEPLOYMENT_STREAM)).slice(before.length);
    expect(mine.map((e) => e.type)).toEqual(['RunEnqueued', 'RunAdmitted']);
    expect(mine.every((e) => e.actor === 'anonymous (on behalf of alice)')).toBe(true);

    await gql.data(`mutation { setPoolLimit(pool: "p", limit: 1) { __typename } }`);
    const last = (await store.readStream(DEPLOYMENT_STREAM)).at(-1);
    expect(last).toMatchObject({ type: 'PoolLimitSet', actor: 'anonymous' });

    // A note too long to be a name is not recorded.
    await gql.data(`mutation { setPoolLimit(pool: "p", limit: 2) { __typename } }`, undefined, {
      'x-sluice-actor': 'a'.repeat(256),
    });
    expect((await store.readStream(DEPLOYMENT_STREAM)).at(-1)).toMatchObject({
      type: 'PoolLimitSet',
      actor: 'anonymous',
    });
  });
});
