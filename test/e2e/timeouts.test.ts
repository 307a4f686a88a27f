/**
 * Deadlines on a real server (startServer, port 0, a temp SQLite file): nobody sends
 * ExpireDeadlines here, the run monitor must. A lease expiring on its own and its slot going to
 * another run's waiting step, heartbeats keeping a lease alive, a deadline that passed while the
 * server was down firing right after the restart, and a start timeout set by dagster.yaml.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DEPLOYMENT_STREAM } from '../../src/app/sluice.js';
import { type RunningServer, startServer } from '../../src/server.js';
import { Gql, type Json, POOL_FIELDS, tempDir, waitFor } from '../support/e2e-http.js';

// vitest resolves `graphql` to its ESM build for src/ while Pothos and Yoga load the CJS one;
// two realms break the schema. Give src/ the CJS build too (as the other e2e tests do).
vi.mock('graphql', async () => (await import('node:module')).createRequire(import.meta.url)('graphql'));

const servers: RunningServer[] = [];
const dirs: Array<{ remove: () => void }> = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
  for (const dir of dirs.splice(0)) dir.remove();
});

function dbFile(): string {
  const dir = tempDir('sluice-timeouts-');
  dirs.push(dir);
  return join(dir.path, 'events.db');
}

async function serve(
  path: string,
  concurrencyConfigPath: string | null = null,
): Promise<{ server: RunningServer; gql: Gql }> {
  const server = await startServer(
    { port: 0, host: '127.0.0.1', eventStoreUrl: `sqlite:${path}`, concurrencyConfigPath },
    () => {},
  );
  servers.push(server);
  return { server, gql: new Gql(server.url) };
}

const RUN = 'id status admittedAt startedAt finishedAt finishReason';

async function mutate(gql: Gql, query: string, variables: Json): Promise<Json> {
  const data = await gql.data(query, variables);
  const result = Object.values(data)[0] as Json;
  if (result.__typename.endsWith('Error')) throw new Error(`${result.__typename}: ${result.message}`);
  return result;
}

const enqueue = (gql: Gql, input: Json) =>
  mutate(
    gql,
    `mutation($input: EnqueueRunInput!) { enqueueRun(input: $input) { __typename ... on RunPayload { run { ${RUN} } } ... on Error { message } } }`,
    { input },
  );
const start = (gql: Gql, runId: string) =>
  mutate(
    gql,
    `mutation($runId: ID!) { markRunStarted(runId: $runId) { __typename ... on RunPayload { run { ${RUN} } } ... on Error { message } } }`,
    { runId },
  );
const heartbeat = (gql: Gql, runId: string) =>
  mutate(
    gql,
    `mutation($runId: ID!) { heartbeat(runId: $runId) { __typename ... on RunPayload { run { ${RUN} } } ... on Error { message } } }`,
    { runId },
  );
const claim = (gql: Gql, runId: string, stepKey: string) =>
  mutate(
    gql,
    `mutation($runId: ID!, $stepKey: String!) { claimStepSlot(runId: $runId, stepKey: $stepKey) {
      __typename ... on StepSlotPayload { claim { runId stepKey granted reasons { kind limit inUse } } } ... on Error { message } } }`,
    { runId, stepKey },
  );
const setPoolLimit = (gql: Gql, pool: string, limit: number) =>
  mutate(
    gql,
    'mutation($pool: String!, $limit: Int!) { setPoolLimit(pool: $pool, limit: $limit) { __typename ... on Error { message } } }',
    {
      pool,
      limit,
    },
  );

async function run(gql: Gql, id: string): Promise<Json> {
  return (await gql.data(`query($id: ID!) { run(id: $id) { ${RUN} } }`, { id })).run;
}

/** Polls until the run reaches `status`; returns the run. */
/**
 * How late a timeout may fire and still count as firing on its own. The monitor aims at the
 * deadline itself; the slack is for a loaded CI machine, since this checks that it fires, not how
 * punctually (never before the deadline is checked exactly).
 */
const FIRES_WITHIN_MS = 4_000;

function becomes(gql: Gql, id: string, status: string, timeoutMs: number): Promise<Json> {
  return waitFor(
    async () => {
      const r = await run(gql, id);
      return r.status === status ? r : null;
    },
    `run ${id} to become ${status}`,
    timeoutMs,
  );
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The RunFinished events of the log, as stored (with their actor). */
async function finishes(server: RunningServer): Promise<Json[]> {
  const events = await server.store.readStream(DEPLOYMENT_STREAM);
  return events.filter((e) => e.type === 'RunFinished').map((e) => ({ ...(e.data as object), actor: e.actor }));
}

// ---------------------------------------------------------------------------------------------

describe('leases', () => {
  it('given a run with a 1 s lease and no heartbeat, then it fails on its own about when the lease ends, and its slot goes to another run’s waiting step', async () => {
    const { server, gql } = await serve(dbFile());
    // About admitted runs sharing a slot: the root-step hold would keep the waiter queued.
    await mutate(
      gql,
      'mutation { changeConcurrencyConfig(change: {rootStepHold: {enabled: false}}) { __typename ... on Error { message } } }',
      {},
    );
    await setPoolLimit(gql, 'db', 1);
    const leased = await enqueue(gql, {
      runId: 'leased',
      jobName: 'etl',
      steps: [{ key: 'x', pool: 'db' }],
      leaseSeconds: 1,
    });
    await start(gql, 'leased');
    expect((await claim(gql, 'leased', 'x')).claim.granted).toBe(true);
    await enqueue(gql, { runId: 'waiter', jobName: 'etl', steps: [{ key: 'y', pool: 'db' }] });
    await start(gql, 'waiter');
    expect((await claim(gql, 'waiter', 'y')).claim).toMatchObject({
      granted: false,
      reasons: [{ kind: 'POOL_LIMIT' }],
    });

    const failed = await becomes(gql, 'leased', 'FAILURE', 1_000 + FIRES_WITHIN_MS);
    const deadline = Date.parse(leased.run.admittedAt) + 1_000;
    const late = Date.parse(failed.finishedAt) - deadline;
    expect(late).toBeGreaterThanOrEqual(0);
    expect(late).toBeLessThan(FIRES_WITHIN_MS);
    expect(failed.finishReason).toBe('lease expired: no heartbeat for 1 s');

    // The slot went to the waiting step in the same append: claiming again just answers.
    expect((await claim(gql, 'waiter', 'y')).claim).toMatchObject({ granted: true, reasons: [] });
    const pool = (await gql.data(`{ pool(name: "db") { ${POOL_FIELDS} } }`)).pool;
    expect(pool).toMatchObject({ inUse: 1, pending: 0, activeRunIds: ['waiter'] });
    expect(await finishes(server)).toEqual([
      {
        runId: 'leased',
        status: 'FAILURE',
        reason: 'lease expired: no heartbeat for 1 s',
        failureReason: 'UNEXPECTED_TERMINATION',
        actor: 'run-monitor',
      },
    ]);
    const events = await server.store.readStream(DEPLOYMENT_STREAM);
    const finishedAt = events.findIndex((e) => e.type === 'RunFinished');
    expect(events.slice(finishedAt).map((e) => `${e.type}:${e.actor}`)).toEqual([
      'RunFinished:run-monitor',
      'StepSlotReleased:run-monitor',
      'StepSlotGranted:run-monitor',
    ]);
  });

  it('given heartbeats every 300 ms, then a 2 s lease stays alive for 4 s; once they stop, the run fails', async () => {
    const { gql } = await serve(dbFile());
    // A 2 s lease, not 1 s: heartbeats are recorded every third of the lease at most, so a 1 s
    // lease leaves only ~400 ms for timer jitter, which a busy CI machine can exceed.
    await enqueue(gql, { runId: 'alive', jobName: 'etl', leaseSeconds: 2 });
    await start(gql, 'alive');
    const until = Date.now() + 4_000;
    while (Date.now() < until) {
      await sleep(300);
      const answer = await heartbeat(gql, 'alive');
      expect(answer.run.status).toBe('STARTED');
    }
    expect((await run(gql, 'alive')).status).toBe('STARTED');
    const failed = await becomes(gql, 'alive', 'FAILURE', 2_000 + FIRES_WITHIN_MS);
    expect(failed.finishReason).toBe('lease expired: no heartbeat for 2 s');
  });

  it('given a deadline that passed while the server was down, then it fires right after the restart, with no command sent', async () => {
    const path = dbFile();
    const first = await serve(path);
    await enqueue(first.gql, { runId: 'orphan', jobName: 'etl', leaseSeconds: 1 });
    expect((await run(first.gql, 'orphan')).status).toBe('STARTING');
    await first.server.close();
    servers.splice(servers.indexOf(first.server), 1);

    await sleep(1_500);
    const restartedAt = Date.now();
    const second = await serve(path);
    const failed = await becomes(second.gql, 'orphan', 'FAILURE', FIRES_WITHIN_MS);
    expect(Date.now() - restartedAt).toBeLessThan(FIRES_WITHIN_MS);
    expect(failed.finishReason).toBe('lease expired: no heartbeat for 1 s');
    expect(Date.parse(failed.finishedAt)).toBeGreaterThanOrEqual(restartedAt - 50);
    expect(await finishes(second.server)).toEqual([
      {
        runId: 'orphan',
        status: 'FAILURE',
        reason: 'lease expired: no heartbeat for 1 s',
        failureReason: 'UNEXPECTED_TERMINATION',
        actor: 'run-monitor',
      },
    ]);
  });
});

describe('run monitoring from dagster.yaml', () => {
  it('given run_monitoring.start_timeout_seconds: 1 in CONCURRENCY_CONFIG, then a run STARTING for over 1 s fails; one marked started in time does not', async () => {
    const dir = tempDir('sluice-timeouts-config-');
    dirs.push(dir);
    const config = join(dir.path, 'dagster.yaml');
    writeFileSync(config, 'run_monitoring:\n  enabled: true\n  start_timeout_seconds: 1\n');
    const { server, gql } = await serve(join(dir.path, 'events.db'), config);
    expect(server.sluice.state.monitoring).toEqual({
      startTimeoutSeconds: 1,
      cancelTimeoutSeconds: 180,
      maxRuntimeSeconds: null,
    });

    const stuck = await enqueue(gql, { runId: 'stuck', jobName: 'etl' });
    await enqueue(gql, { runId: 'healthy', jobName: 'etl' });
    await start(gql, 'healthy');
    const failed = await becomes(gql, 'stuck', 'FAILURE', 1_000 + FIRES_WITHIN_MS);
    expect(failed.finishReason).toBe('start timeout: STARTING for more than 1 s');
    const late = Date.parse(failed.finishedAt) - (Date.parse(stuck.run.admittedAt) + 1_000);
    expect(late).toBeGreaterThanOrEqual(0);
    expect(late).toBeLessThan(FIRES_WITHIN_MS);
    await sleep(300);
    expect((await run(gql, 'healthy')).status).toBe('STARTED');
  });
});
