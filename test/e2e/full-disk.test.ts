/**
 * A really full disk: the data folder on a tmpfs of a few MiB that the test fills to the last
 * byte, for the event log, the history read model and the checkpoints in turn (each on the small
 * filesystem while the others are elsewhere). The first write that cannot be made is refused
 * with STORE_UNAVAILABLE naming the full disk, nothing half-written is read back, reads keep
 * answering, and once the filesystem has room again the server goes on with nothing lost.
 */
import { copyFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openSqliteStore } from '../../src/eventstore/sqlite.js';
import { type RunningServer, startServer } from '../../src/server.js';
import { DEFAULT_SETTINGS, type Settings } from '../../src/settings.js';
import { verifyLog } from '../../src/verify/verify.js';
import { Gql, tempDir } from '../support/e2e-http.js';
import { mountTmpfs, mountUnavailable, type Tmpfs } from '../support/tmpfs.js';

const skipped = mountUnavailable();
if (skipped) console.warn(`full-disk tests skipped: ${skipped}`);

let disk: Tmpfs;
let elsewhere: ReturnType<typeof tempDir>;
const servers: RunningServer[] = [];
let logs: string[] = [];

beforeEach(() => {
  if (skipped) return;
  disk = mountTmpfs(6);
  elsewhere = tempDir('sluice-full-disk-');
  logs = [];
});

afterEach(async () => {
  if (skipped) return;
  for (const server of servers.splice(0)) await server.close();
  // The logs the tests leave are verified with the others (see test/support/verify-logs.ts).
  for (const name of ['events.db', 'events.db-wal']) {
    if (existsSync(join(disk.path, name))) copyFileSync(join(disk.path, name), join(elsewhere.path, `disk-${name}`));
  }
  disk.unmount();
  elsewhere.remove();
});

type Place = 'log' | 'history' | 'checkpoints' | 'everything';

/** The file of `on` on the small disk, the others elsewhere. */
function settings(on: Place): Settings {
  const where = (place: Place) => (place === on || on === 'everything' ? disk.path : elsewhere.path);
  return {
    ...DEFAULT_SETTINGS,
    port: 0,
    host: '127.0.0.1',
    eventStoreUrl: `sqlite:${join(where('log'), 'events.db')}`,
    historyPath: join(where('history'), 'history.db'),
    checkpointPath: join(where('checkpoints'), 'checkpoints.db'),
    concurrencyConfigPath: null,
    logLevel: 'warn',
  };
}

async function start(on: Place, checkpointWorkerFromBytes?: number): Promise<{ server: RunningServer; gql: Gql }> {
  const server = await startServer({ ...settings(on), checkpointWorkerFromBytes }, (line) => logs.push(line));
  servers.push(server);
  return { server, gql: new Gql(server.url) };
}

const ENQUEUE = `mutation($id: ID!) { enqueueRun(input: {runId: $id, jobName: "etl", tags: [{key: "pad", value: "${'x'.repeat(200)}"}]}) {
  __typename ... on RunPayload { run { id status } } ... on Error { message } } }`;
const RUNS = `query($after: String) { runs(first: 100, after: $after) {
  edges { node { id } } pageInfo { hasNextPage endCursor } } }`;

async function enqueue(gql: Gql, id: string) {
  const answer = await gql.answer(ENQUEUE, { id });
  const error = answer.body.errors?.[0];
  return error ? { ok: false as const, error } : { ok: true as const, run: answer.body.data.enqueueRun.run };
}

async function runIds(gql: Gql): Promise<string[]> {
  const ids: string[] = [];
  let after: string | null = null;
  for (;;) {
    const { runs } = await gql.data(RUNS, { after });
    ids.push(...(runs.edges as Array<{ node: { id: string } }>).map((e) => e.node.id));
    if (!runs.pageInfo.hasNextPage) return ids.sort();
    after = runs.pageInfo.endCursor;
  }
}

describe.skipIf(skipped !== null)('a really full disk', () => {
  it('given the event log on a full disk, when a run is enqueued, then it is refused (STORE_UNAVAILABLE, disk full), reads answer, and after room is made it goes on with nothing lost', async () => {
    const { server, gql } = await start('log');
    const acknowledged: string[] = [];
    for (let i = 0; i < 5; i++) {
      expect((await enqueue(gql, `before-${i}`)).ok).toBe(true);
      acknowledged.push(`before-${i}`);
    }
    disk.fill();
    const refused = await enqueue(gql, 'while-full');
    expect(refused.ok).toBe(false);
    if (!refused.ok) {
      expect(refused.error.extensions?.code).toBe('STORE_UNAVAILABLE');
      expect(refused.error.message).toMatch(/full/i);
    }
    // Reads keep answering, and show nothing of the refused command.
    expect(await runIds(gql)).toEqual([...acknowledged].sort());
    expect((await gql.data('{ run(id: "while-full") { id } }')).run).toBeNull();

    disk.resize(64);
    expect((await enqueue(gql, 'while-full')).ok).toBe(true);
    acknowledged.push('while-full');
    for (let i = 0; i < 5; i++) {
      expect((await enqueue(gql, `after-${i}`)).ok).toBe(true);
      acknowledged.push(`after-${i}`);
    }
    expect(await runIds(gql)).toEqual([...acknowledged].sort());

    // Read back from the files by a new server: everything acknowledged, nothing else.
    await server.close();
    servers.splice(servers.indexOf(server), 1);
    const again = await start('log');
    expect(await runIds(again.gql)).toEqual([...acknowledged].sort());
    const store = openSqliteStore({ path: join(disk.path, 'events.db'), readonly: true });
    try {
      expect((await verifyLog(store, { gaplessPositions: true })).breach).toBeNull();
    } finally {
      await store.close();
    }
  }, 60_000);

  it('given the history read model on a full disk, when runs are enqueued, then they are recorded, history reads refuse clearly or answer, and after room is made the history catches up with nothing lost', async () => {
    const { gql } = await start('history');
    const acknowledged: string[] = [];
    for (let i = 0; i < 5; i++) {
      expect((await enqueue(gql, `before-${i}`)).ok).toBe(true);
      acknowledged.push(`before-${i}`);
    }
    expect(await runIds(gql)).toEqual([...acknowledged].sort());
    disk.fill();
    // Runs are recorded (the log is elsewhere) until the history cannot take them: then a read
    // of the history refuses clearly instead of answering without them.
    let refusal: { message: string; extensions?: Record<string, unknown> } | undefined;
    for (let i = 0; i < 400 && !refusal; i++) {
      expect((await enqueue(gql, `while-full-${i}`)).ok).toBe(true);
      acknowledged.push(`while-full-${i}`);
      refusal = (await gql.answer(RUNS)).body.errors?.[0];
    }
    expect(refusal?.extensions?.code).toBe('STORE_UNAVAILABLE');
    expect(refusal?.message).toMatch(/history.*full/i);
    // Reads of the live state keep answering.
    expect((await gql.data('{ run(id: "before-0") { id status } }')).run.id).toBe('before-0');
    disk.resize(64);
    expect(await runIds(gql)).toEqual([...acknowledged].sort());
    expect((await enqueue(gql, 'after')).ok).toBe(true);
    acknowledged.push('after');
    expect(await runIds(gql)).toEqual([...acknowledged].sort());
  }, 60_000);

  it('given the whole data folder on a full disk, when runs are enqueued until one is refused, then after room is made every read answers and nothing acknowledged is lost', async () => {
    const { gql } = await start('everything');
    const acknowledged: string[] = [];
    let refused = false;
    for (let i = 0; i < 20_000 && !refused; i++) {
      const answer = await enqueue(gql, `run-${i}`);
      if (answer.ok) acknowledged.push(`run-${i}`);
      else {
        expect(answer.error.extensions?.code).toBe('STORE_UNAVAILABLE');
        expect(answer.error.message).toMatch(/full/i);
        refused = true;
      }
      if (i === 20) disk.fill();
    }
    expect(refused).toBe(true);
    // Room made the other way an operator would: deleting what filled the disk.
    disk.free();
    expect(await runIds(gql)).toEqual([...acknowledged].sort());
    expect((await enqueue(gql, 'after')).ok).toBe(true);
    acknowledged.push('after');
    expect(await runIds(gql)).toEqual([...acknowledged].sort());
  }, 120_000);

  it.each([
    ['the server’s thread', undefined],
    ['a worker thread', 0],
  ])(
    'given the checkpoints on a full disk, written by %s, when commands make a checkpoint due, then commands go on (a checkpoint is only a speed-up), and after room is made checkpoints are written again and a restart agrees',
    async (_, workerFromBytes) => {
      const { server, gql } = await start('checkpoints', workerFromBytes);
      disk.fill();
      const acknowledged: string[] = [];
      const batch = async (prefix: string, count: number) => {
        for (let i = 0; i < count; i += 25) {
          const ids = Array.from({ length: Math.min(25, count - i) }, (_, j) => `${prefix}-${i + j}`);
          const answers = await Promise.all(ids.map((id) => enqueue(gql, id)));
          answers.forEach((a, j) => {
            expect(a.ok, JSON.stringify(a)).toBe(true);
            acknowledged.push(ids[j] as string);
          });
        }
      };
      await batch('full', 1_100);
      expect(logs.some((line) => /checkpoint at position \d+ not written/.test(line))).toBe(true);
      disk.resize(64);
      await batch('room', 1_000);
      await server.close();
      servers.splice(servers.indexOf(server), 1);
      const again = await start('checkpoints');
      expect(await runIds(again.gql)).toEqual([...acknowledged].sort());
    },
    120_000,
  );
});
