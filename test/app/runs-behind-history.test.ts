/**
 * The index of runs the history has not reached (app/runs-behind-history): it keeps a hash of
 * each id, not the id, so an id that shares its hash with a run taken in is told apart by reading
 * that run's event: the answer is exact either way.
 */
import { describe, expect, it } from 'vitest';
import { DEPLOYMENT_STREAM, toLoggedEvent } from '../../src/app/recorded-events.js';
import { idHash, RunsBehindHistory } from '../../src/app/runs-behind-history.js';
import { CURRENT_SCHEMA_VERSION } from '../../src/domain/events.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.js';
import { openHistoryStore } from '../../src/history/history-store.js';

/** Two different ids with the same hash, found by trying ids in order (deterministic). */
function collidingIds(): [string, string] {
  const seen = new Map<number, string>();
  for (let i = 0; ; i++) {
    const id = `run-${i}`;
    const other = seen.get(idHash(id));
    if (other !== undefined) return [other, id];
    seen.set(idHash(id), id);
  }
}

describe('runs the history has not reached', () => {
  it('given a run taken in and another id with the same hash, when both are looked up, then the run is found and the other id is no run', async () => {
    const [taken, lookalike] = collidingIds();
    expect(idHash(taken)).toBe(idHash(lookalike));
    const store = openSqliteStore({ path: ':memory:' });
    const history = openHistoryStore(':memory:');
    try {
      const data = {
        runId: taken,
        jobName: 'j',
        tags: [],
        steps: [],
        priority: 0,
        maxConcurrentSteps: null,
        leaseSeconds: null,
      };
      const { events } = await store.append(
        DEPLOYMENT_STREAM,
        [
          {
            type: 'RunEnqueued',
            schemaVersion: CURRENT_SCHEMA_VERSION,
            data,
            actor: 'test',
            at: '2026-12-06T00:00:00.000Z',
          },
        ],
        'no_stream',
      );
      const runs = new RunsBehindHistory(store, DEPLOYMENT_STREAM);
      runs.startAfter(history.runCount());
      runs.takenIn(toLoggedEvent(events[0] as (typeof events)[number]));

      // Either id's hash points at the run taken in: only reading its event tells them apart.
      expect(runs.lookUpNow(taken, history)).toBeNull();
      expect(runs.lookUpNow(lookalike, history)).toBeNull();
      expect(await runs.lookUp(taken, history)).toEqual({ known: true, run: null, revision: 0n, seq: 0 });
      expect(await runs.lookUp(lookalike, history)).toEqual({ known: false });
      // Once read, the other id is answered at once.
      expect(runs.lookUpNow(lookalike, history)).toEqual({ known: false });
      // An id whose hash matches no run is no run, without reading anything.
      const unrelated = 'never-enqueued';
      expect(idHash(unrelated)).not.toBe(idHash(taken));
      expect(runs.lookUpNow(unrelated, history)).toEqual({ known: false });
    } finally {
      history.close();
      await store.close();
    }
  });
});
