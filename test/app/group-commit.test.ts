/**
 * Group commit: commands that arrive together are decided one after another on the live state
 * (each seeing the events of those before it) and appended in one transaction; each answers
 * only once that transaction is durable. A bad command answers its own error; a lost race
 * re-decides the whole group; a failed append leaves the live state as the log has it.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { serializeState } from '../../projections/serialize.js';
import { DEPLOYMENT_STREAM, Sluice } from '../../src/app/sluice.js';
import type { Command } from '../../src/domain/commands.js';
import { InvalidInputError } from '../../src/domain/errors.js';
import { StoreUnavailableError } from '../../src/eventstore/errors.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.js';
import type { EventStore } from '../../src/eventstore/store.js';

const opened: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const close of opened.splice(0).reverse()) await close();
});

async function open(store: EventStore = openSqliteStore({ path: ':memory:' })) {
  const sluice = await Sluice.open({ store });
  opened.push(async () => {
    await sluice.close();
    await store.close();
  });
  return { sluice, store };
}

const enqueue = (runId: string, tags: Array<{ key: string; value: string }> = []): Command => ({
  type: 'EnqueueRun',
  input: { runId, jobName: 'job', tags },
});

/** The live state a fresh server folds from the same log. */
async function replayed(store: EventStore): Promise<string> {
  const fresh = await Sluice.open({ store });
  const text = serializeState(fresh.state);
  await fresh.close();
  return text;
}

describe('group commit', () => {
  it('given 50 commands sent at once, when they are answered, then they took few appends, each answered with its own events, in one dense log', async () => {
    const { sluice, store } = await open();
    await sluice.execute({ type: 'SetMaxConcurrentRuns', limit: 5 }, 'test');
    const appends = vi.spyOn(store, 'append');
    const outcomes = await Promise.all(Array.from({ length: 50 }, (_, i) => sluice.execute(enqueue(`r${i}`), 'test')));
    expect(appends.mock.calls.length).toBeLessThan(10);
    outcomes.forEach((outcome, i) => {
      expect(outcome.runId).toBe(`r${i}`);
      expect(outcome.events[0]).toMatchObject({ type: 'RunEnqueued', data: { runId: `r${i}` } });
      for (const event of outcome.events) if ('runId' in event.data) expect(event.data.runId).toBe(`r${i}`);
    });
    // Each saw the ones before it: exactly the first five were admitted.
    const admitted = outcomes.flatMap((o) => o.events.filter((e) => e.type === 'RunAdmitted'));
    expect(admitted.map((e) => ('runId' in e.data ? e.data.runId : null))).toEqual(['r0', 'r1', 'r2', 'r3', 'r4']);
    const log = await store.readStream(DEPLOYMENT_STREAM);
    expect(log.map((e) => e.revision)).toEqual(log.map((_, i) => BigInt(i)));
    expect(serializeState(sluice.state)).toBe(await replayed(store));
  });

  it('given a bad command inside a group, when the group commits, then it alone answers its error and the others are recorded', async () => {
    const { sluice, store } = await open();
    const results = await Promise.allSettled([
      sluice.execute(enqueue('a'), 'test'),
      sluice.execute({ type: 'SetMaxConcurrentRuns', limit: -5 }, 'test'),
      sluice.execute(enqueue('b'), 'test'),
      sluice.execute({ type: 'MarkRunStarted', runId: 'nobody' }, 'test'),
      sluice.execute(enqueue('c'), 'test'),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'rejected', 'fulfilled']);
    expect((results[1] as PromiseRejectedResult).reason).toBeInstanceOf(InvalidInputError);
    const log = await store.readStream(DEPLOYMENT_STREAM);
    expect(log.filter((e) => e.type === 'RunEnqueued').map((e) => (e.data as { runId: string }).runId)).toEqual([
      'a',
      'b',
      'c',
    ]);
  });

  it('given another writer wins the race while a group is decided, when the append loses, then the whole group is decided again on the winning state and no limit is exceeded', async () => {
    const { sluice, store } = await open();
    await sluice.execute({ type: 'SetMaxConcurrentRuns', limit: 2 }, 'test');
    // Another server on the same log: it admits a run just before this server's first append.
    const other = await Sluice.open({ store });
    const realAppend = store.append.bind(store);
    let raced = false;
    vi.spyOn(store, 'append').mockImplementation(async (stream, events, expected) => {
      if (!raced) {
        raced = true;
        await other.execute(enqueue('theirs'), 'other');
      }
      return realAppend(stream, events, expected);
    });
    const outcomes = await Promise.all(['m1', 'm2', 'm3'].map((id) => sluice.execute(enqueue(id), 'test')));
    await other.close();
    const admitted = outcomes.flatMap((o) => o.events.filter((e) => e.type === 'RunAdmitted'));
    // theirs took one of the two places: only m1 gets the other.
    expect(admitted.map((e) => ('runId' in e.data ? e.data.runId : null))).toEqual(['m1']);
    expect(sluice.state.inProgress.size).toBe(2);
    expect(serializeState(sluice.state)).toBe(await replayed(store));
  });

  it('given a store that fails the append, when a group is in flight, then every command of it answers the store error, nothing is recorded, and the live state is the log’s', async () => {
    const { sluice, store } = await open();
    await sluice.execute({ type: 'SetMaxConcurrentRuns', limit: 1 }, 'test');
    await sluice.execute(enqueue('first'), 'test');
    const before = serializeState(sluice.state);
    vi.spyOn(store, 'append').mockRejectedValueOnce(new StoreUnavailableError('event store is full (disk full)'));
    const results = await Promise.allSettled(['x', 'y'].map((id) => sluice.execute(enqueue(id), 'test')));
    for (const result of results) {
      expect(result.status).toBe('rejected');
      expect((result as PromiseRejectedResult).reason).toBeInstanceOf(StoreUnavailableError);
    }
    expect(serializeState(sluice.state)).toBe(before);
    // And the next command goes through, on the right state.
    const outcome = await sluice.execute(enqueue('x'), 'test');
    expect(outcome.events.map((e) => e.type)).toEqual(['RunEnqueued', 'RunBlocked']);
    expect(serializeState(sluice.state)).toBe(await replayed(store));
  });
});
