/**
 * Servers on a real port and a real SQLite file: the same answers after a restart, the
 * dagster.yaml applied only where it differs, startup failures that say what is wrong,
 * health routes, and a graceful SIGTERM of the real CLI.
 */
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DEPLOYMENT_STREAM } from '../../src/app/sluice.js';
import { type RunningServer, startServer } from '../../src/server.js';
import { DEFAULT_SETTINGS, type Settings } from '../../src/settings.js';
import { CONFIG_FIELDS, Gql, type Json, observable, SseCollector, tempDir, waitFor } from '../support/e2e-http.js';
import { type ServerProcess, startServerProcess, stopAll } from '../support/server-process.js';
import { NOT_VERIFIED } from '../support/verify-logs.js';

const ROOT = resolve(import.meta.dirname, '../..');

let dir: ReturnType<typeof tempDir>;
let dbPath: string;
const servers: RunningServer[] = [];
const processes: ServerProcess[] = [];
const subscriptions: SseCollector[] = [];
let logs: string[] = [];

beforeEach(() => {
  dir = tempDir();
  dbPath = join(dir.path, 'events.db');
  logs = [];
});

afterEach(async () => {
  await Promise.all(subscriptions.splice(0).map((s) => s.close()));
  for (const server of servers.splice(0)) await server.close();
  await stopAll(processes.splice(0));
  dir.remove();
});

function settings(overrides: Partial<Settings> = {}): Settings {
  return {
    ...DEFAULT_SETTINGS,
    port: 0,
    host: '127.0.0.1',
    eventStoreUrl: `sqlite:${dbPath}`,
    concurrencyConfigPath: null,
    ...overrides,
  };
}

async function start(overrides: Partial<Settings> = {}): Promise<{ server: RunningServer; gql: Gql }> {
  const server = await startServer(settings(overrides), (line) => logs.push(line));
  servers.push(server);
  return { server, gql: new Gql(server.url) };
}

async function stop(server: RunningServer): Promise<void> {
  servers.splice(servers.indexOf(server), 1);
  await server.close();
}

async function mutate(gql: Gql, query: string, variables?: Record<string, unknown>): Promise<Json> {
  const data = await gql.data(query, variables);
  for (const value of Object.values(data) as Json[]) {
    if (value?.__typename?.endsWith('Error')) throw new Error(`${value.__typename}: ${value.message}`);
  }
  return data;
}

const enqueueDoc =
  'mutation($input: EnqueueRunInput!) { enqueueRun(input: $input) { __typename ... on Error { message } } }';

/** Limits of every kind, and runs admitted, held (by several limits), started, canceling, finished. */
async function buildState(gql: Gql): Promise<void> {
  await mutate(
    gql,
    `mutation {
      a: setMaxConcurrentRuns(limit: 4) { __typename }
      b: setTagConcurrencyLimits(limits: [
        {key: "database", value: "redshift", limit: 1},
        {key: "team", limit: 3},
        {key: "dagster/backfill", applyLimitPerUniqueValue: true, limit: 1}]) { __typename }
      c: setPoolGranularity(granularity: RUN) { __typename }
      d: setDefaultPoolLimit(limit: 2) { __typename }
      e: setPoolLimit(pool: "db", limit: 1) { __typename }
      f: setPoolLimit(pool: "gone", limit: 9) { __typename }
      g: deletePoolLimit(pool: "gone") { __typename }
    }`,
  );
  const runs = [
    { runId: 'r1', jobName: 'etl', tags: [{ key: 'database', value: 'redshift' }], steps: [{ key: 's', pool: 'db' }] },
    { runId: 'r2', jobName: 'etl', tags: [{ key: 'database', value: 'redshift' }], steps: [{ key: 's', pool: 'db' }] },
    { runId: 'r3', jobName: 'report', tags: [{ key: 'team', value: 'bi' }], priority: 5 },
    { runId: 'r4', jobName: 'backfill', tags: [{ key: 'dagster/backfill', value: 'b1' }] },
    { runId: 'r5', jobName: 'backfill', tags: [{ key: 'dagster/backfill', value: 'b1' }] },
    { runId: 'r6', jobName: 'misc', steps: [{ key: 's', pool: 'scratch' }] },
    { runId: 'r7', jobName: 'misc', tags: [{ key: 'dagster/priority', value: '2' }] },
    { runId: 'r8', jobName: 'misc' },
  ];
  for (const input of runs) await mutate(gql, enqueueDoc, { input });
  await mutate(
    gql,
    `mutation {
      a: markRunStarted(runId: "r1") { __typename ... on Error { message } }
      b: markRunFinished(runId: "r3", status: FAILURE) { __typename ... on Error { message } }
      c: terminateRun(runId: "r4") { __typename ... on Error { message } }
      d: terminateRun(runId: "r8") { __typename ... on Error { message } }
    }`,
  );
}

/** What a reader sees, with the full run details (waits, decisions, blockedBy). */
async function view(gql: Gql): Promise<Json> {
  return observable(gql);
}

const runningNow = (v: Json, status: string) => v.runs.filter((r: Json) => r.status === status).map((r: Json) => r.id);

// ---------------------------------------------------------------------------------------------

describe('restart on the same SQLite file', () => {
  it('given limits, runs admitted, held and finished, when the server restarts on the same file, then every answer is the same', async () => {
    const first = await start();
    await buildState(first.gql);
    const before = await view(first.gql);
    // The state is as varied as intended.
    expect(runningNow(before, 'QUEUED').length).toBeGreaterThan(0);
    expect(runningNow(before, 'STARTED')).toEqual(['r1']);
    expect(runningNow(before, 'CANCELING')).toEqual(['r4']);
    expect(runningNow(before, 'FAILURE')).toEqual(['r3']);
    expect(runningNow(before, 'CANCELED')).toEqual(['r8']);
    expect(before.decisions.length).toBeGreaterThan(5);
    expect(before.runs.find((r: Json) => r.id === 'r2').blockedBy.length).toBeGreaterThan(1);
    const revision = first.server.sluice.state.revision;
    await stop(first.server);

    const second = await start();
    expect(second.server.sluice.state.revision).toBe(revision);
    expect(await view(second.gql)).toEqual(before);

    // And it carries on from there: finishing r1 frees the redshift tag and pool db for r2.
    await mutate(second.gql, 'mutation { markRunFinished(runId: "r1", status: SUCCESS) { __typename } }');
    const r2 = await second.gql.data('{ run(id: "r2") { status } }');
    expect(r2.run.status).toBe('STARTING');
  });

  it('given a server, when /health and /ready are asked, then both answer 200 once it has caught up', async () => {
    const { gql } = await start();
    expect((await gql.get('/health')).status).toBe(200);
    await waitFor(async () => (await gql.get('/ready')).status === 200, '/ready to answer 200');
    const ready = await gql.get('/ready');
    expect(JSON.parse(ready.text)).toEqual({ status: 'ready' });
  });
});

describe('two servers on one SQLite file', () => {
  it('given two servers on the same file, when both take enqueues at once, then together they never admit more than the limit and agree on the state', async () => {
    const one = await start();
    const two = await start();
    await mutate(one.gql, 'mutation { setMaxConcurrentRuns(limit: 3) { __typename } }');
    await Promise.all(
      Array.from({ length: 24 }, (_, i) =>
        mutate(i % 2 === 0 ? one.gql : two.gql, enqueueDoc, { input: { runId: `x${i}`, jobName: 'j' } }),
      ),
    );
    // Each server reads after catching up, so both see the whole log.
    const [a, b] = await Promise.all([view(one.gql), view(two.gql)]);
    expect(a).toEqual(b);
    expect(runningNow(a, 'STARTING')).toHaveLength(3);
    expect(runningNow(a, 'QUEUED')).toHaveLength(21);
    expect(a.decisions.filter((d: Json) => d.kind === 'ADMITTED')).toHaveLength(3);
  });
});

describe('CONCURRENCY_CONFIG', () => {
  function configFile(text?: string): string {
    const path = join(dir.path, 'dagster.yaml');
    if (text === undefined) copyFileSync(join(ROOT, 'examples/dagster.yaml'), path);
    else writeFileSync(path, text);
    return path;
  }

  async function eventsOf(server: RunningServer) {
    return server.store.readStream(DEPLOYMENT_STREAM);
  }

  it('given the example dagster.yaml, when the server starts, then the limits that differ are appended as edits by config-file:<path>', async () => {
    const path = configFile();
    const { server, gql } = await start({ concurrencyConfigPath: path });
    const events = await eventsOf(server);
    // max_concurrent_runs 10 and granularity op are the defaults already: nothing for them.
    // (Only the core section's limit edits are checked; other sections may add their own.)
    const core = new Set([
      'MaxConcurrentRunsSet',
      'TagConcurrencyLimitsSet',
      'PoolGranularitySet',
      'DefaultPoolLimitSet',
      'PoolLimitSet',
      'PoolLimitDeleted',
    ]);
    expect(events.map((e) => e.type).filter((t) => core.has(t))).toEqual(
      expect.arrayContaining(['DefaultPoolLimitSet', 'TagConcurrencyLimitsSet']),
    );
    expect(events.filter((e) => core.has(e.type))).toHaveLength(2);
    expect(events.length).toBeGreaterThan(0);
    expect(events.every((e) => e.actor === `config-file:${path}`)).toBe(true);
    expect(logs.join('\n')).toContain(`applied ${path}`);
    const config = (await gql.data(`{ concurrencyConfig { ${CONFIG_FIELDS} } }`)).concurrencyConfig;
    expect(config).toEqual({
      maxConcurrentRuns: 10,
      poolGranularity: 'OP',
      defaultPoolLimit: 1,
      tagConcurrencyLimits: [
        { key: 'database', value: 'redshift', applyLimitPerUniqueValue: false, limit: 3 },
        { key: 'dagster/backfill', value: null, applyLimitPerUniqueValue: true, limit: 2 },
        { key: 'team', value: null, applyLimitPerUniqueValue: false, limit: 5 },
      ],
    });
  });

  it('given the same file, when the server starts again, then nothing is appended; when one value changes, exactly one edit is', async () => {
    const path = configFile();
    const first = await start({ concurrencyConfigPath: path });
    const count = (await eventsOf(first.server)).length;
    await stop(first.server);

    const second = await start({ concurrencyConfigPath: path });
    expect(await eventsOf(second.server)).toHaveLength(count);
    await stop(second.server);

    writeFileSync(path, readFileSync(path, 'utf8').replace('max_concurrent_runs: 10', 'max_concurrent_runs: 4'));
    const third = await start({ concurrencyConfigPath: path });
    const events = await eventsOf(third.server);
    expect(events).toHaveLength(count + 1);
    expect(events.at(-1)).toMatchObject({
      type: 'MaxConcurrentRunsSet',
      data: { limit: 4 },
      actor: `config-file:${path}`,
    });
    const config = await third.gql.data('{ concurrencyConfig { maxConcurrentRuns defaultPoolLimit } }');
    expect(config.concurrencyConfig).toEqual({ maxConcurrentRuns: 4, defaultPoolLimit: 1 });
  });

  it('given a limit edited over the API since, when the server restarts with the file, then the file value is applied again, as one edit', async () => {
    const path = configFile('concurrency:\n  runs:\n    max_concurrent_runs: 3\n');
    const first = await start({ concurrencyConfigPath: path });
    await mutate(first.gql, 'mutation { setMaxConcurrentRuns(limit: 7) { __typename } }');
    const count = (await eventsOf(first.server)).length;
    await stop(first.server);

    const second = await start({ concurrencyConfigPath: path });
    const events = await eventsOf(second.server);
    expect(events).toHaveLength(count + 1);
    expect(events.at(-1)).toMatchObject({ type: 'MaxConcurrentRunsSet', data: { limit: 3 } });
  });

  it('given a config file with a misspelt key, when the server starts, then it refuses with a message naming the key, and the store is left usable', async () => {
    const path = configFile('concurrency:\n  runs:\n    max_concurent_runs: 3\n');
    await expect(start({ concurrencyConfigPath: path })).rejects.toThrow(/concurrency\.runs\.max_concurent_runs/);
    await expect(start({ concurrencyConfigPath: path })).rejects.toThrow(path);
    // The failed start closed the store: a good start on the same file works.
    const { gql } = await start();
    expect((await gql.answer('{ concurrencyConfig { maxConcurrentRuns } }')).status).toBe(200);
  });

  it('given a config file with a value out of range, when the server starts, then it refuses naming the key and appends nothing', async () => {
    const path = configFile('concurrency:\n  pools:\n    default_limit: -4\n');
    await expect(start({ concurrencyConfigPath: path })).rejects.toThrow(/concurrency\.pools\.default_limit/);
    const { server } = await start();
    expect(await eventsOf(server)).toEqual([]);
  });

  it('given a config file that does not exist, when the server starts, then it refuses, naming the file', async () => {
    const path = join(dir.path, 'missing.yaml');
    await expect(start({ concurrencyConfigPath: path })).rejects.toThrow(/missing\.yaml/);
  });
});

describe('a log with an unreadable event', () => {
  async function logWithTwoEvents(): Promise<void> {
    const { server, gql } = await start();
    await mutate(gql, enqueueDoc, { input: { runId: 'a', jobName: 'j' } });
    expect(await server.store.streamRevision(DEPLOYMENT_STREAM)).toBe(1n);
    await stop(server);
  }

  function insertRaw(type: string, data: string): void {
    writeFileSync(join(dirname(dbPath), NOT_VERIFIED), 'an event inserted behind the store on purpose');
    const db = new Database(dbPath);
    try {
      db.prepare(
        `INSERT INTO events (stream, revision, type, schema_version, data, actor, at)
         VALUES (?, 2, ?, 1, ?, 'intruder', '2024-01-01T00:00:00.000Z')`,
      ).run(DEPLOYMENT_STREAM, type, data);
    } finally {
      db.close();
    }
  }

  it('given an event whose data does not fit its schema, when the server starts, then it fails naming the position', async () => {
    await logWithTwoEvents();
    insertRaw('RunEnqueued', JSON.stringify({ jobName: 42 }));
    await expect(start()).rejects.toThrow(/position 2\b/);
  });

  it('given an event of a type nobody knows, when the server starts, then it fails naming the position and the type', async () => {
    await logWithTwoEvents();
    insertRaw('RunTeleported', '{}');
    await expect(start()).rejects.toThrow(/position 2\b.*RunTeleported/);
  });

  it('given an event whose data is not JSON at all, when the server starts, then it fails naming the position (of the event, in its stream)', async () => {
    await logWithTwoEvents();
    insertRaw('RunEnqueued', '{not json');
    const failure = await start().then(
      () => null,
      (error: Error) => error,
    );
    expect(failure).toBeInstanceOf(Error);
    expect(failure?.message).toMatch(/sluice-deployment/);
    expect(failure?.message).toMatch(/position 2\b/);
  });
});

describe('the sluice CLI, served and stopped', () => {
  it('given a served CLI with a subscriber attached, when it gets SIGTERM after a mutation, then it exits 0 and a restart shows the mutation', async () => {
    const served = await startServerProcess({ name: 'cli', dbPath });
    processes.push(served);
    const { gql } = served;

    await mutate(
      gql,
      `mutation {
        setPoolLimit(pool: "database", limit: 2) { __typename ... on Error { message } }
        enqueueRun(input: {runId: "before-sigterm", jobName: "j", steps: [{key: "s", pool: "database"}]}) {
          __typename ... on Error { message } }
      }`,
    );
    // A long-lived SSE subscription must not keep the process from stopping.
    const subscriber = new SseCollector(gql.url, 'subscription { dequeueDecisions { position } }');
    subscriptions.push(subscriber);
    await subscriber.opened;

    // stop() sends SIGTERM and answers the exit code, or SIGKILL had it not exited in time.
    expect(await served.stop(10_000), served.describe()).toBe(0);
    expect(served.stdout + served.stderr).toMatch(/SIGTERM/);

    const { gql: again } = await start();
    const data = await again.data('{ run(id: "before-sigterm") { status pools } pool(name: "database") { limit } }');
    expect(data).toEqual({ run: { status: 'STARTING', pools: ['database'] }, pool: { limit: 2 } });
  });
});
