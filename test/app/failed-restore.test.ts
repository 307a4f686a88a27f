/**
 * A command's append fails because the store went away, and rebuilding the live state from the
 * log fails too (the store is still away). The live state then still holds the group's events,
 * which were never recorded; while another server writes on. Once the store is back, this server
 * must neither answer from nor decide on nor checkpoint that state: it rebuilds it first, and
 * then holds exactly what the log holds (the other server's runs included, the failed command's
 * not).
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { serializeState } from '../../projections/serialize.js';
import { Sluice } from '../../src/app/sluice.js';
import { openCheckpointStore } from '../../src/eventstore/checkpoints.js';
import { StoreUnavailableError } from '../../src/eventstore/errors.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.js';
import type { EventStore } from '../../src/eventstore/store.js';

const closers: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

/**
 * A store that, while `down`, refuses appends and reads as a lost database connection would;
 * `dropAtNextAppend` takes it down as the next append is sent (after the command's own read).
 */
function outageStore(inner: EventStore) {
  const state = { down: false, dropAtNextAppend: false };
  const unavailable = () => new StoreUnavailableError('the database went away (test)');
  const store: EventStore = Object.create(inner);
  store.append = async (stream, events, expected) => {
    if (state.dropAtNextAppend) state.down = true;
    if (state.down) throw unavailable();
    return inner.append(stream, events, expected);
  };
  store.readStream = async (stream, options) => {
    if (state.down) throw unavailable();
    return inner.readStream(stream, options);
  };
  return { store, state };
}

it('given an append and the rebuild after it both fail, when the store is back, then the server rebuilds its live state before it answers, decides or checkpoints, and holds what the log holds', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-failed-restore-'));
  const path = join(dir, 'events.db');
  const innerX = openSqliteStore({ path });
  const outage = outageStore(innerX);
  const storeY = openSqliteStore({ path });
  const checkpoints = openCheckpointStore(join(dir, 'checkpoints.db'));
  const x = await Sluice.open({ store: outage.store, checkpoints, checkpointEvery: 1 });
  const y = await Sluice.open({ store: storeY });
  closers.push(
    () => innerX.close(),
    () => storeY.close(),
    () => checkpoints.close(),
    () => x.close(),
    () => y.close(),
  );
  await y.execute({ type: 'SetPoolLimit', pool: 'db', limit: 2 }, 'y');
  await x.catchUp();

  outage.state.dropAtNextAppend = true;
  await expect(
    x.execute({ type: 'EnqueueRun', input: { runId: 'never-recorded', jobName: 'j' } }, 'x'),
  ).rejects.toBeInstanceOf(StoreUnavailableError);
  expect(x.notReadyBecause()).toMatch(
    /live state is rebuilt from the log after a failed append, and the log could not be read: the database went away/,
  );
  // Meanwhile the other server, on a connection of its own, writes on.
  await y.execute({ type: 'EnqueueRun', input: { runId: 'from-y', jobName: 'j' } }, 'y');
  await y.execute({ type: 'EnqueueRun', input: { runId: 'from-y-2', jobName: 'j' } }, 'y');
  outage.state.dropAtNextAppend = false;
  outage.state.down = false;

  // A read answers from the log: the other server's run, and no trace of the failed command.
  expect((await x.run('from-y'))?.status).toBe('STARTING');
  expect(await x.run('never-recorded')).toBeNull();
  expect(x.notReadyBecause()).toBeNull();
  // A command decides on that state: the run it names is there to be started.
  const started = await x.execute({ type: 'MarkRunStarted', runId: 'from-y-2' }, 'x');
  expect(started.events.map((e) => e.type)).toContain('RunStarted');
  expect(x.state.runs.has('never-recorded')).toBe(false);

  // The live state is the log's, and every checkpoint x kept is of a state the log replays to.
  const replayed = await Sluice.open({ store: openSqliteStore({ path }) });
  closers.push(() => replayed.close());
  await replayed.catchUp();
  await x.catchUp();
  expect(serializeState(x.state)).toBe(serializeState(replayed.state));
  await x.close();
  const restarted = await Sluice.open({
    store: openSqliteStore({ path }),
    checkpoints: openCheckpointStore(join(dir, 'checkpoints.db')),
  });
  closers.push(() => restarted.close());
  expect(serializeState(restarted.state)).toBe(serializeState(replayed.state));
});
