/**
 * The parity section of the API over HTTP (yoga.fetch): freeStepSlots, limitChanges, and what
 * the run's record says about Dagster's tags (ignoredTags, failureReason, steps' dependsOn).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { applyConfigFile } from '../../src/app/apply-dagster-yaml.js';
import { Sluice } from '../../src/app/sluice.js';
import { parseConcurrencyConfigFile } from '../../src/dagster-yaml.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.js';
import type { EventStore } from '../../src/eventstore/store.js';
import { createSluiceYoga } from '../../src/server.js';
import { Gql, type Json, mutated } from '../support/e2e-http.js';

let store: EventStore;
let sluice: Sluice;
let gql: Gql;
let clock: Date;

beforeEach(async () => {
  store = openSqliteStore({ path: ':memory:' });
  clock = new Date('2026-11-27T10:00:00.000Z');
  sluice = await Sluice.open({ store, clock: () => clock });
  const yoga = createSluiceYoga(sluice);
  gql = new Gql('http://sluice.test/graphql', (url, init) => yoga.fetch(url, init));
});

afterEach(async () => {
  await sluice.close();
  await store.close();
});

const admin = { 'x-sluice-actor': 'alice' };

async function enqueue(input: Json): Promise<Json> {
  const data = await gql.data(
    `mutation($input: EnqueueRunInput!) { enqueueRun(input: $input) { __typename
      ... on RunPayload { run { id status priority ignoredTags { key reason } } }
      ... on ValidationError { field message } } }`,
    { input },
  );
  return data.enqueueRun;
}

async function claim(runId: string, stepKey: string): Promise<Json> {
  const data = await mutated(
    gql,
    `mutation($runId: ID!, $stepKey: String!) { claimStepSlot(runId: $runId, stepKey: $stepKey) {
      __typename ... on StepSlotPayload { claim { granted } } } }`,
    { runId, stepKey },
  );
  return data.claimStepSlot.claim;
}

async function free(runId: string, stepKey?: string, headers = admin): Promise<Json> {
  const data = await gql.data(
    `mutation($runId: ID!, $stepKey: String) { freeStepSlots(runId: $runId, stepKey: $stepKey) {
      __typename ... on RunPayload { run { id status stepClaims { stepKey granted released } } }
      ... on Error { message } ... on ValidationError { field } } }`,
    { runId, stepKey: stepKey ?? null },
    headers,
  );
  return data.freeStepSlots;
}

async function claimsOf(runId: string): Promise<Json[]> {
  const data = await gql.data('query($id: ID!) { run(id: $id) { stepClaims { stepKey granted released } } }', {
    id: runId,
  });
  return data.run.stepClaims;
}

async function changes(args: { first?: number; after?: string; pool?: string } = {}): Promise<Json> {
  const data = await gql.data(
    `query($first: Int, $after: String, $pool: String) { limitChanges(first: $first, after: $after, pool: $pool) {
      edges { cursor node { position at actor description } } pageInfo { hasNextPage endCursor } } }`,
    args,
  );
  return data.limitChanges;
}

describe('freeStepSlots', () => {
  beforeEach(async () => {
    await mutated(gql, 'mutation { setPoolLimit(pool: "db", limit: 1) { __typename } }');
    for (const id of ['a', 'b']) {
      await enqueue({ runId: id, jobName: 'j', steps: [{ key: 'load', pool: 'db' }, { key: 'other' }] });
      await mutated(gql, `mutation { markRunStarted(runId: "${id}") { __typename } }`);
    }
    expect(await claim('a', 'load')).toEqual({ granted: true });
    expect(await claim('a', 'other')).toEqual({ granted: true });
    expect(await claim('b', 'load')).toEqual({ granted: false });
  });

  it("given a step holding a pool's only slot, when an admin frees it, then the run goes on and the waiting step gets the slot in the same append", async () => {
    const before = sluice.state.revision;
    const result = await free('a', 'load');
    expect(result.run).toMatchObject({ id: 'a', status: 'STARTED' });
    expect(result.run.stepClaims).toEqual([
      { stepKey: 'load', granted: false, released: true },
      { stepKey: 'other', granted: true, released: false },
    ]);
    expect(await claimsOf('b')).toEqual([{ stepKey: 'load', granted: true, released: false }]);
    const events = await store.readStream(sluice.stream, { fromRevision: before + 1n });
    expect(events.map((e) => [e.type, e.actor])).toEqual([
      ['StepSlotReleased', 'anonymous (on behalf of alice)'],
      ['StepSlotGranted', 'anonymous (on behalf of alice)'],
      // The root-step hold (on by default) records pool db's root-step count: 2 → 1, still full.
      ['LimitStatesChanged', 'anonymous (on behalf of alice)'],
    ]);
    expect(events[0]?.data).toMatchObject({ stepKey: 'load', held: true, reason: 'slot freed by an admin' });
    expect(events[2]?.data).toMatchObject({
      counters: [{ pool: 'db', rootSteps: true, inUse: 1, full: [{ kind: 'ROOT_STEP_POOLS', limit: 1, inUse: 1 }] }],
    });
  });

  it("given no step key, when an admin frees a run's slots, then every slot and waiting claim of the run is freed", async () => {
    const result = await free('a');
    expect(result.run.stepClaims.every((c: Json) => c.released)).toBe(true);
    expect(await claimsOf('b')).toEqual([{ stepKey: 'load', granted: true, released: false }]);
    // b's claim was granted; freeing b withdraws it and leaves a as it is.
    const b = await free('b');
    expect(b.run.stepClaims).toEqual([{ stepKey: 'load', granted: false, released: true }]);
  });

  it('given nothing left to free, when freed again, then nothing is appended and the run is answered', async () => {
    await free('a');
    const revision = sluice.state.revision;
    expect((await free('a')).__typename).toBe('RunPayload');
    expect((await free('a', 'load')).__typename).toBe('RunPayload');
    expect(sluice.state.revision).toBe(revision);
  });

  it('given an unknown run or step, when freed, then a typed error says so and nothing is appended', async () => {
    const revision = sluice.state.revision;
    expect(await free('nope')).toMatchObject({ __typename: 'NotFoundError' });
    expect(await free('a', 'nope')).toMatchObject({ __typename: 'ValidationError', field: 'stepKey' });
    expect(await free('a', '')).toMatchObject({ __typename: 'ValidationError', field: 'stepKey' });
    expect(sluice.state.revision).toBe(revision);
  });
});

describe('limitChanges', () => {
  it('given limit edits by several actors, when listed, then each shows time, actor and before → after, in log order', async () => {
    await mutated(gql, 'mutation { setMaxConcurrentRuns(limit: 2) { __typename } }', undefined);
    clock = new Date('2026-11-27T10:05:00.000Z');
    await gql.data('mutation { setPoolLimit(pool: "db", limit: 3) { __typename } }', undefined, admin);
    await gql.data('mutation { setPoolLimit(pool: "db", limit: 1) { __typename } }', undefined, admin);
    await gql.data('mutation { setDefaultPoolLimit(limit: 2) { __typename } }', undefined, admin);
    await gql.data('mutation { deletePoolLimit(pool: "db") { __typename } }', undefined, admin);
    await gql.data(
      'mutation { setTagConcurrencyLimits(limits: [{key: "team", applyLimitPerUniqueValue: true, limit: 1}]) { __typename } }',
    );
    await gql.data('mutation { setPoolGranularity(granularity: RUN) { __typename } }');
    await enqueue({ runId: 'not-a-limit-edit', jobName: 'j' });
    const page = await changes();
    expect(page.edges.map((e: Json) => [e.node.actor, e.node.description])).toEqual([
      ['anonymous', 'max concurrent runs: 10 → 2'],
      ['anonymous (on behalf of alice)', 'pool db limit: none → 3'],
      ['anonymous (on behalf of alice)', 'pool db limit: 3 → 1'],
      ['anonymous (on behalf of alice)', 'default pool limit: none → 2'],
      ['anonymous (on behalf of alice)', 'pool db limit: 1 → none (default limit 2 applies)'],
      ['anonymous', 'tag limits: none → team=(each value): 1'],
      ['anonymous', 'pool granularity: OP → RUN'],
    ]);
    expect(page.edges[0].node.at).toBe('2026-11-27T10:00:00.000Z');
    expect(page.edges[1].node.at).toBe('2026-11-27T10:05:00.000Z');
    expect(page.edges.map((e: Json) => e.cursor)).toEqual(page.edges.map((e: Json) => e.node.position));
    expect(page.pageInfo).toEqual({ hasNextPage: false, endCursor: page.edges.at(-1).cursor });
  });

  it('given a pool, when listed, then only the edits of its own limit show; pages follow cursors', async () => {
    for (const limit of [1, 2, 3]) {
      await gql.data(`mutation { setPoolLimit(pool: "db", limit: ${limit}) { __typename } }`);
      await gql.data(`mutation { setPoolLimit(pool: "api", limit: ${limit}) { __typename } }`);
    }
    const first = await changes({ pool: 'db', first: 2 });
    expect(first.edges.map((e: Json) => e.node.description)).toEqual([
      'pool db limit: none → 1',
      'pool db limit: 1 → 2',
    ]);
    expect(first.pageInfo.hasNextPage).toBe(true);
    const second = await changes({ pool: 'db', first: 2, after: first.pageInfo.endCursor });
    expect(second.edges.map((e: Json) => e.node.description)).toEqual(['pool db limit: 2 → 3']);
    expect(second.pageInfo.hasNextPage).toBe(false);
    expect((await changes({ pool: 'nothing' })).edges).toEqual([]);
  });

  it("given a dagster.yaml at start-up, when listed, then the file's edits show with the file as actor, monitoring included", async () => {
    const file = parseConcurrencyConfigFile(
      'concurrency: {runs: {max_concurrent_runs: 4}, pools: {default_limit: 1}}\nrun_monitoring: {start_timeout_seconds: 300, max_runtime_seconds: 3600}\n',
      'dagster.yaml',
      {},
    );
    await applyConfigFile(sluice, file, 'dagster.yaml');
    const page = await changes();
    expect(page.edges.map((e: Json) => [e.node.actor, e.node.description])).toEqual([
      ['config-file:dagster.yaml', 'run monitoring: start timeout 180 s → 300 s, default max runtime none → 3600 s'],
      ['config-file:dagster.yaml', 'default pool limit: none → 1'],
      ['config-file:dagster.yaml', 'max concurrent runs: 10 → 4'],
    ]);
  });

  it('given a bad page size or cursor, when listed, then the error names the argument', async () => {
    const answer = await gql.answer('{ limitChanges(first: -1) { edges { cursor } } }');
    expect(answer.body.errors?.[0]?.message).toMatch(/first/);
    const cursor = await gql.answer('{ limitChanges(after: "x") { edges { cursor } } }');
    expect(cursor.body.errors?.[0]?.message).toMatch(/after/);
  });
});

describe("Dagster's tags on the run's record", () => {
  it('given a dagster/priority tag that is not an integer, when enqueued, then the run counts it as 0 and says so', async () => {
    const result = await enqueue({ runId: 'r', jobName: 'j', tags: [{ key: 'dagster/priority', value: 'high' }] });
    expect(result).toMatchObject({
      __typename: 'RunPayload',
      run: {
        priority: 0,
        ignoredTags: [{ key: 'dagster/priority', reason: '"high" is not an integer: it counts as priority 0' }],
      },
    });
  });

  it('given steps with dependsOn, when enqueued, then a bad key is a ValidationError naming the field', async () => {
    expect(
      await enqueue({ jobName: 'j', steps: [{ key: 'a' }, { key: 'b', dependsOn: ['a', 'missing'] }] }),
    ).toMatchObject({ __typename: 'ValidationError', field: 'input.steps.1.dependsOn.1' });
    expect(
      await enqueue({ runId: 'ok', jobName: 'j', steps: [{ key: 'a' }, { key: 'b', dependsOn: ['a'] }] }),
    ).toMatchObject({ __typename: 'RunPayload' });
  });

  it('given a run that overruns its max runtime, when monitoring ends it, then failureReason is RUN_TIMEOUT beside the text', async () => {
    await enqueue({ runId: 'slow', jobName: 'j', tags: [{ key: 'dagster/max_runtime_seconds', value: '60' }] });
    await mutated(gql, 'mutation { markRunStarted(runId: "slow") { __typename } }');
    clock = new Date(clock.getTime() + 61_000);
    await sluice.execute({ type: 'ExpireDeadlines' }, 'run-monitor');
    const data = await gql.data('{ run(id: "slow") { status finishReason failureReason } }');
    expect(data.run).toEqual({
      status: 'FAILURE',
      finishReason: 'max runtime: running for more than 60 s (dagster/max_runtime_seconds)',
      failureReason: 'RUN_TIMEOUT',
    });
  });
});
