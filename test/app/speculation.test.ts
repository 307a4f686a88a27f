/**
 * Another server appends while this server's group of commands is folded into its live state
 * ahead of its own append (two Sluice instances on one SQLite file; this one's append held on a
 * gate). The other server's events must not be folded into that speculative state, nor skipped
 * as if already folded: reads meanwhile wait for the append to settle and then answer from the
 * log, no checkpoint is written of a state that is not the log's, and the command, having lost
 * the race, is decided again and recorded.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { serializeState } from '../../projections/serialize.js';
import { Sluice } from '../../src/app/sluice.js';
import { openCheckpointStore } from '../../src/eventstore/checkpoints.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.js';
import type { EventStore } from '../../src/eventstore/store.js';

const closers: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

/** A store whose next append waits until `open()` once `hold()` was called; `held` resolves when it does. */
function gatedStore(inner: EventStore) {
  let armed = false;
  let reached!: () => void;
  const held = new Promise<void>((resolve) => (reached = resolve));
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  const store: EventStore = Object.create(inner);
  store.append = async (stream, events, expected) => {
    if (armed) {
      armed = false;
      reached();
      await gate;
    }
    return inner.append(stream, events, expected);
  };
  return { store, hold: () => (armed = true), held, open };
}

it("given another server appends during this server's append, then reads wait for it and answer from the log, no false checkpoint is kept, and the command is recorded after the lost race", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-speculation-'));
  const path = join(dir, 'events.db');
  const innerX = openSqliteStore({ path });
  const gated = gatedStore(innerX);
  const storeY = openSqliteStore({ path });
  const checkpoints = openCheckpointStore(join(dir, 'checkpoints.db'));
  const x = await Sluice.open({ store: gated.store, checkpoints, checkpointEvery: 1 });
  const y = await Sluice.open({ store: storeY });
  closers.push(
    () => innerX.close(),
    () => storeY.close(),
    () => checkpoints.close(),
    () => x.close(),
    () => y.close(),
  );
  await y.execute({ type: 'SetMaxConcurrentRuns', limit: 0 }, 'y');
  await x.catchUp();

  gated.hold();
  const command = x.execute({ type: 'SetPoolLimit', pool: 'db', limit: 3 }, 'x');
  await gated.held; // x's PoolLimitSet is folded into its live state, its append not made yet
  await y.execute({ type: 'EnqueueRun', input: { runId: 'from-y', jobName: 'j' } }, 'y');

  // A read on x meanwhile waits for x's append to settle rather than answer from a state that
  // holds x's unrecorded event and lacks y's, then answers from the log.
  let answered = false;
  const read = x.run('from-y').then((run) => {
    answered = true;
    return run;
  });
  await new Promise((done) => setTimeout(done, 20)); // let any checkpoint due be written
  expect(answered).toBe(false);

  gated.open();
  expect((await read)?.status).toBe('QUEUED');
  const outcome = await command;
  expect(outcome.events.map((e) => e.type)).toEqual(['PoolLimitSet']);
  const log = await storeY.readStream(x.stream);
  expect(log.map((e) => [e.type, e.actor])).toEqual([
    ['MaxConcurrentRunsSet', 'y'],
    ['LimitStatesChanged', 'y'],
    ['RunEnqueued', 'y'],
    ['RunBlocked', 'y'],
    ['PoolLimitSet', 'x'],
  ]);
  expect(x.state.runs.get('from-y')?.status).toBe('QUEUED');
  expect(x.state.config.poolLimits.get('db')).toBe(3);

  // Every checkpoint x kept is of a state the log replays to.
  await x.close();
  const restarted = await Sluice.open({
    store: openSqliteStore({ path }),
    checkpoints: openCheckpointStore(join(dir, 'checkpoints.db')),
  });
  const replayed = await Sluice.open({ store: openSqliteStore({ path }) });
  closers.push(
    () => restarted.close(),
    () => replayed.close(),
  );
  expect(serializeState(restarted.state)).toBe(serializeState(replayed.state));
});
