/**
 * Checkpoints of a large state written by a worker thread: the worker's copy of the state,
 * folded from the durable events the server hands it, gives checkpoints at the same positions
 * and byte for byte the same as the server's own thread would; a worker that dies hands the
 * writing back to the server's thread, which goes on with nothing lost.
 */
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { STATE_FORMAT, serializeState } from '../../projections/serialize.js';
import type { Checkpointing } from '../../src/app/checkpointing.js';
import { DEPLOYMENT_STREAM, eventHash, Sluice } from '../../src/app/sluice.js';
import { DomainError } from '../../src/domain/errors.js';
import { type CheckpointStore, openCheckpointStore } from '../../src/eventstore/checkpoints.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.js';
import type { EventStore } from '../../src/eventstore/store.js';
import { commandOf, FakeClock, type Op, opArbitrary, settle } from '../support/audit.js';
import { tempDir } from '../support/e2e-http.js';

let dir: ReturnType<typeof tempDir>;
let opened: Array<() => Promise<void> | void>;

beforeEach(() => {
  dir = tempDir('sluice-checkpoint-writer-');
  opened = [];
});

afterEach(async () => {
  for (const close of opened.reverse()) await close();
  dir.remove();
});

function files(name: string): { events: EventStore; checkpoints: CheckpointStore } {
  const events = openSqliteStore({ path: join(dir.path, `${name}.db`) });
  const checkpoints = openCheckpointStore(join(dir.path, `${name}.checkpoints.db`));
  opened.push(
    () => events.close(),
    () => checkpoints.close(),
  );
  return { events, checkpoints };
}

/** A fixed random history of about a hundred events of every kind. */
const HISTORY: Op[] = fc.sample(fc.array(opArbitrary({ time: false }), { minLength: 80, maxLength: 80 }), {
  seed: 20_261_206,
  numRuns: 1,
})[0] as Op[];

async function play(sluice: Sluice, ops: readonly Op[], from = 0): Promise<void> {
  let nextRun = from;
  for (const op of ops) {
    const command = commandOf(op, sluice.state, () => `r${nextRun++}`);
    if (!command) continue;
    try {
      await sluice.execute(command, 'test');
    } catch (error) {
      if (!(error instanceof DomainError)) throw error;
    }
    await settle();
  }
}

function checkpointingOf(sluice: Sluice): Checkpointing {
  // The test reaches past the facade to wait for, and to stop, the worker thread.
  return (sluice as unknown as { checkpointing: Checkpointing }).checkpointing;
}

/** Every checkpoint is the state a replay of the log gives at its position, with that event's hash. */
async function expectCheckpointsMatch(checkpoints: CheckpointStore, events: EventStore): Promise<bigint[]> {
  const log = await events.readStream(DEPLOYMENT_STREAM);
  const plain = await Sluice.open({ store: events });
  const found = checkpoints.atOrBefore(2n ** 62n, 10_000);
  try {
    for (const checkpoint of found) {
      const event = log[Number(checkpoint.revision)];
      expect(checkpoint.eventHash).toBe(eventHash(event!));
      expect(checkpoint.format).toBe(STATE_FORMAT);
      expect(checkpoints.load(checkpoint.revision), `checkpoint ${checkpoint.revision}`).toBe(
        serializeState(await plain.stateAt(checkpoint.revision)),
      );
    }
  } finally {
    await plain.close();
  }
  return found.map((c) => c.revision).reverse();
}

async function open(events: EventStore, checkpoints: CheckpointStore, workerFromBytes: number) {
  const warnings: string[] = [];
  const sluice = await Sluice.open({
    store: events,
    checkpoints,
    checkpointEvery: 5,
    checkpointsKept: 1_000,
    checkpointWorkerFromBytes: workerFromBytes,
    clock: new FakeClock().read,
    warn: (message) => warnings.push(message),
  });
  opened.push(() => sluice.close());
  return { sluice, warnings };
}

describe('checkpoints written by a worker thread', () => {
  it('given a state past the threshold, the worker writes the next checkpoints at the same positions as the server’s thread would, each the state a replay gives there', async () => {
    const onThread = files('on-thread');
    const here = await open(onThread.events, onThread.checkpoints, Number.POSITIVE_INFINITY);
    await play(here.sluice, HISTORY);
    const inWorker = files('in-worker');
    const there = await open(inWorker.events, inWorker.checkpoints, 0);
    await play(there.sluice, HISTORY);
    expect(checkpointingOf(there.sluice).writesInWorker).toBe(true);
    expect(checkpointingOf(here.sluice).writesInWorker).toBe(false);
    await checkpointingOf(there.sluice).settled();

    const positions = await expectCheckpointsMatch(onThread.checkpoints, onThread.events);
    expect(positions.length).toBeGreaterThan(5);
    expect(await expectCheckpointsMatch(inWorker.checkpoints, inWorker.events)).toEqual(positions);
    expect(here.warnings).toEqual([]);
    expect(there.warnings).toEqual([]);
  });

  it('given a worker that dies, the server’s thread writes the checkpoints again and says so', async () => {
    const crashed = files('crashed');
    const there = await open(crashed.events, crashed.checkpoints, 0);
    const half = HISTORY.length / 2;
    await play(there.sluice, HISTORY.slice(0, half));
    const checkpointing = checkpointingOf(there.sluice);
    await checkpointing.settled();
    const beforeCrash = checkpointing.lastCheckpoint;
    expect(await checkpointing.crashWriterForTest()).toBe(true);
    await settle();
    await play(there.sluice, HISTORY.slice(half), 10_000);

    expect(there.warnings).toEqual([
      expect.stringMatching(/checkpoint worker exited .*written on the server's thread again/),
    ]);
    expect(checkpointing.writesInWorker).toBe(false);
    const positions = await expectCheckpointsMatch(crashed.checkpoints, crashed.events);
    expect(positions).toContain(beforeCrash);
    expect(positions.filter((position) => position > beforeCrash).length).toBeGreaterThan(0);
  });

  it('given a server closed while the worker writes, the last checkpoint asked for is written before it stops', async () => {
    const { events, checkpoints } = files('closing');
    const { sluice, warnings } = await open(events, checkpoints, 0);
    await play(sluice, HISTORY);
    const asked = checkpointingOf(sluice).lastCheckpoint;
    await sluice.close();

    const positions = await expectCheckpointsMatch(checkpoints, events);
    expect(positions.at(-1)).toBe(asked);
    expect(warnings).toEqual([]);
  });
});
