import { afterEach, expect, it } from 'vitest';
import { serializeState } from '../../projections/serialize.js';
import type { EventStore } from '../../src/eventstore/store.js';
import { serversOnOneFile } from '../support/servers-on-one-file.js';

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

/**
 * A store whose next append, once `holdAfterCommit()` was called, commits and then waits until
 * `openAppend()`; and whose next read, once `holdRead()` was called, waits until `openRead()`
 * before reading, with `readDone` resolving once that read has returned.
 */
function slowStore(inner: EventStore) {
  let appendArmed = false;
  let readArmed = false;
  let committed!: () => void;
  const appendCommitted = new Promise<void>((resolve) => (committed = resolve));
  let openAppend!: () => void;
  const appendGate = new Promise<void>((resolve) => (openAppend = resolve));
  let openRead!: () => void;
  const readGate = new Promise<void>((resolve) => (openRead = resolve));
  let readReturned!: () => void;
  const readDone = new Promise<void>((resolve) => (readReturned = resolve));
  const store: EventStore = Object.create(inner);
  store.append = async (stream, events, expected) => {
    const result = await inner.append(stream, events, expected);
    if (appendArmed) {
      appendArmed = false;
      committed();
      await appendGate;
    }
    return result;
  };
  store.readStream = async (stream, options) => {
    if (!readArmed) return inner.readStream(stream, options);
    readArmed = false;
    await readGate;
    const events = await inner.readStream(stream, options);
    readReturned();
    return events;
  };
  return {
    store,
    holdAfterCommit: () => (appendArmed = true),
    appendCommitted,
    openAppend,
    holdRead: () => (readArmed = true),
    openRead,
    readDone,
  };
}

it("given this server's append has won and another server appends right after it, when a read takes both back before the append answers, then the other server's event is folded into the live state too", async () => {
  let slow!: ReturnType<typeof slowStore>;
  const { x, y, reopen, close } = await serversOnOneFile('sluice-speculation-', (inner) => {
    slow = slowStore(inner);
    return slow.store;
  });
  closers.push(close);
  await y.execute({ type: 'SetMaxConcurrentRuns', limit: 0 }, 'y');
  await x.catchUp();

  slow.holdRead();
  const read = x.run('from-y'); // its read of the log waits on the gate
  slow.holdAfterCommit();
  const command = x.execute({ type: 'SetPoolLimit', pool: 'db', limit: 3 }, 'x');
  await slow.appendCommitted; // x's PoolLimitSet is in the log; x's append has not answered yet
  await y.execute({ type: 'EnqueueRun', input: { runId: 'from-y', jobName: 'j' } }, 'y');
  slow.openRead();
  await slow.readDone; // x's read took in x's event and y's after it, during the speculation

  slow.openAppend();
  await command;
  expect((await read)?.status).toBe('QUEUED');
  expect(x.state.runs.get('from-y')?.status).toBe('QUEUED');
  expect(x.state.config.poolLimits.get('db')).toBe(3);
  expect(serializeState(x.state)).toBe(serializeState((await reopen()).state));
});

it("given another server appends during this server's append, then reads wait for it and answer from the log, no false checkpoint is kept, and the command is recorded after the lost race", async () => {
  let gated!: ReturnType<typeof gatedStore>;
  const { x, y, storeY, reopen, close } = await serversOnOneFile(
    'sluice-speculation-',
    (inner) => {
      gated = gatedStore(inner);
      return gated.store;
    },
    { checkpointEvery: 1 },
  );
  closers.push(close);
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
  expect(serializeState((await reopen(true)).state)).toBe(serializeState((await reopen()).state));
});
