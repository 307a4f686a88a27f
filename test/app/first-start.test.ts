/**
 * A first start: a log with no checkpoint file and no history file beside it yet. The server
 * answers once its live state is rebuilt and creates neither file on the way (creating an
 * SQLite file syncs the disk several times). The checkpoints its replay took are saved after it
 * answers and match the log; the history is created and rebuilt in the background, and a read
 * of it meanwhile says how far it is or answers from the log, never from less than the log.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { serializeState } from '../../projections/serialize.js';
import { DEPLOYMENT_STREAM, eventHash, HistoryBehindError, Sluice } from '../../src/app/sluice.js';
import { CURRENT_SCHEMA_VERSION } from '../../src/domain/events.js';
import { openCheckpointStore } from '../../src/eventstore/checkpoints.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.js';
import type { NewEvent } from '../../src/eventstore/store.js';
import { type RunningServer, startServer } from '../../src/server.js';
import { checkpointPathFor, DEFAULT_SETTINGS, historyPathFor, type Settings } from '../../src/settings.js';
import { tempDir } from '../support/e2e-http.js';

let dir: ReturnType<typeof tempDir> | undefined;
let server: RunningServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
  dir?.remove();
});

const RUNS = 3_000;
const event = (type: string, data: object, i: number): NewEvent => ({
  type,
  schemaVersion: CURRENT_SCHEMA_VERSION,
  data,
  actor: 'test',
  at: new Date(Date.parse('2026-01-01T00:00:00.000Z') + i * 1000).toISOString(),
});

/** A log of RUNS runs, each enqueued, admitted, started and finished before the next. */
async function writeLog(path: string): Promise<bigint> {
  const store = openSqliteStore({ path });
  let expected: bigint | 'no_stream' = 'no_stream';
  for (let first = 0; first < RUNS; first += 500) {
    const events: NewEvent[] = [];
    for (let i = first; i < Math.min(first + 500, RUNS); i++) {
      const runId = `done-${i}`;
      events.push(
        event(
          'RunEnqueued',
          {
            runId,
            jobName: 'job',
            tags: [{ key: 'team', value: `t${i % 4}` }],
            steps: [],
            priority: 0,
            maxConcurrentSteps: null,
            leaseSeconds: null,
          },
          i,
        ),
        event('RunAdmitted', { runId }, i),
        event('RunStarted', { runId }, i),
        event('RunFinished', { runId, status: i % 7 === 0 ? 'FAILURE' : 'SUCCESS', reason: null }, i),
      );
    }
    expected = (await store.append(DEPLOYMENT_STREAM, events, expected)).nextExpectedRevision;
  }
  await store.close();
  return expected as bigint;
}

describe('a first start', () => {
  it('given a log with no checkpoint or history file, when the server starts, then it answers before creating either; history reads meanwhile say how far it is or answer from the log; then the checkpoints its replay took match the log and the history answers as a full rebuild', async () => {
    dir = tempDir('sluice-first-start-');
    const logPath = join(dir.path, 'events.db');
    const head = await writeLog(logPath);
    const settings: Settings = {
      ...DEFAULT_SETTINGS,
      port: 0,
      host: '127.0.0.1',
      eventStoreUrl: `sqlite:${logPath}`,
      concurrencyConfigPath: null,
    };
    const checkpointPath = checkpointPathFor(settings);
    const historyPath = historyPathFor(settings);

    server = await startServer(settings, () => {});
    const sluice = server.sluice;
    // The rules are recorded before it answers (a format raise may come first): the log only grows.
    expect(sluice.state.revision).toBeGreaterThanOrEqual(head);
    expect(existsSync(checkpointPath)).toBe(false);
    expect(existsSync(historyPath)).toBe(false);
    expect(sluice.historyStatus()).toMatchObject({ catchingUp: true, position: -1n });

    // A read of the history it has not reached says how far it is.
    const refused = await sluice.readHistory(0).then(
      () => null,
      (error: unknown) => error,
    );
    expect(refused).toBeInstanceOf(HistoryBehindError);
    expect((refused as HistoryBehindError).logPosition).toBe(sluice.state.revision);
    // A finished run the history has not reached is read from the log: the record it will hold.
    const early = await sluice.run('done-7');
    expect(early).toMatchObject({ id: 'done-7', status: 'FAILURE' });

    await sluice.historyCaughtUp();
    expect(existsSync(historyPath)).toBe(true);
    expect(await sluice.run('done-7')).toEqual(early);
    const history = await sluice.readHistory();
    const caughtUp = history.runs(null, -1, 100_000).map((run) => [run.id, run.status, run.finishedAt]);
    expect(caughtUp).toHaveLength(RUNS);
    const counts = [...history.countsByStatus()].sort();
    await server.close();
    server = undefined;

    // The checkpoints: saved once it answered, each the state a replay gives at its position.
    expect(existsSync(checkpointPath)).toBe(true);
    const checkpoints = openCheckpointStore(checkpointPath);
    const store = openSqliteStore({ path: logPath });
    const plain = await Sluice.open({ store, warn: () => {}, info: () => {} });
    try {
      const saved = checkpoints.atOrBefore(2n ** 62n, 100);
      expect(saved.length).toBeGreaterThan(0);
      for (const checkpoint of saved) {
        const [recorded] = await store.readStream(DEPLOYMENT_STREAM, {
          fromRevision: checkpoint.revision,
          maxCount: 1,
        });
        expect(checkpoint.eventHash).toBe(eventHash(recorded!));
        expect(checkpoints.load(checkpoint.revision)).toBe(serializeState(await plain.stateAt(checkpoint.revision)));
      }
      // The history, rebuilt in full from the log, answers the same.
      await plain.historyCaughtUp();
      const rebuilt = await plain.readHistory();
      expect(rebuilt.runs(null, -1, 100_000).map((run) => [run.id, run.status, run.finishedAt])).toEqual(caughtUp);
      expect([...rebuilt.countsByStatus()].sort()).toEqual(counts);
    } finally {
      await plain.close();
      await store.close();
      checkpoints.close();
    }
  }, 60_000);
});
