/**
 * The wall clock stepping back (NTP, or a server whose clock is behind the others'): event
 * times in the log never go backwards, the step is recorded once, and an answer about an
 * instant before the step sees nothing that arrived after it. The clock here is the Sluice's
 * injected one; test/e2e/clock-steps.test.ts moves a real server process's clock.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DEPLOYMENT_STREAM, Sluice } from '../../src/app/sluice.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.js';
import type { EventStore } from '../../src/eventstore/store.js';

const T0 = Date.parse('2026-11-27T12:00:00.000Z');
let clock = T0;
let store: EventStore;
let sluice: Sluice;

beforeEach(async () => {
  clock = T0;
  store = openSqliteStore({ path: ':memory:' });
  sluice = await Sluice.open({ store, clock: () => new Date(clock) });
});

afterEach(async () => {
  await sluice.close();
  await store.close();
});

const enqueue = (runId: string) =>
  sluice.execute({ type: 'EnqueueRun', input: { runId, jobName: 'job' } } as never, 'test');

describe('a clock that steps back', () => {
  it('given runs enqueued, when the clock steps back an hour, then later events carry the log time, the step is recorded once, and times never go backwards', async () => {
    await enqueue('before');
    clock = T0 + 10_000;
    await enqueue('just-before');
    clock = T0 + 10_000 - 3_600_000;
    await enqueue('after-1');
    clock += 5_000;
    await enqueue('after-2');
    const events = await store.readStream(DEPLOYMENT_STREAM);
    const times = events.map((e) => Date.parse(e.at));
    for (let i = 1; i < times.length; i++) expect(times[i]).toBeGreaterThanOrEqual(times[i - 1] as number);
    const steps = events.filter((e) => e.type === 'ClockSteppedBack');
    expect(steps).toHaveLength(1);
    expect(steps[0]?.data).toEqual({
      clockAt: new Date(T0 + 10_000 - 3_600_000).toISOString(),
      loggedAt: new Date(T0 + 10_000).toISOString(),
      byMs: 3_600_000,
    });
    // An instant before the step knows nothing of what came after it.
    const before = await sluice.stateAt(await sluice.revisionAt(new Date(T0 + 5_000)));
    expect([...before.runs.keys()]).toEqual(['before']);
  });

  it('given the clock caught up with the log after a step back, when it steps back again, then the new step is recorded too', async () => {
    clock = T0 + 60_000;
    await enqueue('a');
    clock = T0;
    await enqueue('b');
    clock = T0 + 120_000;
    await enqueue('c');
    clock = T0 + 30_000;
    await enqueue('d');
    const events = await store.readStream(DEPLOYMENT_STREAM);
    expect(events.filter((e) => e.type === 'ClockSteppedBack').map((e) => (e.data as { byMs: number }).byMs)).toEqual([
      60_000, 90_000,
    ]);
  });

  it('given a clock behind the log by less than a second (skew between servers), then times are clamped but no step is recorded', async () => {
    clock = T0 + 500;
    await enqueue('a');
    clock = T0;
    await enqueue('b');
    const events = await store.readStream(DEPLOYMENT_STREAM);
    expect(events.some((e) => e.type === 'ClockSteppedBack')).toBe(false);
    expect(events.at(-1)?.at).toBe(new Date(T0 + 500).toISOString());
  });
});

describe('a clock that steps back while a run is in progress', () => {
  let wall = T0;
  let mono = 0;
  let stepped: Sluice;
  let steppedStore: EventStore;
  /** Real time passes: both clocks move on together. */
  const pass = (ms: number) => {
    wall += ms;
    mono += ms;
  };

  beforeEach(async () => {
    wall = T0;
    mono = 0;
    steppedStore = openSqliteStore({ path: ':memory:' });
    stepped = await Sluice.open({ store: steppedStore, clock: () => new Date(wall), monotonic: () => mono });
    await stepped.execute({ type: 'SetRunMonitoring', startTimeoutSeconds: 60, cancelTimeoutSeconds: 180 }, 'test');
    await stepped.execute({ type: 'EnqueueRun', input: { runId: 'a', jobName: 'job' } } as never, 'test');
  });

  afterEach(async () => {
    await stepped.close();
    await steppedStore.close();
  });

  const expire = () => stepped.execute({ type: 'ExpireDeadlines' }, 'run-monitor');
  const status = () => stepped.state.runs.get('a')?.status ?? 'gone';

  it('given a STARTING run with a 60 s start timeout, when the clock steps back an hour, then the run still fails about 60 s after it was admitted, not an hour later', async () => {
    pass(10_000);
    wall -= 3_600_000;
    await expire();
    expect(status()).toBe('STARTING');
    pass(49_000);
    await expire();
    expect(status()).toBe('STARTING');
    // Event time runs at 99% of real time after the step (from the last stamp recorded before
    // it): 60 s of event time after 60.6 s of real time, 1% late.
    pass(1_700);
    await expire();
    expect(status()).toBe('gone');
    const events = await steppedStore.readStream(DEPLOYMENT_STREAM);
    const finished = events.find((e) => e.type === 'RunFinished');
    expect(finished?.data).toMatchObject({ runId: 'a', status: 'FAILURE' });
    const times = events.map((e) => Date.parse(e.at));
    for (let i = 1; i < times.length; i++) expect(times[i]).toBeGreaterThanOrEqual(times[i - 1] as number);
    expect(events.filter((e) => e.type === 'ClockSteppedBack')).toHaveLength(1);
  });

  it('given the clock stepped back, then event time runs on slower than real time until the wall clock meets it, and follows the wall clock again after', async () => {
    pass(1_000);
    await expire();
    wall -= 60_000;
    pass(100_000);
    await expire();
    // 101 s of real time since the last stamp recorded, at 99%: ahead of the wall clock by 59 s.
    expect(stepped.now().getTime()).toBe(T0 + 99_990);
    expect(wall).toBe(T0 + 41_000);
    // The wall clock gains 1% on it: they meet 5,899 s later.
    pass(5_898_000);
    expect(stepped.now().getTime()).toBeGreaterThan(wall);
    pass(2_000);
    expect(stepped.now().getTime()).toBe(wall);
    pass(5_000);
    expect(stepped.now().getTime()).toBe(wall);
    const events = await steppedStore.readStream(DEPLOYMENT_STREAM);
    expect(events.some((e) => e.type === 'ClockSteppedForward')).toBe(false);
  });

  it('given the clock stepped forward an hour, then the STARTING run is not failed at once, and fails 60 s after admission in real time', async () => {
    pass(10_000);
    wall += 3_600_000;
    await expire();
    expect(status()).toBe('STARTING');
    // Moved once by the step, whether folded ahead of the append or taken from the log.
    expect(stepped.state.runs.get('a')?.clockShiftMs).toBe(3_600_000);
    pass(49_000);
    await expire();
    expect(status()).toBe('STARTING');
    pass(1_100);
    await expire();
    expect(status()).toBe('gone');
  });
});
