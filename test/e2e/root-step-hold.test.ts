/**
 * The root-step hold over HTTP (yoga.fetch): its settings in ConcurrencyConfig and
 * changeConcurrencyConfig, a held run's blockedBy and decisions, Pool.promised, simulate, the
 * run monitor ending an allotment window, limitChanges, and dagster.yaml at start-up.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { applyConfigFile } from '../../src/app/apply-dagster-yaml.js';
import { startRunMonitor } from '../../src/app/run-monitor.js';
import { Sluice } from '../../src/app/sluice.js';
import { parseConcurrencyConfigFile } from '../../src/dagster-yaml.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.js';
import type { EventStore } from '../../src/eventstore/store.js';
import { createSluiceYoga } from '../../src/server.js';
import { Gql, type Json, mutated, waitFor } from '../support/e2e-http.js';

let store: EventStore;
let sluice: Sluice;
let gql: Gql;

beforeEach(async () => {
  store = openSqliteStore({ path: ':memory:' });
  sluice = await Sluice.open({ store });
  const yoga = createSluiceYoga(sluice);
  gql = new Gql('http://sluice.test/graphql', (url, init) => yoga.fetch(url, init));
});

afterEach(async () => {
  await sluice.close();
  await store.close();
});

const HOLD = 'rootStepHold { enabled runBuffer startedRunAllotmentSeconds }';
const REASON = 'kind pool limit inUse message';

async function changeHold(hold: Json): Promise<Json> {
  const data = await gql.data(
    `mutation($hold: RootStepHoldInput!) { changeConcurrencyConfig(change: {rootStepHold: $hold}) { __typename
      ... on ConfigPayload { config { ${HOLD} } } ... on ValidationError { field message } } }`,
    { hold },
  );
  return data.changeConcurrencyConfig;
}

async function enqueue(runId: string, steps: Json[]): Promise<Json> {
  const data = await mutated(
    gql,
    `mutation($input: EnqueueRunInput!) { enqueueRun(input: $input) { __typename
      ... on RunPayload { run { id status blockedBy { ${REASON} } } } } }`,
    { input: { runId, jobName: 'etl', steps } },
  );
  return data.enqueueRun.run;
}

async function run(id: string): Promise<Json> {
  const data = await gql.data(
    `query($id: ID!) { run(id: $id) { status blockedBy { ${REASON} } decisions { kind reasons { kind pool } } } }`,
    { id },
  );
  return data.run;
}

const pool = async (name: string) =>
  (await gql.data('query($name: String!) { pool(name: $name) { inUse pending promised } }', { name })).pool;

describe('the root-step hold over GraphQL', () => {
  it('is on by default, and its settings change together in one edit that limitChanges shows with its actor', async () => {
    expect((await gql.data(`{ concurrencyConfig { ${HOLD} } }`)).concurrencyConfig.rootStepHold).toEqual({
      enabled: true,
      runBuffer: 0,
      startedRunAllotmentSeconds: 5,
    });
    const changed = await changeHold({ runBuffer: 2, startedRunAllotmentSeconds: 30 });
    expect(changed.config.rootStepHold).toEqual({ enabled: true, runBuffer: 2, startedRunAllotmentSeconds: 30 });
    const page = await gql.data('{ limitChanges { edges { node { actor description } } } }');
    expect(page.limitChanges.edges.map((e: Json) => e.node)).toEqual([
      {
        actor: 'anonymous',
        description: 'root-step hold: run buffer 0 → 2, started-run allotment 5 s → 30 s',
      },
    ]);
  });

  it('refuses a bad setting with the field named, and changes nothing', async () => {
    const revision = sluice.state.revision;
    expect(await changeHold({ runBuffer: -1 })).toMatchObject({
      __typename: 'ValidationError',
      field: 'change.rootStepHold.runBuffer',
    });
    expect(await changeHold({ startedRunAllotmentSeconds: 100_000 })).toMatchObject({
      __typename: 'ValidationError',
      field: 'change.rootStepHold.startedRunAllotmentSeconds',
    });
    expect(sluice.state.revision).toBe(revision);
  });

  it('holds a run whose root steps all face full pools, says why, counts the promised steps, and lets it go on release', async () => {
    await mutated(gql, 'mutation { setPoolLimit(pool: "db", limit: 1) { __typename } }');
    expect((await enqueue('a', [{ key: 'load', pool: 'db' }])).status).toBe('STARTING');
    expect(await pool('db')).toEqual({ inUse: 0, pending: 0, promised: 1 });
    const b = await enqueue('b', [
      { key: 'load', pool: 'db' },
      { key: 'report', dependsOn: ['load'] },
    ]);
    expect(b.status).toBe('QUEUED');
    expect(b.blockedBy).toEqual([
      {
        kind: 'ROOT_STEP_POOLS',
        pool: 'db',
        limit: 1,
        inUse: 1,
        message: expect.stringContaining('every root step would wait: pool db has 1 of 1 slots taken'),
      },
    ]);
    // What a limit change would do, appending nothing.
    const revision = sluice.state.revision;
    const what = await gql.data(
      '{ simulate(change: {poolLimits: [{pool: "db", limit: 2}]}) { wouldAdmit { id } stillQueued { id } } }',
    );
    expect(what.simulate).toEqual({ wouldAdmit: [{ id: 'b' }], stillQueued: [] });
    expect(sluice.state.revision).toBe(revision);

    await mutated(gql, 'mutation { markRunStarted(runId: "a") { __typename } }');
    await mutated(gql, 'mutation { claimStepSlot(runId: "a", stepKey: "load") { __typename } }');
    expect(await pool('db')).toEqual({ inUse: 1, pending: 0, promised: 0 });
    expect((await run('b')).status).toBe('QUEUED');
    await mutated(gql, 'mutation { releaseStepSlot(runId: "a", stepKey: "load") { __typename } }');
    const admitted = await run('b');
    expect(admitted.status).toBe('STARTING');
    expect(admitted.decisions).toEqual([
      { kind: 'BLOCKED', reasons: [{ kind: 'ROOT_STEP_POOLS', pool: 'db' }] },
      { kind: 'ADMITTED', reasons: [] },
    ]);
  });

  it('lets a held run go when a started run’s allotment window ends, without a command from anyone (the run monitor)', async () => {
    await changeHold({ startedRunAllotmentSeconds: 1 });
    await mutated(gql, 'mutation { setPoolLimit(pool: "db", limit: 1) { __typename } }');
    await enqueue('a', [{ key: 'load', pool: 'db' }]);
    await mutated(gql, 'mutation { markRunStarted(runId: "a") { __typename } }');
    expect((await enqueue('b', [{ key: 'load', pool: 'db' }])).status).toBe('QUEUED');
    const monitor = startRunMonitor(sluice, () => {});
    try {
      await waitFor(async () => (await run('b')).status === 'STARTING', 'b to be admitted', 5_000, { intervalMs: 50 });
    } finally {
      monitor.stop();
    }
    const events = await store.readStream(sluice.stream);
    const ended = events.find((e) => e.type === 'RootStepAllotmentEnded');
    expect(ended).toMatchObject({ data: { runId: 'a' }, actor: 'run-monitor' });
    expect(events.at(-1)).toMatchObject({ type: 'RunAdmitted', data: { runId: 'b' } });
  });

  it("takes dagster.yaml's op_granularity_run_buffer at start-up, recorded as the file's edit", async () => {
    const file = parseConcurrencyConfigFile(
      'concurrency:\n  pools:\n    op_granularity_run_buffer: 1\n',
      'dagster.yaml',
      {},
    );
    await applyConfigFile(sluice, file, 'dagster.yaml');
    expect((await gql.data(`{ concurrencyConfig { ${HOLD} } }`)).concurrencyConfig.rootStepHold.runBuffer).toBe(1);
    const page = await gql.data('{ limitChanges { edges { node { actor description } } } }');
    expect(page.limitChanges.edges.map((e: Json) => e.node)).toEqual([
      { actor: 'config-file:dagster.yaml', description: 'root-step hold: run buffer 0 → 1' },
    ]);
  });
});
