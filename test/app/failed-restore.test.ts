import { afterEach, expect, it } from 'vitest';
import { serializeState } from '../../projections/serialize.js';
import { StoreUnavailableError } from '../../src/eventstore/errors.js';
import type { EventStore } from '../../src/eventstore/store.js';
import { serversOnOneFile } from '../support/servers-on-one-file.js';

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
  let outage!: ReturnType<typeof outageStore>;
  const { x, y, reopen, close } = await serversOnOneFile(
    'sluice-failed-restore-',
    (inner) => {
      outage = outageStore(inner);
      return outage.store;
    },
    { checkpointEvery: 1 },
  );
  closers.push(close);
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
  const replayed = await reopen();
  await replayed.catchUp();
  await x.catchUp();
  expect(serializeState(x.state)).toBe(serializeState(replayed.state));
  await x.close();
  expect(serializeState((await reopen(true)).state)).toBe(serializeState(replayed.state));
});
