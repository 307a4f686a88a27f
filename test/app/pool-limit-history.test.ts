/**
 * The live state's pool limits are updated in place as edits are folded in. Answers about the
 * past must not see later edits: a past state (rebuilt from a checkpoint or the log, then kept
 * for repeated reads) and the before/after of each limit change stay as they were recorded.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { limitChanges } from '../../src/app/limit-changes.js';
import { Sluice } from '../../src/app/sluice.js';
import { type CheckpointStore, openCheckpointStore } from '../../src/eventstore/checkpoints.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.js';
import type { EventStore } from '../../src/eventstore/store.js';

const limits = (map: ReadonlyMap<string, number>) => Object.fromEntries([...map].sort(([a], [b]) => (a < b ? -1 : 1)));

let close: () => Promise<void> = async () => {};
afterEach(async () => {
  await close();
  close = async () => {};
});

async function open(): Promise<{ sluice: Sluice; store: EventStore; checkpoints: CheckpointStore }> {
  const store = openSqliteStore({ path: ':memory:' });
  const checkpoints = openCheckpointStore(':memory:');
  const sluice = await Sluice.open({ store, checkpoints, checkpointEvery: 2, checkpointsKept: 100 });
  close = async () => {
    await sluice.close();
    await store.close();
    checkpoints.close();
  };
  return { sluice, store, checkpoints };
}

describe('pool limits over time', () => {
  it('given pool limit edits after a past moment, when that moment is read before and after them, then it shows the limits of that moment both times', async () => {
    const { sluice } = await open();
    await sluice.execute({ type: 'SetPoolLimit', pool: 'gpu', limit: 1 }, 'alice');
    await sluice.execute({ type: 'SetPoolLimit', pool: 'db', limit: 4 }, 'alice');
    const moment = sluice.state.revision;
    await sluice.execute({ type: 'SetPoolLimit', pool: 'etl', limit: 2 }, 'alice');
    const past = await sluice.stateAt(moment);
    expect(limits(past.config.poolLimits)).toEqual({ db: 4, gpu: 1 });
    expect(past.config.poolLimits).not.toBe(sluice.state.config.poolLimits);

    await sluice.execute({ type: 'SetPoolLimit', pool: 'gpu', limit: 3 }, 'bob');
    await sluice.execute({ type: 'DeletePoolLimit', pool: 'db' }, 'bob');
    await sluice.execute({ type: 'SetMaxConcurrentRuns', limit: 5 }, 'bob');
    await sluice.execute({ type: 'SetPoolLimit', pool: 'new', limit: 7 }, 'bob');
    // The same object, kept for repeated reads, and a fresh read: both as they were.
    expect(limits(past.config.poolLimits)).toEqual({ db: 4, gpu: 1 });
    expect(limits((await sluice.stateAt(moment)).config.poolLimits)).toEqual({ db: 4, gpu: 1 });
    expect(limits(sluice.state.config.poolLimits)).toEqual({ etl: 2, gpu: 3, new: 7 });
  });

  it('given many edits of the same pools, when the limit changes are listed, then each shows the value just before it', async () => {
    const { sluice } = await open();
    const expected: string[] = [];
    const current = new Map<string, number>();
    for (let i = 0; i < 30; i++) {
      const pool = `p${i % 4}`;
      if (i % 7 === 6) {
        await sluice.execute({ type: 'DeletePoolLimit', pool }, 'alice');
        if (current.has(pool))
          expected.push(`pool ${pool} limit: ${current.get(pool)} → none (default limit none applies)`);
        current.delete(pool);
      } else {
        await sluice.execute({ type: 'SetPoolLimit', pool, limit: i }, 'alice');
        expected.push(`pool ${pool} limit: ${current.get(pool) ?? 'none'} → ${i}`);
        current.set(pool, i);
      }
    }
    const page = await limitChanges(sluice, { first: 100, after: null, pool: null });
    expect(page.changes.map((c) => c.description)).toEqual(expected);
    // Listed again: the fold starts afresh, the answer is the same.
    const again = await limitChanges(sluice, { first: 100, after: null, pool: null });
    expect(again.changes.map((c) => c.description)).toEqual(expected);
  });
});
