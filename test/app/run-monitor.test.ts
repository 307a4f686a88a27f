/**
 * The run monitor, on a fake clock: when a deadline fires, not merely that it does. The e2e
 * timeout tests show deadlines firing on a real server; these pin the promise that an expiry
 * fires within a second of its deadline (here: within the monitor's 5 ms margin), with the
 * clock and the timers under the test's control so a busy machine cannot blur the answer.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { type RunMonitorHandle, startRunMonitor } from '../../src/app/run-monitor.js';
import { Sluice } from '../../src/app/sluice.js';
import type { Command, EnqueueRunInput } from '../../src/domain/commands.js';
import { StoreUnavailableError } from '../../src/eventstore/errors.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.js';
import type { EventStore } from '../../src/eventstore/store.js';

const T0 = Date.parse('2026-11-27T12:00:00.000Z');
/** The monitor sets its timer this much after a deadline, so the deadline has surely passed. */
const MARGIN_MS = 5;

/** A store whose appends fail while `down` is set, as a lost connection would. */
function flakyStore(inner: EventStore): EventStore & { down: boolean } {
  const store = Object.create(inner) as EventStore & { down: boolean };
  store.down = false;
  store.append = (...args) =>
    store.down ? Promise.reject(new StoreUnavailableError('store unreachable')) : inner.append(...args);
  return store;
}

let store: EventStore & { down: boolean };
let sluice: Sluice;
let monitor: RunMonitorHandle | null;
let errors: unknown[];

beforeEach(async () => {
  // Only the timers and the clock are faked; the store's own work runs for real.
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'], now: T0 });
  store = flakyStore(openSqliteStore({ path: ':memory:' }));
  sluice = await Sluice.open({ store, clock: () => new Date() });
  monitor = null;
  errors = [];
});

afterEach(async () => {
  monitor?.stop();
  vi.useRealTimers();
  await sluice.close();
  await store.close();
});

const run = (id: string) => {
  // A run that finished leaves the live state; the most recent ones stay within reach there.
  const record = sluice.state.runs.get(id) ?? sluice.state.recentlyFinished.get(id);
  if (!record) throw new Error(`no run ${id}`);
  return record;
};
const execute = (command: Command) => sluice.execute(command, 'test');
const enqueue = (input: Partial<EnqueueRunInput> & { runId: string }) =>
  execute({ type: 'EnqueueRun', input: { jobName: 'etl', ...input } });
const monitorOn = () => {
  monitor = startRunMonitor(sluice, (error) => errors.push(error));
};
/** Moves the fake clock and lets the commands the timers started finish. */
const advance = async (ms: number) => {
  await vi.advanceTimersByTimeAsync(ms);
  for (let i = 0; i < 5; i++) await new Promise((done) => setImmediate(done));
};

describe('run monitor', () => {
  it('given a 1 s lease and no heartbeat, then nothing fires before the deadline and the run fails within the margin after it', async () => {
    await enqueue({ runId: 'leased', leaseSeconds: 1 });
    monitorOn();
    await advance(999);
    expect(run('leased').status).toBe('STARTING');

    await advance(1 + MARGIN_MS);
    const ended = run('leased');
    expect(ended.status).toBe('FAILURE');
    expect(ended.finishReason).toBe('lease expired: no heartbeat for 1 s');
    expect(Date.parse(ended.finishedAt as string) - (T0 + 1_000)).toBe(MARGIN_MS);
    expect(errors).toEqual([]);
  });

  it('given a later run with an earlier deadline, then the monitor moves its timer earlier and fires each on time', async () => {
    await enqueue({ runId: 'slow', leaseSeconds: 5 });
    monitorOn();
    await advance(1_000);
    await enqueue({ runId: 'fast', leaseSeconds: 1 });

    await advance(1_000 + MARGIN_MS);
    expect(run('fast').status).toBe('FAILURE');
    expect(Date.parse(run('fast').finishedAt as string)).toBe(T0 + 2_000 + MARGIN_MS);
    expect(run('slow').status).toBe('STARTING');

    await advance(3_000);
    expect(run('slow').status).toBe('FAILURE');
    expect(Date.parse(run('slow').finishedAt as string)).toBe(T0 + 5_000 + MARGIN_MS);
  });

  it('given heartbeats, then the deadline moves with each recorded one and fires a lease after the last', async () => {
    await enqueue({ runId: 'alive', leaseSeconds: 3 });
    await execute({ type: 'MarkRunStarted', runId: 'alive' });
    monitorOn();
    for (let beat = 1; beat <= 5; beat++) {
      await advance(1_500);
      await execute({ type: 'Heartbeat', runId: 'alive' });
    }
    expect(run('alive').status).toBe('STARTED');
    const lastBeat = Date.parse(run('alive').lastHeartbeatAt as string);
    expect(lastBeat).toBe(T0 + 7_500);

    await advance(2_999);
    expect(run('alive').status).toBe('STARTED');
    await advance(1 + MARGIN_MS);
    expect(run('alive').status).toBe('FAILURE');
    expect(Date.parse(run('alive').finishedAt as string)).toBe(lastBeat + 3_000 + MARGIN_MS);
  });

  it('given a deadline that passed before the monitor started, then it fires at once', async () => {
    await enqueue({ runId: 'orphan', leaseSeconds: 1 });
    vi.setSystemTime(T0 + 60_000);
    monitorOn();
    await advance(MARGIN_MS);
    expect(run('orphan').status).toBe('FAILURE');
    expect(Date.parse(run('orphan').finishedAt as string)).toBe(T0 + 60_000);
  });

  it('given the store down when a deadline comes, then the error is reported and the expiry is tried again a second later', async () => {
    await enqueue({ runId: 'leased', leaseSeconds: 1 });
    monitorOn();
    store.down = true;
    await advance(1_000 + MARGIN_MS);
    expect(run('leased').status).toBe('STARTING');
    // One attempt, not a tight loop against a store that is down.
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(Error);

    await advance(500);
    expect(errors).toHaveLength(1);
    store.down = false;
    await advance(500 + MARGIN_MS);
    expect(run('leased').status).toBe('FAILURE');
    const failedAt = T0 + 1_000 + MARGIN_MS;
    expect(Date.parse(run('leased').finishedAt as string)).toBe(failedAt + 1_000 + MARGIN_MS);
    expect(errors).toHaveLength(1);
  });

  it('given a deadline days away, then the monitor only re-checks hourly and fires it on time', async () => {
    await enqueue({ runId: 'long', tags: [{ key: 'dagster/max_runtime', value: String(2 * 24 * 3600) }] });
    await execute({ type: 'MarkRunStarted', runId: 'long' });
    const appends = vi.spyOn(store, 'append');
    monitorOn();
    await advance(2 * 24 * 3600 * 1_000 - 1);
    expect(run('long').status).toBe('STARTED');
    // The hourly re-checks found nothing expired, so they wrote nothing.
    expect(appends).not.toHaveBeenCalled();

    await advance(1 + MARGIN_MS);
    expect(run('long').status).toBe('FAILURE');
    expect(run('long').finishReason).toMatch(/max_runtime/);
  });

  it('given the monitor stopped, then no deadline fires', async () => {
    await enqueue({ runId: 'leased', leaseSeconds: 1 });
    monitorOn();
    monitor?.stop();
    await advance(10_000);
    expect(run('leased').status).toBe('STARTING');
  });
});
