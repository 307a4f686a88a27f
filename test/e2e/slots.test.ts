/**
 * The contract's slots section over HTTP through `yoga.fetch` (no port): claimStepSlot,
 * releaseStepSlot and heartbeat with every member of their result unions, Pool views at OP
 * granularity, the worker protocol end to end, and SLOT_* decisions on dequeueDecisions with
 * the pool filter (SSE through yoga.fetch, the body read as a stream).
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { DEPLOYMENT_STREAM, Sluice } from '../../src/app/sluice.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.js';
import type { EventStore } from '../../src/eventstore/store.js';
import { createSluiceYoga } from '../../src/server.js';
import {
  allDecisions,
  DECISION_FIELDS,
  type FetchLike,
  Gql,
  type Json,
  POOL_FIELDS,
  RUN_RESULT,
  waitFor,
} from '../support/e2e-http.js';
import { FetchSse } from '../support/slots.js';

// vitest resolves `graphql` to its ESM build for src/ while Pothos and Yoga load the CJS one;
// two realms break the schema. Give src/ the CJS build too (as the other e2e tests do).
vi.mock('graphql', async () => (await import('node:module')).createRequire(import.meta.url)('graphql'));

const URL = 'http://sluice.test/graphql';
let store: EventStore;
let sluice: Sluice;
let fetchImpl: FetchLike;
let gql: Gql;
const streams: FetchSse[] = [];
/** The server's clock, driven by the tests (no run monitor runs here: nothing expires by itself). */
let clock = 0;

beforeEach(async () => {
  store = openSqliteStore({ path: ':memory:' });
  clock = Date.parse('2024-01-01T00:00:00.000Z');
  sluice = await Sluice.open({ store, clock: () => new Date(clock) });
  const yoga = createSluiceYoga(sluice);
  fetchImpl = (url, init) => yoga.fetch(url, init);
  gql = new Gql(URL, fetchImpl);
});

afterEach(async () => {
  await Promise.all(streams.splice(0).map((s) => s.close()));
  await sluice.close();
  await store.close();
});

const CONSTRAINT = 'kind key value pool limit inUse message';
const CLAIM_RESULT = `__typename
  ... on StepSlotPayload { claim { runId stepKey pool granted reasons { ${CONSTRAINT} } } }
  ... on Error { message } ... on ValidationError { field }`;

async function mutate(name: string, signature: string, args: string, selection: string, variables: Json) {
  const data = await gql.data(`mutation(${signature}) { ${name}(${args}) { ${selection} } }`, variables);
  return data[name];
}

const enqueue = (input: Json) =>
  mutate('enqueueRun', '$input: EnqueueRunInput!', 'input: $input', RUN_RESULT, { input });
const started = (runId: string) => mutate('markRunStarted', '$runId: ID!', 'runId: $runId', RUN_RESULT, { runId });
const finished = (runId: string, status: string) =>
  mutate('markRunFinished', '$runId: ID!, $s: RunStatus!', 'runId: $runId, status: $s', RUN_RESULT, {
    runId,
    s: status,
  });
const terminate = (runId: string, force?: boolean) =>
  mutate('terminateRun', '$runId: ID!, $force: Boolean', 'runId: $runId, force: $force', RUN_RESULT, {
    runId,
    force: force ?? null,
  });
/** Turns the OP-granularity root-step hold off (it would keep a run queued while its root steps' pools are full). */
async function holdOff(): Promise<void> {
  const data = await gql.data(
    'mutation { changeConcurrencyConfig(change: {rootStepHold: {enabled: false}}) { __typename } }',
  );
  expect(data.changeConcurrencyConfig.__typename).toBe('ConfigPayload');
}
const setPoolLimit = (pool: string, limit: number) =>
  mutate('setPoolLimit', '$pool: String!, $limit: Int!', 'pool: $pool, limit: $limit', '__typename', { pool, limit });
const claim = (runId: string, stepKey: string) =>
  mutate('claimStepSlot', '$runId: ID!, $stepKey: String!', 'runId: $runId, stepKey: $stepKey', CLAIM_RESULT, {
    runId,
    stepKey,
  });
const release = (runId: string, stepKey: string) =>
  mutate('releaseStepSlot', '$runId: ID!, $stepKey: String!', 'runId: $runId, stepKey: $stepKey', CLAIM_RESULT, {
    runId,
    stepKey,
  });
const heartbeat = (runId: string) => mutate('heartbeat', '$runId: ID!', 'runId: $runId', RUN_RESULT, { runId });

async function pool(name: string): Promise<Json> {
  return (await gql.data(`query($name: String!) { pool(name: $name) { ${POOL_FIELDS} } }`, { name })).pool;
}

/** The store's revision: to show that a mutation appended nothing. */
const revision = () => store.streamRevision(DEPLOYMENT_STREAM);

async function appendsNothing<T>(work: () => Promise<T>): Promise<T> {
  const before = await revision();
  const result = await work();
  expect(await revision()).toBe(before);
  return result;
}

const poolHold = (pool: string, limit: number, inUse: number) => ({
  kind: 'POOL_LIMIT',
  key: null,
  value: null,
  pool,
  limit,
  inUse,
  message: `pool ${pool}: ${inUse} of ${limit} slots in use`,
});

/** Two started runs contending for pool db (limit 1). */
async function contended(): Promise<void> {
  // These tests are about admitted runs sharing slots: the root-step hold would keep b queued.
  await holdOff();
  await setPoolLimit('db', 1);
  await enqueue({ runId: 'a', jobName: 'etl', steps: [{ key: 'x', pool: 'db' }, { key: 'q' }] });
  await enqueue({ runId: 'b', jobName: 'etl', steps: [{ key: 'y', pool: 'db', priority: 2 }] });
  await started('a');
  await started('b');
}

// ---------------------------------------------------------------------------------------------

describe('claimStepSlot', () => {
  it('given room in the pool, when a step claims, then it is granted at once', async () => {
    await contended();
    expect(await claim('a', 'x')).toEqual({
      __typename: 'StepSlotPayload',
      claim: { runId: 'a', stepKey: 'x', pool: 'db', granted: true, reasons: [] },
    });
  });

  it('given a full pool, when a step claims, then it waits with the limit that holds it', async () => {
    await contended();
    await claim('a', 'x');
    expect(await claim('b', 'y')).toEqual({
      __typename: 'StepSlotPayload',
      claim: { runId: 'b', stepKey: 'y', pool: 'db', granted: false, reasons: [poolHold('db', 1, 1)] },
    });
  });

  it('given a run at its maxConcurrentSteps, when another step claims, then it waits on RUN_STEP_LIMIT', async () => {
    await enqueue({ runId: 'm', jobName: 'etl', steps: [{ key: 's1' }, { key: 's2' }], maxConcurrentSteps: 1 });
    await claim('m', 's1');
    const result = await claim('m', 's2');
    expect(result.claim).toMatchObject({ pool: null, granted: false });
    expect(result.claim.reasons).toEqual([
      {
        kind: 'RUN_STEP_LIMIT',
        key: null,
        value: null,
        pool: null,
        limit: 1,
        inUse: 1,
        message: "run's max concurrent steps: 1 of 1 steps hold slots",
      },
    ]);
  });

  it('given a claim holding or waiting, when it is repeated, then it answers the same and appends nothing', async () => {
    await contended();
    const granted = await claim('a', 'x');
    const waiting = await claim('b', 'y');
    expect(await appendsNothing(() => claim('a', 'x'))).toEqual(granted);
    expect(await appendsNothing(() => claim('b', 'y'))).toEqual(waiting);
  });

  it('given waiting claims, then each tells its place in line and a backoff, the same when repeated', async () => {
    await contended();
    await enqueue({ runId: 'c', jobName: 'etl', steps: [{ key: 'w', pool: 'db' }] });
    await started('c');
    const placed = (runId: string, stepKey: string) =>
      mutate(
        'claimStepSlot',
        '$runId: ID!, $stepKey: String!',
        'runId: $runId, stepKey: $stepKey',
        '... on StepSlotPayload { claim { granted queuePosition retryAfterSeconds } }',
        { runId, stepKey },
      );
    expect(await placed('a', 'x')).toEqual({ claim: { granted: true, queuePosition: null, retryAfterSeconds: null } });
    // b/y has the higher step priority: it is served before c/w, whatever the order of claims.
    await placed('c', 'w');
    expect(await placed('b', 'y')).toEqual({ claim: { granted: false, queuePosition: 1, retryAfterSeconds: 1 } });
    expect(await appendsNothing(() => placed('c', 'w'))).toEqual({
      claim: { granted: false, queuePosition: 2, retryAfterSeconds: 1.5 },
    });
    await release('a', 'x');
    expect(await appendsNothing(() => placed('b', 'y'))).toEqual({
      claim: { granted: true, queuePosition: null, retryAfterSeconds: null },
    });
    expect(await appendsNothing(() => placed('c', 'w'))).toMatchObject({ claim: { queuePosition: 1 } });
  });

  it('given a step the run does not declare, then a ValidationError names stepKey and nothing is appended', async () => {
    await contended();
    const result = await appendsNothing(() => claim('a', 'nope'));
    expect(result).toMatchObject({ __typename: 'ValidationError', field: 'stepKey' });
    expect(result.message).toContain('nope');
    expect(await appendsNothing(() => claim('a', ''))).toMatchObject({
      __typename: 'ValidationError',
      field: 'stepKey',
    });
    expect(await appendsNothing(() => claim('', 'x'))).toMatchObject({ __typename: 'ValidationError', field: 'runId' });
  });

  it('given an unknown run, then a NotFoundError', async () => {
    expect(await appendsNothing(() => claim('ghost', 'x'))).toEqual({
      __typename: 'NotFoundError',
      message: 'run ghost does not exist',
    });
  });

  it('given a QUEUED, a CANCELING or a finished run, then a ConflictError and nothing appended', async () => {
    await gql.data('mutation { setMaxConcurrentRuns(limit: 2) { __typename } }');
    await contended();
    await enqueue({ runId: 'queued', jobName: 'etl', steps: [{ key: 'x', pool: 'db' }] });
    const refused = async (runId: string, stepKey: string, status: string) => {
      const result = await appendsNothing(() => claim(runId, stepKey));
      expect(result.__typename).toBe('ConflictError');
      expect(result.message).toContain(`is ${status}`);
    };
    await refused('queued', 'x', 'QUEUED');
    await terminate('a');
    await refused('a', 'x', 'CANCELING');
    await finished('b', 'SUCCESS');
    await refused('b', 'y', 'SUCCESS');
  });
});

describe('Run.stepClaims', () => {
  it('given a run with a held, a waiting and an unclaimed step, when it is read, then each claim shows as it stands, in step order', async () => {
    await contended();
    await enqueue({ runId: 'c', jobName: 'etl', steps: [{ key: 'z' }, { key: 'w', pool: 'db' }, { key: 'v' }] });
    await started('c');
    await claim('a', 'x');
    await claim('c', 'w');
    await claim('c', 'z');
    await release('c', 'z');
    const { run } = await gql.data(
      `{ run(id: "c") { stepClaims { stepKey pool granted released reasons { ${CONSTRAINT} } } } }`,
    );
    expect(run.stepClaims).toEqual([
      { stepKey: 'z', pool: null, granted: false, released: true, reasons: [] },
      { stepKey: 'w', pool: 'db', granted: false, released: false, reasons: [poolHold('db', 1, 1)] },
    ]);
  });
});

describe('Run.deadline', () => {
  it('given a leased run, when it is admitted, heartbeats and finishes, then its deadline follows the lease and is gone once it ends', async () => {
    await enqueue({ runId: 'l', jobName: 'etl', leaseSeconds: 30 });
    const read = async () => (await gql.data('{ run(id: "l") { deadline { at status reason } } }')).run.deadline;
    const admitted = clock;
    expect(await read()).toEqual({
      at: new Date(admitted + 30_000).toISOString(),
      status: 'FAILURE',
      reason: 'lease expired: no heartbeat for 30 s',
    });
    clock += 12_000;
    await heartbeat('l');
    // The start timeout (180 s) is later than the renewed lease.
    expect((await read()).at).toBe(new Date(clock + 30_000).toISOString());
    await started('l');
    await finished('l', 'SUCCESS');
    expect(await read()).toBeNull();
  });
});

describe('releaseStepSlot', () => {
  it('given a held slot and a waiting step, when the slot is released, then the waiting step holds it', async () => {
    await contended();
    await claim('a', 'x');
    await claim('b', 'y');
    expect(await release('a', 'x')).toEqual({
      __typename: 'StepSlotPayload',
      claim: { runId: 'a', stepKey: 'x', pool: 'db', granted: false, reasons: [] },
    });
    expect((await claim('b', 'y')).claim).toMatchObject({ granted: true, reasons: [] });
    expect(await pool('db')).toMatchObject({ inUse: 1, pending: 0, activeRunIds: ['b'] });
  });

  it('given a released slot, when it is released again, then it answers the same and appends nothing', async () => {
    await contended();
    await claim('a', 'x');
    const first = await release('a', 'x');
    expect(await appendsNothing(() => release('a', 'x'))).toEqual(first);
  });

  it('given a step that never claimed, then a ConflictError; an undeclared step, a ValidationError; an unknown run, a NotFoundError', async () => {
    await contended();
    expect(await appendsNothing(() => release('a', 'x'))).toEqual({
      __typename: 'ConflictError',
      message: 'step x of run a has not claimed a slot',
    });
    expect(await appendsNothing(() => release('a', 'nope'))).toMatchObject({
      __typename: 'ValidationError',
      field: 'stepKey',
    });
    expect(await appendsNothing(() => release('ghost', 'x'))).toMatchObject({ __typename: 'NotFoundError' });
  });
});

describe('heartbeat', () => {
  it('given a run with a lease, then it answers the run; it is recorded at most every third of the lease', async () => {
    await enqueue({ runId: 'l', jobName: 'etl', leaseSeconds: 60 });
    // Just admitted: the lease is fresh, so nothing needs recording.
    const result = await appendsNothing(() => heartbeat('l'));
    expect(result).toMatchObject({ __typename: 'RunPayload', run: { id: 'l', status: 'STARTING' } });
    clock += 19_000;
    await appendsNothing(() => heartbeat('l'));
    clock += 1_000;
    const before = await revision();
    expect(await heartbeat('l')).toMatchObject({ __typename: 'RunPayload', run: { id: 'l' } });
    const appended = await store.readStream(DEPLOYMENT_STREAM, { fromRevision: before + 1n });
    expect(appended.map((e) => [e.type, e.data, e.actor, e.at])).toEqual([
      ['RunHeartbeatRecorded', { runId: 'l' }, 'anonymous', '2024-01-01T00:00:20.000Z'],
    ]);
    clock += 19_000;
    await appendsNothing(() => heartbeat('l'));
  });

  it('given a run without a lease, then it answers the run and appends nothing', async () => {
    await enqueue({ runId: 'n', jobName: 'etl' });
    expect(await appendsNothing(() => heartbeat('n'))).toMatchObject({ __typename: 'RunPayload', run: { id: 'n' } });
  });

  it('given a finished run, then a ConflictError; an unknown run, a NotFoundError; an empty id, a ValidationError', async () => {
    await enqueue({ runId: 'f', jobName: 'etl', leaseSeconds: 60 });
    await terminate('f', true);
    const conflict = await appendsNothing(() => heartbeat('f'));
    expect(conflict).toEqual({
      __typename: 'ConflictError',
      message: 'run f already finished as CANCELED (terminated with force): stop working on it',
    });
    expect(await appendsNothing(() => heartbeat('ghost'))).toMatchObject({ __typename: 'NotFoundError' });
    expect(await appendsNothing(() => heartbeat(''))).toMatchObject({ __typename: 'ValidationError', field: 'runId' });
  });
});

describe('Pool views at OP granularity', () => {
  it('count slots held by steps, steps waiting, and the runs holding slots', async () => {
    // About admitted runs sharing slots: the root-step hold would keep r2 and r3 queued.
    await holdOff();
    await setPoolLimit('db', 2);
    for (const id of ['r1', 'r2', 'r3']) {
      await enqueue({
        runId: id,
        jobName: 'etl',
        steps: [
          { key: 's1', pool: 'db' },
          { key: 's2', pool: 'db' },
        ],
      });
    }
    expect(await pool('db')).toEqual({
      name: 'db',
      limit: 2,
      explicitLimit: 2,
      inUse: 0,
      pending: 0,
      activeRunIds: [],
    });
    await claim('r1', 's1');
    await claim('r1', 's2');
    await claim('r2', 's1');
    await claim('r3', 's1');
    expect(await pool('db')).toEqual({
      name: 'db',
      limit: 2,
      explicitLimit: 2,
      inUse: 2,
      pending: 2,
      activeRunIds: ['r1'],
    });
    await release('r1', 's1');
    const view = await pool('db');
    expect(view).toMatchObject({ inUse: 2, pending: 1 });
    expect([...view.activeRunIds].sort()).toEqual(['r1', 'r2']);
    await finished('r1', 'FAILURE');
    expect(await pool('db')).toMatchObject({ inUse: 2, pending: 0 });
    const { pools } = await gql.data(`{ pools { ${POOL_FIELDS} } }`);
    expect(pools).toHaveLength(1);
    expect([...pools[0].activeRunIds].sort()).toEqual(['r2', 'r3']);
  });

  it('a lowered limit shows more in use than allowed while the pool drains', async () => {
    await setPoolLimit('db', 2);
    await enqueue({
      runId: 'r',
      jobName: 'etl',
      steps: [
        { key: 's1', pool: 'db' },
        { key: 's2', pool: 'db' },
      ],
    });
    await claim('r', 's1');
    await claim('r', 's2');
    await setPoolLimit('db', 1);
    expect(await pool('db')).toMatchObject({ limit: 1, inUse: 2, pending: 0 });
  });
});

describe('the worker protocol', () => {
  it('enqueue → admitted → markRunStarted → claim → heartbeat → release → markRunFinished', async () => {
    await setPoolLimit('db', 1);
    const enqueued = await enqueue({
      runId: 'w',
      jobName: 'etl',
      steps: [
        { key: 'extract', pool: 'db' },
        { key: 'load', pool: 'db' },
      ],
      leaseSeconds: 60,
    });
    expect(enqueued.run.status).toBe('STARTING');
    expect((await started('w')).run.status).toBe('STARTED');
    expect((await claim('w', 'extract')).claim.granted).toBe(true);
    expect((await claim('w', 'load')).claim).toMatchObject({ granted: false, reasons: [poolHold('db', 1, 1)] });
    expect((await heartbeat('w')).run.status).toBe('STARTED');
    expect((await release('w', 'extract')).claim.granted).toBe(false);
    expect((await claim('w', 'load')).claim.granted).toBe(true);
    expect(await pool('db')).toMatchObject({ inUse: 1, activeRunIds: ['w'] });
    const done = await finished('w', 'SUCCESS');
    expect(done.run).toMatchObject({ status: 'SUCCESS' });
    expect(await pool('db')).toMatchObject({ inUse: 0, pending: 0, activeRunIds: [] });
    // The step the worker never released was released when the run finished.
    expect(await appendsNothing(() => release('w', 'load'))).toMatchObject({ claim: { granted: false } });
    const decisions = (await allDecisions(gql, 'w')).map((d: Json) => `${d.kind}:${d.stepKey ?? ''}`);
    expect(decisions).toEqual(['ADMITTED:', 'SLOT_GRANTED:extract', 'SLOT_PENDING:load', 'SLOT_GRANTED:load']);
    expect(done.run.decisions.map((d: Json) => d.kind)).toEqual([
      'ADMITTED',
      'SLOT_GRANTED',
      'SLOT_PENDING',
      'SLOT_GRANTED',
    ]);
    const pending = done.run.decisions[2];
    expect(pending).toMatchObject({
      runId: 'w',
      stepKey: 'load',
      pool: 'db',
      reasons: [poolHold('db', 1, 1)],
      message: 'step load of run w waits: pool db: 1 of 1 slots in use',
    });
    // A finished run's worker is told to stop.
    expect((await heartbeat('w')).__typename).toBe('ConflictError');
  });
});

describe('dequeueDecisions with the pool filter', () => {
  const SUBSCRIPTION = `subscription($pool: String, $after: String) {
    dequeueDecisions(pool: $pool, after: $after) { ${DECISION_FIELDS} } }`;

  it('streams SLOT_GRANTED and SLOT_PENDING decisions about the pool as they are made', async () => {
    await contended();
    await enqueue({ runId: 'elsewhere', jobName: 'etl', steps: [{ key: 'z', pool: 'other' }] });
    const decisions = await allDecisions(gql);
    const after = decisions.at(-1).position;
    const db = new FetchSse(fetchImpl, URL, SUBSCRIPTION, { pool: 'db', after });
    const other = new FetchSse(fetchImpl, URL, SUBSCRIPTION, { pool: 'other', after });
    streams.push(db, other);
    expect(await db.opened).toBe(200);
    expect(await other.opened).toBe(200);

    await claim('a', 'x');
    await claim('b', 'y');
    await claim('elsewhere', 'z');
    await release('a', 'x');

    const got = await waitFor(() => (db.items.length >= 3 ? db.items : null), 'three db decisions', 10_000);
    const seen = got.map((item: Json) => item.dequeueDecisions);
    expect(seen.map((d: Json) => `${d.kind}:${d.runId}/${d.stepKey}@${d.pool}`)).toEqual([
      'SLOT_GRANTED:a/x@db',
      'SLOT_PENDING:b/y@db',
      'SLOT_GRANTED:b/y@db',
    ]);
    expect(seen[1].reasons).toEqual([poolHold('db', 1, 1)]);
    expect(seen[1].message).toBe('step y of run b waits: pool db: 1 of 1 slots in use');
    expect(seen[0]).toMatchObject({ reasons: [], message: 'step x of run a holds a slot of pool db' });
    const positions = seen.map((d: Json) => BigInt(d.position));
    expect(positions.every((p: bigint, i: number) => i === 0 || p > (positions[i - 1] as bigint))).toBe(true);
    expect(positions[0]).toBeGreaterThan(BigInt(after));

    await waitFor(() => other.items.length >= 1, 'the other pool decision', 10_000);
    expect(other.items.map((item: Json) => item.dequeueDecisions.kind + item.dequeueDecisions.runId)).toEqual([
      'SLOT_GRANTEDelsewhere',
    ]);
    // Nothing more trickles in on either.
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(db.items).toHaveLength(3);
    expect(other.items).toHaveLength(1);
    expect([...db.errors, ...other.errors]).toEqual([]);
  });

  it('streams the grants and releases caused by a run ending', async () => {
    await contended();
    await claim('a', 'x');
    await claim('b', 'y');
    const after = (await allDecisions(gql)).at(-1).position;
    const db = new FetchSse(fetchImpl, URL, SUBSCRIPTION, { pool: 'db', after });
    streams.push(db);
    await db.opened;
    await terminate('a', true);
    const got = await waitFor(() => (db.items.length >= 1 ? db.items : null), 'the grant', 10_000);
    expect(got.map((i: Json) => `${i.dequeueDecisions.kind}:${i.dequeueDecisions.runId}`)).toEqual(['SLOT_GRANTED:b']);
  });
});
