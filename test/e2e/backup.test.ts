/**
 * `sluice backup PATH` while a server serves under load: the copy's log is exactly the served
 * log up to the copy's position, and a server started on the copy shows the state as of that
 * position and goes on serving. Plus the refusals: an existing target, a store that is no
 * SQLite file, a missing source.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { DEPLOYMENT_STREAM } from '../../src/app/sluice.js';
import { CliError } from '../../src/cli/client.js';
import { runCli } from '../../src/cli/run.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.js';
import type { RecordedEvent } from '../../src/eventstore/store.js';
import { type RunningServer, startServer } from '../../src/server.js';
import { DEFAULT_SETTINGS } from '../../src/settings.js';
import { CONFIG_FIELDS, Gql, type Json, POOL_FIELDS, tempDir } from '../support/e2e-http.js';

vi.mock('graphql', async () => (await import('node:module')).createRequire(import.meta.url)('graphql'));

const ROOT = resolve(import.meta.dirname, '../..');
const run = promisify(execFile);

let dir: { path: string; remove: () => void };
const servers: RunningServer[] = [];

beforeEach(() => {
  dir = tempDir('sluice-backup-');
});

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
  dir.remove();
});

async function serve(dbPath: string): Promise<{ server: RunningServer; gql: Gql }> {
  const server = await startServer(
    { ...DEFAULT_SETTINGS, port: 0, eventStoreUrl: `sqlite:${dbPath}`, logLevel: 'silent' },
    () => {},
  );
  servers.push(server);
  return { server, gql: new Gql(server.url) };
}

const SNAPSHOT_RUN = `id jobName status priority tags { key value } enqueuedAt admittedAt startedAt
  blockedBy { kind key value pool limit inUse message }`;
const SNAPSHOT = `position at config { ${CONFIG_FIELDS} } queue { ${SNAPSHOT_RUN} } inProgress { ${SNAPSHOT_RUN} }
  pools { ${POOL_FIELDS} }`;

async function snapshotAt(gql: Gql, position: string | null): Promise<Json> {
  const data = await gql.data(`query($position: String) { snapshot(position: $position) { ${SNAPSHOT} } }`, {
    position,
  });
  return data.snapshot;
}

/** A writer enqueuing, starting, finishing and canceling runs until told to stop (bounded). */
async function writer(gql: Gql, name: string, stop: { now: boolean }): Promise<number> {
  const active: string[] = [];
  let commands = 0;
  const mutate = async (query: string, variables: Json) => {
    commands++;
    return Object.values(await gql.data(query, variables))[0] as Json;
  };
  for (let i = 0; !stop.now && i < 2_000; i++) {
    const runId = `${name}-${i}`;
    const enqueued = await mutate(
      `mutation($input: EnqueueRunInput!) { enqueueRun(input: $input) { ... on RunPayload { run { status } } } }`,
      { input: { runId, jobName: 'load', tags: [{ key: 'team', value: name }], steps: [{ key: 's', pool: 'db' }] } },
    );
    if (enqueued.run.status === 'STARTING') {
      await mutate('mutation($runId: ID!) { markRunStarted(runId: $runId) { __typename } }', { runId });
      active.push(runId);
    } else if (i % 2 === 0) {
      await mutate('mutation($runId: ID!) { terminateRun(runId: $runId) { __typename } }', { runId });
    }
    if (active.length > 1) {
      await mutate('mutation($runId: ID!) { markRunFinished(runId: $runId, status: SUCCESS) { __typename } }', {
        runId: active.shift(),
      });
    }
  }
  return commands;
}

const comparable = (events: RecordedEvent[]) =>
  events.map(({ revision, type, schemaVersion, data, actor, at }) => ({
    revision,
    type,
    schemaVersion,
    data,
    actor,
    at,
  }));

describe('sluice backup', () => {
  it('given a server under load, when backing up, then a server on the copy has the state as of the copy position', async () => {
    const original = join(dir.path, 'events.db');
    const copy = join(dir.path, 'copy.db');
    const { server, gql } = await serve(original);
    await gql.data('mutation { setMaxConcurrentRuns(limit: 4) { __typename } }');
    await gql.data('mutation { setPoolLimit(pool: "db", limit: 2) { __typename } }');
    await gql.data(
      'mutation { setTagConcurrencyLimits(limits: [{key: "team", applyLimitPerUniqueValue: true, limit: 1}]) { __typename } }',
    );

    const stop = { now: false };
    const writers = ['etl', 'ml', 'bi'].map((name) => writer(gql, name, stop));
    const revision = () => server.store.streamRevision(DEPLOYMENT_STREAM);
    while ((await revision()) < 30n) await new Promise((done) => setTimeout(done, 20));
    const before = await revision();
    const { stdout } = await run(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'backup', copy], {
      cwd: ROOT,
      env: { ...process.env, EVENT_STORE_URL: `sqlite:${original}` },
      timeout: 60_000,
    });
    const after = await revision();
    stop.now = true;
    const commands = (await Promise.all(writers)).reduce((a, b) => a + b, 0);
    expect(commands).toBeGreaterThan(0);

    const match = /: (\d+) events, up to position (\d+)/.exec(stdout);
    expect(match, stdout).not.toBeNull();
    const position = BigInt(match?.[2] as string);
    // Every event of the deployment's log up to that position, and the record of the log's rules
    // that lives in a stream beside it.
    expect(Number(match?.[1])).toBe(Number(position) + 2);
    // Written to while it was copied: the copy is of a moment inside the backup, not before it.
    expect(position).toBeGreaterThan(before);
    expect(position).toBeLessThanOrEqual(after);
    expect(stdout).toContain(`restore: EVENT_STORE_URL=sqlite:${copy} sluice serve`);
    expect(existsSync(`${copy}-wal`)).toBe(false);

    // The copy's log is the served log up to its position, event for event.
    const copied = openSqliteStore({ path: copy });
    const copiedEvents = await copied.readStream(DEPLOYMENT_STREAM);
    await copied.close();
    const served = await server.store.readStream(DEPLOYMENT_STREAM, { maxCount: Number(position) + 1 });
    expect(comparable(copiedEvents)).toEqual(comparable(served));

    const restored = await serve(copy);
    const restoredNow = await snapshotAt(restored.gql, null);
    expect(restoredNow.position).toBe(position.toString());
    expect(restoredNow).toEqual(await snapshotAt(gql, position.toString()));
    expect(restoredNow.inProgress.length + restoredNow.queue.length).toBeGreaterThan(0);

    // Restoring is starting a server on the copy: it goes on from there.
    const next = await restored.gql.data(
      'mutation { enqueueRun(input: {runId: "after-restore", jobName: "etl"}) { ... on RunPayload { run { id } } } }',
    );
    expect(next.enqueueRun.run.id).toBe('after-restore');
    expect(await restored.server.store.streamRevision(DEPLOYMENT_STREAM)).toBeGreaterThan(position);
  }, 90_000);
});

describe('sluice backup refuses', () => {
  async function refusal(argv: string[], env: Record<string, string>): Promise<CliError> {
    const failure = await runCli(argv, env).then(
      (output) => new Error(`expected a CliError, got ${JSON.stringify(output)}`),
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(CliError);
    return failure as CliError;
  }

  it('given a target that exists, then it refuses and leaves the file as it was', async () => {
    const original = join(dir.path, 'events.db');
    const { server } = await serve(original);
    await server.close();
    servers.length = 0;
    const target = join(dir.path, 'taken.db');
    writeFileSync(target, 'keep me');
    const error = await refusal(['backup', target], { EVENT_STORE_URL: `sqlite:${original}` });
    expect(error.exitCode).toBe(1);
    expect(error.message).toBe(`${target} exists already: choose a new path for the backup`);
    expect(readFileSync(target, 'utf8')).toBe('keep me');
  });

  it('given a log that is not a SQLite file, then it refuses as a usage error', async () => {
    const error = await refusal(['backup', join(dir.path, 'x.db')], {
      EVENT_STORE_URL: 'esdb://localhost:2113?tls=false',
    });
    expect(error.exitCode).toBe(2);
    expect(error.message).toMatch(/copies a SQLite log/);
    expect((await refusal(['backup', join(dir.path, 'x.db')], { EVENT_STORE_URL: 'sqlite::memory:' })).exitCode).toBe(
      2,
    );
  });

  it('given no log file, or a file that is no event store, then it says so and creates nothing', async () => {
    const missing = join(dir.path, 'missing.db');
    const target = join(dir.path, 'x.db');
    const error = await refusal(['backup', target], { EVENT_STORE_URL: `sqlite:${missing}` });
    expect(error.exitCode).toBe(1);
    expect(error.message).toMatch(/cannot open the event store/);
    expect(existsSync(missing)).toBe(false);

    const other = join(dir.path, 'other.db');
    const { default: Database } = await import('better-sqlite3');
    new Database(other).exec('CREATE TABLE t (x)').close();
    const notOurs = await refusal(['backup', target], { EVENT_STORE_URL: `sqlite:${other}` });
    expect(notOurs.message).toBe(`${other} is not a Sluice event store (it has no events table)`);
    expect(existsSync(target)).toBe(false);

    const valid = join(dir.path, 'valid.db');
    await openSqliteStore({ path: valid }).close();
    const nowhere = join(dir.path, 'nowhere', 'x.db');
    const noDir = await refusal(['backup', nowhere], { EVENT_STORE_URL: `sqlite:${valid}` });
    expect(noDir.message).toBe(`cannot write ${nowhere}: its directory does not exist`);
  });
});
